//! Invariants of the frame classifier, checked against a second, independent reading of the
//! bytes: a plain slice walk that follows the same rules (two VLAN tags, IPv4 with options,
//! IPv6 extension headers up to 8 and 512 bytes deep). Every input is read twice: as an
//! Ethernet frame, and as a frame of a link without Ethernet headers, which starts at the IP
//! header.

use knock_common::frame::{
    Frame, Link, MAX_TRANSPORT_OFFSET, Malformed, Sight, classify_on, glance_on,
};
use knock_common::segment::{PROTO_TCP, PROTO_UDP};
use knock_common::{Addr, Segment};

/// Classifies `frame` on both kinds of link and panics, for the fuzzer to report, when the
/// classifier panics or when its answer disagrees with the bytes.
pub fn check_frame(frame: &[u8]) {
    check_on(Link::Ethernet, frame);
    check_on(Link::Ip, frame);
}

fn check_on(link: Link, frame: &[u8]) {
    let verdict = classify_on(link, frame);
    let reading = match link {
        Link::Ethernet => read(frame),
        Link::Ip => read_ip(frame),
    };
    glance_agrees(link, frame, &verdict);
    match verdict {
        Frame::Segment(segment) => {
            let Some(found) = reading.transport else {
                panic!("a Segment where no transport header can be found: {segment:?}");
            };
            agrees(frame, &segment, &found);
            still_the_same_when_padded(link, frame, &segment, &found);
            gone_when_cut(link, frame, &found);
        }
        Frame::Other => {
            if let Some(found) = reading.transport {
                assert!(
                    found.fragment == Fragment::Later || !found.complete(frame),
                    "Other, so unjudged, but a whole {} header lies at byte {}",
                    name(found.proto),
                    found.l4
                );
            }
        }
        Frame::Malformed(kind) => {
            assert!(
                reading.ip.is_some() || reading.third_tag,
                "Malformed({kind:?}) for a frame that is not IP"
            );
            match kind {
                Malformed::TooDeep => assert!(
                    reading.ip == Some(6) || reading.third_tag,
                    "TooDeep outside IPv6 and without a third VLAN tag"
                ),
                Malformed::TinyFragment => assert!(
                    reading.ip == Some(4)
                        && reading
                            .transport
                            .is_some_and(|t| t.proto == PROTO_TCP && t.fragment == Fragment::Later),
                    "TinyFragment for something other than a later IPv4 TCP fragment"
                ),
                _ => {}
            }
        }
    }
}

/// The fast lane's glance, where it has one, says what the classifier says: the XDP program
/// passes established flows on the glance alone.
fn glance_agrees(link: Link, frame: &[u8], verdict: &Frame) {
    let glance = match glance_on(link, frame) {
        None => return,
        Some(Sight::Malformed(why)) => {
            assert_eq!(
                *verdict,
                Frame::Malformed(why),
                "malformed at a glance, not to the classifier"
            );
            return;
        }
        Some(Sight::Segment(glance)) => glance,
    };
    let Frame::Segment(segment) = verdict else {
        panic!("a glance ({glance:?}) at a frame the classifier calls {verdict:?}");
    };
    assert_eq!(
        (glance.proto, glance.dport, glance.contact),
        (segment.proto, segment.dport, segment.is_contact()),
        "the glance and the classifier disagree"
    );
    let width = if glance.ipv6 { 16 } else { 4 };
    let source = &frame[glance.source_at..glance.source_at + width];
    let expected = if glance.ipv6 {
        Addr::from_ipv6(source.try_into().expect("16 bytes"))
    } else {
        Addr::from_ipv4(source.try_into().expect("4 bytes"))
    };
    assert_eq!(expected, segment.src, "the glance reads another source");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fragment {
    None,
    First,
    Later,
}

/// Where the walk found the transport header of an IP packet.
#[derive(Clone, Copy, Debug)]
struct Found {
    l3: usize,
    l4: usize,
    /// Where the IP header says the packet ends.
    end: usize,
    proto: u8,
    src: Addr,
    dst: Addr,
    unicast: bool,
    fragment: Fragment,
    /// An IPv6 packet whose zero payload length defers to the frame's end.
    jumbo: bool,
}

impl Found {
    const fn needed(&self) -> usize {
        if self.proto == PROTO_TCP { 14 } else { 8 }
    }

    /// A TCP or UDP header, whole as far as the classifier reads it, inside the packet.
    fn complete(&self, frame: &[u8]) -> bool {
        (self.proto == PROTO_TCP || self.proto == PROTO_UDP)
            && self.l4 + self.needed() <= self.end.min(frame.len())
    }
}

struct Reading {
    /// The IP version the Ethernet type announces, behind at most two tags.
    ip: Option<u8>,
    transport: Option<Found>,
    /// A VLAN tag follows the two the classifier looks through.
    third_tag: bool,
}

/// A frame that starts at its IP header: the version nibble names the family, and there is no
/// link-layer destination to say broadcast.
fn read_ip(frame: &[u8]) -> Reading {
    let nothing = Reading {
        ip: None,
        transport: None,
        third_tag: false,
    };
    if frame.len() < 2 {
        return nothing;
    }
    match frame[0] >> 4 {
        4 => Reading {
            ip: Some(4),
            transport: ipv4(frame, 0, true),
            third_tag: false,
        },
        6 => Reading {
            ip: Some(6),
            transport: ipv6(frame, 0, true),
            third_tag: false,
        },
        _ => nothing,
    }
}

fn read(frame: &[u8]) -> Reading {
    let nothing = Reading {
        ip: None,
        transport: None,
        third_tag: false,
    };
    if frame.len() < 14 {
        return nothing;
    }
    let mut l3 = 12;
    let mut tags = 0;
    let ethertype = loop {
        let Some(kind) = be16(frame, l3) else {
            return nothing;
        };
        if (kind == 0x8100 || kind == 0x88a8) && tags < 2 {
            tags += 1;
            l3 += 4;
            continue;
        }
        l3 += 2;
        break kind;
    };
    let unicast_mac = frame[0] & 1 == 0;
    match ethertype {
        0x0800 => Reading {
            ip: Some(4),
            transport: ipv4(frame, l3, unicast_mac),
            third_tag: false,
        },
        0x86dd => Reading {
            ip: Some(6),
            transport: ipv6(frame, l3, unicast_mac),
            third_tag: false,
        },
        0x8100 | 0x88a8 => Reading {
            third_tag: true,
            ..nothing
        },
        _ => nothing,
    }
}

fn ipv4(frame: &[u8], l3: usize, unicast_mac: bool) -> Option<Found> {
    let ip = frame.get(l3..l3 + 20)?;
    let header = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || header < 20 || total < header || l3 + total > frame.len() {
        return None;
    }
    let flags = u16::from_be_bytes([ip[6], ip[7]]);
    let fragment = match (flags & 0x1fff, flags & 0x2000 != 0) {
        (0, false) => Fragment::None,
        (0, true) => Fragment::First,
        _ => Fragment::Later,
    };
    Some(Found {
        l3,
        l4: l3 + header,
        end: l3 + total,
        proto: ip[9],
        src: Addr::from_ipv4([ip[12], ip[13], ip[14], ip[15]]),
        dst: Addr::from_ipv4([ip[16], ip[17], ip[18], ip[19]]),
        unicast: unicast_mac && ip[16] < 224,
        fragment,
        jumbo: false,
    })
}

fn ipv6(frame: &[u8], l3: usize, unicast_mac: bool) -> Option<Found> {
    let ip = frame.get(l3..l3 + 40)?;
    let announced = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let payload = if announced == 0 {
        frame.len() - l3 - 40
    } else {
        announced
    };
    if ip[0] >> 4 != 6 || l3 + 40 + payload > frame.len() {
        return None;
    }
    let mut src = [0; 16];
    src.copy_from_slice(&ip[8..24]);
    let mut dst = [0; 16];
    dst.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
    let mut at = l3 + 40;
    let mut fragment = Fragment::None;
    let mut headers = 0;
    loop {
        let length = match next {
            0 | 43 | 60 | 135 | 139 | 140 => (usize::from(*frame.get(at + 1)?) + 1) * 8,
            51 => (usize::from(*frame.get(at + 1)?) + 2) * 4,
            44 => {
                let field = be16(frame, at + 2)?;
                if field >> 3 != 0 {
                    fragment = Fragment::Later;
                } else if field & 1 != 0 && fragment == Fragment::None {
                    fragment = Fragment::First;
                }
                8
            }
            _ => break,
        };
        next = *frame.get(at)?;
        headers += 1;
        at += length;
        if headers > 8 || at - l3 > MAX_TRANSPORT_OFFSET {
            return None;
        }
        if fragment == Fragment::Later {
            break;
        }
    }
    Some(Found {
        l3,
        l4: at,
        end: l3 + 40 + payload,
        proto: next,
        src: Addr::from_ipv6(src),
        dst: Addr::from_ipv6(dst),
        unicast: unicast_mac && dst[0] != 0xff,
        fragment,
        jumbo: announced == 0,
    })
}

/// The segment says what the bytes at the transport header say.
fn agrees(frame: &[u8], segment: &Segment, found: &Found) {
    assert_ne!(
        found.fragment,
        Fragment::Later,
        "a Segment from a later fragment"
    );
    assert_eq!(segment.proto, found.proto, "the protocol");
    assert!(
        found.complete(frame),
        "a Segment whose header is cut: {found:?}"
    );
    assert_eq!(
        Some(segment.dport),
        be16(frame, found.l4 + 2),
        "the destination port"
    );
    if segment.is_tcp() {
        assert_eq!(segment.tcp_flags, frame[found.l4 + 13], "the TCP flags");
        assert!(
            frame[found.l4 + 12] >> 4 >= 5,
            "a TCP data offset below five words"
        );
    } else {
        assert_eq!(segment.tcp_flags, 0, "TCP flags on a datagram");
    }
    assert_eq!(
        (segment.src, segment.dst),
        (found.src, found.dst),
        "the addresses"
    );
    assert_eq!(segment.unicast, found.unicast, "unicast");
    if segment.fragment {
        assert_eq!(
            found.fragment,
            Fragment::First,
            "a fragment mark without a first fragment"
        );
    } else if frame[found.l3] >> 4 == 4 {
        assert_eq!(
            found.fragment,
            Fragment::None,
            "a first IPv4 fragment not marked as one"
        );
    }
    if frame[found.l3] >> 4 == 6 {
        assert!(
            found.l4 - found.l3 <= MAX_TRANSPORT_OFFSET,
            "a transport too deep"
        );
    }
}

/// Link-layer padding after the IP packet changes nothing.
fn still_the_same_when_padded(link: Link, frame: &[u8], segment: &Segment, found: &Found) {
    if found.jumbo {
        return;
    }
    let mut padded = frame.to_vec();
    padded.extend_from_slice(&[0; 16]);
    let Frame::Segment(again) = classify_on(link, padded.as_slice()) else {
        panic!(
            "padding turned a Segment into {:?}",
            classify_on(link, padded.as_slice())
        );
    };
    assert_eq!(key(&again), key(segment), "padding changed the Segment");
}

/// No frame cut inside the transport header is a Segment.
fn gone_when_cut(link: Link, frame: &[u8], found: &Found) {
    let cut = &frame[..found.l4 + found.needed() - 1];
    let verdict = classify_on(link, cut);
    assert!(
        !matches!(verdict, Frame::Segment(_)),
        "cut to {} bytes inside the transport header, still {verdict:?}",
        cut.len()
    );
}

fn key(segment: &Segment) -> (Addr, Addr, u8, u16, u8, bool, bool) {
    (
        segment.src,
        segment.dst,
        segment.proto,
        segment.dport,
        segment.tcp_flags,
        segment.unicast,
        segment.fragment,
    )
}

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
}

fn name(proto: u8) -> &'static str {
    if proto == PROTO_TCP { "TCP" } else { "UDP" }
}
