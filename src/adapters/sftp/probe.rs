//! Proving the target directory writable without leaving anything behind: the preflight creates a
//! hidden file, renames it and removes it, the three rights an upload needs.

use std::io::Write;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use ssh2::{OpenFlags, OpenType};

use super::error::{SftpError, driver_message, sftp_code, ssh2_sys_fx};
use super::session::SftpSession;

/// Prefix of the probe's file names: a dot file matching no export file pattern and no upload's
/// temporary name (`.{export file}.partial-...`), so neither retention nor a recheck ever takes it
/// for a delivery, and a customer's `ls` does not show it.
pub const PROBE_PREFIX: &str = ".scheduled-exports-preflight-";

impl SftpSession {
    /// Creates `.scheduled-exports-preflight-{tag:08x}{8 random hex}` in the target directory,
    /// writes a line to it, renames it (to the same name ending `.renamed`) and removes it. A
    /// refusal to create is [`SftpError::DirectoryNotWritable`]; a refusal to rename or remove
    /// names that step. The file is removed on every path once it exists.
    pub fn probe_writable(&self, tag: u32) -> Result<(), SftpError> {
        let random = StdRng::try_from_os_rng()
            .map_err(|err| SftpError::Session {
                detail: format!("the operating system gave no random bytes for a file name: {err}"),
            })?
            .next_u32();
        let created = self.probe_path(&format!("{PROBE_PREFIX}{tag:08x}{random:08x}"));
        let renamed = format!("{created}.renamed");
        let not_writable = |err: &ssh2::Error| SftpError::DirectoryNotWritable {
            address: self.address.clone(),
            directory: self.directory.clone(),
            detail: driver_message(err),
        };
        let mut file = self
            .sftp
            .open_mode(
                Path::new(&created),
                OpenFlags::WRITE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE,
                0o600,
                OpenType::File,
            )
            .map_err(|err| match sftp_code(&err) {
                Some(
                    ssh2_sys_fx::PERMISSION_DENIED
                    | ssh2_sys_fx::WRITE_PROTECT
                    | ssh2_sys_fx::NO_SUCH_FILE
                    | ssh2_sys_fx::NO_SPACE
                    | ssh2_sys_fx::QUOTA_EXCEEDED,
                ) => not_writable(&err),
                _ => self.remote_error("create", &created, err),
            })?;
        let written = file
            .write_all(b"scheduled-exports preflight: safe to delete\n")
            .map_err(|err| self.io_error("write", &created, err));
        drop(file);
        let result = written.and_then(|()| {
            self.sftp
                .rename(Path::new(&created), Path::new(&renamed), None)
                .map_err(|err| SftpError::Rename {
                    address: self.address.clone(),
                    from: created.clone(),
                    to: renamed.clone(),
                    detail: driver_message(&err),
                })
        });
        let left = if result.is_ok() { &renamed } else { &created };
        let removed = self
            .sftp
            .unlink(Path::new(left))
            .map_err(|err| self.remote_error("remove", left, err));
        result.and(removed)
    }

    fn probe_path(&self, name: &str) -> String {
        match self.directory.as_str() {
            "/" => format!("/{name}"),
            directory => format!("{directory}/{name}"),
        }
    }
}
