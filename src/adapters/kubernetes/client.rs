//! The API client every process of this project uses, with a deadline on every call.
//!
//! kube leaves the read timeout unset by default, so a request to an API server that accepted the
//! connection but stopped answering (a restart behind a load balancer, a half-open connection)
//! would wait for ever, and with it a reconcile, a Lease renewal or a shutdown. Watches are long
//! requests: they ask the server to end them before the read timeout would cut them.

use std::time::Duration;

use kube::runtime::watcher;
use kube::{Client, Config};

/// Bound on opening a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while waiting for a response, counted from when the request was sent.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on sending a request.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// `timeoutSeconds` of every watch: the server closes it (and the watcher resumes from its
/// resourceVersion) before [`READ_TIMEOUT`] would fail a quiet watch as a dead connection.
pub const WATCH_TIMEOUT_SECONDS: u32 = 25;

/// The client of the inferred configuration (in-cluster, or `KUBECONFIG`), with the deadlines.
pub async fn client() -> Result<Client, String> {
    let config = Config::infer()
        .await
        .map_err(|err| format!("no usable Kubernetes configuration: {err}"))?;
    Client::try_from(with_deadlines(config))
        .map_err(|err| format!("cannot build the Kubernetes client: {err}"))
}

/// `config` with this project's connect, read and write timeouts.
pub fn with_deadlines(mut config: Config) -> Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    // Count the read timeout from the request, not from when its pooled connection went idle.
    config.reset_reader_on_write = true;
    config
}

/// A watcher configuration whose watch requests end before [`READ_TIMEOUT`].
pub fn watcher_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_watch_ends_on_the_server_before_the_read_timeout_fires() {
        assert!(Duration::from_secs(u64::from(WATCH_TIMEOUT_SECONDS)) < READ_TIMEOUT);
        assert_eq!(watcher_config().timeout, Some(WATCH_TIMEOUT_SECONDS));
    }

    #[test]
    fn every_call_has_a_deadline() {
        let config = with_deadlines(Config::new("https://127.0.0.1:6443".parse().unwrap()));
        assert_eq!(config.connect_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(config.read_timeout, Some(READ_TIMEOUT));
        assert_eq!(config.write_timeout, Some(WRITE_TIMEOUT));
        assert!(config.reset_reader_on_write);
    }
}
