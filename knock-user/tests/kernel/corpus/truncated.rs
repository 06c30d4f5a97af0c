//! Frames cut short at every layer, transports shorter than their headers, and transport
//! headers with bogus fields. Whatever is cut where a port could hide is malformed and dropped;
//! nothing cut ever counts as a knock.

use super::*;

const PAD_N: &[u8] = &[1, 4, 0, 0, 0, 0];

/// The frame with its Ethernet type replaced.
fn ethertype(frame: Vec<u8>, kind: u16) -> Vec<u8> {
    patch(frame, 12, &kind.to_be_bytes())
}

pub fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case::v4("an Ethernet header announcing IPv4 and nothing else is malformed")
            .send(cut(syn4(SSH).build(), L3), DROP)
            .malformed(1),
        Case::v6("an Ethernet header announcing IPv6 and nothing else is malformed")
            .send(cut(syn6(SSH).build(), L3), DROP)
            .malformed(1),
        Case::v4("an Ethernet header announcing ARP and nothing else passes")
            .send(ethertype(cut(syn4(SSH).build(), L3), 0x0806), PASS),
        Case::v4("an Ethernet header announcing a VLAN tag and nothing else passes")
            .send(cut(syn4(SSH).with_vlan(0x8100, 1).build(), L3), PASS),
    ];
    // Frames cut by the wire: the IP header still claims the whole packet.
    let v4_cuts = [
        ("inside the IPv4 header", L3 + 1),
        ("in the middle of the IPv4 header", L3 + 10),
        ("one byte before the end of the IPv4 header", L3 + 19),
        ("right after the IPv4 header", L4_V4),
        ("inside the TCP ports", L4_V4 + 3),
        ("before the TCP flags", L4_V4 + 13),
        ("one byte before the end of the TCP header", L4_V4 + 19),
    ];
    for (name, len) in v4_cuts {
        cases.push(
            Case::v4(&format!("a SYN to SSH cut {name} is malformed"))
                .send(cut(syn4(SSH).build(), len), DROP)
                .malformed(1),
        );
    }
    for (name, len) in [
        ("inside the fixed IPv6 header", L3 + 20),
        ("inside TCP", L4_V6 + 10),
    ] {
        cases.push(
            Case::v6(&format!("an IPv6 SYN to SSH cut {name} is malformed"))
                .send(cut(syn6(SSH).build(), len), DROP)
                .malformed(1),
        );
    }
    cases.extend([
        Case::v4("a knock cut before its TCP flags is malformed and never counts")
            .send(cut(syn4(K1).build(), L4_V4 + 13), DROP)
            .malformed(1),
        Case::v4("a UDP datagram cut inside its header is malformed")
            .on(&UDP)
            .send(cut(udp4(WIREGUARD).build(), L4_V4 + 5), DROP)
            .malformed(1),
        Case::v6("an IPv6 UDP datagram cut inside its header is malformed")
            .on(&UDP)
            .send(cut(udp6(U1).build(), L4_V6 + 7), DROP)
            .malformed(1),
        Case::v6("an IPv6 SYN cut inside its hop-by-hop header is malformed")
            .send(
                cut(syn6(SSH).with_extension(0, PAD_N).build(), L4_V6 + 4),
                DROP,
            )
            .malformed(1),
        Case::v4("a tagged SYN to SSH cut inside TCP is malformed")
            .send(
                cut(syn4(SSH).with_vlan(0x8100, 7).build(), L3_TAGGED + 20 + 9),
                DROP,
            )
            .malformed(1),
        // Transports shorter than their headers, with IP lengths that agree.
        Case::v4("a knock of 13 TCP bytes is malformed")
            .send(transport_cut(&syn4(K1), 13), DROP)
            .malformed(1),
        Case::v6("an IPv6 SYN to SSH of 13 TCP bytes is malformed")
            .send(transport_cut(&syn6(SSH), 13), DROP)
            .malformed(1),
        Case::v4("a TCP packet without a byte of TCP is malformed")
            .send(transport_cut(&syn4(SSH), 0), DROP)
            .malformed(1),
        // The classifier needs the ports and flags, no more; the knock port drops it anyway.
        Case::v6("an IPv6 knock of 14 TCP bytes counts")
            .send(transport_cut(&syn6(K1), 14), DROP)
            .first_knock_counted(),
        Case::v4("a UDP knock of 7 bytes is malformed")
            .on(&UDP)
            .send(transport_cut(&udp4(U1), 7), DROP)
            .malformed(1),
        Case::v6("an IPv6 datagram of 7 bytes to a protected UDP port is malformed")
            .on(&UDP)
            .send(transport_cut(&udp6(WIREGUARD), 7), DROP)
            .malformed(1),
        Case::v4("a UDP packet without a byte of UDP is malformed")
            .on(&UDP)
            .send(transport_cut(&udp4(WIREGUARD), 0), DROP)
            .malformed(1),
        Case::v4("an empty UDP knock of 8 header bytes counts")
            .on(&UDP)
            .send(transport_cut(&udp4(U1), 8), DROP)
            .first_knock_counted(),
        // Bogus transport fields.
        Case::v4("a knock with a TCP data offset of 0 is malformed")
            .send(set_data_offset(syn4(K1).build(), L4_V4, 0), DROP)
            .malformed(1),
        Case::v4("a knock with a TCP data offset of 4 is malformed")
            .send(set_data_offset(syn4(K1).build(), L4_V4, 4), DROP)
            .malformed(1),
        Case::v4("a SYN to SSH with a TCP data offset of 4 is malformed")
            .send(set_data_offset(syn4(SSH).build(), L4_V4, 4), DROP)
            .malformed(1),
        Case::v6("an IPv6 SYN to SSH with a TCP data offset of 2 is malformed")
            .send(set_data_offset(syn6(SSH).build(), L4_V6, 2), DROP)
            .malformed(1),
        // A data offset past the segment makes the host drop it; knock needs only 14 bytes.
        Case::v4("a SYN to SSH whose data offset runs past the segment meets the gate")
            .send(set_data_offset(syn4(SSH).build(), L4_V4, 15), DROP)
            .gate_dropped(1),
        Case::v4("a knock whose data offset runs past the segment counts")
            .send(set_data_offset(syn4(K1).build(), L4_V4, 15), DROP)
            .first_knock_counted(),
        Case::v4("a UDP knock whose length field says 0 counts")
            .on(&UDP)
            .send(patch(udp4(U1).build(), L4_V4 + 4, &[0, 0]), DROP)
            .first_knock_counted(),
        Case::v4("a datagram to a protected UDP port whose length field says 65535 meets the gate")
            .on(&UDP)
            .send(
                patch(udp4(WIREGUARD).build(), L4_V4 + 4, &[0xff, 0xff]),
                DROP,
            )
            .gate_dropped(1),
    ]);
    cases
}
