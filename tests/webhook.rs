//! Alerts on the real test bed: the operator runs in this process on a manual clock, its Jobs run
//! as real Pods on the node against the bed's sshd, PostgreSQL and MinIO, and a real HTTP
//! receiver in this process takes the alerts and checks their signature and timestamp the way an
//! institution's endpoint would (with its own HMAC computation, not the operator's).

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use common::fixture::Fixture;
use common::running::{RunningController, TEST_PERIODS};
use common::*;
use hmac::{Hmac, Mac};
use kube::api::{Patch, PatchParams};
use scheduled_exports::clock::{Clock, ManualClock};
use scheduled_exports::operator::job::{RunKind, job_name};
use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings};
use scheduled_exports::resource::ScheduledExport;
use serde_json::{Value, json};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(120);
/// The webhook's path holds its token, as an incoming-webhook URL's does.
const HOOK_PATH: &str = "/services/T0001/B0002/hook-token-0f3a9c";
const SIGNING_KEY: &str = "institution-signing-key-5d1e";
/// How old a timestamp the receiver accepts, as a replay guard.
const MAX_AGE_SECONDS: i64 = 300;

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("header text").to_string())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn event(&self) -> String {
        self.json()["event"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// What the institution's endpoint does before trusting a POST: the timestamp is recent and
    /// the HMAC of `<timestamp>.<body>` under its key matches the signature header.
    fn verified(&self, key: &[u8]) -> Value {
        let timestamp = self
            .header("x-scheduled-exports-timestamp")
            .expect("a timestamp header");
        let seconds: i64 = timestamp.parse().expect("Unix seconds");
        assert!(
            (Utc::now().timestamp() - seconds).abs() <= MAX_AGE_SECONDS,
            "a stale timestamp: {timestamp}"
        );
        let signature = self
            .header("x-scheduled-exports-signature")
            .expect("a signature header");
        let hex_digest = signature
            .strip_prefix("sha256=")
            .unwrap_or_else(|| panic!("sha256=...: {signature}"));
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        mac.verify_slice(&hex::decode(hex_digest).expect("hex"))
            .expect("the signature verifies");
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json")
        );
        self.json()
    }
}

#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer, in order, before answering 200.
    answers: Arc<Mutex<VecDeque<u16>>>,
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answered = inbox
        .answers
        .lock()
        .expect("answers")
        .pop_front()
        .unwrap_or(200);
    inbox.received.lock().expect("inbox").push(Received {
        headers,
        body,
        at: Instant::now(),
        answered,
    });
    StatusCode::from_u16(answered).expect("status")
}

/// An HTTP endpoint on 127.0.0.1 that records what it is sent.
struct Receiver {
    url: String,
    inbox: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let inbox = Inbox::default();
        let app = axum::Router::new()
            .route(HOOK_PATH, axum::routing::post(receive))
            .with_state(inbox.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://127.0.0.1:{port}{HOOK_PATH}"),
            inbox,
            task,
        }
    }

    /// The next answers, in order, before 200 again.
    fn answer_next(&self, statuses: &[u16]) {
        *self.inbox.answers.lock().expect("answers") = statuses.iter().copied().collect();
    }

    fn all(&self) -> Vec<Received> {
        self.inbox.received.lock().expect("inbox").clone()
    }

    fn of(&self, event: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|request| request.event() == event)
            .collect()
    }

    /// Waits until `count` POSTs of `event` arrived; returns them.
    async fn wait_for(&self, event: &str, count: usize, guard: &KeepNotify) -> Vec<Received> {
        let give_up = Instant::now() + WAIT;
        loop {
            let matching = self.of(event);
            if matching.len() >= count {
                return matching;
            }
            assert!(
                Instant::now() < give_up,
                "timed out after {WAIT:?} waiting for {count} {event} alert(s); spec.notify was \
                 dropped and restored {} time(s) meanwhile (another build's CRD applied to the \
                 shared test bed drops the field: an alert decided while it was gone is not sent)",
                guard.restored()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The controller for one namespace on a manual clock; a failed run is not retried, so it ends
/// at once.
fn start_controller(fixture: &Fixture, clock: &ManualClock, store: &str) -> RunningController {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("scheduled_exports=debug")
        .with_test_writer()
        .try_init();
    let mut job = export_job_settings(store);
    job.backoff_limit = 0;
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job,
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            sftp_timeout: Duration::from_secs(5),
            ..DeliverySettings::default()
        },
        instance: "webhook-tests".into(),
        periods: TEST_PERIODS,
    };
    RunningController::spawn(Arc::new(Context::new(
        fixture.client.clone(),
        Arc::new(clock.clone()),
        config,
    )))
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("instant")
        .with_timezone(&Utc)
}

/// Points `name`'s alerts at a webhook Secret holding `url` and, when given, `signing_key`, and
/// keeps them there for the guard's life.
async fn use_webhook(
    fixture: &Fixture,
    name: &str,
    url: &str,
    signing_key: Option<&str>,
) -> KeepNotify {
    let secret = format!("{name}-alerts");
    let mut data = vec![("url", url.to_string())];
    if let Some(key) = signing_key {
        data.push(("signingKey", key.to_string()));
    }
    create_secret(&fixture.client, &fixture.namespace, &secret, &data).await;
    set_notify(fixture.api(), name, &secret).await;
    KeepNotify::start(fixture, name, &secret)
}

/// Sets `spec.notify` to the webhook Secret `secret` and waits until it is stored. The test bed's
/// CRD is shared: a test of a build without this field, starting meanwhile, applies its own
/// schema, and the API server then drops the field from the object at its next write; so this
/// applies this build's CRD first.
async fn set_notify(api: kube::Api<ScheduledExport>, name: &str, secret: &str) {
    let patch = json!({"spec": {"notify": {"webhook": {"secretRef": {"name": secret}}}}});
    eventually(WAIT, "spec.notify stored", || {
        let api = api.clone();
        let patch = patch.clone();
        async move {
            install_crd(&api.clone().into_client()).await;
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .ok()?;
            api.get(name).await.ok()?.spec.notify.map(|_| ())
        }
    })
    .await;
}

/// Puts `spec.notify` back whenever another build's CRD made the API server drop it (see
/// [`set_notify`]), counting how often, until dropped.
struct KeepNotify {
    restored: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepNotify {
    fn start(fixture: &Fixture, name: &str, secret: &str) -> Self {
        let restored = Arc::new(AtomicUsize::new(0));
        let (api, name, secret, count) = (
            fixture.api(),
            name.to_string(),
            secret.to_string(),
            restored.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                if let Ok(object) = api.get(&name).await
                    && object.spec.notify.is_none()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                    set_notify(api.clone(), &name, &secret).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { restored, task }
    }

    fn restored(&self) -> usize {
        self.restored.load(Ordering::Relaxed)
    }
}

impl Drop for KeepNotify {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_now(fixture: &Fixture, token: &str) {
    let patch = json!({"metadata": {"annotations": {"exports.crm.dev/run-now": token}}});
    fixture
        .api()
        .patch("daily", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate run-now");
}

fn last_phase(object: &ScheduledExport) -> Option<String> {
    let run = object.status.as_ref()?.last_run.as_ref()?;
    Some(format!(
        "{}/{}",
        run.job_name.as_deref()?,
        run.phase?.as_str()
    ))
}

/// No body may carry the webhook's own credentials or any of the bed's secrets.
fn assert_no_secret(received: &[Received]) {
    for request in received {
        let text = String::from_utf8_lossy(&request.body);
        for secret in secret_values()
            .into_iter()
            .chain([HOOK_PATH.to_string(), SIGNING_KEY.to_string()])
        {
            assert!(!text.contains(&secret), "a secret in an alert: {text}");
        }
    }
}

/// The POSTs of `event` about Job `job`, once `count` arrived; `None` when they did not because
/// `spec.notify` was dropped meanwhile (see [`set_notify`]), so the step is to be repeated.
async fn alerts_for(
    receiver: &Receiver,
    event: &str,
    job: &str,
    count: usize,
    guard: &KeepNotify,
    restored_before: usize,
) -> Option<Vec<Received>> {
    let give_up = Instant::now() + WAIT;
    loop {
        let matching: Vec<Received> = receiver
            .of(event)
            .into_iter()
            .filter(|request| request.json()["job"] == job)
            .collect();
        if matching.len() >= count {
            return Some(matching);
        }
        if Instant::now() >= give_up {
            assert!(
                guard.restored() > restored_before,
                "timed out after {WAIT:?} waiting for {count} {event} alert(s) about {job}"
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_failed_run_and_the_next_good_one_alert_signed_and_a_busy_receiver_delays_nothing() {
    let fixture = Fixture::new("sx-hook-run", 5).await;
    let receiver = Receiver::start().await;
    let guard = use_webhook(&fixture, "daily", &receiver.url, Some(SIGNING_KEY)).await;
    let start = utc("2026-11-30T15:00:00Z"); // 10:00 in New York
    let clock = ManualClock::new(start);
    let store = fixture.artifact_store.clone();
    let controller = start_controller(&fixture, &clock, &store);
    let directory = fixture.remote_dir.clone();

    // Repeated only when the shared bed's CRD dropped spec.notify while a step waited.
    let mut attempt = 0;
    let (failed_job, good_job, good_slot, failed, recovered) = loop {
        attempt += 1;
        assert!(
            attempt <= 3,
            "spec.notify kept being dropped by other builds' CRDs"
        );
        let restored = guard.restored();
        let fail_slot = start + TimeDelta::minutes(20 * (attempt - 1));
        let good_slot = fail_slot + TimeDelta::minutes(10);

        // The export directory is missing on the server: the run fails.
        fixture
            .patch_spec(
                "daily",
                json!({"destination": {"sftp": {"directory": format!("{directory}/missing")}}}),
            )
            .await;
        clock.set(fail_slot);
        let token = format!("fail-{attempt}");
        run_now(&fixture, &token).await;
        let failed_job = job_name("daily", fail_slot, &RunKind::RunNow { token });
        let Some(failed) =
            alerts_for(&receiver, "RunFailed", &failed_job, 1, &guard, restored).await
        else {
            continue;
        };

        // Fixed, the next run succeeds; the receiver is busy for its alert's first two attempts.
        receiver.answer_next(&[500, 500]);
        fixture
            .patch_spec(
                "daily",
                json!({"destination": {"sftp": {"directory": directory}}}),
            )
            .await;
        clock.set(good_slot);
        let token = format!("good-{attempt}");
        run_now(&fixture, &token).await;
        let good_job = job_name("daily", good_slot, &RunKind::RunNow { token });
        let Some(recovered) =
            alerts_for(&receiver, "RunRecovered", &good_job, 3, &guard, restored).await
        else {
            continue;
        };
        break (failed_job, good_job, good_slot, failed, recovered);
    };

    let body = failed[0].verified(SIGNING_KEY.as_bytes());
    assert_eq!(body["namespace"], fixture.namespace.as_str());
    assert_eq!(body["name"], "daily");
    assert_eq!(body["fileType"], "interactions");
    assert_eq!(body["job"], failed_job.as_str());
    assert!(body["slot"].is_string(), "{body}");
    assert_eq!(body["reason"], "DirectoryMissing", "{body}");
    let text = body["text"].as_str().expect("a text field");
    assert!(
        text.contains(&format!("{}/daily", fixture.namespace))
            && text.contains("failed")
            && text.contains("DirectoryMissing")
            && !text.contains('\n'),
        "{text}"
    );

    // The first attempt was refused while the run was already on record as succeeded: the alert
    // follows the run, it never holds it.
    assert_eq!(
        last_phase(&fixture.object("daily").await),
        Some(format!("{good_job}/Succeeded"))
    );
    assert_eq!(
        recovered.iter().map(|a| a.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    assert!(
        recovered[1].at - recovered[0].at >= Duration::from_millis(900)
            && recovered[2].at - recovered[1].at >= Duration::from_millis(1900),
        "retries back off: {:?}",
        recovered.iter().map(|a| a.at).collect::<Vec<_>>()
    );
    let file = format!("interactions-{}.csv", good_slot.format("%Y%m%dT%H%M%SZ"));
    for attempt in &recovered {
        let body = attempt.verified(SIGNING_KEY.as_bytes());
        assert_eq!(body["file"], file.as_str());
        assert!(
            body["text"]
                .as_str()
                .is_some_and(|text| text.contains("after a failed run")),
            "{body}"
        );
    }

    // After the operator's restart, nothing is reported again, and a success after a success is
    // no recovery.
    controller.stop().await;
    let controller = start_controller(&fixture, &clock, &store);
    let third_slot = start + TimeDelta::hours(2);
    clock.set(third_slot);
    run_now(&fixture, "third").await;
    let third = job_name(
        "daily",
        third_slot,
        &RunKind::RunNow {
            token: "third".into(),
        },
    );
    // The Job is marked reported after its alert (if any) was queued; then the queue drains.
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(fixture.client.clone(), &fixture.namespace);
    eventually(WAIT, "the third run reported", || async {
        let job = jobs.get(&third).await.ok()?;
        job.metadata
            .annotations?
            .contains_key("exports.crm.dev/reported")
            .then_some(())
    })
    .await;
    assert_eq!(
        last_phase(&fixture.object("daily").await),
        Some(format!("{third}/Succeeded"))
    );
    eventually(WAIT, "no alert left to send", || async {
        (controller.ctx.notifier.backlog() == 0).then_some(())
    })
    .await;
    let about = |event: &str, job: &str| {
        receiver
            .of(event)
            .iter()
            .filter(|request| request.json()["job"] == job)
            .count()
    };
    assert_eq!(about("RunFailed", &failed_job), 1);
    assert_eq!(about("RunRecovered", &good_job), 3);
    assert_eq!(about("RunRecovered", &third), 0);
    assert_eq!(about("RunFailed", &third), 0);
    let metrics = controller.ctx.metrics.encode(clock.now()).expect("metrics");
    assert!(
        metrics.contains("scheduled_exports_webhook_deliveries_total{result=\"dropped\"} 0"),
        "{metrics}"
    );
    assert_no_secret(&receiver.all());

    controller.stop().await;
    fixture.cleanup().await;
}

/// A TCP forwarder to the bed's sshd that can stop and start accepting at the same port: the
/// server going away and coming back with the object's destination unchanged.
struct SwitchableServer {
    port: u16,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

impl SwitchableServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address")
            .port();
        let mut server = Self {
            port,
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

    async fn down(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
            let _ = accepting.await;
        }
    }

    /// The SFTP Secret with knownHosts for this port.
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

fn check_result(object: &ScheduledExport) -> Option<(String, Option<DateTime<Utc>>)> {
    let delivery = object.status.as_ref()?.delivery.as_ref()?;
    Some((
        delivery.last_check_result?.to_string(),
        delivery.last_check_time,
    ))
}

/// Waits for the check at the clock's current instant; returns its result.
async fn check_at(fixture: &Fixture, clock: &ManualClock) -> String {
    let now = clock.now();
    fixture
        .wait_for("daily", "a check at the clock's instant", |o| {
            check_result(o)
                .filter(|(_, checked)| *checked == Some(now))
                .map(|(result, _)| result)
        })
        .await
}

// Multi-threaded: the forwarder must keep running while the export binary blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recopy_and_an_unreachable_server_alert_once_each_and_unsigned_without_a_key() {
    let fixture = Fixture::new("sx-hook-check", 5).await;
    let receiver = Receiver::start().await;
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
    let guard = use_webhook(&fixture, "daily", &receiver.url, None).await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let store = format!("file://{}", artifacts.path().display());
    let output = fixture.export_with_store("daily", &Utc::now().to_rfc3339(), &store);
    assert!(
        output.status.success(),
        "export: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let delivery = fixture
        .object("daily")
        .await
        .status
        .and_then(|status| status.delivery)
        .expect("delivery");
    let file = delivery.file.expect("file");
    let clock =
        ManualClock::new(delivery.delivered_at.expect("deliveredAt") + TimeDelta::seconds(30));
    // The daily slot twelve hours away, so no run starts while the clock moves by minutes.
    let far = clock.now() + TimeDelta::hours(12);
    let time = format!(
        "{:02}:{}",
        far.hour(),
        if far.minute() < 30 { "00" } else { "30" }
    );
    fixture
        .patch_spec("daily", json!({"time": time, "timeZone": "UTC"}))
        .await;
    let controller = start_controller(&fixture, &clock, &store);

    // The customer deletes the file: the check copies it again and says so.
    let local = fixture.local_dir.join(&file);
    std::fs::remove_file(&local).expect("delete the delivered file");
    clock.advance(TimeDelta::minutes(10));
    assert_eq!(check_at(&fixture, &clock).await, "recopied");
    let recopied = receiver.wait_for("FileRecopied", 1, &guard).await;
    let body = recopied[0].json();
    assert_eq!(body["file"], file.as_str());
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|text| text.contains(&file)),
        "{body}"
    );
    assert_eq!(recopied[0].header("x-scheduled-exports-signature"), None);
    assert_eq!(recopied[0].header("x-scheduled-exports-timestamp"), None);

    // The server goes away: said once, however many checks fail.
    server.down().await;
    for _ in 0..3 {
        clock.advance(TimeDelta::minutes(10));
        assert_eq!(check_at(&fixture, &clock).await, "unreachable");
    }
    let unreachable = receiver.wait_for("RecheckUnreachable", 1, &guard).await;
    let body = unreachable[0].json();
    assert_eq!(body["file"], file.as_str());
    assert!(
        body["reason"].is_string() && body["message"].is_string(),
        "{body}"
    );

    // Back: said once too.
    server.up().await;
    clock.advance(TimeDelta::minutes(10));
    assert_eq!(check_at(&fixture, &clock).await, "present");
    receiver.wait_for("RecheckReachable", 1, &guard).await;
    clock.advance(TimeDelta::minutes(10));
    assert_eq!(check_at(&fixture, &clock).await, "present");
    // Alerts are queued as the checks are recorded; once none is left, all have arrived.
    eventually(WAIT, "no alert left to send", || async {
        (controller.ctx.notifier.backlog() == 0).then_some(())
    })
    .await;
    let metrics = controller.ctx.metrics.encode(clock.now()).expect("metrics");
    assert!(
        metrics.contains("scheduled_exports_webhook_deliveries_total{result=\"delivered\"} 3"),
        "{metrics}"
    );
    let events: Vec<String> = receiver.all().iter().map(Received::event).collect();
    assert_eq!(
        events,
        ["FileRecopied", "RecheckUnreachable", "RecheckReachable"],
        "each change once, in order"
    );
    assert_no_secret(&receiver.all());

    controller.stop().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_missing_webhook_secret_shows_in_ready_and_a_bad_name_is_refused_at_admission() {
    let fixture = Fixture::new("sx-hook-secret", 0).await;
    set_notify(fixture.api(), "daily", "no-such-hook").await;
    let clock = ManualClock::new(utc("2026-11-30T15:00:00Z"));
    let store = fixture.artifact_store.clone();
    let controller = start_controller(&fixture, &clock, &store);
    let message = fixture
        .wait_for("daily", "Ready=False", |o| {
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
        message.contains("no-such-hook") && message.contains("spec.notify.webhook.secretRef"),
        "{message}"
    );
    controller.stop().await;

    let refused = fixture
        .api()
        .patch(
            "daily",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"notify": {"webhook": {"secretRef": {"name": "Alerts_Hook"}}}}}),
            ),
        )
        .await
        .expect_err("an invalid Secret name is refused");
    let text = refused.to_string();
    assert!(
        text.contains("notify.webhook.secretRef.name \"Alerts_Hook\" must be a Secret name"),
        "{text}"
    );
    fixture.cleanup().await;
}
