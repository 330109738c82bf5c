//! The kubectl plugin's command line: `kubectl sx ...` when the binary is installed or linked as
//! `kubectl-sx`, and the same commands as `scheduled-exports sx ...`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::api::Api;

use super::commands::CommandError;
use crate::clock::{Clock, SystemClock};
use crate::plugin::render::{self, ObjectSummary};
use crate::plugin::run::RunProgress;
use crate::plugin::{self, Connection, PluginError};
use crate::resource::ScheduledExport;

/// The file name kubectl looks for on the PATH to run `kubectl sx`.
pub const PLUGIN_FILE_NAME: &str = "kubectl-sx";

/// Whether the binary was started as the kubectl plugin (its argv[0] file name is `kubectl-sx`).
pub fn invoked_as_plugin(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name.strip_suffix(".exe").unwrap_or(name) == PLUGIN_FILE_NAME)
}

/// Status, runs, schedules and delivered files of ScheduledExports.
#[derive(Debug, Parser)]
#[command(name = "kubectl sx", bin_name = "kubectl sx", version)]
pub struct KubectlSx {
    #[command(flatten)]
    pub args: SxArgs,
}

#[derive(Debug, Args)]
pub struct SxArgs {
    /// Namespace of the ScheduledExports (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path of the kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SxCommand,
}

#[derive(Debug, Subcommand)]
pub enum SxCommand {
    /// Next run (UTC and local), last run, delivery, retention and conditions of one object or
    /// of every object in the namespace.
    Status(StatusArgs),
    /// Start a run now (a fresh run-now token); with --wait, follow it to its end.
    Run(RunArgs),
    /// The next run instants of an object, UTC and local.
    Next(NextObjectArgs),
    /// The object's files on its SFTP server: in place, or moved into a sub-directory (read-only).
    Files(FilesArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The ScheduledExport (default: every one in the namespace).
    pub name: Option<String>,
    /// Every namespace's ScheduledExports.
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The ScheduledExport to run.
    pub name: String,
    /// Wait until the run ends and print the delivered file; exit 1 if the run failed.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 90s or 15m.
    #[arg(long, default_value = "15m", value_parser = super::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct NextObjectArgs {
    /// The ScheduledExport.
    pub name: String,
    /// How many runs to print.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// The ScheduledExport.
    pub name: String,
    /// Bound on each SFTP step, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub timeout: std::time::Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Runs one plugin command.
pub async fn run(args: SxArgs) -> Result<(), CommandError> {
    run_command(args).await.map_err(|err| {
        if err.is_bad_input() {
            CommandError::BadInput(err.to_string())
        } else {
            CommandError::Failed(err.to_string())
        }
    })
}

async fn run_command(args: SxArgs) -> Result<(), PluginError> {
    let connection = Connection {
        kubeconfig: args.kubeconfig,
        context: args.context,
        namespace: args.namespace,
    };
    let (client, namespace) = plugin::connect(&connection).await?;
    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), &namespace);
    let clock = SystemClock;
    match args.command {
        SxCommand::Status(status) => {
            let scope = (!status.all_namespaces).then_some(namespace.as_str());
            let (objects, unreadable) = match &status.name {
                Some(name) => (
                    vec![plugin::object(&client, &namespace, name).await?],
                    vec![],
                ),
                None => plugin::objects(&client, scope, None).await?,
            };
            for object in unreadable {
                eprintln!("warning: {}", PluginError::Unreadable(object));
            }
            let now = clock.now();
            let summaries: Vec<ObjectSummary> = objects
                .iter()
                .map(|object| render::summarize(object, now))
                .collect();
            match (status.output, status.name.is_some()) {
                (OutputFormat::Json, true) => {
                    println!("{}", serde_json::to_string_pretty(&summaries[0])?)
                }
                (OutputFormat::Json, false) => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"items": summaries}))?
                ),
                (OutputFormat::Table, _) if summaries.is_empty() && status.all_namespaces => {
                    eprintln!("No ScheduledExports found.")
                }
                (OutputFormat::Table, _) if summaries.is_empty() => {
                    eprintln!("No ScheduledExports in namespace {namespace}.")
                }
                (OutputFormat::Table, _) => print!(
                    "{}",
                    render::status_table(&summaries, now, status.all_namespaces)
                ),
            }
        }
        SxCommand::Next(next) => {
            let object = plugin::object(&client, &namespace, &next.name).await?;
            let runs = render::next_runs(&object, clock.now(), next.count as usize)?;
            if object.spec.suspend {
                eprintln!(
                    "{} is suspended: these are the instants it runs at once resumed",
                    next.name
                );
            }
            print!("{}", render::next_lines(&runs));
        }
        SxCommand::Files(files) => {
            let object = plugin::object(&client, &namespace, &files.name).await?;
            let (entries, incomplete) =
                plugin::files::list_files(&client, &object, files.timeout).await?;
            match files.output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
                OutputFormat::Table => print!("{}", render::files_table(&entries, clock.now())),
            }
            if let Some(place) = incomplete {
                eprintln!("warning: the listing is incomplete: could not look into {place}");
            }
        }
        SxCommand::Run(run) => {
            let request = plugin::run::request_run(&api, &run.name, clock.now()).await?;
            eprintln!(
                "run requested for {namespace}/{} (run-now token {}); Job {} runs it",
                run.name, request.token, request.job_name
            );
            if !run.wait {
                return Ok(());
            }
            let progress = plugin::run::wait_for_run(
                &client,
                &api,
                &namespace,
                &run.name,
                &request,
                run.timeout,
            )
            .await?;
            match progress {
                RunProgress::Succeeded {
                    file_name,
                    rows,
                    bytes,
                } => {
                    let count = |value: Option<u64>| value.map_or("?".into(), |v| v.to_string());
                    println!("{file_name} {} rows {} bytes", count(rows), count(bytes));
                }
                RunProgress::Failed(why) => return Err(PluginError::RunFailed(why)),
                RunProgress::Waiting | RunProgress::Running(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_recognised_by_its_file_name_alone() {
        for argv0 in [
            "kubectl-sx",
            "/usr/local/bin/kubectl-sx",
            "./kubectl-sx",
            "kubectl-sx.exe",
        ] {
            assert!(invoked_as_plugin(OsStr::new(argv0)), "{argv0}");
        }
        for argv0 in [
            "scheduled-exports",
            "/usr/local/bin/scheduled-exports",
            "/opt/kubectl-sx/scheduled-exports",
            "kubectl-sx-old",
            "kubectl",
        ] {
            assert!(!invoked_as_plugin(OsStr::new(argv0)), "{argv0}");
        }
    }

    #[test]
    fn kubectl_flags_go_before_or_after_the_command() {
        let parsed = KubectlSx::try_parse_from([
            "kubectl-sx",
            "--context",
            "prod",
            "status",
            "-n",
            "univ",
            "daily",
            "-o",
            "json",
        ])
        .expect("parse");
        assert_eq!(parsed.args.namespace.as_deref(), Some("univ"));
        assert_eq!(parsed.args.context.as_deref(), Some("prod"));
        let SxCommand::Status(status) = parsed.args.command else {
            panic!("status")
        };
        assert_eq!(status.name.as_deref(), Some("daily"));
        assert_eq!(status.output, OutputFormat::Json);

        let parsed = KubectlSx::try_parse_from([
            "kubectl-sx",
            "run",
            "daily",
            "--wait",
            "--timeout",
            "90s",
            "--kubeconfig",
            "/tmp/k",
        ])
        .expect("parse");
        assert_eq!(parsed.args.kubeconfig, Some(PathBuf::from("/tmp/k")));
        let SxCommand::Run(run) = parsed.args.command else {
            panic!("run")
        };
        assert!(run.wait);
        assert_eq!(run.timeout, std::time::Duration::from_secs(90));
        assert!(KubectlSx::try_parse_from(["kubectl-sx", "next"]).is_err());
        assert!(
            KubectlSx::try_parse_from(["kubectl-sx", "next", "daily", "--count", "0"]).is_err()
        );
    }
}
