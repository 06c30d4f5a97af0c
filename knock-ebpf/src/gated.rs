//! The gate program: judges a new connection or datagram to a guarded port (a protected port,
//! and in the stealth look a port the host does not serve, of guard group 0), and answers
//! those it refuses at protected ports as the host answers them at a closed port (see
//! `knock_common::reply`). The main program hands the
//! packet over with a tail call, leaving where its headers lie in the scratch slot; so the
//! gate costs the main program's verifier walk nothing per path through the classifier.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX};
use aya_ebpf::helpers::bpf_xdp_adjust_tail;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::debug;
use knock_common::counter::Counter;
use knock_common::frame::FrameBytes as _;
use knock_common::reply::{self, Probe, Reset, Stack};
use knock_common::segment::{PROTO_TCP, PROTO_UDP};
use knock_common::settings::Settings;
use knock_common::{Addr, frame, ports};

use crate::frame::XdpFrame;
use crate::maps::{LOCAL_ADDRS, SCRATCH, SETTINGS};
use crate::report::count;
use crate::{gate, observe};

/// Bounds where the IP header can start (behind two VLAN tags at most), as a mask.
const L3_LIMIT: usize = 0x1f;
/// Bounds where the transport header can start, as a mask.
const L4_LIMIT: usize = 0x3ff;
const _: () = assert!(L4_LIMIT >= frame::MAX_TRANSPORT_OFFSET + 22);

#[xdp]
#[inline(always)]
pub fn knock_gate(ctx: XdpContext) -> u32 {
    let (Some(scratch), Some(settings)) = (SCRATCH.get_ptr_mut(0), SETTINGS.get(0)) else {
        return XDP_DROP;
    };
    // SAFETY: this CPU's scratch slot, where the main program left the probe for this packet
    // and the time it read the clock (zero when it did not); the reset is another field of it.
    let (probe, now_ns, reset) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*scratch).probe),
            core::ptr::read_volatile(&raw const (*scratch).now_ns),
            &mut (*scratch).reset,
        )
    };
    answer(&ctx, probe, now_ns, settings, reset)
}

#[inline(always)]
fn answer(
    ctx: &XdpContext,
    probe: Probe,
    now_ns: u64,
    settings: &Settings,
    reset: &mut Reset,
) -> u32 {
    let frame = XdpFrame::new(ctx);
    // Offsets the verifier can bound; the main program's never exceed them. Hidden from the
    // compiler first: it would otherwise turn the mask into a range check on one copy of the
    // offset and use another, unchecked, copy, which kernels before 6.x cannot follow (6.1
    // refused the program with "R2 offset is outside of the packet").
    let probe = Probe {
        l3: (frame.opaque(usize::from(probe.l3)) & L3_LIMIT) as u16,
        l4: (frame.opaque(usize::from(probe.l4)) & L4_LIMIT) as u16,
        ..probe
    };
    let Some(source) = source(&frame, probe) else {
        return XDP_DROP;
    };
    // Guard group 0: a port the host does not serve, in the stealth look. Dropped when
    // addressed to the host, as the host's own default-deny firewall would, unless the source
    // is always allowed; what is routed through passes.
    if ports::guard_group(probe.class) == 0 {
        if !to_host(&frame, probe) || settings.always_allowing() && gate::always_allowed(source) {
            return XDP_PASS;
        }
        count(Counter::StealthDropped);
        return observe::spare(XDP_DROP, settings);
    }
    if gate::admits(source, probe.class, settings, now_ns) {
        count(Counter::GateAllowed);
        return XDP_PASS;
    }
    if settings.always_allowing() && gate::always_allowed(source) {
        count(Counter::AlwaysAllowed);
        return XDP_PASS;
    }
    count(Counter::GateDropped);
    debug!(ctx, "gate: refused a new connection to a protected port");
    if settings.observing() {
        // Judged, reported, and passed: nothing is answered or dropped under `--observe`.
        let l4 = usize::from(probe.l4);
        let port = frame.bytes::<2>(l4 + 2).map_or(0, u16::from_be_bytes);
        let proto = if probe.tcp != 0 { PROTO_TCP } else { PROTO_UDP };
        observe::note(source, port, proto);
        return observe::spare_judged();
    }
    // Only packets for the host itself get an answer, as the host only answers those; what is
    // routed through is dropped, as the gate always did.
    if settings.filtered() || !to_host(&frame, probe) {
        return XDP_DROP;
    }
    if settings.host_resets() {
        count(Counter::HandedToGuard);
        return XDP_PASS;
    }
    let stack = Stack {
        ttl: settings.ttl,
        hop_limit: settings.hop_limit,
        label_key: settings.label_key,
    };
    if !reply::reset_for(&frame, probe, stack, reset) {
        // A datagram, or a SYN whose answer only the host's stack knows exactly: it goes on to
        // the host, whose socket-lookup guard refuses it a socket, so the host answers as for
        // a closed port. Without the guard it is dropped.
        if settings.guarded() {
            count(Counter::HandedToGuard);
            return XDP_PASS;
        }
        return XDP_DROP;
    }
    let want = usize::from(probe.l3) + reset.len as usize;
    let have = ctx.data_end() - ctx.data();
    if have > want {
        // SAFETY: shrinks the frame, whose pointers are read afresh below.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, want as i32 - have as i32) } != 0 {
            return XDP_DROP;
        }
    }
    let mut frame = XdpFrame::new(ctx);
    if reply::write(&mut frame, probe, reset).is_none() {
        return XDP_DROP;
    }
    count(Counter::ResetSent);
    XDP_TX
}

/// The packet's source address.
#[inline(always)]
fn source(frame: &XdpFrame, probe: Probe) -> Option<Addr> {
    let l3 = usize::from(probe.l3);
    if probe.ipv6 != 0 {
        frame.bytes::<16>(l3 + 8).map(Addr::from_ipv6)
    } else {
        frame.bytes::<4>(l3 + 12).map(Addr::from_ipv4)
    }
}

/// Whether the packet's destination is one of the host's addresses.
#[inline(always)]
fn to_host(frame: &XdpFrame, probe: Probe) -> bool {
    let l3 = usize::from(probe.l3);
    let destination = if probe.ipv6 != 0 {
        frame.bytes::<16>(l3 + 24).map(Addr::from_ipv6)
    } else {
        frame.bytes::<4>(l3 + 16).map(Addr::from_ipv4)
    };
    destination.is_some_and(|d| LOCAL_ADDRS.get_ptr(d).is_some())
}
