//! The Preflight condition on the real test bed: the operator runs in this process and checks
//! real objects against the bed's PostgreSQL and sshd, with Secrets that are right, or wrong in
//! one way each, and keys GnuPG makes; the condition, its Event and the directory are read back.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use common::fixture::Fixture;
use common::gpg::Institution;
use common::running::{RunningController, TEST_PERIODS};
use common::*;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use scheduled_exports::clock::{Clock, ManualClock, SystemClock};
use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings, PreflightSettings};
use scheduled_exports::resource::ScheduledExport;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

/// The operator for one namespace, its preflight on `settings`.
fn start_operator(
    fixture: &Fixture,
    clock: Arc<dyn Clock>,
    settings: PreflightSettings,
) -> RunningController {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("scheduled_exports=debug")
        .with_test_writer()
        .try_init();
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: export_job_settings(&fixture.artifact_store),
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            preflight: Some(settings),
            ..DeliverySettings::default()
        },
        instance: "preflight-tests".into(),
        periods: TEST_PERIODS,
    };
    RunningController::spawn(Arc::new(Context::new(
        fixture.client.clone(),
        clock,
        config,
    )))
}

/// Short periods, so the failing cases are checked again (and must not say so again) in seconds.
fn quick_settings() -> PreflightSettings {
    PreflightSettings {
        tick: Duration::from_secs(1),
        retry_failed: Duration::from_secs(2),
        step_timeout: Duration::from_secs(5),
        check_timeout: Duration::from_secs(30),
        ..PreflightSettings::default()
    }
}

/// A local time of day about three hours away, so no run becomes due during a test.
fn time_far_from(now: DateTime<Utc>) -> String {
    let far = now + TimeDelta::hours(3);
    format!(
        "{:02}:{}",
        far.hour(),
        if far.minute() < 30 { "00" } else { "30" }
    )
}

/// Creates `name` on the fixture's database and SFTP directory with `sftp` and `spec` merged in.
async fn create(fixture: &Fixture, name: &str, sftp: serde_json::Value, spec: serde_json::Value) {
    let mut object = valid_object(name);
    object["spec"]["time"] = time_far_from(Utc::now()).into();
    object["spec"]["timeZone"] = "UTC".into();
    object["spec"]["destination"]["sftp"] = json!({
        "host": env_var("SFTP_HOST"),
        "port": env_var("SFTP_PORT").parse::<u16>().expect("port"),
        "username": env_var("SFTP_USER"),
        "directory": fixture.remote_dir,
        "secretRef": {"name": "sftp-credentials"},
    });
    for (key, value) in sftp.as_object().expect("sftp") {
        object["spec"]["destination"]["sftp"][key] = value.clone();
    }
    for (key, value) in spec.as_object().expect("spec") {
        object["spec"][key] = value.clone();
    }
    let object: ScheduledExport = serde_json::from_value(object).expect("object");
    fixture
        .api()
        .create(&Default::default(), &object)
        .await
        .expect("create ScheduledExport");
}

/// The Preflight condition as (status, reason, message).
fn preflight(object: &ScheduledExport) -> Option<(String, String, String)> {
    let condition = object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Preflight")?;
    Some((
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    ))
}

/// Waits for the Preflight condition to have `reason`.
async fn wait_for_reason(fixture: &Fixture, name: &str, reason: &str) -> (String, String) {
    let api = fixture.api();
    let what = format!("{name}: Preflight reason {reason}");
    eventually(WAIT, &what, || {
        let api = api.clone();
        async move {
            let object = api.get(name).await.ok()?;
            let (status, found, message) = preflight(&object)?;
            (found == reason).then_some((status, message))
        }
    })
    .await
}

/// The Preflight Events about `name`: (reason, message, count).
async fn preflight_events(fixture: &Fixture, name: &str) -> Vec<(String, String, i32)> {
    let events: Api<Event> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let selector = format!("involvedObject.name={name}");
    events
        .list(&ListParams::default().fields(&selector))
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|event| {
            event
                .reason
                .as_deref()
                .is_some_and(|reason| reason.starts_with("Preflight"))
        })
        .map(|event| {
            (
                event.reason.unwrap_or_default(),
                event.message.unwrap_or_default(),
                event
                    .series
                    .and_then(|series| series.count)
                    .or(event.count)
                    .unwrap_or(1),
            )
        })
        .collect()
}

/// Waits for an Event of `event_reason` whose message names `condition_reason`.
async fn wait_for_event(fixture: &Fixture, name: &str, event_reason: &str, says: &str) {
    let what = format!("{name}: a {event_reason} Event saying {says}");
    eventually(WAIT, &what, || async {
        preflight_events(fixture, name)
            .await
            .into_iter()
            .find(|(reason, message, _)| reason == event_reason && message.contains(says))
    })
    .await;
}

fn assert_no_secret(text: &str, extra: &[&str]) {
    for secret in secret_values()
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        assert!(!text.contains(secret), "a secret leaked into: {text}");
    }
}

/// The knownHosts line of the bed's server with another ed25519 key than the server's.
fn wrong_known_hosts() -> String {
    let dir = tempfile::tempdir().expect("key dir");
    let key = dir.path().join("other");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let mut fields = public.split_whitespace();
    let (kind, body) = (fields.next().expect("type"), fields.next().expect("key"));
    format!(
        "[{}]:{} {kind} {body}\n",
        env_var("SFTP_HOST"),
        env_var("SFTP_PORT")
    )
}

fn read_bed_file(var: &str) -> String {
    std::fs::read_to_string(env_var(var)).expect("read test bed file")
}

/// A directory under the server's /exports that root owns, so the SFTP user cannot write there.
fn read_only_directory(name: &str) -> (String, PathBuf) {
    let local = PathBuf::from(env_var("SFTP_ROOT"))
        .join("exports")
        .join(name);
    std::fs::create_dir_all(&local).expect("create directory");
    std::fs::set_permissions(&local, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    (format!("/exports/{name}"), local)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[tokio::test]
async fn each_cause_gets_its_reason_a_message_that_says_what_to_fix_and_one_event() {
    let fixture = Fixture::new("sx-preflight", 5).await;
    let secrets = [
        ("sftp-wrong-host-key", {
            let mut data = sftp_secret_data();
            data.retain(|(key, _)| *key != "knownHosts");
            data.push(("knownHosts", wrong_known_hosts()));
            data
        }),
        (
            "sftp-wrong-password",
            vec![
                ("password", "not-the-password-4711".to_string()),
                ("knownHosts", read_bed_file("SFTP_KNOWN_HOSTS_FILE")),
            ],
        ),
        (
            "db-unreachable",
            vec![(
                "url",
                "postgres://exporter:db-pass-unreachable-0815@127.0.0.1:1/crm".to_string(),
            )],
        ),
    ];
    for (name, data) in &secrets {
        create_secret(&fixture.client, &fixture.namespace, name, data).await;
    }
    // Views the export accepts and refuses, and a role that may not read the table.
    let database = connect_database(&fixture.database_url).await;
    database
        .batch_execute(
            "CREATE VIEW recent_calls AS SELECT interaction_id, summary, txid FROM interactions; \
             CREATE VIEW calls_without_txid AS SELECT interaction_id, summary FROM interactions",
        )
        .await
        .expect("create views");
    let role = format!("sx_noread_{}", random_suffix());
    admin_execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'noread-pass-2718'"
    ))
    .await;
    let mut no_read = url::Url::parse(&fixture.database_url).expect("database URL");
    no_read.set_username(&role).expect("user");
    no_read
        .set_password(Some("noread-pass-2718"))
        .expect("password");
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "db-no-read",
        &[("url", no_read.to_string())],
    )
    .await;
    let institution = Institution::new();
    let good_key = institution.key(
        "Good <good@example.edu>",
        "default",
        "default",
        "never",
        None,
    );
    let sign_only = institution.key("Sign <sign@example.edu>", "ed25519", "sign", "never", None);
    // Valid now, expired at the next run (about three hours away): it must fail now.
    let expiring = institution.key(
        "Soon <soon@example.edu>",
        "default",
        "default",
        "seconds=3600",
        None,
    );
    for (name, key) in [
        ("key-good", good_key),
        ("key-sign-only", sign_only),
        ("key-expiring", expiring),
    ] {
        create_secret(
            &fixture.client,
            &fixture.namespace,
            name,
            &[("publicKey", key)],
        )
        .await;
    }
    let (read_only_remote, read_only_local) =
        read_only_directory(&format!("{}-read-only", fixture.namespace));
    let encrypt =
        |secret: &str| json!({"encryption": {"pgp": {"publicKeySecretRef": {"name": secret}}}});
    create(&fixture, "good", json!({}), encrypt("key-good")).await;
    create(
        &fixture,
        "host-key",
        json!({"secretRef": {"name": "sftp-wrong-host-key"}}),
        json!({}),
    )
    .await;
    create(
        &fixture,
        "password",
        json!({"secretRef": {"name": "sftp-wrong-password"}}),
        json!({}),
    )
    .await;
    create(
        &fixture,
        "read-only",
        json!({"directory": read_only_remote}),
        json!({}),
    )
    .await;
    create(
        &fixture,
        "database",
        json!({}),
        json!({"source": {"secretRef": {"name": "db-unreachable"}}}),
    )
    .await;
    create(&fixture, "sign-only", json!({}), encrypt("key-sign-only")).await;
    create(&fixture, "expiring", json!({}), encrypt("key-expiring")).await;
    let view =
        |name: &str| json!({"source": {"secretRef": {"name": "crm-database"}, "view": name}});
    create(&fixture, "view-good", json!({}), view("recent_calls")).await;
    create(
        &fixture,
        "view-invalid",
        json!({}),
        view("calls_without_txid"),
    )
    .await;
    create(
        &fixture,
        "no-read",
        json!({}),
        json!({"source": {"secretRef": {"name": "db-no-read"}}}),
    )
    .await;
    create(
        &fixture,
        "no-secret",
        json!({"secretRef": {"name": "does-not-exist"}}),
        json!({}),
    )
    .await;
    let operator = start_operator(&fixture, Arc::new(SystemClock), quick_settings());
    let extra_secrets = [
        "not-the-password-4711",
        "db-pass-unreachable-0815",
        "noread-pass-2718",
    ];

    let (status, message) = wait_for_reason(&fixture, "good", "Passed").await;
    assert_eq!(status, "True");
    assert!(message.contains("table interactions"), "{message}");
    assert!(
        message.contains("the encryption key can encrypt at the next run"),
        "{message}"
    );
    wait_for_event(&fixture, "good", "PreflightPassed", "preflight passed").await;
    let object = fixture.object("good").await;
    let record = object
        .status
        .as_ref()
        .and_then(|s| s.preflight.clone())
        .expect("status.preflight");
    assert!(
        record.checked_at.is_some() && record.inputs.is_some(),
        "{record:?}"
    );
    assert_eq!(
        record.checked_for,
        object.status.as_ref().and_then(|s| s.next_run_time)
    );
    // The probe file was made and removed: the directory is as empty as before.
    assert_eq!(entries(&fixture.local_dir), Vec::<String>::new());
    // A view the export accepts passes, with the same query the run makes.
    let (status, message) = wait_for_reason(&fixture, "view-good", "Passed").await;
    assert_eq!(status, "True");
    assert!(message.contains("view recent_calls"), "{message}");

    for (name, reason, says) in [
        ("host-key", "HostKeyMismatch", "HOST KEY MISMATCH"),
        ("password", "AuthenticationFailed", "with password failed"),
        (
            "read-only",
            "DirectoryNotWritable",
            "cannot create files in directory",
        ),
        (
            "database",
            "DatabaseUnreachable",
            "check the host and port in the Secret's url",
        ),
        (
            "sign-only",
            "EncryptionKeyInvalid",
            "no valid, unexpired, unrevoked encryption subkey",
        ),
        ("expiring", "EncryptionKeyInvalid", "before the next run"),
        (
            "view-invalid",
            "ViewInvalid",
            "spec.source.view \"calls_without_txid\" has no column txid",
        ),
        (
            "no-read",
            "DatabasePermissionDenied",
            "grant the URL's role SELECT on the table or view",
        ),
        (
            "no-secret",
            "SecretNotFound",
            "Secret does-not-exist (referenced by spec.destination.sftp.secretRef) not found in namespace sx-preflight-",
        ),
    ] {
        let (status, message) = wait_for_reason(&fixture, name, reason).await;
        assert_eq!(status, "False", "{name}");
        assert!(message.contains(says), "{name}: {message}");
        assert_no_secret(&message, &extra_secrets);
        wait_for_event(&fixture, name, "PreflightFailed", reason).await;
    }
    assert!(entries(&read_only_local).is_empty());

    // Checked again while failing (every 2 s here), the outcome is the same: no second Event.
    let first = fixture
        .object("host-key")
        .await
        .status
        .and_then(|s| s.preflight)
        .and_then(|p| p.checked_at);
    fixture
        .wait_for("host-key", "a repeated check", |object| {
            let again = object.status.as_ref()?.preflight.as_ref()?.checked_at;
            (again > first).then_some(())
        })
        .await;
    let events = preflight_events(&fixture, "host-key").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].2, 1, "a repeat is no new Event: {events:?}");
    for name in [
        "good",
        "host-key",
        "password",
        "read-only",
        "database",
        "sign-only",
        "expiring",
        "view-good",
        "view-invalid",
        "no-read",
        "no-secret",
    ] {
        for (_, message, _) in preflight_events(&fixture, name).await {
            assert_no_secret(&message, &extra_secrets);
        }
    }

    operator.stop().await;
    let _ = std::fs::remove_dir_all(&read_only_local);
    drop(database);
    fixture.cleanup().await;
    let _ = connect_database(&env_var("DATABASE_URL"))
        .await
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

#[tokio::test]
async fn a_wrong_password_set_in_the_secret_shows_within_a_minute() {
    let fixture = Fixture::new("sx-preflight-change", 5).await;
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "sftp-password",
        &[
            ("password", env_var("SFTP_PASSWORD")),
            ("knownHosts", read_bed_file("SFTP_KNOWN_HOSTS_FILE")),
        ],
    )
    .await;
    create(
        &fixture,
        "changing",
        json!({"secretRef": {"name": "sftp-password"}}),
        json!({}),
    )
    .await;
    // The shipped periods: a change must show within a minute of it.
    let operator = start_operator(
        &fixture,
        Arc::new(SystemClock),
        PreflightSettings::default(),
    );
    let (status, _) = wait_for_reason(&fixture, "changing", "Passed").await;
    assert_eq!(status, "True");
    let passed_inputs = fixture
        .object("changing")
        .await
        .status
        .and_then(|s| s.preflight)
        .and_then(|p| p.inputs);

    let secrets: Api<Secret> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    secrets
        .patch(
            "sftp-password",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"password": "the-wrong-one-1234"}})),
        )
        .await
        .expect("change the password");
    let changed = tokio::time::Instant::now();
    let api = fixture.api();
    let message = eventually(
        Duration::from_secs(60),
        "Preflight False within a minute",
        || {
            let api = api.clone();
            async move {
                let object = api.get("changing").await.ok()?;
                let (status, reason, message) = preflight(&object)?;
                (status == "False").then(|| {
                    assert_eq!(reason, "AuthenticationFailed", "{message}");
                    message
                })
            }
        },
    )
    .await;
    assert!(changed.elapsed() < Duration::from_secs(60));
    assert!(message.contains("authentication as"), "{message}");
    assert_no_secret(&message, &["the-wrong-one-1234"]);
    let failed_inputs = fixture
        .object("changing")
        .await
        .status
        .and_then(|s| s.preflight)
        .and_then(|p| p.inputs);
    assert_ne!(
        failed_inputs, passed_inputs,
        "the Secret's new version is a new input"
    );
    wait_for_event(
        &fixture,
        "changing",
        "PreflightFailed",
        "AuthenticationFailed",
    )
    .await;
    for (_, message, _) in preflight_events(&fixture, "changing").await {
        assert_no_secret(&message, &["the-wrong-one-1234"]);
    }
    operator.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn ahead_of_each_run_the_inputs_are_checked_again() {
    let fixture = Fixture::new("sx-preflight-slot", 5).await;
    let now = Utc::now();
    create(&fixture, "scheduled", json!({}), json!({})).await;
    let clock = ManualClock::new(now);
    let operator = start_operator(&fixture, Arc::new(clock.clone()), quick_settings());
    let (status, _) = wait_for_reason(&fixture, "scheduled", "Passed").await;
    assert_eq!(status, "True");
    let object = fixture.object("scheduled").await;
    let next = object
        .status
        .as_ref()
        .and_then(|s| s.next_run_time)
        .expect("nextRunTime");
    let first = object
        .status
        .and_then(|s| s.preflight)
        .expect("status.preflight");
    assert_eq!(first.checked_at, Some(now), "on the operator's clock");

    // Nothing changed; when the lead before the run begins, it is checked again.
    let lead_begins = next - TimeDelta::minutes(15);
    clock.set(lead_begins);
    let again = fixture
        .wait_for("scheduled", "a check ahead of the run", |object| {
            let record = object.status.as_ref()?.preflight.clone()?;
            (record.checked_at >= Some(lead_begins)).then_some(record)
        })
        .await;
    assert_eq!(again.checked_for, Some(next));
    assert_eq!(again.inputs, first.inputs);
    operator.stop().await;
    fixture.cleanup().await;
}
