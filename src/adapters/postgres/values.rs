//! Columns that travel in binary COPY in their type's own binary form, and the cell text made of
//! them here.
//!
//! Rendering in the server (`to_char`, `date_out`, `int8out`, `array_to_string`) costs the
//! database more than the rest of a large export together, and the database's core is the
//! scarcest. The binary forms of these types are fixed-width big-endian integers, which the client
//! turns into the same text in a few nanoseconds. Each variant says which server rendering it
//! reproduces; a bed test compares the two over edge values (BC dates, infinities, far years).

use super::SourceError;

/// How a selected column travels, and so how its cell's text is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// `text`: the bytes are the cell.
    Text,
    /// `int8`, in decimal, as `::text` renders it.
    Int8,
    /// `boolean`: `true` or `false`, as `::text` renders it.
    Bool,
    /// `date`, as `::text` renders it under `DateStyle = ISO`: `2024-03-05`, `0044-03-15 BC`,
    /// `infinity`.
    Date,
    /// `timestamptz`, in UTC with microseconds, as
    /// `to_char(v AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` renders it:
    /// `2024-03-05T14:07:09.123456Z`. `to_char` gives NULL for ±infinity, and so does this.
    Timestamp,
    /// `text[]`: the elements joined with `;`, NULL elements left out, as
    /// `array_to_string(v, ';')` renders it.
    TextList,
}

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for dates and timestamps.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;

/// Appends the cell text of a non-NULL `value` of type `wire` to `out`; `false` when the value has
/// no text and the cell is NULL (an infinite timestamp). [`WireType::Text`] needs no rendering and
/// is appended as is.
pub fn render(wire: WireType, value: &[u8], out: &mut Vec<u8>) -> Result<bool, SourceError> {
    match wire {
        WireType::Text => out.extend_from_slice(value),
        WireType::Int8 => push_integer(out, i64::from_be_bytes(fixed(value, "int8")?)),
        WireType::Bool => {
            let [byte] = fixed(value, "boolean")?;
            out.extend_from_slice(if byte != 0 { b"true" } else { b"false" });
        }
        WireType::Date => push_date(out, i32::from_be_bytes(fixed(value, "date")?)),
        WireType::Timestamp => {
            return Ok(push_timestamp(
                out,
                i64::from_be_bytes(fixed(value, "timestamptz")?),
            ));
        }
        WireType::TextList => push_text_list(out, value)?,
    }
    Ok(true)
}

fn fixed<const N: usize>(value: &[u8], type_name: &str) -> Result<[u8; N], SourceError> {
    value.try_into().map_err(|_| {
        SourceError::MalformedCopy(format!(
            "a {type_name} value of {} bytes, expected {N}",
            value.len()
        ))
    })
}

/// `date`'s ISO output: `YYYY-MM-DD` with at least four year digits, years before 1 as `... BC`.
fn push_date(out: &mut Vec<u8>, days: i32) {
    match days {
        i32::MAX => out.extend_from_slice(b"infinity"),
        i32::MIN => out.extend_from_slice(b"-infinity"),
        days => {
            let (year, month, day) = civil_from_days(i64::from(days) + POSTGRES_EPOCH_DAYS);
            let before_christ = year <= 0;
            push_padded(out, if before_christ { 1 - year } else { year }, 4);
            out.push(b'-');
            push_padded(out, i64::from(month), 2);
            out.push(b'-');
            push_padded(out, i64::from(day), 2);
            if before_christ {
                out.extend_from_slice(b" BC");
            }
        }
    }
}

/// The `to_char` rendering of [`WireType::Timestamp`]; `false` for ±infinity. `YYYY` shows years
/// before 1 as their BC number without a marker, so this does too.
fn push_timestamp(out: &mut Vec<u8>, micros: i64) -> bool {
    if micros == i64::MAX || micros == i64::MIN {
        return false;
    }
    let days = micros.div_euclid(DAY_MICROS);
    let of_day = micros.rem_euclid(DAY_MICROS);
    let (year, month, day) = civil_from_days(days + POSTGRES_EPOCH_DAYS);
    push_padded(out, if year <= 0 { 1 - year } else { year }, 4);
    out.push(b'-');
    push_padded(out, i64::from(month), 2);
    out.push(b'-');
    push_padded(out, i64::from(day), 2);
    out.push(b'T');
    let seconds = of_day / 1_000_000;
    push_padded(out, seconds / 3600, 2);
    out.push(b':');
    push_padded(out, seconds / 60 % 60, 2);
    out.push(b':');
    push_padded(out, seconds % 60, 2);
    out.push(b'.');
    push_padded(out, of_day % 1_000_000, 6);
    out.push(b'Z');
    true
}

/// The proleptic Gregorian date of a day counted from 1970-01-01, with astronomical years (0 is
/// 1 BC), as PostgreSQL's calendar has it. Valid over PostgreSQL's whole range.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Counted from 0000-03-01, so that the leap day ends each 400-year era's year.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An array's binary form: dimensions, a has-NULL flag, the element type, each dimension's size
/// and lower bound, then every element (in row-major order) as a length (-1 for NULL) and bytes.
fn push_text_list(out: &mut Vec<u8>, value: &[u8]) -> Result<(), SourceError> {
    let malformed = || SourceError::MalformedCopy("a malformed text[] value".to_string());
    let mut reader = Reader { data: value };
    let dimensions = reader.i32().ok_or_else(malformed)?;
    if dimensions == 0 {
        return Ok(());
    }
    let _has_null = reader.i32().ok_or_else(malformed)?;
    let _element_type = reader.i32().ok_or_else(malformed)?;
    let mut elements: u64 = 1;
    for _ in 0..dimensions {
        let size = reader.i32().ok_or_else(malformed)?;
        let _lower_bound = reader.i32().ok_or_else(malformed)?;
        elements = elements.saturating_mul(u64::try_from(size).map_err(|_| malformed())?);
    }
    let mut first = true;
    for _ in 0..elements {
        let length = reader.i32().ok_or_else(malformed)?;
        let Ok(length) = usize::try_from(length) else {
            continue; // NULL
        };
        let element = reader.take(length).ok_or_else(malformed)?;
        if !first {
            out.push(b';');
        }
        out.extend_from_slice(element);
        first = false;
    }
    if !reader.data.is_empty() {
        return Err(malformed());
    }
    Ok(())
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        if self.data.len() < length {
            return None;
        }
        let (taken, rest) = self.data.split_at(length);
        self.data = rest;
        Some(taken)
    }

    fn i32(&mut self) -> Option<i32> {
        let bytes = self.take(4)?;
        Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// `value` in decimal.
fn push_integer(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_digits(out, value.unsigned_abs(), 1);
}

/// `value` (never negative here) in decimal, zero-padded to `width`.
fn push_padded(out: &mut Vec<u8>, value: i64, width: usize) {
    push_digits(out, value.unsigned_abs(), width);
}

fn push_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let start = at.min(digits.len().saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(wire: WireType, value: &[u8]) -> Option<String> {
        let mut out = Vec::new();
        render(wire, value, &mut out)
            .expect("well-formed")
            .then(|| String::from_utf8(out).expect("utf-8"))
    }

    fn timestamp(micros: i64) -> Option<String> {
        rendered(WireType::Timestamp, &micros.to_be_bytes())
    }

    fn date(days: i32) -> Option<String> {
        rendered(WireType::Date, &days.to_be_bytes())
    }

    #[test]
    fn integers_and_booleans_read_as_the_server_writes_them() {
        for value in [0, 7, -7, 1_000_000, i64::MAX, i64::MIN] {
            assert_eq!(
                rendered(WireType::Int8, &value.to_be_bytes()),
                Some(value.to_string())
            );
        }
        assert_eq!(rendered(WireType::Bool, &[1]).as_deref(), Some("true"));
        assert_eq!(rendered(WireType::Bool, &[0]).as_deref(), Some("false"));
    }

    #[test]
    fn timestamps_are_utc_rfc3339_with_microseconds() {
        assert_eq!(timestamp(0).as_deref(), Some("2000-01-01T00:00:00.000000Z"));
        // 2024-03-05T14:07:09.123456Z
        let micros = (8830 * 86_400 + 14 * 3600 + 7 * 60 + 9) * 1_000_000 + 123_456;
        assert_eq!(
            timestamp(micros).as_deref(),
            Some("2024-03-05T14:07:09.123456Z")
        );
        // Before the epoch, a microsecond before midnight.
        assert_eq!(
            timestamp(-1).as_deref(),
            Some("1999-12-31T23:59:59.999999Z")
        );
        assert_eq!(timestamp(i64::MAX), None);
        assert_eq!(timestamp(i64::MIN), None);
    }

    #[test]
    fn dates_follow_the_iso_output_with_bc_and_infinities() {
        assert_eq!(date(0).as_deref(), Some("2000-01-01"));
        assert_eq!(
            date(60).as_deref(),
            Some("2000-03-01"),
            "2000 is a leap year"
        );
        assert_eq!(date(-36_524 + 59).as_deref(), Some("1900-03-01"));
        assert_eq!(date(-730_120).as_deref(), Some("0001-12-31 BC"));
        assert_eq!(date(i32::MAX).as_deref(), Some("infinity"));
        assert_eq!(date(i32::MIN).as_deref(), Some("-infinity"));
        // Far years keep every digit.
        assert_eq!(date(2_921_940).as_deref(), Some("10000-01-01"));
    }

    fn text_array(dimensions: &[i32], elements: &[Option<&str>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(dimensions.len() as i32).to_be_bytes());
        out.extend_from_slice(&i32::from(elements.contains(&None)).to_be_bytes());
        out.extend_from_slice(&25i32.to_be_bytes());
        for size in dimensions {
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
        }
        for element in elements {
            match element {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(text) => {
                    out.extend_from_slice(&(text.len() as i32).to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn text_lists_join_with_semicolons_and_drop_nulls() {
        let list = |dimensions: &[i32], elements: &[Option<&str>]| {
            rendered(WireType::TextList, &text_array(dimensions, elements))
        };
        assert_eq!(list(&[], &[]).as_deref(), Some(""));
        assert_eq!(
            list(&[3], &[Some("Ann"), None, Some("Bo")]).as_deref(),
            Some("Ann;Bo")
        );
        assert_eq!(list(&[2], &[Some(""), Some("x")]).as_deref(), Some(";x"));
        assert_eq!(
            list(&[2, 2], &[Some("a"), Some("b"), Some("c"), Some("d")]).as_deref(),
            Some("a;b;c;d")
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let mut out = Vec::new();
        assert!(render(WireType::Int8, &[1, 2, 3], &mut out).is_err());
        assert!(render(WireType::Timestamp, &[], &mut out).is_err());
        let mut truncated = text_array(&[2], &[Some("a"), Some("b")]);
        truncated.pop();
        assert!(render(WireType::TextList, &truncated, &mut out).is_err());
        let mut trailing = text_array(&[1], &[Some("a")]);
        trailing.push(0);
        assert!(render(WireType::TextList, &trailing, &mut out).is_err());
    }
}
