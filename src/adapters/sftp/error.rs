//! The errors of the SFTP adapter, and how libssh2's numeric failure codes map onto them. Every message names
//! the cause and what to fix, so that a condition or an Event is actionable without a log search.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ssh2::ErrorCode;

use crate::resource::ConditionReason;

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
        "looking up SFTP host {host:?} gave no answer within {timeout:?}; check the cluster's DNS and \
         destination.sftp.host"
    )]
    ResolveTimeout { host: String, timeout: Duration },
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
        "the SSH server {address} insists on algorithms considered unsafe ({unsafe_algorithms}); nothing was \
         sent. Ask the server's operator to enable current ones: curve25519-sha256, ecdh-sha2 or \
         diffie-hellman-group14/16/18 with SHA-2 key exchange; ssh-ed25519, ecdsa-sha2 or rsa-sha2-256/512 host keys; \
         AES-GCM, AES-CTR or chacha20-poly1305 ciphers; hmac-sha2 MACs"
    )]
    NoCommonAlgorithm {
        address: String,
        unsafe_algorithms: String,
    },
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
        "reading the content to send to {path:?} on {address} failed: {detail}; nothing was put under that name"
    )]
    SourceFailed {
        address: String,
        path: String,
        detail: String,
    },
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
            SftpError::Resolve { .. } | SftpError::ResolveTimeout { .. } => {
                ConditionReason::HostUnresolvable
            }
            SftpError::ConnectTimeout { .. } | SftpError::Timeout { .. } => {
                ConditionReason::Timeout
            }
            SftpError::ConnectRefused { .. } => ConditionReason::ConnectionRefused,
            SftpError::Connect { .. } | SftpError::ConnectionLost { .. } => {
                ConditionReason::ConnectionFailed
            }
            SftpError::Handshake { .. } => ConditionReason::HandshakeFailed,
            SftpError::NoCommonAlgorithm { .. } => ConditionReason::NoCommonAlgorithm,
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
            SftpError::LocalFile { .. } | SftpError::SourceFailed { .. } => {
                ConditionReason::LocalFileError
            }
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
                | SftpError::ResolveTimeout { .. }
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

/// SFTP status codes (libssh2's `LIBSSH2_FX_*`), named here because `ssh2` exposes them only as raw numbers.
pub(super) mod ssh2_sys_fx {
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
pub(super) mod ssh2_sys_err {
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

/// libssh2's text for a failure, with every credential this process holds removed: libssh2 may
/// quote what the server sent, and that is not ours to vouch for.
pub(super) fn driver_message(err: &ssh2::Error) -> String {
    crate::redact::scrub(err.message())
}

pub(super) fn sftp_code(err: &ssh2::Error) -> Option<i32> {
    match err.code() {
        ErrorCode::SFTP(code) => Some(code),
        ErrorCode::Session(_) => None,
    }
}

pub(super) fn session_code(err: &ssh2::Error) -> Option<i32> {
    match err.code() {
        ErrorCode::Session(code) => Some(code),
        ErrorCode::SFTP(_) => None,
    }
}

pub(super) fn is_not_found(err: &ssh2::Error) -> bool {
    matches!(
        sftp_code(err),
        Some(ssh2_sys_fx::NO_SUCH_FILE | ssh2_sys_fx::NO_SUCH_PATH)
    )
}

pub(super) fn is_timeout(err: &ssh2::Error) -> bool {
    matches!(
        session_code(err),
        Some(ssh2_sys_err::TIMEOUT | ssh2_sys_err::SOCKET_TIMEOUT)
    )
}

pub(super) fn is_disconnect(err: &ssh2::Error) -> bool {
    matches!(
        session_code(err),
        Some(
            ssh2_sys_err::SOCKET_DISCONNECT | ssh2_sys_err::SOCKET_SEND | ssh2_sys_err::SOCKET_RECV
        )
    )
}

/// A readable description of an SFTP status, since libssh2's own message for them is a generic
/// "SFTP Protocol Error".
pub(super) fn describe(err: &ssh2::Error) -> String {
    let what = match sftp_code(err) {
        Some(ssh2_sys_fx::NO_SUCH_FILE | ssh2_sys_fx::NO_SUCH_PATH) => "no such file or directory",
        Some(ssh2_sys_fx::PERMISSION_DENIED) => "permission denied",
        Some(ssh2_sys_fx::FAILURE) => "the server reported a failure",
        Some(ssh2_sys_fx::OP_UNSUPPORTED) => "operation not supported by the server",
        Some(ssh2_sys_fx::WRITE_PROTECT) => "write-protected",
        Some(ssh2_sys_fx::NO_SPACE) => "no space left on the server",
        Some(ssh2_sys_fx::QUOTA_EXCEEDED) => "quota exceeded on the server",
        _ => return driver_message(err),
    };
    what.to_string()
}
