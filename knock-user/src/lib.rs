//! knock's user space: configuration, loading the XDP program, the daemon, the client.

pub mod addresses;
pub mod check;
pub mod client;
pub mod clock;
pub mod command;
pub mod config;
pub mod daemon;
mod detach;
pub mod events;
pub mod expand;
pub mod journal;
pub mod keeper;
pub mod keys;
pub mod loader;
pub mod names;
pub mod onetime;
pub mod plan;
mod random;
pub mod rotate;
pub mod served;
pub mod spa_client;
pub mod sweep;
mod watch;
mod xdplog;
