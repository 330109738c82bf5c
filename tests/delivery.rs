//! Delivery assurance on the real test bed: the controller runs in this process
//! on a manual clock, files are delivered by the real `export` (run here, or by the operator's Jobs
//! as real Pods on the test bed's node), and the tests delete, move and age files in the sshd's
//! directory, stop the server, and watch what the operator does.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Timelike, Utc};
use common::fixture::{Fixture, files_in};
use common::running::{RunningController, TEST_PERIODS};
use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use scheduled_exports::clock::{Clock, ManualClock};
use scheduled_exports::export::file_name::{FileFormat, export_file_name};
use scheduled_exports::operator::DeliverySettings;
use scheduled_exports::operator::{Context, ControllerConfig};
use scheduled_exports::resource::{
    CheckResult, FileType, LastRun, RunPhase, ScheduledExport, ScheduledExportStatus,
};
use scheduled_exports::status::ownership::{self, Content};
use serde_json::json;
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(60);

/// The controller (and so the checker) for one namespace, on a manual clock. Its Jobs' Pods reach
/// only the `s3://` store: a test with a `file://` store (on this host, for the checker alone)
/// never lets a run start.
fn start_controller(
    fixture: &Fixture,
    clock: &ManualClock,
    store: &str,
    sftp_timeout: Duration,
) -> RunningController {
    // The operator's log, shown when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("scheduled_exports=debug")
        .with_test_writer()
        .try_init();
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: export_job_settings(store),
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            sftp_timeout,
            ..DeliverySettings::default()
        },
        instance: "delivery-tests".into(),
        periods: TEST_PERIODS,
    };
    RunningController::spawn(Arc::new(Context::new(
        fixture.client.clone(),
        Arc::new(clock.clone()),
        config,
    )))
}

/// Runs the real export of `name` for `slot` into `store`; returns the delivered file's name.
fn export(fixture: &Fixture, name: &str, slot: DateTime<Utc>, store: &str) -> String {
    let output = fixture.export_with_store(name, &slot.to_rfc3339(), store);
    assert!(
        output.status.success(),
        "export: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file_type = if name.starts_with("proposals") {
        FileType::Proposals
    } else {
        FileType::Interactions
    };
    export_file_name(file_type, FileFormat::default(), slot)
}

/// Moves the object's daily slot about twelve hours away from `from`, so advancing the clock by
/// minutes or hours in a test never reaches a scheduled run by accident.
async fn schedule_far_from(fixture: &Fixture, name: &str, from: DateTime<Utc>) {
    let far = (from + TimeDelta::hours(12)).with_timezone(&chrono_tz::UTC);
    let time = format!(
        "{:02}:{}",
        far.hour(),
        if far.minute() < 30 { "00" } else { "30" }
    );
    fixture
        .patch_spec(name, json!({"time": time, "timeZone": "UTC"}))
        .await;
}

/// The manual clock's start: just after the export recorded its delivery (real time).
async fn clock_after_delivery(fixture: &Fixture, name: &str) -> ManualClock {
    let delivered = fixture
        .object(name)
        .await
        .status
        .and_then(|status| status.delivery)
        .and_then(|delivery| delivery.delivered_at)
        .expect("deliveredAt");
    ManualClock::new(delivered + TimeDelta::seconds(30))
}

fn check_result(object: &ScheduledExport) -> Option<(String, u32, Option<DateTime<Utc>>)> {
    let delivery = object.status.as_ref()?.delivery.as_ref()?;
    Some((
        delivery.last_check_result?.to_string(),
        delivery.recopies,
        delivery.last_check_time,
    ))
}

fn condition(object: &ScheduledExport, type_: &str) -> Option<(String, String, String)> {
    let condition = object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    ))
}

async fn event_reasons(fixture: &Fixture) -> Vec<String> {
    Api::<Event>::namespaced(fixture.client.clone(), &fixture.namespace)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|event| event.reason)
        .collect()
}

fn sha256_of(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(
        std::fs::read(path).expect("read file"),
    ))
}

/// A directory the sshd user can write, below the fixture's export directory.
fn sub_directory(fixture: &Fixture, relative: &str) -> std::path::PathBuf {
    let dir = fixture.local_dir.join(relative);
    create_sftp_user_dir(&dir);
    dir
}

/// Adds `files` (name and content) to the object's record of delivered files, as if it had
/// delivered them: what retention needs to prove a file its own.
async fn record_as_delivered(fixture: &Fixture, name: &str, files: &[(String, &[u8])]) {
    let mut object = fixture.object(name).await;
    let mut status = object.status.take().unwrap_or_default();
    for (file, content) in files {
        let content = Content {
            bytes: content.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(content)),
        };
        status = ownership::record_delivery(&status, file, &content, Utc::now());
    }
    object.status = Some(status);
    fixture
        .api()
        .replace_status(name, &PostParams::default(), &object)
        .await
        .expect("record the files as delivered");
}

/// The temporary name an upload of this object gives `file` (its upload tag, then random digits).
async fn own_partial_name(fixture: &Fixture, name: &str, file: &str) -> String {
    let uid = fixture.object(name).await.metadata.uid.expect("uid");
    format!(
        ".{file}.partial-{:08x}89abcdef",
        ownership::upload_tag(&uid)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn a_deleted_file_is_recopied_and_a_moved_one_is_left_where_the_customer_put_it() {
    let fixture = Fixture::new("sx-recheck", 5).await;
    let store = fixture.artifact_store.clone(); // the test bed's S3 server
    let file = export(&fixture, "daily", Utc::now(), &store);
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;
    let local = fixture.local_dir.join(&file);
    let delivered_sha = sha256_of(&local);
    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));

    // The customer deletes the file; within one interval it is back, byte for byte.
    std::fs::remove_file(&local).expect("delete the delivered file");
    clock.advance(TimeDelta::minutes(9));
    clock.advance(TimeDelta::minutes(1));
    let (result, recopies, _) = fixture
        .wait_for("daily", "a recopy", |o| {
            check_result(o).filter(|(result, ..)| result == "recopied")
        })
        .await;
    assert_eq!((result.as_str(), recopies), ("recopied", 1));
    assert_eq!(sha256_of(&local), delivered_sha, "the same bytes came back");
    let object = fixture.object("daily").await;
    let (status, reason, _) = condition(&object, "Delivered").expect("Delivered");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Recopied"));
    assert!(
        event_reasons(&fixture)
            .await
            .contains(&"Recopied".to_string())
    );
    let metrics = controller.ctx.metrics.encode(clock.now()).expect("metrics");
    assert!(
        metrics.contains("scheduled_exports_recopies_total 1")
            && metrics.contains("scheduled_exports_rechecks_total{result=\"recopied\"} 1"),
        "{metrics}"
    );

    // The next check finds it present.
    clock.advance(TimeDelta::minutes(10));
    fixture
        .wait_for("daily", "a present check", |o| {
            check_result(o)
                .filter(|(result, _, checked)| result == "present" && *checked == Some(clock.now()))
        })
        .await;

    // The customer moves it into archive/: picked up, never copied again, even once it is gone
    // from there too. A second object on the same destination, checked in the same rounds,
    // shows that rounds did happen.
    let mut other = valid_object("proposals-daily");
    other["spec"]["fileType"] = json!("proposals");
    other["spec"]["destination"] =
        serde_json::to_value(fixture.object("daily").await.spec.destination).expect("json");
    let other: ScheduledExport = serde_json::from_value(other).expect("object");
    fixture
        .api()
        .create(&PostParams::default(), &other)
        .await
        .expect("create the second object");
    export(&fixture, "proposals-daily", Utc::now(), &store);
    schedule_far_from(&fixture, "proposals-daily", clock.now()).await;
    // Its delivery lies more than an interval behind the test clock, so its first check is due at
    // once, in a round of its own; the rounds counted below start after it.
    fixture
        .wait_for("proposals-daily", "the second object's first check", |o| {
            check_result(o).filter(|(_, _, checked)| checked.is_some())
        })
        .await;
    let archive = sub_directory(&fixture, "archive");
    std::fs::rename(&local, archive.join(&file)).expect("move into archive/");
    let connections = controller.ctx.metrics.sftp_connections.get();
    clock.advance(TimeDelta::minutes(10));
    let now = clock.now();
    fixture
        .wait_for("proposals-daily", "the second object's check", |o| {
            check_result(o).filter(|(_, _, checked)| *checked == Some(now))
        })
        .await;
    let object = fixture
        .wait_for("daily", "the move to be seen", |o| {
            check_result(o)
                .filter(|(result, ..)| result == "moved")
                .map(|_| o.clone())
        })
        .await;
    let delivery = object.status.and_then(|s| s.delivery).expect("delivery");
    assert_eq!(delivery.found_at, Some(format!("archive/{file}")));
    let moved_check = delivery.last_check_time;
    assert_eq!(moved_check, Some(now));
    assert_eq!(
        controller.ctx.metrics.sftp_connections.get(),
        connections + 1,
        "two objects on one destination share one connection per round"
    );

    std::fs::remove_file(archive.join(&file)).expect("the customer consumed it");
    for _ in 0..2 {
        clock.advance(TimeDelta::minutes(10));
        let now = clock.now();
        fixture
            .wait_for("proposals-daily", "a round on the destination", |o| {
                check_result(o).filter(|(_, _, checked)| *checked == Some(now))
            })
            .await;
    }
    assert!(
        !local.exists() && !archive.join(&file).exists(),
        "a picked-up file is never copied again: {:?} {:?} {:?}",
        files_in(&fixture.local_dir),
        files_in(&archive),
        fixture.object("daily").await.status
    );
    let delivery = fixture
        .object("daily")
        .await
        .status
        .and_then(|s| s.delivery)
        .expect("delivery");
    assert_eq!(delivery.last_check_time, moved_check, "checks stopped");
    assert_eq!(delivery.recopies, 1);

    controller.stop().await;
    fixture.cleanup().await;
}

/// A TCP forwarder to the test bed's sshd that can be switched off and on again at the same port:
/// a server going down and coming back, with the object's destination unchanged.
struct SwitchableServer {
    port: u16,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

impl SwitchableServer {
    async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            accepting: None,
        };
        server.up().await;
        server
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the forwarder");
        let target = format!("{}:{}", env_var("SFTP_HOST"), env_var("SFTP_PORT"));
        self.accepting = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// New connections are refused from now on.
    async fn down(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
            let _ = accepting.await;
        }
    }

    /// knownHosts for this port: the sshd's own keys, under `[127.0.0.1]:{port}`.
    fn secret_data(&self) -> Vec<(&'static str, String)> {
        let real = format!("]:{} ", env_var("SFTP_PORT"));
        sftp_secret_data()
            .into_iter()
            .map(|(key, value)| match key {
                "knownHosts" => (key, value.replace(&real, &format!("]:{} ", self.port))),
                _ => (key, value),
            })
            .collect()
    }
}

// Multi-threaded: the forwarder must keep running while the export binary blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_reported_and_the_file_recopied_on_the_first_check_after() {
    let fixture = Fixture::new("sx-down", 5).await;
    let mut server = SwitchableServer::start().await;
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "sftp-switchable",
        &server.secret_data(),
    )
    .await;
    fixture
        .patch_spec(
            "daily",
            json!({"destination": {"sftp": {"host": "127.0.0.1", "port": server.port,
            "secretRef": {"name": "sftp-switchable"}}}}),
        )
        .await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    let file = export(&fixture, "daily", Utc::now(), &store);
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;
    let local = fixture.local_dir.join(&file);
    // An old file of ours that retention should delete, but only once the server answers.
    let old = export_file_name(
        FileType::Interactions,
        FileFormat::default(),
        clock.now() - TimeDelta::days(91),
    );
    std::fs::write(fixture.local_dir.join(&old), "old\r\n").expect("old file");
    record_as_delivered(&fixture, "daily", &[(old.clone(), b"old\r\n")]).await;

    server.down().await;
    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(5));

    // Pruning is due at once (never done): the server is down, so nothing is deleted.
    let retention = fixture
        .wait_for("daily", "a failed prune", |o| {
            o.status.as_ref()?.retention.clone()
        })
        .await;
    assert_eq!(retention.last_prune_time, None);
    assert!(
        retention
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("nothing deleted"),
        "{retention:?}"
    );
    assert!(fixture.local_dir.join(&old).exists());

    std::fs::remove_file(&local).expect("delete the delivered file");
    clock.advance(TimeDelta::minutes(10));
    let object = fixture
        .wait_for("daily", "an unreachable check", |o| {
            check_result(o)
                .filter(|(result, ..)| result == "unreachable")
                .map(|_| o.clone())
        })
        .await;
    let (status, reason, message) = condition(&object, "Delivered").expect("Delivered");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ConnectionRefused"),
        "Delivered names the adapter's reason"
    );
    assert!(message.contains(&file), "{message}");
    assert!(!local.exists(), "nothing could be copied");
    assert!(
        event_reasons(&fixture)
            .await
            .contains(&"ServerUnreachable".to_string())
    );
    let status_text = serde_json::to_string(&object.status).expect("status");
    for secret in secret_values() {
        assert!(
            !status_text.contains(&secret),
            "a secret leaked into status"
        );
    }

    // The server is back: the first check after recopies, and the retried prune deletes.
    server.up().await;
    clock.advance(TimeDelta::minutes(10));
    let object = fixture
        .wait_for("daily", "a recopy once the server is back", |o| {
            check_result(o)
                .filter(|(result, ..)| result == "recopied")
                .map(|_| o.clone())
        })
        .await;
    assert!(local.exists());
    let (status, ..) = condition(&object, "Delivered").expect("Delivered");
    assert_eq!(status, "True");
    let retention = fixture
        .wait_for("daily", "the retried prune", |o| {
            let retention = o.status.as_ref()?.retention.clone()?;
            retention.last_prune_time.map(|_| retention)
        })
        .await;
    assert_eq!(retention.files_deleted, 1);
    assert!(!fixture.local_dir.join(&old).exists());

    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn retention_deletes_only_this_objects_old_files_and_stale_uploads() {
    let fixture = Fixture::new("sx-retain", 5).await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    let file = export(&fixture, "daily", Utc::now(), &store);
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;
    let now = clock.now();
    let ours = |days: i64| {
        export_file_name(
            FileType::Interactions,
            FileFormat::default(),
            now - TimeDelta::days(days),
        )
    };
    let theirs = |days: i64| {
        export_file_name(
            FileType::Proposals,
            FileFormat::default(),
            now - TimeDelta::days(days),
        )
    };

    // Another object's directory below ours: its files are never ours to prune.
    fixture
        .create_object(
            "nested",
            json!({"directory": format!("{}/nested", fixture.remote_dir)}),
        )
        .await;
    let nested = sub_directory(&fixture, "nested");
    let archive = sub_directory(&fixture, "archive");
    let dir = &fixture.local_dir;
    let stale_upload = own_partial_name(&fixture, "daily", &ours(91)).await;
    let live_upload = own_partial_name(&fixture, "daily", &ours(0)).await;
    // Another object's (or an older version's) dead upload: not provably ours.
    let foreign_upload = format!(".{}.partial-0123456789abcdef", ours(91));
    // Delivered by this object: the record says so, with the content.
    record_as_delivered(
        &fixture,
        "daily",
        &[
            (ours(91), b"x\r\n"),
            (ours(95), b"x\r\n"),
            (ours(93), b"x\r\n"),
        ],
    )
    .await;
    // Our name pattern, old, but not in the record (or with other content): left alone.
    std::fs::write(dir.join(ours(92)), "x\r\n").expect("unrecorded file");
    std::fs::write(dir.join(ours(93)), "y\r\n").expect("recorded name, other content");
    for path in [
        dir.join(ours(91)),
        dir.join(ours(89)),
        dir.join(theirs(91)),
        dir.join("notes.csv"),
        dir.join(format!("{}.bak", ours(91))),
        dir.join(&stale_upload),
        dir.join(&live_upload),
        dir.join(&foreign_upload),
        archive.join(ours(95)),
        archive.join("notes.csv"),
        nested.join(ours(91)),
    ] {
        std::fs::write(&path, "x\r\n").expect("write test file");
    }
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    for upload in [&stale_upload, &foreign_upload] {
        std::fs::File::options()
            .write(true)
            .open(dir.join(upload))
            .and_then(|f| f.set_modified(two_days_ago))
            .expect("age the stale upload");
    }
    // An artifact of an earlier file, left behind by a crash.
    let leftover = artifacts
        .path()
        .join(&fixture.namespace)
        .join("daily")
        .join(ours(1));
    std::fs::write(&leftover, "old artifact").expect("leftover artifact");

    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));
    let retention = fixture
        .wait_for("daily", "the first prune", |o| {
            let retention = o.status.as_ref()?.retention.clone()?;
            retention.last_prune_time.map(|_| retention)
        })
        .await;
    assert_eq!(retention.files_deleted, 3, "{retention:?}");

    let mut remaining = files_in(dir);
    remaining.retain(|name| name != "archive" && name != "nested");
    let mut expected = vec![
        file.clone(),
        ours(89),
        ours(92),
        ours(93),
        theirs(91),
        "notes.csv".to_string(),
        format!("{}.bak", ours(91)),
        live_upload.clone(),
        foreign_upload.clone(),
    ];
    expected.sort();
    assert_eq!(remaining, expected);
    assert_eq!(files_in(&archive), ["notes.csv"]);
    assert_eq!(files_in(&nested), [ours(91)]);
    // Events follow the status write; files not provably ours are named in one of their own.
    eventually(WAIT, "the Pruned and PruneRefused Events", || async {
        let reasons = event_reasons(&fixture).await;
        (reasons.contains(&"Pruned".to_string()) && reasons.contains(&"PruneRefused".to_string()))
            .then_some(())
    })
    .await;
    let message = retention.message.clone().unwrap_or_default();
    assert!(
        message.contains(&ours(92)) && message.contains(&ours(93)),
        "{message}"
    );
    let record: Vec<String> = fixture
        .object("daily")
        .await
        .status
        .expect("status")
        .delivered_files
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert!(
        !record.contains(&ours(91)) && !record.contains(&ours(95)) && record.contains(&file),
        "pruned files leave the record, the delivered one stays: {record:?}"
    );
    eventually(WAIT, "the leftover artifact to go", || async {
        (!leftover.exists()).then_some(())
    })
    .await;
    assert!(
        artifacts
            .path()
            .join(&fixture.namespace)
            .join("daily")
            .join(&file)
            .exists(),
        "the delivered file's artifact stays for recopies"
    );

    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn checks_of_a_file_end_once_a_newer_file_is_delivered() {
    let fixture = Fixture::new("sx-stop", 5).await;
    let store = fixture.artifact_store.clone(); // the next run is a Job's Pod
    let first = export(&fixture, "daily", Utc::now(), &store);
    let clock = clock_after_delivery(&fixture, "daily").await;
    // The next slot: the first half hour at least 15 minutes away.
    let soon = clock.now() + TimeDelta::minutes(15);
    let next_slot = soon
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .map(|t| {
            let extra = (30 - i64::from(t.minute() % 30)) % 30;
            t + TimeDelta::minutes(extra)
        })
        .expect("slot");
    fixture
        .patch_spec(
            "daily",
            json!({"time": next_slot.format("%H:%M").to_string(), "timeZone": "UTC"}),
        )
        .await;
    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));
    // The last check before the run is five minutes before it, so none is due when it starts.
    clock.set(next_slot - TimeDelta::minutes(5));
    let now = clock.now();
    // Any result will do (a busy sshd may refuse a connection): this only marks that a check ran.
    fixture
        .wait_for("daily", "a check before the next run", |o| {
            check_result(o).filter(|(_, _, checked)| *checked == Some(now))
        })
        .await;

    // The next run starts and delivers: from then on the first file is not looked after any more
    // (the clock stays before the first file's next check until the new file is delivered).
    clock.set(next_slot + TimeDelta::seconds(1));
    eventually(WAIT, "the next run's Job", || async {
        let jobs = Api::<Job>::namespaced(fixture.client.clone(), &fixture.namespace)
            .list(&ListParams::default())
            .await
            .ok()?;
        (!jobs.items.is_empty()).then_some(())
    })
    .await;
    std::fs::remove_file(fixture.local_dir.join(&first)).expect("delete the first file");
    let second = export_file_name(FileType::Interactions, FileFormat::default(), next_slot);
    fixture
        .wait_for("daily", "the next run's delivery", |o| {
            let delivery = o.status.as_ref()?.delivery.as_ref()?;
            (delivery.file.as_deref() == Some(second.as_str())).then_some(())
        })
        .await;
    clock.advance(TimeDelta::minutes(10));
    let now = clock.now();
    fixture
        .wait_for("daily", "a check of the new file", |o| {
            check_result(o).filter(|(_, _, checked)| *checked == Some(now))
        })
        .await;
    assert_eq!(
        files_in(&fixture.local_dir),
        [second],
        "the first file stays gone"
    );

    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_hanging_server_delays_neither_other_destinations_nor_runs() {
    let fixture = Fixture::new("sx-hang", 5).await;
    let store = fixture.artifact_store.clone(); // the run-now is a Job's Pod
    export(&fixture, "daily", Utc::now(), &store);
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;

    // A server that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    fixture
        .create_object("hanging", json!({"host": "127.0.0.1", "port": silent_port}))
        .await;
    schedule_far_from(&fixture, "hanging", clock.now()).await;
    let mut hanging = fixture.object("hanging").await;
    let delivered = fixture.object("daily").await.status.expect("status");
    hanging.status = Some(delivered);
    fixture
        .api()
        .replace_status("hanging", &PostParams::default(), &hanging)
        .await
        .expect("give the hanging object a delivered file");

    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(50));
    clock.advance(TimeDelta::minutes(10));
    let now = clock.now();
    fixture
        .wait_for("daily", "the healthy destination's check", |o| {
            check_result(o)
                .filter(|(result, _, checked)| result == "present" && *checked == Some(now))
        })
        .await;
    fixture
        .api()
        .patch(
            "daily",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"annotations": {"exports.crm.dev/run-now": "while-hanging"}}}),
            ),
        )
        .await
        .expect("run-now");
    eventually(WAIT, "the run-now Job", || async {
        let jobs = Api::<Job>::namespaced(fixture.client.clone(), &fixture.namespace)
            .list(&ListParams::default())
            .await
            .ok()?;
        (!jobs.items.is_empty()).then_some(())
    })
    .await;
    let hanging = fixture.object("hanging").await;
    assert_ne!(
        check_result(&hanging).map(|(result, ..)| result),
        Some("unreachable".to_string()),
        "the silent server's check is still waiting while everything else went on"
    );
    drop(silent);
    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer_over_http() {
    use scheduled_exports::operator::metrics::Metrics;
    use scheduled_exports::operator::server::{Health, serve};

    let metrics = Arc::new(Metrics::new());
    metrics.record_check(CheckResult::Present);
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Utc::now()));
    tokio::spawn(serve(listener, metrics, clock, health.clone()));

    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .expect("request");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("response");
            response
        })
    };
    assert!(
        get("/healthz")
            .await
            .expect("healthz")
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        get("/readyz")
            .await
            .expect("readyz")
            .starts_with("HTTP/1.1 503")
    );
    health.set_ready();
    assert!(
        get("/readyz")
            .await
            .expect("readyz")
            .starts_with("HTTP/1.1 200")
    );
    let response = get("/metrics").await.expect("metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("application/openmetrics-text"));
    assert!(response.contains("scheduled_exports_rechecks_total{result=\"present\"} 1"));
    assert!(
        get("/nothing")
            .await
            .expect("404")
            .starts_with("HTTP/1.1 404")
    );
}

/// The error a failed export wrote into status, with its `Exported` reason.
async fn last_error(fixture: &Fixture, name: &str) -> (String, String) {
    let object = fixture.object(name).await;
    let (_, reason, _) = condition(&object, "Exported").expect("Exported");
    let error = object
        .status
        .and_then(|status| status.last_run)
        .and_then(|run| run.error)
        .unwrap_or_default();
    (reason, error)
}

/// What a run that died after its rename but before its status write leaves: its file (and its
/// artifact) in place, and a status that says only that a run of the slot started.
async fn lose_the_status_write(fixture: &Fixture, name: &str, slot: DateTime<Utc>) {
    let mut object = fixture.object(name).await;
    object.status = Some(ScheduledExportStatus {
        last_run: Some(LastRun {
            slot: Some(slot),
            phase: Some(RunPhase::Running),
            ..LastRun::default()
        }),
        ..ScheduledExportStatus::default()
    });
    fixture
        .api()
        .replace_status(name, &PostParams::default(), &object)
        .await
        .expect("forget the delivery");
}

#[tokio::test]
async fn a_second_object_retried_after_file_exists_never_replaces_the_first_objects_file() {
    let fixture = Fixture::new("sx-twin", 5).await;
    let store = fixture.artifact_store.clone();
    let slot = Utc::now().trunc_subsecs(0);
    let file = export(&fixture, "daily", slot, &store);
    let local = fixture.local_dir.join(&file);
    let first = sha256_of(&local);
    // Another object of the same file type into the same directory, spelt another way (a host
    // alias, a trailing slash), whose file of the same slot holds other bytes (a byte order mark).
    fixture
        .create_object(
            "twin",
            json!({"host": "localhost", "directory": format!("{}/", fixture.remote_dir)}),
        )
        .await;
    fixture
        .patch_spec("twin", json!({"csv": {"byteOrderMark": true}}))
        .await;
    for attempt in ["the first attempt", "the retried Job"] {
        let output = fixture.export_with_store("twin", &slot.to_rfc3339(), &store);
        assert!(
            !output.status.success(),
            "{attempt} must fail: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            sha256_of(&local),
            first,
            "{attempt} left the first object's file as it was"
        );
    }
    let (reason, error) = last_error(&fixture, "twin").await;
    assert_eq!(reason, "FileExists");
    assert!(
        error.contains(&format!("another file named {file}")) && error.contains("own directory"),
        "the reason says what is there and what to do: {error}"
    );
    assert_eq!(files_in(&fixture.local_dir), [file]);
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_job_retried_after_its_file_was_renamed_into_place_replaces_only_its_own_file() {
    let fixture = Fixture::new("sx-retry", 5).await;
    let store = fixture.artifact_store.clone();
    let slot = Utc::now().trunc_subsecs(0);
    let file = export(&fixture, "daily", slot, &store);
    let local = fixture.local_dir.join(&file);
    let slot_text = slot.to_rfc3339();

    // Its own earlier attempt (the artifact it stored holds the same bytes): replaced by the
    // retry's file, which covers the same window (here with a byte order mark, so it differs).
    lose_the_status_write(&fixture, "daily", slot).await;
    fixture
        .patch_spec("daily", json!({"csv": {"byteOrderMark": true}}))
        .await;
    let output = fixture.export_with_store("daily", &slot_text, &store);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replaced = std::fs::read(&local).expect("the retry's file");
    assert!(
        replaced.starts_with("\u{feff}".as_bytes()),
        "the retry's own bytes"
    );

    // The same again, the file already holding exactly the retry's bytes: adopted as it is.
    lose_the_status_write(&fixture, "daily", slot).await;
    let output = fixture.export_with_store("daily", &slot_text, &store);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read(&local).expect("file"), replaced);
    let status = fixture.object("daily").await.status.expect("status");
    assert_eq!(
        status.delivery.and_then(|delivery| delivery.file),
        Some(file.clone())
    );
    let recorded = status
        .delivered_files
        .iter()
        .find(|entry| entry.name == file)
        .expect("recorded as delivered");
    assert_eq!(recorded.sha256, sha256_of(&local));

    // Someone else's file under that name (neither this run's bytes nor the artifact's): refused.
    lose_the_status_write(&fixture, "daily", slot).await;
    std::fs::write(&local, "someone else's file\r\n").expect("replace on the server");
    let foreign = sha256_of(&local);
    let output = fixture.export_with_store("daily", &slot_text, &store);
    assert!(!output.status.success(), "another's file is never replaced");
    assert_eq!(sha256_of(&local), foreign, "and left untouched");
    let (reason, error) = last_error(&fixture, "daily").await;
    assert_eq!(reason, "FileExists");
    assert!(error.contains("another file named"), "{error}");
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_neighbours_same_named_file_in_a_sub_directory_does_not_count_as_picked_up() {
    let fixture = Fixture::new("sx-neighbour", 5).await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    let file = export(&fixture, "daily", Utc::now(), &store);
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;
    let local = fixture.local_dir.join(&file);
    let delivered_sha = sha256_of(&local);
    // A neighbour keeps a file of the same name, with other content, in a sub-directory.
    let neighbour = sub_directory(&fixture, "neighbour");
    std::fs::write(neighbour.join(&file), "a neighbour's rows\r\n").expect("neighbour's file");
    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));

    std::fs::remove_file(&local).expect("delete the delivered file");
    clock.advance(TimeDelta::minutes(10));
    let (result, recopies, _) = fixture
        .wait_for("daily", "a recopy", |o| {
            check_result(o).filter(|(result, ..)| result == "recopied" || result == "moved")
        })
        .await;
    assert_eq!(
        (result.as_str(), recopies),
        ("recopied", 1),
        "the neighbour's file is not ours"
    );
    assert_eq!(sha256_of(&local), delivered_sha, "the same bytes came back");
    assert_eq!(
        std::fs::read(neighbour.join(&file)).expect("neighbour's file"),
        b"a neighbour's rows\r\n"
    );

    // Moved by the customer into archive/: that one is ours, so it counts as picked up.
    let archive = sub_directory(&fixture, "archive");
    std::fs::rename(&local, archive.join(&file)).expect("move into archive/");
    clock.advance(TimeDelta::minutes(10));
    let found_at = fixture
        .wait_for("daily", "the move to be seen", |o| {
            let delivery = o.status.as_ref()?.delivery.as_ref()?;
            (delivery.last_check_result == Some(CheckResult::Moved))
                .then(|| delivery.found_at.clone())
        })
        .await;
    assert_eq!(found_at, Some(format!("archive/{file}")));

    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn two_objects_in_one_directory_each_prune_only_their_own_files_and_never_the_current_one() {
    let fixture = Fixture::new("sx-share", 5).await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    let now = Utc::now().trunc_subsecs(0);
    // The second object: same file type and directory, another spelling of both, suspended
    // until the first has pruned, so what the first deletes is seen alone.
    fixture
        .create_object(
            "twin",
            json!({"host": "localhost", "directory": format!("{}/", fixture.remote_dir)}),
        )
        .await;
    fixture.patch_spec("twin", json!({"suspend": true})).await;
    let twin_old = export(&fixture, "twin", now - TimeDelta::days(95), &store);
    let twin_current = export(&fixture, "twin", now - TimeDelta::minutes(1), &store);
    // The first object's current file comes from an old `--slot` run: its name is far past
    // retention, and it is still the file the customer has.
    let daily_current = export(&fixture, "daily", now - TimeDelta::days(200), &store);
    // And an older file it delivered before, past retention.
    let daily_old = export_file_name(
        FileType::Interactions,
        FileFormat::default(),
        now - TimeDelta::days(100),
    );
    std::fs::write(fixture.local_dir.join(&daily_old), "old rows\r\n").expect("old file");
    record_as_delivered(&fixture, "daily", &[(daily_old.clone(), b"old rows\r\n")]).await;
    let clock = ManualClock::new(Utc::now());
    schedule_far_from(&fixture, "daily", clock.now()).await;
    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));

    let retention = fixture
        .wait_for("daily", "the first object's prune", |o| {
            let retention = o.status.as_ref()?.retention.clone()?;
            retention.last_prune_time.map(|_| retention)
        })
        .await;
    let mut expected = vec![
        daily_current.clone(),
        twin_old.clone(),
        twin_current.clone(),
    ];
    expected.sort();
    assert_eq!(
        files_in(&fixture.local_dir),
        expected,
        "only its own old file went: {retention:?}"
    );
    assert_eq!(retention.files_deleted, 1);
    assert!(!fixture.local_dir.join(&daily_old).exists());

    // The second object resumes and prunes its own old file, and nothing of the first's.
    fixture.patch_spec("twin", json!({"suspend": false})).await;
    schedule_far_from(&fixture, "twin", clock.now()).await;
    let retention = fixture
        .wait_for("twin", "the second object's prune", |o| {
            let retention = o.status.as_ref()?.retention.clone()?;
            retention.last_prune_time.map(|_| retention)
        })
        .await;
    let mut expected = vec![daily_current, twin_current];
    expected.sort();
    assert_eq!(files_in(&fixture.local_dir), expected, "{retention:?}");

    controller.stop().await;
    fixture.cleanup().await;
}

/// Makes every later run of the fixture's objects fail at the database (a port nothing listens on).
async fn break_the_source(fixture: &Fixture) {
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        fixture.client.clone(),
        &fixture.namespace,
    )
    .patch(
        "crm-database",
        &PatchParams::default(),
        &Patch::Merge(&json!({"stringData": {
            "url": format!("postgresql://nobody@127.0.0.1:{}/none", free_port())
        }})),
    )
    .await
    .expect("break the database Secret");
}

#[tokio::test]
async fn the_last_file_is_rechecked_and_recopied_while_the_next_runs_fail() {
    let fixture = Fixture::new("sx-failing", 5).await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    let first_slot = Utc::now().trunc_subsecs(0);
    let file = export(&fixture, "daily", first_slot, &store);
    let local = fixture.local_dir.join(&file);
    let delivered_sha = sha256_of(&local);
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;

    // The next run fails (and with it lastRun says nothing about the delivered file any more).
    break_the_source(&fixture).await;
    let next_slot = first_slot + TimeDelta::minutes(1);
    let output = fixture.export_with_store("daily", &next_slot.to_rfc3339(), &store);
    assert!(!output.status.success(), "the next run fails");
    let object = fixture.object("daily").await;
    let last_run = object.status.and_then(|s| s.last_run).expect("lastRun");
    assert_eq!(last_run.phase, Some(RunPhase::Failed));

    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));
    std::fs::remove_file(&local).expect("delete the delivered file");
    clock.advance(TimeDelta::minutes(10));
    fixture
        .wait_for("daily", "a recopy while the next run fails", |o| {
            check_result(o).filter(|(result, ..)| result == "recopied")
        })
        .await;
    assert_eq!(sha256_of(&local), delivered_sha);

    // Still looked after at the next interval.
    clock.advance(TimeDelta::minutes(10));
    let now = clock.now();
    fixture
        .wait_for("daily", "the next check", |o| {
            check_result(o)
                .filter(|(result, _, checked)| result == "present" && *checked == Some(now))
        })
        .await;

    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn the_current_file_is_never_pruned_with_a_clock_far_ahead() {
    let fixture = Fixture::new("sx-ahead", 5).await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    let file = export(&fixture, "daily", Utc::now(), &store);
    let local = fixture.local_dir.join(&file);
    // The catch-up run a jump of the clock starts must not deliver a newer file.
    break_the_source(&fixture).await;
    let clock = ManualClock::new(Utc::now() + TimeDelta::days(400));
    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));

    let retention = fixture
        .wait_for("daily", "a prune", |o| {
            let retention = o.status.as_ref()?.retention.clone()?;
            retention.last_prune_time.map(|_| retention)
        })
        .await;
    assert_eq!(retention.files_deleted, 0, "{retention:?}");
    assert!(
        local.exists(),
        "the delivered file is the customer's current file"
    );

    controller.stop().await;
    fixture.cleanup().await;
}

/// A TCP forwarder to the test bed's sshd that holds every chunk the server sends for `delay`: a
/// server that answers every call, each just in time for the per-call timeout.
async fn sluggish_server(delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the forwarder");
    let port = listener.local_addr().expect("addr").port();
    let target = format!("{}:{}", env_var("SFTP_HOST"), env_var("SFTP_PORT"));
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (mut from_client, mut to_client) = inbound.into_split();
            let (mut from_server, mut to_server) = outbound.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
            });
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 64 * 1024];
                while let Ok(n) = from_server.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await; // the fault itself
                    if to_client.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_runs_past_its_deadline_is_ended_and_the_next_one_starts() {
    let fixture = Fixture::new("sx-sluggish", 5).await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    export(&fixture, "daily", Utc::now(), &store);
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;

    // An object on a server that answers every request after 700 ms, whose file is gone, so its
    // check walks the 30 sub-directories of the export directory: a minute of calls, each well
    // within the 5 s timeout.
    let port = sluggish_server(Duration::from_millis(700)).await;
    let real = format!("]:{} ", env_var("SFTP_PORT"));
    let secret: Vec<(&str, String)> = sftp_secret_data()
        .into_iter()
        .map(|(key, value)| match key {
            "knownHosts" => (key, value.replace(&real, &format!("]:{port} "))),
            _ => (key, value),
        })
        .collect();
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "sftp-sluggish",
        &secret,
    )
    .await;
    fixture
        .create_object(
            "sluggish",
            json!({"host": "127.0.0.1", "port": port, "secretRef": {"name": "sftp-sluggish"}}),
        )
        .await;
    schedule_far_from(&fixture, "sluggish", clock.now()).await;
    for i in 0..30 {
        sub_directory(&fixture, &format!("d{i:02}"));
    }
    let mut sluggish = fixture.object("sluggish").await;
    let mut status = fixture.object("daily").await.status.expect("status");
    let gone = export_file_name(
        FileType::Interactions,
        FileFormat::default(),
        clock.now() - TimeDelta::hours(1),
    );
    let delivery = status.delivery.as_mut().expect("delivery");
    delivery.file = Some(gone.clone());
    delivery.destination = None;
    status.last_run.as_mut().expect("lastRun").file_name = Some(gone);
    status.retention = Some(scheduled_exports::resource::RetentionStatus {
        last_prune_time: Some(clock.now()),
        last_attempt_time: Some(clock.now()),
        ..Default::default()
    });
    sluggish.status = Some(status);
    fixture
        .api()
        .replace_status("sluggish", &PostParams::default(), &sluggish)
        .await
        .expect("give the object a delivered file");

    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: export_job_settings(&store),
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            sftp_timeout: Duration::from_secs(5),
            round_deadline: Duration::from_secs(15),
            ..DeliverySettings::default()
        },
        instance: "delivery-tests".into(),
        periods: TEST_PERIODS,
    };
    let controller = RunningController::spawn(Arc::new(Context::new(
        fixture.client.clone(),
        Arc::new(clock.clone()),
        config,
    )));
    let ended = |o: &ScheduledExport| {
        let (_, reason, message) = condition(o, "Delivered")?;
        let checked = check_result(o)?.2;
        (reason == "Timeout" && message.contains("did not let the check round finish"))
            .then_some(checked)
    };
    clock.advance(TimeDelta::minutes(10));
    let first = clock.now();
    let checked = fixture
        .wait_for("sluggish", "the round ended at its deadline", ended)
        .await;
    assert_eq!(checked, Some(first));
    // The next interval starts a new round on that server at once, the old one notwithstanding.
    clock.advance(TimeDelta::minutes(10));
    let second = clock.now();
    fixture
        .wait_for("sluggish", "the next round", |o| {
            ended(o).filter(|checked| *checked == Some(second))
        })
        .await;
    // The other destination was checked meanwhile.
    let daily = fixture.object("daily").await;
    assert_eq!(
        check_result(&daily).map(|(result, _, checked)| (result, checked)),
        Some(("present".to_string(), Some(second)))
    );

    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_file_delivered_before_the_record_existed_becomes_provably_ours_at_the_next_delivery() {
    let fixture = Fixture::new("sx-upgrade", 5).await;
    let store = fixture.artifact_store.clone();
    let first_slot = Utc::now().trunc_subsecs(0);
    let first = export(&fixture, "daily", first_slot, &store);
    let first_sha = sha256_of(&fixture.local_dir.join(&first));
    // What a version that kept no record wrote: lastRun's size and sha256, nothing else.
    let older = json!({"status": {"deliveredFiles": null,
        "delivery": {"bytes": null, "sha256": null}}});
    fixture
        .api()
        .patch_status("daily", &PatchParams::default(), &Patch::Merge(&older))
        .await
        .expect("write status as an older version did");

    let second = export(
        &fixture,
        "daily",
        first_slot + TimeDelta::minutes(1),
        &store,
    );
    let record: Vec<(String, String)> = fixture
        .object("daily")
        .await
        .status
        .expect("status")
        .delivered_files
        .into_iter()
        .map(|entry| (entry.name, entry.sha256))
        .collect();
    assert_eq!(
        record,
        vec![
            (first, first_sha),
            (second.clone(), sha256_of(&fixture.local_dir.join(&second)))
        ]
    );
    fixture.cleanup().await;
}

/// The institution's own tools on the delivered directory: `sha256sum -c` on the checksum file,
/// then `gunzip -c` on the data file; returns the CSV.
fn read_as_the_institution_does(dir: &Path, file: &str) -> String {
    let verified = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{file}.sha256"))
        .current_dir(dir)
        .output()
        .expect("run sha256sum");
    assert!(
        verified.status.success(),
        "sha256sum -c: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let unzipped = std::process::Command::new("gunzip")
        .arg("-c")
        .arg(dir.join(file))
        .output()
        .expect("run gunzip");
    assert!(
        unzipped.status.success(),
        "gunzip: {}",
        String::from_utf8_lossy(&unzipped.stderr)
    );
    String::from_utf8(unzipped.stdout).expect("UTF-8 CSV")
}

#[tokio::test]
async fn a_gzip_file_and_its_checksum_file_are_delivered_rechecked_and_pruned_as_one() {
    let fixture = Fixture::new("sx-feed", 12).await;
    let store = fixture.artifact_store.clone();
    fixture
        .patch_spec(
            "daily",
            json!({"compression": "gzip", "checksumFile": true}),
        )
        .await;
    let gzip = FileFormat {
        compression: scheduled_exports::resource::Compression::Gzip,
        encrypted: false,
    };
    let old_slot = Utc::now().trunc_subsecs(0) - TimeDelta::days(100);
    let old = export_file_name(FileType::Interactions, gzip, old_slot);
    let output = fixture.export_with_store("daily", &old_slot.to_rfc3339(), &store);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let slot = Utc::now().trunc_subsecs(0);
    let file = export_file_name(FileType::Interactions, gzip, slot);
    let output = fixture.export_with_store("daily", &slot.to_rfc3339(), &store);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = fixture.local_dir.clone();
    let mut expected = vec![
        old.clone(),
        format!("{old}.sha256"),
        file.clone(),
        format!("{file}.sha256"),
    ];
    expected.sort();
    assert_eq!(
        files_in(&dir),
        expected,
        "each file with its checksum file, nothing else"
    );

    // The first file holds every row, the second (nothing written since) only the header.
    let first = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(first.path(), read_as_the_institution_does(&dir, &old)).expect("write CSV");
    let (headers, rows) = common::fixture::read_csv(first.path());
    assert_eq!(headers, INTERACTION_COLUMNS);
    assert_eq!(rows.len(), 12);
    let second = read_as_the_institution_does(&dir, &file);
    assert_eq!(second, format!("{}\r\n", INTERACTION_COLUMNS.join(",")));
    // Status records the delivered (compressed) bytes.
    let status = fixture.object("daily").await.status.expect("status");
    let delivered = std::fs::read(dir.join(&file)).expect("delivered file");
    let last_run = status.last_run.expect("lastRun");
    assert_eq!(last_run.bytes, Some(delivered.len() as u64));
    assert_eq!(
        last_run.sha256.as_deref(),
        Some(sha256_of(&dir.join(&file)).as_str())
    );

    // Rechecks: a missing checksum file is published again; a missing pair comes back whole.
    let clock = clock_after_delivery(&fixture, "daily").await;
    schedule_far_from(&fixture, "daily", clock.now()).await;
    let controller = start_controller(&fixture, &clock, &store, Duration::from_secs(10));
    fixture
        .wait_for("daily", "the first prune", |o| {
            o.status.as_ref()?.retention.as_ref()?.last_prune_time
        })
        .await;
    let mut expected = vec![file.clone(), format!("{file}.sha256")];
    expected.sort();
    assert_eq!(
        files_in(&dir),
        expected,
        "the old file went with its checksum file"
    );

    std::fs::remove_file(dir.join(format!("{file}.sha256"))).expect("delete the checksum file");
    clock.advance(TimeDelta::minutes(10));
    let (_, recopies, _) = fixture
        .wait_for("daily", "the checksum file published again", |o| {
            check_result(o).filter(|(result, ..)| result == "recopied")
        })
        .await;
    assert_eq!(recopies, 1);
    assert_eq!(read_as_the_institution_does(&dir, &file), second);

    for name in [&file, &format!("{file}.sha256")] {
        std::fs::remove_file(dir.join(name)).expect("delete the delivered pair");
    }
    clock.advance(TimeDelta::minutes(10));
    fixture
        .wait_for("daily", "the pair copied again", |o| {
            check_result(o).filter(|(result, recopies, _)| result == "recopied" && *recopies == 2)
        })
        .await;
    assert_eq!(read_as_the_institution_does(&dir, &file), second);
    assert_eq!(
        std::fs::read(dir.join(&file)).expect("recopied file"),
        delivered
    );

    controller.stop().await;
    fixture.cleanup().await;
}
