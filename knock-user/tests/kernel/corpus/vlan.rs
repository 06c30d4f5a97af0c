//! 802.1Q and 802.1ad tags: one and two are looked through; what lies behind more must not
//! slip past the gate.

use super::*;

const Q: u16 = 0x8100;
const AD: u16 = 0x88a8;

/// Linux strips any number of VLAN-0 (priority) tags before IP sees a frame, so a frame with a
/// third tag reaches the host's sockets; the classifier calls it Other and lets it pass.
pub const THIRD_TAG: &str = "a third VLAN tag makes the frame Other, so it passes unjudged, yet Linux \
     strips every priority (VLAN 0) tag and delivers the packet: a SYN behind three priority \
     tags reaches a protected port (shown on veth with knock-user run attached); a frame with \
     more than two tags should be Malformed";

/// Tag stacks the classifier must look through, outermost first.
const STACKS: [(&str, &[(u16, u16)]); 6] = [
    ("an 802.1Q tag", &[(Q, 100)]),
    ("an 802.1ad tag", &[(AD, 100)]),
    ("a priority tag", &[(Q, 0)]),
    ("802.1ad over 802.1Q", &[(AD, 100), (Q, 200)]),
    ("two 802.1Q tags", &[(Q, 100), (Q, 200)]),
    ("two priority tags", &[(Q, 0), (Q, 0)]),
];

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, tags) in STACKS {
        cases.push(
            Case::v4(&format!("a knock behind {name} counts"))
                .send(tagged(syn4(K1), tags).build(), DROP)
                .first_knock_counted(),
        );
        cases.push(
            Case::v4(&format!("a SYN to SSH behind {name} meets the gate"))
                .send(tagged(syn4(SSH), tags).build(), DROP)
                .gate_dropped(1),
        );
    }
    let double = &[(AD, 100), (Q, 200)];
    let third: &[(u16, u16)] = &[(Q, 0), (Q, 0), (Q, 0)];
    cases.extend([
        Case::v6("an IPv6 knock behind two tags counts")
            .send(tagged(syn6(K1), double).build(), DROP)
            .first_knock_counted(),
        Case::v6("an IPv6 SYN to SSH behind two tags meets the gate")
            .send(tagged(syn6(SSH), double).build(), DROP)
            .gate_dropped(1),
        Case::v4("a tag's priority, DEI bit and VLAN id do not matter")
            .send(
                tagged(syn4(K1), &[(Q, 0xe000 | 0x1000 | 4095)]).build(),
                DROP,
            )
            .first_knock_counted(),
        Case::v4("a UDP datagram behind a tag passes")
            .send(tagged(udp4(53), &[(Q, 100)]).build(), PASS),
        Case::v4("ARP behind a tag passes").send(
            patch(tagged(syn4(SSH), &[(Q, 100)]).build(), 16, &[0x08, 0x06]),
            PASS,
        ),
        Case::v4("LLDP behind two tags passes").send(
            patch(tagged(syn4(SSH), double).build(), 20, &[0x88, 0xcc]),
            PASS,
        ),
        Case::v4("a frame that ends inside its tag is not IP and passes")
            .send(cut(tagged(syn4(SSH), &[(Q, 100)]).build(), 16), PASS),
        Case::v4("a frame that ends inside its second tag is not IP and passes")
            .send(cut(tagged(syn4(SSH), double).build(), 20), PASS),
        Case::v4("a tagged IPv4 header cut short is malformed")
            .send(
                cut(tagged(syn4(SSH), &[(Q, 100)]).build(), L3_TAGGED + 10),
                DROP,
            )
            .malformed(1),
        Case::v6("a double-tagged IPv6 header cut short is malformed")
            .send(cut(tagged(syn6(SSH), double).build(), L3_DOUBLE + 30), DROP)
            .malformed(1),
        Case::v4("a tagged IPv4 header length below five words is malformed")
            .send(
                set_ihl(tagged(syn4(K1), &[(Q, 100)]).build(), L3_TAGGED, 4),
                DROP,
            )
            .malformed(1),
        Case::v4("a double-tagged IPv4 total length beyond the frame is malformed")
            .send(
                set_total_length(tagged(syn4(SSH), double).build(), L3_DOUBLE, 100),
                DROP,
            )
            .malformed(1),
        Case::v4("a 0x9100 tag is no VLAN tag to Linux: the frame is not IP and passes")
            .send(tagged(syn4(SSH), &[(0x9100, 100)]).build(), PASS),
        Case::v4("a SYN to SSH behind three priority tags is dropped")
            .send(tagged(syn4(SSH), third).build(), DROP)
            .malformed(1)
            .suspected_bug(THIRD_TAG),
        Case::v4("a SYN to SSH behind three mixed tags is dropped")
            .send(
                tagged(syn4(SSH), &[(AD, 100), (Q, 200), (Q, 0)]).build(),
                DROP,
            )
            .malformed(1)
            .suspected_bug(THIRD_TAG),
        Case::v4("a SYN to SSH behind four priority tags is dropped")
            .send(tagged(syn4(SSH), &[(Q, 0); 4]).build(), DROP)
            .malformed(1)
            .suspected_bug(THIRD_TAG),
        Case::v6("an IPv6 SYN to SSH behind three priority tags is dropped")
            .send(tagged(syn6(SSH), third).build(), DROP)
            .malformed(1)
            .suspected_bug(THIRD_TAG),
        Case::v4("a datagram to a protected UDP port behind three tags is dropped")
            .on(&UDP)
            .send(tagged(udp4(WIREGUARD), third).build(), DROP)
            .malformed(1)
            .suspected_bug(THIRD_TAG),
        Case::v4("a knock behind three tags is dropped and never counts")
            .send(tagged(syn4(K1), third).build(), DROP)
            .malformed(1)
            .suspected_bug(THIRD_TAG),
    ]);
    cases
}
