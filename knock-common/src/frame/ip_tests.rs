//! Frames of links without an Ethernet header: tun, WireGuard, PPP, raw IP, IP tunnels.

use core::net::IpAddr;

use super::*;
use crate::craft::{Craft, Transport};
use crate::segment::tcp_flags::SYN;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn syn4(port: u16) -> Craft {
    Craft::tcp(ip("198.51.100.2"), ip("198.51.100.1"), port, SYN)
}

fn syn6(port: u16) -> Craft {
    Craft::tcp(ip("2001:db8::2"), ip("2001:db8::1"), port, SYN)
}

fn on_ip_link(frame: &[u8]) -> Frame {
    classify_on(Link::Ip, frame)
}

fn segment(frame: &[u8]) -> Segment {
    match on_ip_link(frame) {
        Frame::Segment(s) => s,
        other => panic!("expected a segment, got {other:?}"),
    }
}

#[test]
fn an_ipv4_packet_is_judged_from_its_first_byte() {
    let s = segment(&syn4(22).build_ip());
    assert_eq!(s.src, Addr::from(ip("198.51.100.2")));
    assert_eq!(s.dst, Addr::from(ip("198.51.100.1")));
    assert_eq!((s.proto, s.dport, s.tcp_flags), (PROTO_TCP, 22, SYN));
    assert!(s.unicast && !s.fragment && s.opens_connection());
}

#[test]
fn an_ipv6_packet_is_judged_from_its_first_byte() {
    let s = segment(&syn6(22).build_ip());
    assert_eq!(s.src, Addr::from(ip("2001:db8::2")));
    assert_eq!(s.dport, 22);
    assert!(s.unicast);
}

#[test]
fn the_version_nibble_alone_names_the_family() {
    // The same IPv4 packet read as IPv6 would be cut short; the nibble decides, nothing else.
    let frame = syn4(22).build_ip();
    assert_eq!(frame[0] >> 4, 4);
    assert_eq!(segment(&frame).dport, 22);
}

#[test]
fn a_version_other_than_4_or_6_is_no_ip_packet_and_passes_unjudged() {
    for version in [0u8, 1, 5, 7, 15] {
        let mut frame = syn4(22).build_ip();
        frame[0] = (version << 4) | (frame[0] & 0x0f);
        assert_eq!(on_ip_link(&frame), Frame::Other, "version {version}");
    }
}

#[test]
fn an_ipv6_nibble_in_front_of_an_ipv4_header_is_judged_as_ipv6_and_is_malformed() {
    // Too short for a whole IPv6 header, and ipv6_rcv would drop it likewise.
    let mut frame = syn4(22).build_ip();
    frame[0] = 0x65;
    assert_eq!(on_ip_link(&frame), Frame::Malformed(Malformed::TruncatedIp));
}

#[test]
fn a_frame_too_short_for_any_ip_header_is_other() {
    assert_eq!(on_ip_link(&[]), Frame::Other);
    assert_eq!(on_ip_link(&[0x45]), Frame::Other);
}

#[test]
fn an_ipv4_header_cut_short_is_malformed() {
    let frame = syn4(22).build_ip();
    for len in 2..20 {
        assert_eq!(
            on_ip_link(&frame[..len]),
            Frame::Malformed(Malformed::TruncatedIp),
            "{len} bytes"
        );
    }
}

#[test]
fn no_truncation_of_an_ip_first_syn_is_ever_a_segment() {
    for frame in [
        syn4(22).build_ip(),
        syn6(22).with_extension(0, &[1, 4, 0, 0, 0, 0]).build_ip(),
        Craft::udp(ip("198.51.100.2"), ip("198.51.100.1"), 4438).build_ip(),
    ] {
        for len in 0..frame.len() {
            let verdict = on_ip_link(&frame[..len]);
            assert!(
                !matches!(verdict, Frame::Segment(_)),
                "{len} of {} bytes gave {verdict:?}",
                frame.len()
            );
        }
    }
}

#[test]
fn ipv4_options_move_the_transport_header_on_an_ip_link_too() {
    let frame = syn4(22)
        .with_ipv4_options(&[
            0x07, 0x13, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ])
        .build_ip();
    let s = segment(&frame);
    assert_eq!(s.dport, 22);
    assert_eq!(usize::from(s.payload_at), 40);
}

#[test]
fn a_header_length_below_twenty_bytes_is_malformed_on_an_ip_link() {
    let mut frame = syn4(22).build_ip();
    frame[0] = 0x44;
    assert_eq!(on_ip_link(&frame), Frame::Malformed(Malformed::BadIpHeader));
}

#[test]
fn ipv6_extension_headers_are_walked_on_an_ip_link() {
    let frame = syn6(22)
        .with_extension(0, &[1, 4, 0, 0, 0, 0])
        .with_extension(43, &[0, 0, 0, 0, 0, 0])
        .with_extension(60, &[1, 4, 0, 0, 0, 0])
        .build_ip();
    assert_eq!(segment(&frame).dport, 22);
}

#[test]
fn too_many_ipv6_extension_headers_are_malformed_on_an_ip_link() {
    let mut craft = syn6(22);
    for _ in 0..=MAX_EXTENSION_HEADERS {
        craft = craft.with_extension(60, &[1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(
        on_ip_link(&craft.build_ip()),
        Frame::Malformed(Malformed::TooDeep)
    );
}

#[test]
fn an_ipv4_mapped_source_is_malformed_on_an_ip_link() {
    let frame = Craft::tcp(ip("::ffff:198.51.100.2"), ip("2001:db8::1"), 4438, SYN).build_ip();
    assert_eq!(on_ip_link(&frame), Frame::Malformed(Malformed::BadIpHeader));
}

#[test]
fn fragments_on_an_ip_link_are_judged_as_on_ethernet() {
    assert!(segment(&syn4(22).with_fragment(0, true).build_ip()).fragment);
    let later = syn6(22).with_fragment(8, false);
    assert_eq!(
        on_ip_link(&later.build_ip_with_payload(&[0; 16])),
        Frame::Other
    );
    let tiny = syn4(22).with_fragment(1, false);
    assert_eq!(
        on_ip_link(&tiny.build_ip_with_payload(&[0; 16])),
        Frame::Malformed(Malformed::TinyFragment)
    );
}

#[test]
fn multicast_destinations_are_not_unicast_on_an_ip_link() {
    let v4 = Craft::udp(ip("198.51.100.2"), ip("224.0.0.251"), 4438);
    assert!(!segment(&v4.build_ip()).unicast);
    let v6 = Craft::udp(ip("2001:db8::2"), ip("ff02::1"), 4438);
    assert!(!segment(&v6.build_ip()).unicast);
}

#[test]
fn a_datagram_on_an_ip_link_says_where_its_payload_is() {
    let mut craft = Craft::udp(ip("198.51.100.2"), ip("198.51.100.1"), 62202);
    craft.transport = Transport::Udp {
        sport: 40000,
        dport: 62202,
        payload: std::vec![0xab; 56],
    };
    let frame = craft.build_ip();
    let s = segment(&frame);
    assert_eq!((s.payload_at, s.payload_len), (20 + 8, 56));
    assert_eq!(frame[usize::from(s.payload_at)], 0xab);
}

#[test]
fn an_ethernet_frame_read_as_ip_is_never_taken_for_the_packet_it_carries() {
    // The Ethernet header of the crafted frames starts with 0x02: version 0, so it passes,
    // and the SYN inside is never read from the wrong place.
    let frame = syn4(22).build();
    assert_eq!(on_ip_link(&frame), Frame::Other);
}
