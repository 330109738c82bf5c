//! The export pipeline of one Job: file names, the columns of each file type, the CSV writer, the
//! file's encoding, and
//! the run that ties the source, the artifact store and the SFTP server together.

pub mod artifacts;
pub mod columns;
pub mod csv;
pub mod deliver;
pub mod encode;
pub mod encrypt;
pub mod file_name;
pub mod run;
pub mod stream;
pub mod view;
pub mod window;

pub use run::{ExportOutcome, ExportRequest, run_export};
