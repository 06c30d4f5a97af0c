use std::vec::Vec;

use super::*;
use crate::segment::{PROTO_TCP, PROTO_UDP, tcp_flags};
use crate::{Addr, MAX_STEPS, ProgressRule, ProtoPort};

const SECOND: u64 = 1_000_000_000;

#[derive(Default)]
struct Recorder(Vec<(u8, Change)>);

impl Observer for Recorder {
    fn observe(&mut self, door: u8, _: &Door, change: Change) {
        self.0.push((door, change));
    }
}

fn door(steps: &[ProtoPort]) -> Door {
    let mut d = Door::new();
    d.steps[..steps.len()].copy_from_slice(steps);
    d.step_count = steps.len() as u8;
    d.seq_timeout_ns = 5 * SECOND;
    d
}

fn knockd(mut d: Door) -> Door {
    d.rule = ProgressRule::Knockd as u8;
    d
}

fn packet(proto: u8, port: u16, flags: u8) -> Segment {
    Segment {
        src: Addr::from_ipv4([198, 51, 100, 2]),
        dst: Addr::from_ipv4([198, 51, 100, 1]),
        proto,
        dport: port,
        tcp_flags: flags,
        unicast: true,
        fragment: false,
        to_host: true,
        payload_at: 0,
        payload_len: 0,
    }
}

fn syn(port: u16) -> Segment {
    packet(PROTO_TCP, port, tcp_flags::SYN)
}

fn udp(port: u16) -> Segment {
    packet(PROTO_UDP, port, 0)
}

/// A source knocking on a set of doors, with the kernel's port tables derived from them.
struct Knocker {
    doors: Vec<Door>,
    progress: Progress,
    seen: Recorder,
}

impl Knocker {
    fn new(doors: Vec<Door>) -> Self {
        Self {
            doors,
            progress: Progress::default(),
            seen: Recorder::default(),
        }
    }

    fn send(&mut self, packet: Segment, at_s: f64) -> Vec<(u8, Change)> {
        let mut first = 0u64;
        let mut knock_port = false;
        for (id, d) in self.doors.iter().enumerate() {
            if d.step(0).is(&packet) {
                first |= 1 << id;
            }
            knock_port |= d.sequence().iter().any(|s| s.is(&packet));
        }
        self.seen.0.clear();
        let arrival = Arrival {
            segment: &packet,
            first_step_doors: first,
            at_knock_port: knock_port,
        };
        advance(
            &mut self.progress,
            self.doors.as_slice(),
            &arrival,
            (at_s * SECOND as f64) as u64,
            &mut self.seen,
        );
        core::mem::take(&mut self.seen.0)
    }

    fn sends(&mut self, packets: &[Segment]) -> Vec<(u8, Change)> {
        let mut all = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            all.extend(self.send(*p, i as f64 * 0.1));
        }
        all
    }
}

fn guide_door() -> Door {
    door(&[
        ProtoPort::tcp(4438),
        ProtoPort::tcp(1813),
        ProtoPort::tcp(8235),
    ])
}

#[test]
fn knocks_in_order_open_the_door() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    let seen = k.sends(&[syn(4438), syn(1813), syn(8235)]);
    assert_eq!(
        seen,
        [
            (0, Change::Stage(1)),
            (0, Change::Stage(2)),
            (0, Change::Opened)
        ]
    );
    assert!(k.progress.is_empty());
}

#[test]
fn knocks_out_of_order_never_open() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    let seen = k.sends(&[syn(4438), syn(8235), syn(1813)]);
    assert_eq!(seen, [(0, Change::Stage(1)), (0, Change::Reset(1))]);
    assert!(k.progress.is_empty());
}

#[test]
fn the_packet_that_resets_does_not_start_a_new_attempt() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    let seen = k.sends(&[syn(4438), syn(1813), syn(4438)]);
    assert_eq!(
        seen,
        [
            (0, Change::Stage(1)),
            (0, Change::Stage(2)),
            (0, Change::Reset(2))
        ]
    );
    assert_eq!(k.send(syn(4438), 1.0), [(0, Change::Stage(1))]);
}

#[test]
fn a_repeated_knock_neither_advances_nor_resets() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    let seen = k.sends(&[syn(4438), syn(4438), syn(1813), syn(1813), syn(8235)]);
    assert_eq!(
        seen,
        [
            (0, Change::Stage(1)),
            (0, Change::Stage(2)),
            (0, Change::Opened)
        ]
    );
}

#[test]
fn strict_rule_resets_on_a_connection_to_any_other_port() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    k.send(syn(4438), 0.0);
    assert_eq!(k.send(syn(80), 0.1), [(0, Change::Reset(1))]);
}

#[test]
fn strict_rule_resets_on_a_datagram_to_any_other_port() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    k.send(syn(4438), 0.0);
    assert_eq!(k.send(udp(53), 0.1), [(0, Change::Reset(1))]);
}

#[test]
fn strict_rule_ignores_packets_of_established_connections() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    k.send(syn(4438), 0.0);
    assert_eq!(k.send(packet(PROTO_TCP, 22, tcp_flags::ACK), 0.1), []);
    assert_eq!(k.send(syn(1813), 0.2), [(0, Change::Stage(2))]);
}

#[test]
fn knockd_rule_ignores_ports_outside_every_sequence() {
    let mut k = Knocker::new(std::vec![knockd(guide_door())]);
    let seen = k.sends(&[syn(4438), syn(80), udp(53), syn(1813), syn(8235)]);
    assert_eq!(
        seen,
        [
            (0, Change::Stage(1)),
            (0, Change::Stage(2)),
            (0, Change::Opened)
        ]
    );
}

#[test]
fn knockd_rule_resets_on_a_port_of_another_sequence() {
    let other = knockd(door(&[ProtoPort::tcp(9000), ProtoPort::tcp(9001)]));
    let mut k = Knocker::new(std::vec![knockd(guide_door()), other]);
    k.send(syn(4438), 0.0);
    assert_eq!(k.send(syn(9001), 0.1), [(0, Change::Reset(1))]);
}

#[test]
fn an_attempt_times_out_counted_from_its_first_knock() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    k.send(syn(4438), 0.0);
    k.send(syn(1813), 4.0);
    assert_eq!(
        k.send(syn(8235), 5.5),
        [(0, Change::TimedOut(2))],
        "5.5 s after the first knock, a 5 s sequence is over"
    );
}

#[test]
fn a_timed_out_attempt_can_restart_with_the_same_packet() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    k.send(syn(4438), 0.0);
    assert_eq!(
        k.send(syn(4438), 6.0),
        [(0, Change::TimedOut(1)), (0, Change::Stage(1))]
    );
}

#[test]
fn expire_ends_only_stale_attempts() {
    let mut k = Knocker::new(std::vec![
        guide_door(),
        door(&[ProtoPort::tcp(4438), ProtoPort::tcp(7)])
    ]);
    k.doors[1].seq_timeout_ns = 60 * SECOND;
    k.send(syn(4438), 0.0);
    let mut seen = Recorder::default();
    expire(&mut k.progress, k.doors.as_slice(), 10 * SECOND, &mut seen);
    assert_eq!(seen.0, [(0, Change::TimedOut(1))]);
    assert!(!k.progress.is_empty());
}

#[test]
fn doors_sharing_a_first_knock_are_tracked_side_by_side() {
    let a = door(&[
        ProtoPort::tcp(1000),
        ProtoPort::tcp(2000),
        ProtoPort::tcp(3000),
    ]);
    let b = door(&[
        ProtoPort::tcp(1000),
        ProtoPort::tcp(2000),
        ProtoPort::tcp(4000),
    ]);
    let mut k = Knocker::new(std::vec![a, b]);
    assert_eq!(
        k.sends(&[syn(1000), syn(2000)]),
        [
            (0, Change::Stage(1)),
            (1, Change::Stage(1)),
            (0, Change::Stage(2)),
            (1, Change::Stage(2))
        ]
    );
    assert_eq!(
        k.send(syn(4000), 0.3),
        [(0, Change::Reset(2)), (1, Change::Opened)]
    );
}

#[test]
fn a_packet_that_ends_an_attempt_starts_no_other_door() {
    let alpha = door(&[
        ProtoPort::tcp(7001),
        ProtoPort::tcp(7002),
        ProtoPort::tcp(7003),
    ]);
    let beta = door(&[ProtoPort::tcp(8001), ProtoPort::tcp(8002)]);
    let mut k = Knocker::new(std::vec![alpha, beta]);
    let seen = k.sends(&[syn(7001), syn(7002), syn(8001), syn(8002)]);
    assert_eq!(
        seen,
        [
            (0, Change::Stage(1)),
            (0, Change::Stage(2)),
            (0, Change::Reset(2))
        ],
        "as in knockd, 8001 only ends alpha, and 8002 then starts nothing"
    );
}

#[test]
fn a_packet_that_advances_an_attempt_starts_no_other_door() {
    let alpha = door(&[
        ProtoPort::tcp(7001),
        ProtoPort::tcp(7002),
        ProtoPort::tcp(7003),
    ]);
    let beta = door(&[ProtoPort::tcp(7002), ProtoPort::tcp(8002)]);
    let mut k = Knocker::new(std::vec![alpha, beta]);
    let seen = k.sends(&[syn(7001), syn(7002), syn(8002)]);
    assert_eq!(
        seen,
        [
            (0, Change::Stage(1)),
            (0, Change::Stage(2)),
            (0, Change::Reset(2))
        ]
    );
}

#[test]
fn a_thirty_two_step_sequence_opens_only_at_its_last_knock() {
    let steps: Vec<ProtoPort> = (0..MAX_STEPS as u16)
        .map(|i| {
            if i % 2 == 0 {
                ProtoPort::tcp(10_000 + i)
            } else {
                ProtoPort::udp(20_000 + i)
            }
        })
        .collect();
    let mut k = Knocker::new(std::vec![door(&steps)]);
    let packets: Vec<Segment> = steps
        .iter()
        .map(|s| packet(s.proto, s.port, tcp_flags::SYN))
        .collect();
    let seen = k.sends(&packets);
    assert_eq!(seen.len(), MAX_STEPS);
    assert_eq!(seen[MAX_STEPS - 2], (0, Change::Stage(31)));
    assert_eq!(seen[MAX_STEPS - 1], (0, Change::Opened));
}

#[test]
fn a_one_step_door_opens_on_its_only_knock() {
    let mut k = Knocker::new(std::vec![door(&[ProtoPort::udp(5000)])]);
    assert_eq!(k.send(udp(5000), 0.0), [(0, Change::Opened)]);
    assert!(k.progress.is_empty());
}

#[test]
fn tcp_packets_without_the_required_flags_are_ignored() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    assert_eq!(k.send(packet(PROTO_TCP, 4438, tcp_flags::ACK), 0.0), []);
    assert_eq!(
        k.send(
            packet(PROTO_TCP, 4438, tcp_flags::SYN | tcp_flags::ACK),
            0.1
        ),
        [],
        "the default rule wants SYN without ACK"
    );
    k.send(syn(4438), 0.2);
    assert_eq!(k.send(packet(PROTO_TCP, 1813, tcp_flags::FIN), 0.3), []);
    assert_eq!(k.send(syn(1813), 0.4), [(0, Change::Stage(2))]);
}

#[test]
fn negated_flags_are_honoured() {
    let mut d = guide_door();
    d.flags_set = tcp_flags::FIN;
    d.flags_clear = tcp_flags::SYN;
    let mut k = Knocker::new(std::vec![d]);
    assert_eq!(k.send(syn(4438), 0.0), []);
    let fin = packet(PROTO_TCP, 4438, tcp_flags::FIN);
    assert_eq!(k.send(fin, 0.1), [(0, Change::Stage(1))]);
}

#[test]
fn protocol_is_part_of_the_step() {
    let mut k = Knocker::new(std::vec![door(&[
        ProtoPort::udp(4438),
        ProtoPort::tcp(1813)
    ])]);
    assert_eq!(k.send(syn(4438), 0.0), []);
    assert_eq!(k.send(udp(4438), 0.1), [(0, Change::Stage(1))]);
    assert_eq!(k.send(syn(1813), 0.2), [(0, Change::Opened)]);
}

#[test]
fn a_door_with_a_target_hears_only_knocks_sent_to_it() {
    let mut d = guide_door();
    d.has_target = 1;
    d.target = Addr::from_ipv4([203, 0, 113, 9]);
    let mut k = Knocker::new(std::vec![d]);
    assert_eq!(k.send(syn(4438), 0.0), []);
    let mut to_target = syn(4438);
    to_target.dst = d.target;
    to_target.to_host = false;
    assert_eq!(k.send(to_target, 0.1), [(0, Change::Stage(1))]);
    assert_eq!(
        k.send(syn(80), 0.2),
        [],
        "packets to other addresses are unseen"
    );
}

#[test]
fn broadcasts_and_fragments_are_never_knocks() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    let mut broadcast = udp(4438);
    broadcast.unicast = false;
    let mut fragment = syn(4438);
    fragment.fragment = true;
    assert_eq!(k.send(broadcast, 0.0), []);
    assert_eq!(k.send(fragment, 0.1), []);
}

#[test]
fn a_source_runs_out_of_attempt_slots_gracefully() {
    let doors: Vec<Door> = (0..ATTEMPTS_PER_SOURCE as u16 + 1)
        .map(|i| door(&[ProtoPort::tcp(1), ProtoPort::tcp(100 + i)]))
        .collect();
    let mut k = Knocker::new(doors);
    let seen = k.send(syn(1), 0.0);
    assert_eq!(seen.len(), ATTEMPTS_PER_SOURCE + 1);
    assert_eq!(seen[ATTEMPTS_PER_SOURCE], (8, Change::Crowded));
}

#[test]
fn a_vanished_door_drops_its_attempt() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    k.send(syn(4438), 0.0);
    k.doors.clear();
    assert_eq!(k.send(syn(1813), 0.1), []);
    assert!(k.progress.is_empty());
}

#[test]
fn lowest_bit_finds_every_position() {
    for i in 0..64 {
        assert_eq!(lowest_bit(1 << i), i as u8);
        assert_eq!(lowest_bit((1 << i) | (1u64 << 63)), i as u8);
    }
}

#[test]
fn an_attempt_ends_when_its_door_changes_revision() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    k.send(syn(4438), 0.0);
    k.doors[0].revision = 1;
    assert_eq!(k.send(syn(1813), 0.1), []);
    assert!(k.progress.is_empty());
    assert_eq!(k.send(syn(4438), 0.2), [(0, Change::Stage(1))]);
    assert_eq!(k.progress.attempts[0].revision, 1);
}

#[test]
fn packets_to_another_host_are_never_knocks() {
    let mut k = Knocker::new(std::vec![guide_door()]);
    let mut elsewhere = syn(4438);
    elsewhere.dst = Addr::from_ipv4([198, 51, 100, 9]);
    elsewhere.to_host = false;
    assert_eq!(k.send(elsewhere, 0.0), []);
    k.send(syn(4438), 0.1);
    let mut contact = syn(80);
    contact.dst = Addr::from_ipv4([198, 51, 100, 9]);
    contact.to_host = false;
    assert_eq!(
        k.send(contact, 0.2),
        [],
        "a connection routed elsewhere does not reset"
    );
}
