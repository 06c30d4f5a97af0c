//! Single-use sequences, kept used: the kernel claims each one-time line and rotating period in
//! its `SPENT` map the moment it opens the door, and the daemon follows the claims rather than
//! its own memory or the file's marks. So a line opens once even when the file cannot be marked
//! (immutable, a read-only /etc), when an OPENED event is lost, or across a restart; the daemon
//! marks what it can, says what it cannot, and moves each one-time door to its next line.

use std::collections::BTreeSet;

use knock_common::spent::Tag;

use super::Daemon;
use crate::config::{self, Config, DoorConfig, onetime};
use crate::journal::Journal;
use crate::kernel::Knock;
use crate::plan::spent;
use crate::system::clock;

/// How often claimed rotating tags whose periods can never return are forgotten.
const FORGET_EVERY_TICKS: u64 = 60;

/// The tags the kernel has claimed; when they cannot be read, said, and none.
pub(super) fn claimed(knock: &mut Knock, journal: &Journal) -> BTreeSet<Tag> {
    match knock.spent() {
        Ok(spent) => spent.into_keys().collect(),
        Err(error) => {
            journal.line(&format!(
                "knock: cannot read which single-use sequences were used: {error:#}; \
                 the kernel still refuses them"
            ));
            BTreeSet::new()
        }
    }
}

/// Moves every one-time door of `config` to its next line (neither marked nor claimed), and
/// marks the lines the kernel claimed that the file does not show yet.
pub(super) fn settle(journal: &Journal, config: &mut Config, claimed: &BTreeSet<Tag>) {
    for door in &mut config.doors {
        settle_door(journal, door, claimed);
    }
}

/// Says, for each one-time file that cannot be written, that its used lines will stay unmarked.
pub(super) fn warn_unmarkable(journal: &Journal, config: &Config) {
    for door in &config.doors {
        let Some(file) = &door.one_time_sequences else {
            continue;
        };
        if let Err(error) = onetime::writable(file) {
            journal.line(&format!(
                "{}: {} cannot be marked ({error}): used lines stay unmarked in it; knock \
                 refuses them anyway while its pinned state lasts (until `knock-user stop` or a \
                 reboot)",
                door.name,
                file.display()
            ));
        }
    }
}

fn settle_door(journal: &Journal, door: &mut DoorConfig, claimed: &BTreeSet<Tag>) {
    let Some(file) = door.one_time_sequences.clone() else {
        return;
    };
    let had_sequence = !door.sequence.is_empty();
    let text = match config::read(&file) {
        Ok(text) => text,
        Err(error) => return close(journal, door, &format!("{error}")),
    };
    for line in spent::unmarked_spent(&text, &door.name, claimed) {
        if let Err(error) = onetime::mark_used(&file, line) {
            journal.line(&format!(
                "{}: cannot mark line {line} of {} used: {error}",
                door.name,
                file.display()
            ));
        }
    }
    match spent::next_line(&file, &text, &door.name, claimed) {
        Ok(Some(current)) => {
            door.sequence = current.sequence;
            door.one_time_line = Some(current.line);
        }
        Ok(None) => {
            door.sequence.clear();
            door.one_time_line = None;
            if had_sequence {
                journal.line(&format!(
                    "{}: no one-time sequence left in {}; the door is closed",
                    door.name,
                    file.display()
                ));
            }
        }
        Err(error) => close(journal, door, &format!("{error}")),
    }
}

fn close(journal: &Journal, door: &mut DoorConfig, why: &str) {
    journal.line(&format!("{}: {why}; the door is closed", door.name));
    door.sequence.clear();
    door.one_time_line = None;
}

impl Daemon {
    /// A one-time door's sequence was used (its OPENED event, or a claim found by `catch_up`):
    /// mark it and move on to the next line.
    pub(super) fn next_one_time_sequence(&mut self, id: u8) {
        let Some(name) = self.desired.one_time_door(id).map(|d| d.name.clone()) else {
            return;
        };
        let claimed = claimed(&mut self.knock, &self.journal);
        let mut config = self.desired.config().clone();
        let Some(door) = config.doors.iter_mut().find(|d| d.name == name) else {
            return;
        };
        settle_door(&self.journal, door, &claimed);
        if let Err(error) = self.apply(config) {
            self.journal.line(&format!(
                "{name}: cannot load the next one-time sequence: {error:#}"
            ));
        }
    }

    /// Each tick: a one-time line the kernel claimed without the daemon hearing of it (its
    /// OPENED event lost to a full ring) moves its door on all the same; and now and then,
    /// rotating tags whose periods can never return are forgotten, so the record keeps room.
    pub(super) fn catch_up(&mut self, tick: u64) {
        let pending: Vec<u8> = (0..self.desired.plan().names.len())
            .filter_map(|id| u8::try_from(id).ok())
            .filter(|&id| {
                self.desired.one_time_door(id).is_some_and(|door| {
                    !door.sequence.is_empty()
                        && self
                            .knock
                            .is_spent(spent::one_time_tag(&door.name, &door.sequence))
                })
            })
            .collect();
        for id in pending {
            self.next_one_time_sequence(id);
        }
        if tick.is_multiple_of(FORGET_EVERY_TICKS) {
            self.forget_stale_rotating();
        }
    }

    fn forget_stale_rotating(&mut self) {
        let Ok(claimed) = self.knock.spent() else {
            return;
        };
        let keep_ns = spent::keep_rotating_ns(self.desired.config());
        let stale = spent::stale(&claimed, clock::monotonic_ns(), keep_ns);
        if !stale.is_empty()
            && let Err(error) = self.knock.forget_spent(&stale)
        {
            self.journal.line(&format!(
                "knock: cannot forget {} used rotating sequences: {error:#}",
                stale.len()
            ));
        }
    }
}
