//! Moving files: an upload goes to a temporary name, is synced, size-checked and renamed into place, so a reader
//! never sees a partial file under the final name; and finding, listing and removing delivered files below the
//! target directory, which the delivery checker and retention rely on.

use std::io::{self, Read, Write};
use std::path::Path;

use ssh2::FileStat;

use super::error::{
    SftpError, driver_message, is_disconnect, is_not_found, is_timeout, session_code, ssh2_sys_err,
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

    pub(super) fn remote_path(&self, name: &str) -> String {
        if self.directory == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.directory)
        }
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

pub(super) fn validate_file_name(name: &str) -> Result<(), SftpError> {
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
