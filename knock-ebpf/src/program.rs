//! The XDP entry points and the per-packet decision. The decision is one piece of code,
//! compiled once per kind of link with the link a constant: `knock` for Ethernet frames,
//! `knock_ip` for links whose frames start at the IP header (tun, WireGuard, PPP, raw IP, IP
//! tunnels). User space attaches the one that matches each interface, so the Ethernet path
//! pays nothing for the other; both share every map and hand SPA datagrams to the same program.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use knock_common::counter::Counter;
use knock_common::event::kind;
use knock_common::frame::Unaddressed;
use knock_common::frame::{Frame, Headers, Link, Sight, glance_on, headers_on};
use knock_common::ports::{self, GUARDED, KNOCK, SERVED};
use knock_common::progress::{Arrival, Change, DoorBook, Observer, Progress, advance};
use knock_common::reply::Probe;
use knock_common::{Addr, Door, HANDOFF_GATE, HANDOFF_OPEN, HANDOFF_SPA, ProtoPort, Segment};

use crate::frame::XdpFrame;
use crate::maps::{
    AT_KNOCK_PORT, DOORS, FIRST_KNOCK_PORT, FIRST_STEPS, HANDOFF, LOCAL_ADDRS, OPENS_PER_PACKET,
    Opens, PORTS, PROGRESS, SCRATCH, SETTINGS, Scratch,
};
use crate::report::{count, emit, zero};
use crate::{ban, gate, lane, observe, recent};

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
        Ok(XDP_DROP) => observe::spare_judged(),
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
    // Most traffic is decided on a glance at fixed offsets; the rest takes the classifier's walk.
    match glance_on(link, &frame) {
        Some(Sight::Segment(glance)) => {
            if let Some(verdict) = lane::verdict(&glance, &frame) {
                return Ok(verdict);
            }
        }
        Some(Sight::Malformed(_)) => return Ok(malformed()),
        None => {}
    }
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
    let spa = settings.is_spa(unaddressed.segment.proto, unaddressed.segment.dport);
    // A new connection or datagram to a port no door knows can only end an attempt, and only
    // under the strict rule...
    let elsewhere = class & (KNOCK | GUARDED) == 0 && !spa;
    if elsewhere && settings.strict_doors == 0 {
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
    // New connections and datagrams to guarded ports are the gate program's to judge: the
    // ports doors protect, and in the stealth look the ports the host does not serve.
    let gated = class & GUARDED != 0 && contact && !spa;
    if !spa && !at_knock_port && !lately {
        if gated {
            // A stranger's attempt that the gate program could only drop is dropped here.
            if gate::refused_at_once(&source, class, settings) {
                count(Counter::GateDropped);
                return Ok(XDP_DROP);
            }
            // Nothing but the hand-over on this path: the verifier walks it once per path
            // through the classifier.
            note_probe::<IP_FIRST>(&unaddressed, class)?;
            // SAFETY: a tail call into our own program array; on failure execution goes on.
            unsafe { HANDOFF.tail_call(ctx, HANDOFF_GATE) };
            return Ok(XDP_DROP);
        }
        return Ok(XDP_PASS);
    }
    // Past the gate, every path through the classifier continues as one for the verifier
    // (see `Unaddressed::blurred`). Not earlier: before this point the compiler reads the
    // source with offsets it knows on each path, which is faster than any blurred read.
    let unaddressed = unaddressed.blurred(&frame);
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
    // A packet for the gate program (from a source that knocked lately) gets its word once
    // the state machine has run; if it cannot, the packet is dropped.
    let to_gate = gated;
    if to_gate {
        note_probe::<IP_FIRST>(&unaddressed, class)?;
    }
    let mut action = if to_gate { XDP_DROP } else { XDP_PASS };
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
    // The verdict and the flags go through memory before the state machine runs: the verifier
    // does not track values in maps, so it walks the state machine once instead of once per
    // combination of them.
    // SAFETY: fields of this CPU's scratch slot, distinct from the segment.
    unsafe {
        core::ptr::write_volatile(&raw mut (*scratch).verdict, action);
        core::ptr::write_volatile(&raw mut (*scratch).to_gate, u32::from(to_gate));
        // Without branches, as before: the verifier walks one path on.
        let first_step = at_knock_port && ports::may_start(class);
        let knock_port =
            (u32::from(at_knock_port) * AT_KNOCK_PORT) | (u32::from(first_step) * FIRST_KNOCK_PORT);
        core::ptr::write_volatile(&raw mut (*scratch).knock_port, knock_port);
        core::ptr::write_volatile(&raw mut (*scratch).to_host, u32::from(to_host));
        (*scratch).opens.count = 0;
        (*scratch).failed = 0;
    }
    // Every packet still here is at a knock port or from a source that knocked lately; a
    // fragment is never a knock.
    if heard && !segment.fragment {
        if ban::is_banned(segment.src, settings, now_ns) {
            count(Counter::BannedIgnored);
        } else {
            if at_knock_port {
                recent::note(&segment.src, now_ns);
            }
            // `segment` is not used past this point: `track` rewrites part of it.
            track(scratch, port, now_ns);
        }
    }
    // Doors to open or a wrong knock to count: the open program does what there is to do and
    // gives the verdict, handing a packet for the gate on to the gate program. A packet for
    // the gate with nothing to open goes there at once.
    // SAFETY: this CPU's scratch slot; a tail call into our own program array, on failure
    // execution goes on (and nothing opens).
    unsafe {
        if (*scratch).opens.count != 0 || (*scratch).failed != 0 {
            core::ptr::write_volatile(&raw mut (*scratch).now_ns, now_ns);
            HANDOFF.tail_call(ctx, HANDOFF_OPEN);
        } else if (*scratch).to_gate != 0 {
            // The gate program judges by the time the state machine did.
            core::ptr::write_volatile(&raw mut (*scratch).now_ns, now_ns);
            HANDOFF.tail_call(ctx, HANDOFF_GATE);
        }
    }
    // SAFETY: as above.
    Ok(unsafe { core::ptr::read_volatile(&raw const (*scratch).verdict) })
}

/// Leaves where a packet for the gate program has its headers in the scratch slot, with its
/// port's class.
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
    // SAFETY: this CPU's scratch slot, used only for the packet at hand. The time is zero
    // until the program reads the clock, which tells the gate program to read it itself.
    unsafe {
        core::ptr::write_volatile(&raw mut (*scratch).probe, probe);
        core::ptr::write_volatile(&raw mut (*scratch).now_ns, 0);
    }
    Ok(())
}

#[inline(always)]
fn malformed() -> u32 {
    count(Counter::Malformed);
    XDP_DROP
}

/// Runs the knock state machine for the packet's source: what it opens and whether the packet
/// was a wrong knock go into the scratch slot, for the open program (see `open`).
#[inline(always)]
fn track(scratch: *mut Scratch, port: ProtoPort, now_ns: u64) {
    // SAFETY: fields of this CPU's scratch slot, written by `try_knock` for this packet.
    let knock_port = unsafe { core::ptr::read_volatile(&raw const (*scratch).knock_port) };
    // `FIRST_KNOCK_PORT` is only ever set with `AT_KNOCK_PORT`.
    let at_knock_port = knock_port != 0;
    // SAFETY: as above.
    let source = unsafe { (*scratch).segment.src };
    // Only ports that some door's sequence starts with are looked up.
    let first_step_doors = if knock_port & FIRST_KNOCK_PORT != 0 {
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
        None => return,
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
