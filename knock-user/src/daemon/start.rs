//! Start-up: everything that can fail for a reason the operator should see on the terminal,
//! then what became of the pinned state and each interface's attachment.

use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::{Daemon, RunOptions, once};
use crate::config::{self, Config};
use crate::events::keeper::Keeper;
use crate::events::names::Names;
use crate::journal::Journal;
use crate::kernel::pins::{Found, StateDir, StateError};
use crate::kernel::{AttachMode, Attached, Capacities, Knock, link, sweep};
use crate::plan::desired::Desired;
use crate::system::{clock, net};
use knock_common::frame::Link;

impl Daemon {
    /// Everything that can fail for a reason the operator should see on the terminal: the
    /// configuration, the log, the program, the interfaces.
    pub(super) fn prepare(options: RunOptions) -> anyhow::Result<Self> {
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
        // Every interface judged before anything is loaded or attached: a refusal leaves the
        // host as it was.
        let links = link::judge_all(&interfaces)?;
        for (iface, _) in interfaces
            .iter()
            .zip(&links)
            .filter(|(_, l)| **l == Link::Ip)
        {
            journal.detail(&format!(
                "knock: {iface} carries IP packets without link-layer headers; \
                 they are judged from their IP header"
            ));
        }
        let host = super::host_facts(&interfaces);
        let capacities = Capacities {
            progress: config.options.progress_capacity,
            gate: config.options.gate_capacity,
            reserve: config.options.gate_reserve,
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
        let (kept, predecessor) = if resumed {
            (knock.kept_doors()?, knock.daemon_record())
        } else {
            (Vec::new(), None)
        };
        // One-time doors start at their first line the kernel has not claimed; rotating periods
        // it claimed stay empty.
        let claimed = once::claimed(&mut knock, &journal);
        let mut config = config;
        once::settle(&journal, &mut config, &claimed);
        once::warn_unmarkable(&journal, &config);
        let now_s = clock::unix_s();
        let claimed_periods = crate::plan::spent::used_periods(&config, now_s, &claimed);
        let mut switches = options.switches;
        switches.guard = super::guard::attach(&mut knock, &journal);
        let (desired, first) =
            Desired::start(config, &kept, claimed_periods, host, switches, now_s);
        if resumed {
            knock.each_gate(|gate| sweep::forget_doors(gate, &first.removed))?;
        }
        knock
            .push(&first.plan)
            .context("cannot write the configuration into the kernel")?;
        let previous_mode = predecessor.and_then(|p| AttachMode::from_code(p.mode));
        let mut attached = Vec::new();
        for (iface, link) in interfaces.iter().zip(&links) {
            attached.push((
                iface.clone(),
                knock.attach(iface, *link, options.mode, previous_mode)?,
            ));
        }
        let mirror_target = crate::mirror::choose(&options.mirror, &desired.config().options)
            .map_err(anyhow::Error::msg)?;
        let mirror = match mirror_target.clone() {
            Some(target) => Some(crate::mirror::Mirror::start(target, Arc::clone(&journal))?),
            None => None,
        };
        let keeper = Keeper::new(
            desired.doors_by_id(),
            Arc::clone(&journal),
            Names::new(options.lookup),
        )
        .with_mirror(mirror);
        let daemon = Self {
            options,
            desired,
            counters_logged: Vec::new(),
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

    /// Says what became of the pinned state and each interface's attachment.
    pub(super) fn report_attachments(&self, attached: &[(String, Attached)]) {
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
                (
                    knock_common::maps::GATE_RESERVE,
                    "Gate_Reserve",
                    self.capacities.reserve,
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

    pub(super) fn announce(&self, maps: &[crate::kernel::MapMemory]) {
        self.journal.line(&format!(
            "starting up, listening on {}",
            self.interfaces.join(", ")
        ));
        self.journal.detail(&format!(
            "knock: {} door(s), {} XDP, program of {} instructions, progress for {} sources, gate for {} sources",
            self.desired.config().doors.len(),
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
}

/// What to do about a state directory that cannot be used. `--ephemeral` is named only with
/// what it costs: it gives up keeping the gate and the open doors across restarts and stops.
fn state_hint(error: &StateError) -> &'static str {
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
    match net::default_route_interface().context("cannot read /proc/net/route")? {
        Some(iface) => Ok(vec![iface]),
        None => {
            bail!("no interface given and no default route to pick one from; use --interface NAME")
        }
    }
}
