//! Links without Ethernet headers (tun, WireGuard, PPP, raw IP, IP tunnels): frames start at
//! the IP header and the program attached there (`knock_ip`) reads the family from the
//! version nibble. The gate, knocks and their refusals behave as on Ethernet.

use super::*;

/// The frame of `craft` from its IP header on.
fn bare(craft: Craft) -> Vec<u8> {
    craft.build_ip()
}

fn knocks_ip(shape: impl Fn(u16) -> Craft) -> Vec<Vec<u8>> {
    KNOCKS.iter().map(|&port| shape(port).build_ip()).collect()
}

pub fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case::v4("a SYN to SSH without a knock is dropped on an IP link")
            .on_ip_link()
            .send(bare(syn4(SSH)), DROP)
            .gate_dropped(1),
        Case::v6("an IPv6 SYN to SSH without a knock is dropped on an IP link")
            .on_ip_link()
            .send(bare(syn6(SSH)), DROP)
            .gate_dropped(1),
        Case::v4("knocks over IPv4 on an IP link open the door")
            .on_ip_link()
            .send_each(knocks_ip(syn4), DROP)
            .sequence_opens_the_door(),
        Case::v6("knocks over IPv6 on an IP link open the door")
            .on_ip_link()
            .send_each(knocks_ip(syn6), DROP)
            .sequence_opens_the_door(),
        Case::v4("an ACK to SSH passes on an IP link")
            .on_ip_link()
            .send(bare(tcp4(SSH, ACK)), PASS),
        Case::v4("a SYN to an unrelated port passes on an IP link")
            .on_ip_link()
            .send(bare(syn4(WEB)), PASS),
        Case::v4("a first knock on an IP link counts")
            .on_ip_link()
            .send(bare(syn4(K1)), DROP)
            .first_knock_counted(),
        Case::v4("udp knocks on an IP link open the door")
            .on(&UDP)
            .on_ip_link()
            .send_each(UDP_KNOCKS.iter().map(|&p| udp4(p).build_ip()), DROP)
            .sequence_opens_the_door(),
        Case::v4("a strict rule reset works on an IP link")
            .on_ip_link()
            .send(bare(syn4(K1)), DROP)
            .send(bare(syn4(WEB)), PASS)
            .send(bare(syn4(K2)), DROP)
            .send(bare(syn4(K3)), DROP)
            .counts(&[
                (Counter::KnockAccepted, 1),
                (Counter::KnockPortDropped, 3),
                (Counter::AttemptReset, 1),
            ]),
    ];
    for version in [0u8, 1, 5, 7, 15] {
        let mut frame = bare(syn4(SSH));
        frame[0] = (version << 4) | (frame[0] & 0x0f);
        cases.push(
            Case::v4(&format!(
                "a packet of IP version {version} on an IP link is no IP packet and passes"
            ))
            .on_ip_link()
            .send(frame, PASS),
        );
    }
    cases.extend([
        Case::v4("an IPv4 header cut inside its addresses on an IP link is malformed")
            .on_ip_link()
            .send(cut(bare(syn4(SSH)), 16), DROP)
            .malformed(1),
        Case::v4("a SYN to SSH cut inside its TCP ports on an IP link is malformed")
            .on_ip_link()
            .send(cut(bare(syn4(SSH)), 23), DROP)
            .malformed(1),
        Case::v6("an IPv6 header cut short on an IP link is malformed")
            .on_ip_link()
            .send(cut(bare(syn6(SSH)), 30), DROP)
            .malformed(1),
        Case::v4("an IPv4 header length of 4 words on an IP link is malformed")
            .on_ip_link()
            .send(set_ihl(bare(syn4(K1)), 0, 4), DROP)
            .malformed(1),
        Case::v4("a total length beyond the frame on an IP link is malformed")
            .on_ip_link()
            .send(set_total_length(bare(syn4(SSH)), 0, 200), DROP)
            .malformed(1),
        Case::v4("a knock with a router alert option on an IP link counts")
            .on_ip_link()
            .send(bare(syn4(K1).with_ipv4_options(&[148, 4, 0, 0])), DROP)
            .first_knock_counted(),
        Case::v4("a SYN to SSH behind 40 bytes of IPv4 options on an IP link meets the gate")
            .on_ip_link()
            .send(bare(syn4(SSH).with_ipv4_options(&[1; 40])), DROP)
            .gate_dropped(1),
        Case::v6("knocks behind IPv6 hop-by-hop and routing headers on an IP link open the door")
            .on_ip_link()
            .send_each(
                knocks_ip(|p| {
                    syn6(p)
                        .with_extension(0, &[1, 4, 0, 0, 0, 0])
                        .with_extension(43, &[0, 0, 0, 0, 0, 0])
                }),
                DROP,
            )
            .sequence_opens_the_door(),
        Case::v6("a SYN to SSH behind nine IPv6 extension headers on an IP link is malformed")
            .on_ip_link()
            .send(
                bare((0..9).fold(syn6(SSH), |c, _| c.with_extension(60, &[1, 4, 0, 0, 0, 0]))),
                DROP,
            )
            .malformed(1),
        Case::from_source(
            "an IPv6 knock from an IPv4-mapped source on an IP link is malformed",
            "::ffff:198.51.100.2".parse().unwrap(),
        )
        .on_ip_link()
        .send(
            Craft::tcp("::ffff:198.51.100.2".parse().unwrap(), SERVER6, K1, SYN).build_ip(),
            DROP,
        )
        .malformed(1),
        Case::v4("the first fragment of a SYN to SSH on an IP link meets the gate")
            .on_ip_link()
            .send(bare(syn4(SSH).with_fragment(0, true)), DROP)
            .gate_dropped(1),
        Case::v4("a later fragment on an IP link passes")
            .on_ip_link()
            .send(
                syn4(SSH)
                    .with_fragment(8, false)
                    .build_ip_with_payload(&[0; 16]),
                PASS,
            ),
        Case::v4("a tiny TCP fragment on an IP link is malformed")
            .on_ip_link()
            .send(
                syn4(SSH)
                    .with_fragment(1, false)
                    .build_ip_with_payload(&[0; 16]),
                DROP,
            )
            .malformed(1),
        Case::v4("a UDP knock to a multicast group on an IP link never counts")
            .on(&UDP)
            .on_ip_link()
            .send(
                Craft::udp(CLIENT4, "224.0.0.251".parse().unwrap(), U1).build_ip(),
                PASS,
            ),
        Case::v4(
            "an Ethernet frame handed to the IP-link program is not read as the SYN it carries",
        )
        .on_ip_link()
        .send(syn4(SSH).build(), PASS),
    ]);
    cases
}
