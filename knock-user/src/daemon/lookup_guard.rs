//! The socket-lookup guard at start-up: loaded before the first plan is made, attached once that
//! plan is pushed, so that it never judges with empty maps; the plan leaves refused packets to
//! the host's stack only once the guard is attached (`Desired::guard_attached`).

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

/// Without a guard of this daemon's: detaches the earlier daemon's, which would go on judging
/// by the earlier configuration. Called once the pushed plan leaves nothing to a guard.
pub(super) fn release_earlier(knock: &Knock, journal: &Journal) {
    match knock.release_earlier_guard() {
        Ok(false) => {}
        Ok(true) => journal.detail(
            "knock: the earlier daemon's socket-lookup guard is detached: it judged by the \
             earlier configuration",
        ),
        Err(error) => journal.line(&format!(
            "knock: cannot detach the earlier daemon's socket-lookup guard ({error}): it refuses \
             by the earlier configuration until `knock-user stop`"
        )),
    }
}
