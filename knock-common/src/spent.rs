//! Single-use sequences (one-time and rotating) that stay used.
//!
//! A single-use door instance carries a tag, chosen by user space, that names its sequence:
//! for a line of a one-time file, the door and the ports of the line; for a rotating door, the
//! door, its secret and the period. When a source completes the sequence, the program inserts
//! the tag into the pinned `SPENT` hash map with `BPF_NOEXIST` before it opens the door. The
//! insert is atomic: of two sources completing the sequence at the same moment on two CPUs,
//! exactly one claims it and gets in. And a tag once claimed stays claimed, whatever happens
//! to the one-time file, the event ring or the daemon: a sequence pushed again (after a
//! restart, a lost event, a file that could not be marked) completes and opens nothing.
//!
//! The value is when the sequence was spent (monotonic clock, ns). User space reads the tags
//! back to skip spent lines and periods, and forgets rotating tags once their period can never
//! come back; one-time tags stay until `knock-user stop` removes the pinned state.

/// A tag: user space's name for one single-use sequence. The top bit marks rotating ones.
pub type Tag = u64;

/// Set in the tags of rotating door instances, clear in those of one-time lines.
pub const ROTATING: Tag = 1 << 63;

/// Entries of the `SPENT` map. A full map makes every further single-use sequence fail
/// closed (the door stays shut, `single_use_record_full` counts it) until user space forgets
/// old rotating tags or `knock-user stop` clears the state.
pub const CAPACITY: u32 = 4096;

/// Whether `tag` names a rotating door's instance.
pub const fn is_rotating(tag: Tag) -> bool {
    tag & ROTATING != 0
}

/// Values of an `SPENT` event's `stage`: why a completed single-use sequence opened nothing.
pub mod refusal {
    /// The sequence had been used before.
    pub const USED: u8 = 0;
    /// The `SPENT` map had no room to record it: refused, failing closed.
    pub const NO_ROOM: u8 = 1;
}
