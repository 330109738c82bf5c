//! Connecting to the source database: parsing the URL without echoing it, and telling apart the
//! reasons a connection fails, all without the password.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use super::SourceError;
use super::tls::{self, SslMode};

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
    parse_source(url).map(|(config, _)| config)
}

/// The config and the TLS mode of `url`. `sslmode` is taken out before the driver parses the
/// rest, since the driver knows only disable, prefer and require.
///
/// A URL whose user name or password holds an unencoded `@`, `:`, `/` (...) is refused before
/// the driver sees it: the driver would take part of the password for the host or the database,
/// and every later message would quote it.
fn parse_source(url: &str) -> Result<(Config, SslMode), SourceError> {
    crate::redact::register_url_credentials(url);
    crate::redact::check_url_userinfo(url).map_err(|err| SourceError::InvalidUrl {
        reason: err.to_string(),
    })?;
    let (rest, mode) = take_sslmode(url)?;
    let mut config = rest
        .parse::<Config>()
        .map_err(|err| SourceError::InvalidUrl {
            reason: crate::redact::scrub(&err.to_string()),
        })?;
    if let Some(password) = config.get_password() {
        crate::redact::register_secret(&String::from_utf8_lossy(password));
    }
    config.ssl_mode(mode.driver_mode());
    Ok((config, mode))
}

/// Splits `sslmode` (default `prefer`, as libpq) off a URL's query or a key=value string.
fn take_sslmode(url: &str) -> Result<(String, SslMode), SourceError> {
    let mut mode = None;
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    match pair.strip_prefix("sslmode=") {
                        Some(value) => mode = Some(SslMode::parse(value)?),
                        None => kept.push(pair),
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.strip_prefix("sslmode=") {
                Some(value) => mode = Some(SslMode::parse(value.trim_matches('\''))?),
                None => kept.push(word),
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode.unwrap_or(SslMode::Prefer)))
}

/// [`connect_with_ca`] trusting the system's CAs.
pub async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<(Client, JoinHandle<()>), SourceError> {
    connect_with_ca(url, None, timeout).await
}

/// Connects with `timeout` covering TCP connect, TLS, startup and authentication, and spawns
/// the connection task. `sslmode` in the URL says how the server is verified; `ca_pem` is the CA
/// that `verify-ca` and `verify-full` trust (the system's CAs when `None`). Errors say what went
/// wrong (unreachable, TLS, authentication, missing database) without the password.
pub async fn connect_with_ca(
    url: &str,
    ca_pem: Option<&str>,
    timeout: Duration,
) -> Result<(Client, JoinHandle<()>), SourceError> {
    let (mut config, mode) = parse_source(url)?;
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
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
        _ => String::new(),
    };
    let connector = tls::connector(mode, ca_pem, &target)?;
    let connecting = config.connect(connector);
    let (client, connection) = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => return Err(SourceError::ConnectTimeout { target, timeout }),
        Ok(Err(err)) => {
            return Err(classify_connect_error(
                err,
                ConnectAttempt {
                    target,
                    user,
                    database,
                    mode,
                    host,
                },
            ));
        }
        Ok(Ok(pair)) => pair,
    };
    let handle = tokio::spawn(async move {
        if let Err(err) = connection.await {
            let error = crate::redact::scrub(&err.to_string());
            tracing::warn!(%error, "PostgreSQL connection closed with an error");
        }
    });
    Ok((client, handle))
}

/// What a failed connection was aimed at, for its message.
struct ConnectAttempt {
    target: String,
    user: String,
    database: String,
    mode: SslMode,
    host: String,
}

/// [`classify_connect`] with every credential removed from the driver's text it quotes.
fn classify_connect_error(err: tokio_postgres::Error, attempt: ConnectAttempt) -> SourceError {
    use crate::redact::scrub;
    match classify_connect(err, attempt) {
        SourceError::Unreachable { target, cause } => SourceError::Unreachable {
            target,
            cause: scrub(&cause),
        },
        SourceError::AuthenticationFailed {
            target,
            user,
            cause,
        } => SourceError::AuthenticationFailed {
            target,
            user,
            cause: scrub(&cause),
        },
        SourceError::Tls { target, reason } => SourceError::Tls {
            target,
            reason: scrub(&reason),
        },
        SourceError::Connect { target, cause } => SourceError::Connect {
            target,
            cause: scrub(&cause),
        },
        other => other,
    }
}

fn classify_connect(err: tokio_postgres::Error, attempt: ConnectAttempt) -> SourceError {
    let ConnectAttempt {
        target,
        user,
        database,
        mode,
        host,
    } = attempt;
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
            if let Some(refused) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                return SourceError::Tls {
                    target,
                    reason: tls::describe_tls_failure(refused, mode, &host),
                };
            }
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
    if cause.contains("does not support TLS") {
        return SourceError::Tls {
            target,
            reason: format!(
                "the server does not accept TLS (sslmode={}): enable ssl on the server, or use \
                 sslmode=prefer",
                mode.as_str()
            ),
        };
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
