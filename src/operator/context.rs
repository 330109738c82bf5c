//! What every reconcile and check round shares: the API client, the clock, the configuration,
//! the metrics and the Event recorder.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::clock::Clock;
use crate::operator::config::ControllerConfig;
use crate::operator::metrics::Metrics;

pub struct Context {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub config: ControllerConfig,
    pub metrics: Arc<Metrics>,
    pub(crate) recorder: Recorder,
}

impl Context {
    pub fn new(client: Client, clock: Arc<dyn Clock>, config: ControllerConfig) -> Self {
        let reporter = Reporter {
            controller: "scheduled-exports".into(),
            instance: Some(config.instance.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clock,
            config,
            metrics: Arc::new(Metrics::new()),
        }
    }
}
