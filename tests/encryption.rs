//! OpenPGP-encrypted files on the real test bed, read the way the institution reads them: GnuPG
//! makes the institution's keys, the real `export` encrypts to the public one, and `gpg --decrypt`
//! with the private key (then `gunzip`) gives back the CSV.

mod common;

use std::process::{Command, Output};

use common::fixture::{Fixture, files_in, read_csv};
use common::gpg::Institution;
use common::*;
use serde_json::json;

async fn use_key(fixture: &Fixture, public_key: String, compression: &str) {
    let _ = delete_secret(fixture, "institution-pgp-key").await;
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "institution-pgp-key",
        &[("publicKey", public_key)],
    )
    .await;
    fixture
        .patch_spec(
            "daily",
            json!({
                "compression": compression,
                "encryption": {"pgp": {"publicKeySecretRef": {"name": "institution-pgp-key"}}},
            }),
        )
        .await;
}

async fn delete_secret(fixture: &Fixture, name: &str) -> Result<(), kube::Error> {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(fixture.client.clone(), &fixture.namespace);
    secrets.delete(name, &Default::default()).await.map(drop)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn files_encrypted_to_the_institutions_key_decrypt_with_gpg() {
    let fixture = Fixture::new("sx-pgp", 15).await;
    let institution = Institution::new();
    let public_key = institution.key(
        "Data Office <data@example.edu>",
        "default",
        "default",
        "never",
        None,
    );
    assert!(public_key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));

    // Compressed, then encrypted: gpg --decrypt gives the gzip file, gunzip the CSV.
    use_key(&fixture, public_key.clone(), "gzip").await;
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let name = "interactions-20261130T120000Z.csv.gz.pgp";
    assert_eq!(files_in(&fixture.local_dir), [name]);
    let ciphertext = std::fs::read(fixture.local_dir.join(name)).expect("delivered file");
    assert!(
        !ciphertext.windows(14).any(|w| w == b"interaction_id"),
        "the header is not readable in the file"
    );
    let gzip = institution.decrypt(&fixture.local_dir.join(name));
    let csv = tempfile::NamedTempFile::new().expect("temp");
    let mut unzip = Command::new("gunzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(csv.path()).expect("csv file"))
        .spawn()
        .expect("run gunzip");
    std::io::Write::write_all(&mut unzip.stdin.take().expect("stdin"), &gzip).expect("feed gunzip");
    assert!(unzip.wait().expect("gunzip").success());
    let (headers, rows) = read_csv(csv.path());
    assert_eq!(headers, INTERACTION_COLUMNS);
    assert_eq!(rows.len(), 15);
    let status = fixture.object("daily").await.status.expect("status");
    assert_eq!(
        status.last_run.as_ref().and_then(|run| run.bytes),
        Some(ciphertext.len() as u64),
        "status records the delivered ciphertext"
    );

    // Not compressed: .csv.pgp, and the next window (empty) is a header-only CSV.
    use_key(&fixture, public_key, "none").await;
    let output = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let name = "interactions-20261201T120000Z.csv.pgp";
    let plain = institution.decrypt(&fixture.local_dir.join(name));
    assert_eq!(
        String::from_utf8(plain).expect("UTF-8"),
        format!("{}\r\n", INTERACTION_COLUMNS.join(","))
    );
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_key_that_cannot_encrypt_fails_the_run_before_anything_is_read_and_says_why() {
    let fixture = Fixture::new("sx-pgp-bad", 5).await;
    let institution = Institution::new();
    let signing_only = institution.key(
        "Sign Only <sign@example.edu>",
        "ed25519",
        "sign",
        "never",
        None,
    );
    let expired = institution.key(
        "Old Key <old@example.edu>",
        "default",
        "default",
        "1d",
        Some("20200101T000000"),
    );
    institution.key(
        "Revoked Key <revoked@example.edu>",
        "default",
        "default",
        "never",
        None,
    );
    let revoked = institution.revoke("Revoked Key <revoked@example.edu>");
    let private = String::from_utf8(
        institution
            .gpg(&[
                "--armor",
                "--export-secret-keys",
                "Sign Only <sign@example.edu>",
            ])
            .stdout,
    )
    .expect("armoured private key");

    for (key, says) in [
        (
            signing_only,
            "no valid, unexpired, unrevoked encryption subkey",
        ),
        (expired, "expired at 2020-01-02"),
        (revoked, "is revoked"),
        (private, "holds a private key"),
        (
            "not a key".to_string(),
            "is not an ASCII-armoured OpenPGP public key",
        ),
    ] {
        use_key(&fixture, key, "none").await;
        let output = fixture.export("daily", "2026-11-30T12:00:00Z");
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let status = fixture.object("daily").await.status.expect("status");
        let exported = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Exported")
            .expect("Exported");
        assert_eq!(
            (exported.status.as_str(), exported.reason.as_str()),
            ("False", "EncryptionKeyInvalid"),
            "{}",
            exported.message
        );
        assert!(
            exported.message.contains(says)
                && exported.message.contains("institution-pgp-key")
                && exported.message.contains("publicKey"),
            "{says}: {}",
            exported.message
        );
        assert!(status.watermark.is_none(), "nothing was exported");
        assert!(
            files_in(&fixture.local_dir).is_empty(),
            "nothing was delivered"
        );
    }

    // The Secret without the key it names.
    let _ = delete_secret(&fixture, "institution-pgp-key").await;
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "institution-pgp-key",
        &[("other", "x".to_string())],
    )
    .await;
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("has no key \"publicKey\""),
        "{}",
        stderr(&output)
    );
    fixture.cleanup().await;
}
