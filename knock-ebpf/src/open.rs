//! The open program: opens the doors a packet completed and counts a wrong knock towards a
//! ban, then hands a new connection from a source that knocked lately to the gate program.
//! The main program hands the packet over with a tail call once its state machine has run,
//! leaving in the scratch slot the doors to open, whether the packet was a wrong knock or is
//! for the gate, its segment, its arrival time and its verdict. Apart from the main program,
//! the verifier checks the gate's writes once instead of once per path through the state
//! machine.

use aya_ebpf::bindings::BPF_NOEXIST;
use aya_ebpf::bindings::xdp_action::XDP_DROP;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use knock_common::counter::Counter;
use knock_common::door::ONCE;
use knock_common::event::kind;
use knock_common::settings::Settings;
use knock_common::spent::refusal;
use knock_common::{Addr, Door, HANDOFF_GATE, HANDOFF_OPEN};

use crate::maps::{DOORS, HANDOFF, OPENS_PER_PACKET, SCRATCH, SETTINGS, SPENT, Scratch};
use crate::report::{count, emit};
use crate::{ban, gate, observe};

#[xdp]
#[inline(always)]
pub fn knock_open(ctx: XdpContext) -> u32 {
    let (Some(scratch), Some(settings)) = (SCRATCH.get_ptr_mut(0), SETTINGS.get(0)) else {
        return XDP_DROP;
    };
    // SAFETY: this CPU's scratch slot, filled by the main program for this very packet.
    let (source, now_ns, failed, verdict, next, count) = unsafe {
        (
            (*scratch).segment.src,
            core::ptr::read_volatile(&raw const (*scratch).now_ns),
            core::ptr::read_volatile(&raw const (*scratch).failed),
            core::ptr::read_volatile(&raw const (*scratch).verdict),
            core::ptr::read_volatile(&raw const (*scratch).opens.next),
            core::ptr::read_volatile(&raw const (*scratch).opens.count),
        )
    };
    if failed != 0 {
        // SAFETY: as above; counted once, by the first round.
        unsafe { core::ptr::write_volatile(&raw mut (*scratch).failed, 0) };
        ban::strike(source, settings, now_ns);
    }
    // One door per round: the verifier checks the opening once, not once per door of a loop.
    if next < count {
        // SAFETY: as above.
        let id = unsafe { (*scratch).opens.door[next as usize & (OPENS_PER_PACKET - 1)] };
        open_door(source, id, scratch, now_ns, settings);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&raw mut (*scratch).opens.next, next + 1) };
        if next + 1 < count {
            // SAFETY: a tail call into our own program array: the next round.
            unsafe { HANDOFF.tail_call(&ctx, HANDOFF_OPEN) };
        }
    }
    // SAFETY: as above.
    if unsafe { core::ptr::read_volatile(&raw const (*scratch).to_gate) } != 0 {
        // A new connection from a source that knocked lately: the gate program's word.
        // SAFETY: a tail call into our own program array; on failure execution goes on.
        unsafe { HANDOFF.tail_call(&ctx, HANDOFF_GATE) };
    }
    // The main program's verdict: a pass or a drop (passed under `--observe`).
    observe::spare(verdict, settings)
}

/// Opens door `id` for `source`: a single-use sequence only if this is its one claim.
#[inline(always)]
fn open_door(source: Addr, id: u8, scratch: *mut Scratch, now_ns: u64, settings: &Settings) {
    let Some(door) = DOORS.get_ptr_mut(u32::from(id)) else {
        return;
    };
    // SAFETY: an entry of the doors array; user space rewrites it only on reloads.
    let door = unsafe { &mut *door };
    // A single-use sequence opens once, so no sniffer can open it again: its doors go into the
    // gate's reserve, which static sequences cannot fill.
    let single_use = door.flags & ONCE != 0;
    // Before `claim` empties a single-use sequence: the event's `Stage N`.
    let steps = door.step_count;
    if single_use && !claim(source, id, door, now_ns) {
        return;
    }
    gate::open(source, door, steps, now_ns, scratch, single_use, settings);
}

/// Claims a single-use sequence for `source`: true for the one claim that may open the door.
/// The insert with BPF_NOEXIST is one atomic step, so of two sources that complete the
/// sequence at once on two CPUs exactly one wins; and a tag stays claimed whatever user space
/// pushes again, so a used sequence never opens twice.
#[inline(always)]
fn claim(source: Addr, id: u8, door: &mut Door, now_ns: u64) -> bool {
    let claimed = SPENT.insert(door.spent_tag, now_ns, u64::from(BPF_NOEXIST));
    // Used either way: nobody, this source included, may replay it.
    door.step_count = 0;
    let Err(error) = claimed else {
        return true;
    };
    let (counter, why) = if error == -EEXIST {
        (Counter::SingleUseRefused, refusal::USED)
    } else {
        (Counter::SpentFull, refusal::NO_ROOM)
    };
    count(counter);
    emit(kind::SPENT, source, id, why, now_ns, 0);
    false
}

/// The kernel's EEXIST: the tag was claimed before.
const EEXIST: i32 = 17;
