//! IPv4: options of every length, and headers whose fields disagree with each other or with the
//! frame.

use std::net::Ipv4Addr;

use super::*;

/// Options of increasing length, as real stacks write them; `build` pads to whole words.
fn options() -> Vec<(&'static str, Vec<u8>)> {
    let record_route = |slots: usize| {
        let mut option = vec![7, (3 + 4 * slots) as u8, 4];
        option.resize(3 + 4 * slots, 0);
        option
    };
    let mut timestamp = vec![68, 40, 5, 0];
    timestamp.resize(40, 0);
    vec![
        ("a router alert (4 bytes)", vec![148, 4, 0, 0]),
        ("three NOPs and an end of list (4 bytes)", vec![1, 1, 1, 0]),
        ("eight NOPs (8 bytes)", vec![1; 8]),
        ("a record route of two slots (12 bytes)", record_route(2)),
        ("a record route of four slots (20 bytes)", record_route(4)),
        ("a record route of eight slots (36 bytes)", record_route(8)),
        ("a timestamp filling the header (40 bytes)", timestamp),
    ]
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, option) in options() {
        cases.push(
            Case::v4(&format!("a knock with {name} of IPv4 options counts"))
                .send(syn4(K1).with_ipv4_options(&option).build(), DROP)
                .first_knock_counted(),
        );
        cases.push(
            Case::v4(&format!(
                "a SYN to SSH with {name} of IPv4 options meets the gate"
            ))
            .send(syn4(SSH).with_ipv4_options(&option).build(), DROP)
            .gate_dropped(1),
        );
    }
    for ihl in [0, 1, 4] {
        cases.push(
            Case::v4(&format!(
                "a knock with a header length of {ihl} words is malformed"
            ))
            .send(set_ihl(syn4(K1).build(), L3, ihl), DROP)
            .malformed(1),
        );
    }
    for version in [0, 6, 15] {
        cases.push(
            Case::v4(&format!(
                "an IPv4 frame claiming IP version {version} is malformed"
            ))
            .send(set_ip_version(syn4(SSH).build(), L3, version), DROP)
            .malformed(1),
        );
    }
    let plain = || syn4(SSH).build();
    cases.extend([
        Case::v4("a SYN to SSH with a header length of 4 words is malformed")
            .send(set_ihl(plain(), L3, 4), DROP)
            .malformed(1),
        Case::v4("a header length of 15 words beyond the total length is malformed")
            .send(set_ihl(plain(), L3, 15), DROP)
            .malformed(1),
        Case::v4("a total length below the header length is malformed")
            .send(set_total_length(plain(), L3, 19), DROP)
            .malformed(1),
        Case::v4("a total length one byte beyond the frame is malformed")
            .send(set_total_length(plain(), L3, 41), DROP)
            .malformed(1),
        Case::v4("a total length of 65535 in a short frame is malformed")
            .send(set_total_length(plain(), L3, 65535), DROP)
            .malformed(1),
        Case::v4("a total length that leaves no room for TCP is malformed")
            .send(set_total_length(plain(), L3, 20), DROP)
            .malformed(1),
        Case::v4("a total length that cuts TCP before its flags is malformed")
            .send(set_total_length(plain(), L3, 20 + 13), DROP)
            .malformed(1),
        Case::v4("a total length that cuts a knock before its flags is malformed")
            .send(set_total_length(syn4(K1).build(), L3, 20 + 13), DROP)
            .malformed(1),
        // The classifier reads the first 14 bytes of TCP, up to the flags; the host would drop
        // such a segment, and the knock port drops it anyway.
        Case::v4("a knock whose total length ends right after the TCP flags counts")
            .send(set_total_length(syn4(K1).build(), L3, 20 + 14), DROP)
            .first_knock_counted(),
        Case::v4("an options area cut by the end of the frame is malformed")
            .send(
                cut(syn4(SSH).with_ipv4_options(&[1; 40]).build(), L3 + 40),
                DROP,
            )
            .malformed(1),
        Case::v4("a total length beyond the frame hides nothing in an ICMP packet either")
            .send(set_total_length(icmp_echo(), L3, 200), DROP)
            .malformed(1),
        Case::v4("Ethernet padding after the IP packet leaves a knock a knock")
            .send(padded(syn4(K1).build(), 10), DROP)
            .first_knock_counted(),
        // Checksums are the host's business: a wrong one can hide no port, and a knock is
        // dropped before the host would look.
        Case::v4("a knock with a wrong header checksum still counts")
            .send(patch(syn4(K1).build(), L3 + 10, &[0xde, 0xad]), DROP)
            .first_knock_counted(),
        Case::v4("a knock with a wrong TCP checksum still counts")
            .send(patch(syn4(K1).build(), L4_V4 + 16, &[0xde, 0xad]), DROP)
            .first_knock_counted(),
        Case::v4("a knock with the reserved flag bit set counts")
            .send(ipv4_patch(syn4(K1).build(), L3, 6, &[0xc0, 0x00]), DROP)
            .first_knock_counted(),
        Case::v4("DSCP and ECN bits do not change a knock")
            .send(ipv4_patch(syn4(K1).build(), L3, 1, &[0xbb]), DROP)
            .first_knock_counted(),
        Case::v4("without Target, a knock to another unicast address of the host counts")
            .send(
                Craft::tcp(CLIENT4, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 4)), K1, SYN).build(),
                DROP,
            )
            .first_knock_counted(),
    ]);
    cases
}

pub fn icmp_echo() -> Vec<u8> {
    Craft::new(
        CLIENT4,
        SERVER4,
        knock_common::craft::Transport::Raw {
            proto: 1,
            payload: vec![8, 0, 0xf7, 0xff, 0, 0, 0, 0],
        },
    )
    .build()
}

fn padded(mut frame: Vec<u8>, bytes: usize) -> Vec<u8> {
    frame.resize(frame.len() + bytes, 0);
    frame
}
