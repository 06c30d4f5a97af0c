//! Hostile traffic end to end: the dangerous shapes of a connection attempt to a protected port
//! must not reach the listener, and floods must not lock a real client out. Each dangerous case
//! first proves that its frames do reach the listener when knock is not running.
use crate::common;
use crate::kernel;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::{BINARY, GUIDE, Scene, scene};
use kernel::{PASS, counter, load_sized, sources_in_progress, verdict};
use knock_common::counter::Counter;
use knock_common::craft::{Craft, Transport};
use knock_common::frame::{Frame, classify};
use knock_common::segment::tcp_flags::{ACK, SYN};
use knock_lab::{CLIENT_V4, CLIENT_V6, Lab, SERVER_V4, SERVER_V6};

const WAIT: Duration = Duration::from_secs(5);

/// A TCP segment with a payload and a correct checksum.
fn tcp_segment(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut segment = Vec::new();
    segment.extend_from_slice(&sport.to_be_bytes());
    segment.extend_from_slice(&dport.to_be_bytes());
    segment.extend_from_slice(&0x0100_0000u32.to_be_bytes());
    segment.extend_from_slice(&0u32.to_be_bytes());
    segment.extend_from_slice(&[5 << 4, flags]);
    segment.extend_from_slice(&64240u16.to_be_bytes());
    segment.extend_from_slice(&[0, 0, 0, 0]);
    segment.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(segment.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
        }
        _ => panic!("mixed families"),
    }
    let mut sum = 0u32;
    for chunk in pseudo.chunks(2).chain(segment.chunks(2)) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    segment[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    segment
}

/// A SYN to port 22 split in two fragments; the first holds the whole TCP header.
fn fragmented_syn(src: IpAddr, dst: IpAddr, sport: u16) -> Vec<Vec<u8>> {
    let segment = tcp_segment(src, dst, sport, 22, SYN, &[0x55; 12]);
    let raw = |more: bool, offset: u16| {
        Craft::new(
            src,
            dst,
            Transport::Raw {
                proto: 6,
                payload: Vec::new(),
            },
        )
        .with_fragment(offset, more)
    };
    vec![
        raw(true, 0).build_with_payload(&segment[..24]),
        raw(false, 3).build_with_payload(&segment[24..]),
    ]
}

fn syn_behind_extension_headers(sport: u16) -> Vec<Vec<u8>> {
    let (src, dst) = (CLIENT_V6.into(), SERVER_V6.into());
    let segment = tcp_segment(src, dst, sport, 22, SYN, &[]);
    let frame = Craft::new(
        src,
        dst,
        Transport::Raw {
            proto: 6,
            payload: Vec::new(),
        },
    )
    .with_extension(0, &[1, 4, 0, 0, 0, 0])
    .with_extension(60, &[1, 4, 0, 0, 0, 0])
    .build_with_payload(&segment);
    vec![frame]
}

fn syn_with_ipv4_options(sport: u16) -> Vec<Vec<u8>> {
    let (src, dst) = (CLIENT_V4.into(), SERVER_V4.into());
    let segment = tcp_segment(src, dst, sport, 22, SYN, &[]);
    let frame = Craft::new(
        src,
        dst,
        Transport::Raw {
            proto: 6,
            payload: Vec::new(),
        },
    )
    .with_ipv4_options(&[0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00])
    .build_with_payload(&segment);
    vec![frame]
}

/// Whether the server answers these frames with a SYN-ACK to `sport`: the connection attempt
/// reached the listener.
fn reaches_listener(lab: &Lab, frames: &[Vec<u8>], sport: u16) -> bool {
    let capture = lab.capture_on_client().expect("a capture on the client");
    for frame in frames {
        lab.send_from_client(frame).expect("the frame leaves");
    }
    capture
        .frames_for(Duration::from_millis(600))
        .iter()
        .any(|frame| {
            matches!(classify(frame.as_slice()), Frame::Segment(s)
            if s.tcp_flags & (SYN | ACK) == SYN | ACK && s.dport == sport)
        })
}

/// Proves the frames reach a listener without knock, then that they do not with knock.
fn never_reaches_the_listener(frames_for: fn(u16) -> Vec<Vec<u8>>) {
    let mut s = Scene::build(GUIDE)
        .quiet()
        .stopped()
        .start(Path::new(BINARY))
        .unwrap();
    assert!(
        reaches_listener(&s.lab, &frames_for(41001), 41001),
        "without knock the frames must reach the listener, or this test proves nothing"
    );
    s.start_daemon(&[]).unwrap();
    assert!(!reaches_listener(&s.lab, &frames_for(41002), 41002));
}

#[test]
fn an_ipv6_syn_to_ssh_behind_extension_headers_never_reaches_the_listener() {
    never_reaches_the_listener(syn_behind_extension_headers);
}

#[test]
fn a_fragmented_ipv4_syn_to_ssh_never_reaches_the_listener() {
    never_reaches_the_listener(|sport| fragmented_syn(CLIENT_V4.into(), SERVER_V4.into(), sport));
}

#[test]
fn a_fragmented_ipv6_syn_to_ssh_never_reaches_the_listener() {
    never_reaches_the_listener(|sport| fragmented_syn(CLIENT_V6.into(), SERVER_V6.into(), sport));
}

#[test]
fn an_ipv4_syn_to_ssh_with_header_options_never_reaches_the_listener() {
    never_reaches_the_listener(syn_with_ipv4_options);
}

/// A first knock from a spoofed IPv6 source numbered `n`.
fn spoofed_first_knock(n: u64, frame: &mut [u8]) {
    // Bytes 22..38 of an untagged IPv6 frame are the source address; vary its last four.
    frame[34..38].copy_from_slice(&(n as u32).to_be_bytes());
}

#[test]
fn a_million_spoofed_first_knocks_do_not_stop_a_real_client() {
    let mut knock = load_sized(GUIDE, 16_384, |_| {});
    let client: IpAddr = CLIENT_V4.into();
    let server: IpAddr = SERVER_V4.into();
    let mut flood = Craft::tcp(
        "2001:db8:ffff::".parse().unwrap(),
        SERVER_V6.into(),
        4438,
        SYN,
    )
    .build();
    let memory_before = knock.map_memory();
    let mut sent = 0u64;
    let mut flood_for = |knock: &knock_user::kernel::Knock, count: u64| {
        for _ in 0..count {
            spoofed_first_knock(sent, &mut flood);
            // In the closed look a knock goes on to the host, as to any closed port.
            assert_eq!(verdict(knock, &flood), PASS);
            sent += 1;
        }
    };
    flood_for(&knock, 300_000);
    // The real client knocks in the middle of the flood, a thousand spoofed packets apart.
    for port in [4438, 1813, 8235] {
        assert_eq!(
            verdict(&knock, &Craft::tcp(client, server, port, SYN).build()),
            PASS
        );
        flood_for(&knock, 1_000);
    }
    flood_for(&knock, 697_000);
    assert_eq!(sent, 1_000_000);
    assert_eq!(
        counter(&knock, Counter::DoorOpened),
        1,
        "the real client's door opened"
    );
    assert_eq!(
        verdict(&knock, &Craft::tcp(client, server, 22, SYN).build()),
        PASS,
        "the open door survived a flood that cycled the progress map sixty times over"
    );
    assert!(
        sources_in_progress(&mut knock) <= 16_384,
        "progress stays bounded"
    );
    assert_eq!(knock.map_memory(), memory_before, "no map grew");
}

#[test]
fn a_burst_of_spoofed_first_knocks_over_veth_does_not_stop_a_real_client() {
    burst_of_spoofed_first_knocks(&scene(GUIDE));
}

/// With `-l`, every spoofed source is a name to look up: the daemon still runs the real
/// client's start command, on a bounded pool of lookup threads.
#[test]
fn with_name_lookups_a_burst_of_spoofed_first_knocks_still_lets_the_start_command_run() {
    let s = common::scene_with(GUIDE, &["-l"]);
    burst_of_spoofed_first_knocks(&s);
    s.daemon()
        .wait_for("openSSH: running command", WAIT)
        .expect("the start command runs");
    let threads = std::fs::read_to_string(format!("/proc/{}/status", s.daemon().pid()))
        .expect("the daemon's status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("Threads:")
                .map(|n| n.trim().parse::<usize>())
        })
        .expect("a thread count")
        .expect("a number");
    assert!(
        threads <= 16,
        "{threads} threads: lookups run on a bounded pool"
    );
}

fn burst_of_spoofed_first_knocks(s: &Scene) {
    let flood = Craft::tcp(
        "2001:db8:ffff::".parse().unwrap(),
        SERVER_V6.into(),
        4438,
        SYN,
    )
    .build();
    let (sent, opened_during_flood) = std::thread::scope(|scope| {
        let flooder = scope.spawn(|| {
            s.lab
                .burst_from_client(&flood, 1_000_000, spoofed_first_knock)
        });
        std::thread::sleep(Duration::from_millis(100));
        // At the highest rate the veth pair carries, the receiving queue overflows and drops
        // frames, the client's knocks among them, as a congested link would: the client paces
        // its knocks (knock(1)'s -d) and knocks again when the door stays shut, as people do.
        let mut opened = false;
        for _ in 0..5 {
            s.our_knock(&["-d", "20", "198.51.100.1", "4438", "1813", "8235"]);
            if s.daemon()
                .wait_for(
                    "198.51.100.2: openSSH: OPEN SESAME",
                    Duration::from_millis(500),
                )
                .is_some()
            {
                opened = !flooder.is_finished();
                break;
            }
        }
        (flooder.join().expect("the flooder does not panic"), opened)
    });
    let sent = sent.expect("the burst runs");
    assert!(sent > 100_000, "only {sent} flood frames left");
    assert!(
        opened_during_flood,
        "the door opens for the real client while the flood goes on: {:#?}",
        s.daemon().log()
    );
    s.ssh().expect("the real client connects after the flood");
    assert!(
        s.daemon()
            .wait_for("first-knock lines not logged", WAIT)
            .is_some(),
        "the flood is summarized, not logged line by line"
    );
}

#[test]
fn repeated_one_step_knocks_run_the_start_command_once_while_the_door_is_open() {
    let s = scene("[ping]\nsequence = 5000:udp\ncommand = echo %IP% >> $DIR/started\n");
    for _ in 0..50 {
        s.our_knock(&["198.51.100.1", "5000:udp"]);
    }
    std::thread::sleep(Duration::from_millis(500));
    let started = std::fs::read_to_string(s.dir.path("started")).unwrap();
    assert_eq!(started, "198.51.100.2\n");
    let refreshed = s
        .daemon()
        .log()
        .iter()
        .filter(|l| l.contains("already open"))
        .count();
    assert_eq!(refreshed, 49);
}

#[test]
fn an_ipv6_client_knocks_connects_and_gets_the_ipv6_commands() {
    let s = scene(
        "[openSSH]\nsequence = 4438,1813:udp,8235\ncmd_timeout = 1\n\
         command = echo v4 %IP% >> $DIR/ran\ncommand_6 = echo v6 %IP% >> $DIR/ran\n\
         stop_command = echo v4 stop %IP% >> $DIR/ran\nstop_command_6 = echo v6 stop %IP% >> $DIR/ran\n",
    );
    s.our_knock(&["-6", "2001:db8::1", "4438", "1813:udp", "8235"]);
    assert!(
        s.daemon()
            .wait_for("2001:db8::2: openSSH: OPEN SESAME", WAIT)
            .is_some()
    );
    knock_lab::connects(&s.lab.client, SERVER_V6.into(), 22, Duration::from_secs(1))
        .expect("port 22 accepts the IPv6 client");
    assert!(
        s.daemon()
            .wait_for("openSSH: running command: echo v6 stop 2001:db8::2", WAIT)
            .is_some()
    );
    std::thread::sleep(Duration::from_millis(200));
    let ran = std::fs::read_to_string(s.dir.path("ran")).unwrap();
    assert_eq!(ran, "v6 2001:db8::2\nv6 stop 2001:db8::2\n");
    assert!(
        knock_lab::connects(
            &s.lab.client,
            SERVER_V4.into(),
            22,
            Duration::from_millis(500)
        )
        .is_err(),
        "the IPv4 address of the same host did not knock"
    );
}
