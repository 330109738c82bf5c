//! The operator on the real test bed: the controller runs in this process on a manual clock, its
//! Jobs run as real Pods of the project's image on the test bed's node, in namespaces that enforce
//! the restricted Pod Security level, and every schedule rule of docs/design.md is checked.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::fixture::{Fixture, files_in};
use common::running::{RunningController, TEST_PERIODS};
use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use scheduled_exports::clock::ManualClock;
use scheduled_exports::operator::job::{RunKind, job_name};
use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings, controller};
use scheduled_exports::resource::ScheduledExport;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("instant")
        .with_timezone(&Utc)
}

/// The controller's context for one test namespace; its Jobs keep artifacts under the fixture's
/// prefix of the test bed's S3 store, which their Pods reach.
fn controller_context(fixture: &Fixture, clock: &ManualClock, identity: &str) -> Arc<Context> {
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: export_job_settings(&fixture.artifact_store),
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            ..DeliverySettings::default()
        },
        instance: identity.to_string(),
        periods: TEST_PERIODS,
    };
    Arc::new(Context::new(
        fixture.client.clone(),
        Arc::new(clock.clone()),
        config,
    ))
}

/// A controller for one namespace, running in this process until dropped.
fn start_controller(fixture: &Fixture, clock: &ManualClock) -> RunningController {
    RunningController::spawn(controller_context(fixture, clock, "tests"))
}

async fn setup(prefix: &str) -> Fixture {
    Fixture::new(prefix, 5).await
}

async fn jobs(fixture: &Fixture) -> Vec<Job> {
    Api::<Job>::namespaced(fixture.client.clone(), &fixture.namespace)
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
}

async fn job_names(fixture: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = jobs(fixture)
        .await
        .into_iter()
        .filter_map(|job| job.metadata.name)
        .collect();
    names.sort();
    names
}

fn next_run(object: &ScheduledExport) -> Option<DateTime<Utc>> {
    object.status.as_ref()?.next_run_time
}

async fn wait_for_job_complete(fixture: &Fixture, job: &str) {
    common::wait_for_job_complete(&fixture.client, &fixture.namespace, job, WAIT).await;
}

#[tokio::test]
async fn a_due_slot_creates_exactly_one_job_that_delivers_the_file() {
    let fixture = setup("sx-due").await;
    let clock = ManualClock::new(utc("2026-11-30T11:59:00Z")); // 06:59 in New York
    let controller = start_controller(&fixture, &clock);

    let object = fixture
        .wait_for("daily", "the next run", |o| next_run(o).map(|_| o.clone()))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.next_run_time, Some(utc("2026-11-30T12:00:00Z")));
    assert_eq!(
        status.next_run_local.as_deref(),
        Some("2026-11-30T07:00:00-05:00")
    );
    assert_eq!(status.time_zone.as_deref(), Some("America/New_York"));
    assert!(
        job_names(&fixture).await.is_empty(),
        "nothing runs before the slot"
    );

    clock.set(utc("2026-11-30T12:00:01Z"));
    let expected = job_name("daily", utc("2026-11-30T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_complete(&fixture, &expected).await;
    let object = fixture
        .wait_for("daily", "the delivered run in status", |o| {
            let status = o.status.as_ref()?;
            (status.last_run.as_ref()?.phase.map(|phase| phase.as_str()) == Some("Succeeded")
                && status.next_run_time == Some(utc("2026-12-01T12:00:00Z")))
            .then(|| o.clone())
        })
        .await;
    let last_run = object.status.and_then(|s| s.last_run).expect("lastRun");
    assert_eq!(last_run.job_name.as_deref(), Some(expected.as_str()));
    assert_eq!(last_run.rows, Some(5));
    assert_eq!(
        files_in(&fixture.local_dir),
        ["interactions-20261130T120000Z.csv"]
    );

    // Later reconciles (a minute on) start nothing more for that slot.
    clock.set(utc("2026-11-30T12:01:00Z"));
    fixture
        .wait_for("daily", "a reconcile after the run", |o| {
            let ready = o
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?;
            ready
                .message
                .contains("2026-12-01T07:00:00-05:00")
                .then_some(())
        })
        .await;
    assert_eq!(job_names(&fixture).await, [expected]);
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn editing_time_or_zone_moves_the_next_run_and_starts_nothing() {
    let fixture = setup("sx-edit").await;
    let clock = ManualClock::new(utc("2026-11-30T15:00:00Z")); // 10:00 in New York, after 07:00
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "next run tomorrow", |o| {
            (next_run(o) == Some(utc("2026-12-01T12:00:00Z"))).then_some(())
        })
        .await;

    // 09:00 has passed today as well: the edit starts nothing and moves the next run at once.
    fixture.patch_spec("daily", json!({"time": "09:00"})).await;
    fixture
        .wait_for("daily", "next run moved to 09:00 tomorrow", |o| {
            (next_run(o) == Some(utc("2026-12-01T14:00:00Z"))).then_some(())
        })
        .await;
    fixture
        .patch_spec(
            "daily",
            json!({"time": "11:30", "timeZone": "Europe/Berlin"}),
        )
        .await;
    fixture
        .wait_for("daily", "next run in Berlin", |o| {
            let status = o.status.as_ref()?;
            (status.next_run_time == Some(utc("2026-12-01T10:30:00Z"))
                && status.next_run_local.as_deref() == Some("2026-12-01T11:30:00+01:00"))
            .then_some(())
        })
        .await;
    assert!(
        job_names(&fixture).await.is_empty(),
        "an edit never starts a run"
    );

    clock.set(utc("2026-12-01T10:30:00Z"));
    eventually(WAIT, "the Berlin slot's Job", || async {
        (job_names(&fixture).await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        job_names(&fixture).await,
        [job_name(
            "daily",
            utc("2026-12-01T10:30:00Z"),
            &RunKind::Scheduled
        )]
    );
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn suspend_stops_runs_and_resume_waits_for_the_next_slot() {
    let fixture = setup("sx-suspend").await;
    fixture.patch_spec("daily", json!({"suspend": true})).await;
    let clock = ManualClock::new(utc("2026-11-30T11:00:00Z"));
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "Ready/Suspended", |o| {
            let ready = o
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.reason == "Suspended" && o.status.as_ref()?.next_run_time.is_none())
                .then_some(())
        })
        .await;

    clock.set(utc("2026-11-30T13:00:00Z")); // past the 07:00 slot while suspended
    fixture.patch_spec("daily", json!({"suspend": false})).await;
    fixture
        .wait_for("daily", "resumed, next run tomorrow", |o| {
            (next_run(o) == Some(utc("2026-12-01T12:00:00Z"))).then_some(())
        })
        .await;
    assert!(
        job_names(&fixture).await.is_empty(),
        "resume does not run the missed slot"
    );

    clock.set(utc("2026-12-01T12:00:00Z"));
    eventually(WAIT, "the next slot's Job", || async {
        (job_names(&fixture).await.len() == 1).then_some(())
    })
    .await;
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn spring_forward_runs_a_skipped_time_with_the_offset_before_the_gap() {
    let fixture = setup("sx-dst").await;
    fixture.patch_spec("daily", json!({"time": "02:30"})).await;
    let clock = ManualClock::new(utc("2026-03-07T12:00:00Z"));
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "02:30 on the gap day is 03:30 EDT", |o| {
            let status = o.status.as_ref()?;
            (status.next_run_time == Some(utc("2026-03-08T07:30:00Z"))
                && status.next_run_local.as_deref() == Some("2026-03-08T03:30:00-04:00"))
            .then_some(())
        })
        .await;
    clock.set(utc("2026-03-08T07:29:59Z"));
    fixture
        .wait_for("daily", "a reconcile just before the slot", |o| {
            (o.status.as_ref()?.schedule.is_some()).then_some(())
        })
        .await;
    clock.set(utc("2026-03-08T07:30:00Z"));
    let expected = job_name("daily", utc("2026-03-08T07:30:00Z"), &RunKind::Scheduled);
    wait_for_job_complete(&fixture, &expected).await;
    fixture
        .wait_for("daily", "next run back on 02:30 EDT", |o| {
            (next_run(o) == Some(utc("2026-03-09T06:30:00Z"))).then_some(())
        })
        .await;
    assert_eq!(job_names(&fixture).await, [expected]);
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn downtime_across_several_slots_gives_exactly_one_catch_up_run() {
    let fixture = setup("sx-catchup").await;
    let clock = ManualClock::new(utc("2026-11-30T11:00:00Z"));
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "the first reconcile", next_run)
        .await;
    controller.stop().await;

    clock.set(utc("2026-12-03T15:00:00Z")); // four slots passed while the operator was down
    let controller = start_controller(&fixture, &clock);
    let expected = job_name("daily", utc("2026-12-03T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_complete(&fixture, &expected).await;
    fixture
        .wait_for("daily", "next run after the catch-up", |o| {
            (next_run(o) == Some(utc("2026-12-04T12:00:00Z"))).then_some(())
        })
        .await;
    assert_eq!(
        job_names(&fixture).await,
        [expected],
        "one catch-up run, for the latest slot"
    );
    let events = Api::<Event>::namespaced(fixture.client.clone(), &fixture.namespace)
        .list(&ListParams::default())
        .await
        .expect("events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("MissedSlots")
                && e.message.as_deref().is_some_and(|m| m.contains("3 slots"))),
        "a MissedSlots Event says how many slots passed"
    );
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn run_now_runs_once_per_token() {
    let fixture = setup("sx-runnow").await;
    let clock = ManualClock::new(utc("2026-11-30T15:00:00Z"));
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "the first reconcile", next_run)
        .await;

    let annotate = |token: &'static str| {
        let api = fixture.api();
        async move {
            let patch = json!({"metadata": {"annotations": {"exports.crm.dev/run-now": token}}});
            api.patch("daily", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("annotate");
        }
    };
    annotate("first").await;
    let first = job_name(
        "daily",
        utc("2026-11-30T15:00:00Z"),
        &RunKind::RunNow {
            token: "first".into(),
        },
    );
    wait_for_job_complete(&fixture, &first).await;
    fixture
        .wait_for("daily", "the token recorded", |o| {
            (o.status.as_ref()?.last_run_now_token.as_deref() == Some("first")).then_some(())
        })
        .await;
    assert!(
        files_in(&fixture.local_dir).contains(&"interactions-20261130T150000Z.csv".to_string())
    );

    clock.set(utc("2026-11-30T15:10:00Z"));
    annotate("first").await; // the same token again: nothing
    annotate("second").await;
    let second = job_name(
        "daily",
        utc("2026-11-30T15:10:00Z"),
        &RunKind::RunNow {
            token: "second".into(),
        },
    );
    wait_for_job_complete(&fixture, &second).await;
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(job_names(&fixture).await, expected);
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn deleting_the_object_removes_its_jobs_and_keeps_its_files() {
    let fixture = setup("sx-delete").await;
    let clock = ManualClock::new(utc("2026-11-30T12:00:30Z"));
    let controller = start_controller(&fixture, &clock);
    // The schedule starts at the first reconcile (12:00:30), so today's 07:00 slot has passed.
    fixture
        .wait_for("daily", "the first reconcile", next_run)
        .await;
    clock.set(utc("2026-12-01T12:00:00Z"));
    let expected = job_name("daily", utc("2026-12-01T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_complete(&fixture, &expected).await;

    fixture
        .api()
        .delete("daily", &DeleteParams::foreground())
        .await
        .expect("delete");
    eventually(WAIT, "the garbage collector to remove the Job", || async {
        job_names(&fixture).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        files_in(&fixture.local_dir),
        ["interactions-20261201T120000Z.csv"],
        "delivered files stay"
    );
    controller.stop().await;
    fixture.cleanup().await;
}

/// Holds an exclusive lock on `interactions`, so an export blocks (a long-running run) until released.
struct TableLock(tokio_postgres::Client);

impl TableLock {
    async fn take(database_url: &str) -> Self {
        let client = connect_database(database_url).await;
        client
            .batch_execute("BEGIN; LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock interactions");
        Self(client)
    }

    async fn release(self) {
        self.0
            .batch_execute("ROLLBACK")
            .await
            .expect("release the lock");
    }
}

async fn wait_for_job_running(fixture: &Fixture, job: &str) {
    eventually(WAIT, &format!("Job {job} to be running"), || async move {
        let job = Api::<Job>::namespaced(fixture.client.clone(), &fixture.namespace)
            .get(job)
            .await
            .ok()?;
        (job.status?.active? >= 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_run_still_going_at_the_next_slot_delays_that_slot_until_it_ends() {
    let fixture = setup("sx-busy").await;
    let clock = ManualClock::new(utc("2026-11-30T11:59:00Z"));
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "the first reconcile", next_run)
        .await;

    let lock = TableLock::take(&fixture.database_url).await;
    clock.set(utc("2026-11-30T12:00:00Z"));
    let first = job_name("daily", utc("2026-11-30T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_running(&fixture, &first).await;

    clock.set(utc("2026-12-01T12:00:00Z")); // the next slot comes while the first run is blocked
    fixture
        .wait_for("daily", "the next slot waiting for the running Job", |o| {
            let status = o.status.as_ref()?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.reason == "WaitingForRun"
                && status.next_run_time == Some(utc("2026-12-01T12:00:00Z")))
            .then_some(())
        })
        .await;
    assert_eq!(
        job_names(&fixture).await,
        std::slice::from_ref(&first),
        "never two runs of one object at once"
    );

    lock.release().await;
    let second = job_name("daily", utc("2026-12-01T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_complete(&fixture, &second).await;
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(job_names(&fixture).await, expected);
    assert_eq!(
        files_in(&fixture.local_dir),
        [
            "interactions-20261130T120000Z.csv",
            "interactions-20261201T120000Z.csv"
        ]
    );
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_controller_restart_in_the_middle_of_a_run_neither_loses_nor_repeats_it() {
    let fixture = setup("sx-restart").await;
    let clock = ManualClock::new(utc("2026-11-30T11:59:00Z"));
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "the first reconcile", next_run)
        .await;
    let lock = TableLock::take(&fixture.database_url).await;
    clock.set(utc("2026-11-30T12:00:00Z"));
    let job = job_name("daily", utc("2026-11-30T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_running(&fixture, &job).await;

    controller.stop().await;
    clock.set(utc("2026-11-30T12:05:00Z"));
    let controller = start_controller(&fixture, &clock);
    lock.release().await;
    wait_for_job_complete(&fixture, &job).await;
    fixture
        .wait_for("daily", "the run recorded as delivered", |o| {
            let status = o.status.as_ref()?;
            (status.last_run.as_ref()?.phase.map(|phase| phase.as_str()) == Some("Succeeded")
                && status.next_run_time == Some(utc("2026-12-01T12:00:00Z")))
            .then_some(())
        })
        .await;
    assert_eq!(job_names(&fixture).await, [job]);
    assert_eq!(
        files_in(&fixture.local_dir),
        ["interactions-20261130T120000Z.csv"]
    );
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn two_replicas_with_leader_election_never_run_a_slot_twice() {
    use scheduled_exports::operator::leader::{LeaderElection, LeaseSettings};

    let fixture = setup("sx-replicas").await;
    let clock = ManualClock::new(utc("2026-11-30T11:59:00Z"));
    let replica = |identity: &str| {
        let ctx = controller_context(&fixture, &clock, identity);
        let election = Arc::new(LeaderElection::new(
            fixture.client.clone(),
            LeaseSettings {
                namespace: fixture.namespace.clone(),
                name: "scheduled-exports-controller".into(),
                identity: identity.to_string(),
                duration: Duration::from_secs(4),
                renew_every: Duration::from_millis(500),
            },
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller::run_with_leader_election(
            ctx,
            election,
            async move {
                let _ = stopped.await;
            },
        ));
        (stop, task)
    };
    let (stop_a, task_a) = replica("replica-a");
    let (stop_b, task_b) = replica("replica-b");
    fixture
        .wait_for("daily", "the leader's first reconcile", next_run)
        .await;

    clock.set(utc("2026-11-30T12:00:00Z"));
    let first = job_name("daily", utc("2026-11-30T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_complete(&fixture, &first).await;
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        fixture.client.clone(),
        &fixture.namespace,
    );
    let leader = leases
        .get("scheduled-exports-controller")
        .await
        .expect("lease")
        .spec
        .and_then(|spec| spec.holder_identity)
        .expect("a holder");

    // The leader stops and gives the Lease up; the standby takes over and runs the next slot.
    let (stop_leader, task_leader, task_standby, stop_standby) = if leader == "replica-a" {
        (stop_a, task_a, task_b, stop_b)
    } else {
        (stop_b, task_b, task_a, stop_a)
    };
    let _ = stop_leader.send(());
    assert!(
        task_leader.await.expect("leader task").is_ok(),
        "a graceful stop is not an error"
    );
    eventually(WAIT, "the standby to take the Lease", || {
        let leases = leases.clone();
        let leader = leader.clone();
        async move {
            let holder = leases
                .get("scheduled-exports-controller")
                .await
                .ok()?
                .spec?
                .holder_identity?;
            (holder != leader).then_some(())
        }
    })
    .await;
    clock.set(utc("2026-12-01T12:00:00Z"));
    let second = job_name("daily", utc("2026-12-01T12:00:00Z"), &RunKind::Scheduled);
    wait_for_job_complete(&fixture, &second).await;

    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(job_names(&fixture).await, expected);
    let events = Api::<Event>::namespaced(fixture.client.clone(), &fixture.namespace)
        .list(&ListParams::default())
        .await
        .expect("events");
    let scheduled: Vec<_> = events
        .items
        .iter()
        // The operator's, on the object: kube-scheduler's Scheduled Events on the Pods are not runs.
        .filter(|e| {
            e.reason.as_deref() == Some("Scheduled")
                && e.involved_object.kind.as_deref() == Some("ScheduledExport")
        })
        .collect();
    let series = scheduled.iter().map(|e| e.count.unwrap_or(1)).sum::<i32>();
    assert_eq!(
        series, 2,
        "one Scheduled Event per slot, whichever replica leads: {scheduled:?}"
    );
    let _ = stop_standby.send(());
    let _ = task_standby.await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_missing_secret_is_reported_in_status_events_and_kubectl_describe() {
    let fixture = setup("sx-secret").await;
    fixture
        .create_object("orphan", json!({"secretRef": {"name": "no-such-secret"}}))
        .await;
    let clock = ManualClock::new(utc("2026-11-30T15:00:00Z"));
    let controller = start_controller(&fixture, &clock);

    let message = fixture
        .wait_for("orphan", "Ready=False", |o| {
            let ready = o
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "False" && ready.reason == "SecretNotFound")
                .then(|| ready.message.clone())
        })
        .await;
    assert!(
        message.contains("no-such-secret") && message.contains("spec.destination.sftp.secretRef"),
        "{message}"
    );
    let describe = eventually(WAIT, "the Event in kubectl describe", || async {
        let (ok, out, _) = kubectl(&["describe", "sx", "orphan", "-n", &fixture.namespace]);
        (ok && out.contains("InvalidReference")).then_some(out)
    })
    .await;
    assert!(describe.contains("Events:"), "{describe}");
    assert!(
        describe.contains("Ready"),
        "conditions are shown: {describe}"
    );

    // Creating the Secret makes the object Ready without touching it.
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "no-such-secret",
        &sftp_secret_data(),
    )
    .await;
    clock.advance(chrono::TimeDelta::seconds(5));
    fixture
        .wait_for("orphan", "Ready=True", |o| {
            let ready = o
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then_some(())
        })
        .await;
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn server_side_apply_twice_shows_no_drift_while_the_operator_writes_status() {
    let fixture = setup("sx-ssa").await;
    let clock = ManualClock::new(utc("2026-11-30T15:00:00Z"));
    let controller = start_controller(&fixture, &clock);
    let manifest = repo_root().join("examples/interactions-daily.yaml");
    let manifest = manifest.to_str().expect("path");
    let apply = || {
        kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=argocd-controller",
            "-n",
            &fixture.namespace,
            "-f",
            manifest,
        ])
    };
    let (ok, _, err) = apply();
    assert!(ok, "first apply: {err}");
    fixture
        .wait_for("interactions-daily", "the operator's status", next_run)
        .await;

    let (ok, _, err) = apply();
    assert!(ok, "second apply: {err}");
    let (no_diff, diff, err) = kubectl(&[
        "diff",
        "--server-side",
        "--field-manager=argocd-controller",
        "-n",
        &fixture.namespace,
        "-f",
        manifest,
    ]);
    assert!(
        no_diff && diff.is_empty(),
        "drift after the operator wrote status: {diff}{err}"
    );
    let object = fixture.object("interactions-daily").await;
    assert_eq!(
        object.metadata.generation,
        Some(1),
        "the operator never writes spec"
    );
    controller.stop().await;
    fixture.cleanup().await;
}

/// An export as its Job runs it: this project's binary, with the UID the Job carries.
fn export_command(fixture: &Fixture, slot: &str, object_uid: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scheduled-exports"));
    command
        .args([
            "export",
            "--namespace",
            &fixture.namespace,
            "--name",
            "daily",
            "--slot",
            slot,
            "--artifact-store",
            &fixture.artifact_store,
            "--timeout",
            "5s",
        ])
        .env_clear()
        .envs(binary_env())
        .env("EXPORT_OBJECT_UID", object_uid);
    command
}

/// Deletes `daily` (orphaning its Jobs, as a deletion whose garbage collection has not caught up
/// yet leaves them) and creates it again under the same name; returns the new UID.
async fn recreate_daily(fixture: &Fixture, old_uid: &str) -> String {
    fixture
        .api()
        .delete("daily", &DeleteParams::orphan())
        .await
        .expect("delete");
    eventually(WAIT, "the old object to be gone", || async {
        fixture
            .api()
            .get_opt("daily")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    fixture.create_object("daily", json!({})).await;
    let new_uid = fixture.object("daily").await.metadata.uid.expect("uid");
    assert_ne!(new_uid, old_uid);
    new_uid
}

/// What a run of the old object must never leave in the new one.
fn assert_untouched_by_the_old_run(object: &ScheduledExport, what: &str) {
    let status = object.status.clone().unwrap_or_default();
    assert_eq!(status.watermark, None, "{what}: watermark {status:?}");
    assert_eq!(status.last_run, None, "{what}: lastRun {status:?}");
    assert_eq!(status.delivery, None, "{what}: delivery {status:?}");
}

#[tokio::test]
async fn a_run_of_a_deleted_object_never_writes_into_a_new_object_of_the_same_name() {
    let fixture = setup("sx-incarnation").await;
    let old_uid = fixture.object("daily").await.metadata.uid.expect("uid");

    // 1. Deleted and recreated while the run was under way: the export read the old object and
    // is blocked on the database; by the time it would record its file, the name is another's.
    let lock = TableLock::take(&fixture.database_url).await;
    let running = export_command(&fixture, "2026-11-30T12:00:00Z", &old_uid)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the export");
    fixture
        .wait_for("daily", "the run recorded as started", |o| {
            let phase = o.status.as_ref()?.last_run.as_ref()?.phase?;
            (phase.as_str() == "Running").then_some(())
        })
        .await;
    let new_uid = recreate_daily(&fixture, &old_uid).await;
    lock.release().await;
    let output = tokio::task::spawn_blocking(move || running.wait_with_output())
        .await
        .expect("join")
        .expect("the export's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_untouched_by_the_old_run(&fixture.object("daily").await, "replaced mid-run");
    assert_eq!(output.status.code(), Some(2), "not retried: {stderr}");
    assert!(stderr.contains("deleted and created again"), "{stderr}");

    // 2. The old object's Job starts only after the new object exists (a Pod that waited for a
    // node): it stops before reading rows, delivering or writing anything.
    let before = files_in(&fixture.local_dir);
    let output = export_command(&fixture, "2026-11-30T12:00:00Z", &old_uid)
        .output()
        .expect("run the export");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&new_uid) && stderr.contains(&old_uid),
        "{stderr}"
    );
    assert_untouched_by_the_old_run(&fixture.object("daily").await, "started after");
    assert_eq!(files_in(&fixture.local_dir), before, "no file delivered");

    // The new object's own runs still write its status.
    let output = export_command(&fixture, "2026-12-01T12:00:00Z", &new_uid)
        .output()
        .expect("run the export");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = fixture.object("daily").await.status.expect("status");
    assert!(status.watermark.is_some(), "{status:?}");
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_due_slot_is_delivered_before_a_run_now_that_arrives_with_it() {
    let fixture = setup("sx-order").await;
    let clock = ManualClock::new(utc("2026-11-30T11:59:00Z"));
    let controller = start_controller(&fixture, &clock);
    fixture
        .wait_for("daily", "the first reconcile", next_run)
        .await;
    // The operator is away while the slot comes and someone asks for a run now.
    controller.stop().await;
    clock.set(utc("2026-11-30T12:00:30Z"));
    let patch = json!({"metadata": {"annotations": {"exports.crm.dev/run-now": "t1"}}});
    fixture
        .api()
        .patch("daily", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    let controller = start_controller(&fixture, &clock);

    let scheduled = job_name("daily", utc("2026-11-30T12:00:00Z"), &RunKind::Scheduled);
    let run_now = job_name(
        "daily",
        utc("2026-11-30T12:00:30Z"),
        &RunKind::RunNow { token: "t1".into() },
    );
    let first = eventually(WAIT, "the first Job", || async {
        let names = job_names(&fixture).await;
        (!names.is_empty()).then_some(names)
    })
    .await;
    assert_eq!(
        first,
        std::slice::from_ref(&scheduled),
        "the due slot goes first"
    );
    wait_for_job_complete(&fixture, &scheduled).await;
    wait_for_job_complete(&fixture, &run_now).await;
    let jobs = jobs(&fixture).await;
    let find = |name: &str| {
        jobs.iter()
            .find(|job| job.metadata.name.as_deref() == Some(name))
            .cloned()
            .expect("the Job")
    };
    let scheduled_done = find(&scheduled)
        .status
        .and_then(|status| status.completion_time)
        .expect("completion time");
    let run_now_created = find(&run_now)
        .metadata
        .creation_timestamp
        .expect("creation time");
    assert!(
        run_now_created.0 >= scheduled_done.0,
        "the run-now Job waited for the slot's Job"
    );
    assert_eq!(
        files_in(&fixture.local_dir),
        [
            "interactions-20261130T120000Z.csv",
            "interactions-20261130T120030Z.csv"
        ]
    );
    controller.stop().await;
    fixture.cleanup().await;
}
