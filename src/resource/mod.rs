//! The `ScheduledExport` custom resource: spec, status, typed states, and the admission rules that
//! the API server itself enforces (OpenAPI constraints and CEL `x-kubernetes-validations`).
//!
//! Doc comments on these types are what `kubectl explain scheduledexport...` prints, so they are
//! written for the platform engineer reading them there.

mod crd;
mod spec;
mod states;
mod status;

pub use crd::crd;
pub use spec::*;
pub use states::*;
pub use status::*;

/// API group of the resource.
pub const GROUP: &str = "exports.crm.dev";
/// Annotation whose new value starts one extra export now; each token is honoured once.
pub const RUN_NOW_ANNOTATION: &str = "exports.crm.dev/run-now";
/// Annotation whose new value starts one run now whose file holds every row (the window starts
/// from nothing); each token is honoured once, and later runs continue from that run's watermark.
pub const FULL_EXPORT_ANNOTATION: &str = "exports.crm.dev/full-export";
