//! TLS to the source database against the test bed's PostgreSQL, which has TLS on with a CA of
//! its own and a certificate for the bridge address only: `sslmode` require, verify-ca and
//! verify-full pass and fail as libpq's do, with reasons that name the fix and never the password.

mod common;

use std::time::Duration;

use scheduled_exports::adapters::postgres::{SourceError, connect_with_ca};
use scheduled_exports::resource::ConditionReason;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(10);

fn ca_of_the_server() -> String {
    std::fs::read_to_string(common::env_var("PG_CA_CERT_FILE")).expect("PostgreSQL's CA")
}

/// A real CA that did not sign the server's certificate: the cluster's own.
fn another_ca() -> String {
    std::fs::read_to_string(common::env_var("KUBE_CA_FILE")).expect("the cluster's CA")
}

/// The test bed's database URL with `host` in place of the bridge address and `query` appended.
fn url(host: &str, query: &str) -> String {
    let mut url = url::Url::parse(&common::env_var("DATABASE_URL")).expect("DATABASE_URL");
    url.set_host(Some(host)).expect("host");
    url.set_query(Some(query));
    url.to_string()
}

fn bridge() -> String {
    common::env_var("PGHOST")
}

/// Whether the session is encrypted, as the server sees it.
async fn session_is_encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

async fn refused(url: &str, ca: Option<&str>) -> SourceError {
    match connect_with_ca(url, ca, TIMEOUT).await {
        Ok(_) => panic!("connected, but should have been refused"),
        Err(err) => err,
    }
}

fn assert_no_password(message: &str) {
    for secret in common::secret_values() {
        assert!(!message.contains(&secret), "a secret in: {message}");
    }
}

#[tokio::test]
async fn every_tls_mode_connects_encrypted_when_the_certificate_is_right() {
    let ca = ca_of_the_server();
    let cases = [
        (url(&bridge(), "sslmode=require"), None),
        (url(&bridge(), "sslmode=require"), Some(ca.as_str())),
        (url(&bridge(), "sslmode=verify-ca"), Some(ca.as_str())),
        // verify-ca does not compare the host name: 127.0.0.1 is not in the certificate.
        (url("127.0.0.1", "sslmode=verify-ca"), Some(ca.as_str())),
        (url(&bridge(), "sslmode=verify-full"), Some(ca.as_str())),
        // libpq's default: TLS when the server offers it.
        (url(&bridge(), "application_name=sx-test"), None),
    ];
    for (url, ca) in cases {
        let (client, _connection) = connect_with_ca(&url, ca, TIMEOUT)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", url.split('@').nth(1).unwrap_or("")));
        assert!(session_is_encrypted(&client).await, "not encrypted");
    }
    let (client, _connection) = connect_with_ca(&url(&bridge(), "sslmode=disable"), None, TIMEOUT)
        .await
        .expect("disable");
    assert!(
        !session_is_encrypted(&client).await,
        "disable still encrypted"
    );
}

#[tokio::test]
async fn a_wrong_ca_or_host_name_is_refused_with_the_fix() {
    let ca = ca_of_the_server();
    let wrong_ca = another_ca();

    let err = refused(&url(&bridge(), "sslmode=verify-ca"), Some(&wrong_ca)).await;
    let message = err.to_string();
    assert!(matches!(err, SourceError::Tls { .. }), "{message}");
    assert!(message.contains("not signed by a trusted CA"), "{message}");
    assert!(message.contains("caCert"), "{message}");
    assert_no_password(&message);

    let err = refused(&url(&bridge(), "sslmode=verify-full"), Some(&wrong_ca)).await;
    assert!(
        err.to_string().contains("not signed by a trusted CA"),
        "{err}"
    );

    let err = refused(&url("127.0.0.1", "sslmode=verify-full"), Some(&ca)).await;
    let message = err.to_string();
    assert!(matches!(err, SourceError::Tls { .. }), "{message}");
    assert!(
        message.contains("not valid for host \"127.0.0.1\""),
        "{message}"
    );
    assert!(message.contains("verify-ca"), "{message}");
    assert_no_password(&message);

    let err = refused(&url(&bridge(), "sslmode=verify-full"), Some("no PEM here")).await;
    assert!(matches!(err, SourceError::InvalidCaCert { .. }), "{err}");

    let err = refused(&url(&bridge(), "sslmode=verify_full"), None).await;
    let message = err.to_string();
    assert!(matches!(err, SourceError::InvalidUrl { .. }), "{message}");
    assert!(message.contains("sslmode must be one of"), "{message}");
}

#[tokio::test]
async fn an_export_verifies_the_server_with_the_ca_from_its_secret() {
    let fixture = common::fixture::Fixture::new("sx-tls", 20).await;
    let verified = {
        let mut url = url::Url::parse(&fixture.database_url).expect("url");
        url.set_query(Some("sslmode=verify-full"));
        url.to_string()
    };
    common::create_secret(
        &fixture.client,
        &fixture.namespace,
        "crm-database-tls",
        &[("url", verified.clone()), ("caCert", ca_of_the_server())],
    )
    .await;
    common::create_secret(
        &fixture.client,
        &fixture.namespace,
        "crm-database-wrong-ca",
        &[("url", verified), ("caCert", another_ca())],
    )
    .await;

    fixture
        .patch_spec(
            "daily",
            json!({"source": {"secretRef": {"name": "crm-database-wrong-ca"}}}),
        )
        .await;
    let output = fixture.export("daily", "2026-12-01T07:00:00Z");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not signed by a trusted CA"), "{stderr}");
    assert_no_password(&stderr);
    let status = fixture.object("daily").await.status.unwrap_or_default();
    let exported = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Exported")
        .expect("Exported condition");
    assert_eq!(exported.reason, ConditionReason::DatabaseTlsFailed.as_str());
    assert_no_password(&serde_json::to_string(&status).expect("json"));
    assert!(status.watermark.is_none(), "a failed run set the watermark");

    fixture
        .patch_spec(
            "daily",
            json!({"source": {"secretRef": {"name": "crm-database-tls"}}}),
        )
        .await;
    let output = fixture.export("daily", "2026-12-01T07:00:00Z");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files = common::fixture::files_in(&fixture.local_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("interactions-"), "{files:?}");
    let (_, rows) = common::fixture::read_csv(&fixture.local_dir.join(&files[0]));
    assert_eq!(rows.len(), 20);
    fixture.cleanup().await;
}
