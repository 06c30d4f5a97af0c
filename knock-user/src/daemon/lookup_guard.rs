//! The socket-lookup guard at start-up: loaded before the first plan is made, so the plan can
//! say whether refused packets may go on to the host, and attached once that plan is pushed,
//! so that it never judges with empty maps.

use crate::journal::Journal;
use crate::kernel::Knock;
use crate::kernel::guard::GuardAttached;

/// Loads the guard; says why not and what it costs when it cannot. Returns whether it can guard.
pub(super) fn load(knock: &mut Knock, journal: &Journal) -> bool {
    match knock.load_guard() {
        Ok(_) => true,
        Err(error) => {
            say_unguarded(journal, &anyhow::Error::from(error));
            false
        }
    }
}

fn say_unguarded(journal: &Journal, error: &anyhow::Error) {
    journal.line(&format!(
        "knock: no socket-lookup guard ({error:#}): refused datagrams to protected UDP \
         ports, and connection attempts to protected TCP ports that the program cannot \
         answer exactly itself, are dropped, so those ports can look filtered"
    ));
}

/// Attaches the loaded guard; says so, or why not and what it costs. Returns whether it guards.
pub(super) fn attach(knock: &mut Knock, journal: &Journal) -> bool {
    match knock.attach_guard() {
        Ok(GuardAttached::Pinned { replaced: true }) => {
            journal.detail("knock: the socket-lookup guard took over from the earlier one");
            true
        }
        Ok(_) => true,
        Err(error) => {
            say_unguarded(journal, &anyhow::Error::from(error));
            false
        }
    }
}
