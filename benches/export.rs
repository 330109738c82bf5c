//! Export benchmark: N interactions (default 1,000,000) through `scheduled-exports export` to the
//! test bed's sshd, against references measured in the same process on the same link:
//!
//! - `COPY alone`: `psql -c "COPY (same rows) TO STDOUT CSV HEADER" > /dev/null`, every cell rendered
//!   by the server (the file a script would write);
//! - `put alone`: OpenSSH `sftp` putting a file of the same bytes;
//! - `baseline`: the two in sequence, as a script would (`psql ... > file; sftp put file`).
//!
//! Each link is measured in turn: the bed's sshd directly, then through toxiproxy at 20 ms each
//! way (a 40 ms round trip), then at 40 ms each way capped at 100 Mbit/s. The database stays
//! local (it is next to the cluster; the institution's server is not). The export writes to the
//! artifact store as in production (`BENCH_ARTIFACT_STORE=file` keeps it on local disk).
//!
//! Then peak RSS at `BENCH_LARGE_ROWS` (default 10,000,000; 0 skips it), the direct link only.
//!
//! Run with the test bed up: `cargo bench --bench export` (`BENCH_ROWS=200000` for a quicker
//! run; `BENCH_LINKS=direct` or `BENCH_LINKS=20,40` for some links only; `BENCH_ROUNDS`, default
//! 5). Each round measures COPY alone, the baseline, the export and put alone back to back; a
//! link's line gives the medians of the times and of each round's own ratios. The targets are
//! export at most 1.1x the slower single stage and at most 1.0x the baseline across the WAN
//! links, and a peak RSS under 64 MiB.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fixture::{Fixture, load_sample_data};
use common::toxiproxy::{Proxy, Stream, Toxic};
use common::*;
use scheduled_exports::export::window::text_window_query;
use scheduled_exports::resource::FileType;
use serde_json::json;

/// Rounds per link (`BENCH_ROUNDS`); every figure is a median over them.
const ROUNDS: usize = 5;
const SLOT: &str = "2026-11-30T12:00:00Z";
const FILE: &str = "interactions-20261130T120000Z.csv";

/// A way to the SFTP server.
struct Link {
    label: &'static str,
    /// Added each way.
    latency_ms: u64,
    /// Each way; `None`: as fast as the machine goes.
    rate_kb_per_s: Option<u64>,
}

const LINKS: [Link; 3] = [
    Link {
        label: "direct",
        latency_ms: 0,
        rate_kb_per_s: None,
    },
    Link {
        label: "20 ms each way",
        latency_ms: 20,
        rate_kb_per_s: None,
    },
    Link {
        label: "40 ms each way, 100 Mbit/s",
        latency_ms: 40,
        rate_kb_per_s: Some(12_500),
    },
];

/// Where the SFTP server is reached on one link, and the Secret with its known_hosts entry.
struct Endpoint {
    host: String,
    port: u16,
    secret: String,
    known_hosts: std::path::PathBuf,
    _proxy: Option<Proxy>,
}

fn main() {
    let rows: u64 = env_number("BENCH_ROWS", 1_000_000);
    let large_rows: u64 = env_number("BENCH_LARGE_ROWS", 10_000_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let fixture = runtime.block_on(Fixture::new("sx-bench", rows));
    eprintln!(
        "generated {rows} interactions in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let work = tempfile::tempdir().expect("work dir");
    let artifacts = tempfile::tempdir().expect("artifact dir");
    let artifact_store = match std::env::var("BENCH_ARTIFACT_STORE").as_deref() {
        Ok("file") => format!("file://{}", artifacts.path().display()),
        _ => fixture.artifact_store.clone(),
    };
    let toxiproxy = common::toxiproxy::from_testbed().expect("the bench needs toxiproxy");
    let query = text_window_query(FileType::Interactions, None);
    let spooled = work.path().join("spooled.csv");

    let rounds = env_number("BENCH_ROUNDS", ROUNDS as u64).max(1) as usize;
    let mut export_number = 0;
    let mut bytes = 0;
    let mut report = Vec::new();
    // `BENCH_LINKS=direct` (labels' first words, comma-separated) measures only those links.
    let wanted = std::env::var("BENCH_LINKS").ok();
    let links = LINKS.iter().filter(|link| {
        wanted.as_deref().is_none_or(|wanted| {
            let first = link.label.split_whitespace().next().unwrap_or_default();
            wanted.split(',').any(|word| word.trim() == first)
        })
    });
    for link in links {
        let endpoint = runtime.block_on(endpoint(&fixture, &toxiproxy, link, work.path()));
        let (mut copy_alone, mut put, mut baseline, mut export) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rss = 0;
        for round in 0..rounds {
            // Every reference is measured again in each round, next to that round's export, so
            // each ratio compares runs a few seconds apart on this noisy machine.
            let started = Instant::now();
            psql_copy(&fixture.database_url, &query, "/dev/null");
            copy_alone.push(started.elapsed());
            let started = Instant::now();
            psql_copy(
                &fixture.database_url,
                &query,
                &spooled.display().to_string(),
            );
            sftp_put(&endpoint, &spooled, &fixture.remote_dir, "baseline.csv");
            baseline.push(started.elapsed());

            export_number += 1;
            let name = format!("bench-{export_number}");
            runtime.block_on(fixture.create_object(
                &name,
                json!({"host": endpoint.host, "port": endpoint.port, "secretRef": {"name": endpoint.secret}}),
            ));
            let (took, peak) = run_export(&fixture, &name, &artifact_store, work.path());
            export.push(took);
            rss = rss.max(peak);

            // The put-alone reference sends the very bytes the export delivered.
            let delivered = work.path().join(FILE);
            std::fs::rename(fixture.local_dir.join(FILE), &delivered).expect("the delivered file");
            bytes = std::fs::metadata(&delivered).map(|m| m.len()).unwrap_or(0);
            let started = Instant::now();
            sftp_put(&endpoint, &delivered, &fixture.remote_dir, "put-alone.csv");
            put.push(started.elapsed());
            for done in [delivered, spooled.clone()] {
                let _ = std::fs::remove_file(done);
            }
            for name in ["baseline.csv", "put-alone.csv"] {
                let _ = std::fs::remove_file(fixture.local_dir.join(name));
            }
            eprintln!(
                "{} round {round}: COPY alone {:.2}s, baseline {:.2}s, put alone {:.2}s, export {:.2}s, export peak RSS {:.1} MiB",
                link.label,
                copy_alone[round].as_secs_f64(),
                baseline[round].as_secs_f64(),
                put[round].as_secs_f64(),
                export[round].as_secs_f64(),
                peak as f64 / 1024.0
            );
        }
        // The ratios are the medians of each round's own ratio.
        let over_slower = median_ratio(
            (0..rounds).map(|round| (export[round], copy_alone[round].max(put[round]))),
        );
        let over_baseline = median_ratio((0..rounds).map(|round| (export[round], baseline[round])));
        let (copy, put, baseline, export) = (
            median(&mut copy_alone),
            median(&mut put),
            median(&mut baseline),
            median(&mut export),
        );
        report.push(format!(
            "{:<28} COPY alone {:>6.2}s  put alone {:>6.2}s  baseline {:>6.2}s  export {:>6.2}s  \
             export/slower stage {:.2}x  export/baseline {:.2}x  peak RSS {:.1} MiB",
            link.label,
            copy.as_secs_f64(),
            put.as_secs_f64(),
            baseline.as_secs_f64(),
            export.as_secs_f64(),
            over_slower,
            over_baseline,
            rss as f64 / 1024.0
        ));
    }
    println!(
        "export bench: {rows} interactions ({:.1} MiB file), artifact store {artifact_store}",
        bytes as f64 / (1024.0 * 1024.0)
    );
    for line in &report {
        println!("{line}");
    }

    if large_rows > 0 {
        let started = Instant::now();
        load_sample_data(&fixture.database_url, large_rows - rows, 11);
        eprintln!(
            "generated {} more interactions in {:.1}s",
            large_rows - rows,
            started.elapsed().as_secs_f64()
        );
        runtime.block_on(fixture.create_object("bench-large", json!({})));
        let (took, peak) = run_export(&fixture, "bench-large", &artifact_store, work.path());
        let bytes = std::fs::metadata(fixture.local_dir.join(FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        let _ = std::fs::remove_file(fixture.local_dir.join(FILE));
        println!(
            "{large_rows} interactions ({:.0} MiB) direct: export {:.1}s, peak RSS {:.1} MiB",
            bytes as f64 / (1024.0 * 1024.0),
            took.as_secs_f64(),
            peak as f64 / 1024.0
        );
    }
    // The bench's data is large (gigabytes at 10,000,000 rows, on the database, its standby and
    // the store): none of it outlives the run.
    runtime.block_on(async {
        let store = scheduled_exports::adapters::artifacts::ArtifactStore::from_url_with(
            &artifact_store,
            &testbed_s3_options(),
        )
        .expect("artifact store");
        let names = (1..=export_number)
            .map(|number| format!("bench-{number}"))
            .chain(["bench-large".to_string()]);
        for name in names {
            for key in store
                .list(&fixture.namespace, &name)
                .await
                .unwrap_or_default()
            {
                let _ = store.delete(&key).await;
            }
        }
        admin_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            database_name(&fixture.database_url)
        ))
        .await;
    });
    runtime.block_on(fixture.cleanup());
}

/// The SFTP server on `link`: the bed's sshd, or a toxiproxy proxy in front of it with the
/// link's toxics and a Secret whose known_hosts names the proxy's address.
async fn endpoint(
    fixture: &Fixture,
    toxiproxy: &common::toxiproxy::Toxiproxy,
    link: &Link,
    work: &std::path::Path,
) -> Endpoint {
    if link.latency_ms == 0 && link.rate_kb_per_s.is_none() {
        return Endpoint {
            host: env_var("SFTP_HOST"),
            port: env_var("SFTP_PORT").parse().expect("port"),
            secret: "sftp-credentials".to_string(),
            known_hosts: env_var("SFTP_KNOWN_HOSTS_FILE").into(),
            _proxy: None,
        };
    }
    let proxy = toxiproxy.create_proxy(
        &format!("sx-bench-{}-{}", link.latency_ms, random_suffix()),
        &format!("{}:{}", env_var("SFTP_HOST"), env_var("SFTP_PORT")),
    );
    for (stream, name) in [(Stream::Upstream, "up"), (Stream::Downstream, "down")] {
        proxy.add_toxic(
            &format!("latency-{name}"),
            stream,
            Toxic::Latency {
                latency_ms: link.latency_ms,
                jitter_ms: 0,
            },
        );
        if let Some(rate_kb_per_s) = link.rate_kb_per_s {
            proxy.add_toxic(
                &format!("bandwidth-{name}"),
                stream,
                Toxic::Bandwidth { rate_kb_per_s },
            );
        }
    }
    let entry = proxy.sshd_known_hosts_line();
    let known_hosts_file = work.join(format!("known_hosts-{}", proxy.port));
    std::fs::write(&known_hosts_file, &entry).expect("write known_hosts");
    let secret = format!("sftp-proxied-{}", proxy.port);
    let mut data = sftp_secret_data();
    data.retain(|(key, _)| *key != "knownHosts");
    data.push(("knownHosts", entry));
    create_secret(&fixture.client, &fixture.namespace, &secret, &data).await;
    Endpoint {
        host: proxy.host.clone(),
        port: proxy.port,
        secret,
        known_hosts: known_hosts_file,
        _proxy: Some(proxy),
    }
}

fn psql_copy(database_url: &str, query: &str, out: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "psql -X -q \"$DATABASE_URL\" -c \"COPY ({query}) TO STDOUT CSV HEADER\" > '{out}'"
        ))
        .env("DATABASE_URL", database_url)
        .status()
        .expect("psql");
    assert!(status.success(), "psql COPY failed");
}

fn sftp_put(endpoint: &Endpoint, local: &std::path::Path, remote_dir: &str, name: &str) {
    let status = Command::new("sftp")
        .args([
            "-q",
            "-b",
            "-",
            "-i",
            &env_var("SFTP_PRIVATE_KEY_FILE"),
            "-P",
            &endpoint.port.to_string(),
        ])
        .args([
            "-o",
            &format!("UserKnownHostsFile={}", endpoint.known_hosts.display()),
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg(format!("{}@{}", env_var("SFTP_USER"), endpoint.host))
        .stdin_bytes(format!("put {} {remote_dir}/{name}\n", local.display()))
        .expect("sftp put");
    assert!(status.success(), "sftp put failed");
}

/// Runs one export; its wall time and peak RSS (KiB).
fn run_export(
    fixture: &Fixture,
    name: &str,
    artifact_store: &str,
    spool: &std::path::Path,
) -> (Duration, u64) {
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M"])
        .arg(env!("CARGO_BIN_EXE_scheduled-exports"))
        .args(["export", "--namespace", &fixture.namespace, "--name", name])
        .args(["--slot", SLOT, "--artifact-store", artifact_store])
        .args(["--spool-dir", &spool.display().to_string()])
        .env_clear()
        .envs(binary_env())
        .env("RUST_LOG", "info")
        .output()
        .expect("run export");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "export failed: {stderr}");
    if let Some(line) = stderr
        .lines()
        .find(|line| line.contains("stream's time went"))
    {
        eprintln!("  {}", line.trim());
    }
    let rss = stderr
        .lines()
        .find_map(|line| line.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("/usr/bin/time reports maxrss");
    (took, rss)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The median of `took / reference` over the rounds.
fn median_ratio(rounds: impl Iterator<Item = (Duration, Duration)>) -> f64 {
    let mut ratios: Vec<f64> = rounds
        .map(|(took, reference)| took.as_secs_f64() / reference.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// `Command::status` with bytes on stdin.
trait StdinBytes {
    fn stdin_bytes(&mut self, input: String) -> std::io::Result<std::process::ExitStatus>;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, input: String) -> std::io::Result<std::process::ExitStatus> {
        use std::io::Write;
        let mut child = self.stdin(std::process::Stdio::piped()).spawn()?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())?;
        child.wait()
    }
}
