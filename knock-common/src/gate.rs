//! The gate: which doors are open for a source, and until when.
//!
//! Two hash maps hold one [`Pass`] per source that has opened a door: `GATE` the doors opened
//! by static sequences (`Gate_Capacity` sources), `GATE_RESERVE` the doors opened by SPA and by
//! single-use sequences (`Gate_Reserve` sources). Neither is an LRU: only completed sequences
//! and authentic SPA packets add entries, so a flood of spoofed first knocks cannot evict an
//! open door. And they are apart because a static sequence, once sniffed, can be replayed from
//! any number of spoofed sources until `GATE` is full: the doors nobody can replay still find
//! room in the reserve. Which doors guard a port is told by the port's class byte (its guard
//! group) and the `GUARDS` array, so the gate decision is one array read, one hash lookup and a
//! scan of eight slots; the reserve costs a second lookup only for sources whose slot of
//! `RESERVE_SEEN` says they may have a pass there ([`may_hold_reserve`]).

use crate::settings::Settings;
use crate::{ports, recent};

/// The mark an opening in the reserve leaves in its source's slot of `RESERVE_SEEN`, at
/// `now_ns`: a tick of `recent`'s coarse clock past the latest deadline any door opened now can
/// have, when no door stays open longer than `longest_open_s` seconds. Every writer writes
/// about the same value at about the same time, so a lost race costs nanoseconds.
#[inline(always)]
pub const fn reserve_mark(now_ns: u64, longest_open_s: u32) -> u32 {
    // A tick is longer than a second, so `longest_open_s` ticks cover the open time; two more
    // cover the rounding of both times down to ticks.
    recent::tick(now_ns)
        .saturating_add(longest_open_s)
        .saturating_add(2)
}

/// Whether a source whose slot is marked `mark` may have a pass in the reserve at tick `now`
/// (user space's tick, which lags the clock and so only makes this say yes more often).
#[inline(always)]
pub const fn may_hold_reserve(mark: u32, now: u32) -> bool {
    mark >= now
}

/// The mark any opening leaves in its source's slot of `PASS_SEEN`: like [`reserve_mark`],
/// for a pass in either map. A slot's mark only grows ([`raised_mark`]), so a shorter open time
/// after a reload never hides a door opened before it.
#[inline(always)]
pub const fn pass_mark(now_ns: u64, longest_open_s: u32) -> u32 {
    reserve_mark(now_ns, longest_open_s)
}

/// The mark a slot holding `old` takes for an opening that leaves `new`: the later of the two.
#[inline(always)]
pub const fn raised_mark(old: u32, new: u32) -> u32 {
    if old > new { old } else { new }
}

/// Whether a source whose slot of `PASS_SEEN` is marked `mark` may have a pass in either map
/// at tick `now` (user space's tick, which lags and so only says yes more often).
#[inline(always)]
pub const fn may_hold_pass(mark: u32, now: u32) -> bool {
    mark >= now
}

/// Whether the main program may refuse a new connection to a guarded port of class `class`
/// on its own, with a plain drop, where the gate program would come to the same drop after a
/// tail call and a hash lookup, for a source no door can be open for: the port is a protected
/// one (the stealth look's group 0 answers by destination), the look is filtered (a refusal is
/// a drop, never a reset), no network is always allowed, nothing is only observed, and no
/// debug record of the refusal is wanted. Only the flags: see [`refused_at_once`].
#[inline(always)]
pub const fn may_refuse_at_once(class: u8, settings: &Settings, debug_log: bool) -> bool {
    use crate::settings::{ALWAYS_ALLOWING, FILTERED, OBSERVING};
    // Without short circuits: fewer branches for the verifier to walk on every path through
    // the classifier.
    let flags = settings.flags & (FILTERED | ALWAYS_ALLOWING | OBSERVING);
    (ports::guard_group(class) != 0) & (flags == FILTERED) & !debug_log
}

/// Whether the main program refuses a new connection to a guarded port of class `class` on
/// its own, for a source whose slot of `PASS_SEEN` is marked `mark`.
#[inline(always)]
pub const fn refused_at_once(class: u8, mark: u32, settings: &Settings, debug_log: bool) -> bool {
    may_refuse_at_once(class, settings, debug_log) && !may_hold_pass(mark, settings.recent_tick)
}

/// How many doors can be open for one source at once.
pub const DOORS_PER_PASS: usize = 8;

/// The doors open for one source.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// When each slot's door closes (monotonic clock, ns); a passed deadline frees the slot.
    pub expires_ns: [u64; DOORS_PER_PASS],
    /// The door id held by each slot.
    pub door: [u8; DOORS_PER_PASS],
}
crate::assert_layout!(Pass, size = 72, align = 8);

/// What opening a door did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The door was closed and is now open.
    Opened,
    /// The door was already open; its deadline moved.
    Refreshed,
    /// Every slot holds another open door.
    Full,
}

/// 1 if `a < b` (unsigned), else 0, without a comparison: BPF has no instruction that sets a
/// register from a comparison, so the compiler turns each one into a jump, and the verifier
/// walks what follows once per side. A slot index picked by jumps is a constant on every path,
/// which the verifier must then track precisely, so those paths never merge again (Hacker's
/// Delight, 2-12).
#[inline(always)]
const fn below(a: u64, b: u64) -> u64 {
    ((!a & b) | ((!a | b) & a.wrapping_sub(b))) >> 63
}

/// The index of the lowest set bit of `mask` (one of eight slots), computed without
/// comparisons (see [`below`]); any index for an empty mask.
#[inline(always)]
const fn lowest_slot(mask: u64) -> usize {
    let bit = mask & mask.wrapping_neg() & 0xff;
    // Each bit of the index: whether the lowest bit lies among the slots with that bit set.
    let one = ((bit & 0xaa) + 0xff) >> 8;
    let two = ((bit & 0xcc) + 0xff) >> 8;
    let four = ((bit & 0xf0) + 0xff) >> 8;
    (one | (two << 1) | (four << 2)) as usize
}

impl Pass {
    /// Whether any door in `guarding` (a mask of door ids) is open at `now_ns`.
    #[inline(always)]
    pub fn admits(&self, guarding: u64, now_ns: u64) -> bool {
        let mut admitted = false;
        for slot in 0..DOORS_PER_PASS {
            let guards = (guarding >> (self.door[slot] & 63)) & 1 != 0;
            admitted |= guards && self.expires_ns[slot] > now_ns;
        }
        admitted
    }

    /// The slots whose door is open at `now_ns`, one bit per slot.
    #[inline(always)]
    fn live(&self, now_ns: u64) -> u64 {
        let mut live = 0;
        for slot in 0..DOORS_PER_PASS {
            live |= below(now_ns, self.expires_ns[slot]) << slot;
        }
        live
    }

    /// The slots holding `door`, open or not, one bit per slot: all eight compared at once, as
    /// the bytes of one word.
    #[inline(always)]
    fn holding(&self, door: u8) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        // Byte by byte: zero where the slot holds `door`.
        let differ = u64::from_le_bytes(self.door) ^ (u64::from(door) * ONES);
        // The top bit of each byte: set where that byte is not zero. No sum carries into the
        // next byte, so no slot's answer depends on its neighbour's.
        let nonzero = ((differ & LOW7) + LOW7) | differ;
        let same = (!nonzero & !LOW7) >> 7;
        // One bit per byte at bit 8k, gathered to bit 56 + k; no two products share a bit.
        same.wrapping_mul(0x0102_0408_1020_4080) >> 56
    }

    /// Whether `door` is open at `now_ns`.
    #[inline(always)]
    pub fn holds(&self, door: u8, now_ns: u64) -> bool {
        self.live(now_ns) & self.holding(door) != 0
    }

    /// Opens `door` until `expires_ns`, or moves its deadline if it is already open.
    ///
    /// Slots are picked by bit masks rather than by a branch per slot: the SPA and open
    /// programs inline this three times, and the verifier walked each copy once per
    /// combination of slot indices the branches left (see [`below`]).
    #[inline(always)]
    pub fn open(&mut self, door: u8, expires_ns: u64, now_ns: u64) -> Opening {
        let live = self.live(now_ns);
        let held = live & self.holding(door);
        let free = !live & ((1 << DOORS_PER_PASS) - 1);
        // The slot already holding the door wins; else the first free one.
        let (slots, opening) = if held != 0 {
            (held, Opening::Refreshed)
        } else if free != 0 {
            (free, Opening::Opened)
        } else {
            return Opening::Full;
        };
        // The mask tells the verifier the index fits, but the compiler knows it does and drops
        // the mask unless the index comes out of memory it cannot see into; and kernels before
        // 6.x cannot bound `lowest_slot`'s OR themselves (6.1 refused the programs: "math
        // between map_value pointer and register with unbounded min value").
        let slot = lowest_slot(slots);
        // SAFETY: a read of a local, initialised just above.
        let slot = unsafe { core::ptr::read_volatile(&raw const slot) } & (DOORS_PER_PASS - 1);
        self.door[slot] = door;
        if self.expires_ns[slot] < expires_ns || opening == Opening::Opened {
            self.expires_ns[slot] = expires_ns;
        }
        opening
    }

    /// The open doors at `now_ns`, with their deadlines.
    pub fn open_doors(&self, now_ns: u64) -> impl Iterator<Item = (u8, u64)> + '_ {
        (0..DOORS_PER_PASS)
            .filter(move |&slot| self.expires_ns[slot] > now_ns)
            .map(|slot| (self.door[slot], self.expires_ns[slot]))
    }

    pub fn is_closed_at(&self, now_ns: u64) -> bool {
        self.open_doors(now_ns).next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_reserve_mark_outlives_every_door_opened_with_it() {
        let now = 3600 * S;
        let mark = reserve_mark(now, 30);
        for lag in [0, 1, 2] {
            // The tick user space wrote up to `lag` ticks before the door's deadline.
            let deadline = now + 30 * S;
            let written = recent::tick(deadline).saturating_sub(lag);
            assert!(may_hold_reserve(mark, written), "lag {lag}");
            assert!(may_hold_reserve(mark, recent::tick(deadline)));
        }
        assert!(!may_hold_reserve(mark, recent::tick(now + 40 * S)));
    }

    #[test]
    fn a_slot_never_marked_is_looked_up_only_early_after_boot() {
        assert!(may_hold_reserve(0, 0));
        assert!(!may_hold_reserve(0, recent::tick(60 * S)));
    }

    #[test]
    fn a_pass_mark_only_grows() {
        let long = pass_mark(3600 * S, 3600);
        let short = pass_mark(3610 * S, 60);
        assert_eq!(
            raised_mark(long, short),
            long,
            "a shorter open time keeps the mark"
        );
        assert_eq!(raised_mark(short, long), long);
        assert!(may_hold_pass(
            raised_mark(long, short),
            recent::tick(7000 * S)
        ));
    }

    fn filtered_at(tick: u32, flags: u32) -> Settings {
        Settings {
            flags: crate::settings::FILTERED | flags,
            recent_tick: tick,
            ..Settings::default()
        }
    }

    const PROTECTED: u8 = ports::guarded_class(1, 0);

    #[test]
    fn a_stranger_is_refused_at_once_only_where_the_gate_would_just_drop() {
        let now = recent::tick(3600 * S);
        let settings = filtered_at(now, 0);
        assert!(refused_at_once(PROTECTED, 0, &settings, false));
        // A door may be open for the slot: the gate looks.
        let mark = pass_mark(3590 * S, 30);
        assert!(!refused_at_once(PROTECTED, mark, &settings, false));
        // The stealth look's unserved ports answer by destination.
        assert!(!refused_at_once(ports::STEALTHY, 0, &settings, false));
        // The closed look answers with a reset.
        let closed = Settings {
            flags: 0,
            ..settings
        };
        assert!(!refused_at_once(PROTECTED, 0, &closed, false));
        for flag in [crate::settings::ALWAYS_ALLOWING, crate::settings::OBSERVING] {
            assert!(!refused_at_once(
                PROTECTED,
                0,
                &filtered_at(now, flag),
                false
            ));
        }
        // A debug record of the refusal is the gate program's to write.
        assert!(!refused_at_once(PROTECTED, 0, &settings, true));
    }

    #[test]
    fn a_door_opened_is_never_refused_at_once_while_it_may_be_open() {
        let opened = 3600 * S;
        let mark = pass_mark(opened, 30);
        for at in [opened, opened + 30 * S, opened + 31 * S] {
            // User space's tick lags the clock by up to a tick.
            for lag in [0, 1] {
                let settings = filtered_at(recent::tick(at).saturating_sub(lag), 0);
                assert!(
                    !refused_at_once(PROTECTED, mark, &settings, false),
                    "{at} {lag}"
                );
            }
        }
        let later = filtered_at(recent::tick(opened + 40 * S), 0);
        assert!(refused_at_once(PROTECTED, mark, &later, false));
    }

    #[test]
    fn an_empty_pass_admits_nothing() {
        assert!(!Pass::default().admits(u64::MAX, 0));
    }

    #[test]
    fn an_open_door_admits_its_ports_until_its_deadline() {
        let mut pass = Pass::default();
        assert_eq!(pass.open(3, 100, 10), Opening::Opened);
        assert!(pass.admits(1 << 3, 99));
        assert!(!pass.admits(1 << 3, 100), "closed at its deadline");
        assert!(!pass.admits(1 << 4, 50), "another door's ports stay shut");
    }

    #[test]
    fn opening_an_open_door_refreshes_it() {
        let mut pass = Pass::default();
        pass.open(3, 100, 10);
        assert_eq!(pass.open(3, 150, 20), Opening::Refreshed);
        assert!(pass.admits(1 << 3, 120));
        assert_eq!(pass.open_doors(20).count(), 1);
    }

    #[test]
    fn a_closed_door_opens_again_in_a_free_slot() {
        let mut pass = Pass::default();
        pass.open(3, 100, 10);
        assert_eq!(pass.open(3, 300, 200), Opening::Opened);
        assert!(pass.admits(1 << 3, 250));
    }

    #[test]
    fn a_full_pass_refuses_a_ninth_door() {
        let mut pass = Pass::default();
        for door in 0..DOORS_PER_PASS as u8 {
            assert_eq!(pass.open(door, 100, 0), Opening::Opened);
        }
        assert_eq!(pass.open(9, 100, 0), Opening::Full);
        assert_eq!(pass.open(2, 100, 0), Opening::Refreshed);
    }

    /// The rule `open` and `holds` follow, written the plain way: one branch per slot.
    fn opened_plainly(pass: &mut Pass, door: u8, expires_ns: u64, now_ns: u64) -> Opening {
        let live = |slot: usize, pass: &Pass| pass.expires_ns[slot] > now_ns;
        let held = (0..DOORS_PER_PASS).find(|&slot| live(slot, pass) && pass.door[slot] == door);
        let free = (0..DOORS_PER_PASS).find(|&slot| !live(slot, pass));
        let (slot, opening) = match (held, free) {
            (Some(slot), _) => (slot, Opening::Refreshed),
            (None, Some(slot)) => (slot, Opening::Opened),
            (None, None) => return Opening::Full,
        };
        pass.door[slot] = door;
        if opening == Opening::Opened || pass.expires_ns[slot] < expires_ns {
            pass.expires_ns[slot] = expires_ns;
        }
        opening
    }

    #[test]
    fn the_comparisons_without_branches_agree_with_the_operators() {
        let edges = [
            0,
            1,
            2,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            (1 << 63) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for a in edges {
            for b in edges {
                assert_eq!(below(a, b) == 1, a < b, "{a} < {b}");
            }
        }
        for mask in 1..=0xffu64 {
            assert_eq!(
                lowest_slot(mask),
                mask.trailing_zeros() as usize,
                "{mask:#x}"
            );
        }
    }

    #[test]
    fn the_slots_holding_a_door_are_found_in_one_word() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..100_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut pass = Pass {
                door: state.to_le_bytes(),
                ..Pass::default()
            };
            // Repeated ids, and the ids next to each other in every bit.
            pass.door[(round % 8) as usize] = pass.door[((round / 8) % 8) as usize];
            for door in [pass.door[0], pass.door[7], 0, 0x7f, 0x80, 0xff, round as u8] {
                let plain = (0..DOORS_PER_PASS)
                    .filter(|&slot| pass.door[slot] == door)
                    .fold(0, |mask, slot| mask | 1 << slot);
                assert_eq!(pass.holding(door), plain, "{:?} {door}", pass.door);
            }
        }
    }

    /// Random passes whose slots mix open, closed and just-expiring doors of a few ids, opened
    /// and probed both ways: every outcome and every slot the same.
    #[test]
    fn opening_without_branches_picks_the_slots_the_plain_rule_picks() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let now = [0, 5, 1 << 40, u64::MAX - 1, u64::MAX][next() as usize % 5];
            let mut pass = Pass::default();
            for slot in 0..DOORS_PER_PASS {
                pass.door[slot] = [0, 1, 2, 3, 255][next() as usize % 5];
                pass.expires_ns[slot] = [
                    0,
                    now.wrapping_sub(1),
                    now,
                    now.wrapping_add(1),
                    u64::MAX,
                    next(),
                ][next() as usize % 6];
            }
            let door = [0, 1, 2, 3, 255][next() as usize % 5];
            let expires = [0, now, now.saturating_add(100), next()][next() as usize % 4];
            let plain_holds = (0..DOORS_PER_PASS)
                .any(|slot| pass.expires_ns[slot] > now && pass.door[slot] == door);
            assert_eq!(pass.holds(door, now), plain_holds, "{pass:?} {door} {now}");
            let mut plain = pass;
            let opening = pass.open(door, expires, now);
            assert_eq!(opening, opened_plainly(&mut plain, door, expires, now));
            assert_eq!(pass, plain, "door {door} until {expires} at {now}");
        }
    }
}
