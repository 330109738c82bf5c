//! `scheduled-exports`: one binary for the operator, the export Job and the tools around them.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use scheduled_exports::cli::commands::{self, CommandError};
use scheduled_exports::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    // Before anything can fail: the credentials the environment hands this process are never
    // written out, in any message.
    scheduled_exports::redact::register_env_secrets();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => return fail(&CommandError::BadInput(one_line(&err.render().to_string()))),
    };
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Crd => commands::print_crd(),
        Command::Next(args) => commands::print_next_runs(&args),
        Command::Export(args) => block_on(commands::export(args)),
        #[cfg(feature = "sample-data")]
        Command::SampleData(args) => block_on(commands::sample_data(args)),
        Command::Controller(args) => block_on(commands::controller(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn block_on(
    future: impl std::future::Future<Output = Result<(), CommandError>>,
) -> Result<(), CommandError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(scheduled_exports::redact::ScrubbingStderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
