//! Delivery of export files to an institution's SFTP server.
//!
//! This is a *blocking* client over `ssh2` (libssh2): libssh2 is a C library with its own socket loop, so wrapping it in
//! async would buy nothing. Callers run every call inside `tokio::task::spawn_blocking`.
//!
//! What this module guarantees, because delivery and the checker rely on it:
//! - the server's host key must match `knownHosts` *before* any credential is sent; there is no trust on first use;
//! - every network step is bounded by the timeout given to [`SftpSession::connect`] (TCP connect, handshake,
//!   authentication and every SFTP request);
//! - an upload goes to a temporary name in the target directory and is renamed to its final name only once complete
//!   and of the right size, so a reader never sees a partial file under the final name;
//! - no error message, `Debug` output or log line contains a private key, passphrase or password.
//!
//! One file per concern: `algorithms` (what is offered in the handshake), `error` (what can fail, and libssh2's codes), `target` (the destination), `credentials`
//! (the Secret), `known_hosts` (host key trust), `session` (connecting and authenticating), `upload` (staged,
//! pipelined uploads), `transfer` (locate, list, remove) and `probe` (the preflight's writability check).

mod algorithms;
mod credentials;
mod error;
mod known_hosts;
mod probe;
mod session;
mod target;
mod transfer;
mod upload;

pub use algorithms::{CIPHERS, HOST_KEYS, KEY_EXCHANGE, MACS};
pub use credentials::{
    SECRET_KEY_KNOWN_HOSTS, SECRET_KEY_PASSPHRASE, SECRET_KEY_PASSWORD, SECRET_KEY_PRIVATE_KEY,
    SftpAuth, SftpCredentials,
};
pub use error::SftpError;
pub use probe::PROBE_PREFIX;
pub use session::SftpSession;
pub use target::SftpTarget;
pub use transfer::{Expected, Listing, RemoteFile};
pub use upload::{StagedFile, StreamingUpload};
