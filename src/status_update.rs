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
