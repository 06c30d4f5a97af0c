//! IPv6: every extension header kind the classifier walks, chains of them, chains too long or too
//! deep to follow, and fixed headers whose lengths disagree with the frame.

use knock_common::craft::Transport;

use super::*;

pub const EIGHT_HEADERS: &str = "exactly eight extension headers are TooDeep: the walk runs \
     MAX_EXTENSION_HEADERS (8) iterations and needs a ninth to reach the transport, so the \
     classifier follows at most seven headers, while the rule is that only more than eight are \
     malformed (its own unit test uses nine)";

pub const V4_MAPPED: &str = "an IPv6 packet from an IPv4-mapped source (::ffff:a.b.c.d) gets the \
     very map key of the IPv4 address a.b.c.d, so it counts as that address's knock (even under \
     -4, whose IPv6 packets must never count); Linux drops such packets on input \
     (Ip6InHdrErrors), so they are headers the host rejects and should be Malformed";

/// The extension headers the classifier walks, with a minimal valid body for each.
pub const EXTENSIONS: [(&str, u8, &[u8]); 7] = [
    ("hop-by-hop options", 0, &[1, 4, 0, 0, 0, 0]),
    ("routing", 43, &[0, 0, 0, 0, 0, 0]),
    ("destination options", 60, &[1, 4, 0, 0, 0, 0]),
    ("authentication", 51, &[0; 10]),
    ("mobility", 135, &[0; 6]),
    ("HIP", 139, &[0; 6]),
    ("shim6", 140, &[0; 6]),
];

const PAD_N: &[u8] = &[1, 4, 0, 0, 0, 0];

/// `craft` behind `count` destination options headers.
pub fn behind_options(craft: Craft, count: usize) -> Craft {
    (0..count).fold(craft, |craft, _| craft.with_extension(60, PAD_N))
}

/// A destination options header whose body makes the transport start `depth` bytes after the
/// start of the IPv6 header.
fn at_depth(craft: Craft, depth: usize) -> Craft {
    craft.with_extension(60, &vec![0; depth - 40 - 2])
}

fn raw6(proto: u8, payload: &[u8]) -> Vec<u8> {
    let transport = Transport::Raw {
        proto,
        payload: payload.to_vec(),
    };
    Craft::new(CLIENT6, SERVER6, transport).build()
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, kind, body) in EXTENSIONS {
        cases.push(
            Case::v6(&format!("a knock behind a {name} header counts"))
                .send(syn6(K1).with_extension(kind, body).build(), DROP)
                .first_knock_counted(),
        );
        cases.push(
            Case::v6(&format!(
                "a SYN to SSH behind a {name} header meets the gate"
            ))
            .send(syn6(SSH).with_extension(kind, body).build(), DROP)
            .gate_dropped(1),
        );
    }
    let mapped = Craft::tcp("::ffff:198.51.100.2".parse().unwrap(), SERVER6, K1, SYN);
    cases.extend([
        Case::v6("a knock behind hop-by-hop, routing and destination options counts")
            .send(
                syn6(K1)
                    .with_extension(0, PAD_N)
                    .with_extension(43, &[0; 6])
                    .with_extension(60, PAD_N)
                    .build(),
                DROP,
            )
            .first_knock_counted(),
        Case::v6("a SYN to SSH behind a chain of five kinds meets the gate")
            .send(
                syn6(SSH)
                    .with_extension(0, PAD_N)
                    .with_extension(60, PAD_N)
                    .with_extension(43, &[0; 6])
                    .with_extension(51, &[0; 10])
                    .with_extension(60, PAD_N)
                    .build(),
                DROP,
            )
            .gate_dropped(1),
        Case::v6("a knock behind seven extension headers counts")
            .send(behind_options(syn6(K1), 7).build(), DROP)
            .first_knock_counted(),
        Case::v6("a knock behind eight extension headers counts")
            .send(behind_options(syn6(K1), 8).build(), DROP)
            .first_knock_counted()
            .suspected_bug(EIGHT_HEADERS),
        Case::v6("a SYN to SSH behind eight extension headers meets the gate")
            .send(behind_options(syn6(SSH), 8).build(), DROP)
            .gate_dropped(1)
            .suspected_bug(EIGHT_HEADERS),
        Case::v6("a knock behind nine extension headers is malformed")
            .send(behind_options(syn6(K1), 9).build(), DROP)
            .malformed(1),
        Case::v6("a SYN to SSH behind nine extension headers is malformed")
            .send(behind_options(syn6(SSH), 9).build(), DROP)
            .malformed(1),
        Case::v6("a SYN to SSH behind sixteen extension headers is malformed")
            .send(behind_options(syn6(SSH), 16).build(), DROP)
            .malformed(1),
        Case::v6("a knock whose TCP header starts 512 bytes into IPv6 counts")
            .send(at_depth(syn6(K1), 512).build(), DROP)
            .first_knock_counted(),
        Case::v6("a knock whose TCP header starts 520 bytes into IPv6 is malformed")
            .send(at_depth(syn6(K1), 520).build(), DROP)
            .malformed(1),
        Case::v6("a SYN to SSH behind one 600-byte extension header is malformed")
            .send(syn6(SSH).with_extension(60, &[0; 600]).build(), DROP)
            .malformed(1),
        Case::v6("a hop-by-hop header claiming 2 KiB in a short frame is malformed")
            .send(
                patch(
                    syn6(SSH).with_extension(0, PAD_N).build(),
                    L4_V6 + 1,
                    &[255],
                ),
                DROP,
            )
            .malformed(1),
        Case::v6("an extension header longer than the payload is malformed")
            .send(
                patch(
                    syn6(SSH).with_extension(60, PAD_N).build(),
                    L4_V6 + 1,
                    &[10],
                ),
                DROP,
            )
            .malformed(1),
        Case::v6("a frame that ends inside a hop-by-hop header is malformed")
            .send(
                set_payload_length(
                    cut(syn6(SSH).with_extension(0, PAD_N).build(), L4_V6 + 1),
                    L3,
                    1,
                ),
                DROP,
            )
            .malformed(1),
        Case::v6("an IPv6 frame claiming IP version 4 is malformed")
            .send(set_ip_version(syn6(SSH).build(), L3, 4), DROP)
            .malformed(1),
        Case::v6("an IPv6 frame claiming IP version 0 is malformed")
            .send(set_ip_version(syn6(SSH).build(), L3, 0), DROP)
            .malformed(1),
        Case::v6("a payload length one byte beyond the frame is malformed")
            .send(set_payload_length(syn6(SSH).build(), L3, 21), DROP)
            .malformed(1),
        Case::v6("a payload length of 65535 in a short frame is malformed")
            .send(set_payload_length(syn6(K1).build(), L3, 65535), DROP)
            .malformed(1),
        Case::v6("a payload length that cuts TCP before its flags is malformed")
            .send(set_payload_length(syn6(SSH).build(), L3, 10), DROP)
            .malformed(1),
        Case::v6("Ethernet padding after the IPv6 packet leaves a knock a knock")
            .send(
                {
                    let mut frame = syn6(K1).build();
                    frame.extend_from_slice(&[0; 6]);
                    frame
                },
                DROP,
            )
            .first_knock_counted(),
        // A zero payload length announces a jumbogram: the frame's end bounds the packet, so the
        // gate still judges what lies behind it.
        Case::v6("a SYN to SSH with a zero payload length meets the gate")
            .send(set_payload_length(syn6(SSH).build(), L3, 0), DROP)
            .gate_dropped(1),
        Case::v6("a knock with a zero payload length counts")
            .send(set_payload_length(syn6(K1).build(), L3, 0), DROP)
            .first_knock_counted(),
        Case::v6("an IPv6 header cut short is malformed")
            .send(cut(syn6(SSH).build(), L3 + 39), DROP)
            .malformed(1),
        Case::v6("No Next Header passes").send(raw6(59, &[]), PASS),
        Case::v6("hop-by-hop then No Next Header passes").send(
            Craft::new(
                CLIENT6,
                SERVER6,
                Transport::Raw {
                    proto: 59,
                    payload: vec![],
                },
            )
            .with_extension(0, PAD_N)
            .build(),
            PASS,
        ),
        Case::v6("ESP passes: knock cannot read inside it").send(raw6(50, &[0; 24]), PASS),
        Case::v6("an ICMPv6 echo request passes").send(raw6(58, &[128, 0, 0, 0, 0, 1, 0, 1]), PASS),
        Case::v6("an unknown next header passes").send(raw6(253, &[0; 16]), PASS),
        Case::v4("an IPv6 knock from an IPv4-mapped source never counts for the IPv4 address")
            .send(mapped.build(), DROP)
            .malformed(1)
            .suspected_bug(V4_MAPPED),
        Case::v4("-4: an IPv6 knock from an IPv4-mapped source never counts")
            .on(&IPV4_ONLY)
            .send(mapped.build(), DROP)
            .malformed(1)
            .suspected_bug(V4_MAPPED),
    ]);
    cases
}
