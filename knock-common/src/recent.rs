//! A coarse, lossy memory of when sources last knocked: one time per hash slot of source
//! addresses. A new connection or datagram to an unrelated port only matters to the knock
//! state machine when its source has an attempt in progress, and a source whose slot has seen
//! no knock for longer than any sequence may take cannot have one. So most traffic skips the
//! progress and ban lookups, the two hash maps that cost the most per packet.
//!
//! Sources that share a slot only cost each other a lookup. The memory can only err towards
//! looking: the time is written before an attempt can start, and every writer writes about the
//! same value, so a lost race loses nanoseconds, never the attempt.

use crate::Addr;

/// Slots in the memory: a power of two.
pub const SLOTS: u32 = 16384;

/// The memory's clock ticks every 2^30 ns, about 1.07 s.
const TICK_SHIFT: u32 = 30;

/// The slot of `source`.
#[inline(always)]
pub fn slot(source: &Addr) -> u32 {
    let words = source.words();
    let mut folded = 0u32;
    let mut i = 0;
    while i < 4 {
        folded = (folded ^ u32::from_be(words[i])).wrapping_mul(0x9e37_79b1);
        i += 1;
    }
    // Multiplying carries every bit of the address upwards: the top bits make the slot.
    folded >> (32 - SLOTS.trailing_zeros())
}

/// `now_ns` on the memory's clock.
#[inline(always)]
pub const fn tick(now_ns: u64) -> u32 {
    (now_ns >> TICK_SHIFT) as u32
}

/// Whether a source whose slot last saw a knock at tick `last` may still have an attempt in
/// progress at tick `now`, when no sequence takes longer than `longest_s` seconds. The
/// longest timeout is the one configured at the time of the check, so a reload that lengthens
/// it is taken into account. `now` may lag behind the real time (user space sets it), which
/// only makes the answer yes more often.
#[inline(always)]
pub const fn may_be_knocking(last: u32, now: u32, longest_s: u32) -> bool {
    // A second is shorter than a tick, so `longest_s` ticks cover the timeout; one more covers
    // the rounding of both times down to ticks.
    now as u64 <= last as u64 + longest_s as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const BOOT: u64 = 3600 * S;

    fn v4(last: u8) -> Addr {
        Addr::from_ipv4([198, 51, 100, last])
    }

    #[test]
    fn a_source_that_knocked_may_be_knocking_for_the_longest_timeout() {
        let last = tick(BOOT);
        assert!(may_be_knocking(last, tick(BOOT), 5));
        assert!(may_be_knocking(last, tick(BOOT + 5 * S), 5));
        // Just short of a tick boundary when knocking, just past one when checked.
        let edge = (u64::from(last) + 1) << TICK_SHIFT;
        assert!(may_be_knocking(tick(edge - 1), tick(edge - 1 + 5 * S), 5));
    }

    #[test]
    fn a_source_that_knocked_longer_ago_than_any_sequence_takes_is_not_knocking() {
        let last = tick(BOOT);
        assert!(!may_be_knocking(last, tick(BOOT + 9 * S), 5));
    }

    #[test]
    fn a_slot_that_never_saw_a_knock_is_not_knocking_once_the_host_has_been_up_a_while() {
        assert!(!may_be_knocking(0, tick(BOOT), 30));
        assert!(
            may_be_knocking(0, tick(10 * S), 30),
            "early after boot it errs towards looking"
        );
    }

    #[test]
    fn a_clock_nobody_set_makes_every_source_worth_a_look() {
        assert!(may_be_knocking(0, 0, 0));
        assert!(may_be_knocking(tick(BOOT), 0, 0));
    }

    #[test]
    fn a_reload_that_lengthens_the_timeout_lengthens_the_memory() {
        let last = tick(BOOT);
        assert!(!may_be_knocking(last, tick(BOOT + 20 * S), 5));
        assert!(may_be_knocking(last, tick(BOOT + 20 * S), 30));
    }

    /// The slots of two addresses as the byte-wise fold of the first version computed them:
    /// pinned LAST_KNOCK, BAN_SEEN and PASS_SEEN entries keep their meaning across upgrades.
    #[test]
    fn slots_are_those_of_earlier_versions() {
        assert_eq!(slot(&v4(2)), 12945);
        let v6 = Addr::from_ipv6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(slot(&v6), 12167);
    }

    #[test]
    fn neighbouring_addresses_spread_over_the_slots() {
        let slots: std::collections::BTreeSet<u32> = (0..=255).map(|i| slot(&v4(i))).collect();
        assert!(slots.len() > 240, "{} distinct slots of 256", slots.len());
        let v6 = Addr::from_ipv6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert!(slot(&v6) < SLOTS);
    }
}
