//! `kubectl sx`: the kubectl plugin (the binary installed or linked as `kubectl-sx`). It talks to
//! the cluster with the user's own kubeconfig and credentials, as kubectl does, and never needs
//! the operator's rights.
//!
//! What it prints is decided in [`render`] (pure: objects and the clock's `now` in, text out);
//! this module and [`run`] and [`files`] only fetch and hand over.

pub mod files;
pub mod render;
pub mod run;

use std::path::PathBuf;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::resource::ScheduledExport;

/// Where to connect: kubectl's `--kubeconfig`, `--context` and `-n/--namespace`.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The user asked for something that is not there, or not so; exit status 2.
    #[error("{0}")]
    BadInput(String),
    #[error("no usable kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("Kubernetes API: {0}")]
    Api(#[source] kube::Error),
    #[error("{0}")]
    NotServed(String),
    #[error(
        "ScheduledExport {}/{} cannot be read by this version of kubectl-sx ({}); is it older than \
         the operator?",
        .0.namespace, .0.name, .0.reason
    )]
    Unreadable(Unreadable),
    #[error("{0}")]
    Secret(#[from] crate::adapters::kubernetes::secrets::SecretError),
    #[error("{0}")]
    Sftp(#[from] crate::adapters::sftp::SftpError),
    #[error("{0}")]
    Schedule(#[from] render::NextRunsError),
    /// The run ended, and not well.
    #[error("the run failed: {0}")]
    RunFailed(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("the SFTP listing stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl PluginError {
    /// Whether this is the user's input (exit status 2) rather than a failure (1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, PluginError::BadInput(_))
    }

    /// An API error about object `name`: a missing object is the user's input.
    pub(crate) fn from_api(err: kube::Error, namespace: &str, name: &str) -> Self {
        match &err {
            kube::Error::Api(status) if status.code == 404 && status.reason == "NotFound" => {
                PluginError::BadInput(format!("ScheduledExport {namespace}/{name} not found"))
            }
            _ => Self::from_list(err),
        }
    }

    /// An API error listing objects: a 404 without a `NotFound` status means the API server does
    /// not serve the resource at all.
    pub(crate) fn from_list(err: kube::Error) -> Self {
        match &err {
            kube::Error::Api(status) if status.code == 404 && status.reason != "NotFound" => {
                PluginError::NotServed(format!(
                    "this cluster does not serve ScheduledExports ({}/v1alpha1): is the \
                     scheduled-exports CRD installed?",
                    crate::resource::GROUP
                ))
            }
            _ => PluginError::Api(err),
        }
    }
}

/// The client and namespace as kubectl would choose them: `--kubeconfig` (else `KUBECONFIG`,
/// else `~/.kube/config`, else in-cluster), its `--context` (else the current one), and
/// `--namespace` (else the context's, else `default`).
pub async fn connect(connection: &Connection) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions {
        context: connection.context.clone(),
        ..KubeConfigOptions::default()
    };
    let kubeconfig_error =
        |err: kube::config::KubeconfigError| PluginError::Kubeconfig(err.to_string());
    let config = match (&connection.kubeconfig, &connection.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|err| PluginError::Kubeconfig(format!("{}: {err}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(kubeconfig_error)?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(kubeconfig_error)?,
        (None, None) => Config::infer()
            .await
            .map_err(|err| PluginError::Kubeconfig(err.to_string()))?,
    };
    let namespace = connection
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(crate::adapters::kubernetes::client::with_deadlines(config))
        .map_err(|err| PluginError::Kubeconfig(err.to_string()))?;
    Ok((client, namespace))
}

/// An object this version cannot read (most likely written for a newer CRD than the plugin's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

/// One object, or every object of `namespace` (of every namespace when `None`), sorted by
/// namespace and name. Each object is read on its own, so one this version cannot read is
/// reported beside the others instead of failing the whole listing.
pub async fn objects(
    client: &Client,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(Vec<ScheduledExport>, Vec<Unreadable>), PluginError> {
    let resource = ApiResource::erase::<ScheduledExport>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let items = match name {
        Some(name) => vec![
            api.get(name)
                .await
                .map_err(|err| PluginError::from_api(err, namespace.unwrap_or_default(), name))?,
        ],
        None => {
            api.list(&ListParams::default())
                .await
                .map_err(PluginError::from_list)?
                .items
        }
    };
    let mut readable = Vec::new();
    let mut unreadable = Vec::new();
    for item in items {
        let parsed =
            serde_json::to_value(&item).and_then(serde_json::from_value::<ScheduledExport>);
        match parsed {
            Ok(object) => readable.push(object),
            Err(err) => unreadable.push(Unreadable {
                namespace: item.metadata.namespace.clone().unwrap_or_default(),
                name: item.metadata.name.clone().unwrap_or_default(),
                reason: err.to_string(),
            }),
        }
    }
    readable.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Ok((readable, unreadable))
}

/// The one object `name` of `namespace`.
pub async fn object(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<ScheduledExport, PluginError> {
    let (mut readable, unreadable) = objects(client, Some(namespace), Some(name)).await?;
    match (readable.pop(), unreadable.first()) {
        (Some(object), _) => Ok(object),
        (None, Some(unreadable)) => Err(PluginError::Unreadable(unreadable.clone())),
        (None, None) => Err(PluginError::BadInput(format!(
            "ScheduledExport {namespace}/{name} not found"
        ))),
    }
}
