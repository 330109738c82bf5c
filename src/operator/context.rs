//! What every reconcile and check round shares: the API client, the clock, the configuration,
//! the metrics, the Event recorder, the alert notifier and the cached export Jobs.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::clock::Clock;
use crate::operator::config::ControllerConfig;
use crate::operator::metrics::Metrics;
use crate::operator::notify::{Notifier, RetryPolicy};
use crate::operator::owned_jobs::OwnedJobs;

pub struct Context {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub config: ControllerConfig,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    pub(crate) recorder: Recorder,
    /// The export Jobs by owning object, filled by the controller's Job watch while it leads.
    pub(crate) jobs: OwnedJobs,
}

impl Context {
    pub fn new(client: Client, clock: Arc<dyn Clock>, config: ControllerConfig) -> Self {
        let reporter = Reporter {
            controller: "scheduled-exports".into(),
            instance: Some(config.instance.clone()),
        };
        let metrics = Arc::new(Metrics::new());
        let notifier = Notifier::new(
            client.clone(),
            clock.clone(),
            metrics.clone(),
            RetryPolicy::default(),
        );
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clock,
            config,
            metrics,
            notifier,
            jobs: OwnedJobs::default(),
        }
    }
}
