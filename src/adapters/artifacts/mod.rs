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

use crate::redact::redact_url;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path as LocalPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use sha2::{Digest, Sha256};
use tracing::debug;

/// The forms `from_url` accepts, quoted in every URL error so the fix is in the message.
const ACCEPTED_FORMS: &str =
    "use file:///absolute/path (single node) or s3://bucket/optional/prefix (S3-compatible store)";

/// Files up to this size go up in one `PUT`; larger ones use multipart upload.
///
/// One request is cheaper and simpler for the typical daily CSV; above this, multipart keeps memory
/// bounded and lets a failed part be retried without resending the whole file.
const SINGLE_PUT_MAX: u64 = 5 * 1024 * 1024;

/// Size of each multipart part (S3 requires at least 5 MiB for all but the last part).
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploading concurrently. With `PART_SIZE` this bounds an upload's memory to about
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE`, whatever the file size.
const PARTS_IN_FLIGHT: usize = 2;

/// Downloads are written to disk in batches of this size, so a blocking write happens per MiB and
/// not per network chunk.
const WRITE_BATCH: usize = 1024 * 1024;

/// Connect timeout for S3: a closed port fails at once, a black-holed address after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a single S3 response may go without delivering data before the request is abandoned.
/// An idle limit rather than a total one, so a large file on a slow link is not cut off.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Upper bound on one whole S3 request (one `PUT`, one part, one `GET`), against a server that
/// trickles bytes forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Retries per S3 request. Few, so an unreachable endpoint is reported within seconds: the export
/// has a deadline and the operator retries the whole step on its next reconcile anyway.
const MAX_RETRIES: usize = 2;

/// Retrying stops after this long since the first attempt.
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

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
    #[error("artifact store {store}: cannot reach endpoint {endpoint} ({cause}): {source}")]
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
         AWS_SECRET_ACCESS_KEY and the bucket policy: {source}"
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

    /// Any other failure reported by the store.
    #[error("artifact store {store}: {operation} {key} failed: {source}")]
    Store {
        store: String,
        operation: &'static str,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
}

/// Explicit S3 settings; [`S3Options::from_env`] reads them from the standard environment.
///
/// `Debug` redacts the secret key, so the options can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// `http(s)://host:port` of a non-AWS endpoint (MinIO, Ceph, ...); `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// With `secret_access_key`, static credentials. Without both, `object_store` falls back to
    /// the instance metadata service (AWS only).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".to_string(),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Options {
    /// Reads the settings the AWS tools and MinIO clients use, so the operator's Deployment can
    /// share a Secret with them:
    ///
    /// - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// - `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`
    /// - `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else `S3_ENDPOINT` (the test bed's name)
    ///
    /// Empty values count as unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any variable source, so the precedence rules are testable without
    /// touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        Self {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("S3_ENDPOINT")),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_string()),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        }
    }
}

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

/// Which backend a store uses; needed to interpret "not found" and to describe the endpoint.
#[derive(Clone)]
enum Backend {
    Local { root: PathBuf },
    S3 { bucket: String, endpoint: String },
}

/// A handle on the artifact store. Cheap to clone (the client is shared).
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    backend: Backend,
    /// The store URL without credentials, used in logs and every error message.
    description: String,
}

/// Shows only the redacted URL: the wrapped client's own `Debug` may include credentials.
impl fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("url", &self.description)
            .finish_non_exhaustive()
    }
}

/// The redacted store URL (plus the S3 endpoint if not AWS), for logs.
impl fmt::Display for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl ArtifactStore {
    /// Opens `file:///abs/path` (single node, tests, demo) or `s3://bucket/optional/prefix` (any
    /// S3-compatible store), taking S3 settings from the environment ([`S3Options::from_env`]).
    ///
    /// A `file://` directory is created if missing. Nothing is contacted over the network; use
    /// [`Self::check`] to fail fast on an unreachable store.
    pub fn from_url(url: &str) -> Result<Self, ArtifactError> {
        Self::from_url_with(url, &S3Options::from_env())
    }

    /// Same as [`Self::from_url`], with explicit S3 options instead of the process environment.
    pub fn from_url_with(url: &str, s3: &S3Options) -> Result<Self, ArtifactError> {
        let unsupported = |reason: String| ArtifactError::UnsupportedUrl {
            url: redact_url(url),
            reason,
        };
        let parsed =
            url::Url::parse(url.trim()).map_err(|err| unsupported(format!("not a URL ({err})")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(unsupported(
                "credentials do not belong in the URL; pass them through AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY"
                    .to_string(),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(unsupported(
                "query strings and fragments are not supported".to_string(),
            ));
        }
        match parsed.scheme() {
            "file" => Self::open_local(url.trim(), &parsed, unsupported),
            "s3" => Self::open_s3(&parsed, s3, unsupported),
            other => Err(unsupported(format!("scheme {other:?} is not supported"))),
        }
    }

    fn open_local(
        raw: &str,
        parsed: &url::Url,
        unsupported: impl Fn(String) -> ArtifactError,
    ) -> Result<Self, ArtifactError> {
        // `url` resolves `file:relative` to `file:///relative`; insist on the explicit absolute
        // form so a relative path is never silently reinterpreted.
        let explicit_absolute = raw.starts_with("file:///") || raw.starts_with("file://localhost/");
        let root = match parsed.to_file_path() {
            Ok(path) if explicit_absolute && path.is_absolute() => path,
            _ => {
                return Err(unsupported(
                    "a file URL needs an absolute path, as in file:///var/lib/artifacts"
                        .to_string(),
                ));
            }
        };
        let description = format!("file://{}", root.display());
        std::fs::create_dir_all(&root).map_err(|source| ArtifactError::LocalIo {
            store: description.clone(),
            path: root.clone(),
            source,
        })?;
        let local = LocalFileSystem::new_with_prefix(&root)
            .map_err(|err| ArtifactError::Config {
                store: description.clone(),
                reason: err.to_string(),
            })?
            // Artifacts must outlive a node restart until the next run: make writes durable.
            .with_fsync(true)
            // Do not leave one empty directory per deleted artifact behind.
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(local),
            prefix: Path::default(),
            backend: Backend::Local { root },
            description,
        })
    }

    fn open_s3(
        parsed: &url::Url,
        s3: &S3Options,
        unsupported: impl Fn(String) -> ArtifactError,
    ) -> Result<Self, ArtifactError> {
        let bucket = match parsed.host_str() {
            Some(bucket) if !bucket.is_empty() => bucket.to_string(),
            _ => return Err(unsupported("the bucket name is missing".to_string())),
        };
        if parsed.port().is_some() {
            return Err(unsupported(
                "an s3 URL names a bucket, not a host; set the endpoint with AWS_ENDPOINT_URL or \
                 S3_ENDPOINT"
                    .to_string(),
            ));
        }
        let mut prefix_parts = Vec::new();
        for segment in parsed.path().split('/').filter(|s| !s.is_empty()) {
            // Kept as written: a segment that `object_store` would have to escape (`%`, `#`, ...)
            // would not appear in the bucket under the name the operator typed.
            if !is_plain_segment(segment) {
                return Err(unsupported(format!(
                    "prefix segment {segment:?} contains characters not allowed in a key \
                     (such as %, #, \\, {{, }})"
                )));
            }
            prefix_parts.push(segment.to_string());
        }
        let prefix: Path = prefix_parts.iter().map(String::as_str).collect();
        let mut description = if prefix_parts.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };

        let region = if s3.region.trim().is_empty() {
            "us-east-1".to_string()
        } else {
            s3.region.trim().to_string()
        };
        let mut options = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_read_timeout(READ_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(&region)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            });
        let endpoint = match s3.endpoint.as_deref().map(str::trim) {
            Some(endpoint) => {
                let shown = redact_url(endpoint);
                description = format!("{description} (endpoint {shown})");
                let config_error = |reason: &str| ArtifactError::Config {
                    store: description.clone(),
                    reason: format!("S3 endpoint {shown:?} {reason}"),
                };
                let endpoint_url =
                    url::Url::parse(endpoint).map_err(|_| config_error("is not a URL"))?;
                if !endpoint_url.username().is_empty() || endpoint_url.password().is_some() {
                    return Err(config_error(
                        "must not contain credentials; use AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY",
                    ));
                }
                match endpoint_url.scheme() {
                    // Plain http only when the operator explicitly configured an http:// endpoint
                    // (an in-cluster MinIO, the test bed); AWS itself is always https.
                    "http" => options = options.with_allow_http(true),
                    "https" => {}
                    _ => return Err(config_error("must start with http:// or https://")),
                }
                // Path-style addressing (the builder's default): custom endpoints rarely have
                // per-bucket DNS names.
                builder = builder
                    .with_endpoint(endpoint.trim_end_matches('/'))
                    .with_virtual_hosted_style_request(false);
                shown
            }
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        if let Some(key_id) = &s3.access_key_id {
            builder = builder.with_access_key_id(key_id);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .with_client_options(options)
            .build()
            .map_err(|err| ArtifactError::Config {
                store: description.clone(),
                reason: err.to_string(),
            })?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            backend: Backend::S3 { bucket, endpoint },
            description,
        })
    }

    /// Streams a local file into the store under `key`, returning its sha256 (hex) and size.
    ///
    /// Files larger than 5 MiB go up as multipart uploads of 5 MiB parts, two at a time, so
    /// memory stays bounded whatever the file size. The object appears only once complete; a
    /// failed multipart upload is aborted so no parts linger.
    pub async fn put_file(
        &self,
        key: &ArtifactKey,
        local: &LocalPath,
    ) -> Result<StoredArtifact, ArtifactError> {
        let location = self.location(key)?;
        if let Backend::Local { root } = &self.backend {
            return self.put_local(root, &location, key, local).await;
        }
        let local_error = |source| ArtifactError::LocalIo {
            store: self.description.clone(),
            path: local.to_path_buf(),
            source,
        };
        let path = local.to_path_buf();
        let (file, size) = blocking(move || {
            let file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        })
        .await
        .map_err(local_error)?;
        let mut reader = HashingReader {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };

        if size <= SINGLE_PUT_MAX {
            // `size` is at most 5 MiB here; read a little past it in case the file grew.
            let (read, content) = reader
                .read_chunk(SINGLE_PUT_MAX as usize + 1)
                .await
                .map_err(local_error)?;
            reader = read;
            if reader.bytes > SINGLE_PUT_MAX {
                return Err(local_error(std::io::Error::other(
                    "the file grew while it was being stored",
                )));
            }
            self.store
                .put(&location, PutPayload::from(content))
                .await
                .map_err(|err| self.classify("put", Some(key), err))?;
        } else {
            let upload = self
                .store
                .put_multipart(&location)
                .await
                .map_err(|err| self.classify("put", Some(key), err))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            loop {
                let (read, chunk) = match reader.read_chunk(PART_SIZE).await {
                    Ok(next) => next,
                    Err(source) => {
                        abort_upload(writer).await;
                        return Err(local_error(source));
                    }
                };
                reader = read;
                if chunk.is_empty() {
                    break;
                }
                if let Err(err) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    abort_upload(writer).await;
                    return Err(self.classify("put", Some(key), err));
                }
                writer.put(chunk);
            }
            // `finish` aborts the upload itself when a part or the completion fails.
            writer
                .finish()
                .await
                .map_err(|err| self.classify("put", Some(key), err))?;
        }
        let stored = StoredArtifact {
            sha256: hex::encode(reader.hasher.finalize()),
            bytes: reader.bytes,
        };
        debug!(store = %self, %key, sha256 = %stored.sha256, bytes = stored.bytes, "artifact stored");
        Ok(stored)
    }

    /// A `file://` store is a plain copy: through a hidden temporary file in the target directory,
    /// fsynced and renamed into place, in a fixed 1 MiB buffer (object_store's multipart writer
    /// for local files holds parts in memory).
    async fn put_local(
        &self,
        root: &LocalPath,
        location: &Path,
        key: &ArtifactKey,
        local: &LocalPath,
    ) -> Result<StoredArtifact, ArtifactError> {
        let target = root.join(location.as_ref());
        let source_path = local.to_path_buf();
        let copied = blocking(move || {
            let dir = target
                .parent()
                .map(LocalPath::to_path_buf)
                .unwrap_or_default();
            std::fs::create_dir_all(&dir)?;
            let mut source = std::fs::File::open(&source_path)?;
            let mut temp = tempfile::Builder::new()
                .prefix(".artifact.")
                .suffix(".partial")
                .tempfile_in(&dir)?;
            let mut hasher = Sha256::new();
            let mut bytes = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                };
                hasher.update(&buf[..n]);
                std::io::Write::write_all(temp.as_file_mut(), &buf[..n])?;
                bytes += n as u64;
            }
            // Readable like object_store's own files, whichever user the controller runs as.
            std::fs::set_permissions(
                temp.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )?;
            temp.as_file().sync_all()?;
            temp.persist(&target).map_err(|err| err.error)?;
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(StoredArtifact {
                sha256: hex::encode(hasher.finalize()),
                bytes,
            })
        })
        .await
        .map_err(|source| ArtifactError::LocalIo {
            store: self.description.clone(),
            path: local.to_path_buf(),
            source,
        })?;
        debug!(store = %self, %key, sha256 = %copied.sha256, bytes = copied.bytes, "artifact stored");
        Ok(copied)
    }

    /// Streams the object to `local` and verifies it against `expected_sha256` (hex, any case).
    ///
    /// The content goes to a temporary file beside `local` that is renamed into place only when
    /// the checksum matches. On any error — checksum mismatch included — no file is left at
    /// `local` (a file already there is removed), so a caller can never mistake stale or wrong
    /// bytes for the artifact.
    pub async fn get_to_file(
        &self,
        key: &ArtifactKey,
        local: &LocalPath,
        expected_sha256: &str,
    ) -> Result<StoredArtifact, ArtifactError> {
        // An invalid key fails before `local` is touched, so a bad name never removes a file.
        self.location(key)?;
        let result = self.download(key, local, expected_sha256).await;
        if result.is_err() {
            let path = local.to_path_buf();
            let removed = blocking(move || match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            })
            .await;
            if let Err(err) = removed {
                tracing::warn!(store = %self, path = %local.display(), error = %err,
                    "could not remove the local file after a failed download");
            }
        }
        result
    }

    async fn download(
        &self,
        key: &ArtifactKey,
        local: &LocalPath,
        expected_sha256: &str,
    ) -> Result<StoredArtifact, ArtifactError> {
        let location = self.location(key)?;
        let local_error = |source| ArtifactError::LocalIo {
            store: self.description.clone(),
            path: local.to_path_buf(),
            source,
        };
        let result = match self.store.get(&location).await {
            Ok(result) => result,
            Err(err) => return Err(self.classify("get", Some(key), err)),
        };
        let dir = match local.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = format!(
            ".{}.",
            local
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut writer = HashingWriter {
            file: blocking(move || {
                tempfile::Builder::new()
                    .prefix(&prefix)
                    .suffix(".partial")
                    .tempfile_in(&dir)
            })
            .await
            .map_err(local_error)?,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut stream = result.into_stream();
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            let chunk = stream
                .try_next()
                .await
                .map_err(|err| self.classify("get", Some(key), err))?;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                batch.extend_from_slice(&chunk);
            }
            if batch.len() >= WRITE_BATCH || (done && !batch.is_empty()) {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
                writer = writer.write(full).await.map_err(local_error)?;
            }
            if done {
                break;
            }
        }
        let actual = hex::encode(writer.hasher.finalize());
        if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
            // Dropping the temporary file deletes it.
            return Err(ArtifactError::ChecksumMismatch {
                store: self.description.clone(),
                key: key.to_string(),
                expected: expected_sha256.trim().to_string(),
                actual,
            });
        }
        let file = writer.file;
        let target = local.to_path_buf();
        blocking(move || {
            file.as_file().sync_all()?;
            file.persist(&target).map_err(|err| err.error)?;
            Ok(())
        })
        .await
        .map_err(local_error)?;
        debug!(store = %self, %key, bytes = writer.bytes, "artifact fetched and verified");
        Ok(StoredArtifact {
            sha256: actual,
            bytes: writer.bytes,
        })
    }

    /// Whether the artifact is in the store. A missing bucket is an error, not `false`.
    pub async fn exists(&self, key: &ArtifactKey) -> Result<bool, ArtifactError> {
        let location = self.location(key)?;
        match self.store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => {
                // A HEAD response has no body, so "no such key" and "no such bucket" look the
                // same; ask the bucket.
                self.check_bucket().await?;
                Ok(false)
            }
            Err(err) => Err(self.classify("head", Some(key), err)),
        }
    }

    /// Deletes the artifact; an absent artifact is fine (cleanup may run twice).
    pub async fn delete(&self, key: &ArtifactKey) -> Result<(), ArtifactError> {
        let location = self.location(key)?;
        match self.store.delete(&location).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => self.check_bucket().await,
            Err(err) => Err(self.classify("delete", Some(key), err)),
        }
    }

    /// The keys stored for one ScheduledExport, sorted, for cleaning up artifacts no longer needed.
    ///
    /// Matches whole path segments: the artifacts of `a` never include those of `ab`.
    pub async fn list(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<ArtifactKey>, ArtifactError> {
        let shown = format!("{namespace}/{name}/");
        for part in [namespace, name] {
            self.validate_part(&shown, part)?;
        }
        let prefix: Path = self
            .prefix
            .parts()
            .chain([PathPart::from(namespace), PathPart::from(name)])
            .collect();
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|err| self.classify_list(&shown, err))?;
        let mut keys: Vec<ArtifactKey> = objects
            .iter()
            .filter_map(|meta| {
                let mut rest = meta.location.prefix_match(&prefix)?;
                let file_name = rest.next()?;
                // Only direct children: this store never writes deeper keys.
                rest.next()
                    .is_none()
                    .then(|| ArtifactKey::new(namespace, name, file_name.as_ref()))
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// A cheap reachability check (one listing request under the prefix), so an export fails
    /// before it runs the query rather than after, with a clear cause.
    pub async fn check(&self) -> Result<(), ArtifactError> {
        if let Backend::Local { root } = &self.backend {
            let root_path = root.clone();
            let is_dir = blocking(move || std::fs::metadata(&root_path).map(|m| m.is_dir()))
                .await
                .map_err(|source| ArtifactError::LocalIo {
                    store: self.description.clone(),
                    path: root.clone(),
                    source,
                })?;
            if !is_dir {
                return Err(ArtifactError::Config {
                    store: self.description.clone(),
                    reason: format!("{} is not a directory", root.display()),
                });
            }
        }
        self.check_bucket().await
    }

    /// One listing request under the prefix; its "not found" can only mean the bucket is missing.
    async fn check_bucket(&self) -> Result<(), ArtifactError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        self.store
            .list_with_delimiter(prefix)
            .await
            .map(|_| ())
            .map_err(|err| self.classify_list("/", err))
    }

    /// Errors of listing requests. A listing of an absent prefix is simply empty, so "not found"
    /// here can only mean the bucket is missing.
    fn classify_list(&self, shown: &str, err: object_store::Error) -> ArtifactError {
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
    fn classify(
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
                cause: root_cause(&err),
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

    /// The object path for `key`, refusing components that would not be exactly one segment.
    fn location(&self, key: &ArtifactKey) -> Result<Path, ArtifactError> {
        let shown = key.to_string();
        for part in [&key.namespace, &key.name, &key.file_name] {
            self.validate_part(&shown, part)?;
        }
        Ok(self
            .prefix
            .parts()
            .chain([
                PathPart::from(key.namespace.as_str()),
                PathPart::from(key.name.as_str()),
                PathPart::from(key.file_name.as_str()),
            ])
            .collect())
    }

    fn validate_part(&self, shown: &str, part: &str) -> Result<(), ArtifactError> {
        let reason = if part.is_empty() {
            Some("a component is empty".to_string())
        } else if !is_plain_segment(part) {
            Some(format!(
                "{part:?} contains a character that is not allowed in a key component \
                 (such as '/', '#', control characters) or is '.' / '..'"
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ArtifactError::InvalidKey {
                store: self.description.clone(),
                key: shown.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// A file being read in chunks off the async threads, hashed as it goes.
struct HashingReader {
    file: std::fs::File,
    hasher: Sha256,
    bytes: u64,
}

impl HashingReader {
    /// Reads up to `max` bytes (fewer only at end of file) on the blocking pool.
    async fn read_chunk(mut self, max: usize) -> std::io::Result<(Self, Bytes)> {
        blocking(move || {
            let mut buf = vec![0u8; max];
            let mut filled = 0;
            while filled < max {
                match self.file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            buf.truncate(filled);
            self.hasher.update(&buf);
            self.bytes += filled as u64;
            Ok((self, Bytes::from(buf)))
        })
        .await
    }
}

/// A temporary download file written off the async threads, hashed as it goes.
struct HashingWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter {
    async fn write(mut self, data: Vec<u8>) -> std::io::Result<Self> {
        blocking(move || {
            self.file.write_all(&data)?;
            self.hasher.update(&data);
            self.bytes += data.len() as u64;
            Ok(self)
        })
        .await
    }
}

/// Aborts a failed multipart upload so its parts do not linger (and cost money) in the bucket.
async fn abort_upload(writer: WriteMultipart) {
    if let Err(err) = writer.abort().await {
        tracing::warn!(error = %err, "could not abort a failed multipart upload");
    }
}

/// Runs blocking file I/O on tokio's blocking pool, so large files never stall the reconciler.
async fn blocking<T, F>(work: F) -> std::io::Result<T>
where
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| std::io::Error::other(format!("blocking file task failed: {err}")))?
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

/// A string that `object_store` keeps as one path segment, unchanged: not empty, not `.`/`..`, and
/// free of characters it escapes (`/`, `#`, `%`, control characters, ...). That makes keys
/// round-trip through `list`, and keeps clear of the local backend's `name#N` staging files.
fn is_plain_segment(part: &str) -> bool {
    !part.is_empty() && PathPart::from(part).as_ref() == part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let options = S3Options::from_lookup(env(&[
            ("S3_ENDPOINT", "http://minio:9000"),
            ("AWS_ENDPOINT_URL", "http://aws-endpoint"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ]));
        assert_eq!(options.endpoint.as_deref(), Some("http://aws-endpoint"));
        assert_eq!(options.region, "eu-west-1");
        assert_eq!(options.access_key_id.as_deref(), Some("AKID"));
        assert!(!format!("{options:?}").contains("s3cr3t"));

        let options = S3Options::from_lookup(env(&[
            ("S3_ENDPOINT", "http://minio:9000"),
            ("AWS_REGION", ""),
        ]));
        assert_eq!(options.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(options.region, "us-east-1");
    }

    #[test]
    fn key_segments_must_be_plain() {
        assert!(!is_plain_segment("a.csv#12"));
        assert!(!is_plain_segment(""));
        assert!(!is_plain_segment("a/b"));
        assert!(!is_plain_segment(".."));
        assert!(is_plain_segment("interactions-20250101T120000Z.csv"));
    }
}
