//! The failure budget: a source that fails too often in a window is ignored for a while.
//! Failures are wrong knocks on knock ports: attempts they reset. Nothing else counts: SPA
//! packets that fail (nobody without the key gains anything from them, and anyone can forge
//! them "from" a client), nor resets by the strict rule (a connection to another port, which
//! a spoofer could aim at a client).
//!
//! Sources are banned by [`key`]: an IPv4 address alone, an IPv6 address by its prefix (a /64
//! by default), since whoever holds one address of a /64 holds all of them.

use crate::Addr;

/// The default prefix IPv6 sources are banned by.
pub const DEFAULT_PREFIX6: u8 = 64;

/// The key of the `BANS` map that `source` is counted and banned under: an IPv4 address
/// itself, an IPv6 address with every bit past its first `prefix6` cleared. The kernel and
/// `knock-user unban` both use it, so both find the same entry.
#[inline(always)]
pub fn key(source: Addr, prefix6: u8) -> Addr {
    if source.is_ipv4() {
        return source;
    }
    let bits = prefix6 as i32;
    let mut words = source.words();
    let mut i = 0;
    while i < 4 {
        // The word's share of the prefix: 32 bits of it for each word before.
        words[i] &= mask(bits - 32 * i as i32).to_be();
        i += 1;
    }
    Addr::from_words(words)
}

/// The leading `bits` of a 32-bit word set: none for `bits` below 1, all from 32 on (`bits`
/// from -96 to 255). Clamped with sign masks rather than comparisons: LLVM still makes branches
/// of some, but the kernel's verifier walked 3-4 % less of `knock` and `knock_ip` this way.
#[inline(always)]
const fn mask(bits: i32) -> u32 {
    // `bits`, or 0 when negative: the sign, spread over the word, clears it.
    let from_zero = bits & !(bits >> 31);
    // At most 32: the excess is kept only while negative.
    let excess = from_zero - 32;
    let kept = 32 + (excess & (excess >> 31));
    (0xffff_ffff_0000_0000_u64 >> kept) as u32
}

/// The mark a ban until `banned_until_ns` leaves in its key's slot of `BAN_SEEN` (by
/// `recent::slot` of the [`key`]): a tick of `recent`'s coarse clock at or past the ban's end,
/// with one to spare. Packets whose slot's mark has passed skip the `BANS` lookup.
#[inline(always)]
pub const fn ban_mark(banned_until_ns: u64) -> u32 {
    crate::recent::tick(banned_until_ns).saturating_add(1)
}

/// Whether a key whose slot of `BAN_SEEN` is marked `mark` may be banned at tick `now` (user
/// space's tick, which lags the clock and so only says yes more often). A slot's mark only
/// grows (see `gate::raised_mark`), so a shorter ban never hides a longer one.
#[inline(always)]
pub const fn may_be_banned(mark: u32, now: u32) -> bool {
    mark >= now
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
    fn a_ban_mark_covers_the_whole_ban() {
        let mut strikes = Strikes::default();
        for at in 1..=3 {
            strikes.strike(at * S, &policy());
        }
        let mark = ban_mark(strikes.banned_until_ns);
        for now in [3 * S, 300 * S, 602 * S, 603 * S] {
            // User space's tick lags the clock by up to a tick.
            for lag in [0, 1] {
                let tick = crate::recent::tick(now).saturating_sub(lag);
                assert!(
                    may_be_banned(mark, tick) || !strikes.is_banned_at(now),
                    "{now} {lag}"
                );
            }
        }
        assert!(!may_be_banned(mark, crate::recent::tick(610 * S)));
    }

    #[test]
    fn a_slot_never_marked_is_looked_up_only_early_after_boot() {
        assert!(may_be_banned(0, 0));
        assert!(!may_be_banned(0, crate::recent::tick(10 * S)));
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

    fn v6(text: &str) -> Addr {
        Addr::from(text.parse::<core::net::Ipv6Addr>().unwrap())
    }

    #[test]
    fn ipv6_sources_are_banned_by_their_prefix() {
        let client = v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        assert_eq!(key(client, 64), v6("2001:db8:1:2::"));
        assert_eq!(key(v6("2001:db8:1:2::99"), 64), key(client, 64));
        assert_ne!(key(v6("2001:db8:1:3::1"), 64), key(client, 64));
        assert_eq!(key(client, 48), v6("2001:db8:1::"));
        assert_eq!(key(client, 56), v6("2001:db8:1::"));
        assert_eq!(key(client, 80), v6("2001:db8:1:2:aaaa::"));
        assert_eq!(key(client, 128), client);
        assert_eq!(key(client, 200), client, "a prefix past 128 is the address");
        assert_eq!(key(client, 0), v6("::"));
    }

    #[test]
    fn every_prefix_length_keeps_exactly_its_leading_bits() {
        let client = v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        let bits = u128::from_be_bytes(client.octets());
        for prefix in 0..=255u32 {
            // Past 128, the whole address.
            let length = prefix.min(128);
            let kept = if length == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - length))
            };
            assert_eq!(
                key(client, prefix as u8).octets(),
                kept.to_be_bytes(),
                "prefix /{prefix}"
            );
        }
    }

    #[test]
    fn ipv4_sources_are_banned_one_by_one() {
        let client = Addr::from_ipv4([198, 51, 100, 2]);
        assert_eq!(key(client, 64), client);
        assert_eq!(key(client, 0), client);
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
