//! Moving files: an upload goes to a temporary name, is synced, size-checked and renamed into place, so a reader
//! never sees a partial file under the final name; and finding, listing and removing delivered files below the
//! target directory, which the delivery checker and retention rely on.

use std::io::{self, Read, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use ssh2::{FileStat, OpenFlags, OpenType, RenameFlags};

use super::error::{SftpError, is_disconnect, is_not_found, is_timeout, sftp_code, ssh2_sys_fx};
use super::session::SftpSession;

/// Bytes handed to libssh2 per `write` call. libssh2 pipelines SFTP WRITE requests only *within* one call (it splits
/// the buffer into ~30 kB packets and keeps them all in flight), so small writes would cost one round trip each; 1 MiB
/// keeps the pipe full on high-latency links while holding little memory.
const UPLOAD_CHUNK: usize = 1024 * 1024;

/// How deep `locate` and `list_recursive` descend below the export directory. Customers move files into a few levels
/// of sub-directories at most; the bound keeps a pathological tree (or a directory loop on the server) from turning a
/// ten-minute recheck into an endless walk.
const MAX_DEPTH: usize = 16;

/// Permissions of a delivered file: readable by the account and its group (an import job on the customer's side often
/// runs as another user of that group), never world-readable, since files hold CRM personal data.
const FILE_MODE: i32 = 0o640;

/// A regular file found on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Absolute path on the server.
    pub path: String,
    /// Path relative to the target directory (`file.csv`, `archive/2025/file.csv`).
    pub relative: String,
    pub size: u64,
    /// Modification time, Unix seconds, when the server reports it.
    pub modified: Option<i64>,
}

impl SftpSession {
    /// Uploads `local` as `file_name` in the target directory and returns the number of bytes delivered.
    ///
    /// The bytes go to `.{file_name}.partial-<random>` (a dot file that never matches an export file pattern), the
    /// size is checked, then the file is renamed to `file_name` and its size checked again. On any failure the
    /// temporary file is removed (best effort) and nothing exists under the final name.
    ///
    /// Overwrite: never. If `file_name` already exists, the upload fails with [`SftpError::AlreadyExists`] and the
    /// existing file is left untouched: a recopy happens only when the file is gone, and a re-run of a slot whose
    /// file is already there must be decided by the caller (with [`SftpSession::locate`]) rather than clobbering a
    /// file a customer may be reading. (SFTP v3 rename, as OpenSSH implements it, refuses to replace a file anyway.)
    pub fn upload(&self, local: &Path, file_name: &str) -> Result<u64, SftpError> {
        validate_file_name(file_name)?;
        let final_path = self.remote_path(file_name);
        let temp_path = self.remote_path(&format!(".{file_name}.partial-{:016x}", random_u64()?));

        let local_file = std::fs::File::open(local).map_err(|source| SftpError::LocalFile {
            path: local.to_path_buf(),
            source,
        })?;
        let local_size = local_file
            .metadata()
            .map_err(|source| SftpError::LocalFile {
                path: local.to_path_buf(),
                source,
            })?
            .len();

        // Refuse early (and without writing anything) when the final name is taken.
        match self.sftp.lstat(Path::new(&final_path)) {
            Ok(_) => {
                return Err(SftpError::AlreadyExists {
                    address: self.address.clone(),
                    path: final_path,
                });
            }
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Err(self.remote_error("stat", &final_path, err)),
        }

        let result = self.upload_to_temp(local, local_file, local_size, &temp_path);
        let result = result.and_then(|()| self.rename_into_place(&temp_path, &final_path));
        match result {
            Ok(()) => {}
            Err(err) => {
                if let Err(cleanup) = self.sftp.unlink(Path::new(&temp_path))
                    && !is_not_found(&cleanup)
                {
                    tracing::warn!(path = %temp_path, address = %self.address, error = %cleanup.message(),
                        "could not remove the temporary upload file");
                }
                return Err(err);
            }
        }

        // The size is checked under the final name too; a file of the wrong size there is removed so that
        // a reader never takes it for a complete export.
        let actual = self.file_size(&final_path)?;
        if actual != local_size {
            let _ = self.sftp.unlink(Path::new(&final_path));
            return Err(SftpError::SizeMismatch {
                address: self.address.clone(),
                path: final_path,
                expected: local_size,
                actual,
            });
        }
        tracing::debug!(path = %final_path, bytes = local_size, address = %self.address, "uploaded");
        Ok(local_size)
    }

    /// Finds a file of this name directly in the target directory or anywhere below it (customers move picked-up
    /// files into sub-directories, which counts as delivered). `None` when it is nowhere.
    pub fn locate(&self, file_name: &str) -> Result<Option<RemoteFile>, SftpError> {
        validate_file_name(file_name)?;
        let direct = self.remote_path(file_name);
        match self.sftp.stat(Path::new(&direct)) {
            Ok(stat) if stat.is_file() => {
                return Ok(Some(remote_file(direct, file_name.to_string(), &stat)));
            }
            Ok(_) => {}
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Err(self.remote_error("stat", &direct, err)),
        }
        let mut found = None;
        let skipped = self.walk(&mut |file| {
            if found.is_none() && file.relative.rsplit('/').next() == Some(file_name) {
                found = Some(file);
            }
            found.is_none()
        })?;
        // Absent from what could be seen is not absent: the file may sit where the walk could not go.
        match (found, skipped) {
            (None, Some(place)) => Err(SftpError::SearchIncomplete {
                address: self.address.clone(),
                place,
            }),
            (found, _) => Ok(found),
        }
    }

    /// Every regular file under the target directory, recursively, sorted by relative path (input for retention).
    /// Symbolic links are not followed, so retention never deletes outside the directory.
    pub fn list_recursive(&self) -> Result<Vec<RemoteFile>, SftpError> {
        let mut files = Vec::new();
        // Retention deletes only what it saw, so a place it could not see is simply left alone.
        let _skipped = self.walk(&mut |file| {
            files.push(file);
            true
        })?;
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(files)
    }

    /// Removes one file. A file that is already gone counts as removed.
    pub fn remove(&self, remote: &RemoteFile) -> Result<(), SftpError> {
        let inside = remote
            .path
            .strip_prefix(&self.directory)
            .is_some_and(|rest| rest.starts_with('/') || self.directory == "/");
        if !inside || remote.path.split('/').any(|part| part == "..") {
            return Err(SftpError::InvalidFileName {
                name: remote.path.clone(),
                reason: "not below the target directory",
            });
        }
        match self.sftp.unlink(Path::new(&remote.path)) {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(self.remote_error("remove", &remote.path, err)),
        }
    }

    fn remote_path(&self, name: &str) -> String {
        if self.directory == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.directory)
        }
    }

    fn upload_to_temp(
        &self,
        local: &Path,
        local_file: std::fs::File,
        local_size: u64,
        temp_path: &str,
    ) -> Result<(), SftpError> {
        let mut remote = self
            .sftp
            .open_mode(
                Path::new(temp_path),
                OpenFlags::WRITE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE,
                FILE_MODE,
                OpenType::File,
            )
            .map_err(|err| {
                if sftp_code(&err) == Some(ssh2_sys_fx::PERMISSION_DENIED)
                    || sftp_code(&err) == Some(ssh2_sys_fx::WRITE_PROTECT)
                    || sftp_code(&err) == Some(ssh2_sys_fx::NO_SUCH_FILE)
                {
                    SftpError::DirectoryNotWritable {
                        address: self.address.clone(),
                        directory: self.directory.clone(),
                        detail: err.message().to_string(),
                    }
                } else {
                    self.remote_error("create", temp_path, err)
                }
            })?;

        let mut reader = io::BufReader::with_capacity(UPLOAD_CHUNK, local_file);
        let mut buffer = vec![0_u8; UPLOAD_CHUNK];
        let mut sent: u64 = 0;
        loop {
            let filled = fill(&mut reader, &mut buffer).map_err(|source| SftpError::LocalFile {
                path: local.to_path_buf(),
                source,
            })?;
            if filled == 0 {
                break;
            }
            remote
                .write_all(&buffer[..filled])
                .map_err(|err| self.io_error("write", temp_path, err))?;
            sent += filled as u64;
        }
        if sent != local_size {
            // The local file changed while we read it: the caller's artifact is not what it claimed.
            return Err(SftpError::LocalFile {
                path: local.to_path_buf(),
                source: io::Error::other(format!(
                    "file changed while uploading: read {sent} bytes, expected {local_size}"
                )),
            });
        }
        // Durability before the rename makes the file visible; servers without fsync@openssh.com just skip it.
        if let Err(err) = remote.fsync() {
            if is_timeout(&err) || is_disconnect(&err) {
                return Err(self.remote_error("fsync", temp_path, err));
            }
            tracing::debug!(error = %err.message(), "server did not fsync the upload (extension unsupported?)");
        }
        let written = remote
            .stat()
            .map_err(|err| self.remote_error("stat", temp_path, err))?
            .size
            .unwrap_or(sent);
        drop(remote); // closes the handle before the rename
        if written != local_size {
            return Err(SftpError::SizeMismatch {
                address: self.address.clone(),
                path: temp_path.to_string(),
                expected: local_size,
                actual: written,
            });
        }
        Ok(())
    }

    fn rename_into_place(&self, temp_path: &str, final_path: &str) -> Result<(), SftpError> {
        // ATOMIC|NATIVE ask for POSIX semantics where the server offers them (protocol v5+); OpenSSH speaks v3, where
        // rename is a link+unlink that fails when the target exists, which is exactly the no-overwrite rule.
        let flags = Some(RenameFlags::ATOMIC | RenameFlags::NATIVE);
        match self
            .sftp
            .rename(Path::new(temp_path), Path::new(final_path), flags)
        {
            Ok(()) => Ok(()),
            Err(err) => {
                if is_timeout(&err) || is_disconnect(&err) {
                    return Err(self.remote_error("rename", temp_path, err));
                }
                // Name why: most often another writer created the final name since our check.
                if self.sftp.lstat(Path::new(final_path)).is_ok() {
                    return Err(SftpError::AlreadyExists {
                        address: self.address.clone(),
                        path: final_path.to_string(),
                    });
                }
                Err(SftpError::Rename {
                    address: self.address.clone(),
                    from: temp_path.to_string(),
                    to: final_path.to_string(),
                    detail: err.message().to_string(),
                })
            }
        }
    }

    fn file_size(&self, path: &str) -> Result<u64, SftpError> {
        let stat = self
            .sftp
            .stat(Path::new(path))
            .map_err(|err| self.remote_error("stat", path, err))?;
        Ok(stat.size.unwrap_or(0))
    }

    /// Depth-first walk over regular files below the directory; `visit` returns false to stop. Unreadable
    /// sub-directories are skipped with a warning (the customer may keep private folders there); an unreadable
    /// top directory is an error. Returns the first place it could not look into (an unreadable sub-directory,
    /// a symbolic link, the depth limit), if any.
    fn walk(&self, visit: &mut dyn FnMut(RemoteFile) -> bool) -> Result<Option<String>, SftpError> {
        let mut skipped: Option<String> = None;
        let mut pending: Vec<(String, String, usize)> =
            vec![(self.directory.clone(), String::new(), 0)];
        while let Some((dir, relative_dir, depth)) = pending.pop() {
            let entries = match self.sftp.readdir(Path::new(&dir)) {
                Ok(entries) => entries,
                Err(err) if depth == 0 => {
                    if is_not_found(&err) {
                        return Err(SftpError::DirectoryMissing {
                            address: self.address.clone(),
                            directory: dir,
                        });
                    }
                    return Err(self.remote_error("list", &dir, err));
                }
                Err(err) if is_timeout(&err) || is_disconnect(&err) => {
                    return Err(self.remote_error("list", &dir, err));
                }
                Err(err) => {
                    tracing::warn!(directory = %dir, address = %self.address, error = %err.message(),
                        "skipping unreadable sub-directory");
                    skipped.get_or_insert_with(|| format!("{relative_dir}/ cannot be listed"));
                    continue;
                }
            };
            for (path, stat) in entries {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue; // not UTF-8: cannot be one of our files
                };
                let relative = if relative_dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{relative_dir}/{name}")
                };
                let absolute = if dir == "/" {
                    format!("/{name}")
                } else {
                    format!("{dir}/{name}")
                };
                if stat.is_dir() {
                    if depth + 1 < MAX_DEPTH {
                        pending.push((absolute, relative, depth + 1));
                    } else {
                        skipped.get_or_insert_with(|| format!("{relative}/ is too deep"));
                    }
                } else if stat.is_file() {
                    if !visit(remote_file(absolute, relative, &stat)) {
                        return Ok(skipped);
                    }
                } else if stat.file_type().is_symlink() {
                    // Not followed (retention must never leave the directory), so unknown.
                    skipped.get_or_insert_with(|| format!("{relative} is a symbolic link"));
                }
            }
        }
        Ok(skipped)
    }
}

fn remote_file(path: String, relative: String, stat: &FileStat) -> RemoteFile {
    RemoteFile {
        path,
        relative,
        size: stat.size.unwrap_or(0),
        modified: stat.mtime.and_then(|t| i64::try_from(t).ok()),
    }
}

/// Reads until `buffer` is full or EOF, so that every SFTP write call gets a full chunk.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Keeps two uploads of the same name apart (two operator replicas, a retry racing a slow first attempt).
fn random_u64() -> Result<u64, SftpError> {
    let mut rng = StdRng::try_from_os_rng().map_err(|err| SftpError::Session {
        detail: format!("the operating system gave no random bytes for a temporary name: {err}"),
    })?;
    Ok(rng.next_u64())
}

fn validate_file_name(name: &str) -> Result<(), SftpError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("not a file name")
    } else if name.contains(['/', '\0']) {
        Some("must be a plain name without `/`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SftpError::InvalidFileName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain() {
        assert!(validate_file_name("interactions-20250101T120000Z.csv").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
