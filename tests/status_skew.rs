//! Status shared by writers of different versions, on the real API server: fields this version
//! does not know, written by a newer writer, survive every status write of this version (an
//! export run, a controller write), and each writer shows up under its own field manager.

mod common;

use common::fixture::Fixture;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use scheduled_exports::adapters::kubernetes::status::{StatusWriter, update_status};
use scheduled_exports::resource::ScheduledExport;
use serde_json::json;

fn raw_api(fixture: &Fixture) -> Api<DynamicObject> {
    Api::namespaced_with(
        fixture.client.clone(),
        &fixture.namespace,
        &ApiResource::erase::<ScheduledExport>(&()),
    )
}

#[tokio::test]
async fn fields_of_a_newer_version_survive_the_writes_of_this_one() {
    let fixture = Fixture::new("sx-skew", 5).await;
    // A newer writer records fields this version has no type for, at the top and inside lastRun.
    let newer = PatchParams {
        field_manager: Some("scheduled-exports-from-the-future".into()),
        ..PatchParams::default()
    };
    raw_api(&fixture)
        .patch_status(
            "daily",
            &newer,
            &Patch::Merge(json!({"status": {
                "fromNewerVersion": {"note": "kept"},
                "lastRun": {"fromNewerVersion": "kept"},
            }})),
        )
        .await
        .expect("a newer writer's status patch");

    // This version's export writes status twice (started, delivered); the controller's writer once.
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(
        output.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = update_status(
        &fixture.api(),
        StatusWriter::Controller,
        "daily",
        |current| {
            let mut status = current.clone();
            status.time_zone = Some("UTC".into());
            status
        },
    )
    .await
    .expect("a controller status write");
    assert!(written, "the controller's change was written");

    let object = raw_api(&fixture).get_status("daily").await.expect("status");
    let status = &object.data["status"];
    assert_eq!(status["lastRun"]["phase"], "Succeeded", "{status}");
    assert_eq!(status["timeZone"], "UTC", "{status}");
    assert_eq!(
        status["fromNewerVersion"]["note"], "kept",
        "a top-level field of another version survives: {status}"
    );
    assert_eq!(
        status["lastRun"]["fromNewerVersion"], "kept",
        "a nested field of another version survives: {status}"
    );
    let managers: Vec<String> = object
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry.subresource.as_deref() == Some("status"))
        .filter_map(|entry| entry.manager)
        .collect();
    for manager in [
        "scheduled-exports-export",
        "scheduled-exports-controller",
        "scheduled-exports-from-the-future",
    ] {
        assert!(
            managers.iter().any(|m| m == manager),
            "{manager} in {managers:?}"
        );
    }
    fixture.cleanup().await;
}
