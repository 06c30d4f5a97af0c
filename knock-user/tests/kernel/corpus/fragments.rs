//! IPv4 and IPv6 fragments. A first fragment carries the ports, so the gate judges it, but it is
//! never a knock; a later fragment carries no header and passes; a fragment that could rewrite the
//! TCP header after the first was judged is malformed; an atomic fragment is a whole packet.

use knock_common::counter::Counter::{GateAllowed, KnockAccepted};
use knock_common::segment::tcp_flags::ACK;

use super::*;

pub const FIRST_FRAGMENT_KNOCK: &str = "a first fragment to a knock port passes: the program \
     returns right after the gate for fragments, before the knock-port drop, so the reassembled \
     SYN reaches the host, which answers it (RST, or ICMP for UDP); knock ports then look closed \
     to a fragmenting scanner (nmap -f) instead of filtered. Shown on veth: a SYN to 4438 in two \
     fragments got a RST with knock-user run attached. It should be dropped (not counted)";

pub const STACKED_FRAGMENT_HEADERS: &str = "an atomic fragment header after a first-fragment \
     header clears the fragment mark (`more_fragments` is assigned at each fragment header, not \
     accumulated), so the first fragment of a datagram counts as a whole packet and its knock \
     counts; Linux queues the packet for reassembly at the first header, so it is a fragment";

const PAD_N: &[u8] = &[1, 4, 0, 0, 0, 0];

/// An IPv6 fragment header as an extension, to place it anywhere in a chain.
fn fragment_header(offset_units: u16, more: bool) -> Vec<u8> {
    let field = (offset_units << 3) | u16::from(more);
    let mut body = field.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 1]);
    body
}

/// A later fragment: no transport header, just data from the middle of the datagram.
fn later(craft: Craft, offset_units: u16, more: bool) -> Vec<u8> {
    craft
        .with_fragment(offset_units, more)
        .build_with_payload(&[0x42; 16])
}

pub fn cases() -> Vec<Case> {
    vec![
        Case::v4("the first IPv4 fragment of a knock is dropped and never counts")
            .send(syn4(K1).with_fragment(0, true).build(), DROP)
            .knock_port_dropped(1)
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v4("the first IPv4 fragment of a SYN to SSH meets the gate")
            .send(syn4(SSH).with_fragment(0, true).build(), DROP)
            .gate_dropped(1),
        Case::v4("the first IPv4 fragment of a SYN to SSH passes an open door")
            .send_each(knocks(syn4), DROP)
            .send(syn4(SSH).with_fragment(0, true).build(), PASS)
            .sequence_opens_the_door()
            .counts(&[(GateAllowed, 1)]),
        Case::v4("the first fragment of a datagram to a protected UDP port meets the gate")
            .on(&UDP)
            .send(udp4(WIREGUARD).with_fragment(0, true).build(), DROP)
            .gate_dropped(1),
        Case::v4("the first fragment of a UDP knock is dropped and never counts")
            .on(&UDP)
            .send(udp4(U1).with_fragment(0, true).build(), DROP)
            .knock_port_dropped(1)
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v4("a later IPv4 fragment passes").send(later(syn4(SSH), 3, true), PASS),
        Case::v4("the last IPv4 fragment passes").send(later(syn4(SSH), 185, false), PASS),
        Case::v4("a later fragment of a knock's datagram passes")
            .send(later(syn4(K1), 3, false), PASS),
        Case::v4("a TCP fragment 8 bytes in, over the ports and flags, is malformed")
            .send(later(syn4(SSH), 1, false), DROP)
            .malformed(1),
        Case::v4("a TCP fragment 16 bytes in, over the checksum, is malformed")
            .send(later(syn4(SSH), 2, true), DROP)
            .malformed(1),
        Case::v4("a TCP fragment 24 bytes in, past the header, passes")
            .send(later(syn4(SSH), 3, false), PASS),
        Case::v4("a UDP fragment 8 bytes in, past the UDP header, passes")
            .on(&UDP)
            .send(later(udp4(WIREGUARD), 1, false), PASS),
        Case::v4("an unfragmented IPv4 knock without DF counts")
            .send(syn4(K1).with_fragment(0, false).build(), DROP)
            .first_knock_counted(),
        Case::v4("a first IPv4 fragment holding 8 bytes of TCP is malformed")
            .send(transport_cut(&syn4(SSH).with_fragment(0, true), 8), DROP)
            .malformed(1),
        Case::v4("a first IPv4 fragment with ACK to SSH passes")
            .send(tcp4(SSH, ACK).with_fragment(0, true).build(), PASS),
        // Fragments never count as knocks, neither for an attempt nor against it.
        Case::v4("strict: the first fragment of a SYN elsewhere leaves an attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(syn4(WEB).with_fragment(0, true).build(), PASS)
            .first_knock_counted(),
        Case::v6("the first IPv6 fragment of a knock is dropped and never counts")
            .send(syn6(K1).with_fragment(0, true).build(), DROP)
            .knock_port_dropped(1)
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v6("the first IPv6 fragment of a SYN to SSH meets the gate")
            .send(syn6(SSH).with_fragment(0, true).build(), DROP)
            .gate_dropped(1),
        Case::v6("a later IPv6 fragment passes").send(later(syn6(SSH), 3, true), PASS),
        // Linux wants the whole header chain in the first fragment and drops overlaps, so an
        // IPv6 fragment cannot rewrite a judged header.
        Case::v6("a later IPv6 fragment 8 bytes in passes").send(later(syn6(SSH), 1, false), PASS),
        Case::v6("an atomic IPv6 fragment of a knock is a whole packet and counts")
            .send(syn6(K1).with_fragment(0, false).build(), DROP)
            .first_knock_counted(),
        Case::v6("an atomic IPv6 fragment of a SYN to SSH meets the gate")
            .send(syn6(SSH).with_fragment(0, false).build(), DROP)
            .gate_dropped(1),
        Case::v6("a first IPv6 fragment holding 8 bytes of TCP is malformed")
            .send(transport_cut(&syn6(SSH).with_fragment(0, true), 8), DROP)
            .malformed(1),
        Case::v6("a first fragment header inside a chain keeps a knock from counting")
            .send(
                syn6(K1)
                    .with_extension(0, PAD_N)
                    .with_extension(44, &fragment_header(0, true))
                    .with_extension(60, PAD_N)
                    .build(),
                DROP,
            )
            .knock_port_dropped(1)
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v6("a first fragment header inside a chain still meets the gate")
            .send(
                syn6(SSH)
                    .with_extension(0, PAD_N)
                    .with_extension(44, &fragment_header(0, true))
                    .with_extension(60, PAD_N)
                    .build(),
                DROP,
            )
            .gate_dropped(1),
        Case::v6("a first fragment header followed by an atomic one keeps a knock from counting")
            .send(
                syn6(K1)
                    .with_extension(44, &fragment_header(0, true))
                    .with_extension(44, &fragment_header(0, false))
                    .build(),
                DROP,
            )
            .knock_port_dropped(1)
            .suspected_bug(STACKED_FRAGMENT_HEADERS),
        Case::v6("an atomic fragment header followed by a first one keeps a knock from counting")
            .send(
                syn6(K1)
                    .with_extension(44, &fragment_header(0, false))
                    .with_extension(44, &fragment_header(0, true))
                    .build(),
                DROP,
            )
            .knock_port_dropped(1)
            .suspected_bug(FIRST_FRAGMENT_KNOCK),
        Case::v6("a later fragment header inside a chain passes").send(
            Craft::new(
                CLIENT6,
                SERVER6,
                knock_common::craft::Transport::Raw {
                    proto: 6,
                    payload: vec![0x42; 16],
                },
            )
            .with_extension(0, PAD_N)
            .with_extension(44, &fragment_header(3, false))
            .build(),
            PASS,
        ),
        Case::v6("an atomic fragment header inside a chain leaves a knock a knock")
            .send(
                syn6(K1)
                    .with_extension(0, PAD_N)
                    .with_extension(44, &fragment_header(0, false))
                    .with_extension(60, PAD_N)
                    .build(),
                DROP,
            )
            .stage(1)
            .counts(&[(KnockAccepted, 1)])
            .knock_port_dropped(1),
    ]
}
