//! Opening a session: TCP connect with timeouts, SSH handshake with the preferred ciphers and host key types, host
//! key verification, authentication, the SFTP subsystem and the check that the target directory exists. Also the
//! mapping of a failed SFTP request to an [`SftpError`], shared by every operation on the session.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use ssh2::{Session, Sftp};

use super::algorithms::{CIPHERS, diagnose_kex_failure, offer_safe_algorithms};
use super::credentials::{SftpAuth, SftpCredentials};
use super::error::{
    SftpError, describe, driver_message, is_disconnect, is_not_found, is_timeout, session_code,
    ssh2_sys_err,
};
use super::known_hosts::{KnownHostsFile, verify_host_key};
use super::target::{SftpTarget, validate_target};

/// An authenticated SFTP session rooted at the target directory.
pub struct SftpSession {
    // `sftp` must drop before `session`; fields drop in declaration order.
    pub(super) sftp: Sftp,
    session: Session,
    pub(super) address: String,
    pub(super) directory: String,
    pub(super) timeout: Duration,
    /// Marks this session's temporary upload names as their owner's (see [`SftpSession::set_upload_tag`]).
    pub(super) upload_tag: std::cell::Cell<Option<u32>>,
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
        Self::connect_offering(target, credentials, timeout, &CIPHERS)
    }

    /// [`SftpSession::connect`], offering `ciphers` (of the safe ones) in this order, instead of
    /// the order chosen for this CPU; for measuring them against each other.
    pub fn connect_offering(
        target: &SftpTarget,
        credentials: &SftpCredentials,
        timeout: Duration,
        ciphers: &[&'static str],
    ) -> Result<Self, SftpError> {
        credentials.register_secrets();
        validate_target(target)?;
        let address = target.address();
        let timeout = timeout.max(Duration::from_millis(1));
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);

        let mut session = Session::new().map_err(|err| SftpError::Session {
            detail: driver_message(&err),
        })?;
        session.set_timeout(timeout_ms);
        // Parse knownHosts before touching the network: a Secret without any usable entry is a configuration error
        // that no connection attempt can fix.
        let known = KnownHostsFile::parse(&session, &credentials.known_hosts)?;
        // Ask for a host key of a type knownHosts has for this host: a server usually holds several (ed25519, ecdsa,
        // rsa), and libssh2 would otherwise pick its own favourite and then "mismatch".
        let host_key_types = known.key_types_for(&target.host, target.port);
        offer_safe_algorithms(&session, &host_key_types, ciphers)?;

        let stream = connect_tcp(target, &address, timeout)?;
        session.set_tcp_stream(stream);
        session.handshake().map_err(|err| {
            if is_timeout(&err) {
                SftpError::Timeout {
                    address: address.clone(),
                    step: "SSH handshake".to_string(),
                    timeout,
                }
            } else if session_code(&err) == Some(ssh2_sys_err::KEX_FAILURE)
                && let Some(weak) =
                    diagnose_kex_failure(&session, target, &address, &host_key_types, timeout)
            {
                weak
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
                    detail: driver_message(&err),
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
                    detail: driver_message(&err),
                }
            }
        })?;
        tracing::debug!(address = %address, "SSH connection open");
        let this = SftpSession {
            sftp,
            session,
            address,
            directory: target.directory().to_string(),
            timeout,
            upload_tag: std::cell::Cell::new(None),
        };
        this.check_directory()?;
        Ok(this)
    }

    /// Uploads from now on name their temporary file `.{name}.partial-{tag:08x}{8 random hex}`, so that the owner
    /// (one object) can later recognise its own dead uploads and leave everyone else's alone. A session shared by
    /// several objects (a check round) sets it before each object's work.
    pub fn set_upload_tag(&self, tag: u32) {
        self.upload_tag.set(Some(tag));
    }

    /// The server, as `host:port`, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The target directory, as used in remote paths.
    pub fn directory(&self) -> &str {
        &self.directory
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

    pub(super) fn remote_error(
        &self,
        operation: &'static str,
        path: &str,
        err: ssh2::Error,
    ) -> SftpError {
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
                detail: driver_message(&err),
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

    pub(super) fn io_error(
        &self,
        operation: &'static str,
        path: &str,
        err: io::Error,
    ) -> SftpError {
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

pub(super) fn connect_tcp(
    target: &SftpTarget,
    address: &str,
    timeout: Duration,
) -> Result<TcpStream, SftpError> {
    let addresses = resolve(&target.host, target.port, timeout, |host, port| {
        (host, port).to_socket_addrs().map(Iterator::collect)
    })?;
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

/// Resolves `host` with `lookup` (the system resolver in production) within `timeout`. The system resolver has no
/// deadline of its own that we control (a dead DNS server can hold `getaddrinfo` far longer), so the lookup runs on a
/// thread of its own and is abandoned at the deadline; the thread ends whenever the resolver gives up.
fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
    lookup: impl FnOnce(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + 'static,
) -> Result<Vec<SocketAddr>, SftpError> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let owned = host.to_string();
    std::thread::Builder::new()
        .name("sftp-resolve".to_string())
        .spawn(move || {
            let _ = sender.send(lookup(&owned, port));
        })
        .map_err(|source| SftpError::Resolve {
            host: host.to_string(),
            source,
        })?;
    match receiver.recv_timeout(timeout) {
        Ok(Ok(addresses)) => Ok(addresses),
        Ok(Err(source)) => Err(SftpError::Resolve {
            host: host.to_string(),
            source,
        }),
        Err(_) => Err(SftpError::ResolveTimeout {
            host: host.to_string(),
            timeout,
        }),
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
            detail: driver_message(&err),
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
                _ => driver_message(&err),
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
            tracing::debug!(error = %driver_message(&err), "in-memory private key load failed, retrying from a private file");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_that_never_answers_ends_at_the_deadline() {
        // A resolver that hangs until the test ends (its answer channel is never written).
        let (_keep_open, hang) = std::sync::mpsc::channel::<()>();
        let hang = std::sync::Mutex::new(hang);
        let started = std::time::Instant::now();
        let err = resolve(
            "sftp.example.edu",
            22,
            Duration::from_millis(200),
            move |_, _| {
                let _ = hang.lock().map(|hang| hang.recv());
                Ok(vec![])
            },
        )
        .expect_err("no answer in time");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.reason().as_str(), "HostUnresolvable");
        assert!(err.to_string().contains("sftp.example.edu"), "{err}");

        let addresses = resolve("127.0.0.1", 22, Duration::from_millis(1), |_, _| {
            Err(io::Error::other("an address needs no lookup"))
        })
        .expect("literal address");
        assert_eq!(addresses, vec![SocketAddr::from(([127, 0, 0, 1], 22))]);
    }
}
