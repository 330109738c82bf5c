//! Least privilege on the real test bed: an export Pod's credentials reach only its own object,
//! and a namespace's recopies use that namespace's artifact store credentials.
//!
//! The controller runs in this process; its Jobs run as real Pods of the project's image. The
//! identity under test is the one the export Pod really gets: the ServiceAccount named in the
//! Pod's spec, used through a token the API server issues for it (TokenRequest).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::fixture::Fixture;
use common::running::{RunningController, TEST_PERIODS};
use common::*;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use scheduled_exports::adapters::artifacts::S3Options;
use scheduled_exports::clock::{Clock, ManualClock};
use scheduled_exports::operator::job::{RunKind, job_name};
use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings};
use scheduled_exports::resource::ScheduledExport;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("instant")
        .with_timezone(&Utc)
}

fn start_controller(fixture: &Fixture, clock: &ManualClock, s3: S3Options) -> RunningController {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("scheduled_exports=debug")
        .with_test_writer()
        .try_init();
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: export_job_settings(&fixture.artifact_store),
        delivery: DeliverySettings {
            s3,
            sftp_timeout: Duration::from_secs(10),
            ..DeliverySettings::default()
        },
        instance: "least-privilege-tests".into(),
        periods: TEST_PERIODS,
    };
    RunningController::spawn(Arc::new(Context::new(
        fixture.client.clone(),
        Arc::new(clock.clone()),
        config,
    )))
}

/// A client of the test bed's API server that authenticates with `token` only (the bed's
/// kubeconfig gives the server and its CA; its own credentials are dropped).
async fn client_with_token(token: &str) -> Client {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("kubeconfig");
    let mut kubeconfig: serde_json::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    for user in kubeconfig["users"].as_array_mut().expect("users") {
        user["user"] = json!({"token": token});
    }
    let kubeconfig =
        Kubeconfig::from_yaml(&serde_yaml::to_string(&kubeconfig).expect("yaml")).expect("parse");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

/// The HTTP status of a refused call, or 200 for one that succeeded.
fn status_of<T>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(response)) => response.code,
        Err(other) => panic!("not an answer of the API server: {other}"),
    }
}

#[tokio::test]
async fn an_export_pods_token_reads_no_secret_and_no_other_objects_status() {
    let fixture = Fixture::new("sx-least", 5).await;
    fixture.create_object("neighbour", json!({})).await;
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "unrelated",
        &[("password", "not-for-exports".to_string())],
    )
    .await;
    // The neighbour's slot is far from daily's, so only daily runs.
    fixture
        .patch_spec("neighbour", json!({"time": "19:00", "timeZone": "UTC"}))
        .await;
    let clock = ManualClock::new(utc("2026-11-30T11:59:00Z")); // 06:59 in New York
    let controller = start_controller(&fixture, &clock, testbed_s3_options());
    fixture
        .wait_for("daily", "the next run", |o| {
            o.status.as_ref()?.next_run_time.map(|_| ())
        })
        .await;
    clock.set(utc("2026-11-30T12:00:01Z"));
    let job = job_name("daily", utc("2026-11-30T12:00:00Z"), &RunKind::Scheduled);
    // The export delivers with its Secrets as volumes, though its identity may read none.
    wait_for_job_complete(&fixture.client, &fixture.namespace, &job, WAIT).await;
    controller.stop().await;

    // The identity the export Pod ran as.
    let pods: Api<Pod> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let pod = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("the Job's Pod");
    let account = pod
        .spec
        .and_then(|spec| spec.service_account_name)
        .expect("serviceAccountName");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(fixture.client.clone(), &fixture.namespace)
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .expect("a token for the export's ServiceAccount")
        .status
        .expect("token status")
        .token;
    let export = client_with_token(&token).await;
    let secrets: Api<Secret> = Api::namespaced(export.clone(), &fixture.namespace);
    let objects: Api<ScheduledExport> = Api::namespaced(export, &fixture.namespace);

    // What it needs works, so the refusals below are the API server's RBAC, not a broken token.
    assert_eq!(status_of(objects.get("daily").await), 200);
    assert_eq!(status_of(objects.get_status("daily").await), 200);
    let own_status = json!({"status": {}});
    assert_eq!(
        status_of(
            objects
                .patch_status("daily", &PatchParams::default(), &Patch::Merge(&own_status))
                .await
        ),
        200
    );

    for secret in [
        "unrelated",
        ARTIFACT_STORE_SECRET,
        "crm-database",
        "sftp-credentials",
    ] {
        assert_eq!(
            status_of(secrets.get(secret).await),
            403,
            "the export's token read Secret {secret}"
        );
    }
    assert_eq!(status_of(secrets.list(&ListParams::default()).await), 403);
    assert_eq!(status_of(objects.get("neighbour").await), 403);
    assert_eq!(status_of(objects.get_status("neighbour").await), 403);
    let foreign = json!({"status": {"lastRun": {"phase": "Failed"}}});
    assert_eq!(
        status_of(
            objects
                .patch_status(
                    "neighbour",
                    &PatchParams::default(),
                    &Patch::Merge(&foreign)
                )
                .await
        ),
        403
    );
    assert_eq!(status_of(objects.list(&ListParams::default()).await), 403);
    fixture.cleanup().await;
}

fn check(object: &ScheduledExport) -> Option<(String, String, String)> {
    let status = object.status.as_ref()?;
    let result = status.delivery.as_ref()?.last_check_result?.to_string();
    let delivered = status.conditions.iter().find(|c| c.type_ == "Delivered")?;
    Some((result, delivered.reason.clone(), delivered.message.clone()))
}

/// The operator holds working store credentials, the namespace a Secret with a wrong key: the
/// namespace's recopy fails rather than borrowing the operator's. With the namespace's own right
/// key, it succeeds.
#[tokio::test]
async fn a_namespaces_recopy_uses_that_namespaces_store_credentials_only() {
    let fixture = Fixture::new("sx-tenant", 5).await;
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(
        output.status.success(),
        "export: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = "interactions-20261130T120000Z.csv";
    let local = fixture.local_dir.join(file);
    assert!(local.exists(), "delivered");
    let delivered_at = fixture
        .object("daily")
        .await
        .status
        .and_then(|s| s.delivery)
        .and_then(|d| d.delivered_at)
        .expect("deliveredAt");
    let clock = ManualClock::new(delivered_at + TimeDelta::seconds(30));
    let far = (clock.now() + TimeDelta::hours(12))
        .format("%H:00")
        .to_string();
    fixture
        .patch_spec("daily", json!({"time": far, "timeZone": "UTC"}))
        .await;

    let secrets: Api<Secret> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let set_key = |key: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    ARTIFACT_STORE_SECRET,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"stringData": {"AWS_SECRET_ACCESS_KEY": key}})),
                )
                .await
                .expect("patch the namespace's store Secret");
        }
    };
    set_key("not-this-namespaces-key".to_string()).await;
    let controller = start_controller(&fixture, &clock, testbed_s3_options());
    std::fs::remove_file(&local).expect("delete the delivered file");
    clock.advance(TimeDelta::minutes(10));
    let (_, reason, message) = fixture
        .wait_for("daily", "a recopy refused with the namespace's key", |o| {
            check(o).filter(|(result, reason, _)| result == "missing" && reason == "RecopyFailed")
        })
        .await;
    assert!(!local.exists(), "nothing copied with another's credentials");
    assert!(
        message.contains("access denied"),
        "refused for the namespace's key: {message}"
    );
    assert!(
        !message.contains("not-this-namespaces-key"),
        "no secret in status: {message}"
    );
    assert_eq!(reason, "RecopyFailed");

    set_key(env_var("AWS_SECRET_ACCESS_KEY")).await;
    clock.advance(TimeDelta::minutes(10));
    fixture
        .wait_for("daily", "the recopy with the namespace's own key", |o| {
            check(o).filter(|(result, ..)| result == "recopied")
        })
        .await;
    assert!(local.exists(), "recopied");
    controller.stop().await;
    fixture.cleanup().await;
}
