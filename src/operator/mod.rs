//! The operator process: the reconcile loop that creates one Job per due slot, the pure plan and
//! Job builder it relies on, leader election, metrics and health endpoints, and the delivery
//! checker and the preflight loop that run beside it, and the alerts they send to institutions'
//! webhooks.

pub mod checker;
pub mod config;
pub mod context;
pub mod controller;
pub mod events;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod owned_jobs;
pub mod plan;
pub mod preflight;
pub mod server;

pub use config::{ControllerConfig, DeliverySettings, Periods, PreflightSettings};
pub use context::Context;
