//! Moving files: an upload goes to a temporary name, is synced, size-checked and renamed into place, so a reader
//! never sees a partial file under the final name; and finding, listing and removing delivered files below the
//! target directory, which the delivery checker and retention rely on.

use std::io::{self, Read, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use ssh2::{FileStat, OpenFlags, OpenType, RenameFlags};

use super::error::{
    SftpError, driver_message, is_disconnect, is_not_found, is_timeout, session_code, sftp_code,
    ssh2_sys_err, ssh2_sys_fx,
};
use super::session::SftpSession;
use crate::digest::{ContentDigest, HashingWriter};

/// The most bytes handed to libssh2 per `read` or `write` call. libssh2 pipelines SFTP requests only *within* one call
/// (it splits the buffer into ~30 kB packets and keeps them all in flight), so small calls would cost one round trip
/// each; up to 1 MiB keeps the pipe full on high-latency links while holding little memory.
const MAX_CHUNK: usize = 1024 * 1024;
/// The first and smallest call size. The session timeout bounds each libssh2 call as a whole, and one call waits for
/// at least one of its packets to be acknowledged, so on a slow link a call must be small enough to get through
/// within it; calls start small and grow while they finish quickly (see `Pace`), which on a fast link takes a few
/// milliseconds.
const MIN_CHUNK: usize = 4 * 1024;

/// How deep `locate` and `list_recursive` descend below the export directory. Customers move files into a few levels
/// of sub-directories at most; the bound keeps a pathological tree (or a directory loop on the server) from turning a
/// ten-minute recheck into an endless walk.
const MAX_DEPTH: usize = 16;

/// Directories waiting to be listed during a walk, and entries looked at in one walk, at most: a tree this large is
/// not an export directory, and the walk reports where it stopped instead of holding it all in memory.
const MAX_PENDING_DIRECTORIES: usize = 10_000;
const MAX_WALKED_ENTRIES: usize = 1_000_000;
/// Files a listing returns at most; what lies beyond is reported as not seen.
const MAX_LISTED_FILES: usize = 100_000;

/// Permissions of a delivered file: readable by the account and its group (an import job on the customer's side often
/// runs as another user of that group), never world-readable, since files hold CRM personal data.
const FILE_MODE: i32 = 0o640;

/// A reader that reports how much was read, and so handed to the server, after each read.
struct ObservedRead<'a, R> {
    inner: R,
    read: u64,
    observe: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for ObservedRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buf)?;
        self.read += count as u64;
        (self.observe)(self.read);
        Ok(count)
    }
}

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

/// Files found by [`SftpSession::list_matching`], and the first place the walk could not see into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    pub files: Vec<RemoteFile>,
    pub incomplete: Option<String>,
}

/// What a found file must hold to count as the one looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    pub bytes: u64,
    /// Hex, any case.
    pub sha256: &'a str,
}

impl SftpSession {
    /// Uploads `local` as `file_name` in the target directory and returns the number of bytes delivered; see
    /// [`SftpSession::upload_from`].
    pub fn upload(&self, local: &Path, file_name: &str) -> Result<u64, SftpError> {
        self.upload_observed(local, file_name, &mut |_| {})
    }

    /// [`SftpSession::upload`], telling `observe` the bytes read for sending so far (at most one buffer ahead of
    /// the server) as the upload goes, for a progress line.
    pub fn upload_observed(
        &self,
        local: &Path,
        file_name: &str,
        observe: &mut dyn FnMut(u64),
    ) -> Result<u64, SftpError> {
        let local_error = |source| SftpError::LocalFile {
            path: local.to_path_buf(),
            source,
        };
        let local_file = std::fs::File::open(local).map_err(local_error)?;
        let local_size = local_file.metadata().map_err(local_error)?.len();
        let mut observed = ObservedRead {
            inner: local_file,
            read: 0,
            observe,
        };
        self.upload_from(&mut observed, local_size, file_name)
            .map_err(|err| match err {
                SftpError::SourceFailed { detail, .. } => SftpError::LocalFile {
                    path: local.to_path_buf(),
                    source: io::Error::other(detail),
                },
                other => other,
            })
    }

    /// Uploads exactly `size` bytes read from `source` as `file_name` in the target directory.
    ///
    /// The bytes go to `.{file_name}.partial-<16 hex>` (a dot file that never matches an export file pattern; the
    /// first 8 hex digits are the session's upload tag when it has one, so retention can tell its own dead uploads
    /// apart), the size is checked, then the file is renamed to `file_name` and its size checked again. On any
    /// failure, a read error of `source` included (a source that verifies what it hands out fails at its end), the
    /// temporary file is removed (best effort) and nothing exists under the final name.
    ///
    /// Overwrite: never. If `file_name` already exists, the upload fails with [`SftpError::AlreadyExists`] and the
    /// existing file is left untouched: whether a file of that name may be replaced is the caller's decision, made
    /// on what the file holds (see [`SftpSession::content_digest`]). (SFTP v3 rename, as OpenSSH implements it,
    /// refuses to replace a file anyway.)
    pub fn upload_from(
        &self,
        source: &mut dyn Read,
        size: u64,
        file_name: &str,
    ) -> Result<u64, SftpError> {
        validate_file_name(file_name)?;
        let final_path = self.remote_path(file_name);
        let suffix = match self.upload_tag.get() {
            Some(tag) => format!("{tag:08x}{:08x}", random_u64()? as u32),
            None => format!("{:016x}", random_u64()?),
        };
        let temp_path = self.remote_path(&format!(".{file_name}.partial-{suffix}"));

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

        let result = self.upload_to_temp(source, size, &temp_path, &final_path);
        let result = result.and_then(|()| self.rename_into_place(&temp_path, &final_path));
        if let Err(err) = result {
            if let Err(cleanup) = self.sftp.unlink(Path::new(&temp_path))
                && !is_not_found(&cleanup)
            {
                tracing::warn!(path = %temp_path, address = %self.address, error = %driver_message(&cleanup),
                    "could not remove the temporary upload file");
            }
            return Err(err);
        }

        // The size is checked under the final name too; a file of the wrong size there is removed so that
        // a reader never takes it for a complete export.
        let actual = self.file_size(&final_path)?;
        if actual != size {
            let _ = self.sftp.unlink(Path::new(&final_path));
            return Err(SftpError::SizeMismatch {
                address: self.address.clone(),
                path: final_path,
                expected: size,
                actual,
            });
        }
        tracing::debug!(path = %final_path, bytes = size, address = %self.address, "uploaded");
        Ok(size)
    }

    /// The regular file of this name directly in the target directory, if there is one.
    pub fn stat_file(&self, file_name: &str) -> Result<Option<RemoteFile>, SftpError> {
        validate_file_name(file_name)?;
        let direct = self.remote_path(file_name);
        match self.sftp.lstat(Path::new(&direct)) {
            Ok(stat) if stat.is_file() => {
                Ok(Some(remote_file(direct, file_name.to_string(), &stat)))
            }
            Ok(_) => Ok(None),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(self.remote_error("stat", &direct, err)),
        }
    }

    /// The sha256 and size of a remote file, read in calls paced like uploads; memory stays bounded whatever its size.
    pub fn content_digest(&self, remote: &RemoteFile) -> Result<ContentDigest, SftpError> {
        let mut file = self
            .sftp
            .open(Path::new(&remote.path))
            .map_err(|err| self.remote_error("open", &remote.path, err))?;
        let mut digest = HashingWriter::new(io::sink());
        let mut buffer = vec![0_u8; MAX_CHUNK];
        let mut pace = Pace::new(self.timeout);
        loop {
            let chunk = pace.chunk();
            let started = std::time::Instant::now();
            let read = match file.read(&mut buffer[..chunk]) {
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.io_error("read", &remote.path, err)),
            };
            pace.observe(read, started.elapsed());
            if read == 0 {
                break;
            }
            digest
                .write_all(&buffer[..read])
                .map_err(|err| self.io_error("read", &remote.path, err))?;
        }
        let (_, digest) = digest
            .finish()
            .map_err(|err| self.io_error("read", &remote.path, err))?;
        Ok(digest)
    }

    /// Finds a file of this name directly in the target directory or anywhere below it (customers move picked-up
    /// files into sub-directories, which counts as delivered). `None` when it is nowhere.
    ///
    /// With `expected`, a same-named file in a sub-directory counts only if it holds exactly that content (size,
    /// then sha256): a neighbour's or a customer's file of that name is not ours. The file directly in the directory
    /// counts by its name alone, since nothing else could be put there under it.
    pub fn locate(
        &self,
        file_name: &str,
        expected: Option<Expected<'_>>,
    ) -> Result<Option<RemoteFile>, SftpError> {
        if let Some(found) = self.stat_file(file_name)? {
            return Ok(Some(found));
        }
        let mut found = None;
        let skipped = self.walk(&mut |file| {
            if file.relative.rsplit('/').next() != Some(file_name) {
                return Ok(true);
            }
            let ours = match expected {
                None => true,
                Some(expected) if file.size != expected.bytes => false,
                Some(expected) => self
                    .content_digest(&file)?
                    .sha256
                    .eq_ignore_ascii_case(expected.sha256),
            };
            if ours {
                found = Some(file);
            } else {
                tracing::debug!(file = %file.relative, address = %self.address,
                    "a file of the same name with other content: not the delivered one");
            }
            Ok(found.is_none())
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

    /// The regular files under the target directory, recursively, whose name (last path component) `wanted` accepts,
    /// sorted by relative path, with the first place the walk could not see into (input for retention, which deletes
    /// only what it saw). Bounded: at most `MAX_LISTED_FILES` files; what lies beyond counts as not seen. Symbolic
    /// links are not followed, so retention never deletes outside the directory.
    pub fn list_matching(&self, wanted: &dyn Fn(&str) -> bool) -> Result<Listing, SftpError> {
        let mut files = Vec::new();
        let mut full = false;
        let skipped = self.walk(&mut |file| {
            if wanted(file.relative.rsplit('/').next().unwrap_or_default()) {
                if files.len() >= MAX_LISTED_FILES {
                    full = true;
                    return Ok(false);
                }
                files.push(file);
            }
            Ok(true)
        })?;
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        let incomplete = match (skipped, full) {
            (Some(place), _) => Some(place),
            (None, true) => Some(format!("more than {MAX_LISTED_FILES} files")),
            (None, false) => None,
        };
        Ok(Listing { files, incomplete })
    }

    /// Every regular file under the target directory, recursively, sorted by relative path (bounded like
    /// [`SftpSession::list_matching`]).
    pub fn list_recursive(&self) -> Result<Vec<RemoteFile>, SftpError> {
        Ok(self.list_matching(&|_| true)?.files)
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
        source: &mut dyn Read,
        size: u64,
        temp_path: &str,
        final_path: &str,
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
                        detail: driver_message(&err),
                    }
                } else {
                    self.remote_error("create", temp_path, err)
                }
            })?;

        let source_error = |err: io::Error| SftpError::SourceFailed {
            address: self.address.clone(),
            path: final_path.to_string(),
            detail: err.to_string(),
        };
        let mut buffer = vec![0_u8; MAX_CHUNK];
        let mut pending_start = 0;
        let mut filled = 0;
        let mut sent: u64 = 0;
        let mut pace = Pace::new(self.timeout);
        loop {
            // Refill only once everything read was written, so the source is read in big pieces.
            if pending_start == filled {
                filled = fill(source, &mut buffer).map_err(source_error)?;
                pending_start = 0;
                if filled == 0 {
                    break;
                }
            }
            let pending = &buffer[pending_start..filled];
            let piece = &pending[..pending.len().min(pace.chunk())];
            let started = std::time::Instant::now();
            remote
                .write_all(piece)
                .map_err(|err| self.io_error("write", temp_path, err))?;
            pace.observe(piece.len(), started.elapsed());
            pending_start += piece.len();
            sent += piece.len() as u64;
        }
        if sent != size {
            // The source held another length than it claimed.
            return Err(source_error(io::Error::other(format!(
                "the content changed while it was sent: read {sent} bytes, expected {size}"
            ))));
        }
        // Durability before the rename makes the file visible; servers without fsync@openssh.com just skip it.
        if let Err(err) = remote.fsync() {
            if is_timeout(&err) || is_disconnect(&err) {
                return Err(self.remote_error("fsync", temp_path, err));
            }
            tracing::debug!(error = %driver_message(&err), "server did not fsync the upload (extension unsupported?)");
        }
        let written = remote
            .stat()
            .map_err(|err| self.remote_error("stat", temp_path, err))?
            .size
            .unwrap_or(sent);
        drop(remote); // closes the handle before the rename
        if written != size {
            return Err(SftpError::SizeMismatch {
                address: self.address.clone(),
                path: temp_path.to_string(),
                expected: size,
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
                    detail: driver_message(&err),
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

    /// Depth-first walk over regular files below the directory; `visit` returns false to stop. Directories are read
    /// entry by entry, so memory holds the directories still to visit, not their contents. Unreadable
    /// sub-directories are skipped with a warning (the customer may keep private folders there); an unreadable top
    /// directory is an error. Returns the first place it could not look into (an unreadable sub-directory, a
    /// symbolic link, the depth limit, the bounds on pending directories and entries), if any.
    fn walk(
        &self,
        visit: &mut dyn FnMut(RemoteFile) -> Result<bool, SftpError>,
    ) -> Result<Option<String>, SftpError> {
        let mut skipped: Option<String> = None;
        let mut pending: Vec<(String, String, usize)> =
            vec![(self.directory.clone(), String::new(), 0)];
        let mut walked = 0_usize;
        while let Some((dir, relative_dir, depth)) = pending.pop() {
            let mut handle = match self.sftp.opendir(Path::new(&dir)) {
                Ok(handle) => handle,
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
                    tracing::warn!(directory = %dir, address = %self.address, error = %driver_message(&err),
                        "skipping unreadable sub-directory");
                    skipped.get_or_insert_with(|| format!("{relative_dir}/ cannot be listed"));
                    continue;
                }
            };
            loop {
                let (path, stat) = match handle.readdir() {
                    Ok(entry) => entry,
                    // The end of the directory.
                    Err(err) if session_code(&err) == Some(ssh2_sys_err::FILE) => break,
                    Err(err) if is_timeout(&err) || is_disconnect(&err) || depth == 0 => {
                        return Err(self.remote_error("list", &dir, err));
                    }
                    Err(err) => {
                        tracing::warn!(directory = %dir, address = %self.address, error = %driver_message(&err),
                            "stopped listing an unreadable sub-directory");
                        skipped.get_or_insert_with(|| format!("{relative_dir}/ cannot be listed"));
                        break;
                    }
                };
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue; // not UTF-8 (or `.`/`..`): cannot be one of our files
                };
                if name == "." || name == ".." {
                    continue;
                }
                walked += 1;
                if walked > MAX_WALKED_ENTRIES {
                    skipped.get_or_insert_with(|| {
                        format!("entries beyond the first {MAX_WALKED_ENTRIES}")
                    });
                    return Ok(skipped);
                }
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
                    if depth + 1 >= MAX_DEPTH {
                        skipped.get_or_insert_with(|| format!("{relative}/ is too deep"));
                    } else if pending.len() >= MAX_PENDING_DIRECTORIES {
                        skipped.get_or_insert_with(|| {
                            format!("{relative}/ (more than {MAX_PENDING_DIRECTORIES} directories)")
                        });
                    } else {
                        pending.push((absolute, relative, depth + 1));
                    }
                } else if stat.is_file() {
                    if !visit(remote_file(absolute, relative, &stat))? {
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

/// Sizes read and write calls by how fast the link moves. libssh2's session timeout bounds each call as a whole, so a
/// call of 1 MiB (split by libssh2 into 30 000-byte packets) times out on a link that cannot carry one packet within the
/// timeout, although the link is alive. Calls start at `MIN_CHUNK`, double while they take less than a quarter of the timeout, and halve while they take more than half
/// of it: a transfer then fails only when one small call makes no progress for a whole timeout.
struct Pace {
    chunk: usize,
    timeout: std::time::Duration,
}

impl Pace {
    fn new(timeout: std::time::Duration) -> Self {
        Self {
            chunk: MIN_CHUNK,
            timeout,
        }
    }

    fn chunk(&self) -> usize {
        self.chunk
    }

    fn observe(&mut self, bytes: usize, took: std::time::Duration) {
        if bytes < self.chunk / 2 {
            return; // a short read (end of file) says nothing about the link
        }
        if took < self.timeout / 4 {
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        } else if took > self.timeout / 2 {
            self.chunk = (self.chunk / 2).max(MIN_CHUNK);
        }
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
fn fill(reader: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
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
    fn calls_grow_on_a_fast_link_and_shrink_on_a_slow_one() {
        let timeout = std::time::Duration::from_secs(8);
        let mut pace = Pace::new(timeout);
        for _ in 0..10 {
            pace.observe(pace.chunk(), std::time::Duration::from_millis(10));
        }
        assert_eq!(pace.chunk(), MAX_CHUNK);
        for _ in 0..20 {
            pace.observe(pace.chunk(), std::time::Duration::from_secs(5));
        }
        assert_eq!(pace.chunk(), MIN_CHUNK);
        pace.observe(1, std::time::Duration::from_millis(1));
        assert_eq!(pace.chunk(), MIN_CHUNK, "a short read says nothing");
    }

    #[test]
    fn file_names_are_plain() {
        assert!(validate_file_name("interactions-20250101T120000Z.csv").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
