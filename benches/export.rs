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

use common::*;
use scheduled_exports::resource::FileType;
use scheduled_exports::source::window_query;
use serde_json::json;

const ROUNDS: usize = 3;

fn main() {
    let rows: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (namespace, database_url, remote_dir, local_dir) = runtime.block_on(setup(rows));
    let spool = tempfile::tempdir().expect("spool dir");
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
                "psql -X -q '{database_url}' -c \"COPY ({query}) TO STDOUT CSV HEADER\" > '{}'",
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
                "put {} {remote_dir}/baseline-{round}.csv\n",
                file.display()
            ))
            .expect("sftp put");
        assert!(status.success(), "sftp put failed");
        baseline.push(started.elapsed());

        // The export: same rows, same server, plus the artifact store and the status write.
        let name = format!("bench-{round}");
        runtime.block_on(create_object(&namespace, &name, &remote_dir));
        let started = Instant::now();
        let output = Command::new("/usr/bin/time")
            .args(["-f", "maxrss_kib=%M"])
            .arg(env!("CARGO_BIN_EXE_scheduled-exports"))
            .args([
                "export",
                "--namespace",
                &namespace,
                "--name",
                &name,
                "--slot",
                "2026-11-30T12:00:00Z",
            ])
            .args([
                "--artifact-store",
                &format!("s3://{}/bench-{namespace}", env_var("S3_BUCKET")),
            ])
            .args(["--spool-dir", &spool.path().display().to_string()])
            .env("KUBECONFIG", kubeconfig_path())
            .env("AWS_ACCESS_KEY_ID", env_var("AWS_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", env_var("AWS_SECRET_ACCESS_KEY"))
            .env("AWS_REGION", env_var("AWS_REGION"))
            .env("AWS_ENDPOINT_URL", env_var("S3_ENDPOINT"))
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
        bytes = std::fs::metadata(local_dir.join("interactions-20261130T120000Z.csv"))
            .map(|m| m.len())
            .unwrap_or(0);
        let _ = std::fs::remove_file(local_dir.join("interactions-20261130T120000Z.csv"));
        let _ = std::fs::remove_file(local_dir.join(format!("baseline-{round}.csv")));
        let _ = std::fs::remove_file(&file);
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
        "export bench: {rows} interactions, {:.1} MiB file; baseline (psql COPY + sftp put) {:.2}s; export {:.2}s; ratio export/baseline {:.2}x; export peak RSS {:.1} MiB",
        bytes as f64 / (1024.0 * 1024.0),
        baseline.as_secs_f64(),
        export.as_secs_f64(),
        export.as_secs_f64() / baseline.as_secs_f64(),
        peak_rss_kib as f64 / 1024.0
    );
    runtime.block_on(async {
        delete_namespace(&client().await, &namespace).await;
    });
    let _ = std::fs::remove_dir_all(&local_dir);
}

async fn setup(rows: u64) -> (String, String, String, std::path::PathBuf) {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, "sx-bench").await;
    let database_url = create_database("sx_bench").await;
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
        .args([
            "sample-data",
            "--database-url",
            &database_url,
            "--interactions",
            &rows.to_string(),
            "--proposals",
            "0",
        ])
        .output()
        .expect("sample-data");
    assert!(
        output.status.success(),
        "sample-data: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "generated {rows} interactions in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let (remote_dir, local_dir) = sftp_directory(&namespace);
    create_secret(
        &client,
        &namespace,
        "crm-database",
        &[("url", database_url.clone())],
    )
    .await;
    create_secret(&client, &namespace, "sftp-credentials", &sftp_secret_data()).await;
    (namespace, database_url, remote_dir, local_dir)
}

async fn create_object(namespace: &str, name: &str, remote_dir: &str) {
    let client = client().await;
    let api: kube::Api<scheduled_exports::resource::ScheduledExport> =
        kube::Api::namespaced(client, namespace);
    let object = serde_json::from_value(json!({
        "apiVersion": "exports.crm.dev/v1alpha1",
        "kind": "ScheduledExport",
        "metadata": {"name": name},
        "spec": {
            "fileType": "interactions",
            "time": "07:00",
            "timeZone": "UTC",
            "source": {"secretRef": {"name": "crm-database"}},
            "destination": {"sftp": {
                "host": env_var("SFTP_HOST"),
                "port": env_var("SFTP_PORT").parse::<u16>().expect("port"),
                "username": env_var("SFTP_USER"),
                "directory": remote_dir,
                "secretRef": {"name": "sftp-credentials"},
            }},
        }
    }))
    .expect("object");
    api.create(&Default::default(), &object)
        .await
        .expect("create ScheduledExport");
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
