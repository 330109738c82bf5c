//! The resource on a real API server: the CRD is accepted and Established, examples apply, invalid
//! objects are refused at admission with a message naming the field, defaults appear on read, and
//! `kubectl get` / `kubectl explain` show what the contract promises.

mod common;

use std::time::Duration;

use common::*;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use scheduled_exports::resource::{LineTerminator, ScheduledExport};
use serde_json::{Value, json};

fn set(object: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    object
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent exists")
        .insert(key.to_string(), value);
}

fn remove(object: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    object
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent exists")
        .remove(key);
}

async fn create_raw(client: &kube::Client, namespace: &str, object: &Value) -> Result<(), String> {
    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), namespace);
    let object: ScheduledExport = match serde_json::from_value(object.clone()) {
        Ok(object) => object,
        // Some invalid objects cannot even be typed (a string port); send them untyped.
        Err(_) => {
            let resource = kube::discovery::ApiResource::erase::<ScheduledExport>(&());
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let object: DynamicObject = serde_json::from_value(object.clone()).expect("object");
            return api
                .create(&PostParams::default(), &object)
                .await
                .map(|_| ())
                .map_err(|err| err.to_string());
        }
    };
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|err| err.to_string())
}

#[tokio::test]
async fn invalid_objects_are_refused_at_admission_with_the_field_named() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, "sx-invalid").await;

    // (case, JSON pointer, new value or None to remove, words the message must contain)
    let cases: Vec<(&str, &str, Option<Value>, &[&str])> = vec![
        (
            "time off the 30-minute step",
            "/spec/time",
            Some(json!("07:15")),
            &["spec.time", "30-minute step"],
        ),
        (
            "time 24:00",
            "/spec/time",
            Some(json!("24:00")),
            &["spec.time", "HH:MM"],
        ),
        (
            "time without leading zero",
            "/spec/time",
            Some(json!("7:00")),
            &["spec.time", "HH:MM"],
        ),
        (
            "time with seconds",
            "/spec/time",
            Some(json!("07:00:00")),
            &["spec.time", "HH:MM"],
        ),
        (
            "time missing",
            "/spec/time",
            None,
            &["spec.time", "Required"],
        ),
        (
            "unknown time zone",
            "/spec/timeZone",
            Some(json!("Mars/Olympus")),
            &["spec.timeZone", "IANA"],
        ),
        (
            "time zone in the wrong case",
            "/spec/timeZone",
            Some(json!("america/new_york")),
            &["spec.timeZone", "IANA"],
        ),
        (
            "empty time zone",
            "/spec/timeZone",
            Some(json!("")),
            &["spec.timeZone"],
        ),
        (
            "port zero",
            "/spec/destination/sftp/port",
            Some(json!(0)),
            &["spec.destination.sftp.port", "greater than or equal to 1"],
        ),
        (
            "port above 65535",
            "/spec/destination/sftp/port",
            Some(json!(70000)),
            &["spec.destination.sftp.port", "less than or equal to 65535"],
        ),
        (
            "relative directory",
            "/spec/destination/sftp/directory",
            Some(json!("exports")),
            &["spec.destination.sftp.directory", "absolute path"],
        ),
        (
            "directory with ..",
            "/spec/destination/sftp/directory",
            Some(json!("/exports/../etc")),
            &["spec.destination.sftp.directory", ".."],
        ),
        (
            "directory ending in ..",
            "/spec/destination/sftp/directory",
            Some(json!("/exports/..")),
            &["spec.destination.sftp.directory", ".."],
        ),
        (
            "unknown file type",
            "/spec/fileType",
            Some(json!("donations")),
            &["spec.fileType", "interactions", "proposals"],
        ),
        (
            "recheck interval under a minute",
            "/spec/recheckInterval",
            Some(json!("30s")),
            &["spec.recheckInterval", "at least 1m"],
        ),
        (
            "recheck interval not a duration",
            "/spec/recheckInterval",
            Some(json!("ten minutes")),
            &["spec.recheckInterval", "duration"],
        ),
        (
            "retention of zero days",
            "/spec/retentionDays",
            Some(json!(0)),
            &["spec.retentionDays", "greater than or equal to 1"],
        ),
        (
            "negative retention",
            "/spec/retentionDays",
            Some(json!(-5)),
            &["spec.retentionDays"],
        ),
        (
            "unknown line terminator",
            "/spec/csv",
            Some(json!({"lineTerminator": "CR"})),
            &["spec.csv.lineTerminator", "CRLF"],
        ),
        (
            "database secret without a name",
            "/spec/source/secretRef/name",
            Some(json!("")),
            &["spec.source.secretRef.name"],
        ),
        (
            "SFTP secret missing",
            "/spec/destination/sftp/secretRef",
            None,
            &["spec.destination.sftp.secretRef", "Required"],
        ),
        (
            "SFTP host empty",
            "/spec/destination/sftp/host",
            Some(json!("")),
            &["spec.destination.sftp.host"],
        ),
    ];
    assert!(cases.len() >= 12);

    let mut failures = Vec::new();
    for (index, (case, pointer, value, expected)) in cases.iter().enumerate() {
        let mut object = valid_object(&format!("invalid-{index}"));
        match value {
            Some(value) => set(&mut object, pointer, value.clone()),
            None => remove(&mut object, pointer),
        }
        match create_raw(&client, &namespace, &object).await {
            Ok(()) => failures.push(format!("{case}: was accepted")),
            Err(message) => {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|word| !message.contains(*word))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!("{case}: message lacks {missing:?}: {message}"));
                }
            }
        }
    }
    delete_namespace(&client, &namespace).await;
    assert!(
        failures.is_empty(),
        "admission did not refuse as expected:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn file_type_cannot_change_after_creation() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, "sx-immutable").await;
    create_raw(&client, &namespace, &valid_object("immutable"))
        .await
        .expect("valid object is accepted");

    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), &namespace);
    let patch = json!({"spec": {"fileType": "proposals"}});
    let err = api
        .patch("immutable", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("changing fileType is refused");
    let message = err.to_string();
    assert!(
        message.contains("spec.fileType") && message.contains("immutable"),
        "{message}"
    );

    // Other fields stay editable.
    let patch = json!({"spec": {"time": "18:30", "timeZone": "Europe/Berlin"}});
    let edited = api
        .patch("immutable", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("time and timeZone are editable");
    assert_eq!(edited.spec.time, "18:30");
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn defaults_appear_on_read() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, "sx-defaults").await;
    let mut object = valid_object("defaults");
    remove(&mut object, "/spec/timeZone");
    create_raw(&client, &namespace, &object)
        .await
        .expect("minimal object is accepted");

    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), &namespace);
    let read = api.get("defaults").await.expect("read back");
    assert_eq!(read.spec.recheck_interval, "10m");
    assert_eq!(read.spec.retention_days, 90);
    assert!(!read.spec.suspend);
    assert_eq!(read.spec.destination.sftp.port, 22);
    assert_eq!(read.spec.destination.sftp.directory, "/exports");
    assert_eq!(read.spec.csv.line_terminator, LineTerminator::Crlf);
    assert_eq!(
        read.spec.time_zone, None,
        "timeZone has no schema default: the operator's default applies"
    );

    // The stored object carries the defaults, so a GitOps diff against them shows no drift.
    let raw = kubectl(&["get", "sx", "defaults", "-n", &namespace, "-o", "json"]);
    assert!(raw.0, "{}", raw.2);
    let stored: Value = serde_json::from_str(&raw.1).expect("json");
    assert_eq!(
        stored["spec"]["csv"],
        json!({"lineTerminator": "CRLF", "byteOrderMark": false, "escapeFormulas": false})
    );
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn every_example_applies() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, "sx-examples").await;
    let mut applied = 0;
    let mut entries: Vec<_> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("read example");
        if !text.contains("kind: ScheduledExport") {
            continue;
        }
        let (ok, stdout, stderr) = kubectl(&[
            "apply",
            "-n",
            &namespace,
            "-f",
            path.to_str().expect("utf-8 path"),
        ]);
        assert!(ok, "{} did not apply: {stderr}", path.display());
        assert!(
            stdout.contains("scheduledexport.exports.crm.dev/"),
            "{stdout}"
        );
        applied += 1;
    }
    assert!(
        applied >= 3,
        "expected at least three ScheduledExport examples, applied {applied}"
    );
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns_and_short_name() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, "sx-columns").await;
    create_raw(&client, &namespace, &valid_object("columns"))
        .await
        .expect("accepted");

    // Status as the operator would write it, through the status subresource.
    let resource = kube::discovery::ApiResource::erase::<ScheduledExport>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let status = json!({"status": {
        "timeZone": "America/New_York",
        "nextRunTime": "2026-12-01T12:00:00Z",
        "nextRunLocal": "2026-12-01T07:00:00-05:00",
        "delivery": {"file": "interactions-20261130T120000Z.csv", "deliveredAt": "2026-11-30T12:00:05Z", "recopies": 0},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled", "message": "next run at 2026-12-01T07:00:00-05:00", "lastTransitionTime": "2026-11-30T12:00:05Z"}]
    }});
    api.patch_status("columns", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status subresource accepts the status");

    let (ok, stdout, stderr) = kubectl(&["get", "sx", "-n", &namespace]);
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("header")
        .split("  ")
        .map(str::trim)
        .filter(|column| !column.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "FILE TYPE",
            "TIME",
            "TIME ZONE",
            "NEXT RUN",
            "LAST FILE",
            "DELIVERED",
            "READY",
            "AGE"
        ]
    );
    let row = lines.next().expect("one row");
    for value in [
        "columns",
        "interactions",
        "07:00",
        "America/New_York",
        "2026-12-01T07:00:00-05:00",
        "interactions-20261130T120000Z.csv",
        "True",
    ] {
        assert!(row.contains(value), "row lacks {value}: {row}");
    }
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn kubectl_explain_describes_the_fields() {
    let client = client().await;
    install_crd(&client).await;
    // The OpenAPI document is republished shortly after the CRD is Established.
    for (field, words) in [
        ("scheduledexport.spec.time", "30-minute step"),
        ("scheduledexport.spec.timeZone", "IANA time zone"),
        ("scheduledexport.spec.fileType", "Immutable"),
        (
            "scheduledexport.spec.destination.sftp.secretRef",
            "knownHosts",
        ),
        ("scheduledexport.spec.recheckInterval", "at least `1m`"),
        ("scheduledexport.status.watermark", "Opaque"),
        ("sx.spec.csv.escapeFormulas", "OWASP"),
    ] {
        eventually(
            Duration::from_secs(30),
            &format!("kubectl explain {field}"),
            || async move {
                let (ok, stdout, _) = kubectl(&["explain", field]);
                // kubectl wraps long lines; compare with whitespace folded.
                let text = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
                (ok && text.contains(words)).then_some(())
            },
        )
        .await;
    }
}
