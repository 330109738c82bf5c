//! The export pipeline of one Job: file names, the columns of each file type, the CSV writer, the
//! file's encoding, the one stream from the database to both copies (`stream`), putting them in
//! place (`deliver`), and the run that ties the source, the artifact store and the SFTP server
//! together (`run`, its errors in `error`).

pub mod artifacts;
pub mod columns;
pub mod csv;
pub mod deliver;
pub mod encode;
pub mod encrypt;
pub mod error;
pub mod file_name;
pub mod run;
pub mod stream;
pub mod view;
pub mod window;

pub use error::ExportError;
pub use run::{ExportOutcome, ExportRequest, run_export};
