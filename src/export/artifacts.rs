//! The artifact copies that delivered files leave in the store. A copy is needed only until a
//! newer file is delivered (it is what a recopy sends); older ones are removed so the store does
//! not accumulate CRM data. The export Job and the delivery checker both prune through here.

use crate::adapters::artifacts::{ArtifactError, ArtifactStore};
use crate::export::file_name::parse_export_file_name;
use crate::resource::FileType;

/// Deletes the object's artifacts of files older than `kept_file`; names that are not this file
/// type's export names are never touched. Returns how many were deleted.
pub async fn prune_older_artifacts(
    store: &ArtifactStore,
    namespace: &str,
    name: &str,
    file_type: FileType,
    kept_file: &str,
) -> Result<usize, ArtifactError> {
    let Some(kept_slot) = parse_export_file_name(file_type, kept_file) else {
        return Ok(0);
    };
    let mut deleted = 0;
    for key in store.list(namespace, name).await? {
        if parse_export_file_name(file_type, &key.file_name).is_some_and(|slot| slot < kept_slot) {
            store.delete(&key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
