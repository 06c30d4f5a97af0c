//! The XDP entry points and the per-packet decision. The decision is one piece of code,
//! compiled once per kind of link with the link a constant: `knock` for Ethernet frames,
//! `knock_ip` for links whose frames start at the IP header (tun, WireGuard, PPP, raw IP, IP
//! tunnels). User space attaches the one that matches each interface, so the Ethernet path
//! pays nothing for the other; both share every map and hand SPA datagrams to the same program.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::debug;
use knock_common::counter::Counter;
use knock_common::event::kind;
use knock_common::frame::{Frame, Headers, Link, headers_on};
use knock_common::frame::Unaddressed;
use knock_common::ports::{self, GUARDED, KNOCK, SERVED};
use knock_common::progress::{Arrival, Change, DoorBook, Observer, Progress, advance};
use knock_common::reply::Probe;
use knock_common::settings::Settings;
use knock_common::{Addr, Door, HANDOFF_OPEN, HANDOFF_REPLY, HANDOFF_SPA, ProtoPort, Segment};

use crate::frame::XdpFrame;
use crate::maps::{
    DOORS, FIRST_STEPS, HANDOFF, LOCAL_ADDRS, OPENS_PER_PACKET, Opens, PORTS, PROGRESS, SCRATCH,
    SETTINGS, Scratch,
};
use crate::report::{count, emit, zero};
use crate::{ban, gate, recent};

/// Links with Ethernet headers.
#[xdp]
#[inline(always)]
pub fn knock(ctx: XdpContext) -> u32 {
    decide::<false>(&ctx)
}

/// Links whose frames start at the IP header.
#[xdp]
#[inline(always)]
pub fn knock_ip(ctx: XdpContext) -> u32 {
    decide::<true>(&ctx)
}

/// The decision for frames that start with an Ethernet header, or with the IP header when
/// `IP_FIRST`. A const parameter rather than an argument: each entry point then gets its own
/// copy of every function down to the log statement's closure, which the compiler inlines
/// only where it has a single caller (a shared one would become a BPF-to-BPF call).
#[inline(always)]
fn decide<const IP_FIRST: bool>(ctx: &XdpContext) -> u32 {
    match try_knock::<IP_FIRST>(ctx) {
        Ok(action) => action,
        Err(Fault) => XDP_PASS,
    }
}

/// A map the program depends on is missing an entry it always has; only a broken load can
/// cause it. The frame passes: failing closed here would cut the host off entirely.
struct Fault;

#[inline(always)]
fn try_knock<const IP_FIRST: bool>(ctx: &XdpContext) -> Result<u32, Fault> {
    let link = if IP_FIRST { Link::Ip } else { Link::Ethernet };
    let frame = XdpFrame::new(ctx);
    let unaddressed = match headers_on(link, &frame) {
        Headers::Segment(unaddressed) => unaddressed,
        Headers::Final(Frame::Malformed(_)) => return Ok(malformed()),
        Headers::Final(_) => return Ok(XDP_PASS),
    };
    // The fast path decides on the port and the flags alone, before the addresses are read:
    // only new connections and datagrams meet the gate and end attempts, and only knock ports
    // hear other packets (a door's TCPFlags may ask for them), so the rest passes here, the
    // packets of established sessions to protected ports included.
    let (word, shift) = ports::slot(unaddressed.segment.proto, unaddressed.segment.dport);
    let class = ports::class_in(*PORTS.get(word).ok_or(Fault)?, shift);
    let contact = unaddressed.segment.is_contact();
    if !contact && class & KNOCK == 0 {
        return Ok(XDP_PASS);
    }
    let settings = SETTINGS.get(0).ok_or(Fault)?;
    let spa = unaddressed.segment.is_udp()
        && settings.spa_port != 0
        && unaddressed.segment.dport == settings.spa_port;
    // A new connection or datagram to a port no door knows can only end an attempt, and only
    // under the strict rule; or, in the stealth look, be dropped...
    let elsewhere = class & (KNOCK | GUARDED) == 0 && !spa;
    if elsewhere && settings.strict_doors == 0 && !settings.stealth() {
        return Ok(XDP_PASS);
    }
    let Some(source) = unaddressed.source(&frame) else {
        // The headers were read, so the address is there; this only keeps `classify`'s word.
        return Ok(malformed());
    };
    let heard = !(settings.ipv4_only() && !source.is_ipv4());
    let at_knock_port = class & KNOCK != 0;
    let packet = &unaddressed.segment;
    // ...of a source that has knocked lately. So for most traffic the gate has the only word.
    // SPA datagrams never end attempts: they are judged apart.
    let lately = !spa
        && !at_knock_port
        && contact
        && heard
        && packet.unicast
        && !packet.fragment
        && recent::may_be_knocking(&source, settings);
    // New connections to guarded ports meet the gate; in the stealth look, new connections and
    // datagrams to ports the host does not serve meet the stealth rule.
    let gated = class & GUARDED != 0 && contact;
    let unserved =
        elsewhere && settings.stealth() && stealthy(&unaddressed.segment, class, settings);
    if !spa && !at_knock_port && !lately && !gated && !unserved {
        return Ok(XDP_PASS);
    }
    // From here on every path through the classifier continues as one for the verifier (see
    // `Unaddressed::blurred`), so the gate and what follows are checked once per family. Not
    // earlier: before this point the compiler reads the source with offsets it knows on each
    // path, which is faster than any blurred read, and most traffic has left.
    let unaddressed = unaddressed.blurred(&frame);
    // SPA datagrams never meet the gate: they are judged apart.
    let verdict = if spa {
        XDP_PASS
    } else if unserved {
        stealth_verdict(&unaddressed, &frame)
    } else if gated {
        gate_verdict::<IP_FIRST>(ctx, &source, unaddressed.segment.dport, class, settings)
    } else {
        XDP_PASS
    };
    if verdict == REFUSED {
        note_probe::<IP_FIRST>(&unaddressed, class)?;
    }
    if !spa && !at_knock_port && !lately {
        return Ok(finish(ctx, verdict));
    }
    let segment = match unaddressed.with_source(source, &frame) {
        Frame::Segment(segment) => segment,
        _ => return Ok(malformed()),
    };
    let now_ns = unsafe { bpf_ktime_get_ns() };
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Fault)?;
    // SAFETY: this CPU's scratch slot, used only for the packet at hand. The volatile write
    // keeps the compiler from forwarding the classifier's registers past the memory.
    let segment: &Segment = unsafe {
        core::ptr::write_volatile(&raw mut (*scratch).segment, segment);
        &(*scratch).segment
    };
    if spa {
        if !addressed_to_host(segment) {
            return Ok(XDP_PASS);
        }
        if heard && !segment.fragment {
            // The SPA program reads the segment from the scratch slot and gives the verdict.
            // SAFETY: a tail call into our own program array; on failure execution goes on.
            unsafe { HANDOFF.tail_call(ctx, HANDOFF_SPA) };
        }
        // As for any closed port: the host answers, or in the filtered looks nobody does.
        return Ok(if settings.filtered() {
            XDP_DROP
        } else {
            XDP_PASS
        });
    }
    let mut action = verdict;
    let port = ProtoPort {
        port: segment.dport,
        proto: segment.proto,
        _pad: 0,
    };
    // Knock ports need the answer anyway; for other ports it waits until the source turns out
    // to have progress, which most do not.
    let to_host = at_knock_port && addressed_to_host(segment);
    if at_knock_port && to_host && class & SERVED == 0 && settings.filtered() {
        // Fragments too: knock ports look filtered to a fragmenting scanner as well. In the
        // closed look the knock goes on to the host, which answers as for any closed port.
        count(Counter::KnockPortDropped);
        action = XDP_DROP;
    }
    if segment.fragment {
        // A fragment is never a knock.
        return Ok(action);
    }
    // The verdict and the flags go through memory before the state machine runs: the verifier
    // does not track values in maps, so it walks the state machine once instead of once per
    // combination of them.
    // SAFETY: fields of this CPU's scratch slot, distinct from the segment.
    unsafe {
        core::ptr::write_volatile(&raw mut (*scratch).verdict, action);
        core::ptr::write_volatile(&raw mut (*scratch).at_knock_port, u32::from(at_knock_port));
        core::ptr::write_volatile(&raw mut (*scratch).to_host, u32::from(to_host));
    }
    // Every packet still here is at a knock port or from a source that knocked lately.
    if heard {
        if ban::is_banned(segment.src, settings, now_ns) {
            count(Counter::BannedIgnored);
        } else {
            if at_knock_port {
                recent::note(&segment.src, now_ns);
            }
            // `segment` is not used past this point: `track` rewrites part of it.
            if track(scratch, port, now_ns) {
                // Doors to open or a wrong knock to count: the open program does it and gives
                // the verdict.
                // SAFETY: this CPU's scratch slot; a tail call into our own program array, on
                // failure execution goes on (and nothing opens).
                unsafe {
                    core::ptr::write_volatile(&raw mut (*scratch).now_ns, now_ns);
                    HANDOFF.tail_call(ctx, HANDOFF_OPEN);
                }
            }
        }
    }
    // SAFETY: as above.
    let verdict = unsafe { core::ptr::read_volatile(&raw const (*scratch).verdict) };
    Ok(finish(ctx, verdict))
}

/// Not a verdict the kernel knows: a new connection or datagram the gate refused, which the
/// look decides what becomes of ([`finish`]).
const REFUSED: u32 = 0x100;
/// Not a verdict the kernel knows either: in the stealth look, a new connection or datagram to
/// a port the host does not serve ([`stealth_verdict`] decides).
const UNSERVED: u32 = 0x101;

/// The verdict for the kernel. A packet no static door admits goes to the reply program,
/// which admits it through a door in the gate's reserve, or refuses it as the look says:
/// answering as the host answers for a closed port (see `reply`), or dropping it.
#[inline(always)]
fn finish(ctx: &XdpContext, verdict: u32) -> u32 {
    if verdict != REFUSED {
        return verdict;
    }
    // The reply program finds the packet's headers in the scratch slot (`note_probe`).
    // SAFETY: a tail call into our own program array; on failure execution goes on.
    unsafe { HANDOFF.tail_call(ctx, HANDOFF_REPLY) };
    count(Counter::GateDropped);
    XDP_DROP
}

/// Leaves where a refused packet's headers lie in the scratch slot, for the reply program.
#[inline(always)]
fn note_probe<const IP_FIRST: bool>(unaddressed: &Unaddressed, class: u8) -> Result<(), Fault> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Fault)?;
    let probe = Probe {
        l3: unaddressed.ip_header_at() as u16,
        l4: unaddressed.transport_at() as u16,
        ipv6: u8::from(unaddressed.is_ipv6()),
        tcp: u8::from(unaddressed.segment.is_tcp()),
        ip_link: u8::from(IP_FIRST),
        class,
    };
    // SAFETY: this CPU's scratch slot, used only for the packet at hand.
    unsafe { core::ptr::write_volatile(&raw mut (*scratch).probe, probe) };
    Ok(())
}

/// Whether, in the stealth look, a packet to a port no door knows is dropped: a new
/// connection or datagram to a port the host does not serve, except datagrams to the
/// ephemeral port range, where answers to the host's own queries arrive.
#[inline(always)]
fn stealthy(segment: &Segment, class: u8, settings: &Settings) -> bool {
    segment.is_contact()
        && segment.unicast
        && class & SERVED == 0
        && !(segment.is_udp() && settings.ephemeral(segment.dport))
}

/// The stealth look's verdict on a packet [`stealthy`] picked: dropped when it is addressed to
/// the host; what is routed through passes.
#[inline(always)]
fn stealth_verdict<F: knock_common::frame::FrameBytes>(
    unaddressed: &Unaddressed,
    frame: &F,
) -> u32 {
    match unaddressed.destination(frame) {
        Some(destination) if LOCAL_ADDRS.get_ptr(destination).is_some() => {
            count(Counter::StealthDropped);
            XDP_DROP
        }
        _ => XDP_PASS,
    }
}

/// The gate's verdict on a new connection to a protected port: it needs an open door.
#[inline(always)]
fn gate_verdict<const IP_FIRST: bool>(
    ctx: &XdpContext,
    source: &Addr,
    dport: u16,
    class: u8,
    settings: &Settings,
) -> u32 {
    if gate::admits_static(*source, class) {
        count(Counter::GateAllowed);
        XDP_PASS
    } else if settings.always_allowing() && gate::always_allowed(*source) {
        count(Counter::AlwaysAllowed);
        XDP_PASS
    } else {
        // The reply program checks the gate's reserve, then refuses as the look says.
        debug!(ctx, "gate: no static door for a new connection to port {}", dport);
        REFUSED
    }
}

#[inline(always)]
fn malformed() -> u32 {
    count(Counter::Malformed);
    XDP_DROP
}

/// Runs the knock state machine for the packet's source. Returns whether the packet completed
/// a sequence or was a wrong knock: then the open program has work (see `open`).
#[inline(always)]
fn track(scratch: *mut Scratch, port: ProtoPort, now_ns: u64) -> bool {
    // SAFETY: fields of this CPU's scratch slot, written by `try_knock` for this packet.
    let at_knock_port =
        unsafe { core::ptr::read_volatile(&raw const (*scratch).at_knock_port) } != 0;
    // SAFETY: as above.
    let source = unsafe { (*scratch).segment.src };
    let first_step_doors = if at_knock_port {
        match FIRST_STEPS.get_ptr(port) {
            // SAFETY: written only by user space when the configuration changes.
            Some(first) => unsafe { (*first).doors },
            None => 0,
        }
    } else {
        0
    };
    // SAFETY: this CPU's scratch slot, used only for the packet at hand; the segment lives in
    // another field of it, which these borrows leave alone.
    let (fresh, opens) = unsafe { (&mut (*scratch).progress, &mut (*scratch).opens) };
    opens.count = 0;
    opens.next = 0;
    // SAFETY: as above; another field of the scratch slot.
    let failed = unsafe { &mut (*scratch).failed };
    *failed = 0;
    // Everything the witness notes goes to memory, which the verifier does not track, so it
    // does not multiply the paths through the state machine.
    let mut witness = Witness {
        source,
        now_ns,
        opens,
        failed,
        at_knock_port,
    };
    let (progress, fresh) = match PROGRESS.get_ptr_mut(source) {
        // SAFETY: the entry of this source; packets of one source are handled one at a time on
        // one CPU in practice, and a race can only lose a knock, never open a door.
        Some(progress) => (unsafe { &mut *progress }, false),
        // State for a source is only created by a first knock.
        None if first_step_doors != 0 => {
            zero(&raw mut *fresh);
            (fresh, true)
        }
        None => return false,
    };
    // Whether the packet is for this host: known already for knock ports, looked up now for
    // the others. It goes into the segment in memory, where the state machine reads it afresh
    // each time instead of carrying a value the verifier would split its paths on.
    // SAFETY: as above; no reference to the segment is alive while it is written.
    unsafe {
        let known = core::ptr::read_volatile(&raw const (*scratch).to_host) != 0;
        let to_host = known || (!at_knock_port && addressed_to_host(&(*scratch).segment));
        core::ptr::write_volatile(&raw mut (*scratch).segment.to_host, to_host);
    }
    // SAFETY: as above; from here on the segment is only read.
    let segment: &Segment = unsafe { &(*scratch).segment };
    let arrival = Arrival {
        segment,
        first_step_doors,
        at_knock_port,
    };
    advance(progress, &DoorMap, &arrival, now_ns, &mut witness);
    if fresh {
        // A reference into the scratch map, not a copy: the stack has no room for it.
        let progress: &Progress = progress;
        if !progress.is_empty() && PROGRESS.insert(source, progress, 0).is_err() {
            count(Counter::ProgressFull);
        }
    } else if progress.is_empty() {
        let _ = PROGRESS.remove(source);
    }
    // SAFETY: as above.
    unsafe { (*scratch).opens.count != 0 || (*scratch).failed != 0 }
}

/// Whether the packet is addressed to the host itself (or to a door's target), rather than
/// routed through it.
#[inline(always)]
fn addressed_to_host(segment: &Segment) -> bool {
    LOCAL_ADDRS.get_ptr(segment.dst).is_some()
}

struct DoorMap;

impl DoorBook for DoorMap {
    #[inline(always)]
    fn door(&self, id: u8) -> Option<&Door> {
        DOORS.get(u32::from(id))
    }
}

/// Turns state machine changes into counters and events, and notes the doors to open.
struct Witness<'a> {
    source: Addr,
    now_ns: u64,
    opens: &'a mut Opens,
    failed: &'a mut u32,
    /// The packet went to a knock port: only then is a reset a wrong knock.
    at_knock_port: bool,
}

impl Observer for Witness<'_> {
    #[inline(always)]
    fn observe(&mut self, id: u8, _door: &Door, change: Change) {
        let (counter, kind, stage) = match change {
            Change::Stage(stage) => (Counter::KnockAccepted, kind::STAGE, stage),
            Change::Opened => {
                let slot = self.opens.count as usize;
                if slot < OPENS_PER_PACKET {
                    self.opens.door[slot] = id;
                    self.opens.count += 1;
                }
                return;
            }
            Change::Reset(stage) => {
                // A wrong knock counts towards a ban; a reset by the strict rule (a connection
                // to another port) does not: a spoofer could aim one at any client.
                if self.at_knock_port {
                    *self.failed = 1;
                }
                (Counter::AttemptReset, kind::RESET, stage)
            }
            Change::TimedOut(stage) => (Counter::AttemptTimedOut, kind::TIMED_OUT, stage),
            Change::Crowded => (Counter::AttemptCrowded, kind::CROWDED, 0),
        };
        count(counter);
        emit(kind, self.source, id, stage, self.now_ns, 0);
    }
}
