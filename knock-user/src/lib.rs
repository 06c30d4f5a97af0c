//! knock's user space, laid out the way data flows through it:
//!
//! ```text
//! knockd.conf --> config --> plan --> kernel (maps) --> verdicts (in the XDP program)
//!                  host facts --^                   \--> ring events --> events --> log lines (journal)
//!                                                                              \--> commands
//!                                                                              \--> mirror (firewall)
//! ```
//!
//! - [`config`]: knockd.conf and every file it names (SPA keys, rotating secrets, one-time
//!   sequences, the `Mirror` key's syntax), what a door's start command means (`meaning`) and
//!   what `check` advises about a file (`advice`). Imports nothing else of this crate.
//! - [`plan`]: configuration and host facts to a [`plan::Plan`], and a plan to the changes of
//!   the kernel's maps ([`plan::diff`]); the daemon's desired state ([`plan::desired`]). Pure:
//!   tested without root.
//! - [`kernel`]: loading, attaching, writing plans, reading the maps back, pinned state, the
//!   expiry sweep, and the rig that tests and benchmarks load the program with.
//! - `events`: ring events to knockd's log lines, start and stop commands, and the mirror.
//! - [`mirror`]: open doors mirrored into iptables or nftables.
//! - [`journal`]: where knockd's lines go (stderr, syslog, LogFile).
//! - [`daemon`]: `knock-user run`, which wires the stages together.
//! - [`cli`]: the other commands: `check`, `status`, `stop`, `confirm`, `unban`, `knock`, `spa`
//!   (with saved hosts and STUN), `keygen`, the manuals.
//! - [`system`]: small leaves over the operating system: clocks, randomness, the host's addresses
//!   and served ports, the one process runner with a deadline.
//!
//! Each stage imports only those before it; `system` and `journal` import none. Diagnostics (the
//! daemon's debug output and the XDP program's aya-log records) go through the `log` facade,
//! filtered by `RUST_LOG`; knockd's lines go through the journal.
//!
//! The public modules are what the binary, the tests, `xtask` and the fuzz targets use.

pub mod cli;
pub mod config;
pub mod daemon;
mod events;
pub mod journal;
pub mod kernel;
pub mod mirror;
pub mod plan;
pub mod system;
