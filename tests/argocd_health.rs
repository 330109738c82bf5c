//! The Argo CD health check of `examples/argocd/`: `health.lua` run the way Argo
//! CD runs it (gopher-lua, Lua 5.1, base and table libraries only, the object as `obj`) by the Go
//! harness in `tests/argocd/`, against ScheduledExports whose status comes from the operator's own
//! status code (`plan`, `status`), so field names and condition reasons cannot drift from what the
//! operator writes. Also: the `argocd-cm` snippet embeds the script byte for byte, and the
//! Applications sync with server-side apply.
//!
//! Needs Go (as the test bed does); no test bed. The harness is built into `target/argocd-health/`
//! with `GOFLAGS=-mod=mod`, so Go's build cache makes later runs fast.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use kube::Resource;
use scheduled_exports::operator::plan;
use scheduled_exports::resource::{
    CheckResult, ConditionReason, ConditionType, GROUP, ScheduledExport, ScheduledExportStatus,
};
use scheduled_exports::status::{
    self, ConditionUpdate, DeliveredRun, run_delivered, run_failed, run_started,
};
use serde::Deserialize;

const NOW: &str = "2026-11-30T12:05:00Z";
const FILE: &str = "interactions-20261130T120000Z.csv";
const JOB: &str = "interactions-daily-202612011200";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn health_lua() -> PathBuf {
    repo_root().join("examples/argocd/health.lua")
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("instant")
        .with_timezone(&Utc)
}

/// Builds the harness once per test binary (Go caches the build between runs).
fn harness() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let binary = repo_root().join("target/argocd-health/health-harness");
        let output = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(repo_root().join("tests/argocd"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOWORK", "off")
            .output()
            .unwrap_or_else(|err| panic!("run go (needed to build the Argo CD harness): {err}"));
        assert!(
            output.status.success(),
            "go build tests/argocd failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

/// What the harness printed: Argo CD's health status.
#[derive(Debug)]
struct Health {
    status: String,
    message: String,
}

/// Runs `script` on `object` as Argo CD would; `Err` holds the harness's stderr.
fn run_script(script: &Path, object: &serde_json::Value) -> Result<Health, String> {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    serde_json::to_writer(&mut file, object).expect("write object");
    let output = Command::new(harness())
        .arg(script)
        .arg(file.path())
        .output()
        .expect("run the harness");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let returned: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the harness prints JSON");
    let field = |name: &str| {
        returned[name]
            .as_str()
            .unwrap_or_else(|| panic!("the script returned no string {name}: {returned}"))
            .to_string()
    };
    Ok(Health {
        status: field("status"),
        message: field("message"),
    })
}

fn health(object: &ScheduledExport) -> Health {
    let json = serde_json::to_value(object).expect("serialize object");
    run_script(&health_lua(), &json).unwrap_or_else(|err| panic!("health.lua failed: {err}"))
}

#[track_caller]
fn assert_health(object: &ScheduledExport, status: &str, message_parts: &[&str]) -> Health {
    let health = health(object);
    assert_eq!(
        health.status, status,
        "health status (message: {})",
        health.message
    );
    for part in message_parts {
        assert!(
            health.message.contains(part),
            "the {status} message should contain {part:?}: {}",
            health.message
        );
    }
    health
}

/// The shipped example, as stored: namespace, uid, generation.
fn new_object() -> ScheduledExport {
    let text = std::fs::read_to_string(repo_root().join("examples/interactions-daily.yaml"))
        .expect("read examples/interactions-daily.yaml");
    let mut object: ScheduledExport = serde_yaml::from_str(&text).expect("example parses");
    object.metadata.namespace = Some("univ-example".into());
    object.metadata.uid = Some("0b6f3c7e-uid".into());
    object.metadata.generation = Some(1);
    object
}

/// What the controller writes after it first sees the object: the schedule, the next run, Ready.
fn scheduled(mut object: ScheduledExport) -> ScheduledExport {
    object.status = Some(controller_status(&object, None));
    object
}

/// The controller's status write, through its own planning and merge code; `ready` overrides the
/// Ready condition the way the reconciler does for a missing Secret.
fn controller_status(
    object: &ScheduledExport,
    ready: Option<(bool, ConditionReason, String)>,
) -> ScheduledExportStatus {
    let now = utc(NOW);
    let mut plan = plan::plan(now, object, &[], chrono_tz::UTC, None);
    if let Some(ready) = ready {
        plan.schedule_status.ready = ready;
    }
    let current = object.status.clone().unwrap_or_default();
    plan::merge_status(&current, &plan.schedule_status, &[], now)
}

/// A delivered run of the 07:00 New York slot (12:00Z), as the export writes it.
fn delivered(object: ScheduledExport) -> ScheduledExport {
    let mut object = scheduled(object);
    let generation = object.metadata.generation;
    let run = DeliveredRun {
        slot: utc("2026-11-30T12:00:00Z"),
        job_name: Some("interactions-daily-202611301200".into()),
        started: utc("2026-11-30T12:00:02Z"),
        finished: utc("2026-11-30T12:00:09Z"),
        file_name: FILE.into(),
        rows: 1000,
        bytes: 412_345,
        sha256: "9f2c".repeat(16),
        watermark: "1500:1502:1501".into(),
        window_start: Some("1400:1402:".into()),
        watermark_source: scheduled_exports::resource::WatermarkSource {
            system_identifier: Some("7714411962619384506".into()),
            database: Some("crm".into()),
            database_oid: Some(16384),
        },
        full_export: None,
        destination: "sftp://univ-example@sftp.example.edu:22/exports".into(),
    };
    object.status = Some(run_delivered(
        object.status.as_ref().expect("status"),
        &run,
        generation,
    ));
    object
}

fn with_status(
    mut object: ScheduledExport,
    change: impl FnOnce(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> ScheduledExport {
    let current = object.status.clone().unwrap_or_default();
    object.status = Some(change(&current));
    object
}

/// A delivery recheck outcome, as the checker writes it: `lastCheckResult` and the
/// Delivered condition.
fn checked(
    object: ScheduledExport,
    result: CheckResult,
    delivered_condition: Option<(bool, ConditionReason, &str)>,
) -> ScheduledExport {
    let generation = object.metadata.generation;
    with_status(object, |current| {
        let mut status = current.clone();
        let delivery = status.delivery.as_mut().expect("a delivered file");
        delivery.last_check_time = Some(utc("2026-11-30T12:10:00Z"));
        delivery.last_check_result = Some(result);
        if result == CheckResult::Recopied {
            delivery.recopies += 1;
        }
        if let Some((ok, reason, message)) = delivered_condition {
            status::set_condition(
                &mut status.conditions,
                ConditionUpdate {
                    type_: ConditionType::Delivered,
                    status: ok,
                    reason,
                    message: message.to_string(),
                },
                generation,
                utc("2026-11-30T12:10:00Z"),
            );
        }
        status
    })
}

fn next_run_local(object: &ScheduledExport) -> String {
    object
        .status
        .as_ref()
        .and_then(|status| status.next_run_local.clone())
        .expect("the controller wrote nextRunLocal")
}

#[test]
fn a_new_object_is_progressing_until_the_operator_reports() {
    assert_health(
        &new_object(),
        "Progressing",
        &["Waiting for the operator to schedule"],
    );
}

#[test]
fn an_edit_the_operator_has_not_seen_yet_is_progressing() {
    let mut object = delivered(new_object());
    object.metadata.generation = Some(2);
    object.spec.time = "08:30".into();
    assert_health(
        &object,
        "Progressing",
        &["observe generation 2", "generation 1"],
    );
}

#[test]
fn a_scheduled_object_without_a_file_yet_is_healthy_and_names_its_next_run() {
    let object = scheduled(new_object());
    let next = next_run_local(&object);
    assert_eq!(
        next, "2026-12-01T07:00:00-05:00",
        "07:00 New York tomorrow: 12:05Z is past today's slot"
    );
    let ready = object
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Ready.as_str());
    assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
    assert_health(
        &object,
        "Healthy",
        &[&format!("Next run {next}"), "no file delivered yet"],
    );
}

#[test]
fn a_delivered_file_is_healthy_and_named() {
    let object = delivered(new_object());
    let next = next_run_local(&object);
    assert_health(
        &object,
        "Healthy",
        &[
            &format!("Next run {next}"),
            &format!("last file {FILE}"),
            "present",
            "checked 2026-11-30T12:00:09Z",
        ],
    );
}

#[test]
fn a_running_export_is_progressing() {
    let object = with_status(delivered(new_object()), |current| {
        run_started(
            current,
            utc("2026-12-01T12:00:00Z"),
            Some(JOB.into()),
            utc("2026-12-01T12:00:01Z"),
        )
    });
    assert_health(
        &object,
        "Progressing",
        &["Export running", JOB, "since 2026-12-01T12:00:01Z"],
    );
}

#[test]
fn a_failed_last_run_is_degraded_with_its_reason() {
    let generation = Some(1);
    let object = with_status(delivered(new_object()), |current| {
        let started = run_started(
            current,
            utc("2026-12-01T12:00:00Z"),
            Some(JOB.into()),
            utc("2026-12-01T12:00:01Z"),
        );
        run_failed(
            &started,
            ConditionReason::DatabaseFailed,
            "cannot connect to the database: connection refused",
            generation,
            utc("2026-12-01T12:00:31Z"),
        )
    });
    assert_health(
        &object,
        "Degraded",
        &[
            "Last run failed",
            "Exported is False (DatabaseFailed)",
            "connection refused",
        ],
    );

    // A retry in progress does not hide the failure.
    let retrying = with_status(object, |current| {
        run_started(
            current,
            utc("2026-12-01T12:00:00Z"),
            Some(JOB.into()),
            utc("2026-12-01T12:01:00Z"),
        )
    });
    assert_health(
        &retrying,
        "Degraded",
        &["DatabaseFailed", "a new run is in progress", JOB],
    );
}

#[test]
fn a_missing_secret_is_degraded() {
    let object = scheduled(new_object());
    let message = "Secret crm-database referenced by spec.source.secretRef does not exist in namespace univ-example";
    let missing = ScheduledExport {
        status: Some(controller_status(
            &object,
            Some((false, ConditionReason::SecretNotFound, message.to_string())),
        )),
        ..object
    };
    assert_health(
        &missing,
        "Degraded",
        &["Ready is False (SecretNotFound)", message],
    );
}

#[test]
fn an_unreachable_server_or_a_file_that_could_not_be_recopied_is_degraded() {
    let unreachable = checked(
        delivered(new_object()),
        CheckResult::Unreachable,
        Some((
            false,
            ConditionReason::ServerUnreachable,
            "cannot check interactions-20261130T120000Z.csv: connection refused; checking again next interval",
        )),
    );
    assert_health(
        &unreachable,
        "Degraded",
        &[
            "Delivered is False (ServerUnreachable)",
            "connection refused",
        ],
    );

    let missing = checked(
        delivered(new_object()),
        CheckResult::Missing,
        Some((
            false,
            ConditionReason::RecopyFailed,
            "interactions-20261130T120000Z.csv is gone from the server and could not be copied again: artifact store unreachable",
        )),
    );
    assert_health(
        &missing,
        "Degraded",
        &[
            "Delivered is False (RecopyFailed)",
            "could not be copied again",
        ],
    );

    // lastCheckResult alone, before (or without) a Delivered condition that says so.
    let only_result = checked(delivered(new_object()), CheckResult::Unreachable, None);
    assert_health(&only_result, "Degraded", &[FILE, "unreachable"]);
}

#[test]
fn a_recopied_or_picked_up_file_is_healthy() {
    let recopied = checked(
        delivered(new_object()),
        CheckResult::Recopied,
        Some((true, ConditionReason::Recopied, "copied again")),
    );
    assert_health(
        &recopied,
        "Healthy",
        &[FILE, "copied again from the artifact store", "recopies: 1"],
    );

    let mut moved = checked(
        delivered(new_object()),
        CheckResult::Moved,
        Some((true, ConditionReason::PickedUp, "picked up")),
    );
    let found_at = format!("archive/{FILE}");
    let mut status = serde_json::to_value(moved.status.take()).expect("status");
    status["delivery"]["foundAt"] = serde_json::json!(found_at);
    moved.status = Some(serde_json::from_value(status).expect("status"));
    assert_health(&moved, "Healthy", &["picked up", &found_at]);
}

#[test]
fn a_suspended_object_is_suspended_and_still_says_what_is_wrong() {
    let mut object = new_object();
    object.spec.suspend = true;
    let object = scheduled(object);
    assert_health(&object, "Suspended", &["suspend"]);

    let message = "Secret sftp-credentials referenced by spec.destination.sftp.secretRef does not exist in namespace univ-example";
    let missing = ScheduledExport {
        status: Some(controller_status(
            &object,
            Some((false, ConditionReason::SecretNotFound, message.to_string())),
        )),
        ..object
    };
    assert_health(&missing, "Suspended", &["SecretNotFound", message]);
}

#[test]
fn the_script_uses_only_what_argo_cd_gives_it() {
    let script = std::fs::read_to_string(health_lua()).expect("health.lua");
    let code: String = script
        .lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    for library in [
        "string.", "os.", "io.", "math.", "require", "debug.", "goto ",
    ] {
        assert!(
            !code.contains(library),
            "health.lua uses {library:?}, which Argo CD does not open for argocd-cm scripts"
        );
    }
}

/// The harness is as strict as Argo CD, so a script error or a status Argo CD does not know cannot
/// pass as one of the statuses the tests expect.
#[test]
fn the_harness_rejects_what_argo_cd_rejects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let object = serde_json::json!({"metadata": {"generation": 1}, "spec": {}});

    let unknown = dir.path().join("unknown.lua");
    std::fs::write(
        &unknown,
        "return {status = \"Fine\", message = \"all good\"}\n",
    )
    .unwrap();
    let health = run_script(&unknown, &object).expect("runs");
    assert_eq!(
        (health.status.as_str(), health.message.as_str()),
        ("Unknown", "Lua returned an invalid health status")
    );

    let string_library = dir.path().join("string.lua");
    std::fs::write(
        &string_library,
        "return {status = \"Healthy\", message = string.format(\"%d\", 1)}\n",
    )
    .unwrap();
    let err = run_script(&string_library, &object).expect_err("no string library in Argo CD");
    assert!(err.contains("string"), "{err}");

    let no_table = dir.path().join("none.lua");
    std::fs::write(&no_table, "local x = obj.spec\n").unwrap();
    let err = run_script(&no_table, &object).expect_err("a health script must return a table");
    assert!(err.contains("expect table output"), "{err}");
}

#[test]
fn argocd_cm_embeds_health_lua_byte_for_byte_under_the_resource_key() {
    let path = repo_root().join("examples/argocd/argocd-cm.yaml");
    let text = std::fs::read_to_string(&path).expect("read argocd-cm.yaml");
    let config_map: serde_yaml::Value = serde_yaml::from_str(&text).expect("argocd-cm.yaml parses");
    assert_eq!(config_map["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(config_map["metadata"]["name"].as_str(), Some("argocd-cm"));
    let key = format!(
        "resource.customizations.health.{GROUP}_{}",
        ScheduledExport::kind(&())
    );
    let data = config_map["data"].as_mapping().expect("data");
    assert_eq!(
        data.keys().filter_map(|k| k.as_str()).collect::<Vec<_>>(),
        vec![key.as_str()],
        "argocd-cm.yaml holds exactly the health key of exports.crm.dev/ScheduledExport"
    );
    let embedded = data[key.as_str()].as_str().expect("the script is a string");
    let script = std::fs::read_to_string(health_lua()).expect("read health.lua");
    assert!(
        embedded == script,
        "the Lua in argocd-cm.yaml differs from examples/argocd/health.lua; re-embed it (indent \
         health.lua by four spaces under the `|` block)"
    );

    // And what Argo CD would run from the ConfigMap behaves as health.lua does.
    let dir = tempfile::tempdir().expect("temp dir");
    let from_cm = dir.path().join("from-argocd-cm.lua");
    std::fs::write(&from_cm, embedded).unwrap();
    let object = serde_json::to_value(delivered(new_object())).unwrap();
    let health = run_script(&from_cm, &object).expect("runs");
    assert_eq!(health.status, "Healthy", "{}", health.message);
}

/// Every Application document in `file`.
fn applications(file: &str) -> Vec<serde_yaml::Value> {
    let path = repo_root().join("examples/argocd").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).expect("YAML document"))
        .filter(|document| !document.is_null())
        .collect();
    assert!(!documents.is_empty(), "{file} holds no document");
    for document in &documents {
        assert_eq!(
            document["apiVersion"].as_str(),
            Some("argoproj.io/v1alpha1")
        );
        assert_eq!(document["kind"].as_str(), Some("Application"));
        let options: Vec<&str> = document["spec"]["syncPolicy"]["syncOptions"]
            .as_sequence()
            .expect("syncOptions")
            .iter()
            .filter_map(|option| option.as_str())
            .collect();
        assert!(
            options.contains(&"ServerSideApply=true"),
            "{file}: sync with server-side apply, so the operator's status and the schema's \
             defaults are never drift: {options:?}"
        );
        assert_eq!(
            document["metadata"]["annotations"]["argocd.argoproj.io/compare-options"].as_str(),
            Some("ServerSideDiff=true"),
            "{file}: diff server-side, so schema defaults are not shown as drift"
        );
        assert!(
            document["spec"]["destination"]["namespace"]
                .as_str()
                .is_some(),
            "{file}: ScheduledExports are namespaced; the Application names the namespace"
        );
    }
    documents
}

#[test]
fn the_directory_application_syncs_scheduled_exports_with_server_side_apply() {
    let apps = applications("application.yaml");
    let source = &apps[0]["spec"]["source"];
    assert!(
        source["directory"].is_mapping(),
        "a plain directory of manifests"
    );
    assert_eq!(
        source["directory"]["recurse"].as_bool(),
        Some(false),
        "only the directory itself, as examples/ keeps non-manifests below it"
    );
}

#[test]
fn the_helm_application_installs_this_repositorys_chart() {
    let apps = applications("application-helm.yaml");
    let sources = apps[0]["spec"]["sources"].as_sequence().expect("sources");
    let chart = sources
        .iter()
        .find(|source| source["helm"].is_mapping())
        .expect("a Helm source");
    let path = chart["path"].as_str().expect("chart path");
    assert_eq!(path, "charts/scheduled-exports");
    assert!(
        repo_root().join(path).join("Chart.yaml").is_file(),
        "{path}/Chart.yaml does not exist"
    );
    let values: Vec<&str> = chart["helm"]["valueFiles"]
        .as_sequence()
        .expect("valueFiles")
        .iter()
        .filter_map(|file| file.as_str())
        .collect();
    let reference = sources
        .iter()
        .find_map(|source| source["ref"].as_str())
        .expect("a values source with ref");
    assert!(
        values
            .iter()
            .all(|file| file.starts_with(&format!("${reference}/"))),
        "value files come from the institution's config repository: {values:?}"
    );
}
