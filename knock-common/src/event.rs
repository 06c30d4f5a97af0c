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
}
