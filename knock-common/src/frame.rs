//! The frame classifier: from the raw bytes of a frame to a [`Segment`], or to the reason it is
//! not one. Frames start with an Ethernet header or, on links without one (tun, WireGuard, PPP,
//! raw IP, IP tunnels), with the IP header itself: see [`Link`]. It is generic over
//! [`FrameBytes`] so the XDP program runs it over packet memory with the verifier's bounds
//! checks, and the host tests and fuzzers run the very same code over byte slices.
//!
//! The rule it serves: anything that could reach a port must be classified exactly; what cannot
//! be classified, but might reach a port, is [`Frame::Malformed`] and gets dropped.

use crate::Addr;
use crate::segment::{PROTO_TCP, PROTO_UDP, Segment};

/// Bounds-checked access to the bytes of a frame: the one helper every header read goes through.
pub trait FrameBytes {
    /// The `N` bytes at `offset`, or `None` when the frame ends before them.
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;

    /// The frame's length in bytes.
    fn length(&self) -> usize;

    /// The four bytes at `offset` as one word in the machine's byte order, for comparing with
    /// constants: a single load in the kernel, where an array of bytes is read byte by byte.
    #[inline(always)]
    fn word(&self, offset: usize) -> Option<u32> {
        self.bytes::<4>(offset).map(u32::from_ne_bytes)
    }

    /// `value`, unchanged, but hidden from the kernel's verifier, which then checks what follows
    /// once for every value instead of once per value it could know. The XDP program combines
    /// it with a zero the verifier cannot see; elsewhere nothing needs hiding. Whoever uses the
    /// result in a packet offset bounds it again with a mask.
    #[inline(always)]
    fn opaque(&self, value: usize) -> usize {
        value
    }
}

impl FrameBytes for [u8] {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        self.get(offset..end)?.try_into().ok()
    }

    fn length(&self) -> usize {
        self.len()
    }
}

/// What a frame is, as far as knock is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not TCP or UDP over IP, or a later fragment: it cannot open a connection by itself.
    Other,
    /// A TCP or UDP header whose destination port and flags are known.
    Segment(Segment),
    /// Headers the host would reject, or that knock cannot follow, where a port could hide.
    Malformed(Malformed),
}

/// Why a frame could not be classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Malformed {
    /// The IP header is cut short.
    TruncatedIp,
    /// Wrong version, a header length below the minimum, or a total length that disagrees with it.
    BadIpHeader,
    /// The TCP or UDP header is cut short within the IP payload.
    TruncatedTransport,
    /// A TCP header with a data offset below five words.
    BadTcpHeader,
    /// An IPv4 fragment that would overlap the TCP header (RFC 1858).
    TinyFragment,
    /// More IPv6 extension headers, or more header bytes, than knock follows.
    TooDeep,
}

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;

const IPV6_HEADER: usize = 40;
const MAX_EXTENSION_HEADERS: usize = 8;
/// Extension headers deeper than this are not followed; the frame counts as malformed.
pub const MAX_TRANSPORT_OFFSET: usize = 512;

/// The bytes of the TCP header that knock reads: ports, sequence numbers, data offset, flags.
const TCP_NEEDED: usize = 14;
const UDP_HEADER: usize = 8;

/// How the frames of a link begin, which decides where the classifier looks for the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header, perhaps VLAN tags, then the IP header.
    Ethernet,
    /// The IP header itself, its family told by its version nibble: what generic XDP hands
    /// the program on tun and WireGuard (ARPHRD_NONE), PPP, raw-IP modems and IP tunnels.
    Ip,
}

/// Classifies an Ethernet frame.
#[inline(always)]
pub fn classify<F: FrameBytes + ?Sized>(frame: &F) -> Frame {
    classify_on(Link::Ethernet, frame)
}

/// Classifies a frame of a link of the given kind.
#[inline(always)]
pub fn classify_on<F: FrameBytes + ?Sized>(link: Link, frame: &F) -> Frame {
    match headers_on(link, frame) {
        Headers::Final(frame) => frame,
        Headers::Segment(segment) => segment.addressed(frame),
    }
}

/// Judges the headers of a frame of a link of the given kind. With `link` a constant, as in the
/// XDP program's entry points, the compiler keeps only that link's code.
#[inline(always)]
pub fn headers_on<F: FrameBytes + ?Sized>(link: Link, frame: &F) -> Headers {
    match link {
        Link::Ethernet => headers(frame),
        Link::Ip => ip_headers(frame),
    }
}

/// A frame's headers judged, the addresses of a segment not yet read: the fast path decides
/// on ports and flags alone, and copying 32 bytes of addresses would cost it more than the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Headers {
    /// Other or malformed; never [`Frame::Segment`].
    Final(Frame),
    Segment(Unaddressed),
}

/// A segment whose source and destination are still unspecified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unaddressed {
    pub segment: Segment,
    /// Offset of the source address in the frame; the destination follows it.
    addresses_at: usize,
    ipv6: bool,
}

/// Bounds where a segment's addresses can start: behind two VLAN tags, IPv4's source lies at
/// byte 34. A mask, so that the kernel's verifier knows the bound of an offset it cannot see.
const ADDRESSES_LIMIT: usize = 0x3f;
/// Bounds where a segment's payload (for TCP, its header) can start, as a mask.
const PAYLOAD_LIMIT: usize = 0x3ff;
const _: () = assert!(ETH_HEADER + 4 * MAX_VLAN_TAGS + MAX_TRANSPORT_OFFSET + 8 <= PAYLOAD_LIMIT);
const _: () = assert!(ETH_HEADER + 4 * MAX_VLAN_TAGS + 12 <= ADDRESSES_LIMIT);

impl Unaddressed {
    /// The same segment, where its addresses lie and which family they are hidden from the
    /// kernel's verifier (see [`FrameBytes::opaque`]). Every path through the classifier (each
    /// number of VLAN tags, IPv4 options or IPv6 extension headers) leaves these two fields
    /// with values of its own, and the verifier would check everything after the classifier
    /// once per path; blurred, it checks it once per family.
    #[inline(always)]
    pub fn blurred<F: FrameBytes + ?Sized>(self, frame: &F) -> Self {
        // One hidden zero for all: one load in the kernel.
        let zero = frame.opaque(0);
        Self {
            addresses_at: (self.addresses_at | zero) & ADDRESSES_LIMIT,
            ipv6: (usize::from(self.ipv6) | zero) != 0,
            // Where the payload lies differs with every path as well.
            segment: Segment {
                payload_at: ((usize::from(self.segment.payload_at) | zero) & PAYLOAD_LIMIT) as u16,
                payload_len: (usize::from(self.segment.payload_len) | zero) as u16,
                ..self.segment
            },
        }
    }

    /// Where the IP header starts.
    #[inline(always)]
    pub fn ip_header_at(&self) -> usize {
        if self.ipv6 {
            self.addresses_at - 8
        } else {
            self.addresses_at - 12
        }
    }

    /// Where the TCP or UDP header starts.
    #[inline(always)]
    pub fn transport_at(&self) -> usize {
        let at = usize::from(self.segment.payload_at);
        if self.segment.is_udp() { at - 8 } else { at }
    }

    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// The segment's destination address alone.
    #[inline(always)]
    pub fn destination<F: FrameBytes + ?Sized>(&self, frame: &F) -> Option<Addr> {
        if self.ipv6 {
            frame
                .bytes::<16>(self.addresses_at + 16)
                .map(Addr::from_ipv6)
        } else {
            frame.bytes::<4>(self.addresses_at + 4).map(Addr::from_ipv4)
        }
    }

    /// The segment's source address alone, read from the frame the headers came from.
    #[inline(always)]
    pub fn source<F: FrameBytes + ?Sized>(&self, frame: &F) -> Option<Addr> {
        if self.ipv6 {
            frame.bytes::<16>(self.addresses_at).map(Addr::from_ipv6)
        } else {
            let v4 = frame.bytes::<4>(self.addresses_at)?;
            Some(Addr::from_ipv4(v4))
        }
    }

    /// The segment with its addresses, read from the frame the headers came from.
    #[inline(always)]
    pub fn addressed<F: FrameBytes + ?Sized>(self, frame: &F) -> Frame {
        let mut segment = self.segment;
        if self.ipv6 {
            let Some(pair) = frame.bytes::<32>(self.addresses_at) else {
                return Frame::Malformed(Malformed::TruncatedIp);
            };
            let mut src = [0u8; 16];
            src.copy_from_slice(&pair[..16]);
            let mut dst = [0u8; 16];
            dst.copy_from_slice(&pair[16..]);
            segment.src = Addr::from_ipv6(src);
            segment.dst = Addr::from_ipv6(dst);
        } else {
            let Some(pair) = frame.bytes::<8>(self.addresses_at) else {
                return Frame::Malformed(Malformed::TruncatedIp);
            };
            segment.src = Addr::from_ipv4([pair[0], pair[1], pair[2], pair[3]]);
            segment.dst = Addr::from_ipv4([pair[4], pair[5], pair[6], pair[7]]);
        }
        Frame::Segment(segment)
    }

    /// The segment with the source already read by [`Self::source`], and its destination read
    /// now: the source is never read twice.
    #[inline(always)]
    pub fn with_source<F: FrameBytes + ?Sized>(self, source: Addr, frame: &F) -> Frame {
        let mut segment = self.segment;
        let Some(destination) = self.destination(frame) else {
            return Frame::Malformed(Malformed::TruncatedIp);
        };
        segment.src = source;
        segment.dst = destination;
        Frame::Segment(segment)
    }
}

/// Judges an Ethernet frame's headers, leaving a segment's addresses in the frame.
#[inline(always)]
pub fn headers<F: FrameBytes + ?Sized>(frame: &F) -> Headers {
    let Some(eth) = frame.bytes::<ETH_HEADER>(0) else {
        return Headers::Final(Frame::Other);
    };
    let l2_unicast = eth[0] & 1 == 0;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut offset = ETH_HEADER;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        let Some(tag) = frame.bytes::<4>(offset) else {
            return Headers::Final(Frame::Other);
        };
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        offset += 4;
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, offset, l2_unicast),
        ETHERTYPE_IPV6 => ipv6(frame, offset, l2_unicast),
        // The stack strips priority tags (VLAN 0) however many there are, so a third tag can
        // still hide an IP packet for this host: knock does not follow it, and drops it.
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => Headers::Final(Frame::Malformed(Malformed::TooDeep)),
        _ => Headers::Final(Frame::Other),
    }
}

/// Judges the headers of a frame that starts at its IP header. There is no link-layer
/// destination: every frame of such a link was sent to this host at layer 2, so only the IP
/// destination decides whether a knock was unicast.
#[inline(always)]
pub fn ip_headers<F: FrameBytes + ?Sized>(frame: &F) -> Headers {
    // Two bytes, not one: the verifier learns nothing from a check that one byte lies in the
    // packet, and no IP packet is shorter.
    let Some([first, _]) = frame.bytes::<2>(0) else {
        return Headers::Final(Frame::Other);
    };
    match first >> 4 {
        4 => ipv4(frame, 0, true),
        6 => ipv6(frame, 0, true),
        // No port lies behind any other version: the host's stack refuses IPv4 packets whose
        // version is not 4 and IPv6 packets whose version is not 6 (tun drops them before
        // that), and what PPP or a GRE tunnel carries besides IP (MPLS, say) is not for a port.
        _ => Headers::Final(Frame::Other),
    }
}

#[inline(always)]
const fn malformed(why: Malformed) -> Headers {
    Headers::Final(Frame::Malformed(why))
}

#[inline(always)]
fn ipv4<F: FrameBytes + ?Sized>(frame: &F, l3: usize, l2_unicast: bool) -> Headers {
    let Some(ip) = frame.bytes::<20>(l3) else {
        return malformed(Malformed::TruncatedIp);
    };
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || header_len < 20 {
        return malformed(Malformed::BadIpHeader);
    }
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total_len < header_len {
        return malformed(Malformed::BadIpHeader);
    }
    if l3 + total_len > frame.length() {
        return malformed(Malformed::TruncatedIp);
    }
    let proto = ip[9];
    let fragment = u16::from_be_bytes([ip[6], ip[7]]);
    let more_fragments = fragment & 0x2000 != 0;
    let fragment_offset = fragment & 0x1fff;
    if fragment_offset != 0 {
        // A fragment that starts inside the TCP header could rewrite its ports or flags after the
        // first fragment was judged (RFC 1858); legitimate stacks never send one.
        if proto == PROTO_TCP && usize::from(fragment_offset) * 8 < 20 {
            return malformed(Malformed::TinyFragment);
        }
        return Headers::Final(Frame::Other);
    }
    // Class D and E, including the limited broadcast address, reach more than one host.
    let unicast = l2_unicast && ip[16] < 224;
    let ends = Payload {
        start: l3 + header_len,
        end: l3 + total_len,
    };
    let at = AddressesAt {
        offset: l3 + 12,
        ipv6: false,
    };
    transport(frame, proto, ends, at, unicast, more_fragments)
}

#[inline(always)]
fn ipv6<F: FrameBytes + ?Sized>(frame: &F, l3: usize, l2_unicast: bool) -> Headers {
    let Some(ip) = frame.bytes::<IPV6_HEADER>(l3) else {
        return malformed(Malformed::TruncatedIp);
    };
    if ip[0] >> 4 != 6 {
        return malformed(Malformed::BadIpHeader);
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let available = frame.length().saturating_sub(l3 + IPV6_HEADER);
    // A zero payload length announces a jumbogram, whose length lives in an option; the frame's
    // own end bounds it then.
    let payload_len = if payload_len == 0 {
        available
    } else {
        payload_len
    };
    if payload_len > available {
        return malformed(Malformed::TruncatedIp);
    }
    // The stack drops IPv4-mapped sources (RFC 4291 2.5.5.2); taken as they come, they would
    // knock for the IPv4 address they map.
    let mapped =
        ip[8] | ip[9] | ip[10] | ip[11] | ip[12] | ip[13] | ip[14] | ip[15] | ip[16] | ip[17];
    if mapped == 0 && ip[18] == 0xff && ip[19] == 0xff {
        return malformed(Malformed::BadIpHeader);
    }
    let unicast = l2_unicast && ip[24] != 0xff;
    let end = l3 + IPV6_HEADER + payload_len;

    let mut next = ip[6];
    let mut offset = l3 + IPV6_HEADER;
    let mut more_fragments = false;
    // One more round than headers: the last one reads the transport protocol.
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let length = match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS | MOBILITY | HIP | SHIM6 => {
                let Some(h) = frame.bytes::<2>(offset) else {
                    return malformed(Malformed::TruncatedIp);
                };
                next = h[0];
                (usize::from(h[1]) + 1) * 8
            }
            AUTHENTICATION => {
                let Some(h) = frame.bytes::<2>(offset) else {
                    return malformed(Malformed::TruncatedIp);
                };
                next = h[0];
                (usize::from(h[1]) + 2) * 4
            }
            FRAGMENT => {
                let Some(h) = frame.bytes::<4>(offset) else {
                    return malformed(Malformed::TruncatedIp);
                };
                next = h[0];
                let field = u16::from_be_bytes([h[2], h[3]]);
                if field >> 3 != 0 {
                    // Later fragments carry no header chain (RFC 8200 puts all of it in the first).
                    return Headers::Final(Frame::Other);
                }
                // Stacked fragment headers: any of them marks a fragment.
                more_fragments |= field & 1 != 0;
                8
            }
            _ => {
                let ends = Payload { start: offset, end };
                let at = AddressesAt {
                    offset: l3 + 8,
                    ipv6: true,
                };
                return transport(frame, next, ends, at, unicast, more_fragments);
            }
        };
        offset += length;
        if offset > l3 + MAX_TRANSPORT_OFFSET {
            return malformed(Malformed::TooDeep);
        }
        // The walk so far, hidden from the verifier: else it checks each next round once per
        // combination of header lengths before it.
        offset = frame.opaque(offset) & EXTENSIONS_LIMIT;
    }
    malformed(Malformed::TooDeep)
}

/// Bounds the offset of the extension header walk for the verifier: as a mask, it changes no
/// offset the walk can reach (the IP header starts at most 22 bytes in).
const EXTENSIONS_LIMIT: usize = 0x3ff;
const _: () = assert!(ETH_HEADER + 4 * MAX_VLAN_TAGS + MAX_TRANSPORT_OFFSET <= EXTENSIONS_LIMIT);

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTHENTICATION: u8 = 51;
const DESTINATION_OPTIONS: u8 = 60;
const MOBILITY: u8 = 135;
const HIP: u8 = 139;
const SHIM6: u8 = 140;

/// Where a segment's addresses lie in the frame.
#[derive(Clone, Copy)]
struct AddressesAt {
    offset: usize,
    ipv6: bool,
}

/// Where the IP payload starts and where the IP header says it ends.
#[derive(Clone, Copy)]
struct Payload {
    start: usize,
    end: usize,
}

impl Payload {
    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        self.start + len <= self.end
    }
}

#[inline(always)]
fn transport<F: FrameBytes + ?Sized>(
    frame: &F,
    proto: u8,
    payload: Payload,
    at: AddressesAt,
    unicast: bool,
    fragment: bool,
) -> Headers {
    let segment = |dport: u16, tcp_flags: u8, payload_at: usize| {
        let segment = Segment {
            src: Addr::UNSPECIFIED,
            dst: Addr::UNSPECIFIED,
            proto,
            dport,
            tcp_flags,
            unicast,
            fragment,
            to_host: false,
            // Offsets stay below MAX_TRANSPORT_OFFSET plus a few headers, lengths below 64 KiB.
            payload_at: payload_at as u16,
            payload_len: payload.end.saturating_sub(payload_at) as u16,
        };
        Headers::Segment(Unaddressed {
            segment,
            addresses_at: at.offset,
            ipv6: at.ipv6,
        })
    };
    match proto {
        PROTO_TCP => {
            let (Some(tcp), true) = (
                frame.bytes::<TCP_NEEDED>(payload.start),
                payload.holds(TCP_NEEDED),
            ) else {
                return malformed(Malformed::TruncatedTransport);
            };
            if tcp[12] >> 4 < 5 {
                return malformed(Malformed::BadTcpHeader);
            }
            segment(u16::from_be_bytes([tcp[2], tcp[3]]), tcp[13], payload.start)
        }
        PROTO_UDP => {
            let (Some(udp), true) = (
                frame.bytes::<UDP_HEADER>(payload.start),
                payload.holds(UDP_HEADER),
            ) else {
                return malformed(Malformed::TruncatedTransport);
            };
            segment(
                u16::from_be_bytes([udp[2], udp[3]]),
                0,
                payload.start + UDP_HEADER,
            )
        }
        _ => Headers::Final(Frame::Other),
    }
}

mod glance;

pub use glance::{Glance, Sight, glance_on};

#[cfg(test)]
mod ip_tests;
#[cfg(test)]
mod tests;
