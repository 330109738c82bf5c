//! GnuPG as an institution runs it, in a home of its own: the keys the tests encrypt to (good,
//! sign-only, expired, revoked) and `gpg --decrypt` to read what was delivered.

use std::path::Path;
use std::process::{Command, Output};

/// A GnuPG home of the institution's, with its keys.
pub struct Institution {
    pub home: tempfile::TempDir,
}

impl Institution {
    pub fn new() -> Self {
        let home = tempfile::tempdir().expect("GnuPG home");
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("GnuPG home permissions");
        Self { home }
    }

    pub fn gpg(&self, args: &[&str]) -> Output {
        let output = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("run gpg");
        assert!(
            output.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Makes a key for `uid` (`gpg --quick-gen-key uid algo usage expire`) and returns its
    /// ASCII-armoured public key.
    pub fn key(
        &self,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        faked_time: Option<&str>,
    ) -> String {
        let mut args = Vec::new();
        if let Some(time) = faked_time {
            args.extend(["--faked-system-time", time, "--ignore-time-conflict"]);
        }
        args.extend(["--quick-gen-key", uid, algo, usage, expire]);
        self.gpg(&args);
        self.public_key(uid)
    }

    pub fn public_key(&self, uid: &str) -> String {
        String::from_utf8(self.gpg(&["--armor", "--export", uid]).stdout).expect("armoured key")
    }

    /// Revokes the key of `uid` with the revocation certificate GnuPG made for it.
    pub fn revoke(&self, uid: &str) -> String {
        let listing = String::from_utf8(self.gpg(&["--with-colons", "--list-keys", uid]).stdout)
            .expect("listing");
        let fingerprint = listing
            .lines()
            .find(|line| line.starts_with("fpr:"))
            .and_then(|line| line.split(':').nth(9))
            .expect("fingerprint")
            .to_string();
        let certificate = self
            .home
            .path()
            .join("openpgp-revocs.d")
            .join(format!("{fingerprint}.rev"));
        // GnuPG puts a ':' before the armour so the certificate is not imported by accident.
        let text = std::fs::read_to_string(&certificate).expect("revocation certificate");
        let armour = text.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let path = self.home.path().join("revocation.asc");
        std::fs::write(&path, armour).expect("write revocation");
        self.gpg(&["--import", path.to_str().expect("path")]);
        self.public_key(uid)
    }

    pub fn decrypt(&self, file: &Path) -> Vec<u8> {
        self.gpg(&["--decrypt", file.to_str().expect("path")])
            .stdout
    }
}
