//! Why an artifact store operation failed, and how an `object_store` error becomes one of the
//! causes an operator can act on (bucket missing, endpoint unreachable, access denied, ...).

use std::path::PathBuf;

use object_store::client::{HttpError, HttpErrorKind};

use super::key::ArtifactKey;
use super::store::{ArtifactStore, Backend};

/// The forms `from_url` accepts, quoted in every URL error so the fix is in the message.
const ACCEPTED_FORMS: &str =
    "use file:///absolute/path (single node) or s3://bucket/optional/prefix (S3-compatible store)";

/// Why an artifact store operation failed. Every message names the store by its redacted URL.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The URL is not one of the two accepted forms.
    #[error("unsupported artifact store URL {url:?}: {reason}; {ACCEPTED_FORMS}")]
    UnsupportedUrl {
        /// The URL with any user name, password and query removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The store could not be set up from its settings (S3 endpoint, local directory, ...).
    #[error("artifact store {store}: invalid configuration: {reason}")]
    Config { store: String, reason: String },

    /// The S3 bucket does not exist.
    #[error(
        "artifact store {store}: bucket {bucket:?} does not exist; create it or fix the store URL"
    )]
    BucketMissing {
        store: String,
        bucket: String,
        #[source]
        source: Option<Box<object_store::Error>>,
    },

    /// The S3 endpoint did not answer (connection refused, DNS failure, timeout).
    #[error(
        "artifact store {store}: cannot reach endpoint {endpoint} ({cause}): {}",
        crate::redact::scrub(&.source.to_string())
    )]
    Unreachable {
        store: String,
        endpoint: String,
        /// The innermost error (e.g. "Connection refused"), which the HTTP client's own message
        /// leaves out.
        cause: String,
        #[source]
        source: Box<object_store::Error>,
    },

    /// The credentials were rejected or lack permission.
    #[error(
        "artifact store {store}: access denied during {operation}; check AWS_ACCESS_KEY_ID / \
         AWS_SECRET_ACCESS_KEY and the bucket policy: {}",
        crate::redact::scrub(&.source.to_string())
    )]
    AccessDenied {
        store: String,
        operation: &'static str,
        #[source]
        source: Box<object_store::Error>,
    },

    /// The artifact is not in the store (never stored, or already cleaned up).
    #[error("artifact store {store}: object {key} does not exist")]
    ObjectMissing { store: String, key: String },

    /// The downloaded bytes are not the ones that were stored; the download was discarded.
    #[error(
        "artifact store {store}: object {key} has sha256 {actual}, expected {expected}; \
         the downloaded copy was discarded"
    )]
    ChecksumMismatch {
        store: String,
        key: String,
        expected: String,
        actual: String,
    },

    /// A key component is empty or would not map to exactly one path segment.
    #[error("artifact store {store}: invalid artifact key {key:?}: {reason}")]
    InvalidKey {
        store: String,
        key: String,
        reason: String,
    },

    /// Reading the file to upload, or writing the downloaded file, failed.
    #[error("artifact store {store}: local file {}: {source}", path.display())]
    LocalIo {
        store: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The stream feeding an upload ended before the file was complete; nothing was stored.
    #[error("the artifact {key} was not stored: the export stopped before the file was complete")]
    Incomplete { key: String },

    /// Any other failure reported by the store.
    #[error(
        "artifact store {store}: {operation} {key} failed: {}",
        crate::redact::scrub(&.source.to_string())
    )]
    Store {
        store: String,
        operation: &'static str,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
}

impl ArtifactStore {
    /// Errors of listing requests. A listing of an absent prefix is simply empty, so "not found"
    /// here can only mean the bucket is missing.
    pub(super) fn classify_list(&self, shown: &str, err: object_store::Error) -> ArtifactError {
        if let Backend::S3 { bucket, .. } = &self.backend
            && (matches!(err, object_store::Error::NotFound { .. })
                || chain_mentions(&err, "status code: 404"))
        {
            return ArtifactError::BucketMissing {
                store: self.description.clone(),
                bucket: bucket.clone(),
                source: Some(Box::new(err)),
            };
        }
        self.classify_with("list", shown.to_string(), err)
    }

    /// Errors of requests about one key: "not found" means the object is missing unless S3 said
    /// the bucket is.
    pub(super) fn classify(
        &self,
        operation: &'static str,
        key: Option<&ArtifactKey>,
        err: object_store::Error,
    ) -> ArtifactError {
        if let Some(key) = key
            && !(matches!(self.backend, Backend::S3 { .. }) && chain_mentions(&err, "NoSuchBucket"))
            && (matches!(err, object_store::Error::NotFound { .. })
                || chain_mentions(&err, "NoSuchKey"))
        {
            return ArtifactError::ObjectMissing {
                store: self.description.clone(),
                key: key.to_string(),
            };
        }
        let shown = key.map(ToString::to_string).unwrap_or_default();
        self.classify_with(operation, shown, err)
    }

    /// The causes common to every request: missing bucket, rejected credentials, unreachable
    /// endpoint.
    ///
    /// `object_store` maps HTTP statuses to error variants for object requests but wraps listing
    /// and multipart errors as `Generic`, keeping the status and the S3 error document only in
    /// the message of an error type it does not export; hence the matching on text.
    fn classify_with(
        &self,
        operation: &'static str,
        key: String,
        err: object_store::Error,
    ) -> ArtifactError {
        let store = self.description.clone();
        match (&self.backend, err) {
            (Backend::S3 { bucket, .. }, err) if chain_mentions(&err, "NoSuchBucket") => {
                ArtifactError::BucketMissing {
                    store,
                    bucket: bucket.clone(),
                    source: Some(Box::new(err)),
                }
            }
            (
                _,
                err @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            ) => ArtifactError::AccessDenied {
                store,
                operation,
                source: Box::new(err),
            },
            (Backend::S3 { .. }, err)
                if chain_mentions(&err, "status code: 403")
                    || chain_mentions(&err, "status code: 401") =>
            {
                ArtifactError::AccessDenied {
                    store,
                    operation,
                    source: Box::new(err),
                }
            }
            (backend, err) if is_unreachable(&err) => ArtifactError::Unreachable {
                store,
                endpoint: match backend {
                    Backend::S3 { endpoint, .. } => endpoint.clone(),
                    Backend::Local { root } => root.display().to_string(),
                },
                cause: crate::redact::scrub(&root_cause(&err)),
                source: Box::new(err),
            },
            (_, source) => ArtifactError::Store {
                store,
                operation,
                key,
                source: Box::new(source),
            },
        }
    }
}

/// A connection that could not be made or that timed out, anywhere in the error chain.
fn is_unreachable(err: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout);
        }
        source = current.source();
    }
    false
}

/// The message of the innermost error in the chain.
fn root_cause(err: &object_store::Error) -> String {
    let mut current: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Whether any error in the chain mentions `needle` (S3 error codes appear in response bodies).
fn chain_mentions(err: &object_store::Error, needle: &str) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if current.to_string().contains(needle) {
            return true;
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::artifacts::S3Options;

    /// An error as `object_store` wraps listing and multipart failures: the status only in text.
    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::other(message.to_string())),
        }
    }

    fn s3_store() -> ArtifactStore {
        let options = S3Options {
            endpoint: Some("http://127.0.0.1:9".to_string()),
            ..S3Options::default()
        };
        ArtifactStore::from_url_with("s3://exports/daily", &options).unwrap()
    }

    fn key() -> ArtifactKey {
        ArtifactKey::new("ns", "daily", "a.csv")
    }

    #[test]
    fn chain_helpers_look_through_every_source() {
        let err = generic("Client error with status code: 404, body: <Code>NoSuchBucket</Code>");
        assert!(chain_mentions(&err, "NoSuchBucket"));
        assert!(!chain_mentions(&err, "NoSuchKey"));
        assert_eq!(
            root_cause(&err),
            "Client error with status code: 404, body: <Code>NoSuchBucket</Code>"
        );
        assert!(!is_unreachable(&err), "no HTTP connect error in the chain");
    }

    #[test]
    fn s3_statuses_in_text_become_causes() {
        let store = s3_store();
        assert!(matches!(
            store.classify_list("ns/daily/", generic("status code: 404")),
            ArtifactError::BucketMissing { ref bucket, .. } if bucket == "exports"
        ));
        assert!(matches!(
            store.classify("get", Some(&key()), generic("<Code>NoSuchBucket</Code>")),
            ArtifactError::BucketMissing { .. }
        ));
        assert!(matches!(
            store.classify("get", Some(&key()), generic("<Code>NoSuchKey</Code>")),
            ArtifactError::ObjectMissing { ref key, .. } if key == "ns/daily/a.csv"
        ));
        let denied = store.classify("put", Some(&key()), generic("status code: 403"));
        assert!(matches!(
            denied,
            ArtifactError::AccessDenied {
                operation: "put",
                ..
            }
        ));
        let message = denied.to_string();
        let expected = "artifact store s3://exports/daily (endpoint http://127.0.0.1:9): \
                        access denied during put; check AWS_ACCESS_KEY_ID";
        assert!(message.starts_with(expected), "{message}");
        let other = store.classify("head", Some(&key()), generic("status code: 500"));
        assert!(matches!(
            other,
            ArtifactError::Store {
                operation: "head",
                ..
            }
        ));
    }

    #[test]
    fn local_not_found_is_a_missing_object_never_a_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = ArtifactStore::from_url(&url).unwrap();
        let not_found = object_store::Error::NotFound {
            path: "ns/daily/a.csv".to_string(),
            source: Box::new(std::io::Error::other("gone")),
        };
        assert_eq!(
            store.classify("get", Some(&key()), not_found).to_string(),
            format!("artifact store {url}: object ns/daily/a.csv does not exist")
        );
        // The text "status code: 404" means nothing to a local store.
        assert!(matches!(
            store.classify_list("ns/daily/", generic("status code: 404")),
            ArtifactError::Store {
                operation: "list",
                ..
            }
        ));
    }
}
