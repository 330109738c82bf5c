//! Which SSH algorithms are offered: only those current OpenSSH considers safe. No SHA-1 key
//! exchange, no `ssh-rsa` (SHA-1) signatures, no CBC ciphers, no SHA-1 or MD5 MACs. RSA keys
//! keep working through rsa-sha2-512/256, beside ECDSA and Ed25519.
//!
//! A server that offers only what is left out fails the handshake; [`diagnose_kex_failure`]
//! then reads the server's own lists (on a connection that goes no further than that) so the
//! error names the algorithms the server insists on.

use std::time::Duration;

use ssh2::{MethodType, Session};

use super::SftpError;
use super::target::SftpTarget;

/// Key exchange, in order of preference. `ext-info-c` and `kex-strict-c-v00@openssh.com` are
/// added by libssh2 itself: they enable rsa-sha2 user keys (server-sig-algs) and the Terrapin fix.
pub const KEY_EXCHANGE: [&str; 9] = [
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];

/// Host key signature algorithms.
pub const HOST_KEYS: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// Ciphers, in order of preference, chosen by measurement (`cargo bench --bench sftp_ciphers`
/// and the export bench). chacha20-poly1305 first on every CPU: libssh2 (1.11) encrypts a whole
/// packet in one call with it, but an AES packet one 16-byte block per OpenSSL call, which costs
/// more than AES-NI saves (this client: 201 against 175 MiB/s on an Intel bed, 85.5 against
/// 64.9 MiB/s on an AMD one). AES-GCM next for servers that offer no chacha20 (FIPS setups).
pub const CIPHERS: [&str; 6] = [
    "chacha20-poly1305@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
];

/// MACs (unused with the AEAD ciphers above, which carry their own).
pub const MACS: [&str; 4] = [
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
];

/// Signatures of an RSA user key, when the server lists what it accepts (server-sig-algs).
pub const RSA_USER_KEY_SIGNATURES: [&str; 2] = ["rsa-sha2-512", "rsa-sha2-256"];

const CATEGORIES: [(MethodType, &[&str], &str); 6] = [
    (MethodType::Kex, &KEY_EXCHANGE, "key exchange"),
    (MethodType::HostKey, &HOST_KEYS, "host key"),
    (MethodType::CryptCs, &CIPHERS, "cipher"),
    (MethodType::CryptSc, &CIPHERS, "cipher"),
    (MethodType::MacCs, &MACS, "MAC"),
    (MethodType::MacSc, &MACS, "MAC"),
];

/// The host key algorithms that verify a key of `key_type` (as known_hosts names it).
fn host_key_algorithms(key_type: &str) -> Vec<&'static str> {
    match key_type {
        "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256"],
        other => HOST_KEYS
            .iter()
            .copied()
            .filter(|alg| *alg == other)
            .collect(),
    }
}

/// Of `wanted`, those the linked libssh2 supports for `method`, in `wanted`'s order.
fn supported<'a>(session: &Session, method: MethodType, wanted: &[&'a str]) -> Vec<&'a str> {
    let available = session.supported_algs(method).unwrap_or_default();
    wanted
        .iter()
        .copied()
        .filter(|alg| available.contains(alg))
        .collect()
}

/// What is offered for each method: the safe algorithms libssh2 supports, and with
/// `host_key_types` (the key types knownHosts lists for this host) only host key algorithms for
/// those, so the server presents a key knownHosts can vouch for.
fn offers(
    session: &Session,
    host_key_types: &[String],
    ciphers: &[&'static str],
) -> Vec<(MethodType, Vec<&'static str>, &'static str)> {
    CATEGORIES
        .iter()
        .map(|(method, wanted, what)| {
            let wanted = match method {
                MethodType::CryptCs | MethodType::CryptSc => ciphers,
                _ => wanted,
            };
            let mut offered = supported(session, *method, wanted);
            if matches!(method, MethodType::HostKey) && !host_key_types.is_empty() {
                let known: Vec<&str> = host_key_types
                    .iter()
                    .flat_map(|key_type| host_key_algorithms(key_type))
                    .collect();
                let restricted: Vec<&str> = offered
                    .iter()
                    .copied()
                    .filter(|alg| known.contains(alg))
                    .collect();
                // knownHosts lists only unsafe types (ssh-dss): offer the safe ones, and the key
                // the server then presents is reported as not matching.
                if !restricted.is_empty() {
                    offered = restricted;
                }
            }
            (*method, offered, *what)
        })
        .collect()
}

/// Restricts `session` to the safe algorithms (see [`offers`]).
pub(super) fn offer_safe_algorithms(
    session: &Session,
    host_key_types: &[String],
    ciphers: &[&'static str],
) -> Result<(), SftpError> {
    for (method, offered, what) in offers(session, host_key_types, ciphers) {
        let refused = |detail: String| SftpError::Session {
            detail: format!("cannot restrict the {what} algorithms: {detail}"),
        };
        if offered.is_empty() {
            return Err(refused(
                "libssh2 supports none of the safe ones".to_string(),
            ));
        }
        session
            .method_pref(method, &offered.join(","))
            .map_err(|err| refused(super::error::driver_message(&err)))?;
    }
    // Only affects RSA user keys; Ed25519 and ECDSA keys have one signature algorithm each.
    let _ = session.method_pref(MethodType::SignAlgo, &RSA_USER_KEY_SIGNATURES.join(","));
    Ok(())
}

/// After a failed key exchange: whether the server offers only algorithms left out here. The
/// server's own list (its KEXINIT, which it sends in the clear right after the version lines) is
/// read on a connection of its own that goes no further, and compared with what is offered.
/// `None` when every kind has a common algorithm, or the server's list cannot be read: the
/// failure lies elsewhere.
pub(super) fn diagnose_kex_failure(
    session: &Session,
    target: &SftpTarget,
    address: &str,
    host_key_types: &[String],
    timeout: Duration,
) -> Option<SftpError> {
    let server = server_algorithms(target, address, timeout)?;
    let ours = offers(session, host_key_types, &CIPHERS);
    let common = |index: usize| -> Vec<&str> {
        ours[index]
            .1
            .iter()
            .copied()
            .filter(|alg| server[index].iter().any(|theirs| theirs == alg))
            .collect()
    };
    let aead_cipher = |index: usize| {
        common(index)
            .iter()
            .any(|alg| alg.contains("gcm") || alg.contains("poly1305"))
    };
    let mut lacking: Vec<String> = Vec::new();
    for (index, (method, _, what)) in ours.iter().enumerate() {
        if !common(index).is_empty() {
            continue;
        }
        match method {
            // With knownHosts' types, a server that has safe host keys of other types only is
            // a mismatch, not an unsafe server.
            MethodType::HostKey
                if server[index]
                    .iter()
                    .any(|alg| HOST_KEYS.contains(&alg.as_str())) =>
            {
                continue;
            }
            // AEAD ciphers carry their own integrity: no MAC is used with them.
            MethodType::MacCs if aead_cipher(2) => continue,
            MethodType::MacSc if aead_cipher(3) => continue,
            _ => {}
        }
        let theirs: Vec<&str> = server[index]
            .iter()
            .map(String::as_str)
            .filter(|alg| !alg.starts_with("ext-info-") && !alg.starts_with("kex-strict-"))
            .collect();
        let named = format!("{what} {}", theirs.join(" or "));
        if !lacking.contains(&named) {
            lacking.push(named);
        }
    }
    if lacking.is_empty() {
        return None;
    }
    Some(SftpError::NoCommonAlgorithm {
        address: address.to_string(),
        unsafe_algorithms: lacking.join(", "),
    })
}

/// The server's algorithm lists from its KEXINIT, in the order of [`CATEGORIES`]: key exchange,
/// host key, ciphers and MACs each way. Only the version line is sent; the connection is closed
/// after reading.
fn server_algorithms(
    target: &SftpTarget,
    address: &str,
    timeout: Duration,
) -> Option<Vec<Vec<String>>> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = super::session::connect_tcp(target, address, timeout).ok()?;
    stream.write_all(b"SSH-2.0-scheduled_exports\r\n").ok()?;
    let mut reader = BufReader::new(stream);
    // Servers may send other lines before their version line (RFC 4253, 4.2).
    let mut version_seen = false;
    for _ in 0..32 {
        let mut line = Vec::new();
        reader
            .by_ref()
            .take(1024)
            .read_until(b'\n', &mut line)
            .ok()?;
        if line.starts_with(b"SSH-") {
            version_seen = true;
            break;
        }
    }
    if !version_seen {
        return None;
    }
    let mut length = [0_u8; 4];
    reader.read_exact(&mut length).ok()?;
    let length = usize::try_from(u32::from_be_bytes(length)).ok()?;
    if !(2..=256 * 1024).contains(&length) {
        return None;
    }
    let mut packet = vec![0_u8; length];
    reader.read_exact(&mut packet).ok()?;
    let padding = usize::from(packet[0]);
    let payload = packet.get(1..length.checked_sub(padding)?)?;
    // SSH_MSG_KEXINIT, then a 16-byte cookie, then the name-lists.
    const KEXINIT: u8 = 20;
    if payload.first() != Some(&KEXINIT) {
        return None;
    }
    let mut rest = payload.get(17..)?;
    let mut lists = Vec::new();
    for _ in 0..CATEGORIES.len() {
        let size = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
        let names = std::str::from_utf8(rest.get(4..4 + size)?).ok()?;
        lists.push(
            names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        );
        rest = rest.get(4 + size..)?;
    }
    Some(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha20_poly1305_leads_and_every_cipher_is_an_aead_or_ctr() {
        assert_eq!(CIPHERS[0], "chacha20-poly1305@openssh.com");
        assert!(
            CIPHERS.iter().all(|cipher| cipher.ends_with("-ctr")
                || cipher.contains("gcm")
                || cipher.contains("poly1305")),
            "no CBC, no arcfour, no 3DES: {CIPHERS:?}"
        );
    }

    #[test]
    fn only_safe_algorithms_are_offered_and_libssh2_has_them() {
        let session = Session::new().expect("session");
        offer_safe_algorithms(&session, &[], &CIPHERS)
            .expect("the linked libssh2 supports safe algorithms");
        for (_, list, _) in CATEGORIES {
            for alg in list {
                assert!(!alg.contains("sha1") && !alg.contains("cbc") && !alg.contains("md5"));
                assert_ne!(*alg, "ssh-rsa");
            }
        }
        // Each kind of host and user key has an algorithm here that libssh2 supports.
        let host_keys = session
            .supported_algs(MethodType::HostKey)
            .expect("host key algs");
        for wanted in [
            "ssh-ed25519",
            "ecdsa-sha2-nistp256",
            "rsa-sha2-512",
            "rsa-sha2-256",
        ] {
            assert!(host_keys.contains(&wanted), "{wanted}: {host_keys:?}");
        }
        let kex = session.supported_algs(MethodType::Kex).expect("kex algs");
        assert!(kex.contains(&"curve25519-sha256"), "{kex:?}");
        let ciphers = session
            .supported_algs(MethodType::CryptCs)
            .expect("ciphers");
        assert!(ciphers.contains(&"aes256-gcm@openssh.com"), "{ciphers:?}");
    }

    #[test]
    fn rsa_host_keys_are_verified_with_sha2_signatures_only() {
        assert_eq!(
            host_key_algorithms("ssh-rsa"),
            ["rsa-sha2-512", "rsa-sha2-256"]
        );
        assert_eq!(host_key_algorithms("ssh-ed25519"), ["ssh-ed25519"]);
        assert!(host_key_algorithms("ssh-dss").is_empty());
    }
}
