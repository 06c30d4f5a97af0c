//! Counters and events: how the program tells user space what it did.

use knock_common::Addr;
use knock_common::counter::Counter;
use knock_common::event::Event;

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
    entry.write(Event {
        time_ns,
        expires_ns,
        addr,
        kind,
        door,
        stage,
        _pad: [0; 5],
    });
    entry.submit(0);
}
