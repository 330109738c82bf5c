//! Names of delivered files: `{fileType}-{YYYYMMDD}T{HHMMSS}Z.csv`, the UTC instant of the slot,
//! with `.gz` when compressed, and `NAME.sha256` for the checksum file beside one.
//!
//! Retention deletes only names that parse back exactly, so a customer's `interactions-final.csv`
//! or `interactions-20260101T000000Z.csv.bak` is never mistaken for ours.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

use crate::resource::{Compression, FileType, ScheduledExportSpec};

const STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const STAMP_LEN: usize = 16;
const CHECKSUM_SUFFIX: &str = ".sha256";

/// How a delivered file's bytes are encoded, which fixes its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileFormat {
    pub compression: Compression,
    /// OpenPGP-encrypted (after compression).
    pub encrypted: bool,
}

impl FileFormat {
    /// Every format a file of ours may have been delivered in. A file keeps its name when the spec
    /// changes, so recognizing our files means knowing every suffix.
    const ALL: [FileFormat; 4] = [
        FileFormat {
            compression: Compression::None,
            encrypted: false,
        },
        FileFormat {
            compression: Compression::Gzip,
            encrypted: false,
        },
        FileFormat {
            compression: Compression::None,
            encrypted: true,
        },
        FileFormat {
            compression: Compression::Gzip,
            encrypted: true,
        },
    ];

    /// The format the spec asks for.
    pub fn of(spec: &ScheduledExportSpec) -> Self {
        Self {
            compression: spec.compression,
            encrypted: spec.encryption.is_some(),
        }
    }

    pub fn suffix(self) -> &'static str {
        match (self.compression, self.encrypted) {
            (Compression::None, false) => ".csv",
            (Compression::Gzip, false) => ".csv.gz",
            (Compression::None, true) => ".csv.pgp",
            (Compression::Gzip, true) => ".csv.gz.pgp",
        }
    }
}

/// The file name for a slot; sub-second parts of the instant are dropped.
pub fn export_file_name(file_type: FileType, format: FileFormat, slot: DateTime<Utc>) -> String {
    format!(
        "{}-{}{}",
        file_type.as_str(),
        slot.trunc_subsecs(0).format(STAMP_FORMAT),
        format.suffix()
    )
}

/// The slot instant of a file name of this file type in any of our formats, or `None` when the
/// name is not exactly ours.
pub fn parse_export_file_name(file_type: FileType, name: &str) -> Option<DateTime<Utc>> {
    let rest = name.strip_prefix(file_type.as_str())?.strip_prefix('-')?;
    // `get` refuses a cut inside a multi-byte character.
    let (stamp, suffix) = (rest.get(..STAMP_LEN)?, rest.get(STAMP_LEN..)?);
    let format = FileFormat::ALL
        .into_iter()
        .find(|format| format.suffix() == suffix)?;
    if !stamp.is_ascii() {
        return None;
    }
    let parsed = NaiveDateTime::parse_from_str(stamp, STAMP_FORMAT)
        .ok()?
        .and_utc();
    // chrono accepts some variable-width fields; insist on the exact form we write.
    (export_file_name(file_type, format, parsed) == name).then_some(parsed)
}

/// The checksum file published beside a data file.
pub fn checksum_file_name(data_file: &str) -> String {
    format!("{data_file}{CHECKSUM_SUFFIX}")
}

/// The data file a checksum file of ours stands beside, or `None` when the name is not a
/// checksum file of this file type.
pub fn checksum_data_file(file_type: FileType, name: &str) -> Option<&str> {
    let data = name.strip_suffix(CHECKSUM_SUFFIX)?;
    parse_export_file_name(file_type, data).map(|_| data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_use_the_utc_instant_of_the_slot() {
        let slot = Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap();
        assert_eq!(
            export_file_name(FileType::Interactions, FileFormat::default(), slot),
            "interactions-20260308T073000Z.csv"
        );
        assert_eq!(
            export_file_name(
                FileType::Proposals,
                FileFormat::default(),
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

    #[test]
    fn gzip_files_end_in_csv_gz_and_parse_back() {
        let slot = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let gzip = FileFormat {
            compression: Compression::Gzip,
            encrypted: false,
        };
        let name = export_file_name(FileType::Interactions, gzip, slot);
        assert_eq!(name, "interactions-20261130T120000Z.csv.gz");
        assert_eq!(
            parse_export_file_name(FileType::Interactions, &name),
            Some(slot)
        );
        for name in [
            "interactions-20261130T120000Z.csv.gz.bak",
            "interactions-20261130T120000Z.gz",
            "interactions-20261130T120000Z.csv.GZ",
            "interactions-20261130T120000Z.csv.gz.sha256",
        ] {
            assert_eq!(
                parse_export_file_name(FileType::Interactions, name),
                None,
                "{name}"
            );
        }
    }

    #[test]
    fn encrypted_files_end_in_pgp_after_any_compression_suffix() {
        let slot = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        for (compression, name) in [
            (Compression::None, "proposals-20261130T120000Z.csv.pgp"),
            (Compression::Gzip, "proposals-20261130T120000Z.csv.gz.pgp"),
        ] {
            let format = FileFormat {
                compression,
                encrypted: true,
            };
            assert_eq!(export_file_name(FileType::Proposals, format, slot), name);
            assert_eq!(
                parse_export_file_name(FileType::Proposals, name),
                Some(slot)
            );
        }
        assert_eq!(
            parse_export_file_name(FileType::Proposals, "proposals-20261130T120000Z.pgp"),
            None
        );
    }

    #[test]
    fn checksum_files_name_their_data_file() {
        let data = "interactions-20261130T120000Z.csv.gz";
        let checksum = checksum_file_name(data);
        assert_eq!(checksum, "interactions-20261130T120000Z.csv.gz.sha256");
        assert_eq!(
            checksum_data_file(FileType::Interactions, &checksum),
            Some(data)
        );
        assert_eq!(checksum_data_file(FileType::Proposals, &checksum), None);
        assert_eq!(checksum_data_file(FileType::Interactions, data), None);
        assert_eq!(
            checksum_data_file(FileType::Interactions, "notes.csv.sha256"),
            None
        );
    }
}
