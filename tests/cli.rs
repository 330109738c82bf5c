//! The binary's command line: `next`, `crd`, `--help`, exit statuses and one-line errors
//!. No cluster needed.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run the binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn next_prints_utc_and_local_instants_across_spring_forward() {
    let output = run(&[
        "next",
        "--time",
        "02:30",
        "--time-zone",
        "America/New_York",
        "--after",
        "2026-03-06T12:00:00Z",
        "--count",
        "3",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "2026-03-07T07:30:00Z 2026-03-07T02:30:00-05:00\n\
         2026-03-08T07:30:00Z 2026-03-08T03:30:00-04:00\n\
         2026-03-09T06:30:00Z 2026-03-09T02:30:00-04:00\n"
    );
}

#[test]
fn next_runs_a_repeated_time_once_at_its_first_occurrence() {
    let output = run(&[
        "next",
        "--time",
        "01:30",
        "--time-zone",
        "America/New_York",
        "--after",
        "2026-10-31T12:00:00Z",
        "--count",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "2026-11-01T05:30:00Z 2026-11-01T01:30:00-04:00\n\
         2026-11-02T06:30:00Z 2026-11-02T01:30:00-05:00\n"
    );
}

#[test]
fn next_defaults_to_one_run_after_now() {
    let output = run(&["next", "--time", "07:00", "--time-zone", "UTC"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    let utc = text.split_whitespace().next().expect("first field");
    assert!(utc.ends_with("T07:00:00Z"), "{text}");
    let instant = chrono::DateTime::parse_from_rfc3339(utc).expect("RFC 3339");
    let now = chrono::Utc::now();
    assert!(
        instant > now && instant <= now + chrono::Duration::days(1),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_value() {
    for (args, value) in [
        (
            vec!["next", "--time", "07:15", "--time-zone", "UTC"],
            "07:15",
        ),
        (
            vec!["next", "--time", "24:00", "--time-zone", "UTC"],
            "24:00",
        ),
        (vec!["next", "--time", "7:00", "--time-zone", "UTC"], "7:00"),
        (
            vec!["next", "--time", "07:00", "--time-zone", "Mars/Olympus"],
            "Mars/Olympus",
        ),
        (
            vec![
                "next",
                "--time",
                "07:00",
                "--time-zone",
                "UTC",
                "--after",
                "yesterday",
            ],
            "yesterday",
        ),
        (
            vec![
                "next",
                "--time",
                "07:00",
                "--time-zone",
                "UTC",
                "--count",
                "0",
            ],
            "0",
        ),
        (vec!["next", "--time-zone", "UTC"], "--time"),
        (
            vec![
                "export",
                "--namespace",
                "ns",
                "--name",
                "x",
                "--slot",
                "2026-13-01T00:00:00Z",
            ],
            "2026-13-01",
        ),
        (vec!["no-such-command"], "no-such-command"),
    ] {
        let output = run(&args);
        let err = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?} should exit 2; stderr: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line expected: {err}"
        );
        assert!(
            err.contains(value),
            "{args:?}: stderr does not name {value}: {err}"
        );
        assert!(stdout(&output).is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn help_is_available_for_every_subcommand() {
    for subcommand in ["controller", "export", "crd", "next", "sample-data"] {
        let output = run(&[subcommand, "--help"]);
        assert!(
            output.status.success(),
            "{subcommand} --help: {}",
            stderr(&output)
        );
        assert!(
            stdout(&output).contains("Usage: scheduled-exports"),
            "{subcommand}"
        );
    }
    let output = run(&["--help"]);
    assert!(output.status.success());
    for subcommand in ["controller", "export", "crd", "next", "sample-data"] {
        assert!(
            stdout(&output).contains(subcommand),
            "top-level help lists {subcommand}"
        );
    }
}

#[test]
fn the_kubectl_plugin_commands_are_also_a_subcommand() {
    for command in [
        vec!["sx"],
        vec!["sx", "status"],
        vec!["sx", "run"],
        vec!["sx", "next"],
        vec!["sx", "files"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let output = run(&args);
        assert!(output.status.success(), "{command:?}: {}", stderr(&output));
        let usage = format!("Usage: scheduled-exports {}", command.join(" "));
        assert!(
            stdout(&output).contains(&usage),
            "{command:?}: {}",
            stdout(&output)
        );
    }
    let output = run(&["sx", "next", "daily", "--count", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim_end().lines().count(),
        1,
        "{}",
        stderr(&output)
    );
}

#[test]
fn crd_prints_the_committed_file() {
    let output = run(&["crd"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crds/scheduledexports.exports.crm.dev.yaml"),
    )
    .expect("crds/scheduledexports.exports.crm.dev.yaml is committed");
    assert!(
        stdout(&output) == committed,
        "crds/ is stale: regenerate it with `cargo run -- crd > crds/scheduledexports.exports.crm.dev.yaml`"
    );
}
