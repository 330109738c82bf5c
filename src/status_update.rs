//! The one way status is written, by the controller and by export runs alike: read the object,
//! compute the new status from the one just read, and replace it with optimistic concurrency.
//! A conflict means another writer got there first; the update is recomputed on its result, so
//! neither writer's fields are lost.

use kube::api::{Api, PostParams};

use crate::resource::{ScheduledExport, ScheduledExportStatus};

const ATTEMPTS: usize = 8;

/// Returns whether the status changed (an identical status is not written, so the controller
/// does not wake itself up).
pub async fn update_status(
    api: &Api<ScheduledExport>,
    name: &str,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, kube::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut object = api.get(name).await?;
        let current = object.status.clone().unwrap_or_default();
        let desired = update(&current);
        if desired == current {
            return Ok(false);
        }
        object.status = Some(desired);
        object.metadata.managed_fields = None;
        match api
            .replace_status(name, &PostParams::default(), &object)
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(response)) if response.code == 409 && attempt < ATTEMPTS => {}
            Err(err) => return Err(err),
        }
    }
}

/// `update_status` starting from an object already in hand (the controller's cache): no request
/// at all when the status would not change, one `replace_status` at that object's
/// resourceVersion otherwise, and the read-compute-replace loop only after a conflict.
pub async fn update_status_from(
    api: &Api<ScheduledExport>,
    object: &ScheduledExport,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, kube::Error> {
    let current = object.status.clone().unwrap_or_default();
    let desired = update(&current);
    if desired == current {
        return Ok(false);
    }
    let name = object.metadata.name.clone().unwrap_or_default();
    let mut changed = object.clone();
    changed.status = Some(desired);
    changed.metadata.managed_fields = None;
    match api
        .replace_status(&name, &PostParams::default(), &changed)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 409 => {
            update_status(api, &name, update).await
        }
        Err(err) => Err(err),
    }
}
