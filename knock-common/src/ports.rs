//! Port classes: one byte per (protocol, port) saying what knock does with packets to it, packed
//! eight to a word in the `PORTS` array map. The XDP fast path reads one word and, for most
//! traffic, stops there.

use crate::segment::PROTO_UDP;

/// Some door's sequence has a step on this port.
pub const KNOCK: u8 = 1;
/// Some door protects this port: new connections need an open door.
pub const GUARDED: u8 = 2;
/// The host serves this port, so knocks on it are counted but let through.
pub const SERVED: u8 = 4;

/// For a knock port: some door's first knock goes to this port, so only here does the program
/// look up `FIRST_STEPS`. The bit is the lowest of a guarded port's group; no port is both a
/// knock and guarded (the configuration refuses it, and the stealth look leaves knock ports
/// alone), and were one ever both, it would count as a possible first step whatever its group.
pub const FIRST_STEP: u8 = 8;

/// Whether a first knock may go to a port of class `class`: the `FIRST_STEPS` lookup is
/// worth making.
#[inline(always)]
pub const fn may_start(class: u8) -> bool {
    class & (GUARDED | FIRST_STEP) != 0
}

/// The upper five bits of a guarded port's class byte hold its guard group: the index in the
/// `GUARDS` array of the mask of doors that open it.
const GROUP_SHIFT: u32 = 3;
/// Guard groups, and so distinct protected ports, in one configuration. Group 0 opens for no
/// door: in the stealth look, the ports the host does not serve are guarded by it.
pub const GUARD_GROUPS: u32 = 32;
/// The class of a port the stealth look drops new connections and datagrams to.
pub const STEALTHY: u8 = guarded_class(0, 0);

/// The class byte of a guarded port in `group`, with other flags.
pub const fn guarded_class(group: u8, flags: u8) -> u8 {
    (group << GROUP_SHIFT) | GUARDED | flags
}

/// The guard group of a class byte.
#[inline(always)]
pub const fn guard_group(class: u8) -> u32 {
    (class >> GROUP_SHIFT) as u32
}

const PORTS_PER_WORD: u32 = 8;
/// Number of words in the `PORTS` map: two protocols times 65536 ports, eight per word.
pub const WORDS: u32 = 2 * 65536 / PORTS_PER_WORD;

/// Where a port's class byte lives: the word index and the bit shift inside it.
#[inline(always)]
pub const fn slot(proto: u8, port: u16) -> (u32, u32) {
    let family = if proto == PROTO_UDP { 1u32 } else { 0 };
    let flat = (family << 16) | port as u32;
    (flat / PORTS_PER_WORD, (flat % PORTS_PER_WORD) * 8)
}

#[inline(always)]
pub const fn class_in(word: u64, shift: u32) -> u8 {
    (word >> shift) as u8
}

/// Value of the `FIRST_STEPS` hash map, keyed by `ProtoPort`: the doors whose first knock goes
/// to that port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstSteps {
    pub doors: u64,
}
crate::assert_layout!(FirstSteps, size = 8, align = 8);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::PROTO_TCP;

    #[test]
    fn every_port_of_both_protocols_has_its_own_byte() {
        let (w0, s0) = slot(PROTO_TCP, 0);
        let (w1, s1) = slot(PROTO_TCP, 65535);
        let (w2, s2) = slot(PROTO_UDP, 0);
        let (w3, s3) = slot(PROTO_UDP, 65535);
        assert_eq!((w0, s0), (0, 0));
        assert_eq!((w1, s1), (WORDS / 2 - 1, 56));
        assert_eq!((w2, s2), (WORDS / 2, 0));
        assert_eq!((w3, s3), (WORDS - 1, 56));
    }

    #[test]
    fn only_first_steps_and_guarded_ports_may_start_an_attempt() {
        assert!(may_start(KNOCK | FIRST_STEP));
        assert!(
            may_start(guarded_class(3, KNOCK)),
            "a guarded knock port: looked up"
        );
        assert!(!may_start(KNOCK | SERVED), "a later step only");
        assert!(!may_start(0));
    }

    #[test]
    fn class_is_read_back_from_its_byte() {
        let (_, shift) = slot(PROTO_TCP, 22);
        let word = u64::from(GUARDED) << shift;
        assert_eq!(class_in(word, shift), GUARDED);
        assert_eq!(class_in(word, (shift + 8) % 64), 0);
    }
}
