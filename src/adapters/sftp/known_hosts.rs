//! Host key trust: parsing the Secret's known_hosts text, asking the server for a key type it lists, and checking the
//! key the server presents before any credential is sent. There is no trust on first use.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, KnownHosts, Session};

use super::error::driver_message;
use super::{SftpError, SftpTarget};

/// knownHosts, one libssh2 `KnownHosts` per line, so that we can tell *which* lines concern the host (and so which
/// key types to ask the server for) even for hashed `|1|` entries, whose host names only libssh2 can match.
pub(super) struct KnownHostsFile {
    entries: Vec<(String, KnownHosts)>,
    /// Base64 keys of `@revoked` lines.
    revoked: Vec<String>,
}

impl KnownHostsFile {
    pub(super) fn parse(session: &Session, text: &str) -> Result<Self, SftpError> {
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
                detail: driver_message(&err),
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
    pub(super) fn key_types_for(&self, host: &str, port: u16) -> Vec<String> {
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

pub(super) fn verify_host_key(
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
    let fingerprint = fingerprint(session.host_key_hash(HashType::Sha256).unwrap_or_default());
    // known_hosts stores keys in padded standard base64.
    let key_base64 = STANDARD.encode(key);
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

/// `SHA256:` and the unpadded base64 of the key's SHA-256, as `ssh-keygen -l` prints it, so that an operator can
/// compare the fingerprint in an error with the one the server's operator reads out.
fn fingerprint(sha256: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_unpadded_like_ssh_keygen() {
        // 32 bytes encode to 43 characters plus one `=` of padding, which ssh-keygen leaves out.
        assert_eq!(
            fingerprint(&[0_u8; 32]),
            format!("SHA256:{}", "A".repeat(43))
        );
        assert_eq!(fingerprint(b"fo"), "SHA256:Zm8");
    }
}
