//! New plans for a running daemon: a new configuration (SIGHUP), a one-time sequence used, the
//! window of a rotating door moving on, or services and addresses changing on the host. Each
//! asks `plan::desired` for the next plan, pushes it, and tells the keeper which doors remain.

use crate::config::{self, Config};
use crate::kernel::sweep;
use crate::system::clock;

use super::Daemon;

impl Daemon {
    /// Applies a new configuration, or a changed one-time sequence or served port, keeping
    /// door ids so attempts and open doors of unchanged doors survive.
    pub(super) fn apply(&mut self, config: Config) -> anyhow::Result<()> {
        self.note_used_periods();
        let next = self.desired.next(&config, clock::unix_s());
        self.knock
            .each_gate(|gate| sweep::forget_doors(gate, &next.removed))?;
        self.knock.push(&next.plan)?;
        self.keeper
            .set_doors(next.plan.doors_by_id(&next.expanded), &next.removed);
        self.desired.commit(config, next);
        Ok(())
    }

    /// The program empties a rotating instance when its sequence opens the door; remember that,
    /// so pushing the window again does not bring the sequence back.
    fn note_used_periods(&mut self) {
        for id in self.desired.rotating_instances() {
            if self
                .knock
                .door_record(id)
                .is_some_and(|d| d.step_count == 0)
            {
                self.desired.note_emptied(id);
            }
        }
    }

    /// The window of a rotating door moves on.
    pub(super) fn rotate(&mut self) {
        let config = self.desired.config().clone();
        if let Err(error) = self.apply(config) {
            self.journal
                .line(&format!("cannot move the rotating sequences on: {error:#}"));
        }
    }

    pub(super) fn reload(&mut self) {
        let path = self.options.config.clone();
        self.journal
            .line(&format!("Re-reading config file: {}", path.display()));
        let mut config = match config::load(&path) {
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
        if mirror_keys(&config.options) != mirror_keys(&self.desired.config().options) {
            self.journal
                .line("Mirror, Mirror_Chain and Mirror_Table take effect at the next start");
        }
        if config.options.interfaces != self.desired.config().options.interfaces
            || config.options.progress_capacity != self.capacities.progress
            || config.options.gate_capacity != self.capacities.gate
            || config.options.gate_reserve != self.capacities.reserve
        {
            self.journal.line(
                "Interface, Progress_Capacity, Gate_Capacity and Gate_Reserve take effect at \
                 the next start",
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
        // The file's first unmarked line may be one the kernel claimed.
        let claimed = super::once::claimed(&mut self.knock, &self.journal);
        super::once::settle(&self.journal, &mut config, &claimed);
        super::once::warn_unmarkable(&self.journal, &config);
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

    /// Follows services starting and stopping, and addresses coming and going.
    pub(super) fn check_served(&mut self) {
        let host = super::host_facts(&self.interfaces());
        if !self.desired.observe(host) {
            return;
        }
        let config = self.desired.config().clone();
        if let Err(error) = self.apply(config) {
            self.journal
                .line(&format!("cannot update the served ports: {error:#}"));
        }
    }
}
