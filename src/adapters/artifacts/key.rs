//! How one artifact is named (`{namespace}/{name}/{file_name}`), what the store records about it,
//! and which key components map to exactly one object path segment.

use std::fmt;

use object_store::path::PathPart;

use crate::digest::ContentDigest;

/// Where one artifact lives: `{namespace}/{name}/{file_name}` under the store's prefix.
///
/// Namespace and name are those of the ScheduledExport, so its artifacts can be listed together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactKey {
    pub namespace: String,
    pub name: String,
    pub file_name: String,
}

impl ArtifactKey {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        file_name: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            file_name: file_name.into(),
        }
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.name, self.file_name)
    }
}

/// What the store holds for one artifact: enough to verify a later download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    pub bytes: u64,
}

impl From<ContentDigest> for StoredArtifact {
    fn from(digest: ContentDigest) -> Self {
        Self {
            sha256: digest.sha256,
            bytes: digest.bytes,
        }
    }
}

/// A string that `object_store` keeps as one path segment, unchanged: not empty, not `.`/`..`, and
/// free of characters it escapes (`/`, `#`, `%`, control characters, ...). That makes keys
/// round-trip through `list`, and keeps clear of the local backend's `name#N` staging files.
pub(super) fn is_plain_segment(part: &str) -> bool {
    !part.is_empty() && PathPart::from(part).as_ref() == part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_must_be_plain() {
        assert!(!is_plain_segment("a.csv#12"));
        assert!(!is_plain_segment(""));
        assert!(!is_plain_segment("a/b"));
        assert!(!is_plain_segment(".."));
        assert!(is_plain_segment("interactions-20250101T120000Z.csv"));
    }
}
