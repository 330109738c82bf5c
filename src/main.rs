//! `scheduled-exports`: one binary for the operator, the export Job and the tools around them.
//! Started as `kubectl-sx` (a link on the PATH), it is the kubectl plugin `kubectl sx`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use scheduled_exports::cli::commands::{self, CommandError};
use scheduled_exports::cli::plugin::{self, KubectlSx};
use scheduled_exports::cli::{Cli, Command, LogFormat};
use scheduled_exports::progress::Surroundings;

fn main() -> ExitCode {
    // Before anything can fail: the credentials the environment hands this process are never
    // written out, in any message.
    scheduled_exports::redact::register_env_secrets();
    let as_plugin = std::env::args_os()
        .next()
        .is_some_and(|argv0| plugin::invoked_as_plugin(&argv0));
    if as_plugin {
        let kubectl_sx = match parse::<KubectlSx>() {
            Ok(parsed) => parsed,
            Err(exit) => return exit,
        };
        init_tracing(LogFormat::Text, "warn");
        return exit_with(block_on(plugin::run(kubectl_sx.args)));
    }
    let cli = match parse::<Cli>() {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    // The plugin's commands print for a person; only warnings go with them.
    let default_level = if matches!(cli.command, Command::Sx(_)) {
        "warn"
    } else {
        "info"
    };
    init_tracing(cli.log_format, default_level);
    let show_progress =
        Surroundings::of_this_process(cli.log_format == LogFormat::Json).show_progress();
    let result = match cli.command {
        Command::Crd => commands::print_crd(),
        Command::Next(args) => commands::print_next_runs(&args),
        // One thread for the export's async work: the database connection's task wakes the
        // stream for every COPY message (one per row), which within one thread costs nothing and
        // across threads a futex wake per row. The upload has its own blocking thread anyway.
        Command::Export(args) => block_on_one_thread(commands::export(args, show_progress)),
        #[cfg(feature = "sample-data")]
        Command::SampleData(args) => block_on(commands::sample_data(args, show_progress)),
        Command::Controller(args) => block_on(commands::controller(*args)),
        Command::Sx(args) => block_on(plugin::run(args)),
    };
    exit_with(result)
}

/// The command line, or the exit status when it is `--help`, `--version` or wrong.
fn parse<T: Parser>() -> Result<T, ExitCode> {
    match T::try_parse() {
        Ok(parsed) => Ok(parsed),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            let _ = err.print();
            Err(ExitCode::SUCCESS)
        }
        Err(err) => Err(fail(&CommandError::BadInput(one_line(
            &err.render().to_string(),
        )))),
    }
}

fn exit_with(result: Result<(), CommandError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn block_on(
    future: impl std::future::Future<Output = Result<(), CommandError>>,
) -> Result<(), CommandError> {
    run_on(tokio::runtime::Builder::new_multi_thread(), future)
}

fn block_on_one_thread(
    future: impl std::future::Future<Output = Result<(), CommandError>>,
) -> Result<(), CommandError> {
    run_on(tokio::runtime::Builder::new_current_thread(), future)
}

fn run_on(
    mut builder: tokio::runtime::Builder,
    future: impl std::future::Future<Output = Result<(), CommandError>>,
) -> Result<(), CommandError> {
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|err| CommandError::Failed(format!("cannot start the async runtime: {err}")))?;
    let result = runtime.block_on(future);
    // Dropping the runtime would wait for every blocking task (an SFTP call, a DNS lookup) to
    // return, however long; the command has finished, so give them a moment and exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Exit status: 2 for bad input, 1 for any other failure, one line on stderr.
fn fail(err: &CommandError) -> ExitCode {
    eprintln!(
        "error: {}",
        scheduled_exports::redact::scrub(&err.to_string())
    );
    ExitCode::from(err.exit_code())
}

/// Clap renders usage errors over several lines; keep the reason, drop the usage hint.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(scheduled_exports::redact::ScrubbingStderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
