//! The memory of recent knocks in the kernel (see `knock_common::recent`).

use knock_common::Addr;
use knock_common::recent;
use knock_common::settings::Settings;

use crate::maps::LAST_KNOCK;

/// Notes that `source` knocked now. Written before its attempt can start, so that no
/// attempt exists that the memory does not cover.
#[inline(always)]
pub fn note(source: &Addr, now_ns: u64) {
    if let Some(last) = LAST_KNOCK.get_ptr_mut(recent::slot(source)) {
        // SAFETY: an element of an array map; a plain aligned store, and concurrent writers all
        // write about the same time.
        unsafe { core::ptr::write_volatile(last, recent::tick(now_ns)) };
    }
}

/// Whether `source` may have an attempt in progress.
#[inline(always)]
pub fn may_be_knocking(source: &Addr, settings: &Settings) -> bool {
    match LAST_KNOCK.get(recent::slot(source)) {
        Some(last) => {
            recent::may_be_knocking(*last, settings.recent_tick, settings.longest_attempt_s)
        }
        None => true,
    }
}
