//! Start-up: everything that can fail for a reason the operator should see on the terminal,
//! then what became of the pinned state and each interface's attachment.

use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::guards::Guard;
use super::record::Record;
use super::{Daemon, RunOptions, once};
use crate::config::{self, Config};
use crate::events::keeper::Keeper;
use crate::events::names::Names;
use crate::journal::Journal;
use crate::kernel::pins::{self, Found, Lifetime, StateDir, StateError};
use crate::kernel::{
    AttachError, AttachMode, Attached, Attachment, Capacities, Knock, XdpMode, link, sweep,
};
use crate::plan::desired::Desired;
use crate::system::{clock, net, netlink, proc, routes};
use knock_common::frame::Link;

impl Daemon {
    /// Everything that can fail for a reason the operator should see on the terminal: the
    /// configuration, the log, the program, the interfaces.
    pub(super) fn prepare(options: RunOptions) -> anyhow::Result<Self> {
        if options.trial.is_some() && options.state_root.is_none() {
            bail!(
                "--trial needs pinned state, where `knock-user confirm` finds the daemon: \
                 drop --ephemeral"
            );
        }
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
        let interfaces = interfaces_to_guard(&options.interfaces, &config)?;
        warn_unguarded(&journal, &interfaces);
        // Subscribed before any interface is looked at, so no change falls between.
        let link_watch = match netlink::Socket::subscribe(link::WATCHED) {
            Ok(socket) => Some(socket),
            Err(error) => {
                journal.line(&format!(
                    "knock: cannot follow interfaces as they come and go ({error}): one that \
                     goes away stays unguarded until the daemon restarts"
                ));
                None
            }
        };
        // Every interface there judged before anything is loaded or attached: a refusal leaves
        // the host as it was. One that is not there yet is waited for.
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for iface in &interfaces {
            match link::query(iface) {
                Ok(info) => {
                    let kind = link::judge(iface, &info, link::tunnels_start_at_ip())?;
                    if kind == Link::Ip {
                        journal.detail(&format!(
                            "knock: {iface} carries IP packets without link-layer headers; \
                             they are judged from their IP header"
                        ));
                    }
                    present.push((iface.clone(), kind, info));
                }
                Err(link::LinkError::NoSuchInterface(_)) => missing.push(iface.clone()),
                Err(error) => return Err(error.into()),
            }
        }
        let host = super::host_facts(&interfaces);
        let capacities = Capacities {
            progress: config.options.progress_capacity,
            gate: config.options.gate_capacity,
            reserve: config.options.gate_reserve,
        };
        let opened = match &options.state_root {
            Some(root) => {
                let dir = StateDir::for_interfaces(root, &interfaces);
                let opened = dir.open().map_err(|error| {
                    let hint = state_hint(&error);
                    anyhow::anyhow!(
                        "cannot keep state in {}: {:#}{hint}",
                        dir.path().display(),
                        anyhow::Error::from(error)
                    )
                })?;
                Some((dir, opened))
            }
            None => None,
        };
        let lifetime = opened.as_ref().map_or(Lifetime::Outlives, |(dir, o)| {
            pins::lifetime(&o.bpffs, &bpffs_facts(dir.path()))
        });
        let found = opened.map(|(dir, o)| (dir, o.found));
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
        if let Some((dir, _)) = &found {
            dir.mark_guarded(&interfaces).map_err(|error| {
                anyhow::anyhow!(
                    "cannot keep state in {}: {:#}",
                    dir.path().display(),
                    anyhow::Error::from(error)
                )
            })?;
        }
        let mut knock = Knock::load(capacities, options.debug, found.as_ref().map(|(d, _)| d))
            .context("cannot load the XDP program")?;
        let resumed = matches!(found, Some((_, Found::Compatible)));
        let (kept, predecessor) = if resumed {
            (knock.kept_doors()?, knock.daemon_record())
        } else {
            (Vec::new(), None)
        };
        // What the kernel claimed before a reboot comes back from the record on disk.
        let mut record = Record::new(&options.record_dir, &interfaces);
        record.restore(&mut knock, &journal);
        // One-time doors start at their first line the kernel has not claimed; rotating periods
        // it claimed stay empty.
        let claimed = once::claimed(&mut knock, &journal);
        let mut config = config;
        once::settle(&journal, &mut config, &claimed);
        once::warn_unmarkable(&journal, &config);
        let now_s = clock::unix_s();
        let claimed_periods = crate::plan::spent::used_periods(&config, now_s, &claimed);
        let mut switches = options.switches;
        // Loaded now, attached only once the first plan is in the maps (below): a guard on maps
        // not pushed yet admits everything (no port is guarded in an empty PORTS), and on a
        // restart it takes the place of the earlier daemon's guard at once.
        switches.guard = super::lookup_guard::load(&mut knock, &journal);
        // A veth delivers XDP_TX frames only to a peer that runs XDP itself: in native mode the
        // program's resets would vanish there, so the host's stack answers instead.
        let veths: Vec<&str> = present
            .iter()
            .filter(|(_, _, info)| info.driver.as_deref() == Some("veth"))
            .map(|(name, _, _)| name.as_str())
            .collect();
        switches.host_resets = options.mode != AttachMode::Skb && !veths.is_empty();
        let (mut desired, first) =
            Desired::start(config, &kept, claimed_periods, host, switches, now_s);
        if resumed {
            knock.each_gate(|gate| sweep::forget_doors(gate, &first.removed))?;
        }
        // The first plan leaves nothing to a guard (see `Desired::start`): on a restart the
        // earlier daemon's program reads it at once, and this daemon's guard is not attached.
        knock
            .push(&first.plan)
            .context("cannot write the configuration into the kernel")?;
        // Only now may main programs hand packets to this object's programs: on a restart of
        // the same object the earlier one does so at once, through the shared `HANDOFF`.
        knock
            .fill_handoff()
            .context("cannot fill the XDP program's program array")?;
        let guard_attached = switches.guard && super::lookup_guard::attach(&mut knock, &journal);
        if !guard_attached {
            super::lookup_guard::release_earlier(&knock, &journal);
        }
        if let Some(plan) = desired.guard_attached(guard_attached) {
            knock
                .push(&plan)
                .context("cannot write the configuration into the kernel")?;
            if switches.host_resets {
                journal.detail(&format!(
                    "knock: {} is a veth: refused connection attempts are answered by the \
                     host's stack (through the socket-lookup guard), since a veth in native \
                     mode delivers the program's own resets only to a peer that runs XDP",
                    veths.join(", ")
                ));
            }
        }
        let recorded = predecessor.and_then(|p| XdpMode::from_code(p.mode));
        let mut guards = Vec::new();
        let mut attached = Vec::new();
        for (iface, kind, info) in &present {
            let current = info.xdp_mode().or(recorded);
            match knock.attach(iface, info.index, *kind, options.mode, current) {
                Ok(attachment) => {
                    guards.push(Guard::attached(iface, info.index, attachment.mode));
                    attached.push((iface.clone(), attachment));
                }
                // Gone since it was looked at: waited for, as one that was never there.
                Err(AttachError::NoSuchInterface(_)) => missing.push(iface.clone()),
                Err(error) => return Err(error.into()),
            }
        }
        guards.extend(missing.iter().map(|iface| Guard::missing(iface)));
        // In the order the operator named them.
        guards.sort_by_key(|g| interfaces.iter().position(|i| *i == g.name));
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
            guards,
            link_watch,
            ready: false,
            lifetime,
            record,
            capacities,
            knock,
            journal,
            keeper,
            found,
            predecessor,
            started_unix_s: clock::unix_s(),
            mirror_target,
            told_open: 0,
            trial_until_unix_s: None,
        };
        made_here.0 = None;
        daemon.release_other_links();
        // No link runs an earlier object's main program any more: its hand-over pins can go.
        daemon.knock.release_other_objects();
        daemon.report_attachments(&attached, &missing);
        Ok(daemon)
    }

    /// Says what became of the pinned state and each interface's attachment.
    pub(super) fn report_attachments(&self, attached: &[(String, Attachment)], missing: &[String]) {
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
        for (iface, attachment) in attached {
            let mode =
                super::guards::mode_words(attachment.mode, attachment.native_refused.as_deref());
            match &attachment.how {
                Attached::TookOver => self.journal.detail(&format!(
                    "knock: {iface}: the pinned link now runs this program, in {mode}"
                )),
                Attached::Reattached { why } => self.journal.line(&format!(
                    "knock: {iface}: the earlier link could not be reused ({why}); attached \
                     afresh, in {mode}"
                )),
                Attached::Pinned | Attached::Held if self.options.mode == AttachMode::Auto => {
                    self.journal.line(&format!("knock: {iface}: {mode}"));
                }
                Attached::Pinned | Attached::Held => self
                    .journal
                    .detail(&format!("knock: {iface}: {mode}, as --xdp-mode asks")),
            }
        }
        for iface in missing {
            self.journal.line(&format!(
                "knock: {iface} does not exist (yet): waiting for it; it is guarded as soon as \
                 it appears, and not before"
            ));
        }
        self.report_lifetime();
    }

    /// Says so when the pins will not outlive this daemon, with what to do about it.
    fn report_lifetime(&self) {
        let Some((dir, _)) = &self.found else {
            return;
        };
        match &self.lifetime {
            Lifetime::Outlives => {}
            Lifetime::DiesWith { mount } => self.journal.line(&format!(
                "knock: the pins in {} will not outlive this daemon: it mounted the BPF \
                 filesystem on {} itself, in a mount namespace that is not the host's (PID \
                 1's mount table does not hold it), which goes with its last process, and the \
                 program detaches with it. \
                 Mount a BPF filesystem on /sys/fs/bpf on the host (mount -t bpf bpf \
                 /sys/fs/bpf) and bind it into the container or namespace, or give \
                 --state-dir a directory on a BPF filesystem the host shares",
                dir.path().display(),
                mount.display()
            )),
            Lifetime::Unknown { mount, why } => self.journal.line(&format!(
                "knock: the pins in {} last only as long as the BPF filesystem this daemon \
                 mounted on {}: whether the host holds it too is unknown ({why}); \
                 mount one on /sys/fs/bpf on the host, or give --state-dir a directory on one \
                 the host shares",
                dir.path().display(),
                mount.display()
            )),
        }
    }

    pub(super) fn announce(&self, maps: &[crate::kernel::MapMemory]) {
        self.journal.line(&format!(
            "starting up, listening on {}",
            self.interfaces().join(", ")
        ));
        self.journal.detail(&format!(
            "knock: {} door(s), {}, progress for {} sources, gate for {} sources",
            self.desired.config().doors.len(),
            crate::kernel::modes_phrase(self.modes_code()),
            self.capacities.progress,
            self.capacities.gate,
        ));
        for program in self.knock.program_sizes() {
            self.journal.detail(&format!("knock: {program}"));
        }
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

/// What tells whether the bpffs under `dir` outlives this daemon (see `pins::lifetime`).
fn bpffs_facts(dir: &std::path::Path) -> pins::Facts {
    pins::Facts {
        initial_pid: proc::in_initial_pid_namespace(),
        host_holds: pins::device_of(dir).and_then(|device| {
            std::fs::read_to_string("/proc/1/mountinfo").map(|table| pins::holds(&table, device))
        }),
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

/// The interfaces to guard: the command line's, else the configuration's `Interface` lines,
/// else those of the default routes, IPv4 and IPv6 (`system::routes`).
pub fn interfaces_to_guard(cli: &[String], config: &Config) -> anyhow::Result<Vec<String>> {
    if !cli.is_empty() {
        return Ok(cli.to_vec());
    }
    if !config.options.interfaces.is_empty() {
        return Ok(config.options.interfaces.clone());
    }
    let found = routes::default_route_interfaces().context("cannot read the routing table")?;
    if found.is_empty() {
        bail!(
            "no interface given and no default route (IPv4 0.0.0.0/0 or IPv6 ::/0) to pick one \
             from; use --interface NAME"
        );
    }
    Ok(found)
}

/// Says which interfaces are up with addresses others can reach and are not guarded: SSH
/// answers there without a knock.
fn warn_unguarded(journal: &Journal, guarded: &[String]) {
    let left = routes::unguarded(&net::addresses(), guarded);
    if left.is_empty() {
        return;
    }
    let each: Vec<String> = left
        .iter()
        .map(|(name, addresses)| {
            let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            format!("{name} ({})", addresses.join(", "))
        })
        .collect();
    journal.line(&format!(
        "knock: not guarded, though up with addresses reachable from beyond their link: {}; \
         protected ports answer there without a knock: guard them too (-i, or Interface lines) \
         unless only trusted networks reach them",
        each.join(", ")
    ));
}
