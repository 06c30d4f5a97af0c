//! A door as the kernel sees it: the knock sequence, the TCP flags a knock must carry, the
//! timeouts, and the ports it opens.

use crate::segment::{PROTO_TCP, PROTO_UDP, Segment, tcp_flags};
use crate::{Addr, MAX_GUARDED_PORTS, MAX_STEPS};

/// A protocol and a port: one step of a sequence, or one protected port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtoPort {
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    pub _pad: u8,
}
crate::assert_layout!(ProtoPort, size = 4, align = 2);

impl ProtoPort {
    pub const fn tcp(port: u16) -> Self {
        Self {
            port,
            proto: PROTO_TCP,
            _pad: 0,
        }
    }

    pub const fn udp(port: u16) -> Self {
        Self {
            port,
            proto: PROTO_UDP,
            _pad: 0,
        }
    }

    #[inline(always)]
    pub const fn is(&self, segment: &Segment) -> bool {
        self.port == segment.dport && self.proto == segment.proto
    }

    pub const fn proto_name(&self) -> &'static str {
        match self.proto {
            PROTO_UDP => "udp",
            _ => "tcp",
        }
    }
}

/// How an attempt in progress reacts to packets that are not its next knock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ProgressRule {
    /// Any new TCP connection or UDP datagram to the host, other than a repeat of the last
    /// knock, resets the attempt. A port scan cannot complete a sequence.
    #[default]
    Strict = 0,
    /// Only packets to ports of some door's sequence reset the attempt, as knockd does.
    Knockd = 1,
}

/// A door, as stored in the `DOORS` array map at its id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Door {
    pub steps: [ProtoPort; MAX_STEPS],
    /// The ports an open door lets the knocking source connect to.
    pub guarded: [ProtoPort; MAX_GUARDED_PORTS],
    /// With `has_target` set, only knocks sent to this address count.
    pub target: Addr,
    /// How long an attempt may take, from its first knock.
    pub seq_timeout_ns: u64,
    /// How long the door stays open after the last knock.
    pub open_ns: u64,
    /// For a single-use sequence (`ONCE`): the tag that names this sequence in the `SPENT`
    /// map, where the program claims it before opening the door (see [`crate::spent`]).
    pub spent_tag: u64,
    pub step_count: u8,
    pub guarded_count: u8,
    /// TCP flags a knock must carry.
    pub flags_set: u8,
    /// TCP flags a knock must not carry.
    pub flags_clear: u8,
    /// A [`ProgressRule`] as its `u8` value.
    pub rule: u8,
    pub has_target: u8,
    /// Bumped by user space whenever the door's definition changes, so that attempts begun
    /// under the old definition end instead of continuing under the new one.
    pub revision: u8,
    /// `ONCE` and future switches.
    pub flags: u8,
    /// The id the door opens under in the gate and in events. A door's own id, except for the
    /// per-period instances of a rotating door, which all open their door's one entry.
    pub gate_id: u8,
    pub _pad: [u8; 7],
}

/// The sequence works once (one-time and rotating sequences): the program claims its
/// `spent_tag` in the `SPENT` map and opens the door only if the claim is new, and empties the
/// sequence, so a replay finds nothing to complete.
pub const ONCE: u8 = 1;
crate::assert_layout!(Door, size = 216, align = 8);

impl Door {
    /// A door with no steps yet, knockd's default timeouts, and knock's default TCP flags
    /// (SYN without ACK).
    pub const fn new() -> Self {
        Self {
            steps: [ProtoPort::tcp(0); MAX_STEPS],
            guarded: [ProtoPort::tcp(0); MAX_GUARDED_PORTS],
            target: Addr::UNSPECIFIED,
            seq_timeout_ns: 25_000_000_000,
            open_ns: 10_000_000_000,
            spent_tag: 0,
            step_count: 0,
            guarded_count: 0,
            flags_set: tcp_flags::SYN,
            flags_clear: tcp_flags::ACK,
            rule: ProgressRule::Strict as u8,
            has_target: 0,
            revision: 0,
            flags: 0,
            gate_id: 0,
            _pad: [0; 7],
        }
    }

    pub fn sequence(&self) -> &[ProtoPort] {
        &self.steps[..usize::from(self.step_count).min(MAX_STEPS)]
    }

    pub fn guarded_ports(&self) -> &[ProtoPort] {
        &self.guarded[..usize::from(self.guarded_count).min(MAX_GUARDED_PORTS)]
    }

    pub const fn progress_rule(&self) -> ProgressRule {
        if self.rule == ProgressRule::Knockd as u8 {
            ProgressRule::Knockd
        } else {
            ProgressRule::Strict
        }
    }

    /// The step at `index`, clamped into the array so the kernel's accesses stay in bounds.
    #[inline(always)]
    pub fn step(&self, index: usize) -> ProtoPort {
        self.steps[index & (MAX_STEPS - 1)]
    }

    /// Whether this door listens to the packet at all: knocks are unicast, whole (never a
    /// fragment) and addressed to the door's target, or without one to the host itself, as
    /// knockd only sees its own addresses.
    #[inline(always)]
    pub fn hears(&self, segment: &Segment) -> bool {
        segment.unicast
            && !segment.fragment
            && if self.has_target != 0 {
                self.target.same_as(&segment.dst)
            } else {
                segment.to_host
            }
    }

    /// Whether a packet carries the TCP flags this door's knocks need. UDP always does.
    #[inline(always)]
    pub const fn flags_match(&self, segment: &Segment) -> bool {
        !segment.is_tcp()
            || (segment.tcp_flags & self.flags_set == self.flags_set
                && segment.tcp_flags & self.flags_clear == 0)
    }

    /// Whether a packet that is neither this door's next knock nor a repeat of its last one
    /// ends an attempt in progress. `at_knock_port` says whether the packet went to a port of
    /// some door's sequence.
    #[inline(always)]
    pub fn is_broken_by(&self, segment: &Segment, at_knock_port: bool) -> bool {
        let wrong_knock = at_knock_port && self.flags_match(segment);
        match self.progress_rule() {
            ProgressRule::Strict => wrong_knock || segment.is_contact(),
            ProgressRule::Knockd => wrong_knock,
        }
    }
}

impl Default for Door {
    fn default() -> Self {
        Self::new()
    }
}
