//! The small subcommands that need no cluster: `crd` and `next`.

use crate::cli::NextArgs;
use crate::resource;
use crate::schedule;
use chrono::Utc;

/// Outcome of a subcommand, mapped to the exit status by `main`.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The user's input is wrong; exit status 2.
    #[error("{0}")]
    BadInput(String),
    /// Anything else went wrong; exit status 1.
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::BadInput(_) => 2,
            CommandError::Failed(_) => 1,
        }
    }
}

/// The CRD as committed under `crds/`.
pub fn crd_yaml() -> Result<String, CommandError> {
    serde_yaml::to_string(&resource::crd())
        .map_err(|err| CommandError::Failed(format!("cannot render the CRD as YAML: {err}")))
}

pub fn print_crd() -> Result<(), CommandError> {
    print!("{}", crd_yaml()?);
    Ok(())
}

pub fn print_next_runs(args: &NextArgs) -> Result<(), CommandError> {
    let after = args.after.unwrap_or_else(Utc::now);
    for instant in schedule::runs_after(after, args.time, args.time_zone).take(args.count as usize)
    {
        println!("{}", schedule::format_run_line(instant, args.time_zone));
    }
    Ok(())
}
