//! The safety net around a first start: the warnings about who would be locked out (the SSH
//! session the daemon runs in, `-4`), and `--trial`, which undoes everything (as `knock-user
//! stop`) unless `knock-user confirm` (SIGUSR1) arrives in time.

use std::time::Duration;

use super::Daemon;
use crate::config::advice;
use crate::system::clock;

impl Daemon {
    /// Says, at start, who would not get back in: the SSH session this daemon was started
    /// from, and IPv6 knockers under `-4`.
    pub(super) fn warn_of_lockouts(&self) {
        let config = self.desired.config();
        if let Some(warning) = std::env::var("SSH_CONNECTION")
            .ok()
            .and_then(|session| advice::lockout(config, &session))
        {
            self.journal.line(&format!("knock: warning: {warning}"));
        }
        let facts = advice::Facts {
            flushes: Vec::new(),
            ipv4_only: self.options.switches.ipv4_only,
        };
        for difference in advice::differences(config, &facts)
            .into_iter()
            .filter(|d| d.starts_with("-4:"))
        {
            self.journal.line(&format!("knock: warning: {difference}"));
        }
    }

    /// Says that nothing is dropped, when observing.
    pub(super) fn announce_observing(&self) {
        if self.options.switches.observe {
            self.journal.line(
                "knock: observing: every packet is judged and none dropped; each new connection \
                 the gate would drop is logged (a few a second) and counted (observe_passed)",
            );
        }
    }

    /// Starts the trial's clock, if there is a trial.
    pub(super) fn begin_trial(&mut self) {
        let Some(trial) = self.options.trial else {
            return;
        };
        self.trial_until_unix_s = Some(clock::unix_s() + trial.as_secs());
        self.record_daemon(self.predecessor.map_or(0, |p| p.closed_through_ns));
        self.journal.line(&format!(
            "knock: trial: unless `knock-user confirm` arrives within {} s, every door closes, \
             the program detaches and its state goes, as with `knock-user stop`",
            trial.as_secs()
        ));
    }

    /// How long the trial has left; `None` without a trial.
    pub(super) fn trial_left(&self) -> Option<Duration> {
        self.trial_until_unix_s
            .map(|until| Duration::from_secs(until.saturating_sub(clock::unix_s())))
    }

    /// `knock-user confirm` (SIGUSR1): the trial ends, knock keeps guarding.
    pub(super) fn confirm_trial(&mut self) {
        if self.trial_until_unix_s.take().is_none() {
            self.journal
                .line("knock: `knock-user confirm` arrived, but no trial runs; nothing changes");
            return;
        }
        // Doors due are closed first, so the record's "closed through now" holds.
        self.keeper.close_due();
        self.record_daemon(clock::monotonic_ns());
        self.journal
            .line("knock: trial confirmed: knock keeps guarding, and stays when the daemon stops");
    }

    /// Whether an unconfirmed trial is running.
    pub(super) fn in_trial(&self) -> bool {
        self.trial_until_unix_s.is_some()
    }
}

/// Waits until the trial runs out; forever without one.
pub(super) async fn trial_runs_out(left: Option<Duration>) {
    match left {
        Some(left) => tokio::time::sleep(left).await,
        None => std::future::pending().await,
    }
}
