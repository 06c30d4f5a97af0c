//! What passes between daemons through the pinned state: the daemon record (who runs, how,
//! and through when doors have been closed), the doors an earlier daemon left open, and the
//! links of interfaces no longer guarded.

use super::Daemon;

impl Daemon {
    /// Writes the daemon record: who runs, how, and through when doors have been closed.
    pub(super) fn record_daemon(&mut self, closed_through_ns: u64) {
        if !self.knock.keeps_state() {
            return;
        }
        let (mirror, mirror_name) = crate::mirror::record(self.mirror_target.as_ref());
        let info = knock_common::status::DaemonInfo {
            started_unix_s: self.started_unix_s,
            closed_through_ns,
            netns: crate::system::proc::current_netns(),
            pid: std::process::id(),
            mode: self.modes_code(),
            mirror,
            trial_until_unix_s: self
                .trial_until_unix_s
                .map_or(0, |s| u32::try_from(s).unwrap_or(u32::MAX)),
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
    pub(super) fn adopt_open_doors(&mut self) {
        let Some(predecessor) = self.predecessor else {
            return;
        };
        let Ok(passes) = self.knock.passes() else {
            return;
        };
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
    pub(super) fn release_other_links(&self) {
        let Some((dir, _)) = &self.found else {
            return;
        };
        for iface in dir.linked_interfaces() {
            if !self.interfaces().contains(&iface) {
                let _ = crate::kernel::pins::detach_pinned_link(&dir.link_path(&iface));
                self.journal.line(&format!(
                    "knock: no longer guarding {iface}; its program is detached"
                ));
            }
        }
    }
}
