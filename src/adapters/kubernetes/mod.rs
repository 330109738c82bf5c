//! The Kubernetes API as the operator, the Job and the checker use it: the client with its
//! deadlines, Secrets read into credentials, and status writes.

pub mod client;
pub mod secrets;
pub mod status;
