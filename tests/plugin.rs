//! The kubectl plugin as a user types it: the real `kubectl` finds the binary as `kubectl-sx` on
//! the PATH and runs `kubectl sx status|run|next|files` against the test bed, with kubectl's own
//! kubeconfig, context and namespace rules.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::fixture::{Fixture, files_in, load_sample_data};
use common::running::{RunningController, TEST_PERIODS};
use common::*;
use scheduled_exports::clock::ManualClock;
use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings};
use scheduled_exports::resource::RUN_NOW_ANNOTATION;
use scheduled_exports::schedule;
use serde_json::json;

/// A directory holding `kubectl-sx`, a link to the built binary, to put first on the PATH.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_scheduled-exports"),
        dir.path().join("kubectl-sx"),
    )
    .expect("link kubectl-sx");
    dir
}

/// `kubectl sx ARGS` with the test bed's kubeconfig (unless `env` sets another).
fn kubectl_sx(plugins: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let path = format!(
        "{}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::process::Command::new("kubectl")
        .arg("sx")
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", plugins)
        .env("KUBECONFIG", kubeconfig_path())
        .envs(env.iter().cloned())
        .output()
        .expect("run kubectl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn assert_no_secret(output: &Output) {
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    for secret in secret_values() {
        assert!(!all.contains(&secret), "a secret value in the output");
    }
}

/// The cells of a table line (columns are two or more spaces apart).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect()
}

/// The row of `name` in a table.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(cells)
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

/// A kubeconfig like the test bed's whose current context defaults to `namespace`, plus a context
/// `elsewhere` on the same cluster defaulting to `default`.
fn kubeconfig_with_namespace(dir: &Path, namespace: &str) -> PathBuf {
    let original = std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&original).expect("kubeconfig YAML");
    let current = config["current-context"]
        .as_str()
        .expect("current-context")
        .to_string();
    let contexts = config["contexts"].as_sequence_mut().expect("contexts");
    let context = contexts
        .iter_mut()
        .find(|c| c["name"].as_str() == Some(current.as_str()))
        .expect("the current context");
    context["context"]["namespace"] = namespace.into();
    let mut elsewhere = context.clone();
    elsewhere["name"] = "elsewhere".into();
    elsewhere["context"]["namespace"] = "default".into();
    contexts.push(elsewhere);
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML")).expect("write");
    path
}

/// The next `count` 07:00 New York runs after `now`, as `next` prints them.
fn expected_next(now: DateTime<Utc>, count: usize) -> String {
    let zone = schedule::parse_time_zone("America/New_York").expect("zone");
    schedule::runs_after(now, "07:00".parse().expect("time"), zone)
        .take(count)
        .map(|run| format!("{}\n", schedule::format_run_line(run, zone)))
        .collect()
}

#[tokio::test]
async fn status_next_and_files_work_as_a_user_types_them() {
    let fixture = Fixture::new("sx-plugin", 5).await;
    let ns = fixture.namespace.clone();
    let plugins = plugin_dir();

    // Two delivered files: the first picked up (moved into archive/), the second in place.
    let first = fixture.export("daily", "2026-11-29T12:00:00Z");
    assert!(first.status.success(), "{}", text(&first.stderr));
    load_sample_data(&fixture.database_url, 3, 8);
    let second = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(second.status.success(), "{}", text(&second.stderr));
    let archive = fixture.local_dir.join("archive");
    create_sftp_user_dir(&archive);
    std::fs::rename(
        fixture.local_dir.join("interactions-20261129T120000Z.csv"),
        archive.join("interactions-20261129T120000Z.csv"),
    )
    .expect("move the first file");
    std::fs::write(fixture.local_dir.join("notes.csv"), "not an export").expect("foreign file");

    // status: the table, one object.
    let before = Utc::now();
    let output = kubectl_sx(plugins.path(), &["-n", &ns, "status"], &[]);
    let after = Utc::now();
    let table = ok(&output, "status");
    assert_no_secret(&output);
    assert!(table.starts_with("NAME "), "{table}");
    let daily = row(&table, "daily");
    let next_utc = |now| {
        expected_next(now, 1)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        daily[2] == next_utc(before) || daily[2] == next_utc(after),
        "{table}"
    );
    assert_eq!(daily[1], "America/New_York", "{table}");
    assert_eq!(daily[4], "Succeeded", "{table}");
    assert_eq!(daily[5], "interactions-20261130T120000Z.csv", "{table}");
    assert_eq!(daily[6], "3", "{table}");
    assert!(daily[8].ends_with(" ago"), "{table}");
    assert!(
        daily.last().unwrap().contains("Exported=True/Exported"),
        "{table}"
    );

    // status -A: every namespace, each row naming its namespace.
    let output = kubectl_sx(plugins.path(), &["status", "-A"], &[]);
    let table = ok(&output, "status -A");
    assert!(table.starts_with("NAMESPACE "), "{table}");
    assert_eq!(
        row(&table, &ns)[1..3],
        ["daily", "America/New_York"],
        "{table}"
    );

    // status -o json: the same, exactly.
    let output = kubectl_sx(
        plugins.path(),
        &["status", "daily", "-n", &ns, "-o", "json"],
        &[],
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&output, "status -o json")).expect("JSON");
    assert_eq!(json["name"], "daily");
    assert_eq!(json["namespace"], ns.as_str());
    assert_eq!(
        json["lastRun"]["fileName"],
        "interactions-20261130T120000Z.csv"
    );
    assert_eq!(json["lastRun"]["rows"], 3);
    assert_eq!(json["lastRun"]["phase"], "Succeeded");
    assert!(json["lastRun"]["bytes"].as_u64().expect("bytes") > 0);
    let local = json["nextRun"]["local"].as_str().expect("local");
    assert!(
        local.ends_with("T07:00:00-05:00") || local.ends_with("T07:00:00-04:00"),
        "{json}"
    );

    // The namespace comes from the context, as with kubectl; --context and KUBECONFIG count.
    let config_dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kubeconfig_with_namespace(config_dir.path(), &ns);
    let kubeconfig_arg = kubeconfig.display().to_string();
    let output = kubectl_sx(
        plugins.path(),
        &["--kubeconfig", &kubeconfig_arg, "status"],
        &[],
    );
    row(&ok(&output, "status, namespace of the context"), "daily");
    let output = kubectl_sx(
        plugins.path(),
        &["status", "daily", "--context", "elsewhere"],
        &[("KUBECONFIG", kubeconfig_arg.clone())],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("ScheduledExport default/daily not found"),
        "{}",
        text(&output.stderr)
    );
    let output = kubectl_sx(
        plugins.path(),
        &["status", "daily", "--context", "elsewhere", "-n", &ns],
        &[("KUBECONFIG", kubeconfig_arg.clone())],
    );
    row(&ok(&output, "status, --context and -n"), "daily");

    // next: UTC and local, from the schedule (no operator has looked at the object here).
    let before = Utc::now();
    let output = kubectl_sx(
        plugins.path(),
        &["-n", &ns, "next", "daily", "--count", "3"],
        &[],
    );
    let after = Utc::now();
    let lines = ok(&output, "next");
    assert!(
        lines == expected_next(before, 3) || lines == expected_next(after, 3),
        "{lines}"
    );

    // files: the object's files and where they are; the listing changes nothing.
    let listed_before = (files_in(&fixture.local_dir), files_in(&archive));
    let output = kubectl_sx(plugins.path(), &["-n", &ns, "files", "daily"], &[]);
    let table = ok(&output, "files");
    assert_no_secret(&output);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert_eq!(
        cells(table.lines().next().unwrap()),
        ["NAME", "SIZE", "AGE", "WHERE", "RECORDED"]
    );
    let moved = row(&table, "interactions-20261129T120000Z.csv");
    assert_eq!(moved[3..], ["moved to archive/", "yes"], "{table}");
    let in_place = row(&table, "interactions-20261130T120000Z.csv");
    assert_eq!(in_place[3..], ["in place", "yes"], "{table}");
    assert!(!table.contains("notes.csv"), "{table}");
    assert_eq!(
        (files_in(&fixture.local_dir), files_in(&archive)),
        listed_before,
        "files is read-only"
    );

    // run without --wait: a fresh token in the run-now annotation, every time.
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let output = kubectl_sx(plugins.path(), &["-n", &ns, "run", "daily"], &[]);
        ok(&output, "run");
        let object = fixture.object("daily").await;
        let token = object
            .metadata
            .annotations
            .and_then(|a| a.get(RUN_NOW_ANNOTATION).cloned())
            .expect("run-now annotation");
        assert!(
            text(&output.stderr).contains(&token),
            "{}",
            text(&output.stderr)
        );
        tokens.push(token);
    }
    assert_ne!(tokens[0], tokens[1], "each run gets a fresh token");

    // --help on each command, and the exit statuses of the binary's other commands.
    for command in [
        vec![],
        vec!["status"],
        vec!["run"],
        vec!["next"],
        vec!["files"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let output = kubectl_sx(plugins.path(), &args, &[]);
        let help = ok(&output, "--help");
        let usage = format!("Usage: kubectl sx {}", command.join(" "));
        assert!(help.contains(usage.trim_end()), "{command:?}: {help}");
    }
    for (args, code, says) in [
        (
            vec!["-n", ns.as_str(), "status", "nosuch"],
            2,
            "nosuch not found",
        ),
        (
            vec!["-n", ns.as_str(), "files", "nosuch"],
            2,
            "nosuch not found",
        ),
        (vec!["frobnicate"], 2, "frobnicate"),
        (vec!["next", "daily", "--count", "0"], 2, "0"),
        (
            vec!["--kubeconfig", "/nonexistent/kubeconfig", "status"],
            1,
            "/nonexistent/kubeconfig",
        ),
    ] {
        let output = kubectl_sx(plugins.path(), &args, &[]);
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    fixture.cleanup().await;
}

/// The controller for one test namespace on a manual clock; failed runs are not retried, so a
/// failing run ends at once.
fn start_controller(fixture: &Fixture, clock: &ManualClock) -> RunningController {
    let mut job = export_job_settings(&fixture.artifact_store);
    job.backoff_limit = 0;
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job,
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            ..DeliverySettings::default()
        },
        instance: "tests".to_string(),
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

/// `kubectl sx ARGS` on a blocking thread, so the controller in this process keeps running.
async fn kubectl_sx_async(plugins: &Path, args: Vec<String>) -> Output {
    let plugins = plugins.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl_sx(&plugins, &args, &[])
    })
    .await
    .expect("kubectl thread")
}

#[tokio::test]
async fn run_wait_prints_the_delivered_file_and_exits_1_when_the_run_fails() {
    let fixture = Fixture::new("sx-plugin-run", 5).await;
    let ns = fixture.namespace.clone();
    let plugins = plugin_dir();
    let clock = ManualClock::new(utc("2026-11-30T15:00:00Z")); // 10:00 in New York
    let controller = start_controller(&fixture, &clock);
    let run = || {
        let args = ["-n", &ns, "run", "daily", "--wait", "--timeout", "3m"]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
        kubectl_sx_async(plugins.path(), args)
    };

    // The run-now file is named after the operator's clock at the trigger.
    let output = run().await;
    let printed = ok(&output, "run --wait");
    assert_no_secret(&output);
    let words: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(
        words[..3],
        ["interactions-20261130T150000Z.csv", "5", "rows"],
        "{printed}"
    );
    assert_eq!(
        files_in(&fixture.local_dir),
        ["interactions-20261130T150000Z.csv"]
    );
    let bytes = std::fs::metadata(fixture.local_dir.join("interactions-20261130T150000Z.csv"))
        .expect("delivered file")
        .len();
    assert_eq!(
        words[3..],
        [bytes.to_string().as_str(), "bytes"],
        "{printed}"
    );

    // With the operator running, status shows its next run (tomorrow 07:00 New York by its clock).
    fixture
        .wait_for("daily", "the operator's next run", |o| {
            o.status.as_ref()?.next_run_time.map(|_| ())
        })
        .await;
    let output = kubectl_sx_async(
        plugins.path(),
        vec!["-n".into(), ns.clone(), "status".into()],
    )
    .await;
    let table = ok(&output, "status");
    let daily = row(&table, "daily");
    assert_eq!(
        daily[2..6],
        [
            "2026-12-01T12:00:00Z",
            "2026-12-01T07:00:00-05:00",
            "Succeeded",
            "interactions-20261130T150000Z.csv"
        ],
        "{table}"
    );

    // A run that fails (its directory is gone) ends --wait with exit status 1 and the reason.
    clock.set(utc("2026-11-30T15:10:00Z"));
    let missing = format!("{}-missing", fixture.remote_dir);
    fixture
        .patch_spec(
            "daily",
            json!({"destination": {"sftp": {"directory": missing}}}),
        )
        .await;
    let output = run().await;
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("error: the run failed: "), "{err}");
    assert!(err.contains(&missing), "{err}");
    assert!(text(&output.stdout).is_empty(), "{}", text(&output.stdout));
    assert_no_secret(&output);

    controller.stop().await;

    // Without an operator, --wait gives up at its deadline with exit status 1.
    let output = kubectl_sx_async(
        plugins.path(),
        ["-n", &ns, "run", "daily", "--wait", "--timeout", "3s"]
            .iter()
            .map(|arg| arg.to_string())
            .collect(),
    )
    .await;
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("did not end within 3s"), "{err}");
    fixture.cleanup().await;
}
