//! A restart must never open the gate, not even for a moment. Strangers' SYNs to the protected
//! port arrive all through a daemon's stop and the next daemon's start, each from a fresh
//! spoofed source, on the lab's veth in native mode, where refused SYNs go on to the host and its
//! socket-lookup guard (the closed look): the host answers each with a RST, never a SYN-ACK.
//! This pins below `cargo xtask system` the hole that walk found (a new daemon's guard attached
//! before its first push judged with empty maps and admitted everything).

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::{ACK, RST, SYN};
use knock_lab::{CLIENT_V6, CLONES_PER_RUN, Flood, SERVER_V6, Scene, Sender};

use crate::common::BINARY;

const DOOR: &str = "[openSSH]\nsequence = 4438,1813,8235\n";
/// The strangers' sources: 2001:db8:f100:0:n:!n (see `knock_lab::stamp`).
const SPOOFED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf100, 0, 0, 0, 0, 0);
/// SYNs per second: thousands during the restart's few hundred milliseconds.
const RATE: u64 = 20_000;
const FLOOD: Duration = Duration::from_secs(6);

/// The TCP flags of an untagged IPv6 frame from the server to a spoofed source, if it is one.
fn answer_flags(frame: &[u8]) -> Option<u8> {
    let from_server = frame.get(22..38)? == SERVER_V6.octets();
    let to_spoofed = frame.get(38..44)? == &SPOOFED.octets()[..6];
    (from_server && to_spoofed && *frame.get(20)? == 6).then(|| frame.get(54 + 13).copied())?
}

#[test]
fn a_restart_under_a_flood_of_strangers_syns_never_answers_one_with_a_syn_ack() {
    let mut scene = Scene::build(DOOR)
        .pinned()
        .start(Path::new(BINARY))
        .expect("the lab builds");
    let lab = &scene.lab;
    // The server answers the spoofed sources through the client, so its answers cross the veth.
    lab.server
        .ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:f100::/48",
            "via",
            &CLIENT_V6.to_string(),
        ])
        .expect("ip runs");
    let capture = lab.server_capture(64 << 20).expect("the capture opens");
    let template = Craft::tcp(IpAddr::V6(SPOOFED), IpAddr::V6(SERVER_V6), 22, SYN).build();

    // Out of the scene, so the scene is only borrowed (by the flood) while daemons come and go.
    let first = scene.take_daemon().expect("the first daemon runs");
    let scene = &scene;
    let flooding = AtomicBool::new(true);
    let (resets, syn_acks) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut resets, mut syn_acks) = (0u64, 0u64);
            loop {
                let done = !flooding.load(Ordering::Acquire);
                for flags in capture
                    .frames_for(Duration::from_millis(50))
                    .iter()
                    .filter_map(|frame| answer_flags(frame))
                {
                    if flags & (SYN | ACK) == SYN | ACK {
                        syn_acks += 1;
                    } else if flags & RST != 0 {
                        resets += 1;
                    }
                }
                if done {
                    return (resets, syn_acks);
                }
            }
        });
        let flood = s.spawn(|| {
            let flood = Flood {
                sender: Sender::CloneRedirect {
                    clones: CLONES_PER_RUN,
                },
                rate: Some(RATE),
                duration: FLOOD,
                max_packets: RATE * FLOOD.as_secs(),
                threads: 1,
            };
            scene.lab.flood_from_client(&template, flood)
        });
        std::thread::sleep(Duration::from_millis(800));
        let (log, clean) = first.stop();
        assert!(clean, "the daemon stops cleanly: {log:#?}");
        let next = scene.start_another(&[]).expect("the next daemon starts");
        assert!(
            next.wait_for("took over the state pinned in", Duration::from_secs(10))
                .is_some(),
            "the next daemon takes over: {:#?}",
            next.log()
        );
        let flooded = flood
            .join()
            .expect("the flood thread")
            .expect("the flood runs");
        assert!(flooded.offered > 0, "the flood was offered");
        flooding.store(false, Ordering::Release);
        watcher.join().expect("the watcher thread")
    });
    eprintln!("restart under fire: {resets} resets, {syn_acks} SYN-ACKs");
    assert!(
        resets > 1000,
        "the strangers' SYNs reached the host and were refused all along ({resets} resets)"
    );
    assert_eq!(
        syn_acks, 0,
        "no stranger got a SYN-ACK while the daemon restarted ({resets} resets)"
    );
}
