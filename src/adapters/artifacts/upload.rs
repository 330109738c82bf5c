//! An artifact written as the export streams: its bytes go up (or to disk) as they arrive, and
//! the object appears under its key only at [`ArtifactUpload::commit`], so a run that fails on
//! the SFTP side, or finds another's file there, leaves the store as it was.

use std::io::Write;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tracing::debug;

use super::error::ArtifactError;
use super::key::{ArtifactKey, StoredArtifact};
use super::s3::{PART_SIZE, PARTS_IN_FLIGHT, SINGLE_PUT_MAX};
use super::store::{ArtifactStore, Backend, blocking};
use crate::digest::ContentDigest;

/// One artifact on its way into the store.
pub struct ArtifactUpload {
    store: ArtifactStore,
    key: ArtifactKey,
    location: Path,
    bytes: u64,
    state: State,
}

enum State {
    /// S3, up to one part so far: a small file goes up in one `PUT` at the commit.
    Gathering(BytesMut),
    /// S3, more than a part: a multipart upload, completed at the commit.
    Multipart(Box<WriteMultipart>),
    /// `file://`: a hidden temporary file beside the key's path, renamed at the commit.
    Local {
        temp: tempfile::NamedTempFile,
        target: PathBuf,
    },
}

impl ArtifactStore {
    /// Starts writing the artifact under `key`; nothing is visible under it until the commit.
    pub async fn begin_upload(&self, key: &ArtifactKey) -> Result<ArtifactUpload, ArtifactError> {
        let location = self.location(key)?;
        let state = match &self.backend {
            Backend::Local { root } => {
                let target = root.join(location.as_ref());
                let shown = target.clone();
                let temp = blocking(move || {
                    let dir = target
                        .parent()
                        .map(std::path::Path::to_path_buf)
                        .unwrap_or_default();
                    std::fs::create_dir_all(&dir)?;
                    let temp = tempfile::Builder::new()
                        .prefix(".artifact.")
                        .suffix(".partial")
                        .tempfile_in(&dir)?;
                    Ok((temp, target))
                })
                .await
                .map_err(|source| self.local_error(shown, source))?;
                State::Local {
                    temp: temp.0,
                    target: temp.1,
                }
            }
            Backend::S3 { .. } => State::Gathering(BytesMut::new()),
        };
        Ok(ArtifactUpload {
            store: self.clone(),
            key: key.clone(),
            location,
            bytes: 0,
            state,
        })
    }

    fn local_error(&self, path: PathBuf, source: std::io::Error) -> ArtifactError {
        ArtifactError::LocalIo {
            store: self.description.clone(),
            path,
            source,
        }
    }
}

impl ArtifactUpload {
    /// Adds `chunk`. Memory stays bounded: at most `PARTS_IN_FLIGHT` parts are uploading while
    /// the next one fills.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), ArtifactError> {
        self.bytes += chunk.len() as u64;
        match &mut self.state {
            State::Gathering(gathered) => {
                gathered.extend_from_slice(&chunk);
                if gathered.len() as u64 > SINGLE_PUT_MAX {
                    let upload = self
                        .store
                        .store
                        .put_multipart(&self.location)
                        .await
                        .map_err(|err| self.store.classify("put", Some(&self.key), err))?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                    writer.write(&std::mem::take(gathered));
                    self.state = State::Multipart(Box::new(writer));
                }
            }
            State::Multipart(writer) => {
                if let Err(err) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    return Err(self.store.classify("put", Some(&self.key), err));
                }
                writer.write(&chunk);
            }
            State::Local { temp, target } => {
                // Small writes to a local file: not worth a trip to the blocking pool each.
                let path = target.clone();
                temp.as_file_mut()
                    .write_all(&chunk)
                    .map_err(|source| self.store.local_error(path, source))?;
            }
        }
        Ok(())
    }

    /// Makes the artifact visible under its key, recorded with `digest` (what the stream that
    /// filled it hashed). A byte count other than the digest's is refused.
    pub async fn commit(self, digest: &ContentDigest) -> Result<StoredArtifact, ArtifactError> {
        let Self {
            store,
            key,
            location,
            bytes,
            state,
        } = self;
        if bytes != digest.bytes {
            abort_state(state).await;
            return Err(store.local_error(
                PathBuf::from(key.to_string()),
                std::io::Error::other(format!(
                    "{bytes} bytes were stored but {} were delivered",
                    digest.bytes
                )),
            ));
        }
        match state {
            State::Gathering(gathered) => {
                store
                    .store
                    .put(&location, PutPayload::from(gathered.freeze()))
                    .await
                    .map_err(|err| store.classify("put", Some(&key), err))?;
            }
            // `finish` aborts the upload itself when a part or the completion fails.
            State::Multipart(writer) => writer
                .finish()
                .await
                .map(drop)
                .map_err(|err| store.classify("put", Some(&key), err))?,
            State::Local { temp, target } => {
                let shown = target.clone();
                blocking(move || {
                    // Readable like object_store's own files, whichever user the controller
                    // runs as.
                    std::fs::set_permissions(
                        temp.path(),
                        std::os::unix::fs::PermissionsExt::from_mode(0o644),
                    )?;
                    temp.as_file().sync_all()?;
                    let dir = target
                        .parent()
                        .map(std::path::Path::to_path_buf)
                        .unwrap_or_default();
                    temp.persist(&target).map_err(|err| err.error)?;
                    std::fs::File::open(&dir)?.sync_all()
                })
                .await
                .map_err(|source| store.local_error(shown, source))?;
            }
        }
        let stored = StoredArtifact::from(digest.clone());
        debug!(store = %store, %key, sha256 = %stored.sha256, bytes = stored.bytes, "artifact stored");
        Ok(stored)
    }

    /// Gives the upload up: parts already sent are aborted, a temporary file removed.
    pub async fn abort(self) {
        abort_state(self.state).await;
    }
}

async fn abort_state(state: State) {
    match state {
        State::Gathering(_) => {}
        State::Multipart(writer) => {
            if let Err(err) = writer.abort().await {
                tracing::warn!(error = %err, "could not abort a failed multipart upload");
            }
        }
        // Dropping the temporary file removes it.
        State::Local { temp, .. } => drop(temp),
    }
}
