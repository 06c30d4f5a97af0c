//! The fast lane: verdicts on a glance (see `knock_common::frame::glance`) for the packets most
//! traffic is made of, before the classifier's walk. It gives exactly the verdict and counter
//! the main path would give:
//! - an established flow's packet to a port no sequence uses passes;
//! - a new connection or datagram to a port no door knows passes, unless its source has an
//!   attempt in progress for the strict rule to end;
//! - a stranger's attempt on a protected port that the main path would drop at once is dropped;
//! - an attempt from a source a door is open for is admitted, as the gate program would.
//!
//! Everything else (knock ports, SPA, sources with an attempt in progress or a ban mark,
//! refusals the gate program answers) goes on to the main path, which decides it afresh.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use knock_common::Addr;
use knock_common::counter::Counter;
use knock_common::frame::{FrameBytes, Glance};
use knock_common::ports::{self, GUARDED, KNOCK};

use crate::frame::XdpFrame;
use crate::maps::{PORTS, PROGRESS, SETTINGS};
use crate::report::count;
use crate::{ban, gate, recent};

/// The verdict on a glanced-at packet, or `None` when the main path must decide (a missing map
/// entry included: the main path reports it).
#[inline(always)]
pub fn verdict(glance: &Glance, frame: &XdpFrame) -> Option<u32> {
    let (word, shift) = ports::slot(glance.proto, glance.dport);
    let class = ports::class_in(*PORTS.get(word)?, shift);
    if !glance.contact {
        // Only knock ports hear packets other than new connections and datagrams.
        return (class & KNOCK == 0).then_some(XDP_PASS);
    }
    if class & KNOCK != 0 {
        return None;
    }
    let settings = SETTINGS.get(0)?;
    if settings.is_spa(glance.proto, glance.dport) {
        return None;
    }
    // A port no door knows, under knockd's rule: nothing to end.
    if class & GUARDED == 0 && settings.strict_doors == 0 {
        return Some(XDP_PASS);
    }
    let source = if glance.ipv6 {
        Addr::from_ipv6(frame.bytes::<16>(glance.source_at)?)
    } else {
        Addr::from_ipv4(frame.bytes::<4>(glance.source_at)?)
    };
    // A source that may be knocking is the state machine's to judge under the strict rule, if
    // it has an attempt to end, or a ban the main path would count. Without either the main
    // path would change nothing before the gate, so the packet is judged as a stranger's.
    if recent::may_be_knocking(&source, settings)
        && (ban::may_be_banned(source, settings) || PROGRESS.get_ptr(source).is_some())
    {
        return None;
    }
    if class & GUARDED == 0 {
        return Some(XDP_PASS);
    }
    if gate::refused_at_once(&source, class, settings) {
        count(Counter::GateDropped);
        return Some(XDP_DROP);
    }
    // The gate program's first question, asked here without the tail call: is a door open for
    // the source, in either map (doors opened by SPA live in the reserve)? Its other answers
    // (always-allowed sources, refusals with their replies) stay the gate program's.
    if ports::guard_group(class) != 0 && gate::admits(source, class, settings, 0) {
        count(Counter::GateAllowed);
        return Some(XDP_PASS);
    }
    None
}
