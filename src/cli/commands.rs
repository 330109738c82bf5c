//! Subcommand entry points: argument structs in, `CommandError` (and so the exit status) out.

#[cfg(feature = "sample-data")]
use crate::cli::SampleDataArgs;
use crate::cli::{ControllerArgs, ExportArgs, NextArgs};
use crate::export::{ExportOutcome, ExportRequest};
use crate::resource;
use crate::schedule;
use chrono::Utc;

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

/// `export`: one run of one object, recorded in its status.
pub async fn export(args: ExportArgs) -> Result<(), CommandError> {
    let client = kube::Client::try_default()
        .await
        .map_err(|err| CommandError::Failed(format!("cannot reach the Kubernetes API: {err}")))?;
    let request = ExportRequest {
        namespace: args.namespace,
        name: args.name,
        slot: args.slot,
        artifact_store_url: args.artifact_store,
        job_name: args.job_name,
        timeout: args.timeout,
        spool_dir: args.spool_dir,
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
pub async fn sample_data(args: SampleDataArgs) -> Result<(), CommandError> {
    let summary = crate::sample_data::run_sample_data(
        &args.database_url,
        args.interactions,
        args.proposals,
        args.seed,
    )
    .await
    .map_err(|err| CommandError::Failed(err.to_string()))?;
    println!(
        "schema applied; added {} interactions and {} proposals in {:.1}s",
        summary.interactions,
        summary.proposals,
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
    use crate::operator::{Context, ControllerConfig, DeliverySettings, Periods};

    let client = kube::Client::try_default()
        .await
        .map_err(|err| CommandError::Failed(format!("cannot reach the Kubernetes API: {err}")))?;
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
            service_account: args.job_service_account,
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
        controller::run(ctx, shutdown_signal()).await;
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
    controller::run_with_leader_election(ctx, election, shutdown_signal())
        .await
        .map_err(|err| CommandError::Failed(err.to_string()))
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
