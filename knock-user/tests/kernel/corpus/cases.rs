//! The packet corpus: named frames, each with the verdict the XDP program must give and the
//! effect it must leave on the maps and counters.
//!
//! This module is pure data and frame builders, with no kernel in sight, so that two readers
//! share it: the privileged runner `tests/corpus.rs` feeds every case through BPF_PROG_TEST_RUN,
//! and the fuzz crate's seed writer (`fuzz/examples/seeds.rs`) turns frames into fuzz seeds.
//!
//! A case starts from empty maps. Unless it says otherwise it expects: no progress for any
//! source, no open door, and every counter still at zero. So a case that forgets an effect fails
//! instead of passing by accident, and "nothing opened a door it should not" is checked by all.
#![allow(
    dead_code,
    reason = "the runner and the seed writer each use a different part of this module"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use knock_common::counter::Counter;
use knock_common::craft::Craft;
use knock_common::frame::Link;
use knock_common::segment::tcp_flags::{ACK, SYN};

#[path = "basics.rs"]
pub mod basics;
#[path = "fragments.rs"]
pub mod fragments;
#[path = "ip_links.rs"]
pub mod ip_links;
#[path = "ipv4.rs"]
pub mod ipv4;
#[path = "ipv6.rs"]
pub mod ipv6;
#[path = "multicast.rs"]
pub mod multicast;
#[path = "other_protocols.rs"]
pub mod other_protocols;
#[path = "sequences.rs"]
pub mod sequences;
#[path = "tcp_flags.rs"]
pub mod tcp_flags;
#[path = "truncated.rs"]
pub mod truncated;
#[path = "vlan.rs"]
pub mod vlan;

/// Every category of the corpus, by name.
pub fn categories() -> Vec<(&'static str, Vec<Case>)> {
    vec![
        ("basics", basics::cases()),
        ("tcp_flags", tcp_flags::cases()),
        ("vlan", vlan::cases()),
        ("ipv4", ipv4::cases()),
        ("ipv6", ipv6::cases()),
        ("fragments", fragments::cases()),
        ("truncated", truncated::cases()),
        ("other_protocols", other_protocols::cases()),
        ("multicast", multicast::cases()),
        ("sequences", sequences::cases()),
        ("ip_links", ip_links::cases()),
    ]
}

pub const CLIENT4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
pub const SERVER4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
/// A neighbour of the client: its knocks must never help the client, nor the reverse.
pub const OTHER4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 3));
pub const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
pub const SERVER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The TCP door of [`DEFAULT`]: its three knocks, and the port it protects.
pub const K1: u16 = 4438;
pub const K2: u16 = 1813;
pub const K3: u16 = 8235;
pub const KNOCKS: [u16; 3] = [K1, K2, K3];
pub const SSH: u16 = 22;
/// A port nobody knocks on nor protects.
pub const WEB: u16 = 80;
/// The UDP door of [`UDP`]: its three knocks, and the UDP port it protects besides SSH.
pub const U1: u16 = 7000;
pub const U2: u16 = 8000;
pub const U3: u16 = 9000;
pub const UDP_KNOCKS: [u16; 3] = [U1, U2, U3];
pub const WIREGUARD: u16 = 51820;

/// Where the IP header starts behind no, one and two VLAN tags.
pub const L3: usize = 14;
pub const L3_TAGGED: usize = 18;
pub const L3_DOUBLE: usize = 22;
/// Where the transport header starts in a plain IPv4 and a plain IPv6 frame.
pub const L4_V4: usize = L3 + 20;
pub const L4_V6: usize = L3 + 40;

/// A configuration the program is loaded with.
#[derive(Debug)]
pub struct Setup {
    pub name: &'static str,
    pub config: &'static str,
    /// TCP ports the host serves: knocks on them are counted but pass.
    pub served: &'static [u16],
    /// knockd's `-4`.
    pub ipv4_only: bool,
}

/// One TCP door, knock's defaults: knocks are SYN without ACK, the strict progress rule,
/// tcp/22 protected.
pub const DEFAULT: Setup = Setup {
    name: "default",
    config: "[openSSH]\nsequence = 4438,1813,8235\n",
    served: &[],
    ipv4_only: false,
};

/// The Raspberry Pi guide's door: `tcpflags = syn` asks for SYN and ignores the other flags,
/// as knockd does.
pub const GUIDE: Setup = Setup {
    name: "guide",
    config: "[openSSH]\nsequence = 4438,1813,8235\nseq_timeout = 5\ntcpflags = syn\n",
    served: &[],
    ipv4_only: false,
};

/// A UDP door that also protects a UDP port.
pub const UDP: Setup = Setup {
    name: "udp",
    config: "[openVPN]\nsequence = 7000:udp,8000:udp,9000:udp\nprotect = 22:tcp,51820:udp\n",
    served: &[],
    ipv4_only: false,
};

/// The default door under knockd's progress rule.
pub const KNOCKD: Setup = Setup {
    name: "knockd",
    config: "[options]\nprogress = knockd\n[openSSH]\nsequence = 4438,1813,8235\n",
    served: &[],
    ipv4_only: false,
};

/// The default door, with the host serving the first knock's port.
pub const SERVED: Setup = Setup {
    name: "served",
    config: "[openSSH]\nsequence = 4438,1813,8235\n",
    served: &[K1],
    ipv4_only: false,
};

/// The default door, run with `-4`.
pub const IPV4_ONLY: Setup = Setup {
    name: "ipv4-only",
    config: "[openSSH]\nsequence = 4438,1813,8235\n",
    served: &[],
    ipv4_only: true,
};

/// A door whose knocks are FIN segments without SYN.
pub const FIN_DOOR: Setup = Setup {
    name: "fin-door",
    config: "[finDoor]\nsequence = 4438,1813,8235\ntcpflags = fin,!syn\n",
    served: &[],
    ipv4_only: false,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}
pub use Verdict::{Drop as DROP, Pass as PASS};

/// One frame and the verdict it must get.
#[derive(Clone, Debug)]
pub struct Step {
    pub frame: Vec<u8>,
    pub verdict: Verdict,
}

/// A named case: frames sent in order from empty maps, and what they must leave behind.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub setup: &'static Setup,
    /// The source whose progress and door the case is about.
    pub source: IpAddr,
    pub steps: Vec<Step>,
    /// The highest stage among the source's attempts; 0 for no progress at all.
    pub stage: u8,
    /// Sources other than `source` left with progress.
    pub others_in_progress: usize,
    /// Whether `source` ends with an open door.
    pub door_open: bool,
    /// How much each counter must have moved; counters not listed must not move.
    pub counters: Vec<(Counter, u64)>,
    /// Set when the expectation is not what the program does today but what it should do: the
    /// text names the suspected bug, so a failure of this case reads as that bug.
    pub suspected_bug: Option<&'static str>,
    /// The kind of link the frames arrive on, and so the entry point that judges them.
    pub link: Link,
}

impl Case {
    /// A case about the IPv4 client, on the default door.
    pub fn v4(name: &str) -> Self {
        Self::from_source(name, CLIENT4)
    }

    /// A case about the IPv6 client, on the default door.
    pub fn v6(name: &str) -> Self {
        Self::from_source(name, CLIENT6)
    }

    pub fn from_source(name: &str, source: IpAddr) -> Self {
        Self {
            name: name.to_owned(),
            setup: &DEFAULT,
            source,
            steps: Vec::new(),
            stage: 0,
            others_in_progress: 0,
            door_open: false,
            counters: Vec::new(),
            suspected_bug: None,
            link: Link::Ethernet,
        }
    }

    /// Frames arrive on a link without Ethernet headers: they start at the IP header.
    pub fn on_ip_link(mut self) -> Self {
        self.link = Link::Ip;
        self
    }

    pub fn on(mut self, setup: &'static Setup) -> Self {
        self.setup = setup;
        self
    }

    pub fn send(mut self, frame: Vec<u8>, verdict: Verdict) -> Self {
        self.steps.push(Step { frame, verdict });
        self
    }

    pub fn send_each(
        mut self,
        frames: impl IntoIterator<Item = Vec<u8>>,
        verdict: Verdict,
    ) -> Self {
        for frame in frames {
            self = self.send(frame, verdict);
        }
        self
    }

    pub fn stage(mut self, stage: u8) -> Self {
        self.stage = stage;
        self
    }

    pub fn others_in_progress(mut self, sources: usize) -> Self {
        self.others_in_progress = sources;
        self
    }

    pub fn door_opens(mut self) -> Self {
        self.door_open = true;
        self
    }

    /// Adds to the counters the case moves.
    pub fn counts(mut self, moved: &[(Counter, u64)]) -> Self {
        for &(counter, by) in moved {
            match self.counters.iter_mut().find(|(c, _)| *c == counter) {
                Some((_, total)) => *total += by,
                None => self.counters.push((counter, by)),
            }
        }
        self
    }

    /// The effect of one accepted first knock: stage 1, and the knock port looks filtered.
    pub fn first_knock_counted(self) -> Self {
        self.stage(1)
            .counts(&[(Counter::KnockAccepted, 1), (Counter::KnockPortDropped, 1)])
    }

    /// The effect of a whole three-knock sequence: two stages, the door opens, three drops.
    pub fn sequence_opens_the_door(self) -> Self {
        self.door_opens().counts(&[
            (Counter::KnockAccepted, 2),
            (Counter::KnockPortDropped, 3),
            (Counter::DoorOpened, 1),
        ])
    }

    pub fn malformed(self, frames: u64) -> Self {
        self.counts(&[(Counter::Malformed, frames)])
    }

    pub fn gate_dropped(self, frames: u64) -> Self {
        self.counts(&[(Counter::GateDropped, frames)])
    }

    pub fn knock_port_dropped(self, frames: u64) -> Self {
        self.counts(&[(Counter::KnockPortDropped, frames)])
    }

    pub fn suspected_bug(mut self, bug: &'static str) -> Self {
        self.suspected_bug = Some(bug);
        self
    }
}

// Frame builders. They return a `Craft` so a case can add tags, options or extension headers
// before building.

pub fn tcp4(dport: u16, flags: u8) -> Craft {
    Craft::tcp(CLIENT4, SERVER4, dport, flags)
}

pub fn syn4(dport: u16) -> Craft {
    tcp4(dport, SYN)
}

pub fn udp4(dport: u16) -> Craft {
    Craft::udp(CLIENT4, SERVER4, dport)
}

pub fn tcp6(dport: u16, flags: u8) -> Craft {
    Craft::tcp(CLIENT6, SERVER6, dport, flags)
}

pub fn syn6(dport: u16) -> Craft {
    tcp6(dport, SYN)
}

pub fn udp6(dport: u16) -> Craft {
    Craft::udp(CLIENT6, SERVER6, dport)
}

/// The three knocks of the default door, each shaped by `shape`.
pub fn knocks(shape: impl Fn(u16) -> Craft) -> Vec<Vec<u8>> {
    KNOCKS.iter().map(|&port| shape(port).build()).collect()
}

/// A frame whose IP payload is the first `keep` bytes of the crafted transport header, with
/// lengths that agree with the cut: the transport itself is short, not the frame.
pub fn transport_cut(craft: &Craft, keep: usize) -> Vec<u8> {
    let transport = craft.transport_bytes();
    craft.build_with_payload(&transport[..keep.min(transport.len())])
}

/// The frame cut to its first `len` bytes, as if the wire lost the rest.
pub fn cut(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame.truncate(len);
    frame
}

/// The frame with `bytes` written at `at`.
pub fn patch(mut frame: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    frame[at..at + bytes.len()].copy_from_slice(bytes);
    frame
}

/// The frame with one field of its IPv4 header (at `l3`) rewritten and the header checksum
/// made right again, so that the field is the only thing wrong.
pub fn ipv4_patch(frame: Vec<u8>, l3: usize, at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut frame = patch(frame, l3 + at, bytes);
    let header_len = usize::from(frame[l3] & 0x0f) * 4;
    let end = (l3 + header_len.max(20)).min(frame.len());
    frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let checksum = internet_checksum(&frame[l3..end]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&checksum.to_be_bytes());
    frame
}

pub fn set_ihl(frame: Vec<u8>, l3: usize, words: u8) -> Vec<u8> {
    let first = (frame[l3] & 0xf0) | (words & 0x0f);
    ipv4_patch(frame, l3, 0, &[first])
}

pub fn set_ip_version(frame: Vec<u8>, l3: usize, version: u8) -> Vec<u8> {
    let first = (version << 4) | (frame[l3] & 0x0f);
    match frame[l3] >> 4 {
        4 => ipv4_patch(frame, l3, 0, &[first]),
        _ => patch(frame, l3, &[first]),
    }
}

pub fn set_total_length(frame: Vec<u8>, l3: usize, length: u16) -> Vec<u8> {
    ipv4_patch(frame, l3, 2, &length.to_be_bytes())
}

pub fn set_payload_length(frame: Vec<u8>, l3: usize, length: u16) -> Vec<u8> {
    patch(frame, l3 + 4, &length.to_be_bytes())
}

/// The frame with the TCP data offset (in words) rewritten; `l4` is where TCP starts.
pub fn set_data_offset(frame: Vec<u8>, l4: usize, words: u8) -> Vec<u8> {
    let byte = (words << 4) | (frame[l4 + 12] & 0x0f);
    patch(frame, l4 + 12, &[byte])
}

/// The frame with `tags` VLAN tags, outermost first, as (TPID, VLAN id).
pub fn tagged(craft: Craft, tags: &[(u16, u16)]) -> Craft {
    tags.iter()
        .fold(craft, |craft, &(tpid, id)| craft.with_vlan(tpid, id))
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame as one line of hex, to paste into a decoder.
pub fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}
