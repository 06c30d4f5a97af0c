//! The summary of one TCP or UDP packet that the classifier hands to the gate and the knock
//! state machine.

use crate::Addr;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP header flag bits, as in the 14th byte of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// A TCP segment or UDP datagram whose destination port is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: Addr,
    pub dst: Addr,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    pub dport: u16,
    /// TCP flags; zero for UDP.
    pub tcp_flags: u8,
    /// Sent to one host: neither the Ethernet nor the IP destination is broadcast or multicast.
    pub unicast: bool,
    /// The first fragment of a fragmented datagram. It can open a connection once reassembled,
    /// so the gate judges it, but it never counts as a knock.
    pub fragment: bool,
    /// Addressed to one of the host's own addresses (or a door's target) rather than routed
    /// through it. The classifier cannot know and says no; the program fills it in.
    pub to_host: bool,
    /// For UDP: where the datagram's payload starts in the frame, and its length up to the end
    /// the IP header gives.
    pub payload_at: u16,
    pub payload_len: u16,
}

impl Segment {
    pub const fn is_tcp(&self) -> bool {
        self.proto == PROTO_TCP
    }

    pub const fn is_udp(&self) -> bool {
        self.proto == PROTO_UDP
    }

    /// A TCP segment that asks for a new connection: SYN without ACK.
    pub const fn opens_connection(&self) -> bool {
        self.is_tcp()
            && self.tcp_flags & tcp_flags::SYN != 0
            && self.tcp_flags & tcp_flags::ACK == 0
    }

    /// A first contact with a port: a new TCP connection or any UDP datagram. These are what the
    /// strict progress rule treats as knocks on the wrong door.
    pub const fn is_contact(&self) -> bool {
        self.opens_connection() || self.is_udp()
    }
}
