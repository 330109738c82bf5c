//! What the credentials Secret holds (a private key or a password, and the trusted host keys) and how it is read.
//! `Debug` of these types never prints a secret, so they can be logged.

use std::collections::BTreeMap;
use std::fmt;

use super::SftpError;

/// Secret keys of the SFTP credentials Secret.
pub const SECRET_KEY_PRIVATE_KEY: &str = "privateKey";
pub const SECRET_KEY_PASSPHRASE: &str = "passphrase";
pub const SECRET_KEY_PASSWORD: &str = "password";
pub const SECRET_KEY_KNOWN_HOSTS: &str = "knownHosts";

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
    pub(super) fn method(&self) -> &'static str {
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
    /// Tells the redactor every secret value here (password, passphrase, each line of the key
    /// body), so that no message of this process can carry one, whatever a server echoes.
    pub fn register_secrets(&self) {
        match &self.auth {
            SftpAuth::Password(password) => crate::redact::register_secret(password),
            SftpAuth::PrivateKey {
                key_pem,
                passphrase,
            } => {
                if let Some(passphrase) = passphrase {
                    crate::redact::register_secret(passphrase);
                }
                for line in key_pem.lines().map(str::trim) {
                    // A short last line of base64 ("Zg==") would garble unrelated text.
                    if line.len() >= 16 && !line.starts_with("-----") && !line.contains(':') {
                        crate::redact::register_secret(line);
                    }
                }
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
