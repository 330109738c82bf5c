//! Connecting to the source database: parsing the URL without echoing it, and telling apart the
//! reasons a connection fails, all without the password.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::SourceError;

/// `host:port/db as user` for messages: everything useful to find the server, never the password.
pub fn describe_target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(index)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    let user = config.get_user().unwrap_or("(default user)");
    let database = config.get_dbname().unwrap_or(user);
    format!("{hosts}/{database} as {user}")
}

/// Parses a `postgres://` URL (or key=value string) into a config, without echoing it.
pub fn parse_url(url: &str) -> Result<Config, SourceError> {
    url.parse::<Config>()
        .map_err(|err| SourceError::InvalidUrl {
            reason: err.to_string(),
        })
}

/// Connects with `timeout` covering TCP connect, TLS-less startup and authentication, and spawns
/// the connection task. Errors say what went wrong (unreachable, authentication, missing database)
/// without the password.
///
/// Only unencrypted connections are supported for now (`sslmode=disable` or `prefer` falling back);
/// `sslmode=require` fails with a clear message.
pub async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<(Client, JoinHandle<()>), SourceError> {
    let mut config = parse_url(url)?;
    config.connect_timeout(timeout);
    // A connection that dies mid-COPY (a half-open TCP path) must fail the run, not hang it until
    // the Job's deadline and block the object's next runs: TCP keepalives and a bound on
    // unacknowledged data detect it.
    config
        .keepalives(true)
        .keepalives_idle(timeout)
        .tcp_user_timeout(timeout.max(Duration::from_secs(30)));
    if config.get_application_name().is_none() {
        config.application_name("scheduled-exports");
    }
    let target = describe_target(&config);
    let user = config.get_user().unwrap_or_default().to_string();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let connecting = config.connect(NoTls);
    let (client, connection) = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => return Err(SourceError::ConnectTimeout { target, timeout }),
        Ok(Err(err)) => return Err(classify_connect_error(err, target, user, database)),
        Ok(Ok(pair)) => pair,
    };
    let handle = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "PostgreSQL connection closed with an error");
        }
    });
    Ok((client, handle))
}

fn classify_connect_error(
    err: tokio_postgres::Error,
    target: String,
    user: String,
    database: String,
) -> SourceError {
    if let Some(db) = err.as_db_error() {
        let cause = db.message().to_string();
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return SourceError::AuthenticationFailed {
                target,
                user,
                cause,
            };
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return SourceError::DatabaseMissing { target, database };
        }
        return SourceError::Connect { target, cause };
    }
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            let reason = match io.kind() {
                ErrorKind::ConnectionRefused => {
                    "connection refused (is the host and port right, is PostgreSQL running?)"
                }
                ErrorKind::TimedOut => "connection timed out",
                ErrorKind::NotFound => "host name not found",
                _ => "",
            };
            let detail = if reason.is_empty() {
                io.to_string()
            } else {
                format!("{reason}: {io}")
            };
            return SourceError::Unreachable {
                target,
                cause: detail,
            };
        }
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    if cause.contains("password missing") {
        return SourceError::AuthenticationFailed {
            target,
            user,
            cause: "the server asks for a password and the URL has none".to_string(),
        };
    }
    if cause.contains("timeout") || cause.contains("timed out") {
        return SourceError::Unreachable { target, cause };
    }
    SourceError::Connect { target, cause }
}
