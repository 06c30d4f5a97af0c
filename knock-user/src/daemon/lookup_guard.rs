//! The socket-lookup guard at start-up: attached before the first plan is pushed, so the plan
//! can say whether refused packets may go on to the host.

use crate::journal::Journal;
use crate::kernel::Knock;
use crate::kernel::guard::GuardAttached;

/// Attaches the guard; says so, or why not and what it costs. Returns whether it guards.
pub(super) fn attach(knock: &mut Knock, journal: &Journal) -> bool {
    match knock.attach_guard() {
        Ok(GuardAttached::Pinned { replaced: true }) => {
            journal.detail("knock: the socket-lookup guard took over from the earlier one");
            true
        }
        Ok(_) => true,
        Err(error) => {
            journal.line(&format!(
                "knock: no socket-lookup guard ({:#}): refused datagrams to protected UDP \
                 ports, and connection attempts to protected TCP ports that the program cannot \
                 answer exactly itself, are dropped, so those ports can look filtered",
                anyhow::Error::from(error)
            ));
            false
        }
    }
}
