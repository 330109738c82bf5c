use super::*;
use serde_json::json;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn object(spec: serde_json::Value, status: serde_json::Value) -> ScheduledExport {
    let mut full_spec = json!({
        "fileType": "interactions", "time": "07:00", "timeZone": "America/New_York",
        "source": {"secretRef": {"name": "db"}},
        "destination": {"sftp": {"host": "h", "username": "u", "secretRef": {"name": "s"}}}
    });
    for (key, value) in spec.as_object().unwrap() {
        full_spec[key] = value.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "exports.crm.dev/v1alpha1",
        "kind": "ScheduledExport",
        "metadata": {"name": "daily", "namespace": "univ", "generation": 2},
        "spec": full_spec,
        "status": status
    }))
    .unwrap()
}

const NOW: &str = "2026-11-30T15:00:00Z"; // 10:00 in New York

fn delivered_status() -> serde_json::Value {
    json!({
        "observedGeneration": 2,
        "timeZone": "America/New_York",
        "nextRunTime": "2026-12-01T12:00:00Z",
        "lastRun": {
            "slot": "2026-11-30T12:00:00Z", "jobName": "daily-202611301200", "phase": "Succeeded",
            "startTime": "2026-11-30T12:00:05Z", "finishTime": "2026-11-30T12:00:10Z",
            "fileName": "interactions-20261130T120000Z.csv", "rows": 5, "bytes": 2048
        },
        "delivery": {
            "file": "interactions-20261130T120000Z.csv", "deliveredAt": "2026-11-30T12:00:10Z",
            "lastCheckTime": "2026-11-30T14:50:00Z", "lastCheckResult": "moved",
            "foundAt": "archive/interactions-20261130T120000Z.csv", "recopies": 1
        },
        "retention": {"lastPruneTime": "2026-11-30T13:00:00Z", "filesDeleted": 3,
                      "lastAttemptTime": "2026-11-30T13:00:00Z"},
        "deliveredFiles": [
            {"name": "interactions-20261130T120000Z.csv", "bytes": 2048, "sha256": "ab"}
        ],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Scheduled", "message": "next run",
             "lastTransitionTime": "2026-11-30T12:00:00Z"},
            {"type": "Delivered", "status": "False", "reason": "ServerUnreachable",
             "message": "connection to h:22 refused:\n check the port",
             "lastTransitionTime": "2026-11-30T14:50:00Z"}
        ]
    })
}

#[test]
fn the_status_table_shows_every_part_on_one_line_and_failing_conditions_below() {
    let now = utc(NOW);
    let summary = summarize(&object(json!({}), delivered_status()), now);
    let text = status_table(&[summary], now, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        cells(lines[0]),
        [
            "NAME",
            "ZONE",
            "NEXT RUN (UTC)",
            "NEXT RUN (LOCAL)",
            "LAST RUN",
            "FILE",
            "ROWS",
            "BYTES",
            "WHEN",
            "DELIVERY",
            "RETENTION",
            "CONDITIONS"
        ]
    );
    let cells: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "daily",
            "America/New_York",
            "2026-12-01T12:00:00Z",
            "2026-12-01T07:00:00-05:00",
            "Succeeded",
            "interactions-20261130T120000Z.csv",
            "5",
            "2.0KiB",
            "2h ago",
            "moved 10m ago at archive/interactions-20261130T120000Z.csv, 1 recopies",
            "3 deleted 2h ago",
            "Ready=True/Scheduled,Delivered=False/ServerUnreachable"
        ]
    );
    assert_eq!(
        lines[2],
        "daily: Delivered=False ServerUnreachable: connection to h:22 refused: check the port"
    );
    // Columns line up: every cell of a column starts where its header does.
    let file_column = lines[0].find("FILE").unwrap();
    assert_eq!(lines[1].find("interactions-"), Some(file_column));
}

#[test]
fn an_object_the_operator_has_not_seen_shows_dashes_and_the_schedule_s_next_run() {
    let now = utc(NOW);
    let summary = summarize(&object(json!({}), json!(null)), now);
    assert_eq!(
        summary.next_run,
        Some(NextRun {
            utc: utc("2026-12-01T12:00:00Z"),
            local: "2026-12-01T07:00:00-05:00".into()
        })
    );
    let text = status_table(&[summary], now, false);
    let mut expected = vec![
        "daily",
        "America/New_York",
        "2026-12-01T12:00:00Z",
        "2026-12-01T07:00:00-05:00",
    ];
    expected.extend(["-"; 8]);
    assert_eq!(cells(text.lines().nth(1).unwrap()), expected, "{text}");
}

fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect()
}

#[test]
fn a_suspended_object_says_so_instead_of_a_next_run() {
    let now = utc(NOW);
    let summary = summarize(&object(json!({"suspend": true}), json!({})), now);
    assert_eq!(summary.next_run, None);
    let text = status_table(&[summary], now, false);
    assert_eq!(
        cells(text.lines().nth(1).unwrap())[2..4],
        ["suspended", "-"],
        "{text}"
    );
}

#[test]
fn the_json_holds_the_status_parts_with_exact_numbers() {
    let now = utc(NOW);
    let summary = summarize(&object(json!({}), delivered_status()), now);
    let value = serde_json::to_value(&summary).unwrap();
    assert_eq!(value["name"], "daily");
    assert_eq!(value["namespace"], "univ");
    assert_eq!(value["nextRun"]["utc"], "2026-12-01T12:00:00Z");
    assert_eq!(value["nextRun"]["local"], "2026-12-01T07:00:00-05:00");
    assert_eq!(value["lastRun"]["bytes"], 2048);
    assert_eq!(value["lastRun"]["phase"], "Succeeded");
    assert_eq!(value["delivery"]["lastCheckResult"], "moved");
    assert_eq!(value["retention"]["filesDeleted"], 3);
    assert_eq!(value["conditions"][1]["reason"], "ServerUnreachable");
}

#[test]
fn next_runs_start_at_the_operator_s_next_run_then_follow_the_schedule() {
    let now = utc(NOW);
    // The operator knows today's 07:00 ran; a spec edit to 12:00 (generation 2) runs tomorrow.
    let status = json!({"observedGeneration": 2, "nextRunTime": "2026-12-01T17:00:00Z"});
    let runs = next_runs(&object(json!({"time": "12:00"}), status), now, 3).unwrap();
    assert_eq!(
        next_lines(&runs),
        "2026-12-01T17:00:00Z 2026-12-01T12:00:00-05:00\n\
         2026-12-02T17:00:00Z 2026-12-02T12:00:00-05:00\n\
         2026-12-03T17:00:00Z 2026-12-03T12:00:00-05:00\n"
    );
    // A status of an older generation says nothing of the current spec: the schedule decides.
    let stale = json!({"observedGeneration": 1, "nextRunTime": "2026-12-01T12:00:00Z"});
    let runs = next_runs(&object(json!({"time": "12:00"}), stale), now, 1).unwrap();
    assert_eq!(runs[0].utc, utc("2026-11-30T17:00:00Z"));
}

#[test]
fn next_runs_cross_daylight_saving_in_the_object_s_zone() {
    let now = utc("2026-03-06T12:00:00Z");
    let runs = next_runs(&object(json!({"time": "02:30"}), json!(null)), now, 3).unwrap();
    assert_eq!(
        next_lines(&runs),
        "2026-03-07T07:30:00Z 2026-03-07T02:30:00-05:00\n\
         2026-03-08T07:30:00Z 2026-03-08T03:30:00-04:00\n\
         2026-03-09T06:30:00Z 2026-03-09T02:30:00-04:00\n"
    );
}

#[test]
fn next_runs_need_a_known_zone() {
    let now = utc(NOW);
    let mut no_zone = object(json!({}), json!(null));
    no_zone.spec.time_zone = None;
    assert_eq!(
        next_runs(&no_zone, now, 1),
        Err(NextRunsError::ZoneUnknown {
            name: "daily".into()
        })
    );
    // The operator reports its default zone in status.
    no_zone.status = Some(serde_json::from_value(json!({"timeZone": "Europe/Berlin"})).unwrap());
    let runs = next_runs(&no_zone, now, 1).unwrap();
    assert_eq!(runs[0].local, "2026-12-01T07:00:00+01:00");
}

#[test]
fn files_are_the_object_s_names_in_place_or_moved_and_recorded_when_it_delivered_them() {
    let now = utc(NOW);
    let object = object(json!({}), delivered_status());
    let found = [
        FoundFile {
            relative: "interactions-20261130T120000Z.csv",
            bytes: 2048,
            modified: Some(utc("2026-11-30T12:00:10Z").timestamp()),
        },
        FoundFile {
            relative: "archive/2026/interactions-20261129T120000Z.csv",
            bytes: 10,
            modified: None,
        },
        FoundFile {
            relative: "proposals-20261130T120000Z.csv",
            bytes: 1,
            modified: None,
        },
        FoundFile {
            relative: "notes.csv",
            bytes: 1,
            modified: None,
        },
    ];
    let entries = file_entries(&object, &found);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].location, Location::Moved("archive/2026/".into()));
    assert!(!entries[0].recorded);
    // Without a modification time, the age is the slot's.
    assert_eq!(entries[0].modified, Some(utc("2026-11-29T12:00:00Z")));
    assert_eq!(entries[1].location, Location::InPlace);
    assert!(entries[1].recorded);
    assert_eq!(
        files_table(&entries, now),
        "NAME                               SIZE    AGE  WHERE                   RECORDED\n\
         interactions-20261129T120000Z.csv  10B     27h  moved to archive/2026/  no\n\
         interactions-20261130T120000Z.csv  2.0KiB  2h   in place                yes\n"
    );
    let json = serde_json::to_value(&entries).unwrap();
    assert_eq!(
        json[0]["location"],
        json!({"kind": "moved", "directory": "archive/2026/"})
    );
    assert_eq!(json[1]["location"], json!({"kind": "inPlace"}));
}

#[test]
fn ages_use_the_largest_fitting_unit() {
    let now = utc(NOW);
    let ago = |seconds: i64| age(now, now - chrono::Duration::seconds(seconds));
    assert_eq!(ago(0), "0s");
    assert_eq!(ago(119), "119s");
    assert_eq!(ago(120), "2m");
    assert_eq!(ago(7_199), "119m");
    assert_eq!(ago(7_200), "2h");
    assert_eq!(ago(172_800), "2d");
    // A clock behind the server's never shows a negative age.
    assert_eq!(ago(-30), "0s");
}

#[test]
fn all_namespaces_adds_a_namespace_column_and_names_objects_with_it() {
    let now = utc(NOW);
    let summary = summarize(&object(json!({}), delivered_status()), now);
    let text = status_table(&[summary], now, true);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(cells(lines[0])[..2], ["NAMESPACE", "NAME"]);
    assert_eq!(cells(lines[1])[..2], ["univ", "daily"]);
    assert!(
        lines[2].starts_with("univ/daily: Delivered=False"),
        "{text}"
    );
}
