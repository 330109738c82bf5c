//! Uploads: bytes go to a temporary name in the target directory as they arrive, are synced and
//! size-checked, and only then renamed to the final name, so a reader never sees a partial file.
//!
//! Throughput across a WAN is a matter of how many bytes are in flight. libssh2 pipelines the
//! writes of one call (it cuts the buffer into 30,000-byte requests, sends them all and returns
//! once the first is acknowledged) and recognises, on the next call, what it already sent. A
//! writer that hands it the same buffer advanced by what was acknowledged, topped up at the end,
//! keeps a constant window in flight (a sliding window, as OpenSSH's `sftp` keeps 64 requests);
//! one that hands it separate pieces drains the pipe at the end of each.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use ssh2::{OpenFlags, OpenType, RenameFlags};

use super::error::{
    SftpError, driver_message, is_disconnect, is_not_found, is_timeout, sftp_code, ssh2_sys_fx,
};
use super::session::SftpSession;
use super::transfer::validate_file_name;

/// The most bytes handed to libssh2 unacknowledged. The server's channel window (2 MiB for
/// OpenSSH) bounds what is actually on the wire; twice that keeps the window full while
/// acknowledgements come back, and more would only sit in libssh2's queue as a second copy.
const MAX_WINDOW: usize = 4 * 1024 * 1024;
/// The first and smallest window. The session timeout bounds each libssh2 call as a whole
/// (sending what was added and waiting for the first acknowledgement), and libssh2 makes requests
/// of up to 30,000 bytes of what it is handed, so on a slow link a call must stay small enough to
/// get through within it: the window starts small and grows while calls are quick, which on a
/// fast link takes a few milliseconds.
const MIN_WINDOW: usize = 4 * 1024;
/// How much a caller's data is gathered into before it is sent (`write` calls of any size).
const GATHER: usize = 256 * 1024;

/// Permissions of a delivered file: readable by the account and its group (an import job on the
/// customer's side often runs as another user of that group), never world-readable, since files
/// hold CRM personal data.
const FILE_MODE: i32 = 0o640;

/// An upload under way, under its temporary name. Dropped unfinished, it removes that file.
pub struct StreamingUpload<'s> {
    session: &'s SftpSession,
    remote: Option<ssh2::File>,
    staged: StagedFile,
    /// Bytes not yet acknowledged (`buffer[start..]`; libssh2 has sent a prefix of them).
    buffer: Vec<u8>,
    start: usize,
    window: Window,
    /// Bytes acknowledged by the server.
    acknowledged: u64,
    observe: Option<Box<dyn FnMut(u64) + 's>>,
}

/// A complete upload waiting under its temporary name for [`SftpSession::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub file_name: String,
    pub temp_path: String,
    pub final_path: String,
    pub size: u64,
}

impl SftpSession {
    /// Starts an upload of `file_name`: its bytes go to `.{file_name}.partial-<16 hex>` (a dot
    /// file that never matches an export file pattern; the first 8 hex digits are the session's
    /// upload tag when it has one, so retention can tell its own dead uploads apart), created
    /// exclusively. Whether a file under the final name may be replaced is the caller's decision;
    /// [`SftpSession::publish`] never overwrites one.
    pub fn begin_upload(&self, file_name: &str) -> Result<StreamingUpload<'_>, SftpError> {
        validate_file_name(file_name)?;
        let final_path = self.remote_path(file_name);
        let suffix = match self.upload_tag.get() {
            Some(tag) => format!("{tag:08x}{:08x}", random_u64()? as u32),
            None => format!("{:016x}", random_u64()?),
        };
        let temp_path = self.remote_path(&format!(".{file_name}.partial-{suffix}"));
        let remote = self
            .sftp
            .open_mode(
                Path::new(&temp_path),
                OpenFlags::WRITE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE,
                FILE_MODE,
                OpenType::File,
            )
            .map_err(|err| {
                let code = sftp_code(&err);
                if code == Some(ssh2_sys_fx::PERMISSION_DENIED)
                    || code == Some(ssh2_sys_fx::WRITE_PROTECT)
                    || code == Some(ssh2_sys_fx::NO_SUCH_FILE)
                {
                    SftpError::DirectoryNotWritable {
                        address: self.address.clone(),
                        directory: self.directory.clone(),
                        detail: driver_message(&err),
                    }
                } else {
                    self.remote_error("create", &temp_path, err)
                }
            })?;
        Ok(StreamingUpload {
            session: self,
            remote: Some(remote),
            staged: StagedFile {
                file_name: file_name.to_string(),
                temp_path,
                final_path,
                size: 0,
            },
            buffer: Vec::with_capacity(GATHER * 2),
            start: 0,
            window: Window::new(self.timeout),
            acknowledged: 0,
            observe: None,
        })
    }

    /// Renames a staged upload to its final name and checks its size there. Never overwrites:
    /// a file under the final name makes it fail with [`SftpError::AlreadyExists`], leaving that
    /// file as it is. On failure the staged file is removed and nothing is under the final name
    /// that this call put there.
    pub fn publish(&self, staged: &StagedFile) -> Result<(), SftpError> {
        if let Err(err) = self.rename_into_place(&staged.temp_path, &staged.final_path) {
            self.discard(staged);
            return Err(err);
        }
        // A file of the wrong size under the final name is removed so that a reader never takes
        // it for a complete export.
        let actual = self.file_size(&staged.final_path)?;
        if actual != staged.size {
            let _ = self.sftp.unlink(Path::new(&staged.final_path));
            return Err(SftpError::SizeMismatch {
                address: self.address.clone(),
                path: staged.final_path.clone(),
                expected: staged.size,
                actual,
            });
        }
        tracing::debug!(path = %staged.final_path, bytes = staged.size, address = %self.address, "uploaded");
        Ok(())
    }

    /// Removes a staged upload that is not to be published (best effort).
    pub fn discard(&self, staged: &StagedFile) {
        if let Err(err) = self.sftp.unlink(Path::new(&staged.temp_path))
            && !is_not_found(&err)
        {
            tracing::warn!(path = %staged.temp_path, address = %self.address, error = %driver_message(&err),
                "could not remove the temporary upload file");
        }
    }

    /// Uploads `local` as `file_name` in the target directory and returns the number of bytes
    /// delivered; see [`SftpSession::upload_from`].
    pub fn upload(&self, local: &Path, file_name: &str) -> Result<u64, SftpError> {
        let local_error = |source| SftpError::LocalFile {
            path: local.to_path_buf(),
            source,
        };
        let mut local_file = std::fs::File::open(local).map_err(local_error)?;
        let local_size = local_file.metadata().map_err(local_error)?.len();
        self.upload_from(&mut local_file, local_size, file_name)
            .map_err(|err| match err {
                SftpError::SourceFailed { detail, .. } => SftpError::LocalFile {
                    path: local.to_path_buf(),
                    source: io::Error::other(detail),
                },
                other => other,
            })
    }

    /// Uploads exactly `size` bytes read from `source` as `file_name` in the target directory:
    /// staged under a temporary name (see [`SftpSession::begin_upload`]), size-checked, renamed.
    /// On any failure, a read error of `source` included (a source that verifies what it hands
    /// out fails at its end), the temporary file is removed and nothing exists under the final
    /// name.
    ///
    /// Overwrite: never. If `file_name` already exists, the upload fails with
    /// [`SftpError::AlreadyExists`] before anything is written, and the existing file is left
    /// untouched.
    pub fn upload_from(
        &self,
        source: &mut dyn Read,
        size: u64,
        file_name: &str,
    ) -> Result<u64, SftpError> {
        validate_file_name(file_name)?;
        let final_path = self.remote_path(file_name);
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
        let mut upload = self.begin_upload(file_name)?;
        let source_error = |err: io::Error| SftpError::SourceFailed {
            address: self.address.clone(),
            path: final_path.clone(),
            detail: err.to_string(),
        };
        let mut buffer = vec![0_u8; GATHER];
        loop {
            let read = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(source_error(err)),
            };
            upload.write(&buffer[..read])?;
        }
        let staged = upload.finish()?;
        if staged.size != size {
            self.discard(&staged);
            // The source held another length than it claimed.
            return Err(source_error(io::Error::other(format!(
                "the content changed while it was sent: read {} bytes, expected {size}",
                staged.size
            ))));
        }
        self.publish(&staged)?;
        Ok(size)
    }

    fn rename_into_place(&self, temp_path: &str, final_path: &str) -> Result<(), SftpError> {
        // ATOMIC|NATIVE ask for POSIX semantics where the server offers them (protocol v5+);
        // OpenSSH speaks v3, where rename is a link+unlink that fails when the target exists,
        // which is exactly the no-overwrite rule.
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
}

impl<'s> StreamingUpload<'s> {
    /// Tells `observe` the bytes the server has acknowledged so far, as the upload goes.
    pub fn observed(mut self, observe: impl FnMut(u64) + 's) -> Self {
        self.observe = Some(Box::new(observe));
        self
    }

    /// Adds `data` to the file; sends while a full window is waiting.
    pub fn write(&mut self, data: &[u8]) -> Result<(), SftpError> {
        self.buffer.extend_from_slice(data);
        while self.buffer.len() - self.start >= self.window.size {
            self.send_some()?;
        }
        Ok(())
    }

    /// Sends what is left, makes it durable and checks its size on the server: the file is then
    /// complete under its temporary name.
    pub fn finish(mut self) -> Result<StagedFile, SftpError> {
        while self.start < self.buffer.len() {
            self.send_some()?;
        }
        let session = self.session;
        let temp_path = self.staged.temp_path.clone();
        let Some(mut remote) = self.remote.take() else {
            return Err(SftpError::Session {
                detail: "the upload was already finished".to_string(),
            });
        };
        let result = (|| {
            // Durability before the rename makes the file visible; servers without
            // fsync@openssh.com just skip it.
            if let Err(err) = remote.fsync() {
                if is_timeout(&err) || is_disconnect(&err) {
                    return Err(session.remote_error("fsync", &temp_path, err));
                }
                tracing::debug!(error = %driver_message(&err), "server did not fsync the upload (extension unsupported?)");
            }
            let written = remote
                .stat()
                .map_err(|err| session.remote_error("stat", &temp_path, err))?
                .size
                .unwrap_or(self.acknowledged);
            drop(remote); // closes the handle before the rename
            if written != self.acknowledged {
                return Err(SftpError::SizeMismatch {
                    address: session.address.clone(),
                    path: temp_path.clone(),
                    expected: self.acknowledged,
                    actual: written,
                });
            }
            Ok(())
        })();
        let mut staged = self.staged.clone();
        staged.size = self.acknowledged;
        match result {
            Ok(()) => {
                // Handed over: from here the caller publishes or discards it.
                self.staged.temp_path.clear();
                Ok(staged)
            }
            Err(err) => Err(err),
        }
    }

    /// One libssh2 write of everything not yet acknowledged: it sends what it has not sent yet
    /// and returns once the oldest request is acknowledged.
    fn send_some(&mut self) -> Result<(), SftpError> {
        let Some(remote) = self.remote.as_mut() else {
            return Ok(());
        };
        let end = self.buffer.len().min(self.start + self.window.size);
        let started = Instant::now();
        let acknowledged = loop {
            match remote.write(&self.buffer[self.start..end]) {
                // libssh2 sent part of the oldest request (the server's window ran out inside
                // it) and so has no acknowledgement to count yet: call again, within the timeout.
                Ok(0) if started.elapsed() < self.session.timeout => continue,
                Ok(0) => {
                    return Err(SftpError::Timeout {
                        address: self.session.address.clone(),
                        step: format!("write {:?}", self.staged.temp_path),
                        timeout: self.session.timeout,
                    });
                }
                Ok(count) => break count,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(self.session.io_error("write", &self.staged.temp_path, err));
                }
            }
        };
        self.window.observe(started.elapsed());
        self.start += acknowledged;
        self.acknowledged += acknowledged as u64;
        // Keep the buffer from growing: move the unacknowledged rest to the front once the
        // acknowledged part is larger than it (the bytes stay the same, which is all libssh2
        // needs of the next call).
        if self.start >= GATHER && self.start * 2 >= self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        if let Some(observe) = self.observe.as_mut() {
            observe(self.acknowledged);
        }
        Ok(())
    }
}

impl Drop for StreamingUpload<'_> {
    fn drop(&mut self) {
        // Unfinished (an error on either side of the stream): nothing may stay behind.
        if !self.staged.temp_path.is_empty() {
            self.remote.take();
            self.session.discard(&self.staged);
        }
    }
}

/// The window, sized by how fast the link moves: it doubles while a call takes less than a
/// quarter of the timeout and halves while one takes more than half of it, so a transfer fails
/// only when a small call makes no progress for a whole timeout.
struct Window {
    size: usize,
    timeout: Duration,
}

impl Window {
    fn new(timeout: Duration) -> Self {
        Self {
            size: MIN_WINDOW,
            timeout,
        }
    }

    fn observe(&mut self, took: Duration) {
        if took < self.timeout / 4 {
            self.size = (self.size * 2).min(MAX_WINDOW);
        } else if took > self.timeout / 2 {
            self.size = (self.size / 2).max(MIN_WINDOW);
        }
    }
}

/// Keeps two uploads of the same name apart (two operator replicas, a retry racing a slow first
/// attempt).
fn random_u64() -> Result<u64, SftpError> {
    let mut rng = StdRng::try_from_os_rng().map_err(|err| SftpError::Session {
        detail: format!("the operating system gave no random bytes for a temporary name: {err}"),
    })?;
    Ok(rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_on_a_fast_link_and_shrinks_on_a_slow_one() {
        let mut window = Window::new(Duration::from_secs(8));
        for _ in 0..20 {
            window.observe(Duration::from_millis(10));
        }
        assert_eq!(window.size, MAX_WINDOW);
        for _ in 0..20 {
            window.observe(Duration::from_secs(5));
        }
        assert_eq!(window.size, MIN_WINDOW);
        window.observe(Duration::from_secs(3));
        assert_eq!(
            window.size, MIN_WINDOW,
            "between a quarter and a half: kept"
        );
    }
}
