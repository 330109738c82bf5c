//! The S3 backend: a client with bounded timeouts and few retries, and uploads that go up in one
//! `PUT` when small or as a multipart upload of bounded memory, aborted when it fails.

use std::io::Read;
use std::path::Path as LocalPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tracing::debug;

use super::error::ArtifactError;
use super::key::{ArtifactKey, StoredArtifact, is_plain_segment};
use super::options::S3Options;
use super::store::{ArtifactStore, Backend, blocking};
use crate::digest::HashingReader;
use crate::redact::redact_url;

/// Files up to this size go up in one `PUT`; larger ones use multipart upload.
///
/// One request is cheaper and simpler for the typical daily CSV; above this, multipart keeps memory
/// bounded and lets a failed part be retried without resending the whole file.
pub(super) const SINGLE_PUT_MAX: u64 = 5 * 1024 * 1024;

/// Size of each multipart part (S3 requires at least 5 MiB for all but the last part).
pub(super) const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploading concurrently. With `PART_SIZE` this bounds an upload's memory to about
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE`, whatever the file size.
pub(super) const PARTS_IN_FLIGHT: usize = 2;

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

impl ArtifactStore {
    /// An `s3://bucket/optional/prefix` store; the endpoint, region and credentials come from
    /// `s3`. Builds the client only: nothing is contacted.
    pub(super) fn open_s3(
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
            // Not signing the payload saves hashing every byte a second time: what an artifact
            // holds is checked against its recorded sha256 whenever it is read back.
            .with_unsigned_payload(true)
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

    /// The S3 part of [`ArtifactStore::put_file`]: one `PUT` up to 5 MiB, multipart above.
    pub(super) async fn put_s3(
        &self,
        location: &Path,
        key: &ArtifactKey,
        local: &LocalPath,
    ) -> Result<StoredArtifact, ArtifactError> {
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
        let mut reader = HashingReader::new(file);

        if size <= SINGLE_PUT_MAX {
            // `size` is at most 5 MiB here; read a little past it in case the file grew.
            let (read, content) = read_chunk(reader, SINGLE_PUT_MAX as usize + 1)
                .await
                .map_err(local_error)?;
            reader = read;
            if reader.bytes_read() > SINGLE_PUT_MAX {
                return Err(local_error(std::io::Error::other(
                    "the file grew while it was being stored",
                )));
            }
            self.store
                .put(location, PutPayload::from(content))
                .await
                .map_err(|err| self.classify("put", Some(key), err))?;
        } else {
            let upload = self
                .store
                .put_multipart(location)
                .await
                .map_err(|err| self.classify("put", Some(key), err))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            loop {
                let (read, chunk) = match read_chunk(reader, PART_SIZE).await {
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
        let stored = StoredArtifact::from(reader.finish());
        debug!(store = %self, %key, sha256 = %stored.sha256, bytes = stored.bytes, "artifact stored");
        Ok(stored)
    }
}

/// Reads up to `max` bytes (fewer only at end of file) on the blocking pool, hashing them.
async fn read_chunk(
    mut reader: HashingReader<std::fs::File>,
    max: usize,
) -> std::io::Result<(HashingReader<std::fs::File>, Bytes)> {
    blocking(move || {
        let mut buf = vec![0u8; max];
        let mut filled = 0;
        while filled < max {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        buf.truncate(filled);
        Ok((reader, Bytes::from(buf)))
    })
    .await
}

/// Aborts a failed multipart upload so its parts do not linger (and cost money) in the bucket.
async fn abort_upload(writer: WriteMultipart) {
    if let Err(err) = writer.abort().await {
        tracing::warn!(error = %err, "could not abort a failed multipart upload");
    }
}
