//! The `file://` backend: a directory on a single node (tests, the demo), whose uploads are a
//! plain copy through a temporary file, fsynced, made readable (0644) and renamed into place.

use std::io::Read;
use std::path::Path as LocalPath;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use tracing::debug;

use super::error::ArtifactError;
use super::key::{ArtifactKey, StoredArtifact};
use super::store::{ArtifactStore, Backend, blocking};
use crate::digest::HashingReader;

impl ArtifactStore {
    /// A `file:///abs/path` store, its directory created if missing.
    pub(super) fn open_local(
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

    /// A `file://` store is a plain copy: through a hidden temporary file in the target directory,
    /// fsynced and renamed into place, in a fixed 1 MiB buffer (object_store's multipart writer
    /// for local files holds parts in memory).
    pub(super) async fn put_local(
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
            let mut source = HashingReader::new(std::fs::File::open(&source_path)?);
            let mut temp = tempfile::Builder::new()
                .prefix(".artifact.")
                .suffix(".partial")
                .tempfile_in(&dir)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                };
                std::io::Write::write_all(temp.as_file_mut(), &buf[..n])?;
            }
            // Readable like object_store's own files, whichever user the controller runs as.
            std::fs::set_permissions(
                temp.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )?;
            temp.as_file().sync_all()?;
            temp.persist(&target).map_err(|err| err.error)?;
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(StoredArtifact::from(source.finish()))
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
}
