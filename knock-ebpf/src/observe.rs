//! `--observe`: the program judges every frame as it always does, but drops none. A frame it
//! would have dropped passes and is counted (`observe_passed`; the usual counters say why it
//! would have been dropped), and a new connection the gate would have dropped is reported to
//! user space, a few per second per CPU, so that a scan cannot fill the event ring and push out
//! the events of doors opening.
//!
//! Kept apart from the decision: it costs nothing on the frames that pass, and one array read
//! on those judged to drop.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use knock_common::Addr;
use knock_common::counter::Counter;
use knock_common::event::kind;
use knock_common::settings::Settings;

use crate::maps::{OBSERVED, ObserveBudget, SETTINGS};
use crate::report::{count, emit};

/// Gate reports per second and CPU.
const REPORTS_PER_SECOND: u32 = 10;
const SECOND_NS: u64 = 1_000_000_000;

/// The action for a frame judged `action` under `settings`: a drop, unless observing.
#[inline(always)]
pub fn spare(action: u32, settings: &Settings) -> u32 {
    if action == XDP_DROP && settings.observing() {
        count(Counter::ObservePassed);
        XDP_PASS
    } else {
        action
    }
}

/// The action for a frame the main program judged to drop. A report the gate noted for it
/// (see [`note`]) is sent here, at the end, so that its budget's branches do not multiply the
/// paths the verifier walks through the rest of the program.
#[inline(always)]
pub fn spare_judged() -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return XDP_DROP;
    };
    if !settings.observing() {
        return XDP_DROP;
    }
    if let Some(budget) = OBSERVED.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; nothing else on this CPU runs while the program does.
        report(unsafe { &mut *budget });
    }
    spare(XDP_DROP, settings)
}

/// Notes a new connection the gate would have dropped, for [`spare_judged`] to report.
#[inline(always)]
pub fn note(source: Addr, port: u16, proto: u8) {
    if let Some(budget) = OBSERVED.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; written through volatile stores, which the verifier does
        // not follow into branches.
        unsafe {
            core::ptr::write_volatile(&raw mut (*budget).source, source);
            core::ptr::write_volatile(&raw mut (*budget).port, port);
            core::ptr::write_volatile(&raw mut (*budget).proto, proto);
            core::ptr::write_volatile(&raw mut (*budget).pending, 1);
        }
    }
}

/// Reports the noted connection while this CPU's budget for the current second lasts.
#[inline(always)]
fn report(budget: &mut ObserveBudget) {
    if budget.pending == 0 {
        return;
    }
    budget.pending = 0;
    let now_ns = unsafe { bpf_ktime_get_ns() };
    if now_ns.saturating_sub(budget.window_start_ns) >= SECOND_NS {
        budget.window_start_ns = now_ns;
        budget.reported = 0;
    }
    if budget.reported >= REPORTS_PER_SECOND {
        return;
    }
    budget.reported += 1;
    emit(
        kind::WOULD_DROP,
        budget.source,
        0,
        budget.proto,
        now_ns,
        u64::from(budget.port),
    );
}
