//! Delivery of export files to an institution's SFTP server.
//!
//! This is a *blocking* client over `ssh2` (libssh2): libssh2 is a C library with its own socket loop, so wrapping it in
//! async would buy nothing. Callers run every call inside `tokio::task::spawn_blocking`.
//!
//! What this module guarantees, because the contract depends on it:
//! - the server's host key must match `knownHosts` *before* any credential is sent; there is no trust on first use;
//! - every network step is bounded by the timeout given to [`SftpSession::connect`] (TCP connect, handshake,
//!   authentication and every SFTP request);
//! - an upload goes to a temporary name in the target directory and is renamed to its final name only once complete
//!   and of the right size, so a reader never sees a partial file under the final name;
//! - no error message, `Debug` output or log line contains a private key, passphrase or password.

use crate::resource::ConditionReason;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2::{
    CheckResult, ErrorCode, FileStat, HashType, HostKeyType, KnownHostFileKind, KnownHosts,
    MethodType, OpenFlags, OpenType, RenameFlags, Session, Sftp,
};

/// Secret keys of the SFTP credentials Secret.
pub const SECRET_KEY_PRIVATE_KEY: &str = "privateKey";
pub const SECRET_KEY_PASSPHRASE: &str = "passphrase";
pub const SECRET_KEY_PASSWORD: &str = "password";
pub const SECRET_KEY_KNOWN_HOSTS: &str = "knownHosts";

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

/// Everything that can go wrong talking to an SFTP server. Each message names the cause and what to fix; none ever
/// includes a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SftpError {
    #[error("Secret {secret:?} has no key {key:?}: {hint}")]
    MissingSecretKey {
        secret: String,
        key: &'static str,
        hint: &'static str,
    },
    #[error("Secret {secret:?} key {key:?} is invalid: {reason}")]
    InvalidSecretValue {
        secret: String,
        key: &'static str,
        reason: String,
    },
    #[error("invalid SFTP destination: {reason}")]
    InvalidTarget { reason: String },
    #[error(
        "knownHosts holds no usable host key line ({reason}); put the server's public host key(s) in OpenSSH \
         known_hosts format into the Secret's knownHosts key, e.g. the output of `ssh-keyscan -p PORT HOST` \
         checked against a fingerprint obtained from the server's operator"
    )]
    KnownHostsInvalid { reason: String },
    #[error(
        "cannot resolve SFTP host {host:?}: {source}; check destination.sftp.host and the cluster's DNS"
    )]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "connection to {address} timed out after {timeout:?}; check destination.sftp.host and port and that \
         the server (and any firewall on the way) accepts connections from this cluster"
    )]
    ConnectTimeout { address: String, timeout: Duration },
    #[error(
        "connection to {address} refused: nothing listens on that port; check destination.sftp.port \
         (SFTP normally uses 22)"
    )]
    ConnectRefused { address: String },
    #[error(
        "cannot connect to {address}: {source}; check destination.sftp.host and port and the network path"
    )]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "SSH handshake with {address} failed ({detail}); is this port an SSH/SFTP server? check \
         destination.sftp.port"
    )]
    Handshake { address: String, detail: String },
    #[error(
        "{step} with {address} timed out after {timeout:?}; the server stopped answering, retry later or check \
         the server"
    )]
    Timeout {
        address: String,
        step: String,
        timeout: Duration,
    },
    #[error(
        "HOST KEY MISMATCH for {address}: the server presented {key_type} key {fingerprint}, which differs from \
         every key knownHosts lists for this host; nothing was sent. If the server's operator confirms the key \
         changed, replace the entry in the Secret's knownHosts; otherwise someone may be intercepting the connection"
    )]
    HostKeyMismatch {
        address: String,
        key_type: String,
        fingerprint: String,
    },
    #[error(
        "host {address} is not in knownHosts (the server presented {key_type} key {fingerprint}); there is no \
         trust on first use: add a line for this host and port (`[host]:port` when the port is not 22) to the \
         Secret's knownHosts after checking the fingerprint with the server's operator"
    )]
    HostKeyUnknown {
        address: String,
        key_type: String,
        fingerprint: String,
    },
    #[error(
        "the host key {fingerprint} presented by {address} is marked @revoked in knownHosts; nothing was sent. \
         Ask the server's operator for the current key"
    )]
    HostKeyRevoked {
        address: String,
        fingerprint: String,
    },
    #[error(
        "authentication as {username:?} on {address} with {method} failed: {detail}; check \
         destination.sftp.username and the {method} in the Secret (server accepts: {allowed})"
    )]
    AuthenticationFailed {
        address: String,
        username: String,
        method: &'static str,
        allowed: String,
        detail: String,
    },
    #[error(
        "the Secret's privateKey could not be loaded: {detail}; it must be an unencrypted or passphrase-protected \
         OpenSSH or PEM private key, with the right passphrase in the Secret's passphrase key"
    )]
    PrivateKeyUnreadable { detail: String },
    #[error(
        "the SFTP subsystem on {address} is not available ({detail}); the account must allow SFTP"
    )]
    SftpSubsystem { address: String, detail: String },
    #[error(
        "directory {directory:?} does not exist on {address}; create it on the server or fix \
         destination.sftp.directory"
    )]
    DirectoryMissing { address: String, directory: String },
    #[error(
        "could not look everywhere below the directory on {address} ({place}); the file is not copied again, so it never duplicates one a customer moved there"
    )]
    SearchIncomplete { address: String, place: String },
    #[error("{directory:?} on {address} is not a directory; fix destination.sftp.directory")]
    NotADirectory { address: String, directory: String },
    #[error(
        "cannot create files in directory {directory:?} on {address} ({detail}); the account needs write \
         permission on that directory"
    )]
    DirectoryNotWritable {
        address: String,
        directory: String,
        detail: String,
    },
    #[error(
        "{path:?} already exists on {address}; refusing to overwrite a delivered file (remove it on the server \
         to deliver again)"
    )]
    AlreadyExists { address: String, path: String },
    #[error(
        "renaming {from:?} to {to:?} on {address} failed ({detail}); the server must allow rename in the directory"
    )]
    Rename {
        address: String,
        from: String,
        to: String,
        detail: String,
    },
    #[error(
        "{path:?} on {address} has {actual} bytes after upload, expected {expected}; the server may be out of \
         space or truncating uploads"
    )]
    SizeMismatch {
        address: String,
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("{operation} {path:?} on {address} failed: {detail}")]
    Remote {
        address: String,
        operation: &'static str,
        path: String,
        detail: String,
    },
    #[error("connection to {address} was lost during {operation}: {detail}; retry later")]
    ConnectionLost {
        address: String,
        operation: String,
        detail: String,
    },
    #[error("cannot read local file {path:?}: {source}")]
    LocalFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid remote file name {name:?}: {reason}")]
    InvalidFileName { name: String, reason: &'static str },
    #[error("SSH session setup failed: {detail}")]
    Session { detail: String },
}

impl SftpError {
    /// A short CamelCase cause, for condition reasons and metric labels.
    pub fn reason(&self) -> ConditionReason {
        match self {
            SftpError::MissingSecretKey { .. } | SftpError::InvalidSecretValue { .. } => {
                ConditionReason::SecretInvalid
            }
            SftpError::InvalidTarget { .. } => ConditionReason::DestinationInvalid,
            SftpError::KnownHostsInvalid { .. } => ConditionReason::KnownHostsInvalid,
            SftpError::Resolve { .. } => ConditionReason::HostUnresolvable,
            SftpError::ConnectTimeout { .. } | SftpError::Timeout { .. } => {
                ConditionReason::Timeout
            }
            SftpError::ConnectRefused { .. } => ConditionReason::ConnectionRefused,
            SftpError::Connect { .. } | SftpError::ConnectionLost { .. } => {
                ConditionReason::ConnectionFailed
            }
            SftpError::Handshake { .. } => ConditionReason::HandshakeFailed,
            SftpError::HostKeyMismatch { .. } => ConditionReason::HostKeyMismatch,
            SftpError::HostKeyUnknown { .. } => ConditionReason::HostKeyUnknown,
            SftpError::HostKeyRevoked { .. } => ConditionReason::HostKeyRevoked,
            SftpError::AuthenticationFailed { .. } => ConditionReason::AuthenticationFailed,
            SftpError::PrivateKeyUnreadable { .. } => ConditionReason::PrivateKeyUnreadable,
            SftpError::SftpSubsystem { .. } => ConditionReason::SftpUnavailable,
            SftpError::DirectoryMissing { .. } | SftpError::NotADirectory { .. } => {
                ConditionReason::DirectoryMissing
            }
            SftpError::DirectoryNotWritable { .. } => ConditionReason::DirectoryNotWritable,
            SftpError::SearchIncomplete { .. } => ConditionReason::SearchIncomplete,
            SftpError::AlreadyExists { .. } => ConditionReason::FileExists,
            SftpError::Rename { .. } => ConditionReason::RenameFailed,
            SftpError::SizeMismatch { .. } => ConditionReason::SizeMismatch,
            SftpError::Remote { .. } => ConditionReason::RemoteError,
            SftpError::LocalFile { .. } => ConditionReason::LocalFileError,
            SftpError::InvalidFileName { .. } => ConditionReason::InvalidFileName,
            SftpError::Session { .. } => ConditionReason::SessionError,
        }
    }

    /// Whether retrying later without any configuration change may succeed (network trouble, server load), as
    /// opposed to a configuration problem a person must fix (credentials, host key, directory).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SftpError::Resolve { .. }
                | SftpError::ConnectTimeout { .. }
                | SftpError::ConnectRefused { .. }
                | SftpError::Connect { .. }
                | SftpError::Handshake { .. }
                | SftpError::Timeout { .. }
                | SftpError::ConnectionLost { .. }
                | SftpError::SizeMismatch { .. }
                | SftpError::Remote { .. }
        )
    }
}

/// Where to deliver: `destination.sftp` of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpTarget {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Absolute directory on the server, e.g. `/exports`.
    pub directory: String,
}

impl SftpTarget {
    /// The target that `spec.destination.sftp` names.
    pub fn of(destination: &crate::resource::SftpDestination) -> Self {
        Self {
            host: destination.host.clone(),
            port: destination.port,
            username: destination.username.clone(),
            directory: destination.directory.clone(),
        }
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn directory(&self) -> &str {
        match self.directory.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        }
    }
}

/// How to authenticate. `Debug` never prints the secret parts.
#[derive(Clone)]
pub enum SftpAuth {
    /// A private key in OpenSSH (`-----BEGIN OPENSSH PRIVATE KEY-----`) or PEM format, optionally encrypted.
    PrivateKey {
        key_pem: String,
        passphrase: Option<String>,
    },
    Password(String),
}

impl fmt::Debug for SftpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SftpAuth::PrivateKey { passphrase, .. } => f
                .debug_struct("PrivateKey")
                .field("key_pem", &"<redacted>")
                .field("passphrase", &passphrase.as_ref().map(|_| "<redacted>"))
                .finish(),
            SftpAuth::Password(_) => f.debug_tuple("Password").field(&"<redacted>").finish(),
        }
    }
}

impl SftpAuth {
    fn method(&self) -> &'static str {
        match self {
            SftpAuth::PrivateKey { .. } => "private key",
            SftpAuth::Password(_) => "password",
        }
    }
}

/// Credentials and trusted host keys, from the Secret named by `destination.sftp.secretRef`.
#[derive(Clone)]
pub struct SftpCredentials {
    pub auth: SftpAuth,
    /// OpenSSH known_hosts text; plain, `[host]:port` and hashed (`|1|`) entries are understood.
    pub known_hosts: String,
}

impl fmt::Debug for SftpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // known_hosts is public data, but its length is all a log reader needs.
        f.debug_struct("SftpCredentials")
            .field("auth", &self.auth)
            .field(
                "known_hosts",
                &format_args!("<{} lines>", self.known_hosts.lines().count()),
            )
            .finish()
    }
}

impl SftpCredentials {
    /// Reads the Secret's data map: `privateKey` (+ optional `passphrase`) or `password`, and the required
    /// `knownHosts`. When both a key and a password are present the key wins (it is the stronger method, and a
    /// leftover password should not silently take over). Errors name the missing key and the Secret, never a value.
    pub fn from_secret_data(
        secret_name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, SftpError> {
        let text = |key: &'static str| -> Result<Option<String>, SftpError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| {
                    SftpError::InvalidSecretValue {
                        secret: secret_name.to_string(),
                        key,
                        reason: "not UTF-8 text".to_string(),
                    }
                }),
            }
        };
        let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());

        let known_hosts =
            non_empty(text(SECRET_KEY_KNOWN_HOSTS)?).ok_or_else(|| SftpError::MissingSecretKey {
                secret: secret_name.to_string(),
                key: SECRET_KEY_KNOWN_HOSTS,
                hint: "add the server's host key(s) in OpenSSH known_hosts format (there is no trust on first use)",
            })?;
        let auth = if let Some(key_pem) = non_empty(text(SECRET_KEY_PRIVATE_KEY)?) {
            // Secrets written from YAML or Windows tools often carry CRLF or lose the final newline; libssh2's
            // parser wants neither.
            let key_pem = format!("{}\n", key_pem.replace("\r\n", "\n").trim());
            let passphrase = text(SECRET_KEY_PASSPHRASE)?.filter(|p| !p.is_empty());
            SftpAuth::PrivateKey {
                key_pem,
                passphrase,
            }
        } else if let Some(password) = text(SECRET_KEY_PASSWORD)?.filter(|p| !p.is_empty()) {
            SftpAuth::Password(password)
        } else {
            return Err(SftpError::MissingSecretKey {
                secret: secret_name.to_string(),
                key: SECRET_KEY_PRIVATE_KEY,
                hint: "add privateKey (and passphrase if the key is encrypted) or password",
            });
        };
        Ok(SftpCredentials { auth, known_hosts })
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

/// An authenticated SFTP session rooted at the target directory.
pub struct SftpSession {
    // `sftp` must drop before `session`; fields drop in declaration order.
    sftp: Sftp,
    session: Session,
    address: String,
    directory: String,
    timeout: Duration,
}

impl fmt::Debug for SftpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpSession")
            .field("address", &self.address)
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

impl Drop for SftpSession {
    fn drop(&mut self) {
        // Courtesy to the server's logs; bounded by the session timeout.
        let _ = self.session.disconnect(None, "done", None);
    }
}

impl SftpSession {
    /// Connects, verifies the host key against `knownHosts`, authenticates, opens SFTP and checks that the target
    /// directory exists. `timeout` bounds each network step separately (TCP connect per address, handshake,
    /// authentication and every later SFTP request).
    pub fn connect(
        target: &SftpTarget,
        credentials: &SftpCredentials,
        timeout: Duration,
    ) -> Result<Self, SftpError> {
        validate_target(target)?;
        let address = target.address();
        let timeout = timeout.max(Duration::from_millis(1));
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);

        let mut session = Session::new().map_err(|err| SftpError::Session {
            detail: err.message().to_string(),
        })?;
        session.set_timeout(timeout_ms);
        // Parse knownHosts before touching the network: a Secret without any usable entry is a configuration error
        // that no connection attempt can fix.
        let known = KnownHostsFile::parse(&session, &credentials.known_hosts)?;
        let host_key_types = known.key_types_for(&target.host, target.port);
        if !host_key_types.is_empty() {
            // Ask for a host key of a type knownHosts has for this host: a server usually holds several (ed25519,
            // ecdsa, rsa), and libssh2 would otherwise pick its own favourite and then "mismatch".
            prefer_host_key_types(&session, &host_key_types);
        }

        prefer_fast_ciphers(&session);

        let stream = connect_tcp(target, &address, timeout)?;
        session.set_tcp_stream(stream);
        session.handshake().map_err(|err| {
            if is_timeout(&err) {
                SftpError::Timeout {
                    address: address.clone(),
                    step: "SSH handshake".to_string(),
                    timeout,
                }
            } else if !host_key_types.is_empty()
                && session_code(&err) == Some(ssh2_sys_err::KEX_FAILURE)
            {
                // We offered only the host key types knownHosts lists for this host; the server has none of them.
                SftpError::HostKeyMismatch {
                    address: address.clone(),
                    key_type: format!("no key of type {}", host_key_types.join(" or ")),
                    fingerprint: "(none)".to_string(),
                }
            } else {
                SftpError::Handshake {
                    address: address.clone(),
                    detail: err.message().to_string(),
                }
            }
        })?;

        verify_host_key(&session, &known, target, &address)?;
        authenticate(&session, target, credentials, &address, timeout)?;

        let sftp = session.sftp().map_err(|err| {
            if is_timeout(&err) {
                SftpError::Timeout {
                    address: address.clone(),
                    step: "opening the SFTP subsystem".to_string(),
                    timeout,
                }
            } else {
                SftpError::SftpSubsystem {
                    address: address.clone(),
                    detail: err.message().to_string(),
                }
            }
        })?;
        let this = SftpSession {
            sftp,
            session,
            address,
            directory: target.directory().to_string(),
            timeout,
        };
        this.check_directory()?;
        Ok(this)
    }

    /// The target directory, as used in remote paths.
    pub fn directory(&self) -> &str {
        &self.directory
    }

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
        let temp_path = self.remote_path(&format!(".{file_name}.partial-{:016x}", random_u64()));

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

        // The contract checks the size under the final name too; a file of the wrong size there is removed so that
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

    fn check_directory(&self) -> Result<(), SftpError> {
        match self.sftp.stat(Path::new(&self.directory)) {
            Ok(stat) if stat.is_dir() => Ok(()),
            Ok(_) => Err(SftpError::NotADirectory {
                address: self.address.clone(),
                directory: self.directory.clone(),
            }),
            Err(err) if is_not_found(&err) => Err(SftpError::DirectoryMissing {
                address: self.address.clone(),
                directory: self.directory.clone(),
            }),
            Err(err) => Err(self.remote_error("stat", &self.directory, err)),
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

    fn remote_error(&self, operation: &'static str, path: &str, err: ssh2::Error) -> SftpError {
        if is_timeout(&err) {
            SftpError::Timeout {
                address: self.address.clone(),
                step: format!("{operation} {path:?}"),
                timeout: self.timeout,
            }
        } else if is_disconnect(&err) {
            SftpError::ConnectionLost {
                address: self.address.clone(),
                operation: format!("{operation} {path:?}"),
                detail: err.message().to_string(),
            }
        } else {
            SftpError::Remote {
                address: self.address.clone(),
                operation,
                path: path.to_string(),
                detail: describe(&err),
            }
        }
    }

    fn io_error(&self, operation: &'static str, path: &str, err: io::Error) -> SftpError {
        if err.kind() == io::ErrorKind::TimedOut {
            SftpError::Timeout {
                address: self.address.clone(),
                step: format!("{operation} {path:?}"),
                timeout: self.timeout,
            }
        } else {
            SftpError::Remote {
                address: self.address.clone(),
                operation,
                path: path.to_string(),
                detail: err.to_string(),
            }
        }
    }
}

/// SFTP status codes (libssh2's `LIBSSH2_FX_*`), named here because `ssh2` exposes them only as raw numbers.
mod ssh2_sys_fx {
    pub const NO_SUCH_FILE: i32 = 2;
    pub const PERMISSION_DENIED: i32 = 3;
    pub const FAILURE: i32 = 4;
    pub const OP_UNSUPPORTED: i32 = 8;
    pub const NO_SUCH_PATH: i32 = 10;
    pub const WRITE_PROTECT: i32 = 12;
    pub const NO_SPACE: i32 = 14;
    pub const QUOTA_EXCEEDED: i32 = 15;
}

/// libssh2 session error codes used to classify failures.
mod ssh2_sys_err {
    pub const KEX_FAILURE: i32 = -5;
    pub const SOCKET_SEND: i32 = -7;
    pub const TIMEOUT: i32 = -9;
    pub const SOCKET_DISCONNECT: i32 = -13;
    pub const FILE: i32 = -16;
    pub const AUTHENTICATION_FAILED: i32 = -18;
    pub const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub const SOCKET_TIMEOUT: i32 = -30;
    pub const SOCKET_RECV: i32 = -43;
    pub const KEYFILE_AUTH_FAILED: i32 = -48;
}

fn sftp_code(err: &ssh2::Error) -> Option<i32> {
    match err.code() {
        ErrorCode::SFTP(code) => Some(code),
        ErrorCode::Session(_) => None,
    }
}

fn session_code(err: &ssh2::Error) -> Option<i32> {
    match err.code() {
        ErrorCode::Session(code) => Some(code),
        ErrorCode::SFTP(_) => None,
    }
}

fn is_not_found(err: &ssh2::Error) -> bool {
    matches!(
        sftp_code(err),
        Some(ssh2_sys_fx::NO_SUCH_FILE | ssh2_sys_fx::NO_SUCH_PATH)
    )
}

fn is_timeout(err: &ssh2::Error) -> bool {
    matches!(
        session_code(err),
        Some(ssh2_sys_err::TIMEOUT | ssh2_sys_err::SOCKET_TIMEOUT)
    )
}

fn is_disconnect(err: &ssh2::Error) -> bool {
    matches!(
        session_code(err),
        Some(
            ssh2_sys_err::SOCKET_DISCONNECT | ssh2_sys_err::SOCKET_SEND | ssh2_sys_err::SOCKET_RECV
        )
    )
}

/// A readable description of an SFTP status, since libssh2's own message for them is a generic
/// "SFTP Protocol Error".
fn describe(err: &ssh2::Error) -> String {
    let what = match sftp_code(err) {
        Some(ssh2_sys_fx::NO_SUCH_FILE | ssh2_sys_fx::NO_SUCH_PATH) => "no such file or directory",
        Some(ssh2_sys_fx::PERMISSION_DENIED) => "permission denied",
        Some(ssh2_sys_fx::FAILURE) => "the server reported a failure",
        Some(ssh2_sys_fx::OP_UNSUPPORTED) => "operation not supported by the server",
        Some(ssh2_sys_fx::WRITE_PROTECT) => "write-protected",
        Some(ssh2_sys_fx::NO_SPACE) => "no space left on the server",
        Some(ssh2_sys_fx::QUOTA_EXCEEDED) => "quota exceeded on the server",
        _ => return err.message().to_string(),
    };
    what.to_string()
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

/// Random enough to keep two uploads of the same name apart (two operator replicas, a retry racing a slow first
/// attempt); not a security boundary, so std's randomly keyed hasher is sufficient.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

fn validate_target(target: &SftpTarget) -> Result<(), SftpError> {
    let invalid = |reason: &str| SftpError::InvalidTarget {
        reason: reason.to_string(),
    };
    if target.host.is_empty() || target.host.contains(['\0', '/', ' ']) {
        return Err(invalid("host must be a host name or IP address"));
    }
    if target.port == 0 {
        return Err(invalid("port must be between 1 and 65535"));
    }
    if target.username.is_empty() || target.username.contains('\0') {
        return Err(invalid("username must not be empty"));
    }
    if !target.directory.starts_with('/')
        || target.directory.contains('\0')
        || target.directory.split('/').any(|part| part == "..")
    {
        return Err(invalid("directory must be an absolute path without `..`"));
    }
    Ok(())
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

fn connect_tcp(
    target: &SftpTarget,
    address: &str,
    timeout: Duration,
) -> Result<TcpStream, SftpError> {
    let addresses: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|source| SftpError::Resolve {
            host: target.host.clone(),
            source,
        })?
        .collect();
    let mut last = None;
    for socket_address in &addresses {
        match TcpStream::connect_timeout(socket_address, timeout) {
            Ok(stream) => {
                // libssh2 waits with its own session timeout; the socket timeouts bound any raw read/write that
                // would otherwise block forever on a half-open connection.
                let configured = stream
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| stream.set_write_timeout(Some(timeout)))
                    .and_then(|()| stream.set_nodelay(true));
                if let Err(source) = configured {
                    return Err(SftpError::Connect {
                        address: address.to_string(),
                        source,
                    });
                }
                return Ok(stream);
            }
            Err(err) => last = Some(err),
        }
    }
    Err(match last {
        Some(err) if err.kind() == io::ErrorKind::TimedOut => SftpError::ConnectTimeout {
            address: address.to_string(),
            timeout,
        },
        Some(err) if err.kind() == io::ErrorKind::ConnectionRefused => SftpError::ConnectRefused {
            address: address.to_string(),
        },
        Some(source) => SftpError::Connect {
            address: address.to_string(),
            source,
        },
        None => SftpError::Resolve {
            host: target.host.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address found"),
        },
    })
}

/// knownHosts, one libssh2 `KnownHosts` per line, so that we can tell *which* lines concern the host (and so which
/// key types to ask the server for) even for hashed `|1|` entries, whose host names only libssh2 can match.
struct KnownHostsFile {
    entries: Vec<(String, KnownHosts)>,
    /// Base64 keys of `@revoked` lines.
    revoked: Vec<String>,
}

impl KnownHostsFile {
    fn parse(session: &Session, text: &str) -> Result<Self, SftpError> {
        let mut entries = Vec::new();
        let mut revoked = Vec::new();
        let mut unusable = 0_usize;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('@') {
                let mut fields = rest.split_whitespace();
                match (fields.next(), fields.nth(1), fields.next()) {
                    (Some("revoked"), Some(_key_type), Some(key)) => revoked.push(key.to_string()),
                    // Host certificates are not supported by libssh2; such a line cannot vouch for a host.
                    _ => unusable += 1,
                }
                continue;
            }
            let Some(key_type) = line.split_whitespace().nth(1) else {
                unusable += 1;
                continue;
            };
            let mut known = session.known_hosts().map_err(|err| SftpError::Session {
                detail: err.message().to_string(),
            })?;
            match known.read_str(line, KnownHostFileKind::OpenSSH) {
                Ok(()) => entries.push((key_type.to_string(), known)),
                Err(_) => unusable += 1,
            }
        }
        if entries.is_empty() {
            return Err(SftpError::KnownHostsInvalid {
                reason: if unusable == 0 {
                    "it is empty".to_string()
                } else {
                    format!(
                        "{unusable} line(s) could not be parsed or use unsupported key types or markers"
                    )
                },
            });
        }
        if unusable > 0 {
            tracing::warn!(
                lines = unusable,
                "ignoring unparsable or unsupported knownHosts lines"
            );
        }
        Ok(KnownHostsFile { entries, revoked })
    }

    /// Key types (as written in known_hosts) of the lines that name this host and port.
    fn key_types_for(&self, host: &str, port: u16) -> Vec<String> {
        let mut types = Vec::new();
        for (key_type, known) in &self.entries {
            // A key no real entry can equal: a line for this host answers "mismatch", others "not found".
            if matches!(known.check_port(host, port, &[0_u8]), CheckResult::Mismatch)
                && !types.contains(key_type)
            {
                types.push(key_type.clone());
            }
        }
        types
    }

    fn check(&self, host: &str, port: u16, key: &[u8]) -> CheckResult {
        let mut result = CheckResult::NotFound;
        for (_, known) in &self.entries {
            match known.check_port(host, port, key) {
                CheckResult::Match => return CheckResult::Match,
                CheckResult::Mismatch => result = CheckResult::Mismatch,
                CheckResult::NotFound | CheckResult::Failure => {}
            }
        }
        result
    }
}

fn prefer_host_key_types(session: &Session, key_types: &[String]) {
    let supported = session
        .supported_algs(MethodType::HostKey)
        .unwrap_or_default();
    let mut wanted: Vec<&str> = Vec::new();
    for key_type in key_types {
        let algorithms: &[&str] = match key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            other => &[other][..],
        };
        for algorithm in algorithms {
            if let Some(found) = supported.iter().find(|s| *s == algorithm)
                && !wanted.contains(found)
            {
                wanted.push(found);
            }
        }
    }
    if !wanted.is_empty() {
        // Only the known types: offering others would let the server pick a key knownHosts cannot vouch for.
        if let Err(err) = session.method_pref(MethodType::HostKey, &wanted.join(",")) {
            tracing::warn!(error = %err.message(), "could not restrict host key algorithms");
        }
    }
}

/// Puts AES-GCM first. libssh2's default favourite, chacha20-poly1305, is its own portable C code, while AES-GCM runs
/// in OpenSSL with AES-NI; on an upload this is the difference between CPU-bound and network-bound. Every algorithm
/// libssh2 supports stays on the list, in its own order after these, so no server that worked before is refused.
fn prefer_fast_ciphers(session: &Session) {
    const FAST: [&str; 2] = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"];
    for method in [MethodType::CryptCs, MethodType::CryptSc] {
        let Ok(supported) = session.supported_algs(method) else {
            continue;
        };
        let mut ordered: Vec<&str> = FAST
            .iter()
            .copied()
            .filter(|fast| supported.contains(fast))
            .collect();
        ordered.extend(supported.iter().copied().filter(|alg| !FAST.contains(alg)));
        if let Err(err) = session.method_pref(method, &ordered.join(",")) {
            tracing::debug!(error = %err.message(), "could not set cipher preferences");
        }
    }
}

fn verify_host_key(
    session: &Session,
    known: &KnownHostsFile,
    target: &SftpTarget,
    address: &str,
) -> Result<(), SftpError> {
    let Some((key, key_type)) = session.host_key() else {
        return Err(SftpError::Handshake {
            address: address.to_string(),
            detail: "the server sent no host key".to_string(),
        });
    };
    let fingerprint = format!(
        "SHA256:{}",
        base64_unpadded(session.host_key_hash(HashType::Sha256).unwrap_or_default())
    );
    let key_base64 = base64(key);
    if known.revoked.iter().any(|revoked| revoked == &key_base64) {
        return Err(SftpError::HostKeyRevoked {
            address: address.to_string(),
            fingerprint,
        });
    }
    let key_type = host_key_type_name(key_type).to_string();
    match known.check(&target.host, target.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(SftpError::HostKeyMismatch {
            address: address.to_string(),
            key_type,
            fingerprint,
        }),
        CheckResult::NotFound | CheckResult::Failure => Err(SftpError::HostKeyUnknown {
            address: address.to_string(),
            key_type,
            fingerprint,
        }),
    }
}

fn host_key_type_name(key_type: HostKeyType) -> &'static str {
    match key_type {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown-type",
    }
}

fn authenticate(
    session: &Session,
    target: &SftpTarget,
    credentials: &SftpCredentials,
    address: &str,
    timeout: Duration,
) -> Result<(), SftpError> {
    let username = target.username.as_str();
    // Asking for the method list first both names what the server accepts in the error and lets a server that needs
    // no authentication ("none") through.
    let allowed = match session.auth_methods(username) {
        Ok(methods) => methods.to_string(),
        Err(err) if is_timeout(&err) => {
            return Err(SftpError::Timeout {
                address: address.to_string(),
                step: "authentication".to_string(),
                timeout,
            });
        }
        Err(_) => String::new(),
    };
    if session.authenticated() {
        return Ok(());
    }
    let result = match &credentials.auth {
        SftpAuth::Password(password) => session.userauth_password(username, password),
        SftpAuth::PrivateKey {
            key_pem,
            passphrase,
        } => authenticate_with_key(session, username, key_pem, passphrase.as_deref()),
    };
    let method = credentials.auth.method();
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(SftpError::AuthenticationFailed {
            address: address.to_string(),
            username: username.to_string(),
            method,
            allowed: allowed_or_unknown(&allowed),
            detail: "the server asks for further authentication steps, which are not supported"
                .to_string(),
        }),
        Err(err) if is_timeout(&err) => Err(SftpError::Timeout {
            address: address.to_string(),
            step: "authentication".to_string(),
            timeout,
        }),
        Err(err) if key_unreadable(&err) => Err(SftpError::PrivateKeyUnreadable {
            // libssh2's messages here describe the format problem, never the key or passphrase.
            detail: err.message().to_string(),
        }),
        Err(err) => Err(SftpError::AuthenticationFailed {
            address: address.to_string(),
            username: username.to_string(),
            method,
            allowed: allowed_or_unknown(&allowed),
            detail: match session_code(&err) {
                Some(ssh2_sys_err::AUTHENTICATION_FAILED | ssh2_sys_err::PUBLICKEY_UNVERIFIED) => {
                    format!("the server rejected the {method} for this user")
                }
                _ => err.message().to_string(),
            },
        }),
    }
}

fn allowed_or_unknown(allowed: &str) -> String {
    if allowed.is_empty() {
        "unknown".to_string()
    } else {
        allowed.to_string()
    }
}

/// Whether libssh2 failed to *load* the key (format, passphrase) rather than the server refusing it.
fn key_unreadable(err: &ssh2::Error) -> bool {
    matches!(
        session_code(err),
        Some(ssh2_sys_err::FILE | ssh2_sys_err::KEYFILE_AUTH_FAILED)
    )
}

/// In-memory key loading first; libssh2 built on OpenSSL reads some formats only from a file, so on a load failure
/// the key is written to a private temporary file (0600, removed on return) and loaded from there.
fn authenticate_with_key(
    session: &Session,
    username: &str,
    key_pem: &str,
    passphrase: Option<&str>,
) -> Result<(), ssh2::Error> {
    match session.userauth_pubkey_memory(username, None, key_pem, passphrase) {
        Ok(()) => Ok(()),
        Err(err) if key_unreadable(&err) => {
            tracing::debug!(error = %err.message(), "in-memory private key load failed, retrying from a private file");
            let mut file = match tempfile::Builder::new().prefix(".sftp-key-").tempfile() {
                Ok(file) => file,
                Err(_) => return Err(err),
            };
            if file
                .write_all(key_pem.as_bytes())
                .and_then(|()| file.flush())
                .is_err()
            {
                return Err(err);
            }
            session.userauth_pubkey_file(username, None, file.path(), passphrase)
        }
        Err(err) => Err(err),
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as known_hosts stores keys.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(
                    BASE64_ALPHABET[((n >> (18 - 6 * i)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Unpadded base64, as `ssh-keygen -l` prints SHA256 fingerprints.
fn base64_unpadded(bytes: &[u8]) -> String {
    base64(bytes).trim_end_matches('=').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
    }

    #[test]
    fn debug_redacts_credentials() {
        let credentials = SftpCredentials {
            auth: SftpAuth::PrivateKey {
                key_pem: "-----BEGIN OPENSSH PRIVATE KEY-----secretbits".to_string(),
                passphrase: Some("hunter2".to_string()),
            },
            known_hosts: "host ssh-ed25519 AAAA\n".to_string(),
        };
        let debug = format!("{credentials:?}");
        assert!(
            !debug.contains("secretbits") && !debug.contains("hunter2"),
            "{debug}"
        );
        let debug = format!("{:?}", SftpAuth::Password("hunter2".to_string()));
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn file_names_are_plain() {
        assert!(validate_file_name("interactions-20250101T120000Z.csv").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets_are_validated() {
        let target = SftpTarget {
            host: "sftp.example.edu".to_string(),
            port: 22,
            username: "u".to_string(),
            directory: "/exports/".to_string(),
        };
        assert!(validate_target(&target).is_ok());
        assert_eq!(target.directory(), "/exports");
        assert_eq!(target.address(), "sftp.example.edu:22");
        let relative = SftpTarget {
            directory: "exports".to_string(),
            ..target.clone()
        };
        assert!(validate_target(&relative).is_err());
        let dotdot = SftpTarget {
            directory: "/exports/../etc".to_string(),
            ..target
        };
        assert!(validate_target(&dotdot).is_err());
    }
}
