//! One preflight check: read the object's Secrets as a run would, check the encryption key at
//! the next run's instant, then the database and the SFTP server side by side, each as the run
//! uses it. Every failure is collected, so one check names everything to fix.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;

use super::decide::{self, Outcome};
use crate::adapters::kubernetes::secrets::{self, DatabaseSource, SecretReader};
use crate::adapters::postgres;
use crate::adapters::sftp::{SftpCredentials, SftpSession, SftpTarget};
use crate::export::encrypt::RecipientKey;
use crate::export::view::{self, ViewError};
use crate::export::window;
use crate::operator::checker::decide::Failure;
use crate::operator::config::PreflightSettings;
use crate::operator::context::Context;
use crate::resource::{ConditionReason, ScheduledExport};
use crate::status::ownership;

/// Checks what the next run of `object` needs; `now` is the check's start.
pub(super) async fn run_check(
    ctx: &Context,
    object: &ScheduledExport,
    settings: &PreflightSettings,
    now: DateTime<Utc>,
) -> Outcome {
    let namespace = object.namespace().unwrap_or_default();
    let secrets = SecretReader::Api(Box::new(Api::namespaced(ctx.client.clone(), &namespace)));
    let (key_at, next_run) = decide::key_instant(object, now);
    let mut failures = Vec::new();

    let source = secrets::database_source(&secrets, object)
        .await
        .map_err(|err| decide::secret_failure(&err));
    let credentials =
        secrets::sftp_credentials(&secrets, &object.spec.destination.sftp.secret_ref.name)
            .await
            .map_err(|err| decide::secret_failure(&err));
    if let Some(encryption) = &object.spec.encryption {
        let reference = &encryption.pgp.public_key_secret_ref;
        match secrets::pgp_public_key(&secrets, reference).await {
            Ok(key) => {
                if let Err(problem) = RecipientKey::parse(&key, key_at) {
                    failures.push(decide::key_failure(
                        &reference.name,
                        &reference.key,
                        &problem,
                        key_at,
                        now,
                    ));
                }
            }
            Err(err) => failures.push(decide::secret_failure(&err)),
        }
    }

    let database = async {
        match &source {
            Ok(source) => check_database(object, source, settings).await.err(),
            Err(failure) => Some(failure.clone()),
        }
    };
    let server = async {
        match &credentials {
            Ok(credentials) => check_server(object, credentials.clone(), settings)
                .await
                .err(),
            Err(failure) => Some(failure.clone()),
        }
    };
    let (database, server) = tokio::join!(database, server);
    failures.extend(database);
    failures.extend(server);
    if failures.is_empty() {
        Outcome::Passed {
            summary: decide::passed_summary(object, next_run.filter(|_| key_at > now)),
        }
    } else {
        Outcome::Failed(failures)
    }
}

/// Connects with the Secret's URL and CA, then runs the export's own query (of the table, or of
/// the view after the shape checks a run makes) with no rows, read-only.
async fn check_database(
    object: &ScheduledExport,
    source: &DatabaseSource,
    settings: &PreflightSettings,
) -> Result<(), Failure> {
    let source_failure = |err: postgres::SourceError| decide::source_failure(object, &err);
    let (mut client, connection) = postgres::connect_with_ca(
        &source.url,
        source.ca_cert.as_deref(),
        settings.step_timeout,
    )
    .await
    .map_err(source_failure)?;
    let query = match &object.spec.source.view {
        None => window::query_of(object.spec.file_type),
        Some(name) => {
            let columns = postgres::relation_columns(&client, &view::quote_relation(name))
                .await
                .map_err(source_failure)?
                .ok_or_else(|| decide::view_failure(&ViewError::Missing { view: name.clone() }))?;
            let shape = view::shape(name, &columns).map_err(|err| decide::view_failure(&err))?;
            window::view_query(&shape)
        }
    };
    let result = tokio::time::timeout(
        settings.step_timeout,
        postgres::probe_window(&mut client, &query),
    )
    .await;
    drop(client);
    connection.abort();
    match result {
        Ok(probed) => probed.map_err(source_failure),
        Err(_) => Err(Failure::new(
            ConditionReason::DatabaseUnreachable,
            format!(
                "database (Secret {} referenced by spec.source.secretRef): the export's query did \
                 not answer within {:?}; check the database's load and locks on the table",
                object.spec.source.secret_ref.name, settings.step_timeout
            ),
        )),
    }
}

/// Connects as a run does (host key, login, directory) and proves the directory writable with a
/// hidden file it removes again, on a blocking thread like every SFTP call.
async fn check_server(
    object: &ScheduledExport,
    credentials: SftpCredentials,
    settings: &PreflightSettings,
) -> Result<(), Failure> {
    let target = SftpTarget::of(&object.spec.destination.sftp);
    let tag = ownership::upload_tag(object.uid().as_deref().unwrap_or_default());
    let timeout = settings.step_timeout;
    let probed = tokio::task::spawn_blocking(move || {
        SftpSession::connect(&target, &credentials, timeout)?.probe_writable(tag)
    })
    .await;
    match probed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(decide::sftp_failure(object, &err)),
        Err(err) => Err(Failure::new(
            ConditionReason::SessionError,
            format!("the SFTP check stopped unexpectedly: {err}"),
        )),
    }
}
