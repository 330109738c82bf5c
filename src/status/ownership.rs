//! The record of what an object itself delivered (name, size, sha256): the only proof the
//! operator accepts that a file on a server is this object's. Names prove nothing: two objects
//! delivering the same file type into one directory (whatever host alias or path spelling they
//! use) produce the same names, and a customer may keep a same-named file anywhere.

use chrono::{DateTime, Utc};

use sha2::{Digest, Sha256};

use crate::resource::{DeliveredFile, ScheduledExportStatus};

/// Entries kept at most (a daily schedule with 90 days of retention needs about 90). Beyond
/// that the oldest are dropped: their files are then never pruned, which is the safe side.
pub const MAX_RECORDED_FILES: usize = 400;

/// What a file must hold to be one this object delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub bytes: u64,
    pub sha256: String,
}

impl Content {
    /// Whether `bytes` and `sha256` (hex, any case) are this content.
    pub fn matches(&self, bytes: u64, sha256: &str) -> bool {
        self.bytes == bytes && self.sha256.eq_ignore_ascii_case(sha256)
    }
}

/// The checksum file's one line for a data file: the `sha256sum` form, so `sha256sum -c` in the
/// same directory verifies it.
pub fn checksum_line(data_file: &str, sha256: &str) -> String {
    format!("{}  {data_file}\n", sha256.to_ascii_lowercase())
}

/// The checksum file beside a data file of this content: its one line (see
/// [`checksum_line`]) and what it must hold to be ours. It is derived from the record, so proving a
/// checksum file ours needs nothing more than proving its data file ours.
pub fn checksum_file_content(data_file: &str, data: &Content) -> (String, Content) {
    let line = checksum_line(data_file, &data.sha256);
    let content = Content {
        bytes: line.len() as u64,
        sha256: hex::encode(Sha256::digest(line.as_bytes())),
    };
    (line, content)
}

/// The status with `file` added to the record (replacing an entry of the same name), oldest
/// first, bounded by [`MAX_RECORDED_FILES`].
pub fn record_delivery(
    current: &ScheduledExportStatus,
    name: &str,
    content: &Content,
    delivered_at: DateTime<Utc>,
) -> ScheduledExportStatus {
    let mut status = current.clone();
    status.delivered_files.retain(|file| file.name != name);
    status.delivered_files.push(DeliveredFile {
        name: name.to_string(),
        bytes: content.bytes,
        sha256: content.sha256.clone(),
        delivered_at: Some(delivered_at),
    });
    let excess = status
        .delivered_files
        .len()
        .saturating_sub(MAX_RECORDED_FILES);
    status.delivered_files.drain(..excess);
    status
}

/// The status with the file delivered before (`delivery.file`) in the record, when its content is
/// known and the record lacks it: what an object delivered under a version that kept no record
/// becomes provably its own at its next delivery, instead of never being pruned.
pub fn record_previous(current: &ScheduledExportStatus) -> ScheduledExportStatus {
    let previous = current
        .delivery
        .as_ref()
        .and_then(|delivery| Some((delivery.file.clone()?, delivery.delivered_at)));
    match previous {
        Some((name, delivered_at))
            if !current.delivered_files.iter().any(|file| file.name == name) =>
        {
            let Some(content) = delivered_content(current, &name) else {
                return current.clone();
            };
            let mut status = record_delivery(current, &name, &content, Utc::now());
            if let Some(entry) = status.delivered_files.last_mut() {
                entry.delivered_at = delivered_at;
            }
            status
        }
        _ => current.clone(),
    }
}

/// The status with the entries of `names` removed (their files were pruned, or are gone).
pub fn forget(current: &ScheduledExportStatus, names: &[String]) -> ScheduledExportStatus {
    let mut status = current.clone();
    status
        .delivered_files
        .retain(|file| !names.contains(&file.name));
    status
}

/// What this object delivered under `name`: the record, else the delivered file's own size and
/// sha256 (`delivery`, or `lastRun` as older versions wrote it). `None` when it delivered no
/// such file, or recorded nothing that proves it.
pub fn delivered_content(status: &ScheduledExportStatus, name: &str) -> Option<Content> {
    if let Some(file) = status.delivered_files.iter().find(|file| file.name == name) {
        return Some(Content {
            bytes: file.bytes,
            sha256: file.sha256.clone(),
        });
    }
    if let Some(delivery) = status
        .delivery
        .as_ref()
        .filter(|delivery| delivery.file.as_deref() == Some(name))
        && let (Some(bytes), Some(sha256)) = (delivery.bytes, delivery.sha256.clone())
    {
        return Some(Content { bytes, sha256 });
    }
    status
        .last_run
        .as_ref()
        .filter(|run| run.file_name.as_deref() == Some(name))
        .and_then(|run| {
            Some(Content {
                bytes: run.bytes?,
                sha256: run.sha256.clone()?,
            })
        })
}

/// The tag an object's uploads put into their temporary names (`.{name}.partial-{tag:08x}{random}`), so that
/// retention removes only its own dead uploads: the first 4 bytes of the sha256 of its UID.
pub fn upload_tag(uid: &str) -> u32 {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(uid.as_bytes());
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
}

/// The file status names as delivered now (`delivery.file`, and `lastRun.fileName` of a
/// successful run): retention never deletes them, whatever their name's date says.
pub fn current_files(status: &ScheduledExportStatus) -> Vec<String> {
    let mut files: Vec<String> = status
        .delivery
        .as_ref()
        .and_then(|delivery| delivery.file.clone())
        .into_iter()
        .collect();
    if let Some(name) = status
        .last_run
        .as_ref()
        .and_then(|run| run.file_name.clone())
        && !files.contains(&name)
    {
        files.push(name);
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checksum_file_holds_the_sha256sum_line_of_its_data_file() {
        let data = Content {
            bytes: 10,
            sha256: "ABCDEF".into(),
        };
        let (line, content) = checksum_file_content("interactions-20261130T120000Z.csv.gz", &data);
        assert_eq!(line, "abcdef  interactions-20261130T120000Z.csv.gz\n");
        assert_eq!(content.bytes, line.len() as u64);
        assert_eq!(content.sha256, hex::encode(Sha256::digest(line.as_bytes())));
    }
    use crate::resource::{DeliveryStatus, LastRun};
    use chrono::TimeZone;

    fn content(bytes: u64, sha: &str) -> Content {
        Content {
            bytes,
            sha256: sha.to_string(),
        }
    }

    #[test]
    fn the_record_keeps_one_entry_per_name_and_stays_bounded() {
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 7, 0, 0).unwrap();
        let mut status = ScheduledExportStatus::default();
        for i in 0..(MAX_RECORDED_FILES + 5) {
            status = record_delivery(&status, &format!("f{i}"), &content(1, "aa"), at);
        }
        assert_eq!(status.delivered_files.len(), MAX_RECORDED_FILES);
        assert_eq!(status.delivered_files[0].name, "f5", "the oldest go first");
        let again = record_delivery(&status, "f5", &content(2, "bb"), at);
        assert_eq!(again.delivered_files.len(), MAX_RECORDED_FILES);
        assert_eq!(delivered_content(&again, "f5"), Some(content(2, "bb")));
        let forgotten = forget(&again, &["f5".to_string(), "f6".to_string()]);
        assert_eq!(forgotten.delivered_files.len(), MAX_RECORDED_FILES - 2);
        assert_eq!(delivered_content(&forgotten, "f6"), None);
    }

    #[test]
    fn delivered_content_falls_back_to_what_older_versions_wrote() {
        let status = ScheduledExportStatus {
            delivery: Some(DeliveryStatus {
                file: Some("a.csv".into()),
                bytes: Some(3),
                sha256: Some("AB".into()),
                ..DeliveryStatus::default()
            }),
            last_run: Some(LastRun {
                file_name: Some("b.csv".into()),
                bytes: Some(4),
                sha256: Some("cd".into()),
                ..LastRun::default()
            }),
            ..ScheduledExportStatus::default()
        };
        assert!(
            delivered_content(&status, "a.csv")
                .unwrap()
                .matches(3, "ab")
        );
        assert_eq!(delivered_content(&status, "b.csv"), Some(content(4, "cd")));
        assert_eq!(delivered_content(&status, "c.csv"), None);
        assert_eq!(current_files(&status), ["a.csv", "b.csv"]);
        let carried = record_previous(&status);
        assert_eq!(carried.delivered_files.len(), 1);
        assert!(
            delivered_content(&carried, "a.csv")
                .unwrap()
                .matches(3, "ab")
        );
        assert_eq!(record_previous(&carried), carried, "recorded once");
        assert!(!content(3, "ab").matches(4, "ab"));
    }
}
