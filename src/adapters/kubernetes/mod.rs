//! The Kubernetes API as the Job and the checker use it: Secrets read into credentials, and status
//! writes.

pub mod secrets;
pub mod status;
