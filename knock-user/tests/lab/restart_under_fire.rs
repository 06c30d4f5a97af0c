//! A restart must never open the gate, not even for a moment. Strangers' SYNs to the protected
//! port arrive all through a daemon's stop and the next daemon's start, each from a fresh
//! spoofed source, on the lab's veth in native mode, where refused SYNs go on to the host and its
//! socket-lookup guard (the closed look): the host answers each with a RST, never a SYN-ACK.
//! This pins below `cargo xtask system` the hole that walk found (a new daemon's guard attached
//! before its first push judged with empty maps and admitted everything). Without any guard
//! in the namespace, a restart showed two more: the first push let refusals go on to the host
//! before the guard's attach had failed, and the earlier program handed packets to the new
//! programs, which read them from a scratch slot it never wrote (now pinned, shared). A daemon
//! without a guard of its own also detaches the earlier daemon's, which would go on judging by
//! the earlier configuration. On an upgrade (here the running program's hand-over pins renamed
//! as an earlier version's) the earlier program keeps its own hand-over until its links are
//! taken over, and only then are its pins removed.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::{ACK, RST, SYN};
use knock_lab::{CLIENT_V4, CLIENT_V6, CLONES_PER_RUN, Daemon, Flood, SERVER_V6, Scene, Sender};

use crate::common::BINARY;

const DOOR: &str = "[openSSH]\nsequence = 4438,1813,8235\n";
/// The strangers' sources: 2001:db8:f100:0:n:!n (see `knock_lab::stamp`).
const SPOOFED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf100, 0, 0, 0, 0, 0);
/// SYNs per second: thousands during the restart's few hundred milliseconds.
const RATE: u64 = 20_000;
const FLOOD: Duration = Duration::from_secs(6);
const WAIT: Duration = Duration::from_secs(10);

/// The TCP flags of an untagged IPv6 frame from the server to a spoofed source, if it is one.
fn answer_flags(frame: &[u8]) -> Option<u8> {
    let from_server = frame.get(22..38)? == SERVER_V6.octets();
    let to_spoofed = frame.get(38..44)? == &SPOOFED.octets()[..6];
    (from_server && to_spoofed && *frame.get(20)? == 6).then(|| frame.get(54 + 13).copied())?
}

/// A pinned scene whose daemon guards the protected port.
fn scene() -> Scene {
    Scene::build(DOOR)
        .pinned()
        .start(Path::new(BINARY))
        .expect("the lab builds")
}

/// The daemon's state directory in the scene's bpffs (the one directory there).
fn state_dir(scene: &Scene) -> PathBuf {
    let root = scene.state_dir().expect("the scene pins");
    let mut dirs = std::fs::read_dir(root)
        .expect("the bpffs reads")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir());
    dirs.next().expect("the daemon's state directory")
}

/// From now on no daemon can attach its socket-lookup guard: a directory stands where the
/// guard's link is pinned first, aside, so the pin fails and the link goes with it.
fn refuse_guards(scene: &Scene) {
    let aside = state_dir(scene).join(format!("{}-new", knock_common::GUARD_PROGRAM));
    std::fs::create_dir(&aside).expect("a directory in the bpffs");
}

/// Stops `daemon` and starts the next one; returns it once it took over.
fn restart(scene: &Scene, daemon: Daemon) -> Daemon {
    let (log, clean) = daemon.stop();
    assert!(clean, "the daemon stops cleanly: {log:#?}");
    let next = scene.start_another(&[]).expect("the next daemon starts");
    assert!(
        next.wait_for("took over the state pinned in", WAIT)
            .is_some(),
        "the next daemon takes over: {:#?}",
        next.log()
    );
    next
}

/// Asserts that `daemon` said it has no socket-lookup guard.
fn said_unguarded(daemon: &Daemon) {
    let log = daemon.log();
    assert!(
        log.iter().any(|l| l.contains("no socket-lookup guard")),
        "{log:#?}"
    );
}

/// Restarts `daemon` while strangers flood the protected port with SYNs; returns the answers
/// the server sent them (resets, SYN-ACKs) and the next daemon.
fn restart_under_fire(scene: &Scene, daemon: Daemon) -> (u64, u64, Daemon) {
    let lab = &scene.lab;
    // The server answers the spoofed sources through the client, so its answers cross the veth.
    lab.server
        .ip(&[
            "-6",
            "route",
            "replace",
            "2001:db8:f100::/48",
            "via",
            &CLIENT_V6.to_string(),
        ])
        .expect("ip runs");
    let capture = lab.server_capture(64 << 20).expect("the capture opens");
    let template = Craft::tcp(IpAddr::V6(SPOOFED), IpAddr::V6(SERVER_V6), 22, SYN).build();
    let flooding = AtomicBool::new(true);
    std::thread::scope(|s| {
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
            lab.flood_from_client(&template, flood)
        });
        std::thread::sleep(Duration::from_millis(800));
        let next = restart(scene, daemon);
        let flooded = flood
            .join()
            .expect("the flood thread")
            .expect("the flood runs");
        assert!(flooded.offered > 0, "the flood was offered");
        flooding.store(false, Ordering::Release);
        let (resets, syn_acks) = watcher.join().expect("the watcher thread");
        (resets, syn_acks, next)
    })
}

#[test]
fn a_restart_under_a_flood_of_strangers_syns_never_answers_one_with_a_syn_ack() {
    let mut scene = scene();
    let first = scene.take_daemon().expect("the first daemon runs");
    let (resets, syn_acks, _next) = restart_under_fire(&scene, first);
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

#[test]
fn a_restart_whose_guard_cannot_attach_never_answers_a_strangers_syn_with_a_syn_ack() {
    let mut scene = scene();
    refuse_guards(&scene);
    let first = scene.take_daemon().expect("the first daemon runs");
    // The second daemon runs without a guard, and detaches the first one's: the namespace has
    // none when the third starts, whose guard cannot attach either.
    let second = restart(&scene, first);
    said_unguarded(&second);
    let (resets, syn_acks, third) = restart_under_fire(&scene, second);
    eprintln!("restart without a guard under fire: {resets} resets, {syn_acks} SYN-ACKs");
    said_unguarded(&third);
    assert_eq!(
        syn_acks, 0,
        "no stranger got a SYN-ACK while a daemon without a guard restarted"
    );
}

#[test]
fn a_daemon_whose_guard_cannot_attach_detaches_the_earlier_guard_and_its_old_judgement() {
    let mut scene = scene();
    assert!(scene.ssh().is_err(), "the client has not knocked");
    // The client's address becomes always allowed: the earlier guard's maps never learn it.
    std::fs::write(
        &scene.config,
        format!("[options]\nAlways_Allow = {CLIENT_V4}/32\n{DOOR}"),
    )
    .expect("the configuration is written");
    refuse_guards(&scene);
    let first = scene.take_daemon().expect("the first daemon runs");
    let second = restart(&scene, first);
    said_unguarded(&second);
    scene
        .ssh()
        .expect("the always-allowed client connects without knocking");
    assert!(
        !state_dir(&scene).join("socket-lookup").exists(),
        "the earlier guard's pin is gone"
    );
}

/// The fingerprint of the program object an earlier version ran.
const EARLIER_OBJECT: &str = "0badf00d";

/// Makes the running daemon's program object pass for an earlier version's: its program array
/// and scratch slot are pinned under another fingerprint, as an upgrade's next daemon finds
/// them (the running programs keep both, whatever their names).
fn pass_for_an_earlier_version(scene: &Scene) -> Vec<PathBuf> {
    let dir = state_dir(scene);
    let mut renamed = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the state directory reads") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        for prefix in ["HANDOFF-", "SCRATCH-"] {
            if name.starts_with(prefix) {
                let earlier = dir.join(format!("{prefix}{EARLIER_OBJECT}"));
                std::fs::rename(dir.join(name.as_ref()), &earlier).expect("the pin is renamed");
                renamed.push(earlier);
            }
        }
    }
    assert_eq!(renamed.len(), 2, "a program array and a scratch slot");
    renamed
}

#[test]
fn an_upgrade_under_a_flood_of_strangers_syns_never_answers_one_with_a_syn_ack() {
    let mut scene = scene();
    // Without a guard, only the XDP programs stand between the strangers and the host.
    refuse_guards(&scene);
    let first = scene.take_daemon().expect("the first daemon runs");
    let second = restart(&scene, first);
    said_unguarded(&second);
    let earlier = pass_for_an_earlier_version(&scene);
    let (resets, syn_acks, _third) = restart_under_fire(&scene, second);
    eprintln!("upgrade without a guard under fire: {resets} resets, {syn_acks} SYN-ACKs");
    assert_eq!(
        syn_acks, 0,
        "no stranger got a SYN-ACK while the earlier version's program ran"
    );
    for pin in earlier {
        assert!(
            !pin.exists(),
            "{} goes once the links are taken over",
            pin.display()
        );
    }
}
