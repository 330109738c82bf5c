//! A small typed client of the test bed's toxiproxy server (its HTTP API on loopback, `TOXIPROXY_URL`),
//! for the fault-injection tests: proxies in front of PostgreSQL, sshd or the API server, and the
//! toxics that slow, stall, cut or reset their connections.
//!
//! Plain HTTP/1.0 over a `std` TCP stream: the crate has no HTTP client among its dependencies, and
//! HTTP/1.0 keeps the server from chunking its replies. Calls are blocking and local (a few
//! milliseconds), so a [`Proxy`] can delete itself in `Drop`, even when a test panics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

/// `TOXIPROXY_URL` and `TOXIPROXY_LISTEN_HOST` of the test bed, or `None` when it has no toxiproxy
/// (then a test skips, unless `SCHEDULED_EXPORTS_REQUIRE_TESTBED` asks for every part of the bed).
pub fn from_testbed() -> Option<Toxiproxy> {
    let env = super::testbed_env();
    match (env.get("TOXIPROXY_URL"), env.get("TOXIPROXY_LISTEN_HOST")) {
        (Some(url), Some(listen_host)) => Some(Toxiproxy::new(url, listen_host)),
        _ if std::env::var_os("SCHEDULED_EXPORTS_REQUIRE_TESTBED").is_some() => panic!(
            "target/testbed/env exports no TOXIPROXY_URL and TOXIPROXY_LISTEN_HOST; \
             run tests/testbed/up to add toxiproxy to the test bed"
        ),
        _ => {
            eprintln!(
                "The test bed has no toxiproxy (TOXIPROXY_URL is not in target/testbed/env): \
                 skipping this fault-injection test. tests/testbed/up adds it."
            );
            None
        }
    }
}

/// The toxiproxy server's API.
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    /// `host:port` of the API.
    api: String,
    /// Where proxies listen: an address host processes (and Pods) reach.
    listen_host: String,
}

/// Which direction of a connection a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// From the client (the product) to the server.
    Upstream,
    /// From the server back to the client.
    Downstream,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// The toxics the tests use, with their attributes (times in milliseconds, rates in KB/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toxic {
    /// Delays every chunk of data.
    Latency { latency_ms: u64, jitter_ms: u64 },
    /// Caps the rate.
    Bandwidth { rate_kb_per_s: u64 },
    /// Lets nothing through; closes after `timeout_ms`, or never when 0 (until removed).
    Timeout { timeout_ms: u64 },
    /// Resets the connection (TCP RST) after `timeout_ms`.
    ResetPeer { timeout_ms: u64 },
    /// Closes the connection once `bytes` have gone through it.
    LimitData { bytes: u64 },
}

impl Toxic {
    fn type_and_attributes(self) -> (&'static str, Value) {
        match self {
            Toxic::Latency {
                latency_ms,
                jitter_ms,
            } => (
                "latency",
                json!({"latency": latency_ms, "jitter": jitter_ms}),
            ),
            Toxic::Bandwidth { rate_kb_per_s } => ("bandwidth", json!({"rate": rate_kb_per_s})),
            Toxic::Timeout { timeout_ms } => ("timeout", json!({"timeout": timeout_ms})),
            Toxic::ResetPeer { timeout_ms } => ("reset_peer", json!({"timeout": timeout_ms})),
            Toxic::LimitData { bytes } => ("limit_data", json!({"bytes": bytes})),
        }
    }
}

/// A reply of the API that was not the expected one.
#[derive(Debug)]
pub struct ApiError(pub String);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Toxiproxy {
    pub fn new(url: &str, listen_host: &str) -> Self {
        let api = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Self {
            api,
            listen_host: listen_host.to_string(),
        }
    }

    /// The server's version, which also shows it is up.
    pub fn version(&self) -> Result<String, ApiError> {
        let (_, body) = self.call("GET", "/version", None, &[200])?;
        Ok(body.trim().to_string())
    }

    /// Creates a proxy named `name` (unique per test) to `upstream` (`host:port`), listening on a
    /// port the server picks; the returned [`Proxy`] deletes it when dropped.
    pub fn create_proxy(&self, name: &str, upstream: &str) -> Proxy {
        let body = json!({
            "name": name,
            "listen": format!("{}:0", self.listen_host),
            "upstream": upstream,
            "enabled": true,
        });
        let (_, reply) = self
            .call("POST", "/proxies", Some(&body), &[201])
            .unwrap_or_else(|err| panic!("create toxiproxy proxy {name}: {err}"));
        let reply: Value = serde_json::from_str(&reply)
            .unwrap_or_else(|err| panic!("toxiproxy's reply for {name} is not JSON: {err}"));
        let listen = reply["listen"]
            .as_str()
            .unwrap_or_else(|| panic!("toxiproxy's reply for {name} has no listen: {reply}"))
            .to_string();
        let (host, port) = listen
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("toxiproxy listen address {listen} has no port"));
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("toxiproxy listen address {listen} has no port"));
        assert_ne!(port, 0, "toxiproxy did not pick a port for {name}");
        Proxy {
            api: self.clone(),
            name: name.to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expected: &[u16],
    ) -> Result<(u16, String), ApiError> {
        let fail = |what: &str, err: &dyn std::fmt::Display| {
            ApiError(format!(
                "{method} {path} on toxiproxy at {}: {what}: {err}",
                self.api
            ))
        };
        let mut stream = TcpStream::connect(&self.api).map_err(|err| fail("connect", &err))?;
        let limit = Some(Duration::from_secs(10));
        stream
            .set_read_timeout(limit)
            .and_then(|()| stream.set_write_timeout(limit))
            .map_err(|err| fail("set timeouts", &err))?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{payload}",
            self.api,
            payload.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|err| fail("send", &err))?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .map_err(|err| fail("read", &err))?;
        let reply = String::from_utf8_lossy(&reply);
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| fail("reply has no status line", &head))?;
        if !expected.contains(&status) {
            return Err(fail(&format!("status {status}"), &body.trim()));
        }
        Ok((status, body.to_string()))
    }
}

/// One proxy of one test; deleted (with its toxics and connections) when dropped.
#[derive(Debug)]
pub struct Proxy {
    api: Toxiproxy,
    pub name: String,
    /// Where it listens.
    pub host: String,
    pub port: u16,
}

impl Proxy {
    /// `host:port` where it listens.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A known_hosts line for a proxy in front of the bed's sshd: its host key under the proxy's
    /// address (OpenSSH records host keys per host and port).
    pub fn sshd_known_hosts_line(&self) -> String {
        let known_hosts =
            std::fs::read_to_string(super::env_var("SFTP_KNOWN_HOSTS_FILE")).expect("known_hosts");
        let host_key = known_hosts
            .lines()
            .find_map(|line| line.split_once(' ').map(|(_, key)| key.to_string()))
            .expect("a host key line");
        format!("[{}]:{} {host_key}\n", self.host, self.port)
    }

    /// Adds `toxic` under `name` to every connection, present and future, in direction `stream`.
    pub fn add_toxic(&self, name: &str, stream: Stream, toxic: Toxic) {
        let (kind, attributes) = toxic.type_and_attributes();
        let body = json!({
            "name": name,
            "type": kind,
            "stream": stream.as_str(),
            "toxicity": 1.0,
            "attributes": attributes,
        });
        self.api
            .call(
                "POST",
                &format!("/proxies/{}/toxics", self.name),
                Some(&body),
                &[200, 201],
            )
            .unwrap_or_else(|err| panic!("add toxic {name} to {}: {err}", self.name));
    }

    pub fn remove_toxic(&self, name: &str) {
        self.api
            .call(
                "DELETE",
                &format!("/proxies/{}/toxics/{name}", self.name),
                None,
                &[200, 204],
            )
            .unwrap_or_else(|err| panic!("remove toxic {name} from {}: {err}", self.name));
    }

    /// Disabled, the proxy closes its connections, dropping whatever data its toxics held back,
    /// and refuses new ones (the server is gone); enabled again, it listens on the same address.
    pub fn set_enabled(&self, enabled: bool) {
        let (_, reply) = self
            .api
            .call(
                "POST",
                &format!("/proxies/{}", self.name),
                Some(&json!({"enabled": enabled})),
                &[200],
            )
            .unwrap_or_else(|err| panic!("set {} enabled={enabled}: {err}", self.name));
        if enabled {
            let reply: Value = serde_json::from_str(&reply).unwrap_or_default();
            assert_eq!(
                reply["listen"].as_str(),
                Some(self.address().as_str()),
                "{} listens where it did before it was disabled",
                self.name
            );
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let deleted = self.api.call(
            "DELETE",
            &format!("/proxies/{}", self.name),
            None,
            &[200, 204, 404],
        );
        if let Err(err) = deleted {
            eprintln!("could not delete toxiproxy proxy {}: {err}", self.name);
        }
    }
}
