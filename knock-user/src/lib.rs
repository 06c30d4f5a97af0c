//! knock's user space: configuration, loading the XDP program, the daemon, the client.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod journal;
pub mod kernel;
pub mod mirror;
pub mod plan;
pub mod system;
