//! The SSH algorithms the SFTP client offers, against real OpenSSH sshd instances this test starts
//! itself (own port, configuration and host keys; the bed's user and chroot): RSA (through
//! rsa-sha2), ECDSA and Ed25519 host and user keys work, and a server that insists on SHA-1 key
//! exchange or signatures, CBC ciphers or SHA-1 MACs is refused with a reason naming them.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scheduled_exports::adapters::sftp::{SftpAuth, SftpCredentials, SftpSession, SftpTarget};

const TIMEOUT: Duration = Duration::from_secs(10);
const KEY_TYPES: [&str; 3] = ["rsa", "ecdsa", "ed25519"];

/// Keys of one test: a host key and a user key of each type, in a directory sshd can read as the
/// SFTP user (for authorized_keys).
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let keys = Keys { dir };
        let mut authorized = String::new();
        for key_type in KEY_TYPES {
            for role in ["host", "user"] {
                let path = keys.path(role, key_type);
                let mut command = Command::new("ssh-keygen");
                command
                    .args(["-q", "-t", key_type, "-N", "", "-C", role, "-f"])
                    .arg(&path);
                if key_type == "rsa" {
                    command.args(["-b", "2048"]);
                }
                assert!(
                    command.status().expect("ssh-keygen").success(),
                    "ssh-keygen {key_type}"
                );
            }
            authorized.push_str(
                &std::fs::read_to_string(keys.path("user", key_type).with_extension("pub"))
                    .expect("pub"),
            );
        }
        let authorized_keys = keys.dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, authorized).expect("authorized_keys");
        std::fs::set_permissions(&authorized_keys, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        keys
    }

    fn path(&self, role: &str, key_type: &str) -> PathBuf {
        self.dir.path().join(format!("{role}_{key_type}"))
    }

    fn user_credentials(&self, key_type: &str, known_hosts: &str) -> SftpCredentials {
        SftpCredentials {
            auth: SftpAuth::PrivateKey {
                key_pem: std::fs::read_to_string(self.path("user", key_type)).expect("key"),
                passphrase: None,
            },
            known_hosts: known_hosts.to_string(),
        }
    }
}

/// An sshd of this test, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
    _config_dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd with the host key of `host_key_type` and the extra configuration `settings`.
    fn start(keys: &Keys, host_key_type: &str, settings: &str) -> Sshd {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let config_dir = tempfile::tempdir().expect("dir");
        let user = common::env_var("SFTP_USER");
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
             AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n\
             AllowUsers {user}\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\n{settings}\n\
             Match User {user}\n    ChrootDirectory {root}\n    ForceCommand internal-sftp\n\
             \x20   AllowTcpForwarding no\n",
            host_key = keys.path("host", host_key_type).display(),
            pid = config_dir.path().join("sshd.pid").display(),
            authorized = keys.dir.path().join("authorized_keys").display(),
            root = common::env_var("SFTP_ROOT"),
        );
        let config_path = config_dir.path().join("sshd_config");
        std::fs::write(&config_path, config).expect("write sshd_config");
        let log = config_dir.path().join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-f"])
            .arg(&config_path)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        let sshd = Sshd {
            child,
            port,
            log,
            _config_dir: config_dir,
        };
        sshd.wait_for_banner();
        sshd
    }

    fn wait_for_banner(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let banner =
                TcpStream::connect(("127.0.0.1", self.port))
                    .ok()
                    .and_then(|mut stream| {
                        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                        let mut buf = [0_u8; 4];
                        stream.read_exact(&mut buf).ok()?;
                        (&buf == b"SSH-").then_some(())
                    });
            if banner.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A known_hosts line for this server's host key of `key_type`.
    fn known_hosts(&self, keys: &Keys, key_type: &str) -> String {
        let public = std::fs::read_to_string(keys.path("host", key_type).with_extension("pub"))
            .expect("pub");
        let fields: Vec<&str> = public.split_whitespace().take(2).collect();
        format!("[127.0.0.1]:{} {}\n", self.port, fields.join(" "))
    }

    fn target(&self, directory: &str) -> SftpTarget {
        SftpTarget {
            host: "127.0.0.1".to_string(),
            port: self.port,
            username: common::env_var("SFTP_USER"),
            directory: directory.to_string(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of this test under the bed's SFTP root; returns its path as the server shows it.
fn remote_dir(prefix: &str) -> (String, PathBuf) {
    common::sftp_directory(&format!("{prefix}-{}", common::random_suffix()))
}

fn cleanup(local: &Path) {
    let _ = std::fs::remove_dir_all(local);
}

#[test]
fn rsa_host_and_user_keys_work_through_rsa_sha2_and_ssh_rsa_alone_is_refused() {
    let keys = Keys::new();
    let (remote, local) = remote_dir("ssh-rsa");
    // OpenSSH's defaults: RSA host keys sign and user keys are accepted with rsa-sha2 only.
    let modern = Sshd::start(
        &keys,
        "rsa",
        "HostKeyAlgorithms rsa-sha2-512,rsa-sha2-256\nPubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256",
    );
    let known = modern.known_hosts(&keys, "rsa");
    SftpSession::connect(
        &modern.target(&remote),
        &keys.user_credentials("rsa", &known),
        TIMEOUT,
    )
    .unwrap_or_else(|err| panic!("RSA through rsa-sha2: {err}\n{}", modern.log()));

    // The same key, but the server signs only with ssh-rsa (SHA-1).
    let legacy = Sshd::start(
        &keys,
        "rsa",
        "HostKeyAlgorithms ssh-rsa\nPubkeyAcceptedAlgorithms ssh-rsa",
    );
    let known = legacy.known_hosts(&keys, "rsa");
    let err = SftpSession::connect(
        &legacy.target(&remote),
        &keys.user_credentials("rsa", &known),
        TIMEOUT,
    )
    .expect_err("an ssh-rsa (SHA-1) host key signature is refused");
    assert_eq!(err.reason().as_str(), "NoCommonAlgorithm", "{err}");
    assert!(err.to_string().contains("host key ssh-rsa"), "{err}");
    assert!(
        !legacy.log().contains("Accepted publickey"),
        "no authentication was attempted"
    );
    cleanup(&local);
}

#[test]
fn ecdsa_ed25519_and_rsa_host_and_user_keys_each_work() {
    let keys = Keys::new();
    let (remote, local) = remote_dir("ssh-keys");
    for host_key_type in KEY_TYPES {
        let sshd = Sshd::start(&keys, host_key_type, "");
        let known = sshd.known_hosts(&keys, host_key_type);
        for user_key_type in KEY_TYPES {
            SftpSession::connect(
                &sshd.target(&remote),
                &keys.user_credentials(user_key_type, &known),
                TIMEOUT,
            )
            .unwrap_or_else(|err| {
                panic!(
                    "{host_key_type} host key, {user_key_type} user key: {err}\n{}",
                    sshd.log()
                )
            });
        }
    }
    cleanup(&local);
}

#[test]
fn servers_that_insist_on_unsafe_algorithms_are_refused_naming_them() {
    let keys = Keys::new();
    let (remote, local) = remote_dir("ssh-weak");
    let cases = [
        (
            "KexAlgorithms diffie-hellman-group14-sha1",
            "key exchange diffie-hellman-group14-sha1",
        ),
        (
            "KexAlgorithms diffie-hellman-group-exchange-sha1",
            "key exchange diffie-hellman-group-exchange-sha1",
        ),
        ("Ciphers aes128-cbc,aes256-cbc", "cipher aes"),
        (
            "Ciphers aes128-ctr\nMACs hmac-sha1,hmac-sha1-etm@openssh.com",
            "MAC hmac-sha1",
        ),
        (
            "KexAlgorithms diffie-hellman-group14-sha1\nCiphers aes256-cbc\nMACs hmac-sha1",
            "key exchange diffie-hellman-group14-sha1, cipher aes256-cbc, MAC hmac-sha1",
        ),
    ];
    let mut failures = Vec::new();
    for (settings, named) in cases {
        let sshd = Sshd::start(&keys, "ed25519", settings);
        let known = sshd.known_hosts(&keys, "ed25519");
        match SftpSession::connect(
            &sshd.target(&remote),
            &keys.user_credentials("ed25519", &known),
            TIMEOUT,
        ) {
            Ok(_) => failures.push(format!("{settings:?}: connected")),
            Err(err) => {
                let message = err.to_string();
                if err.reason().as_str() != "NoCommonAlgorithm" || !message.contains(named) {
                    failures.push(format!("{settings:?}: {} {message}", err.reason().as_str()));
                }
                if sshd.log().contains("Accepted publickey") {
                    failures.push(format!("{settings:?}: authenticated"));
                }
            }
        }
    }
    cleanup(&local);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
