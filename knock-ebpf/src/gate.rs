//! The gate: admitting new connections to protected ports, and opening doors (see
//! `knock_common::gate` for its two maps).

use knock_common::counter::Counter;
use knock_common::event::{gate_full, kind};
use knock_common::gate::{self as pass, Opening, Pass};
use knock_common::settings::Settings;
use knock_common::{Addr, Door, ports, recent};

use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::maps::HashMap;
use aya_ebpf::maps::lpm_trie::Key;

use crate::maps::{ALWAYS_ALLOW, GATE, GATE_RESERVE, GUARDS, PASS_SEEN, RESERVE_SEEN, Scratch};
use crate::report::{count, emit, zero};

/// Whether a door opened by a static sequence admits `source` to a guarded port of class
/// `class` at `now_ns` (zero: now, from the clock). The clock is read only for a source with
/// a pass: it costs more than the rest of a miss.
#[inline(always)]
pub fn admits_static(source: Addr, class: u8, now_ns: u64) -> bool {
    admits_in(&GATE, source, class, now_ns)
}

/// Whether a door in the gate's reserve admits `source`: the reply program's check, for
/// sources the main program refused, so the main program pays nothing for the reserve.
#[inline(always)]
pub fn admits_reserved(source: Addr, class: u8, settings: &Settings, now_ns: u64) -> bool {
    let marked = RESERVE_SEEN
        .get(recent::slot(&source))
        .is_some_and(|mark| pass::may_hold_reserve(*mark, settings.recent_tick));
    marked && admits_in(&GATE_RESERVE, source, class, now_ns)
}

/// Whether any open door admits `source` at `now_ns` (zero: now, from the clock): the gate
/// program's and the socket-lookup guard's check. Sources whose slot of `PASS_SEEN` says no door can be open for them skip both
/// lookups.
#[inline(always)]
pub fn admits(source: Addr, class: u8, settings: &Settings, now_ns: u64) -> bool {
    may_hold_pass(&source, settings)
        && (admits_static(source, class, now_ns)
            || admits_reserved(source, class, settings, now_ns))
}

/// Whether a door may be open for `source` in either map of the gate.
#[inline(always)]
fn may_hold_pass(source: &Addr, settings: &Settings) -> bool {
    PASS_SEEN
        .get(recent::slot(source))
        .is_none_or(|mark| pass::may_hold_pass(*mark, settings.recent_tick))
}

/// Whether the main program refuses a new connection from `source` to a guarded port of class
/// `class` itself, with the gate program's verdict and counter but without its tail call and
/// lookups (see `knock_common::gate::refused_at_once`).
#[inline(always)]
pub fn refused_at_once(source: &Addr, class: u8, settings: &Settings) -> bool {
    let debug_log =
        aya_log_ebpf::macro_support::level_enabled(aya_log_ebpf::macro_support::Level::Debug);
    // The flags first: the slot's mark is read only where they allow a refusal.
    if !pass::may_refuse_at_once(class, settings, debug_log) {
        return false;
    }
    let mark = PASS_SEEN.get(recent::slot(source)).map_or(u32::MAX, |m| *m);
    pass::refused_at_once(class, mark, settings, debug_log)
}

#[inline(always)]
fn admits_in(map: &HashMap<Addr, Pass>, source: Addr, class: u8, now_ns: u64) -> bool {
    let Some(guarding) = GUARDS.get(ports::guard_group(class)) else {
        return false;
    };
    match map.get_ptr(source) {
        Some(pass) => {
            // The clock costs more than the rest of a hit: read only when nobody has.
            let now_ns = if now_ns != 0 {
                now_ns
            } else {
                unsafe { bpf_ktime_get_ns() }
            };
            // SAFETY: a hash map value; a concurrent update can at worst give a stale deadline.
            unsafe { (*pass).admits(*guarding, now_ns) }
        }
        None => false,
    }
}

/// Whether `source` lies in a network that is always allowed.
#[inline(always)]
pub fn always_allowed(source: Addr) -> bool {
    ALWAYS_ALLOW.get(Key::new(128, source.octets())).is_some()
}

/// Opens `door` for `source` until `now + open time`, or moves the deadline of a door that is
/// already open (in either map), so that a repeated sequence never runs the start command
/// twice. `steps`, the length of the sequence that opened it (zero for SPA), goes into the
/// event: knockd logs `Stage N` for the last knock too. `authenticated` openings (SPA,
/// single-use sequences) go into the reserve, or into `GATE` when the reserve is full; static
/// ones only into `GATE`, so however many doors a flood of spoofed sources opens through a
/// static sequence, the reserve stays free of them.
#[inline(always)]
pub fn open(
    source: Addr,
    door: &Door,
    steps: u8,
    now_ns: u64,
    scratch: *mut Scratch,
    authenticated: bool,
    settings: &Settings,
) {
    let id = door.gate_id;
    let expires_ns = now_ns.saturating_add(door.open_ns);
    // Marked before the pass exists, so that no pass in either map is ever unmarked.
    if let Some(mark) = PASS_SEEN.get_ptr_mut(recent::slot(&source)) {
        // SAFETY: an element of an array map; concurrent writers write about the same value,
        // and a lost race can only lower a mark to one that covers the writer's own door.
        unsafe {
            let raised = pass::raised_mark(
                core::ptr::read_volatile(mark),
                pass::pass_mark(now_ns, settings.longest_open_s),
            );
            core::ptr::write_volatile(mark, raised);
        }
    }
    if authenticated {
        // Marked before the pass exists, so that no pass in the reserve is ever unmarked.
        if let Some(mark) = RESERVE_SEEN.get_ptr_mut(recent::slot(&source)) {
            // SAFETY: an element of an array map; concurrent writers write about the same value.
            unsafe {
                core::ptr::write_volatile(mark, pass::reserve_mark(now_ns, settings.longest_open_s))
            };
        }
    }
    let (here, there): (&HashMap<Addr, Pass>, &HashMap<Addr, Pass>) = if authenticated {
        (&GATE_RESERVE, &GATE)
    } else {
        (&GATE, &GATE_RESERVE)
    };
    // Open in the other map already: its deadline moves there, and no room is taken.
    let elsewhere = match there.get_ptr_mut(source) {
        // SAFETY: as in `admits`.
        Some(other) if unsafe { (*other).holds(id, now_ns) } => {
            Some(unsafe { (*other).open(id, expires_ns, now_ns) })
        }
        _ => None,
    };
    let opening = match elsewhere {
        Some(opening) => opening,
        None => match here.get_ptr_mut(source) {
            // SAFETY: as in `admits`.
            Some(pass) => unsafe { (*pass).open(id, expires_ns, now_ns) },
            None => {
                // SAFETY: this CPU's scratch slot; its pass field is used only here.
                let pass = unsafe { &mut (*scratch).pass };
                zero(&raw mut *pass);
                let opening = pass.open(id, expires_ns, now_ns);
                // A reference into the scratch map, not a copy: the stack has no room for it.
                let pass: &Pass = pass;
                // An authenticated opening takes room in the static part when the reserve is
                // full: the reserve is the least it has, not the most.
                if here.insert(source, pass, 0).is_ok()
                    || (authenticated && GATE.insert(source, pass, 0).is_ok())
                {
                    opening
                } else {
                    Opening::Full
                }
            }
        },
    };
    let (counter, kind, stage) = match opening {
        Opening::Opened => (Counter::DoorOpened, kind::OPENED, steps),
        Opening::Refreshed => (Counter::DoorRefreshed, kind::REFRESHED, steps),
        Opening::Full if authenticated => (Counter::GateFull, kind::GATE_FULL, gate_full::ALL),
        Opening::Full => (
            Counter::GateStaticFull,
            kind::GATE_FULL,
            gate_full::STATIC_SHARE,
        ),
    };
    count(counter);
    emit(kind, source, id, stage, now_ns, expires_ns);
}
