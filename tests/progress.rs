//! Progress on a terminal: `sample-data` and `export` run by hand under a pseudo-terminal
//! (`script` from util-linux) draw progress lines on standard error; without a terminal, or in a
//! Job, standard error holds the logs alone.

mod common;

use std::process::Output;

use common::fixture::Fixture;
use common::*;

/// The redraw prefix of a progress line: carriage return, erase line.
const REDRAW: &str = "\r\x1b[K";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A word as the shell reads it, whatever it holds.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs the binary with `args` on a pseudo-terminal; everything it wrote to the terminal (stdout
/// and stderr both) comes back as stdout.
fn run_on_terminal(args: &[&str], extra_env: &[(&str, String)]) -> Output {
    let command = std::iter::once(env!("CARGO_BIN_EXE_scheduled-exports"))
        .chain(args.iter().copied())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ");
    std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_clear()
        .envs(binary_env())
        .env("TERM", "xterm")
        .envs(extra_env.iter().cloned())
        .output()
        .expect("run script (util-linux)")
}

fn sample_data_args(url: &str) -> Vec<&str> {
    vec![
        "sample-data",
        "--database-url",
        url,
        "--interactions",
        "100000",
        "--proposals",
        "10",
    ]
}

#[tokio::test]
async fn sample_data_shows_progress_on_a_terminal_only() {
    let url = create_database("sx_progress").await;
    let output = run_on_terminal(&sample_data_args(&url), &[]);
    let terminal = text(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    // The final line of each table, then the summary on a line of its own.
    for table in [
        "proposals: loaded: 10 rows, ",
        "interactions: loaded: 100,000 rows, ",
    ] {
        assert!(
            terminal.contains(&format!("{REDRAW}{table}")),
            "{terminal:?}"
        );
    }
    assert!(terminal.contains(" rows/s\r\n"), "{terminal:?}");
    assert!(
        terminal.contains("\r\nschema applied; added 100000 interactions"),
        "{terminal:?}"
    );

    // Not a terminal: no progress, only the logs and the summary.
    let output = run_binary(&sample_data_args(&url), &[]);
    let err = text(&output.stderr);
    assert!(output.status.success(), "{err}");
    assert!(!err.contains('\r') && !err.contains("loaded:"), "{err:?}");
    assert!(text(&output.stdout).starts_with("schema applied;"));

    // A terminal, but JSON logs for a collector: no progress either.
    let output = run_on_terminal(&sample_data_args(&url), &[("LOG_FORMAT", "json".into())]);
    let terminal = text(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    assert!(!terminal.contains("loaded:"), "{terminal:?}");
}

#[tokio::test]
async fn export_by_hand_shows_rows_and_bytes_on_a_terminal_and_nothing_in_a_job() {
    let fixture = Fixture::new("sx-progress", 5).await;
    let export = |slot: &str| {
        vec![
            "export".to_string(),
            "--namespace".to_string(),
            fixture.namespace.clone(),
            "--name".to_string(),
            "daily".to_string(),
            "--slot".to_string(),
            slot.to_string(),
            "--artifact-store".to_string(),
            fixture.artifact_store.clone(),
        ]
    };
    let args = export("2026-11-30T12:00:00Z");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_on_terminal(&args, &[]);
    let terminal = text(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    let file = "interactions-20261130T120000Z.csv";
    assert!(
        terminal.contains(&format!("{REDRAW}{file}: exported: 5 rows, ")),
        "{terminal:?}"
    );
    let size = std::fs::metadata(fixture.local_dir.join(file))
        .expect("delivered")
        .len();
    let size = scheduled_exports::progress::human_bytes(size);
    let sent = format!("{REDRAW}{file}: sent: {size} of {size} (100%), ");
    assert!(terminal.contains(&sent), "{terminal:?}");

    // On a terminal, but in a Job (the operator sets JOB_NAME): logs only.
    let args = export("2026-12-01T12:00:00Z");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_on_terminal(&args, &[("JOB_NAME", "daily-202612011200".into())]);
    let terminal = text(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    assert!(!terminal.contains(REDRAW), "{terminal:?}");
    assert!(terminal.contains("export delivered"), "{terminal:?}");

    // Not on a terminal: logs only.
    let output = fixture.export("daily", "2026-12-02T12:00:00Z");
    let err = text(&output.stderr);
    assert!(output.status.success(), "{err}");
    assert!(
        !err.contains('\r') && !err.contains(": exported:"),
        "{err:?}"
    );
    assert!(err.contains("export delivered"), "{err}");
    fixture.cleanup().await;
}
