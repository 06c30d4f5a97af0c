use std::path::Path;

use knock_common::ports::GUARDED;
use knock_common::segment::tcp_flags::SYN;

use super::*;
use crate::config::parse;

fn config(text: &str) -> Config {
    parse(Path::new("test.conf"), text).unwrap()
}

fn plan_of(text: &str, served: &[ProtoPort]) -> Plan {
    Plan::new(
        &config(text),
        &served.iter().copied().collect(),
        Switches::default(),
    )
}

#[test]
fn the_guide_door_becomes_one_record_with_its_steps_and_timeouts() {
    let plan = plan_of(
        "[openSSH]\nsequence = 4438,1813,8235\nseq_timeout = 5\ntcpflags = syn\n",
        &[],
    );
    let door = &plan.doors[0];
    assert_eq!(
        door.sequence(),
        [
            ProtoPort::tcp(4438),
            ProtoPort::tcp(1813),
            ProtoPort::tcp(8235)
        ]
    );
    assert_eq!(door.seq_timeout_ns, 5_000_000_000);
    assert_eq!(door.open_ns, 10_000_000_000);
    assert_eq!((door.flags_set, door.flags_clear), (SYN, 0));
    assert_eq!(door.guarded_ports(), [ProtoPort::tcp(22)]);
}

#[test]
fn knock_ports_and_protected_ports_get_their_classes() {
    let plan = plan_of("[d]\nsequence = 7000:udp,8000\n", &[]);
    assert_eq!(
        plan.class_of(ProtoPort::udp(7000)),
        KNOCK | ports::FIRST_STEP
    );
    assert_eq!(plan.class_of(ProtoPort::tcp(7000)), 0);
    assert_eq!(plan.class_of(ProtoPort::tcp(8000)), KNOCK);
    assert_eq!(plan.class_of(ProtoPort::tcp(22)) & GUARDED, GUARDED);
    assert_eq!(plan.class_of(ProtoPort::tcp(80)), 0);
}

#[test]
fn a_served_knock_port_is_marked_to_pass() {
    let plan = plan_of("[d]\nsequence = 80,8000\n", &[ProtoPort::tcp(80)]);
    assert_eq!(
        plan.class_of(ProtoPort::tcp(80)),
        KNOCK | SERVED | ports::FIRST_STEP
    );
    assert_eq!(plan.class_of(ProtoPort::tcp(8000)), KNOCK);
}

#[test]
fn doors_sharing_a_first_knock_share_its_mask() {
    let plan = plan_of(
        "[a]\nsequence = 1,2\n[b]\nsequence = 1,3\n[c]\nsequence = 4\n",
        &[],
    );
    assert_eq!(plan.first_steps[&ProtoPort::tcp(1)], 0b011);
    assert_eq!(plan.first_steps[&ProtoPort::tcp(4)], 0b100);
    assert!(!plan.first_steps.contains_key(&ProtoPort::tcp(2)));
    // The port class tells the program where to look the mask up, and where not to.
    for (port, first) in [(1, true), (2, false), (3, false), (4, true)] {
        assert_eq!(
            ports::may_start(plan.class_of(ProtoPort::tcp(port))),
            first,
            "port {port}"
        );
    }
}

#[test]
fn each_protected_port_gets_a_guard_group_naming_its_doors() {
    let plan = plan_of(
        "[a]\nsequence = 1\n[b]\nsequence = 2\nprotect = 22, 443\n[c]\nsequence = 3\nprotect = none\n",
        &[],
    );
    let group = |port| ports::guard_group(plan.class_of(port)) as usize;
    assert_eq!(plan.guards[group(ProtoPort::tcp(22))], 0b011);
    assert_eq!(plan.guards[group(ProtoPort::tcp(443))], 0b010);
    assert_ne!(group(ProtoPort::tcp(22)), group(ProtoPort::tcp(443)));
    assert_eq!(plan.guards[0], 0, "group 0 means unguarded");
}

#[test]
fn only_strict_doors_are_in_the_strict_mask() {
    let plan = plan_of(
        "[a]\nsequence = 1\n[b]\nsequence = 2\nprogress = knockd\n",
        &[],
    );
    assert_eq!(plan.settings.strict_doors, 0b01);
}

#[test]
fn the_ipv4_only_switch_reaches_the_settings() {
    let plan = Plan::new(
        &config("[a]\nsequence = 1\n"),
        &BTreeSet::new(),
        Switches {
            ipv4_only: true,
            ..Switches::default()
        },
    );
    assert!(plan.settings.ipv4_only());
}

#[test]
fn a_reload_keeps_door_ids_by_name_and_revisions_of_unchanged_doors() {
    let first = plan_of(
        "[a]\nsequence = 1\n[b]\nsequence = 2\n[c]\nsequence = 3\n",
        &[],
    );
    let next = first.next(
        &config("[c]\nsequence = 3\n[b]\nsequence = 20\n[d]\nsequence = 4\n"),
        &BTreeSet::new(),
        Switches::default(),
    );
    assert_eq!(next.id_of("c"), Some(2));
    assert_eq!(next.id_of("b"), Some(1));
    assert_eq!(
        next.doors[2].revision, first.doors[2].revision,
        "c did not change"
    );
    assert_eq!(
        next.doors[1].revision,
        first.doors[1].revision + 1,
        "b changed"
    );
    assert_eq!(
        next.id_of("d"),
        Some(3),
        "a new door takes an id nobody used"
    );
    assert_eq!(next.doors[0].step_count, 0, "a's id is empty now");
    assert_eq!(first.removed_in(&next), [0]);
}

#[test]
fn a_reload_reuses_a_removed_id_only_when_no_fresh_one_is_left() {
    let many: String = (0..MAX_DOORS)
        .map(|i| format!("[d{i}]\nsequence = {}\n", 1000 + i))
        .collect();
    let first = plan_of(&many, &[]);
    let replaced = many.replace("[d5]", "[new]");
    let next = first.next(&config(&replaced), &BTreeSet::new(), Switches::default());
    assert_eq!(next.id_of("new"), Some(5));
    assert_eq!(next.id_of("d6"), Some(6));
}
