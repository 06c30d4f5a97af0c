//! `--observe` in the kernel, and the event of an opening: under observation the program judges
//! every frame as usual and drops none, counts what it passed, and reports a new connection the
//! gate would have dropped, a few per second per CPU. An opening's event carries the length of
//! the sequence (knockd logs `Stage N` for the last knock too), zero for SPA.
use crate::kernel;

use std::net::IpAddr;

use kernel::{DROP, PASS, TX, counter, load_with, verdict};
use knock_common::counter::Counter;
use knock_common::craft::Craft;
use knock_common::event::DoorEvent;
use knock_common::segment::tcp_flags::SYN;
use knock_common::settings::{FILTERED, OBSERVING};
use knock_common::{Addr, ProtoPort};
use knock_user::kernel::Knock;

const DOOR: &str = "[options]\nSPA_Keys = keys\n[openSSH]\nsequence = 4438,1813,8235\nSPA = yes\n";

fn client() -> IpAddr {
    "198.51.100.2".parse().unwrap()
}
fn server() -> IpAddr {
    "198.51.100.1".parse().unwrap()
}
fn syn(port: u16) -> Vec<u8> {
    Craft::tcp(client(), server(), port, SYN).build()
}

/// Observing in the filtered look, where the program drops the most.
fn observing() -> Knock {
    load_with(DOOR, |plan| plan.settings.flags |= OBSERVING | FILTERED)
}

fn events(knock: &mut Knock) -> Vec<DoorEvent> {
    let mut ring = knock.take_events().expect("the event ring");
    std::iter::from_fn(|| {
        ring.next()
            .map(|item| DoorEvent::decode(&item).expect("an event"))
    })
    .collect()
}

#[test]
fn observing_drops_nothing_the_program_would_drop() {
    let knock = observing();
    let mut malformed = syn(22);
    malformed.truncate(14 + 10);
    let spa = Craft::udp(client(), server(), knock_common::spa::DEFAULT_PORT).build();
    for (what, frame) in [
        ("a SYN to SSH without a knock", syn(22)),
        ("a knock", syn(4438)),
        ("a malformed frame", malformed),
        ("an SPA datagram", spa),
    ] {
        assert_eq!(verdict(&knock, &frame), PASS, "{what}");
    }
    assert_eq!(counter(&knock, Counter::ObservePassed), 4);
    // The program still judged: the counters say what it would have done.
    assert_eq!(counter(&knock, Counter::GateDropped), 1);
    assert_eq!(counter(&knock, Counter::KnockPortDropped), 1);
    assert_eq!(counter(&knock, Counter::Malformed), 1);
    assert_eq!(counter(&knock, Counter::SpaMalformed), 1);
    assert_eq!(counter(&knock, Counter::KnockAccepted), 1);
}

#[test]
fn without_observing_the_same_frames_are_dropped() {
    let knock = load_with(DOOR, |plan| plan.settings.flags |= FILTERED);
    assert_eq!(verdict(&knock, &syn(22)), DROP);
    assert_eq!(verdict(&knock, &syn(4438)), DROP);
    assert_eq!(counter(&knock, Counter::ObservePassed), 0);
}

#[test]
fn observing_in_the_closed_look_answers_nothing_and_passes_the_syn() {
    let closed = load_with(DOOR, |_| {});
    assert_eq!(
        verdict(&closed, &syn(22)),
        TX,
        "the closed look answers with a reset"
    );
    let observed = load_with(DOOR, |plan| plan.settings.flags |= OBSERVING);
    assert_eq!(verdict(&observed, &syn(22)), PASS);
    assert_eq!(counter(&observed, Counter::GateDropped), 1);
    assert_eq!(counter(&observed, Counter::ResetSent), 0);
}

#[test]
fn a_would_be_drop_is_reported_with_source_and_port_within_a_budget() {
    let mut knock = observing();
    for _ in 0..50 {
        assert_eq!(verdict(&knock, &syn(22)), PASS);
    }
    assert_eq!(counter(&knock, Counter::ObservePassed), 50);
    let reported: Vec<DoorEvent> = events(&mut knock)
        .into_iter()
        .filter(|e| matches!(e, DoorEvent::WouldDrop { .. }))
        .collect();
    // test_run runs on this CPU: one CPU's budget for the second.
    assert_eq!(reported.len(), 10, "{reported:?}");
    assert_eq!(
        reported[0],
        DoorEvent::WouldDrop {
            source: Addr::from(client()),
            port: ProtoPort::tcp(22),
        }
    );
}

#[test]
fn under_observation_knocks_still_open_the_door_and_the_opening_says_its_length() {
    let mut knock = observing();
    for port in [4438, 1813, 8235] {
        assert_eq!(verdict(&knock, &syn(port)), PASS);
    }
    assert_eq!(counter(&knock, Counter::DoorOpened), 1);
    assert_eq!(verdict(&knock, &syn(22)), PASS);
    assert_eq!(counter(&knock, Counter::GateAllowed), 1);
    let opened: Vec<DoorEvent> = events(&mut knock)
        .into_iter()
        .filter(|e| matches!(e, DoorEvent::Opened { .. }))
        .collect();
    assert!(
        matches!(opened[..], [DoorEvent::Opened { steps: 3, .. }]),
        "{opened:?}"
    );
}
