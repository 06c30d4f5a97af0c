//! Exact verdicts of the loaded XDP program on crafted frames, through BPF_PROG_TEST_RUN.
//! Needs root and a kernel with BPF: `cargo xtask test` runs it.
use crate::kernel;

use std::net::IpAddr;
use std::time::Duration;

use kernel::{DROP, PASS, TX, counter, load_with, sources_in_progress, verdict};
use knock_common::Addr;
use knock_common::counter::Counter;
use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::{ACK, SYN};
use knock_user::kernel::Knock;

const GUIDE: &str = "[options]\n        UseSyslog\n\n[openSSH]\n        sequence    = 4438,1813,8235\n        seq_timeout = 5\n        command     = /sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT\n        tcpflags    = syn\n";

fn client() -> IpAddr {
    "198.51.100.2".parse().unwrap()
}
fn server() -> IpAddr {
    "198.51.100.1".parse().unwrap()
}

fn guide() -> Knock {
    load_with(GUIDE, |_| {})
}

fn syn(port: u16) -> Vec<u8> {
    Craft::tcp(client(), server(), port, SYN).build()
}

fn knock_sequence(knock: &Knock) {
    for port in [4438, 1813, 8235] {
        assert_eq!(verdict(knock, &syn(port)), PASS, "knock on {port}");
    }
}

#[test]
fn a_knock_goes_on_to_the_host_like_any_packet_to_a_closed_port_and_counts() {
    let mut knock = guide();
    assert_eq!(verdict(&knock, &syn(4438)), PASS);
    assert_eq!(counter(&knock, Counter::KnockAccepted), 1);
    assert_eq!(counter(&knock, Counter::KnockPortDropped), 0);
    let progress = knock.progress().unwrap();
    let entry = progress
        .get(&Addr::from(client()), 0)
        .expect("progress for the source");
    assert_eq!(entry.attempts[0].stage, 1);
}

#[test]
fn an_unknocked_syn_to_ssh_is_answered_with_a_reset_built_in_xdp() {
    let knock = guide();
    assert_eq!(verdict(&knock, &syn(22)), TX);
    assert_eq!(counter(&knock, Counter::GateDropped), 1);
    assert_eq!(counter(&knock, Counter::ResetSent), 1);
}

#[test]
fn in_the_filtered_look_knocks_and_unknocked_syns_vanish() {
    let knock = load_with(GUIDE, |plan| {
        plan.settings.flags |= knock_common::settings::Look::Filtered.flags();
    });
    assert_eq!(verdict(&knock, &syn(4438)), DROP);
    assert_eq!(counter(&knock, Counter::KnockPortDropped), 1);
    assert_eq!(counter(&knock, Counter::KnockAccepted), 1);
    assert_eq!(verdict(&knock, &syn(22)), DROP);
    assert_eq!(counter(&knock, Counter::ResetSent), 0);
    // The SYN to 22 reset the attempt (the strict rule): the whole sequence again.
    for port in [4438, 1813, 8235] {
        assert_eq!(verdict(&knock, &syn(port)), DROP);
    }
    assert_eq!(
        counter(&knock, Counter::DoorOpened),
        1,
        "the sequence opens"
    );
    assert_eq!(verdict(&knock, &syn(22)), PASS);
}

#[test]
fn a_syn_to_ssh_passes_after_the_sequence() {
    let mut knock = guide();
    knock_sequence(&knock);
    assert_eq!(counter(&knock, Counter::DoorOpened), 1);
    assert_eq!(verdict(&knock, &syn(22)), PASS);
    assert_eq!(counter(&knock, Counter::GateAllowed), 1);
    assert_eq!(
        sources_in_progress(&mut knock),
        0,
        "a completed attempt leaves no progress"
    );
}

#[test]
fn the_door_opens_for_the_knocking_source_alone() {
    let knock = guide();
    knock_sequence(&knock);
    let other = Craft::tcp("198.51.100.3".parse().unwrap(), server(), 22, SYN).build();
    assert_eq!(verdict(&knock, &other), TX);
}

#[test]
fn an_ack_to_ssh_passes_without_a_knock() {
    let knock = guide();
    let ack = Craft::tcp(client(), server(), 22, ACK).build();
    assert_eq!(verdict(&knock, &ack), PASS);
}

#[test]
fn unrelated_traffic_passes() {
    let knock = guide();
    assert_eq!(verdict(&knock, &syn(80)), PASS);
    assert_eq!(
        verdict(&knock, &Craft::udp(client(), server(), 53).build()),
        PASS
    );
    let v6 = Craft::tcp(
        "2001:db8::2".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        443,
        SYN,
    );
    assert_eq!(verdict(&knock, &v6.build()), PASS);
    let mut arp = syn(80);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(verdict(&knock, &arp), PASS);
}

#[test]
fn knocks_out_of_order_keep_the_door_shut() {
    let knock = guide();
    for port in [4438, 8235, 1813] {
        verdict(&knock, &syn(port));
    }
    assert_eq!(verdict(&knock, &syn(22)), TX);
    assert_eq!(counter(&knock, Counter::AttemptReset), 1);
}

#[test]
fn a_connection_to_another_port_between_knocks_resets_the_attempt() {
    let knock = guide();
    verdict(&knock, &syn(4438));
    verdict(&knock, &syn(80));
    verdict(&knock, &syn(1813));
    verdict(&knock, &syn(8235));
    assert_eq!(verdict(&knock, &syn(22)), TX);
}

#[test]
fn a_retransmitted_knock_is_tolerated() {
    let knock = guide();
    for port in [4438, 4438, 1813, 1813, 8235] {
        verdict(&knock, &syn(port));
    }
    assert_eq!(verdict(&knock, &syn(22)), PASS);
}

#[test]
fn the_kernel_enforces_the_sequence_timeout() {
    let knock = load_with(GUIDE, |plan| plan.doors[0].seq_timeout_ns = 100_000_000);
    verdict(&knock, &syn(4438));
    verdict(&knock, &syn(1813));
    std::thread::sleep(Duration::from_millis(150));
    verdict(&knock, &syn(8235));
    assert_eq!(verdict(&knock, &syn(22)), TX);
    assert_eq!(counter(&knock, Counter::AttemptTimedOut), 1);
}

#[test]
fn the_kernel_closes_the_door_after_cmd_timeout() {
    let knock = load_with(GUIDE, |plan| plan.doors[0].open_ns = 100_000_000);
    knock_sequence(&knock);
    assert_eq!(verdict(&knock, &syn(22)), PASS);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(verdict(&knock, &syn(22)), TX);
    let ack = Craft::tcp(client(), server(), 22, ACK).build();
    assert_eq!(
        verdict(&knock, &ack),
        PASS,
        "an established session outlives its door"
    );
}

#[test]
fn a_repeated_sequence_refreshes_an_open_door_instead_of_opening_it_again() {
    let knock = guide();
    knock_sequence(&knock);
    knock_sequence(&knock);
    assert_eq!(counter(&knock, Counter::DoorOpened), 1);
    assert_eq!(counter(&knock, Counter::DoorRefreshed), 1);
}

#[test]
fn truncated_frames_never_count_as_a_knock_nor_open_anything() {
    let mut knock = guide();
    for port in [4438, 1813, 8235] {
        let frame = syn(port);
        // XDP never sees less than an Ethernet header, and test_run refuses shorter input.
        for len in 14..frame.len() {
            verdict(&knock, &frame[..len]);
        }
    }
    assert_eq!(counter(&knock, Counter::KnockAccepted), 0);
    assert_eq!(sources_in_progress(&mut knock), 0);
    assert_eq!(verdict(&knock, &syn(22)), TX);
}

#[test]
fn an_ipv6_source_knocks_and_connects_like_an_ipv4_one() {
    let knock = guide();
    let (c, s): (IpAddr, IpAddr) = (
        "2001:db8::2".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    );
    for port in [4438, 1813, 8235] {
        assert_eq!(verdict(&knock, &Craft::tcp(c, s, port, SYN).build()), PASS);
    }
    assert_eq!(verdict(&knock, &Craft::tcp(c, s, 22, SYN).build()), PASS);
    assert_eq!(
        verdict(&knock, &syn(22)),
        TX,
        "the IPv4 client did not knock"
    );
}

#[test]
fn the_sweeper_removes_stale_progress_and_closed_passes() {
    let mut knock = load_with(GUIDE, |plan| {
        plan.doors[0].seq_timeout_ns = 50_000_000;
        plan.doors[0].open_ns = 50_000_000;
    });
    knock_sequence(&knock);
    let late = Craft::tcp("198.51.100.9".parse().unwrap(), server(), 4438, SYN).build();
    verdict(&knock, &late);
    assert_eq!(sources_in_progress(&mut knock), 1);
    assert_eq!(knock.gate().unwrap().keys().count(), 1);
    std::thread::sleep(Duration::from_millis(80));
    let now = knock_user::system::clock::monotonic_ns();
    let doors = knock.pushed_doors();
    let timeouts = knock_user::kernel::sweep::progress(&mut knock.progress().unwrap(), &doors, now);
    assert_eq!(timeouts.len(), 1);
    assert_eq!(sources_in_progress(&mut knock), 0);
    assert_eq!(
        knock_user::kernel::sweep::gate(&mut knock.gate().unwrap(), now),
        0
    );
    assert_eq!(knock.gate().unwrap().keys().count(), 0);
}

#[test]
fn a_door_with_a_target_hears_only_knocks_to_that_address() {
    let knock = load_with("[t]\nsequence = 4438,1813\ntarget = 198.51.100.4\n", |_| {});
    let alt: IpAddr = "198.51.100.4".parse().unwrap();
    verdict(&knock, &syn(4438));
    verdict(&knock, &syn(1813));
    assert_eq!(counter(&knock, Counter::KnockAccepted), 0);
    verdict(&knock, &Craft::tcp(client(), alt, 4438, SYN).build());
    verdict(&knock, &Craft::tcp(client(), alt, 1813, SYN).build());
    assert_eq!(counter(&knock, Counter::DoorOpened), 1);
    assert_eq!(verdict(&knock, &syn(22)), PASS);
}

/// The guide's door made single-use, as a one-time line or a rotating period is, claimed
/// under `tag`.
fn single_use(tag: u64) -> impl FnOnce(&mut knock_user::plan::Plan) {
    move |plan| {
        plan.doors[0].flags |= knock_common::door::ONCE;
        plan.doors[0].spent_tag = tag;
    }
}

#[test]
fn a_used_single_use_sequence_never_opens_again_even_when_it_is_pushed_again() {
    let mut knock = load_with(GUIDE, single_use(0x5eed));
    knock_sequence(&knock);
    assert_eq!(
        verdict(&knock, &syn(22)),
        PASS,
        "the first use opens the door"
    );
    let spent = knock.spent().expect("the claimed tags");
    assert!(spent.contains_key(&0x5eed), "{spent:?}");

    // What a restart, a lost OPENED event or a one-time file that cannot be marked amounts
    // to: the daemon pushes the used sequence again (as a record the kernel has not emptied:
    // pushes write only what changed, so the revision tells it apart).
    knock
        .push(&kernel::plan_for(GUIDE, |plan| {
            single_use(0x5eed)(plan);
            plan.doors[0].revision += 1;
        }))
        .expect("the plan is written again");
    let other: IpAddr = "198.51.100.3".parse().unwrap();
    for port in [4438, 1813, 8235] {
        verdict(&knock, &Craft::tcp(other, server(), port, SYN).build());
    }
    let replay = Craft::tcp(other, server(), 22, SYN).build();
    assert_eq!(verdict(&knock, &replay), TX, "the replay opens nothing");
    assert_eq!(counter(&knock, Counter::DoorOpened), 1);
    assert_eq!(counter(&knock, Counter::SingleUseRefused), 1);
    let mut ring = knock.take_events().expect("the event ring");
    let mut told = false;
    while let Some(item) = ring.next() {
        told |= knock_common::event::DoorEvent::decode(&item)
            == Ok(knock_common::event::DoorEvent::SpentRefused {
                source: Addr::from(other),
                door: 0,
                no_room: false,
            });
    }
    assert!(told, "the daemon hears of the refusal");

    // A new line (a new tag) opens again, for the next source.
    knock
        .push(&kernel::plan_for(GUIDE, single_use(0x5eee)))
        .expect("the next sequence is written");
    for port in [4438, 1813, 8235] {
        verdict(&knock, &Craft::tcp(other, server(), port, SYN).build());
    }
    assert_eq!(verdict(&knock, &replay), PASS, "the next sequence works");
}

#[test]
fn a_single_use_sequence_completed_by_two_sources_at_once_opens_for_one() {
    let mut knock = load_with(GUIDE, single_use(1));
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    for round in 1..=100u16 {
        knock
            .push(&kernel::plan_for(GUIDE, single_use(u64::from(round))))
            .expect("a fresh single-use sequence");
        let sources: [IpAddr; 2] = [
            format!("2001:db8::{round:x}:1").parse().unwrap(),
            format!("2001:db8::{round:x}:2").parse().unwrap(),
        ];
        let s: IpAddr = "2001:db8::1".parse().unwrap();
        for source in sources {
            for port in [4438, 1813] {
                assert_eq!(
                    verdict(&knock, &Craft::tcp(source, s, port, SYN).build()),
                    PASS
                );
            }
        }
        let opened_before = counter(&knock, Counter::DoorOpened);
        let barrier = std::sync::Barrier::new(2);
        let finals: Vec<Vec<u8>> = sources
            .iter()
            .map(|&source| Craft::tcp(source, s, 8235, SYN).build())
            .collect();
        let program = knock.program().expect("the program");
        std::thread::scope(|scope| {
            for (cpu, frame) in finals.iter().enumerate() {
                let barrier = &barrier;
                scope.spawn(move || {
                    on_cpu(cpu % cpus);
                    barrier.wait();
                    kernel::run_once(program, frame);
                });
            }
        });
        assert_eq!(
            counter(&knock, Counter::DoorOpened) - opened_before,
            1,
            "round {round}: the sequence opened the door once"
        );
        let admitted = sources
            .iter()
            .filter(|&&source| verdict(&knock, &Craft::tcp(source, s, 22, SYN).build()) == PASS)
            .count();
        assert_eq!(admitted, 1, "round {round}: one of the two sources gets in");
    }
}

/// Moves the calling thread to one CPU, so two threads run the program at the same time.
fn on_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}
