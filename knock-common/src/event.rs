//! Events the XDP program sends to user space through the `EVENTS` ring buffer.

use crate::Addr;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// When it happened (monotonic clock, ns).
    pub time_ns: u64,
    /// For `OPENED` and `REFRESHED`: when the door closes (monotonic clock, ns).
    pub expires_ns: u64,
    pub addr: Addr,
    /// One of the `kind` constants.
    pub kind: u8,
    pub door: u8,
    /// For `STAGE`, `RESET` and `TIMED_OUT`: the stage reached.
    pub stage: u8,
    /// Padding in two fields, not an array: the kernel writes events field by field, and an
    /// odd-sized zeroed array would turn into a call to memset.
    pub _pad1: u8,
    pub _pad2: u32,
}
crate::assert_layout!(Event, size = 40, align = 8);

/// Values of [`Event::kind`].
pub mod kind {
    /// A knock was accepted.
    pub const STAGE: u8 = 1;
    /// A sequence completed and the door opened for the source.
    pub const OPENED: u8 = 2;
    /// A sequence completed while the door was already open; its deadline moved.
    pub const REFRESHED: u8 = 3;
    /// A packet that was not the next knock ended an attempt.
    pub const RESET: u8 = 4;
    /// An attempt outlived the sequence timeout.
    pub const TIMED_OUT: u8 = 5;
    /// A first knock found every attempt slot of its source taken.
    pub const CROWDED: u8 = 6;
    /// A sequence completed but the gate map is full: the door stayed shut.
    pub const GATE_FULL: u8 = 7;
    /// The source failed too often and is ignored until `expires_ns`.
    pub const BANNED: u8 = 8;
    /// An SPA datagram was refused; `stage` holds the `spa::Rejection`.
    pub const SPA_REJECTED: u8 = 9;

    /// Whether an event of `kind` wakes the daemon. Waking costs the packet an interrupt
    /// (several microseconds, far more than the program itself), which a flood of first knocks,
    /// wrong knocks or forged SPA packets must not buy once per packet. Doors opening need the
    /// daemon at once (start commands, the firewall mirror, used sequences), and only a
    /// client that knows a sequence or a key can cause one; the rest is only logged and waits
    /// for the next wakeup or the daemon's tick, at most a second.
    pub const fn wakes_daemon(kind: u8) -> bool {
        matches!(kind, OPENED | REFRESHED | GATE_FULL)
    }
}

/// Every this many bytes written into the event ring, an event wakes the daemon whatever its
/// kind: under a flood the events that wait would otherwise fill the ring, and the next
/// opening's event would be lost. One wakeup per batch of some 340 events costs little, and a
/// daemon that lags behind does not make every event pay for one.
pub const WAKE_EVERY_BYTES: u64 = 16 * 1024;

/// The bytes one event takes in the ring: the event and the ring's 8-byte record header.
pub const RECORD_BYTES: u64 = size_of::<Event>() as u64 + 8;

/// Whether the event that brought the ring's producer position to `produced` bytes crossed a
/// multiple of [`WAKE_EVERY_BYTES`].
pub const fn completes_batch(produced: u64) -> bool {
    produced % WAKE_EVERY_BYTES < RECORD_BYTES
}

#[cfg(test)]
mod tests {
    use super::kind::*;

    #[test]
    fn doors_opening_wake_the_daemon_at_once() {
        for prompt in [OPENED, REFRESHED, GATE_FULL] {
            assert!(wakes_daemon(prompt), "kind {prompt}");
        }
    }

    #[test]
    fn one_event_in_each_batch_of_the_ring_wakes_the_daemon() {
        let batch_ends = (1..=100_000u64)
            .map(|n| n * super::RECORD_BYTES)
            .filter(|&produced| super::completes_batch(produced))
            .count() as u64;
        let batches = 100_000 * super::RECORD_BYTES / super::WAKE_EVERY_BYTES;
        assert_eq!(batch_ends, batches);
    }

    #[test]
    fn what_a_flood_can_cause_per_packet_waits_for_the_daemons_tick() {
        for lazy in [STAGE, RESET, TIMED_OUT, CROWDED, BANNED, SPA_REJECTED] {
            assert!(!wakes_daemon(lazy), "kind {lazy}");
        }
    }
}
