//! Export benchmark (issue: one export end to end): N interactions (default 1,000,000) through
//! `scheduled-exports export` to the test bed's sshd, against a baseline run in the same process:
//! `psql -c "COPY (same query) TO STDOUT CSV HEADER" > file` followed by OpenSSH `sftp` put.
//!
//! Run with the test bed up: `cargo bench --bench export` (`BENCH_ROWS=200000` for a quicker run).
//! Reports wall-time ratio (export / baseline, median of the rounds) and the export's peak RSS.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fixture::Fixture;
use common::*;
use scheduled_exports::export::window::window_query;
use scheduled_exports::resource::FileType;
use serde_json::json;

const ROUNDS: usize = 3;

fn main() {
    let rows: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let fixture = runtime.block_on(Fixture::new("sx-bench", rows));
    eprintln!(
        "generated {rows} interactions in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let spool = tempfile::tempdir().expect("spool dir");
    // `BENCH_ARTIFACT_STORE=file` keeps artifacts on local disk instead of the test bed's MinIO,
    // which otherwise competes for the same two cores as PostgreSQL and sshd.
    let artifacts = tempfile::tempdir().expect("artifact dir");
    let artifact_store = match std::env::var("BENCH_ARTIFACT_STORE").as_deref() {
        Ok("file") => format!("file://{}", artifacts.path().display()),
        _ => fixture.artifact_store.clone(),
    };
    let query = window_query(FileType::Interactions, None);

    let mut baseline = Vec::new();
    let mut export = Vec::new();
    let mut peak_rss_kib = 0u64;
    let mut bytes = 0u64;
    for round in 0..ROUNDS {
        // Baseline: psql's COPY into a file, then OpenSSH's sftp put of that file.
        let file = spool.path().join(format!("baseline-{round}.csv"));
        let started = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "psql -X -q '{}' -c \"COPY ({query}) TO STDOUT CSV HEADER\" > '{}'",
                fixture.database_url,
                file.display()
            ))
            .status()
            .expect("psql");
        assert!(status.success(), "psql COPY failed");
        let status = Command::new("sftp")
            .args([
                "-q",
                "-b",
                "-",
                "-i",
                &env_var("SFTP_PRIVATE_KEY_FILE"),
                "-P",
                &env_var("SFTP_PORT"),
            ])
            .args([
                "-o",
                &format!("UserKnownHostsFile={}", env_var("SFTP_KNOWN_HOSTS_FILE")),
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg(format!("{}@{}", env_var("SFTP_USER"), env_var("SFTP_HOST")))
            .stdin_bytes(format!(
                "put {} {}/baseline-{round}.csv\n",
                file.display(),
                fixture.remote_dir
            ))
            .expect("sftp put");
        assert!(status.success(), "sftp put failed");
        baseline.push(started.elapsed());

        // The export: same rows, same server, plus the artifact store and the status writes.
        let name = format!("bench-{round}");
        runtime.block_on(fixture.create_object(&name, json!({})));
        let started = Instant::now();
        let output = Command::new("/usr/bin/time")
            .args(["-f", "maxrss_kib=%M"])
            .arg(env!("CARGO_BIN_EXE_scheduled-exports"))
            .args([
                "export",
                "--namespace",
                &fixture.namespace,
                "--name",
                &name,
                "--slot",
                "2026-11-30T12:00:00Z",
            ])
            .args(["--artifact-store", &artifact_store])
            .args(["--spool-dir", &spool.path().display().to_string()])
            .env_clear()
            .envs(binary_env())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run export");
        export.push(started.elapsed());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "export failed: {stderr}");
        let rss = stderr
            .lines()
            .find_map(|line| line.strip_prefix("maxrss_kib="))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("/usr/bin/time reports maxrss");
        peak_rss_kib = peak_rss_kib.max(rss);
        let delivered = fixture.local_dir.join("interactions-20261130T120000Z.csv");
        bytes = std::fs::metadata(&delivered).map(|m| m.len()).unwrap_or(0);
        for done in [
            delivered,
            fixture.local_dir.join(format!("baseline-{round}.csv")),
            file,
        ] {
            let _ = std::fs::remove_file(done);
        }
        eprintln!(
            "round {round}: baseline {:.2}s, export {:.2}s, export peak RSS {:.1} MiB",
            baseline[round].as_secs_f64(),
            export[round].as_secs_f64(),
            rss as f64 / 1024.0
        );
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (baseline, export) = (median(&mut baseline), median(&mut export));
    println!(
        "export bench ({artifact_store}): {rows} interactions, {:.1} MiB file; baseline (psql COPY + sftp put) {:.2}s; export {:.2}s; ratio export/baseline {:.2}x; export peak RSS {:.1} MiB",
        bytes as f64 / (1024.0 * 1024.0),
        baseline.as_secs_f64(),
        export.as_secs_f64(),
        export.as_secs_f64() / baseline.as_secs_f64(),
        peak_rss_kib as f64 / 1024.0
    );
    runtime.block_on(fixture.cleanup());
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
