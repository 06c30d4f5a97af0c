//! Per-source knock progress and the state machine that advances it.
//!
//! One `Progress` value lives in the `PROGRESS` map per source address. It holds up to
//! [`ATTEMPTS_PER_SOURCE`] attempts, one per door the source is knocking on; doors that share a
//! prefix are tracked side by side. [`advance`] applies one packet to it and reports every change
//! to an [`Observer`], which in the kernel writes events and opens the gate.

use crate::{ATTEMPTS_PER_SOURCE, Door, MAX_DOORS, Segment};

/// One source's attempt at one door.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempt {
    /// When the first knock arrived (monotonic clock, ns).
    pub started_ns: u64,
    pub door: u8,
    /// How many knocks of the sequence have arrived; 0 marks a free slot.
    pub stage: u8,
    /// The door's revision when the attempt began.
    pub revision: u8,
    pub _pad: [u8; 5],
}
crate::assert_layout!(Attempt, size = 16, align = 8);

impl Attempt {
    pub const fn is_free(&self) -> bool {
        self.stage == 0
    }
}

/// All attempts in progress for one source.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub attempts: [Attempt; ATTEMPTS_PER_SOURCE],
}
crate::assert_layout!(Progress, size = 16 * ATTEMPTS_PER_SOURCE, align = 8);

impl Progress {
    pub fn is_empty(&self) -> bool {
        self.attempts.iter().all(Attempt::is_free)
    }

    /// The newest first-knock time among the attempts, if any.
    pub fn latest_start(&self) -> Option<u64> {
        self.attempts
            .iter()
            .filter(|a| !a.is_free())
            .map(|a| a.started_ns)
            .max()
    }
}

/// Where the state machine finds doors by id: the `DOORS` map in the kernel, a slice on the host.
pub trait DoorBook {
    fn door(&self, id: u8) -> Option<&Door>;
}

impl DoorBook for [Door] {
    fn door(&self, id: u8) -> Option<&Door> {
        self.get(usize::from(id))
    }
}

/// What happened to one source's attempt at one door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The knock was accepted; `stage` knocks of the sequence have arrived.
    Stage(u8),
    /// The last knock arrived: the door opens for the source.
    Opened,
    /// A packet that was not the next knock ended the attempt at `stage`.
    Reset(u8),
    /// The attempt at `stage` outlived the door's sequence timeout.
    TimedOut(u8),
    /// The first knock arrived but every attempt slot of the source is taken.
    Crowded,
}

/// A packet as the state machine needs it: the segment, and what the tables say of it.
#[derive(Clone, Copy, Debug)]
pub struct Arrival<'a> {
    pub segment: &'a Segment,
    /// Bit `d` set when door `d` starts with the packet's protocol and port.
    pub first_step_doors: u64,
    /// The port is in some door's sequence.
    pub at_knock_port: bool,
}

/// Receives the changes one packet makes.
pub trait Observer {
    fn observe(&mut self, door: u8, door_spec: &Door, change: Change);
}

/// Applies one packet to a source's progress.
///
/// As in knockd, a packet
/// starts new attempts only when the source has no attempt in progress at a door that hears
/// it: the packet that ends an attempt starts nothing, and neither does one that advances an
/// attempt; the next packet can.
#[inline(always)]
pub fn advance<B: DoorBook + ?Sized, O: Observer>(
    progress: &mut Progress,
    book: &B,
    arrival: &Arrival<'_>,
    now_ns: u64,
    observer: &mut O,
) {
    let packet = arrival.segment;
    let at_knock_port = arrival.at_knock_port;
    // Doors with an attempt still running; and whether one of them hears this packet.
    let mut touched: u64 = 0;
    let mut engaged = false;
    for slot in 0..ATTEMPTS_PER_SOURCE {
        let attempt = &mut progress.attempts[slot];
        if attempt.is_free() {
            continue;
        }
        let id = attempt.door;
        let bit = door_bit(id);
        let Some(door) = book.door(id) else {
            // The door is gone (the configuration changed); its attempts go with it.
            attempt.stage = 0;
            continue;
        };
        if attempt.stage >= door.step_count || attempt.revision != door.revision {
            // The door changed under the attempt (a reload, a one-time sequence used up).
            attempt.stage = 0;
            continue;
        }
        if now_ns.saturating_sub(attempt.started_ns) > door.seq_timeout_ns {
            observer.observe(id, door, Change::TimedOut(attempt.stage));
            attempt.stage = 0;
            continue;
        }
        touched |= bit;
        if !door.hears(packet) {
            continue;
        }
        engaged = true;
        let stage = attempt.stage;
        if door.step(usize::from(stage)).is(packet) && door.flags_match(packet) {
            if stage + 1 >= door.step_count {
                attempt.stage = 0;
                observer.observe(id, door, Change::Opened);
            } else {
                attempt.stage = stage + 1;
                observer.observe(id, door, Change::Stage(stage + 1));
            }
        } else if door.step(usize::from(stage) - 1).is(packet) {
            // A repeat of the last knock, such as a retransmitted SYN, changes nothing.
        } else if door.is_broken_by(packet, at_knock_port) {
            attempt.stage = 0;
            observer.observe(id, door, Change::Reset(stage));
        }
    }

    if engaged {
        return;
    }
    let mut candidates = arrival.first_step_doors & !touched;
    // One packet starts at most as many attempts as a source can hold; the bound keeps the
    // kernel verifier's work small.
    for _ in 0..=ATTEMPTS_PER_SOURCE {
        if candidates == 0 {
            break;
        }
        let id = lowest_bit(candidates);
        candidates &= candidates - 1;
        let Some(door) = book.door(id) else {
            continue;
        };
        if door.step_count == 0
            || !door.hears(packet)
            || !door.flags_match(packet)
            || !door.step(0).is(packet)
        {
            continue;
        }
        if door.step_count == 1 {
            observer.observe(id, door, Change::Opened);
            continue;
        }
        // A fresh scan per start: a running mask of free slots would be used as a memory
        // offset, which makes the verifier track every combination of its bits.
        let Some(slot) = (0..ATTEMPTS_PER_SOURCE).find(|&slot| progress.attempts[slot].is_free())
        else {
            observer.observe(id, door, Change::Crowded);
            continue;
        };
        // Field by field: a whole-struct store with its zero padding becomes a call to memset in
        // BPF, which the 32-bit ARM kernels cannot mix with tail calls.
        let attempt = &mut progress.attempts[slot];
        attempt.started_ns = now_ns;
        attempt.door = id;
        attempt.revision = door.revision;
        attempt.stage = 1;
        observer.observe(id, door, Change::Stage(1));
    }
}

/// Ends every attempt whose sequence timeout has passed, reporting each.
pub fn expire<B: DoorBook + ?Sized, O: Observer>(
    progress: &mut Progress,
    book: &B,
    now_ns: u64,
    observer: &mut O,
) {
    for attempt in progress.attempts.iter_mut().filter(|a| !a.is_free()) {
        match book.door(attempt.door) {
            Some(door) if door.revision != attempt.revision || door.step_count == 0 => {
                attempt.stage = 0;
            }
            Some(door) if now_ns.saturating_sub(attempt.started_ns) > door.seq_timeout_ns => {
                observer.observe(attempt.door, door, Change::TimedOut(attempt.stage));
                attempt.stage = 0;
            }
            Some(_) => {}
            None => attempt.stage = 0,
        }
    }
}

#[inline(always)]
const fn door_bit(id: u8) -> u64 {
    1u64 << (id as u32 & (MAX_DOORS as u32 - 1))
}

/// The index of the lowest set bit of a non-zero mask. Branch-free: BPF has no
/// count-trailing-zeros instruction, and every branch here would multiply the paths the kernel
/// verifier walks.
#[inline(always)]
const fn lowest_bit(mask: u64) -> u8 {
    // Below the lowest set bit, every bit is one; counting them gives its index.
    let below = (mask & mask.wrapping_neg()).wrapping_sub(1);
    let mut x = below - ((below >> 1) & 0x5555_5555_5555_5555);
    x = (x & 0x3333_3333_3333_3333) + ((x >> 2) & 0x3333_3333_3333_3333);
    x = (x + (x >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    (x.wrapping_mul(0x0101_0101_0101_0101) >> 56) as u8
}

#[cfg(test)]
mod tests;
