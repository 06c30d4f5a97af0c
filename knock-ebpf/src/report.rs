//! Counters and events: how the program tells user space what it did.

use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS};
use knock_common::Addr;
use knock_common::counter::Counter;
use knock_common::event::{self, Event, kind};

use crate::maps::{COUNTERS, EVENTS};

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot; nothing else on this CPU runs while the program does.
        unsafe { *value += 1 };
    }
}

#[inline(always)]
pub fn emit(kind: u8, addr: Addr, door: u8, stage: u8, time_ns: u64, expires_ns: u64) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count(Counter::EventsLost);
        return;
    };
    let event = entry.as_mut_ptr();
    // Field by field and volatile: neighbouring zero fields would otherwise merge into a call to
    // memset, which the 32-bit ARM kernels cannot mix with tail calls.
    // SAFETY: every field of the reserved entry is written before it is submitted.
    unsafe {
        core::ptr::write_volatile(&raw mut (*event).time_ns, time_ns);
        core::ptr::write_volatile(&raw mut (*event).expires_ns, expires_ns);
        core::ptr::write_volatile(&raw mut (*event).addr, addr);
        core::ptr::write_volatile(&raw mut (*event).kind, kind);
        core::ptr::write_volatile(&raw mut (*event).door, door);
        core::ptr::write_volatile(&raw mut (*event).stage, stage);
        core::ptr::write_volatile(&raw mut (*event)._pad1, 0);
        core::ptr::write_volatile(&raw mut (*event)._pad2, 0);
    }
    // A forced wakeup: the kernel's own rule wakes the reader only when it has read everything
    // before this event, and the events before it may not have woken it.
    let flags = if kind::wakes_daemon(kind)
        || event::completes_batch(EVENTS.query(u64::from(BPF_RB_PROD_POS)))
    {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    };
    entry.submit(flags);
}

/// Zeroes a value in map memory with word stores. The compiler would turn a plain
/// `*value = T::default()` into a call to `memset`, a BPF-to-BPF call, and the 32-bit ARM kernels
/// refuse to run a program that mixes those with tail calls.
#[inline(always)]
pub fn zero<T>(value: *mut T) {
    const {
        assert!(size_of::<T>().is_multiple_of(8));
    }
    let words = value.cast::<u64>();
    for index in 0..size_of::<T>() / 8 {
        // SAFETY: within the value, which the caller owns; u64 alignment holds for the map
        // values this is used on (asserted by their layouts).
        unsafe { core::ptr::write_volatile(words.add(index), 0) };
    }
}
