use super::*;
use crate::craft::Craft;
use crate::segment::tcp_flags::{FIN, URG};
use alloc::vec::Vec;
use core::net::IpAddr;

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

const STACK: Stack = Stack {
    ttl: 64,
    hop_limit: 64,
    label_key: 7,
};

/// A SYN with an MSS option and TOS 0x2b (ECN bits set), sent from 198.51.100.2:40000 to
/// port 80 of a Linux 6.18 host with nothing listening there, and the reset the host sent.
const SYN4: &str =
    "452b002c1111000032062326c6336402c63364019c40005012345678000000006002faf0438e0000020405b4";
const HOST_RESET4: &str =
    "45280028000040004006e63dc6336401c633640200509c4000000000123456795014000056280000";
/// The same over IPv6 (traffic class 0x2b, flow label 0x12345), and the host's reset. Its flow
/// label (0xbc5b2) came from the host's keyed flow hash; the rest is what the program must send.
const SYN6: &str = "62b123450018063220010db800000000000000000000000220010db80000000000000000000000019c40005012345678000000006002faf03c980000020405a0";
const HOST_RESET6: &str = "628bc5b20014064020010db800000000000000000000000120010db800000000000000000000000200509c400000000012345679501400005b8f0000";

fn probe_ip(ipv6: bool) -> Probe {
    Probe {
        l3: 0,
        l4: if ipv6 { 40 } else { 20 },
        ipv6: u8::from(ipv6),
        tcp: 1,
        ip_link: 1,
        class: 0,
    }
}

fn probe_eth(ipv6: bool) -> Probe {
    Probe {
        l3: 14,
        l4: if ipv6 { 54 } else { 34 },
        ipv6: u8::from(ipv6),
        tcp: 1,
        ip_link: 0,
        class: 0,
    }
}

/// The reset for a frame, if it is a plain SYN.
fn reset(frame: &[u8], probe: Probe) -> Option<Reset> {
    let mut reset = Reset::default();
    reset_for(frame, probe, STACK, &mut reset).then_some(reset)
}

/// The whole answer for a frame, as the kernel leaves it: cut, then written.
fn answer(frame: &[u8], probe: Probe) -> Option<Vec<u8>> {
    let reset = reset(frame, probe)?;
    let mut out = frame[..usize::from(probe.l3) + reset.len as usize].to_vec();
    write(out.as_mut_slice(), probe, &reset)?;
    Some(out)
}

#[test]
fn an_ipv4_reset_is_the_one_the_host_sent_byte_for_byte() {
    let reset = answer(&unhex(SYN4), probe_ip(false)).expect("a plain SYN is answered");
    assert_eq!(reset, unhex(HOST_RESET4));
}

#[test]
fn an_ipv6_reset_is_the_one_the_host_sent_but_for_the_flow_label_and_checksum() {
    let ours = answer(&unhex(SYN6), probe_ip(true)).expect("a plain SYN is answered");
    let host = unhex(HOST_RESET6);
    assert_eq!(ours.len(), host.len());
    // Version, traffic class and the label's high bits' byte: the class must match.
    assert_eq!(ours[0], host[0]);
    assert_eq!(ours[1] & 0xf0, host[1] & 0xf0);
    assert_eq!(
        ours[4..40],
        host[4..40],
        "length, next header, hop limit, addresses"
    );
    assert_eq!(
        ours[40..56],
        host[40..56],
        "ports, sequence, acknowledgement, flags, window"
    );
    assert_eq!(ours[58..], host[58..]);
    let label = u32::from_be_bytes([0, ours[1] & 0x0f, ours[2], ours[3]]);
    assert_ne!(label, 0, "a flow label, as the host's automatic ones");
    // The checksum: the segment and the pseudo-header add up.
    let mut sum = 0u32;
    for pair in ours[8..40].chunks(2).chain(ours[40..].chunks(2)) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    sum += 6 + 20;
    assert_eq!(fold(sum), 0xffff);
}

#[test]
fn the_flow_label_is_the_same_for_every_reset_of_a_flow_and_differs_between_flows() {
    let syn = unhex(SYN6);
    let first = answer(&syn, probe_ip(true)).unwrap();
    let again = answer(&syn, probe_ip(true)).unwrap();
    assert_eq!(first[1..4], again[1..4]);
    let mut other = syn.clone();
    other[40] ^= 1; // another source port
    let fix = u16::from_be_bytes([other[56], other[57]]).wrapping_sub(0x0100);
    other[56..58].copy_from_slice(&fix.to_be_bytes());
    let second = answer(&other, probe_ip(true)).expect("the other SYN is plain too");
    assert_ne!(first[1..4], second[1..4]);
}

#[test]
fn ethernet_addresses_are_turned_around_and_vlan_tags_stay() {
    let src: IpAddr = "198.51.100.2".parse().unwrap();
    let dst: IpAddr = "198.51.100.1".parse().unwrap();
    let frame = Craft::tcp(src, dst, 22, SYN).with_vlan(0x8100, 7).build();
    let probe = Probe {
        l3: 18,
        l4: 38,
        ..probe_eth(false)
    };
    let reset = answer(&frame, probe).expect("answered");
    assert_eq!(reset.len(), 18 + 40);
    assert_eq!(reset[0..6], frame[6..12]);
    assert_eq!(reset[6..12], frame[0..6]);
    assert_eq!(reset[12..18], frame[12..18], "the tag and the ethertype");
    assert_eq!(reset[18 + 12..18 + 16], [198, 51, 100, 1]);
    assert_eq!(reset[18 + 16..18 + 20], [198, 51, 100, 2]);
}

#[test]
fn the_acknowledgement_counts_the_syn_and_a_fin() {
    let src: IpAddr = "198.51.100.2".parse().unwrap();
    let dst: IpAddr = "198.51.100.1".parse().unwrap();
    let plain = answer(&Craft::tcp(src, dst, 22, SYN).build(), probe_eth(false)).unwrap();
    let with_fin = answer(
        &Craft::tcp(src, dst, 22, SYN | FIN).build(),
        probe_eth(false),
    )
    .unwrap();
    let urgent = answer(
        &Craft::tcp(src, dst, 22, SYN | URG).build(),
        probe_eth(false),
    )
    .unwrap();
    let ack = |reset: &[u8]| u32::from_be_bytes(reset[34 + 8..34 + 12].try_into().unwrap());
    // Craft's SYNs carry sequence number 0x10000000.
    assert_eq!(ack(&plain), 0x1000_0001);
    assert_eq!(ack(&with_fin), 0x1000_0002);
    assert_eq!(ack(&urgent), 0x1000_0001);
}

#[test]
fn what_is_not_a_plain_syn_is_left_to_the_host() {
    let src: IpAddr = "198.51.100.2".parse().unwrap();
    let dst: IpAddr = "198.51.100.1".parse().unwrap();
    let src6: IpAddr = "2001:db8::2".parse().unwrap();
    let dst6: IpAddr = "2001:db8::1".parse().unwrap();
    let syn = Craft::tcp(src, dst, 22, SYN).build();
    let mut bad_tcp_checksum = syn.clone();
    bad_tcp_checksum[34 + 17] ^= 1;
    let mut bad_ip_checksum = syn.clone();
    bad_ip_checksum[14 + 11] ^= 1;
    let with_options = Craft::tcp(src, dst, 22, SYN).with_ipv4_options(&[0x94, 4, 0, 0]);
    let options_probe = Probe {
        l4: 14 + 24,
        ..probe_eth(false)
    };
    let fragment = Craft::tcp(src, dst, 22, SYN).with_fragment(0, true).build();
    let extension = Craft::tcp(src6, dst6, 22, SYN).with_extension(0, &[1, 4, 0, 0, 0, 0]);
    let extension_probe = Probe {
        l4: 54 + 8,
        ..probe_eth(true)
    };
    let multicast_source = Craft::tcp("224.0.0.9".parse().unwrap(), dst, 22, SYN).build();
    let loopback_source = Craft::tcp("127.0.0.1".parse().unwrap(), dst, 22, SYN).build();
    let unspecified6 = Craft::tcp("::".parse().unwrap(), dst6, 22, SYN).build();
    let multicast6 = Craft::tcp("ff02::1".parse().unwrap(), dst6, 22, SYN).build();
    let cases: [(&str, Vec<u8>, Probe); 12] = [
        ("a bad TCP checksum", bad_tcp_checksum, probe_eth(false)),
        (
            "a bad IPv4 header checksum",
            bad_ip_checksum,
            probe_eth(false),
        ),
        ("IPv4 options", with_options.build(), options_probe),
        ("a fragment", fragment, probe_eth(false)),
        (
            "an IPv6 extension header",
            extension.build(),
            extension_probe,
        ),
        (
            "a SYN-ACK",
            Craft::tcp(src, dst, 22, SYN | ACK).build(),
            probe_eth(false),
        ),
        (
            "a SYN-RST",
            Craft::tcp(src, dst, 22, SYN | RST).build(),
            probe_eth(false),
        ),
        (
            "a bare ACK",
            Craft::tcp(src, dst, 22, ACK).build(),
            probe_eth(false),
        ),
        ("a multicast source", multicast_source, probe_eth(false)),
        ("a loopback source", loopback_source, probe_eth(false)),
        ("an unspecified IPv6 source", unspecified6, probe_eth(true)),
        ("a multicast IPv6 source", multicast6, probe_eth(true)),
    ];
    for (what, frame, probe) in cases {
        assert_eq!(reset(frame.as_slice(), probe), None, "{what}");
    }
    let with_payload = Craft::tcp(src, dst, 22, SYN).build_with_payload(&{
        let mut tcp = Craft::tcp(src, dst, 22, SYN).transport_bytes();
        tcp.extend_from_slice(b"data");
        tcp
    });
    // The checksum no longer adds up either, but the payload alone is reason enough.
    assert_eq!(reset(&with_payload, probe_eth(false)), None, "a payload");
    let udp = Craft::udp(src, dst, 51820).build();
    let probe = Probe {
        tcp: 0,
        ..probe_eth(false)
    };
    assert_eq!(reset(&udp, probe), None, "a datagram");
}

#[test]
fn a_reset_is_never_longer_than_the_syn_it_answers() {
    let src: IpAddr = "198.51.100.2".parse().unwrap();
    let dst: IpAddr = "198.51.100.1".parse().unwrap();
    for (frame, probe, ipv6) in [
        (
            Craft::tcp(src, dst, 22, SYN).build(),
            probe_eth(false),
            false,
        ),
        (
            Craft::tcp(
                "2001:db8::2".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                22,
                SYN,
            )
            .build(),
            probe_eth(true),
            true,
        ),
    ] {
        let reset = reset(&frame, probe).unwrap();
        assert!(14 + reset.len as usize <= frame.len(), "ipv6 {ipv6}");
    }
}
