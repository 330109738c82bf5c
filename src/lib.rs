//! scheduled-exports: a Kubernetes operator that delivers a daily CSV export of CRM data over SFTP.
//!
//! One module per concern; the binary in `main.rs` only parses arguments and dispatches.

pub mod artifacts;
pub mod cli;
pub mod clock;
pub mod columns;
pub mod commands;
pub mod controller;
pub mod csv_file;
pub mod delivery;
pub mod export;
pub mod files;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod recheck;
pub mod resource;
pub mod schedule;
pub mod server;
pub mod sftp;
pub mod source;
pub mod status;
pub mod status_update;
