//! The failure budget: a source that fails too often in a window is ignored for a while.
//! Failures are attempts reset by a wrong knock and rejected SPA packets.

use crate::Addr;

/// The `BANS` key a source's failures and ban are held under. The program (counting and
/// judging) and `knock-user unban` both go through here, so they always agree on it.
#[inline(always)]
pub const fn key(source: Addr) -> Addr {
    source
}

/// One source's failures, the value of the `BANS` LRU map, keyed by [`key`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strikes {
    pub window_start_ns: u64,
    pub banned_until_ns: u64,
    pub count: u32,
    pub _pad: u32,
}
crate::assert_layout!(Strikes, size = 24, align = 8);

/// How many failures within how long earn a ban of how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Zero turns bans off.
    pub limit: u32,
    pub window_ns: u64,
    pub ban_ns: u64,
}

impl Strikes {
    #[inline(always)]
    pub const fn is_banned_at(&self, now_ns: u64) -> bool {
        self.banned_until_ns > now_ns
    }

    /// Counts one failure; returns true when it earns a ban.
    #[inline(always)]
    pub fn strike(&mut self, now_ns: u64, policy: &Policy) -> bool {
        if policy.limit == 0 || self.is_banned_at(now_ns) {
            return false;
        }
        if now_ns.saturating_sub(self.window_start_ns) > policy.window_ns {
            self.window_start_ns = now_ns;
            self.count = 0;
        }
        self.count += 1;
        if self.count >= policy.limit {
            self.banned_until_ns = now_ns.saturating_add(policy.ban_ns);
            self.count = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy() -> Policy {
        Policy {
            limit: 3,
            window_ns: 60 * S,
            ban_ns: 600 * S,
        }
    }

    #[test]
    fn the_limit_within_the_window_earns_a_ban_of_the_ban_time() {
        let mut strikes = Strikes::default();
        assert!(!strikes.strike(S, &policy()));
        assert!(!strikes.strike(2 * S, &policy()));
        assert!(strikes.strike(3 * S, &policy()));
        assert!(strikes.is_banned_at(602 * S));
        assert!(!strikes.is_banned_at(603 * S));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not() {
        let mut strikes = Strikes::default();
        strikes.strike(S, &policy());
        strikes.strike(2 * S, &policy());
        assert!(!strikes.strike(100 * S, &policy()), "the window restarted");
        assert!(!strikes.is_banned_at(101 * S));
    }

    #[test]
    fn a_zero_limit_never_bans() {
        let mut strikes = Strikes::default();
        let off = Policy {
            limit: 0,
            ..policy()
        };
        for t in 0..100 {
            assert!(!strikes.strike(t * S, &off));
        }
    }
}
