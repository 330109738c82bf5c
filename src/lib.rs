//! scheduled-exports: a Kubernetes operator that delivers a daily CSV export of CRM data over SFTP.
//!
//! The tree is the architecture. Pure layers first, each importing only those above it:
//! [`clock`], [`resource`] (the custom resource and its typed states), [`schedule`] (when runs
//! happen), [`status`] (conditions). Then the [`adapters`] to the outside world (PostgreSQL, SFTP,
//! the artifact store, Kubernetes), the [`export`] pipeline that one Job runs, the [`operator`]
//! (reconcile loop, Job builder, delivery checker), and the [`cli`] that dispatches to them.
//! Small leaves serve several layers: [`digest`] (sha256 while copying), [`redact`] (URLs safe to
//! show) and [`progress`] (what a person at a terminal sees of a long step). [`plugin`] is the
//! kubectl plugin (`kubectl sx`), beside the operator and using the user's own credentials. The
//! demo data generator, `sample_data`, is a default cargo feature.

pub mod adapters;
pub mod cli;
pub mod clock;
pub mod digest;
pub mod export;
pub mod operator;
pub mod plugin;
pub mod progress;
pub mod redact;
pub mod resource;
#[cfg(feature = "sample-data")]
pub mod sample_data;
pub mod schedule;
pub mod status;
