//! Broadcast and multicast, at layer 2 and layer 3. A knock reaches one host or none: anything
//! sent to many counts for nothing and breaks no attempt. Sent to the host's own address behind
//! a broadcast or multicast MAC, it is dropped at a knock port like any knock; sent to a group
//! address, it is not the host's, and passes. The gate judges it all the same.

use std::net::{IpAddr, Ipv4Addr};

use knock_common::counter::Counter::KnockAccepted;
use knock_common::craft::ETH_BROADCAST;

use super::*;

const IPV4_MULTICAST_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
const IPV6_MULTICAST_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];

fn to4(dst: [u8; 4], port: u16) -> Craft {
    Craft::tcp(CLIENT4, IpAddr::V4(Ipv4Addr::from(dst)), port, SYN)
}

fn to6(dst: &str, port: u16) -> Craft {
    Craft::tcp(CLIENT6, dst.parse().unwrap(), port, SYN)
}

pub fn cases() -> Vec<Case> {
    let to_host_address: [(&str, Craft); 2] = [
        (
            "to the Ethernet broadcast address",
            syn4(K1).with_eth_dst(ETH_BROADCAST),
        ),
        (
            "to an Ethernet multicast address",
            syn4(K1).with_eth_dst(IPV4_MULTICAST_MAC),
        ),
    ];
    let to_group: [(&str, Craft); 6] = [
        ("to 255.255.255.255", to4([255, 255, 255, 255], K1)),
        ("to 224.0.0.1", to4([224, 0, 0, 1], K1)),
        ("to 239.255.255.250", to4([239, 255, 255, 250], K1)),
        ("to class E 240.0.0.1", to4([240, 0, 0, 1], K1)),
        (
            "to ff02::1",
            to6("ff02::1", K1).with_eth_dst(IPV6_MULTICAST_MAC),
        ),
        ("to ff05::2 behind a unicast MAC", to6("ff05::2", K1)),
    ];
    let mut cases = Vec::new();
    for (name, craft) in to_host_address {
        cases.push(
            Case::from_source(
                &format!("a knock {name} is dropped and never counts"),
                CLIENT4,
            )
            .send(craft.build(), DROP)
            .knock_port_dropped(1),
        );
    }
    for (name, craft) in to_group {
        let source = if craft.src == CLIENT6 {
            CLIENT6
        } else {
            CLIENT4
        };
        cases.push(
            Case::from_source(
                &format!("a knock {name} is not the host's: it passes and never counts"),
                source,
            )
            .send(craft.build(), PASS),
        );
    }
    cases.extend([
        Case::v4("a UDP knock to a multicast group passes and never counts")
            .on(&UDP)
            .send(
                Craft::udp(CLIENT4, IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)), U1)
                    .with_eth_dst(IPV4_MULTICAST_MAC)
                    .build(),
                PASS,
            ),
        Case::v4("a SYN to SSH sent to the Ethernet broadcast address meets the gate")
            .send(syn4(SSH).with_eth_dst(ETH_BROADCAST).build(), DROP)
            .gate_dropped(1),
        Case::v4("a SYN to SSH sent to a multicast group meets the gate")
            .send(to4([224, 0, 0, 1], SSH).build(), DROP)
            .gate_dropped(1),
        Case::v6("an IPv6 SYN to SSH sent to ff02::1 meets the gate")
            .send(to6("ff02::1", SSH).build(), DROP)
            .gate_dropped(1),
        Case::v4("strict: a broadcast SYN elsewhere between knocks leaves the attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(syn4(WEB).with_eth_dst(ETH_BROADCAST).build(), PASS)
            .first_knock_counted(),
        Case::v4("strict: a multicast datagram between knocks leaves the attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(
                Craft::udp(CLIENT4, IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)), 5353).build(),
                PASS,
            )
            .first_knock_counted(),
        Case::v4("a broadcast wrong knock between knocks leaves the attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(syn4(K3).with_eth_dst(ETH_BROADCAST).build(), DROP)
            .first_knock_counted()
            .knock_port_dropped(1),
        Case::v4("a broadcast last knock opens nothing")
            .send_each([syn4(K1).build(), syn4(K2).build()], DROP)
            .send(syn4(K3).with_eth_dst(ETH_BROADCAST).build(), DROP)
            .stage(2)
            .knock_port_dropped(3)
            .counts(&[(KnockAccepted, 2)]),
    ]);
    cases
}
