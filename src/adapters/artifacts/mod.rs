//! The artifact store: keeps every delivered export file until the next run's file is delivered.
//!
//! Why it exists: when the recheck finds that a delivered file vanished from the SFTP
//! server before anyone picked it up, the operator copies it again. The export query runs against
//! live CRM data, so re-running it would send *different* bytes under the same name; instead the
//! operator keeps the exact bytes it delivered here, with their sha256, and a recopy streams them
//! back out and verifies them before sending.
//!
//! The store is addressed by URL: `file:///abs/path` for a single node, tests and the demo, or
//! `s3://bucket/optional/prefix` for any S3-compatible store. Both go through `object_store`, so the
//! operator code never cares which one it talks to. Keys are `{namespace}/{name}/{file_name}` under
//! the URL's prefix, so the artifacts of one ScheduledExport can be listed (and cleaned up)
//! without seeing another object's, even one whose name shares a prefix.
//!
//! Writes are atomic for readers: S3 `PutObject` and multipart completion publish the whole object
//! at once, and `object_store`'s local backend writes to a staging file (`{name}#N`) that it
//! renames into place (and never lists). Downloads go to a temporary file beside the destination
//! and are renamed into place only after the checksum matched, so a caller never sees a partial or
//! corrupt file at the path it asked for.
//!
//! Errors name the store (its URL, never credentials) and the cause an operator can act on: bucket
//! missing, endpoint unreachable, access denied, object missing, checksum mismatch, bad URL.
//!
//! Layout: `store.rs` holds the handle and the operations common to both backends, `s3.rs` and
//! `file.rs` the backend-specific opening and uploading, `upload.rs` an upload fed as the export
//! streams and committed later, `key.rs` the naming of artifacts,
//! `options.rs` the S3 settings, `error.rs` the errors and their classification. Hashing while
//! copying is [`crate::digest`]'s.

mod error;
mod file;
mod key;
mod options;
mod s3;
mod store;
mod upload;

pub use error::ArtifactError;
pub use key::{ArtifactKey, StoredArtifact};
pub use options::S3Options;
pub use store::{ArtifactReader, ArtifactStore};
pub use upload::ArtifactUpload;
