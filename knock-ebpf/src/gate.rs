//! The gate: admitting new connections to protected ports, and opening doors.

use knock_common::counter::Counter;
use knock_common::event::kind;
use knock_common::gate::{Opening, Pass};
use knock_common::ports;
use knock_common::{Addr, Door};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::maps::lpm_trie::Key;

use crate::maps::{ALWAYS_ALLOW, GATE, GUARDS, Scratch};
use crate::report::{count, emit, zero};

/// Whether `source` may open a new connection to a guarded port of class `class` now. The
/// clock is read only for a source with a pass: it costs more than the rest of a miss.
#[inline(always)]
pub fn admits(source: Addr, class: u8) -> bool {
    let Some(guarding) = GUARDS.get(ports::guard_group(class)) else {
        return false;
    };
    match GATE.get_ptr(source) {
        // SAFETY: a hash map value; a concurrent update can at worst give a stale deadline.
        Some(pass) => unsafe { (*pass).admits(*guarding, bpf_ktime_get_ns()) },
        None => false,
    }
}

/// Whether `source` lies in a network that is always allowed.
#[inline(always)]
pub fn always_allowed(source: Addr) -> bool {
    ALWAYS_ALLOW.get(Key::new(128, source.octets)).is_some()
}

/// Opens `door` for `source` until `now + open time`, or moves the deadline of a door that is
/// already open, so that a repeated sequence never runs the start command twice. `steps`, the
/// length of the sequence that opened it (zero for SPA), goes into the event: knockd logs
/// `Stage N` for the last knock too.
#[inline(always)]
pub fn open(source: Addr, id: u8, door: &Door, steps: u8, now_ns: u64, scratch: *mut Scratch) {
    let expires_ns = now_ns.saturating_add(door.open_ns);
    let opening = match GATE.get_ptr_mut(source) {
        // SAFETY: as in `admits`.
        Some(pass) => unsafe { (*pass).open(id, expires_ns, now_ns) },
        None => {
            // SAFETY: this CPU's scratch slot; its pass field is used only here.
            let pass = unsafe { &mut (*scratch).pass };
            zero(&raw mut *pass);
            let opening = pass.open(id, expires_ns, now_ns);
            // A reference into the scratch map, not a copy: the stack has no room for it.
            let pass: &Pass = pass;
            if GATE.insert(source, pass, 0).is_err() {
                Opening::Full
            } else {
                opening
            }
        }
    };
    let (counter, kind) = match opening {
        Opening::Opened => (Counter::DoorOpened, kind::OPENED),
        Opening::Refreshed => (Counter::DoorRefreshed, kind::REFRESHED),
        Opening::Full => (Counter::GateFull, kind::GATE_FULL),
    };
    count(counter);
    emit(kind, source, id, steps, now_ns, expires_ns);
}
