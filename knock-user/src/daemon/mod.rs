//! `knock-user run`: the daemon, which wires the stages together. It reads the configuration,
//! keeps the desired state (`plan::desired`), loads and attaches the program and pushes each plan
//! (`kernel`), then turns ring events into log lines, commands and mirror updates (`events`)
//! until SIGINT or SIGTERM; SIGHUP re-reads the configuration.
//!
//! - [`start`]: everything that can fail on the operator's terminal, and what became of the
//!   pinned state and each attachment;
//! - [`serve`]: the event loop and the way out;
//! - [`reload`]: new plans for a new configuration, a used sequence, a moving window or a
//!   changed host;
//! - [`guards`]: the guarded interfaces, following links as they come and go;
//! - [`handover`]: what passes between daemons through the pinned state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use knock_common::counter::Counter;

use crate::events::keeper::Keeper;
use crate::journal::Journal;
use crate::kernel::pins::{Found, Lifetime, StateDir};
use crate::kernel::{AttachMode, Capacities, Knock};
use crate::plan::Switches;
use crate::plan::desired::Desired;

pub mod detach;
mod guards;
mod handover;
mod lookup_guard;
mod once;
mod record;
mod reload;
mod safety;
mod serve;
mod start;

pub use record::DEFAULT_DIR as DEFAULT_RECORD_DIR;
pub use start::interfaces_to_guard;

/// Where knockd writes its pid when it runs as a daemon; init scripts look there.
pub const DEFAULT_PID_FILE: &str = "/var/run/knockd.pid";

pub struct RunOptions {
    pub config: PathBuf,
    pub interfaces: Vec<String>,
    pub mode: AttachMode,
    pub verbose: bool,
    pub debug: bool,
    /// Detach from the terminal and write a pid file (knockd's `-d`).
    pub daemon: bool,
    /// Show host names of sources (knockd's `-l`).
    pub lookup: bool,
    pub switches: Switches,
    /// Overrides the configuration's PidFile (knockd's `-p`).
    pub pid_file: Option<PathBuf>,
    /// Overrides the configuration's LogFile (knockd's `-g`).
    pub log_file: Option<PathBuf>,
    /// Where state directories are pinned; `None` when state dies with the daemon.
    pub state_root: Option<PathBuf>,
    /// The firewall to mirror open doors into (`--mirror`), over the configuration's `Mirror`.
    pub mirror: crate::mirror::Request,
    /// `--trial`: undo everything (as `knock-user stop`) unless `knock-user confirm` arrives
    /// within this long.
    pub trial: Option<Duration>,
    /// Where the record of used single-use sequences is kept on disk (`--record-dir`).
    pub record_dir: PathBuf,
}

/// How often stale progress and gate entries are cleared.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the served ports are looked up again.
const SERVED_EVERY: Duration = Duration::from_secs(5);
/// How often `-v` logs the counters that moved.
const COUNTERS_EVERY: Duration = Duration::from_secs(60);

struct Daemon {
    options: RunOptions,
    /// The configuration, the host's facts and the plan they make.
    desired: Desired,
    /// Counters as last logged, for the verbose summary.
    counters_logged: Vec<(Counter, u64)>,
    /// The guarded interfaces, attached or not (see `guards`).
    guards: Vec<guards::Guard>,
    /// The socket that hears of links coming and going, and of addresses; `None` when it could
    /// not be opened (said at start).
    link_watch: Option<crate::system::netlink::Socket>,
    /// Whether systemd has been told READY=1: once every named interface was attached.
    ready: bool,
    /// Whether the pins outlive this daemon.
    lifetime: Lifetime,
    /// The record of used single-use sequences on disk.
    record: record::Record,
    capacities: Capacities,
    knock: Knock,
    journal: Arc<Journal>,
    keeper: Keeper,
    /// What the state directory held at start, when state is pinned.
    found: Option<(StateDir, Found)>,
    /// The earlier daemon's record, when this one took its state over.
    predecessor: Option<knock_common::status::DaemonInfo>,
    /// When this daemon started (wall clock, s).
    started_unix_s: u64,
    /// Where open doors are mirrored, recorded so that `stop` can empty it without a daemon.
    mirror_target: Option<crate::mirror::Target>,
    /// The number of open doors systemd's STATUS= last showed.
    told_open: usize,
    /// While a trial runs: when it undoes itself (Unix time, s).
    trial_until_unix_s: Option<u64>,
}

/// What the plan needs to know about the host, as it is now: served ports, the interfaces'
/// addresses, and what its stack puts into its answers (the first interface's hop limit).
fn host_facts(interfaces: &[String]) -> crate::plan::desired::Host {
    use crate::system::{net, served, stack};
    let reading = stack::read(interfaces.first().map_or("default", String::as_str));
    crate::plan::desired::Host {
        served: served::ports(),
        local: net::of_interfaces(interfaces),
        stack: crate::plan::StackFacts {
            ttl: reading.ttl,
            hop_limit: reading.hop_limit,
            ephemeral: reading.ephemeral,
        },
    }
}

/// Runs the daemon until a signal stops it.
pub fn run(options: RunOptions) -> anyhow::Result<()> {
    diagnostics(options.debug);
    let daemon = Daemon::prepare(options)?;
    if daemon.options.daemon {
        detach::detach().context("cannot become a daemon")?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(daemon.serve())
}

/// The daemon's own diagnostics and the XDP program's log records (`-D`) go through the `log`
/// facade to stderr, filtered by `RUST_LOG`; without it, `-D` shows knock's debug records (the
/// program's target is `knock::...`, the daemon's `knock_user::...`) and otherwise only
/// warnings. knockd's lines go through the journal, never through here.
fn diagnostics(debug: bool) {
    let default = if debug { "warn,knock=debug" } else { "warn" };
    // A second daemon in the same process (tests) finds the logger in place.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .try_init();
}
