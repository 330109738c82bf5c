//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas never reconcile at
//! the same time. Deterministic Job names already make a double run impossible; the Lease keeps
//! the standby from doing duplicate API work and publishing duplicate Events.
//!
//! Leases are timed with the real clock, never the injectable schedule clock: they coordinate
//! processes, not slots.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

/// Longest wait for the API server when giving the Lease up at shutdown.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity, e.g. the Pod name.
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the leader Lease {namespace}/{name} to {holder}")]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
    #[error("cannot renew the leader Lease: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot renew the leader Lease: the API server did not answer in time")]
    RenewTimeout,
    #[error("the controller stopped unexpectedly; giving up the leader Lease")]
    ControllerStopped,
}

pub struct LeaderElection {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The holder and renew time last seen, and when this replica saw them change. Expiry is
    /// judged on this replica's own monotonic clock, as client-go does, so clock skew between
    /// replicas cannot make a live Lease look expired.
    observed: std::sync::Mutex<Option<ObservedLease>>,
}

/// (holder, renewTime) as last seen, and when this replica first saw them.
type ObservedLease = (Option<String>, Option<Timestamp>, std::time::Instant);

impl LeaderElection {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: std::sync::Mutex::new(None),
        }
    }

    /// Waits until this replica holds the Lease. An API server that fails or does not answer is
    /// retried: the caller ends the wait on shutdown, so it must never hang in a call.
    pub async fn acquire(&self) {
        let mut said_waiting = false;
        loop {
            match tokio::time::timeout(self.settings.renew_every, self.try_acquire_or_renew()).await
            {
                Ok(Ok(true)) => {
                    info!(lease = %self.settings.name, identity = %self.settings.identity, "became leader");
                    return;
                }
                Ok(Ok(false)) if !said_waiting => {
                    said_waiting = true;
                    info!(lease = %self.settings.name, identity = %self.settings.identity,
                        "another replica holds the leader Lease; waiting as a standby");
                }
                Ok(Ok(false)) => {}
                Ok(Err(err)) => warn!(error = %err, "cannot read the leader Lease; retrying"),
                Err(_) => {
                    warn!("the API server did not answer about the leader Lease in time; retrying")
                }
            }
            tokio::time::sleep(self.settings.renew_every).await;
        }
    }

    /// Renews the Lease until it is lost, or until renewals have failed for two thirds of its
    /// duration (the rest is the margin before a standby may take it over); returns why. The
    /// caller must stop reconciling at once.
    pub async fn hold(&self) -> LeaderError {
        let renew_deadline = self.settings.duration * 2 / 3;
        let mut last_renewal = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_every).await;
            // A call that hangs (API server unreachable) must not outlive the deadline.
            let attempt =
                tokio::time::timeout(self.settings.renew_every, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renewal = std::time::Instant::now(),
                Ok(Ok(false)) => {
                    let holder =
                        tokio::time::timeout(self.settings.renew_every, self.current_holder())
                            .await
                            .ok()
                            .flatten()
                            .unwrap_or_else(|| "another replica".into());
                    return LeaderError::Lost {
                        namespace: self.settings.namespace.clone(),
                        name: self.settings.name.clone(),
                        holder,
                    };
                }
                Ok(Err(err)) if last_renewal.elapsed() >= renew_deadline => return err.into(),
                Err(_) if last_renewal.elapsed() >= renew_deadline => {
                    return LeaderError::RenewTimeout;
                }
                Ok(Err(err)) => warn!(error = %err, "Lease renewal failed; retrying"),
                Err(_) => warn!("Lease renewal timed out; retrying"),
            }
        }
    }

    /// Gives the Lease up on shutdown so a standby takes it at its next attempt instead of waiting
    /// for it to expire: no holder, and a duration of one second for candidates that only look
    /// at expiry. Bounded by [`RELEASE_TIMEOUT`]: an API server that does not answer leaves the
    /// Lease to expire, and the process exits all the same. Returns whether it was released.
    pub async fn release(&self) -> bool {
        let released = tokio::time::timeout(RELEASE_TIMEOUT, async {
            let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
                return Ok(false);
            };
            if !self.holds(&lease) {
                return Ok(false);
            }
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
            }
            self.api
                .replace(&self.settings.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        })
        .await;
        match released {
            Ok(Ok(true)) => {
                info!(lease = %self.settings.name, "released the leader Lease");
                true
            }
            Ok(Ok(false)) => false,
            Ok(Err(err)) => {
                warn!(error = %err, "could not release the leader Lease; it expires on its own");
                false
            }
            Err(_) => {
                warn!(
                    "the API server did not answer the Lease release in time; it expires on its own"
                );
                false
            }
        }
    }

    /// Whether the holder has not renewed for the Lease's own duration, measured from when this
    /// replica first saw the current (holder, renewTime).
    fn expired(
        &self,
        holder: Option<String>,
        renew_time: Option<Timestamp>,
        duration: Duration,
    ) -> bool {
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match observed.as_ref() {
            Some((seen_holder, seen_renewal, at))
                if *seen_holder == holder && *seen_renewal == renew_time =>
            {
                at.elapsed() >= duration
            }
            _ => {
                *observed = Some((holder, renew_time, std::time::Instant::now()));
                false
            }
        }
    }

    async fn current_holder(&self) -> Option<String> {
        self.api
            .get_opt(&self.settings.name)
            .await
            .ok()??
            .spec?
            .holder_identity
    }

    fn holds(&self, lease: &Lease) -> bool {
        lease
            .spec
            .as_ref()
            .and_then(|spec| spec.holder_identity.as_deref())
            == Some(self.settings.identity.as_str())
    }

    /// One attempt; `Ok(true)` when this replica holds the Lease afterwards. Writes carry the
    /// read resourceVersion, so two candidates can never both win.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration_seconds = i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.settings.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let held_by_us = spec.holder_identity.as_deref() == Some(self.settings.identity.as_str());
        // The holder's own promise, as client-go reads it; a replica of another configuration
        // may hold it longer than this one would.
        let holder_duration = spec
            .lease_duration_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(self.settings.duration, Duration::from_secs);
        let expired = self.expired(
            spec.holder_identity.clone(),
            spec.renew_time.as_ref().map(|t| t.0),
            holder_duration,
        );
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !held_by_us && !expired && !free {
            return Ok(false);
        }
        if !held_by_us {
            spec.holder_identity = Some(self.settings.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(duration_seconds);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }
}
