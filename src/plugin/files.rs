//! `kubectl sx files`: the object's files on its SFTP server, read with the object's own Secret
//! (fetched with the user's credentials) through the SFTP adapter's walk. Read-only: it lists, it
//! never writes, renames or deletes.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use super::PluginError;
use super::render::{FileEntry, FoundFile, file_entries};
use crate::adapters::kubernetes::secrets;
use crate::adapters::sftp::{SftpSession, SftpTarget};
use crate::export::file_name::parse_export_file_name;
use crate::resource::ScheduledExport;

/// The object's files, and the first place the walk could not see into (if any).
pub async fn list_files(
    client: &Client,
    object: &ScheduledExport,
    timeout: Duration,
) -> Result<(Vec<FileEntry>, Option<String>), PluginError> {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let secrets = secrets::SecretReader::Api(Box::new(Api::<Secret>::namespaced(
        client.clone(),
        &namespace,
    )));
    let sftp = &object.spec.destination.sftp;
    let credentials = secrets::sftp_credentials(&secrets, &sftp.secret_ref.name).await?;
    let target = SftpTarget::of(sftp);
    let file_type = object.spec.file_type;
    let listing = tokio::task::spawn_blocking(move || {
        let session = SftpSession::connect(&target, &credentials, timeout)?;
        session.list_matching(&|name| parse_export_file_name(file_type, name).is_some())
    })
    .await??;
    let found: Vec<FoundFile<'_>> = listing
        .files
        .iter()
        .map(|file| FoundFile {
            relative: &file.relative,
            bytes: file.size,
            modified: file.modified,
        })
        .collect();
    Ok((file_entries(object, &found), listing.incomplete))
}
