//! Subcommand entry points: argument structs in, `CommandError` (and so the exit status) out.

#[cfg(feature = "sample-data")]
use crate::cli::SampleDataArgs;
use crate::cli::{ControllerArgs, ExportArgs, NextArgs};
use crate::export::{ExportOutcome, ExportRequest};
use crate::resource;
use crate::schedule;
use chrono::Utc;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// Outcome of a subcommand, mapped to the exit status by `main`.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The user's input is wrong; exit status 2.
    #[error("{0}")]
    BadInput(String),
    /// Anything else went wrong; exit status 1.
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::BadInput(_) => 2,
            CommandError::Failed(_) => 1,
        }
    }
}

/// The CRD as committed under `crds/`.
pub fn crd_yaml() -> Result<String, CommandError> {
    serde_yaml::to_string(&resource::crd())
        .map_err(|err| CommandError::Failed(format!("cannot render the CRD as YAML: {err}")))
}

pub fn print_crd() -> Result<(), CommandError> {
    print!("{}", crd_yaml()?);
    Ok(())
}

pub fn print_next_runs(args: &NextArgs) -> Result<(), CommandError> {
    let after = args.after.unwrap_or_else(Utc::now);
    for instant in schedule::runs_after(after, args.time, args.time_zone).take(args.count as usize)
    {
        println!("{}", schedule::format_run_line(instant, args.time_zone));
    }
    Ok(())
}

/// `export`: one run of one object, recorded in its status. `show_progress`: a person watches
/// standard error (see [`crate::progress::Surroundings`]); never in a Job.
pub async fn export(args: ExportArgs, show_progress: bool) -> Result<(), CommandError> {
    let client = kubernetes_client().await?;
    let progress = show_progress && args.job_name.is_none();
    let request = ExportRequest {
        namespace: args.namespace,
        name: args.name,
        slot: args.slot,
        artifact_store_url: args.artifact_store,
        job_name: args.job_name,
        object_uid: args.uid.filter(|uid| !uid.is_empty()),
        timeout: args.timeout,
        spool_dir: args.spool_dir,
        secrets_dir: args.secrets_dir,
        full_export: args.full,
        progress,
    };
    match crate::export::run_export(client, &request).await {
        Ok(ExportOutcome::Delivered(run)) => {
            println!("{} {} rows {} bytes", run.file_name, run.rows, run.bytes);
            Ok(())
        }
        Ok(ExportOutcome::AlreadyDelivered { file_name }) => {
            println!("{file_name} already delivered");
            Ok(())
        }
        Err(err) if err.is_bad_input() => Err(CommandError::BadInput(err.to_string())),
        Err(err) => Err(CommandError::Failed(err.to_string())),
    }
}

#[cfg(feature = "sample-data")]
/// `sample-data`: the reference schema and synthetic rows, for demos, tests and benchmarks.
pub async fn sample_data(args: SampleDataArgs, show_progress: bool) -> Result<(), CommandError> {
    crate::redact::register_url_credentials(&args.database_url);
    let summary = crate::sample_data::run_sample_data_with_progress(
        &args.database_url,
        args.interactions,
        args.proposals,
        args.constituents,
        args.seed,
        show_progress,
    )
    .await
    .map_err(|err| CommandError::Failed(err.to_string()))?;
    println!(
        "schema applied; added {} interactions, {} proposals and {} constituents in {:.1}s",
        summary.interactions,
        summary.proposals,
        summary.constituents,
        summary.elapsed.as_secs_f64()
    );
    Ok(())
}

/// `controller`: the operator. With leader election, reconciles only while holding the Lease and
/// exits (status 1) when it loses it, so the Deployment restarts it as a standby.
pub async fn controller(args: ControllerArgs) -> Result<(), CommandError> {
    use std::sync::Arc;

    use crate::adapters::artifacts::{ArtifactStore, S3Options};
    use crate::operator::controller;
    use crate::operator::job::JobSettings;
    use crate::operator::leader::{LeaderElection, LeaseSettings};
    use crate::operator::server::Health;
    use crate::operator::{
        Context, ControllerConfig, DeliverySettings, Periods, PreflightSettings,
    };

    // First of all, so a SIGTERM at any later point is a clean shutdown, not the default death.
    let shutdown = shutdown_signal()?;
    let client = kubernetes_client().await?;
    let client_for_health = client.clone();
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("scheduled-exports-{}", std::process::id()));
    let config = ControllerConfig {
        namespace: args.namespace,
        default_zone: args.default_time_zone,
        job: JobSettings {
            image: args.image,
            image_pull_policy: args.job_image_pull_policy,
            artifact_store_url: args.artifact_store,
            artifact_store_secret: args.artifact_store_secret,
            artifact_store_claim: args.artifact_store_claim,
            resources: args
                .job_resources
                .unwrap_or_else(|| JobSettings::default().resources),
            ..JobSettings::default()
        },
        delivery: DeliverySettings {
            s3: S3Options::from_env(),
            sftp_timeout: args.sftp_timeout,
            spool_dir: args.spool_dir,
            preflight: args.preflight.then(|| PreflightSettings {
                tick: args.preflight_interval,
                lead: args.preflight_lead,
                max_concurrent: usize::from(args.preflight_concurrency),
                ..PreflightSettings::default()
            }),
            ..DeliverySettings::default()
        },
        instance: identity.clone(),
        periods: Periods::default(),
    };
    // A bad setting (e.g. a claim with an s3:// store) fails at start, not at the first run.
    ArtifactStore::from_url(&config.job.artifact_store_url)
        .map_err(|err| CommandError::BadInput(format!("--artifact-store: {err}")))?;
    if let Err(err) = crate::operator::job::check_settings(&config.job) {
        return Err(CommandError::BadInput(err.to_string()));
    }
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
    let ctx = Arc::new(Context::new(client.clone(), clock.clone(), config));
    let listener = tokio::net::TcpListener::bind(args.listen_address)
        .await
        .map_err(|err| {
            CommandError::Failed(format!(
                "cannot listen on {} (--listen-address): {err}",
                args.listen_address
            ))
        })?;
    let health = Arc::new(Health::default());
    tokio::spawn(crate::operator::server::serve(
        listener,
        ctx.metrics.clone(),
        clock,
        health.clone(),
    ));
    // Ready once the API server answers: a replica that cannot reach it is of no use.
    tokio::spawn(async move {
        loop {
            if client_for_health.apiserver_version().await.is_ok() {
                health.set_ready();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    });

    if !args.leader_election {
        controller::run(ctx, shutdown).await;
        return Ok(());
    }
    let election = Arc::new(LeaderElection::new(
        client,
        LeaseSettings {
            namespace: args.lease_namespace,
            name: "scheduled-exports-controller".into(),
            identity,
            duration: std::time::Duration::from_secs(15),
            renew_every: std::time::Duration::from_secs(5),
        },
    ));
    controller::run_with_leader_election(ctx, election, shutdown)
        .await
        .map_err(|err| CommandError::Failed(err.to_string()))
}

/// The API client with a deadline on every call.
async fn kubernetes_client() -> Result<kube::Client, CommandError> {
    crate::adapters::kubernetes::client::client()
        .await
        .map_err(|err| CommandError::Failed(format!("cannot reach the Kubernetes API: {err}")))
}

/// Resolves at SIGTERM (Kubernetes) or SIGINT (Ctrl-C). The handlers are installed by this call,
/// not at the first poll, so a signal that arrives while the operator starts is not lost.
fn shutdown_signal() -> Result<Shared<BoxFuture<'static, ()>>, CommandError> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind| {
        signal(kind).map_err(|err| {
            CommandError::Failed(format!("cannot install the signal handlers: {err}"))
        })
    };
    let mut terminate = install(SignalKind::terminate())?;
    let mut interrupt = install(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    }
    .boxed()
    .shared())
}
