//! Decoding the events the XDP program sends through its ring buffer.

use knock_common::Addr;
use knock_common::event::{Event, kind};
use knock_common::spa::Rejection;

pub mod commands;
pub mod keeper;
pub mod names;

/// Something that happened to one source at one door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorEvent {
    Stage {
        source: Addr,
        door: u8,
        stage: u8,
    },
    Opened {
        source: Addr,
        door: u8,
        expires_ns: u64,
    },
    Refreshed {
        source: Addr,
        door: u8,
        expires_ns: u64,
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
    GateFull {
        source: Addr,
        door: u8,
    },
    Banned {
        source: Addr,
        until_ns: u64,
    },
    SpaRejected {
        source: Addr,
        reason: Rejection,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("an event of {0} bytes; events are {size} bytes", size = size_of::<Event>())]
    Size(usize),
    #[error("an event of unknown kind {0}")]
    Kind(u8),
    #[error("an SPA rejection of unknown reason {0}")]
    Reason(u8),
}

pub fn decode(bytes: &[u8]) -> Result<DoorEvent, DecodeError> {
    if bytes.len() != size_of::<Event>() {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length matches and Event is plain integers, valid for any bit pattern.
    let event: Event = unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() };
    let (source, door, stage) = (event.addr, event.door, event.stage);
    Ok(match event.kind {
        kind::STAGE => DoorEvent::Stage {
            source,
            door,
            stage,
        },
        kind::OPENED => DoorEvent::Opened {
            source,
            door,
            expires_ns: event.expires_ns,
        },
        kind::REFRESHED => DoorEvent::Refreshed {
            source,
            door,
            expires_ns: event.expires_ns,
        },
        kind::RESET => DoorEvent::Reset {
            source,
            door,
            stage,
        },
        kind::TIMED_OUT => DoorEvent::TimedOut {
            source,
            door,
            stage,
        },
        kind::CROWDED => DoorEvent::Crowded { source, door },
        kind::GATE_FULL => DoorEvent::GateFull { source, door },
        kind::BANNED => DoorEvent::Banned {
            source,
            until_ns: event.expires_ns,
        },
        kind::SPA_REJECTED => DoorEvent::SpaRejected {
            source,
            reason: Rejection::from_u8(stage).ok_or(DecodeError::Reason(stage))?,
        },
        other => return Err(DecodeError::Kind(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(event: &Event) -> Vec<u8> {
        // SAFETY: Event is repr(C) plain data without padding.
        unsafe {
            std::slice::from_raw_parts((event as *const Event).cast::<u8>(), size_of::<Event>())
        }
        .to_vec()
    }

    #[test]
    fn an_opened_event_carries_its_deadline() {
        let source = Addr::from_ipv4([198, 51, 100, 2]);
        let event = Event {
            time_ns: 1,
            expires_ns: 99,
            addr: source,
            kind: kind::OPENED,
            door: 3,
            stage: 0,
            _pad1: 0,
            _pad2: 0,
        };
        assert_eq!(
            decode(&bytes_of(&event)),
            Ok(DoorEvent::Opened {
                source,
                door: 3,
                expires_ns: 99
            })
        );
    }

    #[test]
    fn a_short_or_unknown_event_is_an_error() {
        assert_eq!(decode(&[0; 7]), Err(DecodeError::Size(7)));
        let event = Event {
            kind: 200,
            ..Event::default()
        };
        assert_eq!(decode(&bytes_of(&event)), Err(DecodeError::Kind(200)));
    }
}
