//! The fast lane: a glance at the frames most traffic is made of (no VLAN tag, IPv4 without
//! options or IPv6 without extension headers, TCP or UDP) that reads only what the fast path
//! decides on: the protocol, the destination port, whether the packet opens a connection, and
//! where the source address lies. Every check the classifier makes of such a frame is made
//! here too, at fixed offsets after one bounds check, so for these frames [`glance_on`] and
//! [`headers_on`](super::headers_on) agree (the fuzzer checks it); any other frame gets no
//! glance and goes the classifier's way.
//!
//! Why it pays: the classifier's walk is written for every shape (tags, options, extension
//! headers) and carries what later stages need (payload bounds, unicast, fragments) through the
//! fast path's decision; the compiler keeps all of it alive in registers and on the stack. An
//! established flow's packet needs none of it.

use super::{
    ETH_HEADER, ETHERTYPE_IPV4, ETHERTYPE_IPV6, FrameBytes, IPV6_HEADER, Link, Malformed,
    TCP_NEEDED, UDP_HEADER,
};
use crate::segment::{PROTO_TCP, PROTO_UDP, tcp_flags};

/// An IPv4 header without options, the only kind the glance reads.
const IPV4_HEADER: usize = 20;

/// What the fast path decides on, for a frame of a shape the glance knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Glance {
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    pub dport: u16,
    /// A new TCP connection (SYN without ACK) or a UDP datagram: see
    /// [`Segment::is_contact`](crate::Segment::is_contact).
    pub contact: bool,
    /// Where the source address starts in the frame.
    pub source_at: usize,
    pub ipv6: bool,
}

/// What a glance sees, where it sees anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sight {
    Segment(Glance),
    /// What the classifier calls malformed, for the same reason.
    Malformed(Malformed),
}

/// The glance at a frame of a link of the given kind, when it has the common shape. With
/// `link` a constant, as in the XDP program, only that link's code remains.
#[inline(always)]
pub fn glance_on<F: FrameBytes + ?Sized>(link: Link, frame: &F) -> Option<Sight> {
    let (l3, version) = match link {
        Link::Ethernet => {
            let [high, low] = frame.bytes::<2>(12)?;
            let version = match u16::from_be_bytes([high, low]) {
                ETHERTYPE_IPV4 => 4,
                ETHERTYPE_IPV6 => 6,
                _ => return None,
            };
            (ETH_HEADER, version)
        }
        Link::Ip => {
            let [first, _] = frame.bytes::<2>(0)?;
            (0, first >> 4)
        }
    };
    match version {
        4 => ipv4(frame, l3),
        6 => ipv6(frame, l3),
        _ => None,
    }
}

#[inline(always)]
fn ipv4<F: FrameBytes + ?Sized>(frame: &F, l3: usize) -> Option<Sight> {
    // One bounds check for the header and the TCP bytes; a UDP frame shorter than that (an
    // empty datagram, unpadded) takes the classifier's way.
    let ip = frame.bytes::<{ IPV4_HEADER + TCP_NEEDED }>(l3)?;
    // Version 4 and no options: the transport header follows at a fixed offset.
    if ip[0] != 0x45 {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if l3 + total_len > frame.length() {
        return None;
    }
    // Fragment offset zero: later fragments carry no header to glance at.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
        return None;
    }
    let payload_len = total_len.checked_sub(IPV4_HEADER)?;
    let l4 = IPV4_HEADER;
    transport(&ip, ip[9], l4, payload_len, l3 + 12, false).map(Sight::Segment)
}

#[inline(always)]
fn ipv6<F: FrameBytes + ?Sized>(frame: &F, l3: usize) -> Option<Sight> {
    let ip = frame.bytes::<{ IPV6_HEADER + TCP_NEEDED }>(l3)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    // Zero announces a jumbogram: the classifier's way.
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if payload_len == 0 || l3 + IPV6_HEADER + payload_len > frame.length() {
        return None;
    }
    // An IPv4-mapped source is malformed to the classifier (the stack drops it): three word
    // compares instead of ten bytes.
    let word = |at: usize| frame.word(l3 + at);
    if word(8)? | word(12)? == 0 && word(16)? == u32::from_ne_bytes([0, 0, 0xff, 0xff]) {
        return Some(Sight::Malformed(Malformed::BadIpHeader));
    }
    transport(&ip, ip[6], IPV6_HEADER, payload_len, l3 + 8, true).map(Sight::Segment)
}

/// The transport header at `l4` of `ip` (the IP header and what follows it), whose IP payload
/// is `payload_len` bytes long.
#[inline(always)]
fn transport<const N: usize>(
    ip: &[u8; N],
    proto: u8,
    l4: usize,
    payload_len: usize,
    source_at: usize,
    ipv6: bool,
) -> Option<Glance> {
    let port = |at: usize| Some(u16::from_be_bytes([*ip.get(at)?, *ip.get(at + 1)?]));
    match proto {
        PROTO_TCP => {
            if payload_len < TCP_NEEDED || *ip.get(l4 + 12)? >> 4 < 5 {
                return None;
            }
            let flags = *ip.get(l4 + 13)?;
            Some(Glance {
                proto,
                dport: port(l4 + 2)?,
                contact: flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0,
                source_at,
                ipv6,
            })
        }
        PROTO_UDP if payload_len >= UDP_HEADER => Some(Glance {
            proto,
            dport: port(l4 + 2)?,
            contact: true,
            source_at,
            ipv6,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use core::net::IpAddr;

    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    use crate::craft::{Craft, Transport};
    use crate::frame::{Frame, classify_on};
    use crate::segment::tcp_flags::{ACK, SYN};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The glance of `frame` on `link`, checked against the classifier's reading.
    fn glance(link: Link, frame: &[u8]) -> Option<Glance> {
        match glance_on(link, frame)? {
            Sight::Segment(glance) => {
                let Frame::Segment(segment) = classify_on(link, frame) else {
                    panic!("a glance at a frame the classifier does not take as a segment");
                };
                assert_eq!(
                    (glance.proto, glance.dport, glance.contact),
                    (segment.proto, segment.dport, segment.is_contact())
                );
                Some(glance)
            }
            Sight::Malformed(why) => {
                assert_eq!(classify_on(link, frame), Frame::Malformed(why));
                None
            }
        }
    }

    /// A datagram with a payload: an empty one, unpadded, is shorter than what the glance reads.
    fn datagram(src: &str, dst: &str, dport: u16) -> Vec<u8> {
        let mut craft = Craft::udp(ip(src), ip(dst), dport);
        craft.transport = Transport::Udp {
            sport: 40001,
            dport,
            payload: vec![0; 18],
        };
        craft.build()
    }

    fn on_ip_link(frame: &[u8]) -> &[u8] {
        &frame[14..]
    }

    #[test]
    fn an_ack_and_a_syn_over_either_family_are_glanced_at_on_either_link() {
        for (src, dst) in [
            ("198.51.100.2", "198.51.100.1"),
            ("2001:db8::2", "2001:db8::1"),
        ] {
            for (flags, contact) in [(ACK, false), (SYN, true), (SYN | ACK, false)] {
                let frame = Craft::tcp(ip(src), ip(dst), 443, flags).build();
                for (link, bytes) in [(Link::Ethernet, &frame[..]), (Link::Ip, on_ip_link(&frame))]
                {
                    let seen = glance(link, bytes).expect("a plain TCP segment");
                    assert_eq!((seen.dport, seen.contact), (443, contact));
                    let v6 = src.contains(':');
                    let source_at = if v6 { 8 } else { 12 };
                    let l3 = if link == Link::Ethernet { 14 } else { 0 };
                    assert_eq!((seen.ipv6, seen.source_at), (v6, l3 + source_at));
                }
            }
        }
    }

    #[test]
    fn a_datagram_is_a_contact() {
        let frame = datagram("198.51.100.2", "198.51.100.1", 5353);
        let seen = glance(Link::Ethernet, &frame).expect("a plain datagram");
        assert_eq!(
            (seen.proto, seen.dport, seen.contact),
            (PROTO_UDP, 5353, true)
        );
        let empty = Craft::udp(ip("198.51.100.2"), ip("198.51.100.1"), 5353).build();
        assert_eq!(
            glance(Link::Ethernet, &empty[..42]),
            None,
            "too short to glance at"
        );
    }

    #[test]
    fn frames_of_other_shapes_go_the_classifiers_way() {
        let syn = Craft::tcp(ip("198.51.100.2"), ip("198.51.100.1"), 22, SYN).build();
        let mut options = syn.clone();
        options[14] = 0x46;
        let mut later_fragment = syn.clone();
        later_fragment[14 + 7] = 1;
        let mut cut = syn.clone();
        cut[14 + 3] = 30;
        let mut tagged = syn.clone();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        let mut short_doff = syn.clone();
        short_doff[34 + 12] = 0x40;
        let mut long = syn.clone();
        long[14 + 2] = 0x40;
        for frame in [options, later_fragment, cut, tagged, short_doff, long] {
            assert_eq!(glance(Link::Ethernet, &frame), None, "{frame:02x?}");
        }

        let v6 = Craft::tcp(ip("2001:db8::2"), ip("2001:db8::1"), 22, SYN).build();
        let mut mapped = v6.clone();
        // ::ffff:198.51.100.2
        mapped[22..32].fill(0);
        mapped[32..38].copy_from_slice(&[0xff, 0xff, 198, 51, 100, 2]);
        let mut jumbo = v6.clone();
        jumbo[18..20].copy_from_slice(&[0, 0]);
        let mut hop_by_hop = v6.clone();
        hop_by_hop[20] = 0;
        assert_eq!(
            glance_on(Link::Ethernet, &mapped[..]),
            Some(Sight::Malformed(Malformed::BadIpHeader)),
            "an IPv4-mapped source is malformed at a glance"
        );
        for frame in [mapped, jumbo, hop_by_hop] {
            assert_eq!(glance(Link::Ethernet, &frame), None, "{frame:02x?}");
        }
    }

    /// Every frame the glance takes, the classifier takes alike: a sweep of single-byte changes
    /// over the headers of every common shape (the fuzzer goes further).
    #[test]
    fn the_glance_agrees_with_the_classifier_under_every_single_byte_change() {
        let frames = [
            Craft::tcp(ip("198.51.100.2"), ip("198.51.100.1"), 22, SYN).build(),
            Craft::tcp(ip("2001:db8::2"), ip("2001:db8::1"), 22, ACK).build(),
            datagram("198.51.100.2", "198.51.100.1", 53),
            datagram("2001:db8::2", "2001:db8::1", 53),
        ];
        for frame in frames {
            for at in 0..frame.len().min(14 + 40 + 20) {
                for value in [0u8, 1, 5, 6, 17, 0x40, 0x45, 0x60, 0x86, 0xdd, 0xff] {
                    let mut changed = frame.clone();
                    changed[at] = value;
                    glance(Link::Ethernet, &changed);
                    glance(Link::Ip, on_ip_link(&changed));
                    glance(Link::Ethernet, &changed[..changed.len() - 1]);
                }
            }
        }
    }
}
