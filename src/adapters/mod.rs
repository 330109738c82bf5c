//! Adapters to the world outside the process. Each one turns a remote system's API and errors into
//! this crate's types; nothing pure imports them.

pub mod artifacts;
pub mod kubernetes;
pub mod postgres;
pub mod sftp;
