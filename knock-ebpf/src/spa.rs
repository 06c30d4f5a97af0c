//! Single-packet authorization in the kernel: verify, refuse or open.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use knock_common::Segment;
use knock_common::counter::Counter;
use knock_common::event::kind;
use knock_common::frame::FrameBytes as _;
use knock_common::settings::Settings;
use knock_common::spa::{self, PACKET_LEN, Rejection};

use crate::frame::XdpFrame;
use crate::gate;
use crate::maps::{DOORS, KEYS, NONCES, SCRATCH, SETTINGS, SPA_DOORS};
use crate::observe;
use crate::report::{count, emit};

/// The SPA program: the main program hands a datagram to the SPA port over with a tail call,
/// leaving the classified segment in the scratch slot. Whatever happens, the datagram then
/// goes where every datagram to a closed port goes: on to the host, which answers it as
/// such (the closed look), or nowhere (the filtered and stealth looks; passed under
/// `--observe`). So the answer tells nobody whether a packet opened a door.
#[xdp]
#[inline(always)]
pub fn knock_spa(ctx: XdpContext) -> u32 {
    let (Some(scratch), Some(settings)) = (SCRATCH.get_ptr_mut(0), SETTINGS.get(0)) else {
        return XDP_DROP;
    };
    // SAFETY: this CPU's scratch slot, filled by the main program for this very packet; the
    // segment and the SPA copy are distinct fields.
    let (segment, copy) = unsafe { (&(*scratch).segment, &mut (*scratch).spa) };
    handle(&ctx, segment, settings, copy);
    observe::spare(
        if settings.filtered() {
            XDP_DROP
        } else {
            XDP_PASS
        },
        settings,
    )
}

/// Verifies a datagram and opens its door. Bans do not apply: a packet whose MAC verifies
/// comes from a key holder (the MAC covers the source address), whatever a spoofer made of
/// that address; and failures never count towards a ban, since anyone can forge them "from"
/// a client and nobody without the key gains anything from them.
#[inline(always)]
fn handle(ctx: &XdpContext, segment: &Segment, settings: &Settings, copy: &mut [u8; PACKET_LEN]) {
    let now_ns = unsafe { bpf_ktime_get_ns() };
    let source = segment.src;
    if let Err(rejection) = verify(ctx, segment, settings, now_ns, copy) {
        let counter = match rejection {
            Rejection::Malformed => Counter::SpaMalformed,
            Rejection::UnknownKey => Counter::SpaUnknownKey,
            Rejection::BadMac => Counter::SpaBadMac,
            Rejection::Stale => Counter::SpaStale,
            Rejection::Replayed => Counter::SpaReplayed,
            Rejection::UnknownDoor => Counter::SpaUnknownDoor,
            Rejection::DoorRefused => Counter::SpaDoorRefused,
        };
        count(counter);
        emit(kind::SPA_REJECTED, source, 0, rejection as u8, now_ns, 0);
    }
}

/// A bound on where a datagram's payload can start, as a mask.
const PAYLOAD_LIMIT: usize = 0x3ff;
const _: () = assert!(knock_common::frame::MAX_TRANSPORT_OFFSET + 14 + 8 + 8 < PAYLOAD_LIMIT);

#[inline(always)]
fn verify(
    ctx: &XdpContext,
    segment: &Segment,
    settings: &Settings,
    now_ns: u64,
    packet: &mut [u8; PACKET_LEN],
) -> Result<(), Rejection> {
    if usize::from(segment.payload_len) != PACKET_LEN {
        return Err(Rejection::Malformed);
    }
    // Eight bytes at a time into map memory: the 512-byte stack has no room for the copy.
    let frame = XdpFrame::new(ctx);
    // The classifier never puts a payload past MAX_TRANSPORT_OFFSET plus the link and UDP
    // headers, and stores it masked to PAYLOAD_LIMIT; the mask again here tells the verifier so,
    // which it needs to accept the packet reads. Through `opaque` and with no range check
    // before it: the compiler would otherwise check one copy of the offset and read with
    // another, or fold the mask into the check, which kernels before 6.x cannot follow (6.1 and
    // 5.10 refused the program: "R2 offset is outside of the packet", "math between pkt
    // pointer and register with unbounded min value").
    let start = frame.opaque(usize::from(segment.payload_at)) & PAYLOAD_LIMIT;
    for word in 0..PACKET_LEN / 8 {
        let bytes: [u8; 8] = frame.bytes(start + word * 8).ok_or(Rejection::Malformed)?;
        packet[word * 8..word * 8 + 8].copy_from_slice(&bytes);
    }
    let packet: &[u8; PACKET_LEN] = packet;
    let request = spa::parse(packet).ok_or(Rejection::Malformed)?;
    let entry = KEYS.get_ptr(request.key_id).ok_or(Rejection::UnknownKey)?;
    // SAFETY: a KEYS value, written by user space only when the key file changes.
    let (key, doors) = unsafe { ((*entry).key, (*entry).doors) };
    if !spa::authentic(&key, packet, &segment.src) {
        return Err(Rejection::BadMac);
    }
    let wall_ns = now_ns.wrapping_add(settings.clock_offset_ns);
    if !spa::fresh(request.timestamp, wall_ns, u64::from(settings.spa_window_s)) {
        return Err(Rejection::Stale);
    }
    // BPF_NOEXIST makes the check and the record one step: of two copies racing on two CPUs,
    // one wins.
    if NONCES
        .insert(request.nonce, 1, aya_ebpf::bindings::BPF_NOEXIST.into())
        .is_err()
    {
        return Err(Rejection::Replayed);
    }
    let id = SPA_DOORS
        .get_ptr(request.door_tag)
        // SAFETY: a SPA_DOORS value, written by user space only on reloads.
        .map(|id| unsafe { *id })
        .ok_or(Rejection::UnknownDoor)?;
    let door = DOORS.get(id).ok_or(Rejection::UnknownDoor)?;
    if (doors >> (id & 63)) & 1 == 0 {
        return Err(Rejection::DoorRefused);
    }
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Rejection::UnknownDoor)?;
    count(Counter::SpaAccepted);
    gate::open(segment.src, door, 0, now_ns, scratch, true, settings);
    Ok(())
}
