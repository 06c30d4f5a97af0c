//! Events the XDP program sends to user space through the `EVENTS` ring buffer: the record
//! ([`Event`]), what user space reads it as ([`DoorEvent`]), and the one encoding between them.
//! The kernel writes the record field by field (knock-ebpf's `report::emit`), with the kinds
//! defined here.

use crate::Addr;
use crate::spa::Rejection;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// When it happened (monotonic clock, ns).
    pub time_ns: u64,
    /// For `OPENED` and `REFRESHED`: when the door closes (monotonic clock, ns).
    pub expires_ns: u64,
    pub addr: Addr,
    /// One of the `kind` constants.
    pub kind: u8,
    pub door: u8,
    /// For `STAGE`, `RESET` and `TIMED_OUT`: the stage reached.
    pub stage: u8,
    /// Padding in two fields, not an array: the kernel writes events field by field, and an
    /// odd-sized zeroed array would turn into a call to memset.
    pub _pad1: u8,
    pub _pad2: u32,
}
crate::assert_layout!(Event, size = 40, align = 8);

/// Something that happened to one source at one door, as user space reads it from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorEvent {
    Stage {
        source: Addr,
        door: u8,
        stage: u8,
    },
    /// `steps` is the length of the sequence that opened the door (knockd logs `Stage N` for
    /// its last knock too); zero when an SPA packet opened it.
    Opened {
        source: Addr,
        door: u8,
        expires_ns: u64,
        steps: u8,
    },
    Refreshed {
        source: Addr,
        door: u8,
        expires_ns: u64,
        steps: u8,
    },
    Reset {
        source: Addr,
        door: u8,
        stage: u8,
    },
    TimedOut {
        source: Addr,
        door: u8,
        stage: u8,
    },
    Crowded {
        source: Addr,
        door: u8,
    },
    /// A sequence or SPA packet completed but the door stayed shut: the gate had no room
    /// (`static_share`: no room left for doors opened by static sequences).
    GateFull {
        source: Addr,
        door: u8,
        static_share: bool,
    },
    /// `source` used up its failure budget: it is ignored until `until_ns`, with every
    /// address of its `prefix` (IPv6; 0 for an IPv4 source).
    Banned {
        source: Addr,
        until_ns: u64,
        prefix: u8,
    },
    SpaRejected {
        source: Addr,
        reason: Rejection,
    },
    /// A single-use sequence was completed but opened nothing: it had been used (`no_room`
    /// false), or there was no room to record its use.
    SpentRefused {
        source: Addr,
        door: u8,
        no_room: bool,
    },
    /// Under `--observe`: a new connection to `port` the gate would have dropped, and passed.
    WouldDrop {
        source: Addr,
        port: crate::ProtoPort,
    },
}

/// Why a ring record is not an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A record of this many bytes; events are `size_of::<Event>()` bytes.
    Size(usize),
    Kind(u8),
    Reason(u8),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Size(len) => write!(
                f,
                "an event of {len} bytes; events are {} bytes",
                size_of::<Event>()
            ),
            Self::Kind(kind) => write!(f, "an event of unknown kind {kind}"),
            Self::Reason(reason) => write!(f, "an SPA rejection of unknown reason {reason}"),
        }
    }
}

impl core::error::Error for DecodeError {}

impl Event {
    /// The record's bytes, as they stand in the ring.
    pub fn to_bytes(&self) -> [u8; size_of::<Event>()] {
        // SAFETY: Event is repr(C) plain integers without implicit padding (its size is
        // asserted above), so every byte is initialised.
        unsafe { core::mem::transmute_copy(self) }
    }

    /// A record read from the ring.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != size_of::<Event>() {
            return Err(DecodeError::Size(bytes.len()));
        }
        // SAFETY: the length matches and Event is plain integers, valid for any bit pattern.
        Ok(unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() })
    }
}

impl DoorEvent {
    /// Reads one record of the ring.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_event(&Event::from_bytes(bytes)?)
    }

    /// What a record means.
    pub fn from_event(event: &Event) -> Result<Self, DecodeError> {
        let (source, door, stage) = (event.addr, event.door, event.stage);
        Ok(match event.kind {
            kind::STAGE => Self::Stage {
                source,
                door,
                stage,
            },
            kind::OPENED => Self::Opened {
                source,
                door,
                expires_ns: event.expires_ns,
                steps: stage,
            },
            kind::REFRESHED => Self::Refreshed {
                source,
                door,
                expires_ns: event.expires_ns,
                steps: stage,
            },
            kind::RESET => Self::Reset {
                source,
                door,
                stage,
            },
            kind::TIMED_OUT => Self::TimedOut {
                source,
                door,
                stage,
            },
            kind::CROWDED => Self::Crowded { source, door },
            kind::GATE_FULL => Self::GateFull {
                source,
                door,
                static_share: stage == gate_full::STATIC_SHARE,
            },
            kind::BANNED => Self::Banned {
                source,
                until_ns: event.expires_ns,
                prefix: stage,
            },
            kind::SPA_REJECTED => Self::SpaRejected {
                source,
                reason: Rejection::from_u8(stage).ok_or(DecodeError::Reason(stage))?,
            },
            kind::SPENT => Self::SpentRefused {
                source,
                door,
                no_room: stage == crate::spent::refusal::NO_ROOM,
            },
            kind::WOULD_DROP => Self::WouldDrop {
                source,
                port: crate::ProtoPort {
                    port: event.expires_ns as u16,
                    proto: stage,
                    _pad: 0,
                },
            },
            other => return Err(DecodeError::Kind(other)),
        })
    }

    /// The record the kernel writes for this event at `time_ns`.
    pub const fn encode(self, time_ns: u64) -> Event {
        let (kind, addr, door, stage, expires_ns) = match self {
            Self::Stage {
                source,
                door,
                stage,
            } => (kind::STAGE, source, door, stage, 0),
            Self::Opened {
                source,
                door,
                expires_ns,
                steps,
            } => (kind::OPENED, source, door, steps, expires_ns),
            Self::Refreshed {
                source,
                door,
                expires_ns,
                steps,
            } => (kind::REFRESHED, source, door, steps, expires_ns),
            Self::Reset {
                source,
                door,
                stage,
            } => (kind::RESET, source, door, stage, 0),
            Self::TimedOut {
                source,
                door,
                stage,
            } => (kind::TIMED_OUT, source, door, stage, 0),
            Self::Crowded { source, door } => (kind::CROWDED, source, door, 0, 0),
            Self::GateFull {
                source,
                door,
                static_share,
            } => {
                let why = if static_share {
                    gate_full::STATIC_SHARE
                } else {
                    gate_full::ALL
                };
                (kind::GATE_FULL, source, door, why, 0)
            }
            Self::Banned {
                source,
                until_ns,
                prefix,
            } => (kind::BANNED, source, 0, prefix, until_ns),
            Self::SpaRejected { source, reason } => {
                (kind::SPA_REJECTED, source, 0, reason as u8, 0)
            }
            Self::SpentRefused {
                source,
                door,
                no_room,
            } => {
                let why = if no_room {
                    crate::spent::refusal::NO_ROOM
                } else {
                    crate::spent::refusal::USED
                };
                (kind::SPENT, source, door, why, 0)
            }
            Self::WouldDrop { source, port } => {
                (kind::WOULD_DROP, source, 0, port.proto, port.port as u64)
            }
        };
        Event {
            time_ns,
            expires_ns,
            addr,
            kind,
            door,
            stage,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// Values of [`Event::kind`].
pub mod kind {
    /// A knock was accepted.
    pub const STAGE: u8 = 1;
    /// A sequence completed and the door opened for the source.
    pub const OPENED: u8 = 2;
    /// A sequence completed while the door was already open; its deadline moved.
    pub const REFRESHED: u8 = 3;
    /// A packet that was not the next knock ended an attempt.
    pub const RESET: u8 = 4;
    /// An attempt outlived the sequence timeout.
    pub const TIMED_OUT: u8 = 5;
    /// A first knock found every attempt slot of its source taken.
    pub const CROWDED: u8 = 6;
    /// A sequence completed but the gate had no room: the door stayed shut; `stage` holds
    /// the `gate_full` reason.
    pub const GATE_FULL: u8 = 7;
    /// The source failed too often and is ignored until `expires_ns`.
    pub const BANNED: u8 = 8;
    /// An SPA datagram was refused; `stage` holds the `spa::Rejection`.
    pub const SPA_REJECTED: u8 = 9;
    /// A single-use sequence was completed but opened nothing; `stage` holds the
    /// `spent::refusal`, `door` the instance's id.
    pub const SPENT: u8 = 10;
    /// Under `--observe`: the gate would have dropped a new connection; `stage` holds its
    /// protocol, `expires_ns` its port.
    pub const WOULD_DROP: u8 = 11;

    /// Whether an event of `kind` wakes the daemon. Waking costs the packet an interrupt
    /// (several microseconds, far more than the program itself), which a flood of first knocks,
    /// wrong knocks or forged SPA packets must not buy once per packet. Doors opening need the
    /// daemon at once (start commands, the firewall mirror, used sequences), and only a
    /// client that knows a sequence or a key can cause one; the rest is only logged and waits
    /// for the next wakeup or the daemon's tick, at most a second. A full gate is among the
    /// rest: a sniffer who floods a static sequence from spoofed sources causes one per packet.
    pub const fn wakes_daemon(kind: u8) -> bool {
        matches!(kind, OPENED | REFRESHED)
    }
}

/// Values of a `GATE_FULL` event's `stage`: where the gate had no room.
pub mod gate_full {
    /// The whole gate map is full.
    pub const ALL: u8 = 0;
    /// The share of the gate for doors opened by static sequences is used up
    /// (`Gate_Capacity`); doors opened by SPA and single-use sequences still find room.
    pub const STATIC_SHARE: u8 = 1;
}

/// Every this many bytes written into the event ring, an event wakes the daemon whatever its
/// kind: under a flood the events that wait would otherwise fill the ring, and the next
/// opening's event would be lost. One wakeup per batch of some 340 events costs little, and a
/// daemon that lags behind does not make every event pay for one.
pub const WAKE_EVERY_BYTES: u64 = 16 * 1024;

/// The bytes one event takes in the ring: the event and the ring's 8-byte record header.
pub const RECORD_BYTES: u64 = size_of::<Event>() as u64 + 8;

/// Whether the event that brought the ring's producer position to `produced` bytes crossed a
/// multiple of [`WAKE_EVERY_BYTES`].
pub const fn completes_batch(produced: u64) -> bool {
    produced % WAKE_EVERY_BYTES < RECORD_BYTES
}

#[cfg(test)]
mod tests {
    use super::kind::*;
    use super::{DecodeError, DoorEvent, Event};
    use crate::Addr;
    use crate::spa::Rejection;

    #[test]
    fn every_event_survives_the_ring() {
        let source = Addr::from_ipv4([198, 51, 100, 2]);
        for event in [
            DoorEvent::Stage {
                source,
                door: 1,
                stage: 2,
            },
            DoorEvent::Opened {
                source,
                door: 3,
                expires_ns: 99,
                steps: 3,
            },
            DoorEvent::Opened {
                source,
                door: 4,
                expires_ns: 99,
                steps: 0,
            },
            DoorEvent::Refreshed {
                source,
                door: 63,
                expires_ns: u64::MAX,
                steps: 32,
            },
            DoorEvent::WouldDrop {
                source,
                port: crate::ProtoPort::udp(51820),
            },
            DoorEvent::Reset {
                source,
                door: 0,
                stage: 31,
            },
            DoorEvent::TimedOut {
                source,
                door: 7,
                stage: 1,
            },
            DoorEvent::Crowded { source, door: 4 },
            DoorEvent::GateFull {
                source,
                door: 5,
                static_share: false,
            },
            DoorEvent::GateFull {
                source,
                door: 5,
                static_share: true,
            },
            DoorEvent::Banned {
                source,
                until_ns: 12_345,
                prefix: 64,
            },
            DoorEvent::SpaRejected {
                source,
                reason: Rejection::Replayed,
            },
            DoorEvent::SpentRefused {
                source,
                door: 9,
                no_room: false,
            },
            DoorEvent::SpentRefused {
                source,
                door: 9,
                no_room: true,
            },
        ] {
            let record = event.encode(1);
            assert_eq!(Event::from_bytes(&record.to_bytes()), Ok(record));
            assert_eq!(
                DoorEvent::decode(&record.to_bytes()),
                Ok(event),
                "{event:?}"
            );
        }
    }

    #[test]
    fn an_opened_event_carries_its_deadline() {
        let source = Addr::from_ipv4([198, 51, 100, 2]);
        let event = Event {
            time_ns: 1,
            expires_ns: 99,
            addr: source,
            kind: OPENED,
            door: 3,
            stage: 0,
            _pad1: 0,
            _pad2: 0,
        };
        assert_eq!(
            DoorEvent::decode(&event.to_bytes()),
            Ok(DoorEvent::Opened {
                source,
                door: 3,
                expires_ns: 99,
                steps: 0,
            })
        );
    }

    #[test]
    fn a_short_or_unknown_event_is_an_error() {
        assert_eq!(DoorEvent::decode(&[0; 7]), Err(DecodeError::Size(7)));
        let event = Event {
            kind: 200,
            ..Event::default()
        };
        assert_eq!(
            DoorEvent::decode(&event.to_bytes()),
            Err(DecodeError::Kind(200))
        );
        let event = Event {
            kind: SPA_REJECTED,
            stage: 99,
            ..Event::default()
        };
        assert_eq!(
            DoorEvent::decode(&event.to_bytes()),
            Err(DecodeError::Reason(99))
        );
    }

    #[test]
    fn doors_opening_wake_the_daemon_at_once() {
        for prompt in [OPENED, REFRESHED] {
            assert!(wakes_daemon(prompt), "kind {prompt}");
        }
    }

    #[test]
    fn one_event_in_each_batch_of_the_ring_wakes_the_daemon() {
        let batch_ends = (1..=100_000u64)
            .map(|n| n * super::RECORD_BYTES)
            .filter(|&produced| super::completes_batch(produced))
            .count() as u64;
        let batches = 100_000 * super::RECORD_BYTES / super::WAKE_EVERY_BYTES;
        assert_eq!(batch_ends, batches);
    }

    #[test]
    fn what_a_flood_can_cause_per_packet_waits_for_the_daemons_tick() {
        for lazy in [
            STAGE,
            RESET,
            TIMED_OUT,
            CROWDED,
            GATE_FULL,
            BANNED,
            SPA_REJECTED,
            SPENT,
            WOULD_DROP,
        ] {
            assert!(!wakes_daemon(lazy), "kind {lazy}");
        }
    }
}
