//! Whole knock sequences carried in every shape: those the host would accept open the door, and
//! the door then admits a plain SYN to SSH; fragments, malformed frames and frames to many hosts
//! never complete a sequence.

use knock_common::counter::Counter::{GateAllowed, KnockAccepted};
use knock_common::segment::tcp_flags::ACK;

use super::fragments::FIRST_FRAGMENT_KNOCK;
use super::ipv6::{EIGHT_HEADERS, V4_MAPPED, behind_options};
use super::vlan::THIRD_TAG;
use super::*;

const PAD_N: &[u8] = &[1, 4, 0, 0, 0, 0];
const Q: u16 = 0x8100;
const AD: u16 = 0x88a8;

/// A case where the three default knocks, each shaped by `shape`, open the door.
fn opens(name: &str, shape: impl Fn(u16) -> Craft) -> Case {
    let source = if shape(K1).src == CLIENT6 {
        CLIENT6
    } else {
        CLIENT4
    };
    Case::from_source(&format!("knocks {name} open the door"), source)
        .send_each(knocks(shape), DROP)
        .sequence_opens_the_door()
}

/// The first two default knocks, plain, then `last` as the third.
fn two_then(name: &str, last: Vec<u8>) -> Case {
    Case::v4(&format!("two knocks then {name} open nothing"))
        .send_each([syn4(K1).build(), syn4(K2).build()], DROP)
        .send(last, DROP)
        .stage(2)
        .knock_port_dropped(2)
        .counts(&[(KnockAccepted, 2)])
}

fn udp_knocks(shape: impl Fn(u16) -> Craft) -> Vec<Vec<u8>> {
    UDP_KNOCKS.iter().map(|&port| shape(port).build()).collect()
}

pub fn cases() -> Vec<Case> {
    let mapped: IpAddr = "::ffff:198.51.100.2".parse().unwrap();
    let mapped_knocks = knocks(|port| Craft::tcp(mapped, SERVER6, port, SYN));
    vec![
        opens("over plain IPv4", syn4),
        opens("over plain IPv6", syn6),
        opens("behind an 802.1Q tag", |port| syn4(port).with_vlan(Q, 100)),
        opens("behind an 802.1ad tag", |port| {
            syn4(port).with_vlan(AD, 100)
        }),
        opens("behind 802.1ad over 802.1Q", |port| {
            tagged(syn4(port), &[(AD, 100), (Q, 200)])
        }),
        opens("behind two priority tags", |port| {
            tagged(syn4(port), &[(Q, 0), (Q, 0)])
        }),
        opens("with IPv4 options of 4, 12 and 40 bytes", |port| {
            let length = match port {
                K1 => 4,
                K2 => 12,
                _ => 40,
            };
            syn4(port).with_ipv4_options(&vec![1; length])
        }),
        opens("behind an IPv6 hop-by-hop header", |port| {
            syn6(port).with_extension(0, PAD_N)
        }),
        opens(
            "behind IPv6 hop-by-hop, routing and destination options",
            |port| {
                syn6(port)
                    .with_extension(0, PAD_N)
                    .with_extension(43, &[0; 6])
                    .with_extension(60, PAD_N)
            },
        ),
        opens("behind an IPv6 authentication header", |port| {
            syn6(port).with_extension(51, &[0; 10])
        }),
        opens("as atomic IPv6 fragments", |port| {
            syn6(port).with_fragment(0, false)
        }),
        opens(
            "over IPv6 behind two tags and destination options",
            |port| tagged(syn6(port), &[(AD, 1), (Q, 2)]).with_extension(60, PAD_N),
        ),
        opens("over IPv4 without DF", |port| {
            syn4(port).with_fragment(0, false)
        }),
        opens("behind eight IPv6 extension headers", |port| {
            behind_options(syn6(port), 8)
        })
        .suspected_bug(EIGHT_HEADERS),
        Case::v4("knocks in three shapes, plain, tagged, with options, open the door")
            .send(syn4(K1).build(), DROP)
            .send(syn4(K2).with_vlan(Q, 100).build(), DROP)
            .send(syn4(K3).with_ipv4_options(&[148, 4, 0, 0]).build(), DROP)
            .sequence_opens_the_door(),
        Case::v4("UDP knocks open the door to a protected UDP port")
            .on(&UDP)
            .send_each(udp_knocks(udp4), DROP)
            .send(udp4(WIREGUARD).build(), PASS)
            .sequence_opens_the_door()
            .counts(&[(GateAllowed, 1)]),
        Case::v4("UDP knocks behind an 802.1Q tag open the door")
            .on(&UDP)
            .send_each(udp_knocks(|port| udp4(port).with_vlan(Q, 100)), DROP)
            .sequence_opens_the_door(),
        Case::v6("IPv6 UDP knocks behind destination options open the door")
            .on(&UDP)
            .send_each(
                udp_knocks(|port| udp6(port).with_extension(60, PAD_N)),
                DROP,
            )
            .sequence_opens_the_door(),
        Case::v4("two IPv4 knocks and an IPv6 one open nothing: they are two sources")
            .send_each([syn4(K1).build(), syn4(K2).build(), syn6(K3).build()], DROP)
            .stage(2)
            .knock_port_dropped(3)
            .counts(&[(KnockAccepted, 2)]),
        Case::v4("knocks as first IPv4 fragments open nothing")
            .send_each(knocks(|port| syn4(port).with_fragment(0, true)), DROP)
            .knock_port_dropped(3)
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v6("knocks as first IPv6 fragments open nothing")
            .send_each(knocks(|port| syn6(port).with_fragment(0, true)), DROP)
            .knock_port_dropped(3)
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v4("knocks behind three priority tags open nothing")
            .send_each(knocks(|port| tagged(syn4(port), &[(Q, 0); 3])), DROP)
            .malformed(3)
            .suspected_bug(THIRD_TAG),
        two_then(
            "one with a header length of 4 words",
            set_ihl(syn4(K3).build(), L3, 4),
        )
        .malformed(1),
        two_then(
            "one cut before its TCP flags",
            cut(syn4(K3).build(), L4_V4 + 13),
        )
        .malformed(1),
        two_then(
            "one with a TCP data offset of 4",
            set_data_offset(syn4(K3).build(), L4_V4, 4),
        )
        .malformed(1),
        two_then("one as a tiny TCP fragment", {
            syn4(K3)
                .with_fragment(1, false)
                .build_with_payload(&[0; 16])
        })
        .malformed(1),
        two_then("a SYN+ACK", tcp4(K3, SYN | ACK).build()).knock_port_dropped(1),
        Case::v6("two knocks then one behind nine extension headers open nothing")
            .send_each([syn6(K1).build(), syn6(K2).build()], DROP)
            .send(behind_options(syn6(K3), 9).build(), DROP)
            .stage(2)
            .knock_port_dropped(2)
            .counts(&[(KnockAccepted, 2)])
            .malformed(1),
        Case::v4("two UDP knocks then a truncated one open nothing")
            .on(&UDP)
            .send_each([udp4(U1).build(), udp4(U2).build()], DROP)
            .send(transport_cut(&udp4(U3), 7), DROP)
            .stage(2)
            .knock_port_dropped(2)
            .counts(&[(KnockAccepted, 2)])
            .malformed(1),
        Case::v4("two UDP knocks then a first fragment open nothing")
            .on(&UDP)
            .send_each([udp4(U1).build(), udp4(U2).build()], DROP)
            .send(udp4(U3).with_fragment(0, true).build(), DROP)
            .stage(2)
            .knock_port_dropped(3)
            .counts(&[(KnockAccepted, 2)])
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v6("-4: IPv6 knocks open nothing")
            .on(&IPV4_ONLY)
            .send_each(knocks(syn6), DROP)
            .knock_port_dropped(3),
        Case::v4("IPv6 knocks from an IPv4-mapped source open nothing for the IPv4 address")
            .send_each(mapped_knocks.clone(), DROP)
            .malformed(3)
            .suspected_bug(V4_MAPPED),
        Case::v4("-4: IPv6 knocks from an IPv4-mapped source open nothing")
            .on(&IPV4_ONLY)
            .send_each(mapped_knocks, DROP)
            .malformed(3)
            .suspected_bug(V4_MAPPED),
    ]
}
