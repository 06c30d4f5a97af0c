//! The benchmark's line-rate senders put real frames on the lab's wire: a bounded burst reaches
//! the server's veth whole, each frame the template from a source of its own, its TCP checksum
//! still valid. Counted on the server's side, not by the sender; bounded by packets, not time.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_lab::{CLONES_PER_RUN, Capture, Flood, Lab, SERVER_V6, Sender};

const BURST: u64 = 10_000;

/// The ones' complement sum of the IPv6 pseudo-header and the TCP segment of an untagged frame:
/// 0xffff when the checksum is right.
fn tcp_sum(frame: &[u8]) -> u16 {
    let segment = &frame[54..];
    let mut sum: u32 = 0;
    for pair in frame[22..54].chunks(2).chain(segment.chunks(2)) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    sum += segment.len() as u32 + 6;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
fn the_clone_redirect_sender_delivers_a_bounded_burst_each_frame_from_a_new_source() {
    let spoofed: Ipv6Addr = "2001:db8:f100::".parse().expect("an address");
    let template = Craft::tcp(IpAddr::V6(spoofed), IpAddr::V6(SERVER_V6), 22, SYN).build();
    let lab = Lab::new().expect("the lab builds");
    // The server's veth polls with NAPI, as under knock's XDP program.
    lab.server_napi().expect("GRO turns on");
    let iface = lab.server_if.clone();
    let capture = lab
        .server
        .enter(move || -> std::io::Result<Capture> {
            let capture = Capture::open(&iface)?;
            capture.hold(64 << 20)?;
            Ok(capture)
        })
        .expect("entering the server namespace")
        .expect("the capture opens");

    let sender = Sender::CloneRedirect {
        clones: CLONES_PER_RUN,
    };
    let done = lab
        .flood_from_client(
            &template,
            Flood {
                sender,
                rate: None,
                // A bound, not a measure: the burst ends when all of it has been offered.
                duration: Duration::from_secs(60),
                max_packets: BURST,
                threads: 1,
            },
        )
        .expect("the sender runs");
    assert_eq!(done.offered, BURST, "the sender offers the whole burst");

    // Read until every frame of the burst is in, or nothing more came for ten seconds.
    let mut sources = HashSet::new();
    let mut last_new = Instant::now();
    while (sources.len() as u64) < BURST && last_new.elapsed() < Duration::from_secs(10) {
        for frame in capture.frames_for(Duration::from_millis(100)) {
            // The server's own answers (RSTs) go the other way.
            if frame.get(22..28) != template.get(22..28) {
                continue;
            }
            assert_eq!(frame.len(), template.len(), "a frame changed its length");
            assert_eq!(
                frame[12..30],
                template[12..30],
                "the headers before the stamp"
            );
            assert_eq!(frame[38..], template[38..], "everything after the source");
            assert_eq!(tcp_sum(&frame), 0xffff, "the TCP checksum is still valid");
            assert!(
                sources.insert(frame[22..38].to_vec()),
                "a source address came twice"
            );
            last_new = Instant::now();
        }
    }
    assert_eq!(
        sources.len() as u64,
        BURST,
        "the server's veth received every frame of the burst, each from its own source"
    );
}
