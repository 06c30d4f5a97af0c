//! The event loop: ring events, the sweep, the clock of rotating doors, the host's facts and
//! signals; and the way out, which leaves the kernel guarding (SIGTERM, SIGINT) or removes
//! everything (SIGUSR2, from `knock-user stop`).

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::guards::Received;
use super::{COUNTERS_EVERY, DEFAULT_PID_FILE, Daemon, SERVED_EVERY, SWEEP_EVERY};
use crate::events::DoorEvent;
use crate::kernel::pins::Lifetime;
use crate::kernel::sweep;
use crate::system::clock;
use crate::system::netlink::Socket;
use crate::system::watch::Watched;

/// Why the daemon stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// SIGTERM or SIGINT: a restart or an upgrade may follow, so pinned state stays and the
    /// kernel goes on guarding.
    Leave,
    /// SIGUSR2, from `knock-user stop`: close every door, detach, unpin, leave nothing.
    Forget,
}

impl Daemon {
    pub(super) async fn serve(mut self) -> anyhow::Result<()> {
        let _xdp_log = if self.options.debug {
            Some(xdp_log(&mut self.knock)?)
        } else {
            None
        };
        // Handlers first: a SIGHUP that arrives before them would end the process.
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let mut confirm = signal(SignalKind::user_defined1())?;
        // Before the ring is taken out of the program's maps, so that it is counted too.
        let maps = self.knock.map_memory();
        let mut ring = crate::system::watch::readable(self.knock.take_events()?)
            .context("cannot watch the event ring")?;
        let mut links = match self.link_watch.take() {
            Some(socket) => Some(
                crate::system::watch::readable(socket)
                    .context("cannot watch the link notifications")?,
            ),
            None => None,
        };
        // Written once the handlers are in place, so a SIGTERM sent as soon as it appears still
        // finds it removed on the way out.
        let _pid_file = self.options.daemon.then(|| {
            let path = self
                .options
                .pid_file
                .clone()
                .or_else(|| self.desired.config().options.pid_file.clone())
                .unwrap_or_else(|| DEFAULT_PID_FILE.into());
            super::detach::PidFile::write(path, &self.journal)
        });
        self.announce(&maps);
        self.warn_of_lockouts();
        self.announce_observing();
        self.begin_trial();
        self.record_daemon(self.predecessor.map_or(0, |p| p.closed_through_ns));
        // Events that waited in the ring while no daemon ran come first, then the doors still
        // open from before: a door both opened and still open is known from its event.
        self.drain(&mut ring.get_mut().0);
        self.adopt_open_doors();
        // Mirrored rules no adopted door holds were left by doors that closed unseen.
        self.keeper.prune_mirror();
        // Attached, configured, and every handler in place: `systemctl start` may return. With
        // an interface still missing, it returns once that one is attached too.
        if self.all_attached() {
            self.tell_systemd("READY=1");
            self.ready = true;
        } else {
            self.tell_systemd("");
        }
        self.counters_logged = self.knock.counters().unwrap_or_default();
        let mut ticks: u64 = 0;
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        let mut served_check = tokio::time::interval(SERVED_EVERY);
        let mut counters_every = tokio::time::interval(COUNTERS_EVERY);
        let mut next_close: Option<u64> = self.keeper.close_due();
        let exit = loop {
            let close_in = next_close.map_or(Duration::from_secs(3600), clock::until);
            let rotate_in = self
                .desired
                .next_change(clock::unix_s())
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
                    ticks += 1;
                    self.catch_up(ticks);
                    self.keep_record();
                    next_close = self.keeper.close_due();
                    self.record_daemon(clock::monotonic_ns());
                    if self.keeper.open_doors() != self.told_open {
                        self.tell_systemd("");
                    }
                }
                received = receive(&mut links) => {
                    match received {
                        Ok(received) => self.follow(received),
                        Err(error) => {
                            self.journal.line(&format!(
                                "knock: cannot follow interfaces any more ({error}): one that \
                                 goes away stays unguarded until the daemon restarts"
                            ));
                            links = None;
                        }
                    }
                }
                _ = served_check.tick() => self.check_served(),
                _ = tokio::time::sleep(rotate_in) => self.rotate(),
                _ = counters_every.tick() => self.log_counters(),
                _ = hangup.recv() => self.reload(),
                _ = confirm.recv() => self.confirm_trial(),
                _ = super::safety::trial_runs_out(self.trial_left()) => {
                    self.journal.line(
                        "knock: the trial ran out without `knock-user confirm`: undoing it",
                    );
                    break Exit::Forget;
                }
                _ = terminate.recv() => break Exit::Leave,
                _ = interrupt.recv() => break Exit::Leave,
                _ = usr2.recv() => break Exit::Forget,
            }
        };
        // A trial nobody confirmed is never left guarding: a stop or a restart undoes it as
        // running out would.
        let exit = if exit == Exit::Leave && self.in_trial() {
            self.journal
                .line("knock: stopped during a trial nobody confirmed: undoing it");
            Exit::Forget
        } else if exit == Exit::Leave && self.options.switches.observe {
            // A program that drops nothing guards nothing: leaving it attached would pass for
            // a guard in `status` and hide that the host is open.
            self.journal
                .line("knock: stopped while observing: the program detaches, nothing stays");
            Exit::Forget
        } else {
            exit
        };
        crate::system::notify::notify("STOPPING=1").ok();
        self.drain(&mut ring.get_mut().0);
        self.keep_record();
        self.log_counters();
        self.journal.line("shutting down");
        let stays = exit == Exit::Leave
            && self.knock.keeps_state()
            && !matches!(self.lifetime, Lifetime::DiesWith { .. });
        if stays {
            // Doors still open stay open in the kernel; the next daemon adopts them and runs
            // their stop commands when they close.
            self.keeper.close_due();
            self.record_daemon(clock::monotonic_ns());
            self.journal.line(&self.what_stays());
        } else {
            if exit == Exit::Leave && self.knock.keeps_state() {
                self.journal.line(
                    "the program detaches as this daemon exits: its pins are in a BPF \
                     filesystem of this daemon's own mount namespace, which goes with it; open \
                     doors are closed now",
                );
            }
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

    /// What the daemon leaves behind when it exits and the pins stay.
    fn what_stays(&self) -> String {
        let open = self.keeper.open_doors();
        let (attached, missing) = self.attached_and_missing();
        let lasting = match &self.lifetime {
            Lifetime::Unknown { mount, .. } => format!(
                ", for as long as the BPF filesystem on {} stays mounted",
                mount.display()
            ),
            _ => String::new(),
        };
        match (attached.is_empty(), missing.is_empty()) {
            (false, true) => format!(
                "the program stays attached with {open} open door(s){lasting}; `knock-user \
                 stop` removes it"
            ),
            (false, false) => format!(
                "the program stays attached to {} with {open} open door(s){lasting}; {} stays \
                 unguarded until a daemon attaches to it; `knock-user stop` removes it",
                attached.join(", "),
                missing.join(", ")
            ),
            (true, _) => format!(
                "nothing is attached ({} missing); the pinned state waits for the next daemon, \
                 `knock-user stop` removes it",
                missing.join(", ")
            ),
        }
    }

    /// Sends `state` to systemd with a STATUS= line saying what is guarded (nothing outside a
    /// Type=notify unit).
    pub(super) fn tell_systemd(&mut self, state: &str) {
        self.told_open = self.keeper.open_doors();
        let (attached, missing) = self.attached_and_missing();
        let status = crate::system::notify::status_line(
            &attached,
            &missing,
            crate::kernel::modes_name(self.modes_code()),
            self.desired.config().doors.len(),
            self.keeper.open_doors(),
        );
        if let Err(error) = crate::system::notify::notify(format!("{state}\n{status}").trim_start())
        {
            self.journal
                .line(&format!("cannot send {state} to systemd: {error}"));
        }
    }

    /// Turns the events waiting in the ring into log lines and commands.
    pub(super) fn drain(&mut self, ring: &mut aya::maps::RingBuf<aya::maps::MapData>) {
        let mut used_up = Vec::new();
        while let Some(item) = ring.next() {
            match DoorEvent::decode(&item) {
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

    pub(super) fn sweep(&mut self) -> anyhow::Result<()> {
        let now = clock::monotonic_ns();
        let timeouts =
            sweep::progress(&mut self.knock.progress()?, &self.desired.plan().doors, now);
        for event in timeouts {
            self.keeper.on_event(event);
        }
        self.knock.each_gate(|gate| {
            sweep::gate(gate, now);
        })?;
        self.knock.sync_clock()?;
        self.keeper.reap();
        self.keeper.report_hushed();
        Ok(())
    }

    /// At `-v`, the counters that moved since the last summary.
    pub(super) fn log_counters(&mut self) {
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
}

/// The link notifications waiting on the socket, once it is readable; never, without one.
async fn receive(
    links: &mut Option<tokio::io::unix::AsyncFd<Watched<Socket>>>,
) -> std::io::Result<Received> {
    let Some(fd) = links else {
        return std::future::pending().await;
    };
    let mut guard = fd.readable_mut().await?;
    let mut received = Received {
        datagrams: Vec::new(),
        overflowed: false,
    };
    loop {
        match guard.get_inner().0.receive() {
            Ok(datagram) => received.datagrams.push(datagram),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                guard.clear_ready();
                return Ok(received);
            }
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                received.overflowed = true;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Forwards the XDP program's log records (`-D`) to the `log` facade until the returned task is
/// dropped.
fn xdp_log(knock: &mut crate::kernel::Knock) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let logger =
        aya_log::EbpfLogger::init(knock.ebpf_mut()).context("cannot read the XDP program's log")?;
    let mut fd =
        crate::system::watch::readable(logger).context("cannot watch the XDP program's log")?;
    Ok(tokio::spawn(async move {
        while let Ok(mut guard) = fd.readable_mut().await {
            guard.get_inner_mut().0.flush();
            guard.clear_ready();
        }
    }))
}
