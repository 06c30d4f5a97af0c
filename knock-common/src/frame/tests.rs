use core::net::IpAddr;

use super::*;
use crate::craft::{Craft, ETH_BROADCAST, Transport};
use crate::segment::tcp_flags::{ACK, SYN};

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client4() -> IpAddr {
    v4("198.51.100.2")
}
fn server4() -> IpAddr {
    v4("198.51.100.1")
}
fn client6() -> IpAddr {
    v4("2001:db8::2")
}
fn server6() -> IpAddr {
    v4("2001:db8::1")
}

fn segment(frame: &[u8]) -> Segment {
    match classify(frame) {
        Frame::Segment(s) => s,
        other => panic!("expected a segment, got {other:?}"),
    }
}

#[test]
fn an_ipv4_syn_is_a_segment_with_port_and_flags() {
    let s = segment(&Craft::tcp(client4(), server4(), 22, SYN).build());
    assert_eq!(s.src, Addr::from(client4()));
    assert_eq!(s.dst, Addr::from(server4()));
    assert_eq!((s.proto, s.dport, s.tcp_flags), (PROTO_TCP, 22, SYN));
    assert!(s.unicast && !s.fragment && s.opens_connection());
}

#[test]
fn an_ipv4_datagram_is_a_segment() {
    let s = segment(&Craft::udp(client4(), server4(), 4438).build());
    assert_eq!((s.proto, s.dport), (PROTO_UDP, 4438));
    assert!(s.is_contact());
}

#[test]
fn an_ipv6_syn_is_a_segment() {
    let s = segment(&Craft::tcp(client6(), server6(), 22, SYN).build());
    assert_eq!(s.src, Addr::from(client6()));
    assert_eq!(s.dport, 22);
}

#[test]
fn ipv4_options_move_the_transport_header() {
    let frame = Craft::tcp(client4(), server4(), 22, SYN)
        .with_ipv4_options(&[0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00])
        .build();
    assert_eq!(segment(&frame).dport, 22);
}

#[test]
fn one_and_two_vlan_tags_are_looked_through() {
    let one = Craft::tcp(client4(), server4(), 22, SYN).with_vlan(0x8100, 10);
    assert_eq!(segment(&one.build()).dport, 22);
    let two = Craft::tcp(client6(), server6(), 22, SYN)
        .with_vlan(0x88a8, 100)
        .with_vlan(0x8100, 10);
    assert_eq!(segment(&two.build()).dport, 22);
}

#[test]
fn a_third_vlan_tag_is_malformed_because_priority_tags_all_get_stripped() {
    let frame = Craft::tcp(client4(), server4(), 22, SYN)
        .with_vlan(0x8100, 0)
        .with_vlan(0x8100, 0)
        .with_vlan(0x8100, 0)
        .build();
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::TooDeep)
    );
}

#[test]
fn eight_extension_headers_are_followed() {
    let mut craft = Craft::tcp(client6(), server6(), 22, SYN);
    for _ in 0..MAX_EXTENSION_HEADERS {
        craft = craft.with_extension(60, &[1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(segment(&craft.build()).dport, 22);
}

#[test]
fn an_ipv4_mapped_ipv6_source_is_malformed() {
    let frame = Craft::tcp(v4("::ffff:198.51.100.2"), server6(), 4438, SYN).build();
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::BadIpHeader)
    );
}

#[test]
fn a_first_fragment_header_before_an_atomic_one_still_marks_a_fragment() {
    let frame = Craft::tcp(client6(), server6(), 4438, SYN)
        .with_extension(44, &[0, 1, 0, 0, 0, 1])
        .with_fragment(0, false)
        .build();
    assert!(segment(&frame).fragment);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let frame = Craft::tcp(client6(), server6(), 22, SYN)
        .with_extension(0, &[1, 4, 0, 0, 0, 0])
        .with_extension(43, &[0, 0, 0, 0, 0, 0])
        .with_extension(60, &[1, 4, 0, 0, 0, 0])
        .with_extension(51, &[0; 10])
        .build();
    assert_eq!(segment(&frame).dport, 22);
}

#[test]
fn too_many_ipv6_extension_headers_are_malformed() {
    let mut craft = Craft::tcp(client6(), server6(), 22, SYN);
    for _ in 0..=MAX_EXTENSION_HEADERS {
        craft = craft.with_extension(60, &[1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(
        classify(craft.build().as_slice()),
        Frame::Malformed(Malformed::TooDeep)
    );
}

#[test]
fn extension_headers_deeper_than_the_limit_are_malformed() {
    let frame = Craft::tcp(client6(), server6(), 22, SYN)
        .with_extension(60, &[0; 600])
        .build();
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::TooDeep)
    );
}

#[test]
fn a_first_ipv4_fragment_is_a_segment_marked_as_fragment() {
    let frame = Craft::tcp(client4(), server4(), 22, SYN)
        .with_fragment(0, true)
        .build();
    let s = segment(&frame);
    assert!(s.fragment && s.opens_connection());
}

#[test]
fn a_later_fragment_is_other() {
    let craft = Craft::tcp(client4(), server4(), 22, SYN).with_fragment(8, false);
    assert_eq!(
        classify(craft.build_with_payload(&[0; 16]).as_slice()),
        Frame::Other
    );
    let craft6 = Craft::tcp(client6(), server6(), 22, SYN).with_fragment(8, false);
    assert_eq!(
        classify(craft6.build_with_payload(&[0; 16]).as_slice()),
        Frame::Other
    );
}

#[test]
fn a_tcp_fragment_overlapping_the_header_is_malformed() {
    let craft = Craft::tcp(client4(), server4(), 22, SYN).with_fragment(1, false);
    assert_eq!(
        classify(craft.build_with_payload(&[0; 16]).as_slice()),
        Frame::Malformed(Malformed::TinyFragment)
    );
}

#[test]
fn a_first_ipv6_fragment_is_a_segment_marked_as_fragment() {
    let frame = Craft::tcp(client6(), server6(), 22, SYN)
        .with_fragment(0, true)
        .build();
    assert!(segment(&frame).fragment);
}

#[test]
fn an_atomic_ipv6_fragment_is_a_whole_packet() {
    let frame = Craft::tcp(client6(), server6(), 22, SYN)
        .with_fragment(0, false)
        .build();
    assert!(!segment(&frame).fragment);
}

#[test]
fn broadcast_and_multicast_are_not_unicast() {
    let l2 = Craft::udp(client4(), server4(), 4438).with_eth_dst(ETH_BROADCAST);
    assert!(!segment(&l2.build()).unicast);
    let l3 = Craft::udp(client4(), v4("224.0.0.251"), 4438);
    assert!(!segment(&l3.build()).unicast);
    let l3v6 = Craft::udp(client6(), v4("ff02::1"), 4438);
    assert!(!segment(&l3v6.build()).unicast);
}

#[test]
fn non_ip_and_other_protocols_are_other() {
    let mut arp = Craft::udp(client4(), server4(), 1).build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(classify(arp.as_slice()), Frame::Other);
    let icmp = Craft::new(
        client4(),
        server4(),
        Transport::Raw {
            proto: 1,
            payload: std::vec![8, 0, 0, 0, 0, 0, 0, 0],
        },
    );
    assert_eq!(classify(icmp.build().as_slice()), Frame::Other);
}

#[test]
fn a_bad_ip_version_is_malformed() {
    let mut frame = Craft::tcp(client4(), server4(), 22, SYN).build();
    frame[14] = 0x65;
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::BadIpHeader)
    );
}

#[test]
fn a_header_length_below_twenty_bytes_is_malformed() {
    let mut frame = Craft::tcp(client4(), server4(), 22, SYN).build();
    frame[14] = 0x44;
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::BadIpHeader)
    );
}

#[test]
fn a_total_length_beyond_the_frame_is_malformed() {
    let mut frame = Craft::tcp(client4(), server4(), 22, SYN).build();
    frame[16..18].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::TruncatedIp)
    );
}

#[test]
fn a_transport_header_beyond_the_total_length_is_malformed() {
    let mut frame = Craft::tcp(client4(), server4(), 22, SYN).build();
    frame[16..18].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::TruncatedTransport)
    );
}

#[test]
fn a_tcp_data_offset_below_five_is_malformed() {
    let mut frame = Craft::tcp(client4(), server4(), 22, SYN).build();
    frame[14 + 20 + 12] = 4 << 4;
    assert_eq!(
        classify(frame.as_slice()),
        Frame::Malformed(Malformed::BadTcpHeader)
    );
}

#[test]
fn no_truncation_of_a_syn_is_ever_a_segment() {
    for craft in [
        Craft::tcp(client4(), server4(), 22, SYN),
        Craft::tcp(client6(), server6(), 22, SYN).with_extension(60, &[1, 4, 0, 0, 0, 0]),
        Craft::udp(client4(), server4(), 4438),
    ] {
        let frame = craft.build();
        for len in 0..frame.len() {
            let verdict = classify(&frame[..len]);
            assert!(
                !matches!(verdict, Frame::Segment(_)),
                "{len} of {} bytes gave {verdict:?}",
                frame.len()
            );
        }
    }
}

#[test]
fn ethernet_padding_after_the_ip_packet_is_ignored() {
    let mut frame = Craft::tcp(client4(), server4(), 22, SYN | ACK).build();
    frame.extend_from_slice(&[0; 6]);
    assert_eq!(segment(&frame).tcp_flags, SYN | ACK);
}

#[test]
fn a_datagram_says_where_its_payload_is() {
    let mut craft = Craft::udp(client4(), server4(), 62202);
    craft.transport = Transport::Udp {
        sport: 40000,
        dport: 62202,
        payload: std::vec![0xab; 56],
    };
    let frame = craft.build();
    let s = segment(&frame);
    assert_eq!((s.payload_at, s.payload_len), (14 + 20 + 8, 56));
    assert_eq!(frame[usize::from(s.payload_at)], 0xab);
}
