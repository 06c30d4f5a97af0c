//! What is not TCP or UDP over IP on this device: ARP, ICMP, tunnels, other transports, other
//! Ethernet types. It cannot open a TCP connection or reach a UDP socket here, so it passes, and
//! it neither counts nor breaks an attempt.

use knock_common::craft::{ETH_BROADCAST, ETH_DST, ETH_SRC, Transport};

use super::*;

fn ethernet(dst: [u8; 6], kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&ETH_SRC);
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn arp(operation: u16) -> Vec<u8> {
    let mut payload = vec![0, 1, 0x08, 0x00, 6, 4];
    payload.extend_from_slice(&operation.to_be_bytes());
    payload.extend_from_slice(&ETH_SRC);
    payload.extend_from_slice(&[198, 51, 100, 2]);
    payload.extend_from_slice(&[0; 6]);
    payload.extend_from_slice(&[198, 51, 100, 1]);
    let dst = if operation == 1 {
        ETH_BROADCAST
    } else {
        ETH_DST
    };
    ethernet(dst, 0x0806, &payload)
}

fn raw4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let transport = Transport::Raw {
        proto,
        payload: payload.to_vec(),
    };
    Craft::new(CLIENT4, SERVER4, transport).build()
}

/// The IP packet of `frame`, without its Ethernet header: what a tunnel would carry.
fn inner(frame: Vec<u8>) -> Vec<u8> {
    frame[L3..].to_vec()
}

/// An SCTP INIT chunk to `port`, as a scanner sends it (checksum left zero).
fn sctp_init(port: u16) -> Vec<u8> {
    let mut packet = 40000u16.to_be_bytes().to_vec();
    packet.extend_from_slice(&port.to_be_bytes());
    packet.extend_from_slice(&[0; 8]);
    packet.extend_from_slice(&[1, 0, 0, 20]);
    packet.extend_from_slice(&[0; 16]);
    packet
}

pub fn cases() -> Vec<Case> {
    let mut snap_ip = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    snap_ip.extend_from_slice(&inner(syn4(SSH).build()));
    let mut pppoe = vec![0x11, 0x00, 0x00, 0x01, 0x00, 0x2a, 0x00, 0x21];
    pppoe.extend_from_slice(&inner(syn4(SSH).build()));
    let mut mpls = vec![0x00, 0x01, 0x01, 0x40];
    mpls.extend_from_slice(&inner(syn4(SSH).build()));
    let solicit = Craft::new(
        CLIENT6,
        "ff02::1:ff00:1".parse().unwrap(),
        Transport::Raw {
            proto: 58,
            payload: vec![135, 0, 0, 0, 0, 0, 0, 0],
        },
    )
    .with_eth_dst([0x33, 0x33, 0xff, 0, 0, 1])
    .build();
    vec![
        Case::v4("an ARP request passes").send(arp(1), PASS),
        Case::v4("an ARP reply passes").send(arp(2), PASS),
        Case::v4("an ICMP echo request passes").send(super::ipv4::icmp_echo(), PASS),
        Case::v6("an ICMPv6 neighbour solicitation passes").send(solicit, PASS),
        Case::v4("IGMP passes").send(raw4(2, &[0x16, 0, 0, 0, 224, 0, 0, 251]), PASS),
        Case::v4("GRE passes").send(raw4(47, &[0, 0, 0x08, 0x00]), PASS),
        // Linux decapsulates only on a tunnel device configured for the peer.
        Case::v4("IP in IP carrying a SYN to SSH passes")
            .send(raw4(4, &inner(syn4(SSH).build())), PASS),
        Case::v4("IPv6 in IPv4 carrying a SYN to SSH passes")
            .send(raw4(41, &inner(syn6(SSH).build())), PASS),
        Case::v4("an SCTP INIT to port 22 passes").send(raw4(132, &sctp_init(SSH)), PASS),
        Case::v4("DCCP to port 22 passes").send(raw4(33, &sctp_init(SSH)), PASS),
        Case::v4("UDP-Lite to a knock port passes").send(raw4(136, &sctp_init(K1)), PASS),
        Case::v4("IPv4 ESP passes").send(raw4(50, &[0; 24]), PASS),
        Case::v4("IPv4 AH passes: knock does not look behind it").send(
            raw4(
                51,
                &[6, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            PASS,
        ),
        Case::v4("LLDP passes").send(ethernet(ETH_DST, 0x88cc, &[0; 46]), PASS),
        Case::v4("an 802.3 frame with SNAP-encapsulated IP passes")
            .send(ethernet(ETH_DST, snap_ip.len() as u16, &snap_ip), PASS),
        Case::v4("a PPPoE session frame carrying a SYN to SSH passes")
            .send(ethernet(ETH_DST, 0x8864, &pppoe), PASS),
        Case::v4("an MPLS frame carrying a SYN to SSH passes")
            .send(ethernet(ETH_DST, 0x8847, &mpls), PASS),
        Case::v4("an unknown Ethernet type passes").send(ethernet(ETH_DST, 0x1234, &[0; 46]), PASS),
        Case::v4("strict: ICMP between knocks leaves the attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(super::ipv4::icmp_echo(), PASS)
            .first_knock_counted(),
        Case::v4("strict: ARP between knocks leaves the attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(arp(1), PASS)
            .first_knock_counted(),
        Case::v4("strict: an SCTP INIT between knocks leaves the attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(raw4(132, &sctp_init(WEB)), PASS)
            .first_knock_counted(),
    ]
}
