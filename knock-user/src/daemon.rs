//! `knock-user run`: load, attach, push the configuration, then turn kernel events into log
//! lines and commands until SIGINT or SIGTERM; SIGHUP re-reads the configuration.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use knock_common::ProtoPort;
use knock_common::counter::Counter;
use tokio::signal::unix::{SignalKind, signal};

use crate::addresses;
use crate::clock;
use crate::config::{self, Config};
use crate::events;
use crate::expand;
use crate::journal::Journal;
use crate::keeper::{Keeper, doors_by_id};
use crate::loader::{AttachMode, Capacities, Knock};
use crate::names::Names;
use crate::onetime;
use crate::plan::{Plan, Switches};
use crate::served;
use crate::state::{Found, StateDir};
use crate::sweep;
use crate::xdplog;

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
}

/// Why the daemon stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// SIGTERM or SIGINT: a restart or an upgrade may follow, so pinned state stays and the
    /// kernel goes on guarding.
    Leave,
    /// SIGUSR2, from `knock-user stop`: close every door, detach, unpin, leave nothing.
    Forget,
}

/// How often stale progress and gate entries are cleared.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the served ports are looked up again.
const SERVED_EVERY: Duration = Duration::from_secs(5);
/// How often `-v` logs the counters that moved.
const COUNTERS_EVERY: Duration = Duration::from_secs(60);

struct Daemon {
    options: RunOptions,
    /// The configuration as read; rotating doors are expanded from it on every push.
    config: Config,
    /// Periods of rotating doors whose sequence has been used.
    used: BTreeSet<(String, u64)>,
    /// Counters as last logged, for the verbose summary.
    counters_logged: Vec<(Counter, u64)>,
    plan: Plan,
    served: BTreeSet<ProtoPort>,
    /// The guarded interfaces' addresses.
    local: BTreeSet<knock_common::Addr>,
    interfaces: Vec<String>,
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
}

/// Runs the daemon until a signal stops it.
pub fn run(options: RunOptions) -> anyhow::Result<()> {
    let daemon = Daemon::prepare(options)?;
    if daemon.options.daemon {
        crate::detach::detach().context("cannot become a daemon")?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(daemon.serve())
}

impl Daemon {
    /// Everything that can fail for a reason the operator should see on the terminal: the
    /// configuration, the log, the program, the interfaces.
    fn prepare(options: RunOptions) -> anyhow::Result<Self> {
        let config = config::load(&options.config)?;
        let journal = Arc::new(
            Journal::new(
                config.options.use_syslog,
                options
                    .log_file
                    .as_deref()
                    .or(config.options.log_file.as_deref()),
                options.verbose,
            )
            .context("cannot open the log")?,
        );
        let interfaces = interfaces(&options, &config)?;
        let served = served::ports();
        let local = addresses::of_interfaces(&interfaces);
        let capacities = Capacities {
            progress: config.options.progress_capacity,
            gate: config.options.gate_capacity,
        };
        let found = match &options.state_root {
            Some(root) => {
                let dir = StateDir::for_interfaces(root, &interfaces);
                let found = dir.open().map_err(|error| {
                    let hint = state_hint(&error);
                    anyhow::anyhow!(
                        "cannot keep state in {}: {:#}{hint}",
                        dir.path().display(),
                        anyhow::Error::from(error)
                    )
                })?;
                Some((dir, found))
            }
            None => None,
        };
        // A start that fails from here on removes the state it made: a pinned directory with
        // no program attached would pass for a guard in `status`, and the next start would
        // call it incompatible. State taken over from an earlier daemon stays: its program
        // still guards.
        let mut made_here = FailedStart(
            found
                .as_ref()
                .filter(|(_, found)| *found != Found::Compatible)
                .map(|(dir, _)| dir.clone()),
        );
        let mut knock = Knock::load(capacities, options.debug, found.as_ref().map(|(d, _)| d))
            .context("cannot load the XDP program")?;
        let resumed = matches!(found, Some((_, Found::Compatible)));
        let (previous, used, predecessor) = if resumed {
            let kept = knock.kept_doors()?;
            (
                Plan::resumed(&kept),
                used_periods(&kept),
                knock.daemon_record(),
            )
        } else {
            (Plan::resumed(&[]), BTreeSet::new(), None)
        };
        let expanded = expand::expand(&config, clock::unix_s(), &used);
        let plan = previous
            .next(&expanded, &served, options.switches)
            .with_local(&local);
        if resumed {
            sweep::forget_doors(&mut knock.gate()?, &previous.removed_in(&plan));
        }
        knock
            .push(&plan)
            .context("cannot write the configuration into the kernel")?;
        let previous_mode = predecessor.and_then(|p| AttachMode::from_code(p.mode));
        let mut attached = Vec::new();
        for iface in &interfaces {
            attached.push((
                iface.clone(),
                knock.attach(iface, options.mode, previous_mode)?,
            ));
        }
        let mirror_target =
            crate::mirror::choose(&options.mirror, &config.options).map_err(anyhow::Error::msg)?;
        let mirror = match mirror_target.clone() {
            Some(target) => Some(crate::mirror::Mirror::start(target, Arc::clone(&journal))?),
            None => None,
        };
        let keeper = Keeper::new(
            doors_by_id(&expanded, &plan),
            Arc::clone(&journal),
            Names::new(options.lookup),
        )
        .with_mirror(mirror);
        let daemon = Self {
            options,
            config,
            used,
            counters_logged: Vec::new(),
            plan,
            served,
            local,
            interfaces,
            capacities,
            knock,
            journal,
            keeper,
            found,
            predecessor,
            started_unix_s: clock::unix_s(),
            mirror_target,
            told_open: 0,
        };
        made_here.0 = None;
        daemon.release_other_links();
        daemon.report_attachments(&attached);
        Ok(daemon)
    }

    async fn serve(mut self) -> anyhow::Result<()> {
        let _xdp_log = if self.options.debug {
            Some(xdplog::start(self.knock.ebpf_mut())?)
        } else {
            None
        };
        // Handlers first: a SIGHUP that arrives before them would end the process.
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        // Before the ring is taken out of the program's maps, so that it is counted too.
        let maps = self.knock.map_memory();
        let mut ring = crate::watch::readable(self.knock.take_events()?)
            .context("cannot watch the event ring")?;
        // Written once the handlers are in place, so a SIGTERM sent as soon as it appears still
        // finds it removed on the way out.
        let _pid_file = self.options.daemon.then(|| {
            let path = self
                .options
                .pid_file
                .clone()
                .or_else(|| self.config.options.pid_file.clone())
                .unwrap_or_else(|| DEFAULT_PID_FILE.into());
            crate::detach::PidFile::write(path, &self.journal)
        });
        self.announce(&maps);
        self.record_daemon(self.predecessor.map_or(0, |p| p.closed_through_ns));
        // Events that waited in the ring while no daemon ran come first, then the doors still
        // open from before: a door both opened and still open is known from its event.
        self.drain(&mut ring.get_mut().0);
        self.adopt_open_doors();
        // Mirrored rules no adopted door holds were left by doors that closed unseen.
        self.keeper.prune_mirror();
        // Attached, configured, and every handler in place: `systemctl start` may return.
        self.tell_systemd("READY=1");
        self.counters_logged = self.knock.counters().unwrap_or_default();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        let mut served_check = tokio::time::interval(SERVED_EVERY);
        let mut counters_every = tokio::time::interval(COUNTERS_EVERY);
        let mut next_close: Option<u64> = self.keeper.close_due();
        let exit = loop {
            let close_in = next_close.map_or(Duration::from_secs(3600), clock::until);
            let rotate_in = expand::next_change(&self.config, clock::unix_s())
                .map_or(Duration::from_secs(3600), |at| {
                    Duration::from_secs(at.saturating_sub(clock::unix_s()))
                });
            tokio::select! {
                readable = ring.readable_mut() => {
                    let mut guard = readable.context("the event ring failed")?;
                    self.drain(&mut guard.get_inner_mut().0);
                    guard.clear_ready();
                    next_close = self.keeper.close_due();
                }
                _ = tokio::time::sleep(close_in) => next_close = self.keeper.close_due(),
                _ = sweep.tick() => {
                    // Events that do not wake the daemon (knocks, resets, refused SPA) wait
                    // at most this long.
                    self.drain(&mut ring.get_mut().0);
                    self.sweep()?;
                    next_close = self.keeper.close_due();
                    self.record_daemon(clock::monotonic_ns());
                    if self.keeper.open_doors() != self.told_open {
                        self.tell_systemd("");
                    }
                }
                _ = served_check.tick() => self.check_served(),
                _ = tokio::time::sleep(rotate_in) => self.rotate(),
                _ = counters_every.tick() => self.log_counters(),
                _ = hangup.recv() => self.reload(),
                _ = terminate.recv() => break Exit::Leave,
                _ = interrupt.recv() => break Exit::Leave,
                _ = usr2.recv() => break Exit::Forget,
            }
        };
        crate::notify::notify("STOPPING=1").ok();
        self.drain(&mut ring.get_mut().0);
        self.log_counters();
        self.journal.line("shutting down");
        if exit == Exit::Leave && self.knock.keeps_state() {
            // Doors still open stay open in the kernel; the next daemon adopts them and runs
            // their stop commands when they close.
            self.keeper.close_due();
            self.record_daemon(clock::monotonic_ns());
            self.journal.line(&format!(
                "the program stays attached with {} open door(s); `knock-user stop` removes it",
                self.keeper.open_doors()
            ));
        } else {
            self.keeper.close_all();
            if let Err(error) = self.knock.forget_state() {
                self.journal
                    .line(&format!("cannot remove the pinned state: {error:#}"));
            }
        }
        self.keeper.finish().await;
        // Dropping the program detaches what is not pinned and frees what nothing else holds.
        drop(self.knock);
        Ok(())
    }

    /// Sends `state` to systemd with a STATUS= line saying what is guarded (nothing outside a
    /// Type=notify unit).
    fn tell_systemd(&mut self, state: &str) {
        self.told_open = self.keeper.open_doors();
        let status = crate::notify::status_line(
            &self.interfaces,
            self.options.mode.name(),
            self.config.doors.len(),
            self.keeper.open_doors(),
        );
        if let Err(error) = crate::notify::notify(format!("{state}\n{status}").trim_start()) {
            self.journal
                .line(&format!("cannot send {state} to systemd: {error}"));
        }
    }

    /// Turns the events waiting in the ring into log lines and commands.
    fn drain(&mut self, ring: &mut aya::maps::RingBuf<aya::maps::MapData>) {
        let mut used_up = Vec::new();
        while let Some(item) = ring.next() {
            match events::decode(&item) {
                Ok(event) => used_up.extend(self.keeper.on_event(event)),
                Err(error) => self
                    .journal
                    .line(&format!("knock: ignored a bad event: {error}")),
            }
        }
        for id in used_up {
            self.next_one_time_sequence(id);
        }
    }

    /// Writes the daemon record: who runs, how, and through when doors have been closed.
    fn record_daemon(&mut self, closed_through_ns: u64) {
        if !self.knock.keeps_state() {
            return;
        }
        let (mirror, mirror_name) = crate::state::mirror_record(self.mirror_target.as_ref());
        let info = knock_common::status::DaemonInfo {
            started_unix_s: self.started_unix_s,
            closed_through_ns,
            netns: crate::state::current_netns(),
            pid: std::process::id(),
            mode: self.options.mode.code(),
            mirror,
            _pad: 0,
            mirror_name,
        };
        if let Err(error) = self.knock.record_daemon(info) {
            self.journal.line(&format!(
                "cannot record the daemon in the pinned state: {error:#}"
            ));
        }
    }

    /// Doors an earlier daemon opened that are still open, or that closed while no daemon
    /// ran (their stop commands are due).
    fn adopt_open_doors(&mut self) {
        let Some(predecessor) = self.predecessor else {
            return;
        };
        let Ok(gate) = self.knock.gate() else {
            return;
        };
        let passes: Vec<_> = gate.iter().filter_map(Result::ok).collect();
        let mut adopted = 0;
        for (source, pass) in passes {
            for (door, expires_ns) in pass.door.iter().zip(pass.expires_ns) {
                if expires_ns > predecessor.closed_through_ns
                    && self.keeper.adopt(source, *door, expires_ns)
                {
                    adopted += 1;
                }
            }
        }
        if adopted > 0 {
            self.journal.line(&format!(
                "knock: took over {adopted} open door(s) from the earlier daemon"
            ));
        }
    }

    /// Pinned links of interfaces this daemon no longer guards are released: detached.
    fn release_other_links(&self) {
        let Some((dir, _)) = &self.found else {
            return;
        };
        for iface in dir.linked_interfaces() {
            if !self.interfaces.contains(&iface) {
                let _ = crate::state::detach_pinned_link(&dir.link_path(&iface));
                self.journal.line(&format!(
                    "knock: no longer guarding {iface}; its program is detached"
                ));
            }
        }
    }

    /// Says what became of the pinned state and each interface's attachment.
    fn report_attachments(&self, attached: &[(String, crate::loader::Attached)]) {
        use crate::loader::Attached;
        if let Some((dir, found)) = &self.found {
            let place = dir.path().display();
            match found {
                Found::Empty => self
                    .journal
                    .detail(&format!("knock: state pinned in {place}")),
                Found::Compatible => self.journal.line(&format!(
                    "knock: took over the state pinned in {place}{}",
                    self.predecessor
                        .filter(|p| p.pid != 0)
                        .map_or_else(String::new, |p| format!(" by pid {}", p.pid))
                )),
                Found::Replaced { layout } => self.journal.line(&format!(
                    "knock: the state pinned in {place} was left by an incompatible version \
                     (layout {}, this version has {:08x}); it was removed and the earlier \
                     program detached: open doors and attempts are forgotten",
                    layout.map_or_else(|| "unknown".to_owned(), |l| format!("{l:08x}")),
                    knock_common::status::LAYOUT
                )),
            }
            for capacity in [
                (
                    knock_common::maps::PROGRESS,
                    "Progress_Capacity",
                    self.capacities.progress,
                ),
                (
                    knock_common::maps::GATE,
                    "Gate_Capacity",
                    self.capacities.gate,
                ),
            ] {
                let (map, key, wanted) = capacity;
                if let Some(kept) = self.knock.capacity(map)
                    && kept != wanted
                {
                    self.journal.line(&format!(
                        "knock: {key} {wanted} takes effect after `knock-user stop`; \
                         the pinned map holds {kept}"
                    ));
                }
            }
        }
        for (iface, how) in attached {
            match how {
                Attached::TookOver => self.journal.detail(&format!(
                    "knock: {iface}: the pinned link now runs this program"
                )),
                Attached::Reattached { why } => self.journal.line(&format!(
                    "knock: {iface}: the earlier link could not be reused ({why}); attached afresh"
                )),
                Attached::Pinned | Attached::Held => {}
            }
        }
    }

    fn announce(&self, maps: &[crate::loader::MapMemory]) {
        self.journal.line(&format!(
            "starting up, listening on {}",
            self.interfaces.join(", ")
        ));
        self.journal.detail(&format!(
            "knock: {} door(s), {} XDP, program of {} instructions, progress for {} sources, gate for {} sources",
            self.config.doors.len(),
            self.options.mode.name(),
            self.knock.instruction_count().map_or_else(
                || "an unknown number of".to_owned(),
                |(loaded, verified)| format!("{loaded} (verifier walked {verified})")
            ),
            self.capacities.progress,
            self.capacities.gate,
        ));
        let total: u64 = maps.iter().filter_map(|m| m.bytes).sum();
        let each: Vec<String> = maps
            .iter()
            .map(|m| match m.bytes {
                Some(bytes) => format!("{} {} KiB", m.name, bytes.div_ceil(1024)),
                None => format!("{} ?", m.name),
            })
            .collect();
        if maps.is_empty() {
            self.journal
                .detail("knock: the kernel does not say what the maps use");
        } else {
            self.journal.detail(&format!(
                "knock: maps use {} KiB in all, fixed at load: {}",
                total.div_ceil(1024),
                each.join(", ")
            ));
        }
    }

    fn sweep(&mut self) -> anyhow::Result<()> {
        let now = clock::monotonic_ns();
        let timeouts = sweep::progress(&mut self.knock.progress()?, &self.plan.doors, now);
        for event in timeouts {
            self.keeper.on_event(event);
        }
        sweep::gate(&mut self.knock.gate()?, now);
        self.knock.sync_clock()?;
        self.keeper.reap();
        self.keeper.report_hushed();
        Ok(())
    }

    /// Applies a new configuration, or a changed one-time sequence or served port, keeping
    /// door ids so attempts and open doors of unchanged doors survive.
    fn apply(&mut self, config: Config) -> anyhow::Result<()> {
        self.note_used_periods();
        let now_s = clock::unix_s();
        // Forget used periods that have left every window.
        self.used.retain(|(name, period)| {
            config
                .doors
                .iter()
                .filter(|d| &d.name == name)
                .filter_map(|d| d.secret.as_ref())
                .any(|s| s.period_at(now_s) <= period + 1)
        });
        let expanded = expand::expand(&config, now_s, &self.used);
        let next = self
            .plan
            .next(&expanded, &self.served, self.options.switches)
            .with_local(&self.local);
        let removed = self.plan.removed_in(&next);
        sweep::forget_doors(&mut self.knock.gate()?, &removed);
        self.knock.push(&next)?;
        self.keeper
            .set_doors(doors_by_id(&expanded, &next), &removed);
        self.config = config;
        self.plan = next;
        Ok(())
    }

    /// The program empties a rotating instance when its sequence opens the door; remember that,
    /// so pushing the window again does not bring the sequence back.
    fn note_used_periods(&mut self) {
        for id in 0..self.plan.names.len() {
            let Some(key) = self.plan.names[id].clone() else {
                continue;
            };
            let Some((name, period)) = key.rsplit_once('@') else {
                continue;
            };
            let Ok(period) = period.parse::<u64>() else {
                continue;
            };
            let pushed = self.plan.doors[id].step_count;
            if pushed > 0
                && self
                    .knock
                    .door_record(id)
                    .is_some_and(|d| d.step_count == 0)
            {
                self.used.insert((name.to_owned(), period));
            }
        }
    }

    /// The window of a rotating door moves on.
    fn rotate(&mut self) {
        let config = self.config.clone();
        if let Err(error) = self.apply(config) {
            self.journal
                .line(&format!("cannot move the rotating sequences on: {error:#}"));
        }
    }

    /// At `-v`, the counters that moved since the last summary.
    fn log_counters(&mut self) {
        if !self.journal.is_verbose() {
            return;
        }
        let Ok(now) = self.knock.counters() else {
            return;
        };
        let moved: Vec<String> = now
            .iter()
            .filter_map(|(counter, value)| {
                let before = self
                    .counters_logged
                    .iter()
                    .find(|(c, _)| c == counter)
                    .map_or(0, |(_, v)| *v);
                (*value > before).then(|| format!("{} +{}", counter.label(), value - before))
            })
            .collect();
        if !moved.is_empty() {
            self.journal
                .detail(&format!("knock: counters: {}", moved.join(", ")));
        }
        self.counters_logged = now;
    }

    fn reload(&mut self) {
        let path = self.options.config.clone();
        self.journal
            .line(&format!("Re-reading config file: {}", path.display()));
        let config = match config::load(&path) {
            Ok(config) => config,
            Err(error) => {
                self.journal.line(&format!(
                    "the new configuration is broken, so the running one stays: {error}"
                ));
                return;
            }
        };
        let mirror_keys =
            |o: &config::Options| (o.mirror, o.mirror_chain.clone(), o.mirror_table.clone());
        if mirror_keys(&config.options) != mirror_keys(&self.config.options) {
            self.journal
                .line("Mirror, Mirror_Chain and Mirror_Table take effect at the next start");
        }
        if config.options.interfaces != self.config.options.interfaces
            || config.options.progress_capacity != self.capacities.progress
            || config.options.gate_capacity != self.capacities.gate
        {
            self.journal.line(
                "Interface, Progress_Capacity and Gate_Capacity take effect at the next start",
            );
        }
        if let Err(error) = self.journal.reopen(
            config.options.use_syslog,
            self.options
                .log_file
                .as_deref()
                .or(config.options.log_file.as_deref()),
        ) {
            self.journal
                .line(&format!("cannot reopen the log file: {error}"));
        }
        let doors = config.doors.len();
        match self.apply(config) {
            Ok(()) => {
                self.journal
                    .line(&format!("configuration reloaded: {doors} door(s)"));
                self.tell_systemd("READY=1");
            }
            Err(error) => self
                .journal
                .line(&format!("cannot apply the new configuration: {error:#}")),
        }
    }

    /// A one-time door just used its sequence: mark it used and move on to the next one.
    fn next_one_time_sequence(&mut self, id: u8) {
        let Some(name) = self.plan.names.get(usize::from(id)).cloned().flatten() else {
            return;
        };
        let mut config = self.config.clone();
        let Some(door) = config.doors.iter_mut().find(|d| d.name == name) else {
            return;
        };
        let (Some(file), Some(line)) = (door.one_time_sequences.clone(), door.one_time_line) else {
            return;
        };
        if let Err(error) = onetime::mark_used(&file, line) {
            self.journal.line(&format!(
                "{name}: cannot mark line {line} of {} used: {error}",
                file.display()
            ));
        }
        match door.load_one_time(&file) {
            Ok(()) if door.sequence.is_empty() => self.journal.line(&format!(
                "{name}: no one-time sequence left in {}; the door is closed",
                file.display()
            )),
            Ok(()) => {}
            Err(error) => {
                self.journal
                    .line(&format!("{name}: {error}; the door is closed"));
                door.sequence.clear();
                door.one_time_line = None;
            }
        }
        if let Err(error) = self.apply(config) {
            self.journal.line(&format!(
                "{name}: cannot load the next one-time sequence: {error:#}"
            ));
        }
    }

    /// Follows services starting and stopping, and addresses coming and going.
    fn check_served(&mut self) {
        let served = served::ports();
        let local = addresses::of_interfaces(&self.interfaces);
        if served == self.served && local == self.local {
            return;
        }
        self.served = served;
        self.local = local;
        let config = self.config.clone();
        if let Err(error) = self.apply(config) {
            self.journal
                .line(&format!("cannot update the served ports: {error:#}"));
        }
    }
}

/// What to do about a state directory that cannot be used. `--ephemeral` is named only with
/// what it costs: it gives up keeping the gate and the open doors across restarts and stops.
fn state_hint(error: &crate::state::StateError) -> &'static str {
    use crate::state::StateError;
    match error {
        StateError::Io { source, .. } if source.raw_os_error() == Some(libc::EROFS) => {
            ". The BPF filesystem is read-only for this process: under systemd, \
             ProtectKernelTunables=yes makes /sys/fs/bpf read-only whatever ReadWritePaths= \
             says; the packaged knock.service keeps it writable with ReadOnlyPaths=/sys and \
             ReadWritePaths=/sys/fs/bpf"
        }
        StateError::NotBpffs { .. } | StateError::Mount(_) => {
            ". Mount a BPF filesystem there, or choose another --state-dir (--ephemeral pins \
             nothing, as knockd: the program then detaches when the daemon stops or restarts, \
             and open doors are forgotten)"
        }
        _ => "",
    }
}

/// Removes the state directory a failed start made (see `Daemon::prepare`).
struct FailedStart(Option<StateDir>);

impl Drop for FailedStart {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // Best effort: the error that ended the start is the one to report.
            let _ = dir.remove();
        }
    }
}

/// The interfaces to attach to: the command line wins, then the configuration, then the
/// interface of the default route.
fn interfaces(options: &RunOptions, config: &Config) -> anyhow::Result<Vec<String>> {
    if !options.interfaces.is_empty() {
        return Ok(options.interfaces.clone());
    }
    if !config.options.interfaces.is_empty() {
        return Ok(config.options.interfaces.clone());
    }
    match default_route_interface()? {
        Some(iface) => Ok(vec![iface]),
        None => {
            bail!("no interface given and no default route to pick one from; use --interface NAME")
        }
    }
}

/// The interface of the IPv4 default route, from /proc/net/route.
fn default_route_interface() -> anyhow::Result<Option<String>> {
    let table =
        std::fs::read_to_string("/proc/net/route").context("cannot read /proc/net/route")?;
    Ok(table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let iface = fields.next()?;
        let destination = fields.next()?;
        (destination == "00000000").then(|| iface.to_owned())
    }))
}

/// Periods of rotating doors whose sequence the kernel has emptied (used): they must not be
/// pushed again, or a restart would make a used sequence work a second time.
fn used_periods(kept: &[(knock_common::Door, Option<String>)]) -> BTreeSet<(String, u64)> {
    kept.iter()
        .filter(|(door, _)| door.flags & knock_common::door::ONCE != 0 && door.step_count == 0)
        .filter_map(|(_, name)| {
            let (door, period) = name.as_deref()?.rsplit_once('@')?;
            Some((door.to_owned(), period.parse().ok()?))
        })
        .collect()
}
