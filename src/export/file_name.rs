//! Names of delivered files: `{fileType}-{YYYYMMDD}T{HHMMSS}Z.csv`, the UTC instant of the slot.
//!
//! Retention deletes only names that parse back exactly, so a customer's `interactions-final.csv`
//! or `interactions-20260101T000000Z.csv.bak` is never mistaken for ours.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

use crate::resource::FileType;

const STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The file name for a slot; sub-second parts of the instant are dropped.
pub fn export_file_name(file_type: FileType, slot: DateTime<Utc>) -> String {
    format!(
        "{}-{}.csv",
        file_type.as_str(),
        slot.trunc_subsecs(0).format(STAMP_FORMAT)
    )
}

/// The slot instant of a file name of this file type, or `None` when the name is not exactly ours.
pub fn parse_export_file_name(file_type: FileType, name: &str) -> Option<DateTime<Utc>> {
    let stamp = name
        .strip_prefix(file_type.as_str())?
        .strip_prefix('-')?
        .strip_suffix(".csv")?;
    // chrono accepts some variable-width fields; insist on the exact width we write.
    if stamp.len() != 16 || !stamp.is_ascii() {
        return None;
    }
    let parsed = NaiveDateTime::parse_from_str(stamp, STAMP_FORMAT)
        .ok()?
        .and_utc();
    (export_file_name(file_type, parsed) == name).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_use_the_utc_instant_of_the_slot() {
        let slot = Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap();
        assert_eq!(
            export_file_name(FileType::Interactions, slot),
            "interactions-20260308T073000Z.csv"
        );
        assert_eq!(
            export_file_name(
                FileType::Proposals,
                slot + chrono::Duration::milliseconds(999)
            ),
            "proposals-20260308T073000Z.csv"
        );
    }

    #[test]
    fn only_exact_names_of_the_same_type_parse_back() {
        let slot = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(
            parse_export_file_name(FileType::Interactions, "interactions-20261130T120000Z.csv"),
            Some(slot)
        );
        for name in [
            "proposals-20261130T120000Z.csv",
            "interactions-20261130T120000Z.csv.bak",
            "interactions-20261130T120000Z.CSV",
            "interactions-20261130T120000.csv",
            "interactions-2026113T120000Z.csv",
            "interactions-20261130T1200000Z.csv",
            "interactions-20261332T120000Z.csv",
            "interactions-20261130T250000Z.csv",
            "interactions-final.csv",
            "xinteractions-20261130T120000Z.csv",
            "interactions-+0261130T120000Z.csv",
            "notes.csv",
            "",
        ] {
            assert_eq!(
                parse_export_file_name(FileType::Interactions, name),
                None,
                "{name}"
            );
        }
    }
}
