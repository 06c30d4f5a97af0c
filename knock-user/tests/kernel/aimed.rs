//! Attacks aimed at a client, played with spoofed frames through BPF_PROG_TEST_RUN: whatever a
//! spoofer sends "from" a client who holds an SPA key (bad MACs, stale and replayed packets,
//! wrong knocks that ban the address), and however many doors a sniffer of a static sequence
//! opens for spoofed sources, the client's next valid SPA packet opens its door.
//! Needs root and a kernel with BPF: `cargo xtask test` runs it.
use crate::kernel;

use std::net::IpAddr;
use std::path::Path;

use kernel::{PASS, TX, counter, verdict};
use knock_common::Addr;
use knock_common::counter::Counter;
use knock_common::craft::{Craft, Transport};
use knock_common::segment::tcp_flags::SYN;
use knock_common::settings::EVERY_DOOR;
use knock_common::spa::{self, Request, door_tag};
use knock_user::config;
use knock_user::kernel::{Capacities, Knock, rig};
use knock_user::system::clock;

/// A static door (openSSH: SSH after three knocks) and an SPA door (openHTTPS), bans on:
/// three wrong knocks within a minute ban for ten.
const DOORS: &str = "[options]\nSPA_Keys = keys\nBan_Failures = 3\nBan_Window = 60\nBan_Time = 600\n\
                     [openSSH]\nsequence = 4438,1813,8235\nseq_timeout = 5\n\
                     [openHTTPS]\nsequence = 5000,6000\nprotect = 443\nSPA = yes\n";

const KEY: (u32, [u8; 16]) = (7, [7; 16]);

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

fn server_for(source: IpAddr) -> IpAddr {
    if source.is_ipv4() {
        ip("198.51.100.1")
    } else {
        ip("2001:db8::1")
    }
}

fn syn(source: IpAddr, port: u16) -> Vec<u8> {
    Craft::tcp(source, server_for(source), port, SYN).build()
}

fn https_from(source: IpAddr) -> Vec<u8> {
    syn(source, 443)
}

/// A datagram to the SPA port with this payload.
fn spa_datagram(source: IpAddr, payload: &[u8]) -> Vec<u8> {
    let mut craft = Craft::udp(source, server_for(source), spa::DEFAULT_PORT);
    craft.transport = Transport::Udp {
        sport: 40001,
        dport: spa::DEFAULT_PORT,
        payload: payload.to_vec(),
    };
    craft.build()
}

/// A sealed SPA request for openHTTPS from `source`, `age_s` seconds old.
fn spa_packet(source: IpAddr, key: [u8; 16], nonce: u8, age_s: u64) -> [u8; spa::PACKET_LEN] {
    let request = Request {
        key_id: KEY.0,
        door_tag: door_tag("openHTTPS"),
        timestamp: clock::unix_s() - age_s,
        nonce: [nonce; 16],
    };
    spa::seal(&request, &key, &Addr::from(source))
}

fn load(text: &str, capacities: Capacities, doors_of_key: u64) -> Knock {
    let config = config::parse(Path::new("aimed.conf"), text).expect("a valid configuration");
    rig::load(&config, capacities, |plan| {
        plan.keys.insert(KEY.0, (KEY.1, doors_of_key));
    })
    .expect("the program loads and takes the plan")
}

fn small() -> Capacities {
    Capacities {
        progress: 1024,
        gate: 256,
        reserve: 64,
    }
}

/// Everything a spoofer can send "from" `client` without its key: a bad MAC, a stale packet,
/// a replay of the client's own last packet, an unknown key, and wrong knocks enough to ban
/// the address several times over. Returns after checking the ban took hold.
fn spoof_everything_from(knock: &Knock, client: IpAddr, captured: &[u8; spa::PACKET_LEN]) {
    let mut forged = *captured;
    forged[spa::PACKET_LEN - 1] ^= 1;
    verdict(knock, &spa_datagram(client, &forged));
    let stale = spa_packet(client, KEY.1, 0x51, 3600);
    verdict(knock, &spa_datagram(client, &stale));
    verdict(knock, &spa_datagram(client, captured));
    let mut unknown = spa_packet(client, KEY.1, 0x52, 0);
    unknown[4..8].copy_from_slice(&99u32.to_le_bytes());
    verdict(knock, &spa_datagram(client, &unknown));
    assert_eq!(counter(knock, Counter::SpaBadMac), 1, "the forged packet");
    assert_eq!(counter(knock, Counter::SpaStale), 1, "the stale packet");
    assert_eq!(counter(knock, Counter::SpaReplayed), 1, "the replay");
    assert!(
        counter(knock, Counter::SpaUnknownKey) + counter(knock, Counter::SpaMalformed) >= 1,
        "the unknown key"
    );
    assert_eq!(
        counter(knock, Counter::SourceBanned),
        0,
        "no SPA failure counts towards a ban"
    );
    // Wrong knocks: the first knock of openSSH and then a port of the sequence out of order.
    for _ in 0..10 {
        verdict(knock, &syn(client, 4438));
        verdict(knock, &syn(client, 8235));
    }
    assert_eq!(
        counter(knock, Counter::SourceBanned),
        1,
        "wrong knocks on knock ports ban the address"
    );
    verdict(knock, &syn(client, 4438));
    assert!(counter(knock, Counter::BannedIgnored) > 0, "the ban holds");
}

fn opens_after_spoofing(client: IpAddr) {
    let knock = load(DOORS, small(), EVERY_DOOR);
    let first = spa_packet(client, KEY.1, 1, 0);
    assert_eq!(verdict(&knock, &spa_datagram(client, &first)), PASS);
    assert_eq!(counter(&knock, Counter::SpaAccepted), 1);
    spoof_everything_from(&knock, client, &first);
    // The client's door was open all along; what matters is that its next packet still opens.
    let next = spa_packet(client, KEY.1, 2, 0);
    assert_eq!(verdict(&knock, &spa_datagram(client, &next)), PASS);
    assert_eq!(
        counter(&knock, Counter::SpaAccepted),
        2,
        "the client's next valid SPA packet is accepted from a banned address"
    );
    assert_eq!(
        verdict(&knock, &https_from(client)),
        PASS,
        "and opens the door"
    );
}

#[test]
fn spoofed_spa_failures_and_wrong_knocks_from_an_ipv4_client_do_not_stop_its_next_spa_packet() {
    opens_after_spoofing(ip("198.51.100.2"));
}

#[test]
fn spoofed_spa_failures_and_wrong_knocks_from_an_ipv6_client_do_not_stop_its_next_spa_packet() {
    opens_after_spoofing(ip("2001:db8::2"));
}

#[test]
fn a_banned_client_opens_with_spa_even_when_its_ban_came_first() {
    let knock = load(DOORS, small(), EVERY_DOOR);
    let client = ip("198.51.100.2");
    for _ in 0..10 {
        verdict(&knock, &syn(client, 4438));
        verdict(&knock, &syn(client, 8235));
    }
    assert_eq!(counter(&knock, Counter::SourceBanned), 1);
    let packet = spa_packet(client, KEY.1, 3, 0);
    verdict(&knock, &spa_datagram(client, &packet));
    assert_eq!(counter(&knock, Counter::SpaAccepted), 1);
    assert_eq!(verdict(&knock, &https_from(client)), PASS);
}

#[test]
fn resets_by_traffic_to_other_ports_never_ban() {
    let knock = load(DOORS, small(), EVERY_DOOR);
    let client = ip("198.51.100.2");
    // Under the strict rule a SYN to another port resets the attempt; a spoofer can send one
    // "from" anyone, so it must not count.
    for _ in 0..20 {
        verdict(&knock, &syn(client, 4438));
        verdict(&knock, &syn(client, 80));
    }
    assert!(counter(&knock, Counter::AttemptReset) >= 20);
    assert_eq!(counter(&knock, Counter::SourceBanned), 0);
    for port in [4438, 1813, 8235] {
        verdict(&knock, &syn(client, port));
    }
    assert_eq!(
        verdict(&knock, &syn(client, 22)),
        PASS,
        "the knocker gets in"
    );
}

#[test]
fn ipv6_sources_are_banned_by_their_64_and_no_wider() {
    let knock = load(DOORS, small(), EVERY_DOOR);
    let attacker = ip("2001:db8:0:1::a");
    for _ in 0..10 {
        verdict(&knock, &syn(attacker, 4438));
        verdict(&knock, &syn(attacker, 8235));
    }
    assert_eq!(counter(&knock, Counter::SourceBanned), 1);
    // Another address of the same /64 is banned with it...
    let ignored = counter(&knock, Counter::BannedIgnored);
    verdict(&knock, &syn(ip("2001:db8:0:1::b"), 4438));
    assert_eq!(counter(&knock, Counter::BannedIgnored), ignored + 1);
    // ...one of the next /64 is not, and knocks its way in.
    let neighbour = ip("2001:db8:0:2::b");
    for port in [4438, 1813, 8235] {
        verdict(&knock, &syn(neighbour, port));
    }
    assert_eq!(counter(&knock, Counter::BannedIgnored), ignored + 1);
    assert_eq!(verdict(&knock, &syn(neighbour, 22)), PASS);
}

#[test]
fn the_ipv6_ban_prefix_follows_its_key() {
    let text = DOORS.replace("[options]\n", "[options]\nBan_IPv6_Prefix = 48\n");
    let knock = load(&text, small(), EVERY_DOOR);
    for _ in 0..10 {
        verdict(&knock, &syn(ip("2001:db8:0:1::a"), 4438));
        verdict(&knock, &syn(ip("2001:db8:0:1::a"), 8235));
    }
    let ignored = counter(&knock, Counter::BannedIgnored);
    verdict(&knock, &syn(ip("2001:db8:0:2::b"), 4438));
    assert_eq!(
        counter(&knock, Counter::BannedIgnored),
        ignored + 1,
        "the same /48"
    );
}

#[test]
fn a_key_that_names_its_doors_opens_only_those() {
    // Door ids follow the configuration: openSSH is 0, openHTTPS 1. The key names openSSH only.
    let knock = load(DOORS, small(), 1);
    let client = ip("198.51.100.2");
    let packet = spa_packet(client, KEY.1, 4, 0);
    verdict(&knock, &spa_datagram(client, &packet));
    assert_eq!(counter(&knock, Counter::SpaDoorRefused), 1);
    assert_eq!(counter(&knock, Counter::SpaAccepted), 0);
    assert_eq!(verdict(&knock, &https_from(client)), TX, "still shut");
}

#[test]
fn a_spoofed_flood_through_a_static_sequence_that_fills_the_gate_does_not_stop_an_spa_client() {
    // The default capacities: 4,096 static openings, and the reserve.
    let knock = load(
        DOORS,
        Capacities {
            progress: 16_384,
            gate: 4_096,
            reserve: 1_024,
        },
        EVERY_DOOR,
    );
    // A sniffer replays openSSH's sequence from 5,000 spoofed sources.
    let spoofed = |n: u32| -> IpAddr {
        // 2001:db8:f::/48, one address each.
        let mut octets = [0u8; 16];
        octets[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0f]);
        octets[12..].copy_from_slice(&n.to_be_bytes());
        IpAddr::from(octets)
    };
    for n in 0..5_000u32 {
        for port in [4438, 1813, 8235] {
            verdict(&knock, &syn(spoofed(n), port));
        }
    }
    assert!(
        counter(&knock, Counter::GateStaticFull) > 0,
        "the flood filled the static part of the gate"
    );
    let opened = counter(&knock, Counter::DoorOpened);
    assert!(opened >= 4_000, "the flood opened {opened} doors");
    // The SPA client still gets in, over IPv4 and IPv6.
    for (client, nonce) in [(ip("198.51.100.2"), 5), (ip("2001:db8::2"), 6)] {
        let packet = spa_packet(client, KEY.1, nonce, 0);
        verdict(&knock, &spa_datagram(client, &packet));
        assert_eq!(
            verdict(&knock, &https_from(client)),
            PASS,
            "{client} opened its door with SPA while the gate was full"
        );
    }
    assert_eq!(counter(&knock, Counter::SpaAccepted), 2);
}
