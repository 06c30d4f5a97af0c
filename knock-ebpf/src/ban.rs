//! The failure budget in the kernel: strikes per source (an IPv6 source's prefix, see
//! `knock_common::ban::key`), and bans.

use knock_common::Addr;
use knock_common::ban::{self, Strikes};
use knock_common::counter::Counter;
use knock_common::event::kind;
use knock_common::settings::Settings;
use knock_common::{gate, recent};

use crate::maps::{BAN_SEEN, BANS};
use crate::report::{count, emit};

/// Whether `source` is banned now. Costs nothing when bans are off, and one array read for
/// sources whose slot of `BAN_SEEN` says no ban can cover them.
#[inline(always)]
pub fn is_banned(source: Addr, settings: &Settings, now_ns: u64) -> bool {
    if !may_be_banned(source, settings) {
        return false;
    }
    match BANS.get_ptr(ban::key(source, settings.ban_prefix6)) {
        // SAFETY: an LRU entry; a concurrent update can at worst be missed.
        Some(strikes) => unsafe { (*strikes).is_banned_at(now_ns) },
        None => false,
    }
}

/// Whether a ban may cover `source`: bans are on and its slot of `BAN_SEEN` is marked. No
/// lookup in `BANS`.
#[inline(always)]
pub fn may_be_banned(source: Addr, settings: &Settings) -> bool {
    if settings.ban_limit == 0 {
        return false;
    }
    let key = ban::key(source, settings.ban_prefix6);
    BAN_SEEN
        .get(recent::slot(&key))
        .is_none_or(|mark| ban::may_be_banned(*mark, settings.recent_tick))
}

/// Counts one failure of `source`, banning it (its prefix, for IPv6) when it has used up its
/// budget.
#[inline(always)]
pub fn strike(source: Addr, settings: &Settings, now_ns: u64) {
    let policy = settings.ban_policy();
    if policy.limit == 0 {
        return;
    }
    let key = ban::key(source, settings.ban_prefix6);
    // Every strike marks its key's slot in `BAN_SEEN` for as long as a ban it earns would
    // last, before the ban can exist in `BANS`: no ban is ever unmarked.
    if let Some(mark) = BAN_SEEN.get_ptr_mut(recent::slot(&key)) {
        let until = ban::ban_mark(now_ns.saturating_add(policy.ban_ns));
        // SAFETY: an element of an array map; concurrent writers write about the same value,
        // and a lost race can only lower a mark to one that covers the writer's own ban.
        unsafe {
            let raised = gate::raised_mark(core::ptr::read_volatile(mark), until);
            core::ptr::write_volatile(mark, raised);
        }
    }
    let banned = match BANS.get_ptr_mut(key) {
        // SAFETY: as in `is_banned`.
        Some(strikes) => unsafe { (*strikes).strike(now_ns, &policy) },
        None => {
            let mut strikes = Strikes::default();
            let banned = strikes.strike(now_ns, &policy);
            let _ = BANS.insert(key, strikes, 0);
            banned
        }
    };
    if banned {
        count(Counter::SourceBanned);
        // The source that used up the budget, and the prefix its ban covers (0 for IPv4).
        let prefix = if source.is_ipv4() {
            0
        } else {
            settings.ban_prefix6
        };
        emit(
            kind::BANNED,
            source,
            0,
            prefix,
            now_ns,
            now_ns.saturating_add(policy.ban_ns),
        );
    }
}
