//! The store handle: opening it from its URL, and the operations that are the same whatever the
//! backend (check, list, exists, delete, download with verification). Uploads dispatch to the
//! backend's own file (`s3.rs`, `file.rs`).

use std::fmt;
use std::io::Write;
use std::path::{Path as LocalPath, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::{Path, PathPart};
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::debug;

use super::error::ArtifactError;
use super::key::{ArtifactKey, StoredArtifact, is_plain_segment};
use super::options::S3Options;
use crate::digest::HashingWriter;
use crate::redact::redact_url;

/// Downloads are written to disk in batches of this size, so a blocking write happens per MiB and
/// not per network chunk.
const WRITE_BATCH: usize = 1024 * 1024;

/// Which backend a store uses; needed to interpret "not found" and to describe the endpoint.
#[derive(Clone)]
pub(super) enum Backend {
    Local { root: PathBuf },
    S3 { bucket: String, endpoint: String },
}

/// A handle on the artifact store. Cheap to clone (the client is shared).
#[derive(Clone)]
pub struct ArtifactStore {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) prefix: Path,
    pub(super) backend: Backend,
    /// The store URL without credentials, used in logs and every error message.
    pub(super) description: String,
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
        let credentials = || {
            unsupported(
                "credentials do not belong in the URL; pass them through AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY"
                    .to_string(),
            )
        };
        // Checked before parsing: a password holding `/` parses as a port and a path, and the
        // parser's own message would quote it.
        if crate::redact::check_url_userinfo(url).is_err() {
            crate::redact::register_url_credentials(url);
            return Err(credentials());
        }
        let parsed =
            url::Url::parse(url.trim()).map_err(|err| unsupported(format!("not a URL ({err})")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            crate::redact::register_url_credentials(url);
            return Err(credentials());
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
        self.put_s3(&location, key, local).await
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
        let mut writer = HashingWriter::new(
            blocking(move || {
                tempfile::Builder::new()
                    .prefix(&prefix)
                    .suffix(".partial")
                    .tempfile_in(&dir)
            })
            .await
            .map_err(local_error)?,
        );
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
                writer = write_batch(writer, full).await.map_err(local_error)?;
            }
            if done {
                break;
            }
        }
        // Flushing a file is a no-op; what matters is the digest, and the file to rename.
        let (file, digest) = writer.finish().map_err(local_error)?;
        let actual = digest.sha256;
        if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
            // Dropping the temporary file deletes it.
            return Err(ArtifactError::ChecksumMismatch {
                store: self.description.clone(),
                key: key.to_string(),
                expected: expected_sha256.trim().to_string(),
                actual,
            });
        }
        let target = local.to_path_buf();
        blocking(move || {
            file.as_file().sync_all()?;
            file.persist(&target).map_err(|err| err.error)?;
            Ok(())
        })
        .await
        .map_err(local_error)?;
        debug!(store = %self, %key, bytes = digest.bytes, "artifact fetched and verified");
        Ok(StoredArtifact {
            sha256: actual,
            bytes: digest.bytes,
        })
    }

    /// The sha256 and size of the stored artifact, hashed as it streams by (nothing is written anywhere); `None`
    /// when there is no such artifact. What proves that a file found on a server is the one this object stored.
    pub async fn digest(&self, key: &ArtifactKey) -> Result<Option<StoredArtifact>, ArtifactError> {
        let location = self.location(key)?;
        let result = match self.store.get(&location).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                self.check_bucket().await?;
                return Ok(None);
            }
            Err(err) => return Err(self.classify("get", Some(key), err)),
        };
        let mut digest = HashingWriter::new(std::io::sink());
        let mut stream = result.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|err| self.classify("get", Some(key), err))?
        {
            // Writing to a sink cannot fail.
            let _ = digest.write_all(&chunk);
        }
        let (_, digest) = digest.finish().map_err(|source| ArtifactError::LocalIo {
            store: self.description.clone(),
            path: PathBuf::from("(digest)"),
            source,
        })?;
        Ok(Some(digest.into()))
    }

    /// Opens the artifact for blocking code (an SFTP upload on a blocking thread) to read it straight from the
    /// store: nothing is spooled on local disk, and memory holds one network chunk at a time. The reader reports the
    /// end of the content only once it hashed to `expected_sha256`; otherwise its last read fails, so an upload from
    /// it never renames wrong bytes into place.
    pub async fn open_verified(
        &self,
        key: &ArtifactKey,
        expected_sha256: &str,
        runtime: tokio::runtime::Handle,
    ) -> Result<ArtifactReader, ArtifactError> {
        let location = self.location(key)?;
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|err| self.classify("get", Some(key), err))?;
        Ok(ArtifactReader {
            size: result.meta.size,
            e_tag: result.meta.e_tag.clone(),
            location,
            received: 0,
            resumed_at: None,
            stream: result.into_stream(),
            current: bytes::Bytes::new(),
            digest: Some(HashingWriter::new(std::io::sink())),
            expected_sha256: expected_sha256.trim().to_string(),
            runtime,
            store: self.clone(),
            key: key.clone(),
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

    /// The object path for `key`, refusing components that would not be exactly one segment.
    pub(super) fn location(&self, key: &ArtifactKey) -> Result<Path, ArtifactError> {
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

/// An artifact read by blocking code; see [`ArtifactStore::open_verified`].
pub struct ArtifactReader {
    size: u64,
    /// The version first read; a resumed read asks for exactly it (`If-Match`).
    e_tag: Option<String>,
    location: Path,
    /// Bytes handed out so far.
    received: u64,
    /// Where the last resumed request started; a second failure there without progress ends it.
    resumed_at: Option<u64>,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    current: bytes::Bytes,
    digest: Option<HashingWriter<std::io::Sink>>,
    expected_sha256: String,
    runtime: tokio::runtime::Handle,
    store: ArtifactStore,
    key: ArtifactKey,
}

impl ArtifactReader {
    /// The size the store reports for the artifact.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl std::io::Read for ArtifactReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let Some(digest) = self.digest.as_mut() else {
                return Ok(0);
            };
            match self.runtime.block_on(self.stream.try_next()) {
                Ok(Some(chunk)) => {
                    digest.write_all(&chunk)?;
                    self.received += chunk.len() as u64;
                    self.current = chunk;
                }
                Ok(None) => {
                    let (_, digest) = self.digest.take().map_or_else(
                        || Err(std::io::Error::other("artifact read twice")),
                        HashingWriter::finish,
                    )?;
                    if !digest.sha256.eq_ignore_ascii_case(&self.expected_sha256) {
                        return Err(std::io::Error::other(ArtifactError::ChecksumMismatch {
                            store: self.store.description.clone(),
                            key: self.key.to_string(),
                            expected: self.expected_sha256.clone(),
                            actual: digest.sha256,
                        }));
                    }
                    return Ok(0);
                }
                // The reader goes at the pace of whatever it feeds (a slow SFTP link), so a
                // request can outlive the store's bound on one request while still moving: the
                // rest is asked for again from where it stopped, as long as each try progressed.
                Err(err) if self.received < self.size && self.resumed_at != Some(self.received) => {
                    tracing::debug!(store = %self.store, key = %self.key, offset = self.received,
                        error = %err, "artifact read interrupted; resuming");
                    let options = object_store::GetOptions {
                        range: Some(object_store::GetRange::Offset(self.received)),
                        if_match: self.e_tag.clone(),
                        ..object_store::GetOptions::default()
                    };
                    let resumed = self
                        .runtime
                        .block_on(self.store.store.get_opts(&self.location, options))
                        .map_err(|err| {
                            std::io::Error::other(self.store.classify("get", Some(&self.key), err))
                        })?;
                    self.stream = resumed.into_stream();
                    self.resumed_at = Some(self.received);
                }
                Err(err) => {
                    return Err(std::io::Error::other(self.store.classify(
                        "get",
                        Some(&self.key),
                        err,
                    )));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Appends `data` to a download's temporary file on the blocking pool, hashing it on the way.
async fn write_batch(
    mut writer: HashingWriter<tempfile::NamedTempFile>,
    data: Vec<u8>,
) -> std::io::Result<HashingWriter<tempfile::NamedTempFile>> {
    blocking(move || {
        writer.write_all(&data)?;
        Ok(writer)
    })
    .await
}

/// Runs blocking file I/O on tokio's blocking pool, so large files never stall the reconciler.
pub(super) async fn blocking<T, F>(work: F) -> std::io::Result<T>
where
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| std::io::Error::other(format!("blocking file task failed: {err}")))?
}
