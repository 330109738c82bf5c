//! When scheduled runs are due: pure calendar math, no I/O and no clock reads.
//!
//! Each local calendar day has exactly one due instant: the first instant at which that day's chosen
//! wall-clock time occurs in the zone. Daylight saving follows RFC 5545 section 3.3.5, which is also
//! what Python's `zoneinfo` does with `fold=0`:
//!
//! - a wall time that does not exist that day (spring-forward gap) is read with the UTC offset in force
//!   *before* the gap, so New York's 02:30 on a spring-forward day becomes 07:30Z (03:30 EDT);
//! - a wall time that occurs twice (fall-back fold) runs once, at its first (earlier) occurrence.
//!
//! Callers pass instants in; every function is total (no panics), saturating at the ends of chrono's
//! representable range, hundreds of thousands of years away.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    SecondsFormat, TimeDelta, TimeZone, Utc,
};
use chrono_tz::{GapInfo, Tz};

/// A time of day on a 30-minute step, 00:00 ..= 23:30.
///
/// The fields are private so that every value is one of the 48 valid slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotTime {
    hour: u8,
    minute: u8,
}

impl SlotTime {
    /// Midnight, the first slot of the day.
    pub const MIDNIGHT: SlotTime = SlotTime { hour: 0, minute: 0 };

    /// The slot at `hour:minute`, if that is a valid slot (hour 0..=23, minute 0 or 30).
    pub fn new(hour: u32, minute: u32) -> Option<SlotTime> {
        let valid = hour < 24 && (minute == 0 || minute == 30);
        // The casts cannot truncate: both values were just range-checked.
        valid.then_some(SlotTime {
            hour: hour as u8,
            minute: minute as u8,
        })
    }

    pub fn hour(self) -> u32 {
        u32::from(self.hour)
    }

    pub fn minute(self) -> u32 {
        u32::from(self.minute)
    }

    /// The 48 slots of a day, in order.
    pub fn all() -> impl Iterator<Item = SlotTime> {
        (0..48u8).map(|index| SlotTime {
            hour: index / 2,
            minute: (index % 2) * 30,
        })
    }

    /// The slot as a wall-clock time of day.
    pub fn naive_time(self) -> NaiveTime {
        // Every SlotTime is a valid time of day, so the fallback is never taken; it keeps this total.
        NaiveTime::from_hms_opt(self.hour(), self.minute(), 0).unwrap_or(NaiveTime::MIN)
    }
}

impl FromStr for SlotTime {
    type Err = ScheduleError;

    /// Accepts exactly `HH:MM` (two digits each, 24-hour, minutes `00` or `30`); nothing is trimmed or
    /// padded, so what a user wrote is what they get.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || ScheduleError::InvalidTime {
            value: value.to_owned(),
        };
        let &[h1, h2, b':', m1, m2] = value.as_bytes() else {
            return Err(invalid());
        };
        let digit = |byte: u8| byte.is_ascii_digit().then(|| u32::from(byte - b'0'));
        match (digit(h1), digit(h2), digit(m1), digit(m2)) {
            (Some(h1), Some(h2), Some(m1), Some(m2)) => {
                SlotTime::new(h1 * 10 + h2, m1 * 10 + m2).ok_or_else(invalid)
            }
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for SlotTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// Why a schedule setting was refused. Each message names the offending value and how to fix it,
/// because it ends up in a CLI error or a resource's status condition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "invalid time {value:?}: use HH:MM in 24-hour form on a 30-minute step (00:00 ... 23:30), e.g. \"07:00\""
    )]
    InvalidTime { value: String },
    #[error(
        "unknown time zone {value:?}: use an IANA name such as \"America/New_York\" or \"UTC\""
    )]
    UnknownTimeZone { value: String },
    #[error("unknown time zone {value:?}: IANA names are case-sensitive, use {suggestion:?}")]
    TimeZoneCase { value: String, suggestion: String },
}

/// Parses an IANA time zone name exactly as spelled (IANA names are case-sensitive). A name that
/// only differs in case is still refused, but the error suggests the correct spelling.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| {
        let same_but_case = chrono_tz::TZ_VARIANTS
            .iter()
            .find(|zone| zone.name().eq_ignore_ascii_case(name));
        match same_but_case {
            Some(zone) => ScheduleError::TimeZoneCase {
                value: name.to_owned(),
                suggestion: zone.name().to_owned(),
            },
            None => ScheduleError::UnknownTimeZone {
                value: name.to_owned(),
            },
        }
    })
}

/// The UTC instant at which the run for local calendar day `day` is due: the first occurrence of
/// `time` that day, or, if `time` falls in a spring-forward gap, `time` read with the offset in force
/// before the gap (RFC 5545 section 3.3.5).
pub fn due_instant(day: NaiveDate, time: SlotTime, zone: Tz) -> DateTime<Utc> {
    try_due_instant(day, time, zone).unwrap_or(if day.year() > 0 {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::MIN_UTC
    })
}

/// The first due instant strictly after `after`.
///
/// Saturates at `DateTime::<Utc>::MAX_UTC` at the very end of chrono's range.
pub fn next_run_after(after: DateTime<Utc>, time: SlotTime, zone: Tz) -> DateTime<Utc> {
    try_next_run_after(after, time, zone).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Due instants strictly after `after`, in strictly increasing order, one per local day, forever
/// (callers `.take(n)`); the iterator only ends at the end of chrono's range. A calendar day that a
/// zone skipped entirely shares its instant with the next day, and that instant is yielded once.
pub fn runs_after(
    after: DateTime<Utc>,
    time: SlotTime,
    zone: Tz,
) -> impl Iterator<Item = DateTime<Utc>> {
    std::iter::successors(try_next_run_after(after, time, zone), move |&previous| {
        try_next_run_after(previous, time, zone)
    })
}

/// The latest due instant at or before `now`: the slot that is due, or overdue, now.
///
/// Saturates at `DateTime::<Utc>::MIN_UTC` at the very start of chrono's range.
pub fn latest_run_at_or_before(now: DateTime<Utc>, time: SlotTime, zone: Tz) -> DateTime<Utc> {
    due_instants_near(now, time, zone)
        .filter(|&due| due <= now)
        .max()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One line of `scheduled-exports next` output: the UTC instant as RFC 3339 ending in `Z`, a space, and
/// the same instant in local time with its offset, e.g. `2026-03-08T07:30:00Z 2026-03-08T03:30:00-04:00`.
pub fn format_run_line(instant: DateTime<Utc>, zone: Tz) -> String {
    format!("{} {}", format_utc(instant), format_local(instant, zone))
}

/// The instant in local time as RFC 3339 with its numeric offset (`+00:00` for UTC, never `Z`), whole
/// seconds, e.g. `2026-03-08T03:30:00-04:00`.
pub fn format_local(instant: DateTime<Utc>, zone: Tz) -> String {
    let offset = zone.offset_from_utc_datetime(&instant.naive_utc()).fix();
    // chrono's formatter panics when the local reading falls off the end of its range; near the
    // range ends (only) render UTC instead, which is the same instant.
    if instant.naive_utc().checked_add_offset(offset).is_none() {
        return instant.to_rfc3339_opts(SecondsFormat::Secs, false);
    }
    instant
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn format_utc(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `due_instant`, or `None` when the result falls outside chrono's range.
fn try_due_instant(day: NaiveDate, time: SlotTime, zone: Tz) -> Option<DateTime<Utc>> {
    let wall = day.and_time(time.naive_time());
    // Use the offset lookup, not `from_local_datetime`: the latter also answers `None` when the
    // subtraction overflows, which must not be mistaken for a gap.
    let at = |offset: FixedOffset| wall.checked_sub_offset(offset).map(|utc| utc.and_utc());
    match zone.offset_from_local_datetime(&wall) {
        LocalResult::Single(offset) => at(offset.fix()),
        // A fold: the first occurrence is the earlier instant, whichever order chrono-tz lists them in.
        LocalResult::Ambiguous(one, other) => [one, other].iter().filter_map(|o| at(o.fix())).min(),
        LocalResult::None => at(offset_before_gap(wall, zone)?),
    }
}

/// The UTC offset in force just before the gap that swallows the wall reading `wall`.
///
/// The due instant is then `wall - offset`, which reads locally as `wall` plus the gap's length. That is
/// deliberately not "the end of the gap": the two only coincide when `wall` is the gap's first reading.
fn offset_before_gap(wall: NaiveDateTime, zone: Tz) -> Option<FixedOffset> {
    GapInfo::new(&wall, &zone)
        .and_then(|gap| gap.begin)
        .map(|(_, offset)| offset.fix())
        .or_else(|| offset_before_gap_by_stepping_back(wall, zone))
}

/// Fallback for `offset_before_gap` should chrono-tz not describe the gap: walk the wall clock back in
/// 15-minute steps to the last reading that exists and take its offset (the later one if that reading
/// is itself ambiguous, as that is the one adjacent to the gap). Bounded at two days, which covers the
/// longest gap in tzdata (a whole skipped calendar day, e.g. Pacific/Apia 2011-12-30).
fn offset_before_gap_by_stepping_back(wall: NaiveDateTime, zone: Tz) -> Option<FixedOffset> {
    (1..=192).find_map(|step| {
        let earlier = wall.checked_sub_signed(TimeDelta::minutes(15 * step))?;
        zone.offset_from_local_datetime(&earlier)
            .latest()
            .map(|offset| offset.fix())
    })
}

/// `next_run_after`, or `None` past the end of chrono's range.
fn try_next_run_after(after: DateTime<Utc>, time: SlotTime, zone: Tz) -> Option<DateTime<Utc>> {
    due_instants_near(after, time, zone)
        .filter(|&due| due > after)
        .min()
}

/// The due instants of the local days around `instant`, enough to contain both the latest one at or
/// before it and the first one after it.
///
/// Offsets are under 24 hours and a gap moves a run forward by at most a day, so day D's due instant
/// lies on a UTC date in D-1 ..= D+2; three days either side of the UTC date of `instant` is therefore
/// always enough. Taking the min/max over the window (rather than relying on days being in order)
/// also handles a skipped calendar day, whose run coincides with the next day's and is merged.
fn due_instants_near(
    instant: DateTime<Utc>,
    time: SlotTime,
    zone: Tz,
) -> impl Iterator<Item = DateTime<Utc>> {
    let utc_date = instant.date_naive();
    (-3..=3)
        .filter_map(move |days| utc_date.checked_add_signed(TimeDelta::days(days)))
        .filter_map(move |day| try_due_instant(day, time, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Tz {
        parse_time_zone(name).unwrap()
    }

    fn slot(text: &str) -> SlotTime {
        text.parse().unwrap()
    }

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Asserts the due instant for each `(day, slot)` as "UTC local" lines, as `next` would print them.
    fn assert_due(zone_name: &str, cases: &[((i32, u32, u32), &str, &str)]) {
        let tz = zone(zone_name);
        for &((y, m, d), time, expected) in cases {
            let due = due_instant(date(y, m, d), slot(time), tz);
            assert_eq!(
                format_run_line(due, tz),
                expected,
                "{zone_name} {y}-{m:02}-{d:02} {time}"
            );
        }
    }

    #[test]
    fn new_york_spring_forward_reads_gap_times_with_the_pre_gap_offset() {
        assert_due(
            "America/New_York",
            &[
                (
                    (2026, 3, 7),
                    "02:30",
                    "2026-03-07T07:30:00Z 2026-03-07T02:30:00-05:00",
                ),
                (
                    (2026, 3, 8),
                    "01:30",
                    "2026-03-08T06:30:00Z 2026-03-08T01:30:00-05:00",
                ),
                (
                    (2026, 3, 8),
                    "02:00",
                    "2026-03-08T07:00:00Z 2026-03-08T03:00:00-04:00",
                ),
                (
                    (2026, 3, 8),
                    "02:30",
                    "2026-03-08T07:30:00Z 2026-03-08T03:30:00-04:00",
                ),
                (
                    (2026, 3, 8),
                    "03:00",
                    "2026-03-08T07:00:00Z 2026-03-08T03:00:00-04:00",
                ),
                (
                    (2026, 3, 9),
                    "02:30",
                    "2026-03-09T06:30:00Z 2026-03-09T02:30:00-04:00",
                ),
            ],
        );
    }

    #[test]
    fn new_york_fall_back_runs_once_at_the_first_occurrence() {
        assert_due(
            "America/New_York",
            &[
                (
                    (2026, 10, 31),
                    "01:30",
                    "2026-10-31T05:30:00Z 2026-10-31T01:30:00-04:00",
                ),
                (
                    (2026, 11, 1),
                    "01:00",
                    "2026-11-01T05:00:00Z 2026-11-01T01:00:00-04:00",
                ),
                (
                    (2026, 11, 1),
                    "01:30",
                    "2026-11-01T05:30:00Z 2026-11-01T01:30:00-04:00",
                ),
                (
                    (2026, 11, 1),
                    "02:00",
                    "2026-11-01T07:00:00Z 2026-11-01T02:00:00-05:00",
                ),
                (
                    (2026, 11, 2),
                    "01:30",
                    "2026-11-02T06:30:00Z 2026-11-02T01:30:00-05:00",
                ),
                (
                    (2026, 1, 15),
                    "07:00",
                    "2026-01-15T12:00:00Z 2026-01-15T07:00:00-05:00",
                ),
                (
                    (2026, 7, 15),
                    "07:00",
                    "2026-07-15T11:00:00Z 2026-07-15T07:00:00-04:00",
                ),
            ],
        );
        let new_york = zone("America/New_York");
        let runs: Vec<_> = runs_after(utc("2026-11-01T00:00:00Z"), slot("01:30"), new_york)
            .take(2)
            .collect();
        assert_eq!(
            runs,
            [utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]
        );
    }

    #[test]
    fn berlin_both_transitions() {
        assert_due(
            "Europe/Berlin",
            &[
                (
                    (2026, 3, 29),
                    "01:30",
                    "2026-03-29T00:30:00Z 2026-03-29T01:30:00+01:00",
                ),
                (
                    (2026, 3, 29),
                    "02:00",
                    "2026-03-29T01:00:00Z 2026-03-29T03:00:00+02:00",
                ),
                (
                    (2026, 3, 29),
                    "02:30",
                    "2026-03-29T01:30:00Z 2026-03-29T03:30:00+02:00",
                ),
                (
                    (2026, 3, 29),
                    "03:00",
                    "2026-03-29T01:00:00Z 2026-03-29T03:00:00+02:00",
                ),
                (
                    (2026, 10, 25),
                    "02:00",
                    "2026-10-25T00:00:00Z 2026-10-25T02:00:00+02:00",
                ),
                (
                    (2026, 10, 25),
                    "02:30",
                    "2026-10-25T00:30:00Z 2026-10-25T02:30:00+02:00",
                ),
                (
                    (2026, 10, 25),
                    "03:00",
                    "2026-10-25T02:00:00Z 2026-10-25T03:00:00+01:00",
                ),
            ],
        );
    }

    #[test]
    fn lord_howe_half_hour_transitions() {
        // Gap 02:00 -> 02:30 (+10:30 -> +11:00) on 2026-10-04; fold 02:00 -> 01:30 on 2026-04-05.
        assert_due(
            "Australia/Lord_Howe",
            &[
                (
                    (2026, 10, 4),
                    "01:30",
                    "2026-10-03T15:00:00Z 2026-10-04T01:30:00+10:30",
                ),
                (
                    (2026, 10, 4),
                    "02:00",
                    "2026-10-03T15:30:00Z 2026-10-04T02:30:00+11:00",
                ),
                (
                    (2026, 10, 4),
                    "02:30",
                    "2026-10-03T15:30:00Z 2026-10-04T02:30:00+11:00",
                ),
                (
                    (2026, 4, 5),
                    "01:00",
                    "2026-04-04T14:00:00Z 2026-04-05T01:00:00+11:00",
                ),
                (
                    (2026, 4, 5),
                    "01:30",
                    "2026-04-04T14:30:00Z 2026-04-05T01:30:00+11:00",
                ),
                (
                    (2026, 4, 5),
                    "02:00",
                    "2026-04-04T15:30:00Z 2026-04-05T02:00:00+10:30",
                ),
            ],
        );
    }

    #[test]
    fn santiago_midnight_transitions() {
        // Fall back 2026-04-05 00:00 -> 2026-04-04 23:00 (-03 -> -04): 23:00..23:59 on 04-04 happen twice.
        // Spring forward 2026-09-06 00:00 -> 01:00 (-04 -> -03): 00:00..00:59 on 09-06 never happen.
        assert_due(
            "America/Santiago",
            &[
                (
                    (2026, 4, 4),
                    "22:30",
                    "2026-04-05T01:30:00Z 2026-04-04T22:30:00-03:00",
                ),
                (
                    (2026, 4, 4),
                    "23:00",
                    "2026-04-05T02:00:00Z 2026-04-04T23:00:00-03:00",
                ),
                (
                    (2026, 4, 4),
                    "23:30",
                    "2026-04-05T02:30:00Z 2026-04-04T23:30:00-03:00",
                ),
                (
                    (2026, 4, 5),
                    "00:00",
                    "2026-04-05T04:00:00Z 2026-04-05T00:00:00-04:00",
                ),
                (
                    (2026, 9, 5),
                    "23:30",
                    "2026-09-06T03:30:00Z 2026-09-05T23:30:00-04:00",
                ),
                (
                    (2026, 9, 6),
                    "00:00",
                    "2026-09-06T04:00:00Z 2026-09-06T01:00:00-03:00",
                ),
                (
                    (2026, 9, 6),
                    "00:30",
                    "2026-09-06T04:30:00Z 2026-09-06T01:30:00-03:00",
                ),
                (
                    (2026, 9, 6),
                    "01:00",
                    "2026-09-06T04:00:00Z 2026-09-06T01:00:00-03:00",
                ),
            ],
        );
        let santiago = zone("America/Santiago");
        for time in ["23:30", "00:00", "00:30"] {
            for (from, to) in [((2026, 4, 1), (2026, 4, 9)), ((2026, 9, 2), (2026, 9, 10))] {
                let start = due_instant(date(from.0, from.1, from.2), slot(time), santiago);
                let end = due_instant(date(to.0, to.1, to.2), slot(time), santiago);
                let runs: Vec<_> = runs_after(start, slot(time), santiago)
                    .take_while(|&run| run <= end)
                    .collect();
                assert_eq!(runs.len(), 8, "{time} from {from:?}: {runs:?}");
            }
        }
    }

    #[test]
    fn chatham_gap_is_read_with_the_pre_gap_offset_not_moved_to_its_end() {
        // Gap 02:45 -> 03:45 (+12:45 -> +13:45) on 2026-09-27: 03:00 reads as 04:00, not 03:45.
        assert_due(
            "Pacific/Chatham",
            &[
                (
                    (2026, 9, 27),
                    "02:30",
                    "2026-09-26T13:45:00Z 2026-09-27T02:30:00+12:45",
                ),
                (
                    (2026, 9, 27),
                    "03:00",
                    "2026-09-26T14:15:00Z 2026-09-27T04:00:00+13:45",
                ),
                (
                    (2026, 9, 27),
                    "03:30",
                    "2026-09-26T14:45:00Z 2026-09-27T04:30:00+13:45",
                ),
                (
                    (2026, 9, 27),
                    "04:00",
                    "2026-09-26T14:15:00Z 2026-09-27T04:00:00+13:45",
                ),
            ],
        );
    }

    #[test]
    fn kathmandu_and_utc() {
        assert_due(
            "Asia/Kathmandu",
            &[(
                (2026, 6, 1),
                "07:00",
                "2026-06-01T01:15:00Z 2026-06-01T07:00:00+05:45",
            )],
        );
        assert_due(
            "UTC",
            &[
                (
                    (2026, 3, 8),
                    "00:00",
                    "2026-03-08T00:00:00Z 2026-03-08T00:00:00+00:00",
                ),
                (
                    (2026, 12, 31),
                    "23:30",
                    "2026-12-31T23:30:00Z 2026-12-31T23:30:00+00:00",
                ),
            ],
        );
    }

    /// Independent reference using only UTC -> local lookups (never chrono-tz's local -> UTC search or
    /// its gap description). A wall reading occurs at instant x exactly when x + offset(x) == wall, so
    /// the first occurrence is the smallest `wall - o` over the zone's nearby offsets `o` that satisfy
    /// it, which is what a minute-by-minute scan would find. If none does (a gap), scan minute by minute
    /// for the moment the local clock jumps past `wall` and apply the offset in force just before it.
    struct Reference {
        zone: Tz,
        offsets: Vec<FixedOffset>,
        day: NaiveDate,
    }

    impl Reference {
        fn for_day(zone: Tz, day: NaiveDate) -> Reference {
            let start = day.and_time(NaiveTime::MIN) - TimeDelta::hours(30);
            let mut offsets: Vec<FixedOffset> = (0..84)
                .map(|hour| Reference::offset_at(zone, start + TimeDelta::hours(hour)))
                .collect();
            offsets.sort_by_key(|offset| offset.local_minus_utc());
            offsets.dedup();
            Reference { zone, offsets, day }
        }

        fn offset_at(zone: Tz, utc: NaiveDateTime) -> FixedOffset {
            zone.offset_from_utc_datetime(&utc).fix()
        }

        fn due(&self, time: SlotTime) -> DateTime<Utc> {
            let wall = self.day.and_time(time.naive_time());
            let first_occurrence = self
                .offsets
                .iter()
                .map(|&offset| wall - TimeDelta::seconds(offset.local_minus_utc().into()))
                .filter(|&x| {
                    x + TimeDelta::seconds(Self::offset_at(self.zone, x).local_minus_utc().into())
                        == wall
                })
                .min();
            let utc = first_occurrence.unwrap_or_else(|| {
                let mut x = wall - TimeDelta::hours(30);
                loop {
                    let offset = Self::offset_at(self.zone, x);
                    if x + TimeDelta::seconds(offset.local_minus_utc().into()) > wall {
                        let before = Self::offset_at(self.zone, x - TimeDelta::minutes(1));
                        break wall - TimeDelta::seconds(before.local_minus_utc().into());
                    }
                    x += TimeDelta::minutes(1);
                }
            });
            utc.and_utc()
        }
    }

    const REFERENCE_ZONES: [&str; 8] = [
        "America/New_York",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Kathmandu",
        "Asia/Tehran",
        "Pacific/Chatham",
        "UTC",
    ];

    #[test]
    fn every_slot_of_every_day_of_2026_matches_the_reference() {
        for name in REFERENCE_ZONES {
            let tz = zone(name);
            for day in date(2026, 1, 1)
                .iter_days()
                .take_while(|day| day.year() == 2026)
            {
                let reference = Reference::for_day(tz, day);
                for time in SlotTime::all() {
                    let expected = reference.due(time);
                    assert_eq!(due_instant(day, time, tz), expected, "{name} {day} {time}");
                    assert_eq!(
                        next_run_after(expected - TimeDelta::seconds(1), time, tz),
                        expected,
                        "{name} {day} {time}"
                    );
                    assert_eq!(latest_run_at_or_before(expected, time, tz), expected);
                }
            }
        }
    }

    #[test]
    fn every_slot_on_new_york_transition_days_runs_once() {
        let new_york = zone("America/New_York");
        for transition_day in [date(2026, 3, 8), date(2026, 11, 1)] {
            let reference = Reference::for_day(new_york, transition_day);
            let day_before = due_instant(
                transition_day.pred_opt().unwrap(),
                SlotTime::MIDNIGHT,
                new_york,
            );
            for time in SlotTime::all() {
                let runs: Vec<_> = runs_after(day_before, time, new_york).take(3).collect();
                let on_day: Vec<_> = runs
                    .iter()
                    .filter(|&&run| run.with_timezone(&new_york).date_naive() == transition_day)
                    .collect();
                assert_eq!(on_day, [&reference.due(time)], "{transition_day} {time}");
            }
        }
    }

    #[test]
    fn the_stepping_fallback_agrees_with_chrono_tz_gap_info() {
        let mut gaps_seen = 0;
        for name in REFERENCE_ZONES
            .into_iter()
            .chain(["Pacific/Apia", "Pacific/Kwajalein"])
        {
            let tz = zone(name);
            for year in [1993, 2011, 2026, 2099] {
                for day in date(year, 1, 1)
                    .iter_days()
                    .take_while(|day| day.year() == year)
                {
                    for time in SlotTime::all() {
                        let wall = day.and_time(time.naive_time());
                        if tz.offset_from_local_datetime(&wall) == LocalResult::None {
                            gaps_seen += 1;
                            let from_gap_info = GapInfo::new(&wall, &tz).and_then(|gap| gap.begin);
                            assert_eq!(
                                from_gap_info.map(|(_, offset)| offset.fix()),
                                offset_before_gap_by_stepping_back(wall, tz),
                                "{name} {wall}"
                            );
                        }
                    }
                }
            }
        }
        assert!(gaps_seen > 50, "{gaps_seen}");
    }

    #[test]
    fn runs_after_yields_one_run_per_local_day_strictly_increasing() {
        for name in REFERENCE_ZONES {
            let tz = zone(name);
            for time in SlotTime::all() {
                let start = due_instant(date(2025, 12, 31), time, tz);
                let runs: Vec<_> = runs_after(start, time, tz).take(365).collect();
                let days = date(2026, 1, 1).iter_days();
                for (run, day) in runs.iter().zip(days) {
                    assert_eq!(*run, due_instant(day, time, tz), "{name} {time} {day}");
                }
                for pair in runs.windows(2) {
                    assert!(pair[0] < pair[1], "{name} {time}: {pair:?}");
                    let (a, b) = (pair[0].with_timezone(&tz), pair[1].with_timezone(&tz));
                    assert_eq!(
                        b.date_naive(),
                        a.date_naive().succ_opt().unwrap(),
                        "{name} {time}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_skipped_calendar_day_does_not_repeat_a_run() {
        // Samoa skipped 2011-12-30 (-10:00 -> +14:00 at local midnight); its 07:00 reads with the
        // pre-gap offset, which is the same instant as 12-31 07:00, so there is one run for both.
        let apia = zone("Pacific/Apia");
        let runs: Vec<_> = runs_after(utc("2011-12-29T00:00:00Z"), slot("07:00"), apia)
            .take(3)
            .map(|run| format_run_line(run, apia))
            .collect();
        assert_eq!(
            runs,
            [
                "2011-12-29T17:00:00Z 2011-12-29T07:00:00-10:00",
                "2011-12-30T17:00:00Z 2011-12-31T07:00:00+14:00",
                "2011-12-31T17:00:00Z 2012-01-01T07:00:00+14:00",
            ]
        );
    }

    #[test]
    fn next_run_after_edges() {
        let new_york = zone("America/New_York");
        let berlin = zone("Europe/Berlin");
        let due = utc("2026-03-08T07:30:00Z");
        let at_0230 = slot("02:30");
        assert_eq!(
            next_run_after(due, at_0230, new_york),
            utc("2026-03-09T06:30:00Z")
        );
        assert_eq!(
            next_run_after(due - TimeDelta::seconds(1), at_0230, new_york),
            due
        );
        assert_eq!(
            next_run_after(due - TimeDelta::nanoseconds(1), at_0230, new_york),
            due
        );
        // `after` at the instant the clocks jump (07:00Z, local 01:59:59 -> 03:00) and right after it.
        assert_eq!(
            next_run_after(utc("2026-03-08T07:00:00Z"), at_0230, new_york),
            due
        );
        assert_eq!(
            next_run_after(utc("2026-03-08T07:10:00Z"), at_0230, new_york),
            due
        );
        // `after` inside the fold, in both occurrences of 01:xx.
        let at_0130 = slot("01:30");
        let first = utc("2026-11-01T05:30:00Z");
        let next_day = utc("2026-11-02T06:30:00Z");
        assert_eq!(
            next_run_after(utc("2026-11-01T05:10:00Z"), at_0130, new_york),
            first
        );
        assert_eq!(next_run_after(first, at_0130, new_york), next_day);
        assert_eq!(
            next_run_after(utc("2026-11-01T06:10:00Z"), at_0130, new_york),
            next_day
        );
        assert_eq!(
            next_run_after(utc("2026-11-01T06:30:00Z"), at_0130, new_york),
            next_day
        );
        // Berlin fold: 02:30 CEST is the run; 02:30 CET (one hour later) is not.
        let at_berlin_0230 = slot("02:30");
        assert_eq!(
            next_run_after(utc("2026-10-25T00:00:00Z"), at_berlin_0230, berlin),
            utc("2026-10-25T00:30:00Z")
        );
        assert_eq!(
            next_run_after(utc("2026-10-25T00:30:00Z"), at_berlin_0230, berlin),
            utc("2026-10-26T01:30:00Z")
        );
    }

    #[test]
    fn latest_run_at_or_before_finds_the_due_or_overdue_slot() {
        let new_york = zone("America/New_York");
        let at_0700 = slot("07:00");
        let due = utc("2026-03-09T11:00:00Z");
        assert_eq!(latest_run_at_or_before(due, at_0700, new_york), due);
        assert_eq!(
            latest_run_at_or_before(due - TimeDelta::seconds(1), at_0700, new_york),
            utc("2026-03-08T11:00:00Z")
        );
        assert_eq!(
            latest_run_at_or_before(utc("2026-03-10T10:59:59Z"), at_0700, new_york),
            due
        );
        // Inside the fold, after the first 01:30 but before the second: the first one is the latest.
        assert_eq!(
            latest_run_at_or_before(utc("2026-11-01T06:45:00Z"), slot("01:30"), new_york),
            utc("2026-11-01T05:30:00Z")
        );
    }

    #[test]
    fn parses_valid_times() {
        for (text, hour, minute) in [("00:00", 0, 0), ("23:30", 23, 30), ("07:00", 7, 0)] {
            let time = slot(text);
            assert_eq!((time.hour(), time.minute()), (hour, minute));
            assert_eq!(time.to_string(), text);
        }
        let all: Vec<_> = SlotTime::all().collect();
        assert_eq!(all.len(), 48);
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(
            all.iter()
                .all(|time| time.to_string().parse::<SlotTime>() == Ok(*time))
        );
    }

    #[test]
    fn refuses_invalid_times_naming_the_value() {
        for text in [
            "07:15", "24:00", "7:00", "07:0", "07:00:00", " 07:00", "", "ab:cd", "-1:00", "07:00 ",
            "０7:00",
        ] {
            let error = text.parse::<SlotTime>().unwrap_err();
            assert_eq!(
                error,
                ScheduleError::InvalidTime {
                    value: text.to_owned()
                }
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid time {text:?}: "))
            );
        }
        assert_eq!(
            "07:15".parse::<SlotTime>().unwrap_err().to_string(),
            r#"invalid time "07:15": use HH:MM in 24-hour form on a 30-minute step (00:00 ... 23:30), e.g. "07:00""#
        );
    }

    #[test]
    fn parses_time_zones_case_sensitively() {
        assert_eq!(
            parse_time_zone("America/New_York"),
            Ok(Tz::America__New_York)
        );
        assert_eq!(parse_time_zone("UTC"), Ok(Tz::UTC));
        assert_eq!(
            parse_time_zone("Mars/Olympus").unwrap_err().to_string(),
            r#"unknown time zone "Mars/Olympus": use an IANA name such as "America/New_York" or "UTC""#
        );
        assert_eq!(
            parse_time_zone(""),
            Err(ScheduleError::UnknownTimeZone {
                value: String::new()
            })
        );
        assert_eq!(
            parse_time_zone("america/new_york").unwrap_err().to_string(),
            r#"unknown time zone "america/new_york": IANA names are case-sensitive, use "America/New_York""#
        );
        assert!(parse_time_zone(" UTC").is_err());
    }

    #[test]
    fn formats_run_lines() {
        let at = utc("2026-03-08T07:30:00Z");
        assert_eq!(
            format_run_line(at, zone("America/New_York")),
            "2026-03-08T07:30:00Z 2026-03-08T03:30:00-04:00"
        );
        assert_eq!(
            format_local(at, zone("America/New_York")),
            "2026-03-08T03:30:00-04:00"
        );
        assert_eq!(
            format_run_line(at, zone("Asia/Kathmandu")),
            "2026-03-08T07:30:00Z 2026-03-08T13:15:00+05:45"
        );
        assert_eq!(
            format_run_line(at, Tz::UTC),
            "2026-03-08T07:30:00Z 2026-03-08T07:30:00+00:00"
        );
        // Sub-second parts are dropped, never rounded up into the next second.
        let fractional = at + TimeDelta::milliseconds(999);
        assert_eq!(
            format_run_line(fractional, Tz::UTC),
            "2026-03-08T07:30:00Z 2026-03-08T07:30:00+00:00"
        );
    }

    #[test]
    fn total_at_the_ends_of_the_range() {
        let zones = [zone("Pacific/Kiritimati"), zone("Pacific/Niue"), Tz::UTC];
        for tz in zones {
            for instant in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                for time in [SlotTime::MIDNIGHT, slot("23:30")] {
                    let _ = next_run_after(instant, time, tz);
                    let _ = latest_run_at_or_before(instant, time, tz);
                    let _ = runs_after(instant, time, tz).take(3).count();
                    let _ = format_run_line(instant, tz);
                    let _ = due_instant(instant.date_naive(), time, tz);
                }
            }
            let _ = due_instant(NaiveDate::MAX, slot("23:30"), tz);
            let _ = due_instant(NaiveDate::MIN, SlotTime::MIDNIGHT, tz);
        }
    }

    #[test]
    fn daylight_saving_continues_far_into_the_future() {
        // chrono-tz 0.10 materialises transitions only up to 2099; from 2100 on every zone stays on
        // its last offset (standard time), so 2100 is not asserted here.
        assert_due(
            "America/New_York",
            &[
                (
                    (2038, 3, 14),
                    "02:30",
                    "2038-03-14T07:30:00Z 2038-03-14T03:30:00-04:00",
                ),
                (
                    (2099, 7, 1),
                    "07:00",
                    "2099-07-01T11:00:00Z 2099-07-01T07:00:00-04:00",
                ),
            ],
        );
    }
}
