//! Single-packet authorization: one UDP datagram that opens a door, checked in the kernel.
//!
//! Layout, 56 bytes, integers big-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..2 | magic `kn` |
//! | 2 | version (1) |
//! | 3 | reserved, zero |
//! | 4..8 | client key id |
//! | 8..12 | door tag: the first four bytes of SHA-256 of the door's name |
//! | 12..16 | reserved, zero |
//! | 16..24 | timestamp, Unix seconds |
//! | 24..40 | random nonce |
//! | 40..56 | SipHash-2-4-128 over bytes 0..40 followed by the 16-byte source address |
//!
//! The MAC covers the source address, so a captured packet sent from anywhere else fails; the
//! nonce cache and the timestamp window stop replays from the same address.

use crate::Addr;
use crate::siphash::{key_words, siphash128_words};

pub const PACKET_LEN: usize = 56;
/// The bytes the MAC covers before the source address.
pub const SIGNED_LEN: usize = 40;
pub const MAGIC: [u8; 2] = *b"kn";
pub const VERSION: u8 = 1;
/// knock's default SPA port; fwknop's is 62201, this one is next to it.
pub const DEFAULT_PORT: u16 = 62202;

/// What a packet asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub key_id: u32,
    pub door_tag: u32,
    pub timestamp: u64,
    pub nonce: [u8; 16],
}

/// Why a packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Rejection {
    /// Not 56 bytes, or a wrong magic or version.
    Malformed = 1,
    UnknownKey = 2,
    BadMac = 3,
    /// The timestamp is outside the window around the host's clock.
    Stale = 4,
    /// The nonce was seen before.
    Replayed = 5,
    /// No SPA door has this tag.
    UnknownDoor = 6,
    /// The key does not open the door the packet asks for (its key line names other doors).
    DoorRefused = 7,
}

impl Rejection {
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Malformed,
            2 => Self::UnknownKey,
            3 => Self::BadMac,
            4 => Self::Stale,
            5 => Self::Replayed,
            6 => Self::UnknownDoor,
            7 => Self::DoorRefused,
            _ => return None,
        })
    }

    pub const fn describe(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown key",
            Self::BadMac => "bad MAC",
            Self::Stale => "stale timestamp",
            Self::Replayed => "replayed",
            Self::UnknownDoor => "unknown door",
            Self::DoorRefused => "a door this key does not open",
        }
    }
}

/// Reads the fields of a packet whose magic and version are right.
#[inline(always)]
pub fn parse(packet: &[u8; PACKET_LEN]) -> Option<Request> {
    if packet[0] != MAGIC[0] || packet[1] != MAGIC[1] || packet[2] != VERSION {
        return None;
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
    };
    let mut nonce = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        nonce[i] = packet[24 + i];
        i += 1;
    }
    Some(Request {
        key_id: be32(4),
        door_tag: be32(8),
        timestamp: u64::from_be_bytes([
            packet[16], packet[17], packet[18], packet[19], packet[20], packet[21], packet[22],
            packet[23],
        ]),
        nonce,
    })
}

/// The MAC of a packet's signed bytes as sent from `source`.
#[inline(always)]
pub fn mac(key: &[u8; 16], packet: &[u8; PACKET_LEN], source: &Addr) -> [u64; 2] {
    let word = |bytes: &[u8], at: usize| {
        u64::from_le_bytes([
            bytes[at],
            bytes[at + 1],
            bytes[at + 2],
            bytes[at + 3],
            bytes[at + 4],
            bytes[at + 5],
            bytes[at + 6],
            bytes[at + 7],
        ])
    };
    let words = [
        word(packet, 0),
        word(packet, 8),
        word(packet, 16),
        word(packet, 24),
        word(packet, 32),
        address_half(source, 0),
        address_half(source, 2),
    ];
    let (k0, k1) = key_words(key);
    siphash128_words(k0, k1, &words)
}

/// Eight bytes of `source` from word `at` on, as a little-endian number: what the MAC's input
/// has there, with the address as bytes in network order.
#[inline(always)]
fn address_half(source: &Addr, at: usize) -> u64 {
    let words = source.words();
    u64::from(u32::from_le(words[at])) | (u64::from(u32::from_le(words[at + 1])) << 32)
}

/// Whether the packet's MAC is right for `key` and `source`. Compares without early exit.
#[inline(always)]
pub fn authentic(key: &[u8; 16], packet: &[u8; PACKET_LEN], source: &Addr) -> bool {
    let expected = mac(key, packet, source);
    let mut carried = [0u64; 2];
    let mut half = 0;
    while half < 2 {
        let at = SIGNED_LEN + half * 8;
        carried[half] = u64::from_le_bytes([
            packet[at],
            packet[at + 1],
            packet[at + 2],
            packet[at + 3],
            packet[at + 4],
            packet[at + 5],
            packet[at + 6],
            packet[at + 7],
        ]);
        half += 1;
    }
    (expected[0] ^ carried[0]) | (expected[1] ^ carried[1]) == 0
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const LARGEST_SECONDS: u64 = u64::MAX / NANOS_PER_SECOND;

/// Whether a timestamp (seconds) lies within `window_s` seconds of `now_ns`, either side.
///
/// The comparison is done in nanoseconds, by multiplying, because 32-bit ARM kernels before 6.7
/// cannot JIT a 64-bit division and refuse the whole program.
#[inline(always)]
pub const fn fresh(timestamp: u64, now_ns: u64, window_s: u64) -> bool {
    if timestamp > LARGEST_SECONDS || window_s > LARGEST_SECONDS {
        return false;
    }
    (timestamp * NANOS_PER_SECOND).abs_diff(now_ns) <= window_s * NANOS_PER_SECOND
}

/// The tag packets name a door by: the first four bytes of SHA-256 of its name. User space
/// computes it (the daemon for the `SPA_DOORS` map, the client for its packet); the kernel only
/// looks it up.
#[cfg(feature = "user")]
pub fn door_tag(name: &str) -> u32 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Builds a packet: the client's side.
pub fn seal(request: &Request, key: &[u8; 16], source: &Addr) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0..2].copy_from_slice(&MAGIC);
    packet[2] = VERSION;
    packet[4..8].copy_from_slice(&request.key_id.to_be_bytes());
    packet[8..12].copy_from_slice(&request.door_tag.to_be_bytes());
    packet[16..24].copy_from_slice(&request.timestamp.to_be_bytes());
    packet[24..40].copy_from_slice(&request.nonce);
    let tag = mac(key, &packet, source);
    packet[40..48].copy_from_slice(&tag[0].to_le_bytes());
    packet[48..56].copy_from_slice(&tag[1].to_le_bytes());
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    fn request() -> Request {
        Request {
            key_id: 7,
            door_tag: 0xdead_beef,
            timestamp: 1_800_000_000,
            nonce: [9; 16],
        }
    }

    fn source() -> Addr {
        Addr::from_ipv4([198, 51, 100, 2])
    }

    #[test]
    fn a_sealed_packet_parses_back_and_is_authentic() {
        let packet = seal(&request(), &KEY, &source());
        assert_eq!(parse(&packet), Some(request()));
        assert!(authentic(&KEY, &packet, &source()));
    }

    #[test]
    fn any_flipped_bit_breaks_the_mac() {
        let packet = seal(&request(), &KEY, &source());
        for bit in 0..PACKET_LEN * 8 {
            let mut bent = packet;
            bent[bit / 8] ^= 1 << (bit % 8);
            assert!(!authentic(&KEY, &bent, &source()), "bit {bit}");
        }
    }

    #[test]
    fn another_source_or_key_breaks_the_mac() {
        let packet = seal(&request(), &KEY, &source());
        assert!(!authentic(
            &KEY,
            &packet,
            &Addr::from_ipv4([198, 51, 100, 3])
        ));
        assert!(!authentic(b"fedcba9876543210", &packet, &source()));
    }

    #[test]
    fn a_wrong_magic_or_version_is_not_parsed() {
        let mut packet = seal(&request(), &KEY, &source());
        packet[2] = 2;
        assert_eq!(parse(&packet), None);
        packet[2] = VERSION;
        packet[0] = b'x';
        assert_eq!(parse(&packet), None);
    }

    #[test]
    fn the_window_is_symmetric_and_inclusive() {
        const S: u64 = NANOS_PER_SECOND;
        assert!(fresh(100, 130 * S, 30));
        assert!(fresh(130, 100 * S, 30));
        assert!(!fresh(100, 131 * S, 30));
        assert!(!fresh(131, 100 * S, 30));
        assert!(!fresh(100, 130 * S + 1, 30));
    }

    #[test]
    fn a_timestamp_too_large_to_scale_is_never_fresh() {
        assert!(!fresh(u64::MAX, u64::MAX, 30));
        assert!(!fresh(LARGEST_SECONDS + 1, u64::MAX, u64::MAX));
    }

    /// The MAC is SipHash-2-4-128 of the 40 signed bytes and the 16 address bytes.
    #[test]
    fn the_mac_is_siphash128_of_the_signed_bytes_and_the_address() {
        let packet = seal(&request(), &KEY, &source());
        let mut input = [0u8; 56];
        input[..40].copy_from_slice(&packet[..40]);
        input[40..].copy_from_slice(&source().octets());
        assert_eq!(packet[40..], crate::siphash::siphash128(&KEY, &input));
    }
}
