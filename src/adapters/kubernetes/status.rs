//! The one way status is written, by the controller, the export Jobs and the checker alike: read
//! the object, compute the new status from the one just read, and send a merge patch of exactly
//! the fields that changed, under the writer's own field manager and with the resourceVersion
//! read as a precondition.
//!
//! The patch keeps fields this version does not know (a Job of an older image never drops what a
//! newer controller wrote); the precondition keeps writers from losing each other's updates: a
//! conflict means another writer got there first, and the update is recomputed on its result.
//!
//! A writer that belongs to one incarnation of the object (an export Job, the controller acting on
//! its cache) names its UID: the object read must carry it, or nothing is written. The check is
//! here, after the read, because the API server ignores a `metadata.uid` sent in a merge patch of
//! the status subresource; the resourceVersion precondition then makes sure the object patched
//! is the object read, since a new object of the same name never has the old resourceVersion.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::resource::{ScheduledExport, ScheduledExportStatus};
use crate::status::patch::merge_patch;

const ATTEMPTS: usize = 8;

/// Why a status write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The object of that name is another incarnation: the one the writer belongs to was deleted
    /// and a new one created with the same name.
    #[error(
        "ScheduledExport {name} is not the object this run belongs to: it was deleted and created again (UID {found}, expected {expected}); its status is left alone"
    )]
    Replaced {
        name: String,
        expected: String,
        found: String,
    },
}

/// Who writes status. Each has its own field manager, so `managedFields` tell who set what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWriter {
    /// The reconcile loop: the schedule, the next run, Ready, and the Jobs it observes.
    Controller,
    /// An export Job: its run, the watermark, the delivered file, Exported and Delivered.
    Export,
    /// The delivery checker: rechecks, recopies, retention, and Delivered.
    Checker,
    /// The preflight loop: `preflight` and the Preflight condition.
    Preflight,
}

impl StatusWriter {
    pub fn field_manager(self) -> &'static str {
        match self {
            StatusWriter::Controller => "scheduled-exports-controller",
            StatusWriter::Export => "scheduled-exports-export",
            StatusWriter::Checker => "scheduled-exports-checker",
            StatusWriter::Preflight => "scheduled-exports-preflight",
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
    match read_and_patch(api, writer, name, None, update).await {
        Ok(written) => Ok(written),
        Err(StatusError::Kube(err)) => Err(err),
        // Without an expected UID every incarnation is accepted.
        Err(StatusError::Replaced { .. }) => Ok(false),
    }
}

/// `update_status` of the incarnation with UID `uid` only: if the object of that name has another
/// UID, nothing is written and the answer is [`StatusError::Replaced`].
pub async fn update_status_of(
    api: &Api<ScheduledExport>,
    writer: StatusWriter,
    name: &str,
    uid: &str,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, StatusError> {
    read_and_patch(api, writer, name, Some(uid), update).await
}

async fn read_and_patch(
    api: &Api<ScheduledExport>,
    writer: StatusWriter,
    name: &str,
    uid: Option<&str>,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, StatusError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let object = api.get_status(name).await?;
        if let Some(expected) = uid {
            check_incarnation(&object, expected)?;
        }
        match patch_once(api, writer, &object, &update).await {
            Err(kube::Error::Api(response)) if response.code == 409 && attempt < ATTEMPTS => {}
            written => return Ok(written?),
        }
    }
}

/// `update_status` starting from an object already in hand (the controller's cache): no request
/// at all when the status would not change, one patch at that object's resourceVersion
/// otherwise, and the read-compute-patch loop only after a conflict, for that object's UID only
/// (the cache may be behind a deletion and re-creation).
pub async fn update_status_from(
    api: &Api<ScheduledExport>,
    writer: StatusWriter,
    object: &ScheduledExport,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, StatusError> {
    match patch_once(api, writer, object, &update).await {
        Err(kube::Error::Api(response)) if response.code == 409 => {
            let name = object.metadata.name.clone().unwrap_or_default();
            let uid = object.metadata.uid.as_deref();
            read_and_patch(api, writer, &name, uid, update).await
        }
        written => Ok(written?),
    }
}

/// Whether `object` is the incarnation with UID `expected`.
pub fn check_incarnation(object: &ScheduledExport, expected: &str) -> Result<(), StatusError> {
    let found = object.metadata.uid.as_deref().unwrap_or_default();
    if found == expected {
        return Ok(());
    }
    Err(StatusError::Replaced {
        name: object.metadata.name.clone().unwrap_or_default(),
        expected: expected.to_string(),
        found: found.to_string(),
    })
}

async fn patch_once(
    api: &Api<ScheduledExport>,
    writer: StatusWriter,
    object: &ScheduledExport,
    update: &impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, kube::Error> {
    let current = object.status.clone().unwrap_or_default();
    let desired = update(&current);
    // Messages quote driver errors; whatever they carry, no credential is written.
    let mut desired = to_json(&desired);
    scrub_messages(&mut desired);
    let Some(changes) = merge_patch(&to_json(&current), &desired) else {
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

/// The free text of a status (`message`, `error` fields, at any depth) through
/// [`crate::redact::scrub`]. Machine fields (watermark, names, digests) are left exactly as they
/// are: a scrubbed watermark would be a corrupt one.
fn scrub_messages(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(scrub_messages),
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                let key = key.to_ascii_lowercase();
                if key.contains("message") || key.contains("error") {
                    scrub_all(field);
                } else {
                    scrub_messages(field);
                }
            }
        }
        _ => {}
    }
}

fn scrub_all(value: &mut Value) {
    match value {
        Value::String(text) => *text = crate::redact::scrub(text),
        Value::Array(items) => items.iter_mut().for_each(scrub_all),
        Value::Object(fields) => fields.values_mut().for_each(scrub_all),
        _ => {}
    }
}

fn to_json(status: &ScheduledExportStatus) -> Value {
    // A status is plain data; serializing it cannot fail.
    serde_json::to_value(status).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str) -> ScheduledExport {
        serde_json::from_value(json!({
            "apiVersion": "exports.crm.dev/v1alpha1",
            "kind": "ScheduledExport",
            "metadata": {"name": "daily", "namespace": "ns", "uid": uid},
            "spec": {
                "fileType": "interactions", "time": "07:00",
                "source": {"secretRef": {"name": "db"}},
                "destination": {"sftp": {"host": "h", "username": "u", "secretRef": {"name": "s"}}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_the_incarnation_a_writer_belongs_to_is_written() {
        assert!(check_incarnation(&object("uid-1"), "uid-1").is_ok());
        let err = check_incarnation(&object("uid-2"), "uid-1").unwrap_err();
        assert!(
            matches!(&err, StatusError::Replaced { expected, found, .. } if expected == "uid-1" && found == "uid-2"),
            "{err}"
        );
        assert!(
            err.to_string().contains("deleted and created again"),
            "{err}"
        );
    }
}
