//! The one way status is written, by the controller, the export Jobs and the checker alike: read
//! the object, compute the new status from the one just read, and send a merge patch of exactly
//! the fields that changed, under the writer's own field manager and with the resourceVersion
//! read as a precondition.
//!
//! The patch keeps fields this version does not know (a Job of an older image never drops what a
//! newer controller wrote); the precondition keeps writers from losing each other's updates: a
//! conflict means another writer got there first, and the update is recomputed on its result.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::resource::{ScheduledExport, ScheduledExportStatus};
use crate::status::patch::merge_patch;

const ATTEMPTS: usize = 8;

/// Who writes status. Each has its own field manager, so `managedFields` tell who set what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWriter {
    /// The reconcile loop: the schedule, the next run, Ready, and the Jobs it observes.
    Controller,
    /// An export Job: its run, the watermark, the delivered file, Exported and Delivered.
    Export,
    /// The delivery checker: rechecks, recopies, retention, and Delivered.
    Checker,
}

impl StatusWriter {
    pub fn field_manager(self) -> &'static str {
        match self {
            StatusWriter::Controller => "scheduled-exports-controller",
            StatusWriter::Export => "scheduled-exports-export",
            StatusWriter::Checker => "scheduled-exports-checker",
        }
    }
}

/// Returns whether the status changed (an identical status is not written, so the controller
/// does not wake itself up).
pub async fn update_status(
    api: &Api<ScheduledExport>,
    writer: StatusWriter,
    name: &str,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, kube::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let object = api.get_status(name).await?;
        match patch_once(api, writer, &object, &update).await {
            Err(kube::Error::Api(response)) if response.code == 409 && attempt < ATTEMPTS => {}
            written => return written,
        }
    }
}

/// `update_status` starting from an object already in hand (the controller's cache): no request
/// at all when the status would not change, one patch at that object's resourceVersion
/// otherwise, and the read-compute-patch loop only after a conflict.
pub async fn update_status_from(
    api: &Api<ScheduledExport>,
    writer: StatusWriter,
    object: &ScheduledExport,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, kube::Error> {
    match patch_once(api, writer, object, &update).await {
        Err(kube::Error::Api(response)) if response.code == 409 => {
            let name = object.metadata.name.clone().unwrap_or_default();
            update_status(api, writer, &name, update).await
        }
        written => written,
    }
}

async fn patch_once(
    api: &Api<ScheduledExport>,
    writer: StatusWriter,
    object: &ScheduledExport,
    update: &impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, kube::Error> {
    let current = object.status.clone().unwrap_or_default();
    let desired = update(&current);
    let Some(changes) = merge_patch(&to_json(&current), &to_json(&desired)) else {
        return Ok(false);
    };
    let name = object.metadata.name.clone().unwrap_or_default();
    let body = json!({
        "metadata": {"resourceVersion": object.metadata.resource_version},
        "status": changes,
    });
    let params = PatchParams {
        field_manager: Some(writer.field_manager().to_string()),
        ..PatchParams::default()
    };
    api.patch_status(&name, &params, &Patch::Merge(&body))
        .await?;
    Ok(true)
}

fn to_json(status: &ScheduledExportStatus) -> Value {
    // A status is plain data; serializing it cannot fail.
    serde_json::to_value(status).unwrap_or(Value::Null)
}
