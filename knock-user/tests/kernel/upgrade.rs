//! An upgrade: the earlier daemon's program object goes on running on the interfaces until the
//! new daemon takes its links over, and must hand packets to its own programs with its own
//! scratch slot all along, whatever the new object pins beside it. The earlier object is this
//! one loaded under another fingerprint (`Knock::load_as_object`, which only the privileged
//! tests have); the test runs stand for the interfaces.
use crate::kernel;

use std::net::IpAddr;

use kernel::{PASS, TX, plan_for, sources_with_open_doors, verdict};
use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_lab::BpfMount;
use knock_user::kernel::pins::StateDir;
use knock_user::kernel::{Capacities, Knock};

const GUIDE: &str = "[openSSH]\n        sequence    = 4438,1813,8235\n        seq_timeout = 5\n        tcpflags    = syn\n";
/// The earlier version's program object.
const EARLIER: &str = "0badf00d";
const CAPACITIES: Capacities = Capacities {
    progress: 1024,
    gate: 256,
    reserve: 64,
};

fn syn(port: u16) -> Vec<u8> {
    let client: IpAddr = "198.51.100.2".parse().unwrap();
    let server: IpAddr = "198.51.100.1".parse().unwrap();
    Craft::tcp(client, server, port, SYN).build()
}

/// A state directory in a private bpffs.
fn state(mount: &BpfMount) -> StateDir {
    let dir = StateDir::at(mount.path().join("veth-upgrade"));
    std::fs::create_dir_all(dir.path()).expect("a directory in the bpffs");
    dir
}

/// The earlier daemon's object, running with the guide's plan, and the new daemon's, loaded on
/// the same pinned state and ready to take the links over.
fn earlier_and_later(dir: &StateDir) -> (Knock, Knock) {
    let plan = plan_for(GUIDE, |_| {});
    let mut earlier =
        Knock::load_as_object(CAPACITIES, Some(dir), EARLIER).expect("the earlier object loads");
    earlier.push(&plan).expect("the earlier plan is pushed");
    earlier
        .fill_handoff()
        .expect("the earlier hand-over is filled");
    let mut later = Knock::load(CAPACITIES, false, Some(dir)).expect("the new object loads");
    later.push(&plan).expect("the new plan is pushed");
    later.fill_handoff().expect("the new hand-over is filled");
    (earlier, later)
}

#[test]
fn until_its_links_are_taken_over_the_earlier_object_judges_with_its_own_programs() {
    let mount = BpfMount::new("upgrade-judges").expect("a private bpffs");
    let dir = state(&mount);
    let (earlier, mut later) = earlier_and_later(&dir);
    assert_eq!(
        verdict(&earlier, &syn(22)),
        TX,
        "the earlier object's gate program refuses a stranger (its reset)"
    );
    for port in [4438, 1813, 8235] {
        assert_eq!(verdict(&earlier, &syn(port)), PASS, "knock on {port}");
    }
    assert_eq!(
        sources_with_open_doors(&mut later),
        1,
        "the earlier object's open program opened the door, in the shared gate"
    );
    assert_eq!(verdict(&earlier, &syn(22)), PASS, "the door is open");
}

#[test]
fn the_earlier_objects_hand_over_pins_stay_until_the_new_object_releases_them() {
    let mount = BpfMount::new("upgrade-pins").expect("a private bpffs");
    let dir = state(&mount);
    let (_earlier, later) = earlier_and_later(&dir);
    let earlier_pins = [dir.handoff_path(EARLIER), dir.scratch_path(EARLIER)];
    for pin in &earlier_pins {
        assert!(
            pin.exists(),
            "{} stays while links may run it",
            pin.display()
        );
    }
    later.release_other_objects();
    for pin in &earlier_pins {
        assert!(!pin.exists(), "{} goes once released", pin.display());
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("the state directory reads")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("HANDOFF") || name.starts_with("SCRATCH"))
        .collect();
    assert_eq!(names.len(), 2, "the new object's own stay: {names:?}");
}

/// The guide with the client always allowed: the gate program, not the fast lane, admits it.
const ALLOWING: &str = "[options]\n        Always_Allow = 198.51.100.2\n\n[openSSH]\n        sequence    = 4438,1813,8235\n        tcpflags    = syn\n";

#[test]
fn a_restart_of_the_same_object_leaves_the_hand_over_to_the_earlier_programs_until_its_plan_is_pushed()
 {
    let mount = BpfMount::new("restart-handoff").expect("a private bpffs");
    let dir = state(&mount);
    let plan = plan_for(ALLOWING, |_| {});
    let mut earlier = Knock::load(CAPACITIES, false, Some(&dir)).expect("the object loads");
    earlier.push(&plan).expect("the plan is pushed");
    earlier.fill_handoff().expect("the hand-over is filled");
    assert_eq!(
        verdict(&earlier, &syn(22)),
        PASS,
        "the client is always allowed"
    );
    let mut later = Knock::load(CAPACITIES, false, Some(&dir)).expect("the object loads again");
    assert_eq!(
        verdict(&earlier, &syn(22)),
        PASS,
        "the earlier programs judge, not the new ones with maps not pushed yet"
    );
    later.push(&plan).expect("the plan is pushed again");
    later.fill_handoff().expect("the hand-over is filled again");
    assert_eq!(verdict(&earlier, &syn(22)), PASS, "and the new ones after");
}
