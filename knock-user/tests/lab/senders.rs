//! The benchmark's line-rate senders put real frames on the lab's wire: a bounded burst reaches
//! the server's veth whole, each frame the template from a source of its own, its TCP checksum
//! still valid. Counted on the server's side, not by the sender; bounded by packets, not time.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_lab::{CLONES_PER_RUN, Flood, Lab, SERVER_V6, Sender};

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
    let capture = lab.server_capture(64 << 20).expect("the capture opens");

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

/// An interface counter, read inside its namespace.
fn counter(netns: &knock_lab::Netns, iface: &str, name: &str) -> u64 {
    let path = format!("/sys/class/net/{iface}/statistics/{name}");
    let output = netns.command("cat").arg(&path).output().expect("cat runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a counter")
}

/// The entries of a directory inside a namespace's own /sys.
fn listing(netns: &knock_lab::Netns, path: &str) -> Vec<String> {
    let output = netns.command("ls").arg(path).output().expect("ls runs");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn one_queue_per_core_gives_each_core_its_own_receive_queue_and_accounts_for_every_frame() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let lab = Lab::new().expect("the lab builds");
    let server_queues = |lab: &Lab| {
        listing(
            &lab.server,
            &format!("/sys/class/net/{}/queues", lab.server_if),
        )
        .into_iter()
        .filter(|q| q.starts_with("rx-"))
        .count() as u32
    };
    assert_eq!(
        server_queues(&lab),
        1,
        "a veth is made with one queue in use"
    );

    let queues = lab.one_queue_per_core().expect("the queues change");
    // A veth allows as many queues as the machine has possible CPUs: at least one per core.
    assert_eq!(queues, cores, "one queue per core");
    assert_eq!(
        server_queues(&lab),
        cores,
        "the server's end receives on each"
    );
    for queue in 0..queues {
        let path = format!(
            "/sys/class/net/{}/queues/tx-{queue}/xps_cpus",
            lab.client_if
        );
        let output = lab
            .client
            .command("cat")
            .arg(&path)
            .output()
            .expect("cat runs");
        let mask = u64::from_str_radix(
            &String::from_utf8_lossy(&output.stdout)
                .trim()
                .replace(',', ""),
            16,
        )
        .expect("a CPU mask");
        assert_eq!(mask, 1 << queue, "core {queue} sends on its own queue");
    }

    // A bounded burst from every core, through the new queues: each frame offered is either
    // received by the server's end or counted as refused by a full ring, none lost unaccounted.
    let spoofed: Ipv6Addr = "2001:db8:f100::".parse().expect("an address");
    let template = Craft::tcp(IpAddr::V6(spoofed), IpAddr::V6(SERVER_V6), 7000, SYN).build();
    lab.server_napi().expect("GRO turns on");
    let received = counter(&lab.server, &lab.server_if, "rx_packets");
    let done = lab
        .flood_from_client(
            &template,
            Flood {
                sender: Sender::CloneRedirect {
                    clones: CLONES_PER_RUN,
                },
                rate: None,
                duration: Duration::from_secs(60),
                max_packets: BURST * u64::from(cores),
                threads: cores,
            },
        )
        .expect("the sender runs");
    std::thread::sleep(Duration::from_millis(200));
    let received = counter(&lab.server, &lab.server_if, "rx_packets") - received;
    let refused = counter(&lab.client, &lab.client_if, "tx_dropped")
        + counter(&lab.server, &lab.server_if, "rx_dropped");
    assert_eq!(
        done.offered,
        BURST * u64::from(cores),
        "the whole burst is offered"
    );
    // The lab's own stacks add a few frames of their own (IPv6 neighbour discovery, MLD).
    assert!(
        (done.offered..=done.offered + 16).contains(&(received + refused)),
        "every frame offered was received or refused by a full ring: {received} received, \
         {refused} refused, {} offered",
        done.offered
    );
    assert!(received > 0, "frames arrive through the new queues");
}
