//! Pushing a configuration into the kernel when a push breaks off halfway: the next push that
//! goes through leaves the kernel holding exactly the new configuration, so a revoked SPA key
//! or a removed Always_Allow network is gone, whatever the broken push had written.
use crate::kernel;
use knock_common::settings::EVERY_DOOR;

use std::net::IpAddr;

use aya::maps::HashMap;
use kernel::{PASS, TX, counter, load_with, plan_for, verdict};
use knock_common::counter::Counter;
use knock_common::craft::{Craft, Transport};
use knock_common::ports::FirstSteps;
use knock_common::segment::tcp_flags::SYN;
use knock_common::spa::{self, Request, door_tag};
use knock_common::{Addr, ProtoPort, maps};
use knock_user::kernel::Knock;

/// A door opened by SPA, and a neighbouring network that never has to knock.
const BEFORE: &str = "[options]\nSPA_Keys = keys\nAlways_Allow = 203.0.113.0/24\n\
                      [openSSH]\nsequence = 4438,1813,8235\nSPA = yes\n";
/// The same door without the network, and a second door, whose first knock needs a new entry
/// in FIRST_STEPS.
const AFTER: &str = "[options]\nSPA_Keys = keys\n[openSSH]\nsequence = 4438,1813,8235\nSPA = yes\n\
                     [openHTTPS]\nsequence = 5000,6000\nprotect = 443\n";

const KEPT_KEY: (u32, [u8; 16]) = (7, [7; 16]);
const REVOKED_KEY: (u32, [u8; 16]) = (8, [8; 16]);

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

fn server() -> IpAddr {
    ip("198.51.100.1")
}

/// A neighbour in the Always_Allow network of `BEFORE`.
fn neighbour() -> IpAddr {
    ip("203.0.113.9")
}

fn ssh_from(source: IpAddr) -> Vec<u8> {
    Craft::tcp(source, server(), 22, SYN).build()
}

/// An SPA packet for openSSH from `source`, signed with `key`.
fn spa_from(source: IpAddr, (id, key): (u32, [u8; 16]), nonce: u8) -> Vec<u8> {
    let request = Request {
        key_id: id,
        door_tag: door_tag("openSSH"),
        timestamp: knock_user::system::clock::unix_s(),
        nonce: [nonce; 16],
    };
    let payload = spa::seal(&request, &key, &Addr::from(source));
    let mut craft = Craft::udp(source, server(), spa::DEFAULT_PORT);
    craft.transport = Transport::Udp {
        sport: 40001,
        dport: spa::DEFAULT_PORT,
        payload: payload.to_vec(),
    };
    craft.build()
}

/// Fills FIRST_STEPS with entries no door uses, so no new first knock finds room; returns
/// them.
fn fill_first_steps(knock: &mut Knock) -> Vec<ProtoPort> {
    let mut map: HashMap<_, ProtoPort, FirstSteps> = knock
        .ebpf_mut()
        .map_mut(maps::FIRST_STEPS)
        .expect("FIRST_STEPS")
        .try_into()
        .expect("a hash map");
    let mut filler = Vec::new();
    for port in 40000.. {
        let step = ProtoPort::udp(port);
        if map.insert(step, FirstSteps { doors: 0 }, 0).is_err() {
            break;
        }
        filler.push(step);
    }
    filler
}

fn empty_first_steps_of(knock: &mut Knock, filler: &[ProtoPort]) {
    let mut map: HashMap<_, ProtoPort, FirstSteps> = knock
        .ebpf_mut()
        .map_mut(maps::FIRST_STEPS)
        .expect("FIRST_STEPS")
        .try_into()
        .expect("a hash map");
    for step in filler {
        map.remove(step).expect("a filler entry");
    }
}

fn keys_in_kernel(knock: &mut Knock) -> Vec<u32> {
    let map: HashMap<_, u32, knock_common::settings::SpaKey> = knock
        .ebpf_mut()
        .map_mut(maps::KEYS)
        .expect("KEYS")
        .try_into()
        .expect("a hash map");
    map.keys().filter_map(Result::ok).collect()
}

#[test]
fn a_push_that_broke_off_halfway_leaves_no_revoked_key_or_network_behind_the_next_one() {
    let mut knock = load_with(BEFORE, |plan| {
        plan.keys
            .extend([KEPT_KEY, REVOKED_KEY].map(|(id, key)| (id, (key, EVERY_DOOR))));
    });
    assert_eq!(verdict(&knock, &ssh_from(neighbour())), PASS);
    let after = plan_for(AFTER, |plan| {
        plan.keys
            .extend([KEPT_KEY].map(|(id, key)| (id, (key, EVERY_DOOR))));
    });

    // The push stops at FIRST_STEPS, before KEYS and ALWAYS_ALLOW are touched.
    let filler = fill_first_steps(&mut knock);
    let error = knock.push(&after).expect_err("the push breaks off");
    assert!(
        format!("{error:#}").contains(maps::FIRST_STEPS),
        "{error:#}"
    );
    assert_eq!(
        verdict(&knock, &ssh_from(neighbour())),
        PASS,
        "halfway, the network is still in the kernel"
    );
    assert!(keys_in_kernel(&mut knock).contains(&REVOKED_KEY.0));

    // The next push goes through.
    empty_first_steps_of(&mut knock, &filler);
    knock.push(&after).expect("the next push goes through");
    assert_eq!(
        verdict(&knock, &ssh_from(neighbour())),
        TX,
        "the removed network no longer passes the gate"
    );
    assert_eq!(
        keys_in_kernel(&mut knock),
        [KEPT_KEY.0],
        "only the kept key"
    );
    let laptop = ip("198.51.100.7");
    assert_eq!(verdict(&knock, &spa_from(laptop, REVOKED_KEY, 1)), PASS);
    assert_eq!(counter(&knock, Counter::SpaUnknownKey), 1);
    assert_eq!(
        verdict(&knock, &ssh_from(laptop)),
        TX,
        "the revoked key opened nothing"
    );
    assert_eq!(verdict(&knock, &spa_from(laptop, KEPT_KEY, 2)), PASS);
    assert_eq!(
        verdict(&knock, &ssh_from(laptop)),
        PASS,
        "the kept key still opens the door"
    );
}
