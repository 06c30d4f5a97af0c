//! The answer a closed port gives, built by the program: a refused connection attempt to a
//! protected port gets the reset the host's own stack sends for a SYN to a closed port, so a
//! scan cannot tell the protected port from the closed ones around it.
//!
//! Linux answers a SYN to a closed port (`tcp_v4_send_reset`, `tcp_v6_send_reset`) with a
//! segment of 20 bytes, no options: RST and ACK set, sequence number 0, acknowledgement number
//! the SYN's sequence number plus one (plus one more for a FIN, plus the payload), window 0;
//! swapped ports and addresses; over IPv4 a 20-byte header with the SYN's TOS less its ECN
//! bits, identification 0, don't-fragment set and the host's default TTL; over IPv6 a bare
//! header with the SYN's traffic class less its ECN bits, a flow label hashed from the flow
//! (the host's automatic flow labels) and the interface's hop limit. [`reset_for`] builds
//! exactly that, for a plain SYN only: one whose every field the answer depends on is known.
//! Anything else (IPv4 options, IPv6 extension headers, fragments, a payload, checksums that
//! do not add up, sources the host would never answer) is left to the host's stack, which
//! answers as it does for any closed port while the socket-lookup guard refuses the packet a
//! socket (see knock-ebpf's `guard`), or dropped where no guard is attached.
//!
//! Pure, generic over [`FrameBytes`]: the kernel runs it over packet memory, the host tests
//! compare its output with resets the host's stack sent.

use crate::frame::FrameBytes;
use crate::segment::tcp_flags::{ACK, FIN, RST, SYN};

/// Where the main program found a refused packet's headers, handed to the reply program
/// through the per-CPU scratch slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// Where the IP header starts: 0 on links without Ethernet headers.
    pub l3: u16,
    /// Where the TCP or UDP header starts.
    pub l4: u16,
    /// 1 for IPv6.
    pub ipv6: u8,
    /// 1 for a TCP segment, 0 for a UDP datagram.
    pub tcp: u8,
    /// 1 when the frame starts at the IP header (no Ethernet header to turn around).
    pub ip_link: u8,
    /// The class byte of the packet's port (`ports`): which doors guard it.
    pub class: u8,
}
crate::assert_layout!(Probe, size = 8, align = 2);

/// What the host puts into its resets besides what the SYN decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stack {
    pub ttl: u8,
    pub hop_limit: u8,
    /// Keys the hash that makes IPv6 flow labels.
    pub label_key: u32,
}

/// The reset for a plain SYN, from the IP header on, as big-endian 32-bit words: words keep
/// the BPF stack small, where byte arrays would each take a slot of their own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reset {
    /// The reset's length in bytes from the IP header on: 40 or 60 (0 while none is built).
    pub len: u32,
    /// The IP header and the TCP header: the first 10 words for IPv4, all 15 for IPv6.
    pub words: [u32; 15],
}

/// Lengths of a reset from the IP header on.
pub const IPV4_RESET: usize = 40;
pub const IPV6_RESET: usize = 60;

const PROTO_TCP: u32 = 6;

/// Builds into `reset` the reset the host would send for the SYN `probe` describes; false when
/// the SYN is not plain (see the module's documentation): then only the host's stack can answer
/// exactly. The reset is built in place (in the kernel, in per-CPU map memory: the BPF stack is
/// too small for it).
#[inline(always)]
pub fn reset_for<F: FrameBytes + ?Sized>(
    frame: &F,
    probe: Probe,
    stack: Stack,
    reset: &mut Reset,
) -> bool {
    let l3 = usize::from(probe.l3);
    let l4 = usize::from(probe.l4);
    if probe.tcp == 0 {
        return false;
    }
    let len = if probe.ipv6 != 0 {
        reset_v6(frame, l3, l4, stack, &mut reset.words)
    } else {
        reset_v4(frame, l3, l4, stack, &mut reset.words)
    };
    reset.len = len.unwrap_or(0) as u32;
    len.is_some()
}

/// The big-endian word at `offset`.
#[inline(always)]
fn word<F: FrameBytes + ?Sized>(frame: &F, offset: usize) -> Option<u32> {
    frame.bytes::<4>(offset).map(u32::from_be_bytes)
}

/// [`word`] for reads in a loop: the offset hidden from the compiler, which would otherwise
/// turn the bounds check of each round into arithmetic on the packet's end (which the kernel's
/// verifier refuses), then bounded again for the verifier with a mask that changes no offset
/// a reset is built from.
#[inline(always)]
fn word_in_loop<F: FrameBytes + ?Sized>(frame: &F, offset: usize) -> Option<u32> {
    word(frame, frame.opaque(offset) & 0x7ff)
}

/// A word's two 16-bit halves added, for a one's complement sum.
#[inline(always)]
const fn halves(word: u32) -> u32 {
    (word >> 16) + (word & 0xffff)
}

/// The SYN's TCP header as the reset needs it, with the checksum sum of its header bytes.
struct Syn {
    /// The SYN's ports as they stand in its first word: source port, then destination port.
    ports: u32,
    ack: u32,
    sum: u32,
}

/// Reads a SYN whose TCP header (with options) makes up the whole segment of `len` bytes.
#[inline(always)]
fn syn<F: FrameBytes + ?Sized>(frame: &F, l4: usize, len: usize) -> Option<Syn> {
    let ports = word(frame, l4)?;
    let seq = word(frame, l4 + 4)?;
    let ack_seq = word(frame, l4 + 8)?;
    let offset_and_flags = word(frame, l4 + 12)?;
    let tail = word(frame, l4 + 16)?;
    let header = ((offset_and_flags >> 28) * 4) as usize;
    let flags = (offset_and_flags >> 16) as u8;
    // A payload (TCP Fast Open) would count in the acknowledgement; leave it to the host.
    if header < 20 || header != len || flags & SYN == 0 || flags & (ACK | RST) != 0 {
        return None;
    }
    let mut sum =
        halves(ports) + halves(seq) + halves(ack_seq) + halves(offset_and_flags) + halves(tail);
    // The options: up to 40 bytes, in whole words.
    for index in 0..10 {
        if 20 + 4 * index < header {
            sum += halves(word_in_loop(frame, l4 + 20 + 4 * index)?);
        }
    }
    Some(Syn {
        ports,
        ack: seq
            .wrapping_add(1)
            .wrapping_add(u32::from(flags & FIN != 0)),
        sum,
    })
}

#[inline(always)]
fn reset_v4<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    l4: usize,
    stack: Stack,
    words: &mut [u32; 15],
) -> Option<usize> {
    let first = word(frame, l3)?;
    let fragment = word(frame, l3 + 4)?;
    let ttl_and_protocol = word(frame, l3 + 8)?;
    let src = word(frame, l3 + 12)?;
    let dst = word(frame, l3 + 16)?;
    let header_sum =
        halves(first) + halves(fragment) + halves(ttl_and_protocol) + halves(src) + halves(dst);
    // No options (the host would echo some), not a fragment, TCP, a header that adds up.
    if first >> 24 != 0x45
        || fragment & 0x3fff != 0
        || (ttl_and_protocol >> 16) & 0xff != PROTO_TCP
        || fold(header_sum) != 0xffff
    {
        return None;
    }
    // Sources the host drops as martians: this network, loopback, multicast and above.
    let network = src >> 24;
    if network == 0 || network == 127 || network >= 224 || l4 != l3 + 20 {
        return None;
    }
    let len = ((first & 0xffff) as usize).checked_sub(20)?;
    let syn = syn(frame, l4, len)?;
    let addresses = halves(src) + halves(dst);
    if fold(addresses + PROTO_TCP + len as u32 + syn.sum) != 0xffff {
        return None;
    }
    // Version and header length, the TOS less its ECN bits, the length; identification 0,
    // don't fragment; the host's TTL, TCP.
    words[0] = (0x45 << 24) | ((first >> 16) & 0xfc) << 16 | IPV4_RESET as u32;
    words[1] = 0x4000;
    words[2] = (u32::from(stack.ttl) << 24) | (PROTO_TCP << 16);
    words[3] = dst;
    words[4] = src;
    let header = !fold(halves(words[0]) + halves(words[1]) + halves(words[2]) + addresses);
    words[2] |= u32::from(header);
    tcp_reset(words, 5, &syn);
    // The pseudo-header's addresses add up the same either way round.
    let checksum = !fold(addresses + PROTO_TCP + 20 + tcp_sum(words, 5));
    words[9] = u32::from(checksum) << 16;
    Some(IPV4_RESET)
}

#[inline(always)]
fn reset_v6<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    l4: usize,
    stack: Stack,
    words: &mut [u32; 15],
) -> Option<usize> {
    let first = word(frame, l3)?;
    let lengths = word(frame, l3 + 4)?;
    // No extension headers: TCP right after the fixed header.
    if (lengths >> 8) & 0xff != PROTO_TCP || l4 != l3 + 40 {
        return None;
    }
    // The addresses, swapped, straight into the reset.
    let pair: [u8; 32] = frame.bytes(l3 + 8)?;
    let mut addresses = 0;
    for index in 0..4 {
        let at = 4 * index;
        let src = u32::from_be_bytes([pair[at], pair[at + 1], pair[at + 2], pair[at + 3]]);
        let dst = u32::from_be_bytes([pair[16 + at], pair[17 + at], pair[18 + at], pair[19 + at]]);
        words[2 + index] = dst;
        words[6 + index] = src;
        addresses += halves(src) + halves(dst);
    }
    if !answerable_v6(words) {
        return None;
    }
    let len = (lengths >> 16) as usize;
    let syn = syn(frame, l4, len)?;
    if fold(addresses + PROTO_TCP + len as u32 + syn.sum) != 0xffff {
        return None;
    }
    let class = (first >> 20) & 0xfc;
    let label = flow_label(stack.label_key, words, syn.ports);
    words[0] = (6 << 28) | (class << 20) | label;
    words[1] = (20 << 16) | (PROTO_TCP << 8) | u32::from(stack.hop_limit);
    tcp_reset(words, 10, &syn);
    let checksum = !fold(addresses + PROTO_TCP + 20 + tcp_sum(words, 10));
    words[14] = u32::from(checksum) << 16;
    Some(IPV6_RESET)
}

/// Whether the host would answer an IPv6 source at all: not unspecified, loopback or
/// multicast (it drops those before TCP sees them). The source stands, as the reset's
/// destination, in words 6 to 9.
#[inline(always)]
fn answerable_v6(words: &[u32; 15]) -> bool {
    let high = words[6] | words[7] | words[8];
    words[6] >> 24 != 0xff && !(high == 0 && words[9] <= 1)
}

/// Writes the reset's TCP header at word `at`, its checksum zero until it is computed: the
/// SYN's ports swapped, sequence number 0, the acknowledgement, RST and ACK, window 0.
#[inline(always)]
fn tcp_reset(words: &mut [u32; 15], at: usize, syn: &Syn) {
    words[at] = syn.ports.rotate_left(16);
    words[at + 1] = 0;
    words[at + 2] = syn.ack;
    words[at + 3] = (5 << 28) | (u32::from(RST | ACK) << 16);
    words[at + 4] = 0;
}

/// The one's complement sum of the five words of a TCP header at word `at`.
#[inline(always)]
fn tcp_sum(words: &[u32; 15], at: usize) -> u32 {
    halves(words[at])
        + halves(words[at + 1])
        + halves(words[at + 2])
        + halves(words[at + 3])
        + halves(words[at + 4])
}

/// The flow label of a reset: like the host's automatic labels, a hash of the flow that is
/// never zero and the same for every reset of one flow; keyed, so nobody can predict it. The
/// reset's addresses stand in words 2 to 9.
#[inline(always)]
pub fn flow_label(key: u32, words: &[u32; 15], ports: u32) -> u32 {
    let mut hash = key ^ 0x9e37_79b9;
    for word in &words[2..10] {
        hash = (hash ^ word).wrapping_mul(0x85eb_ca6b).rotate_left(13);
    }
    hash ^= ports;
    hash = (hash ^ (hash >> 16)).wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    let label = hash & 0x000f_ffff;
    if label == 0 { 1 } else { label }
}

/// Folds a sum of 16-bit words into 16 bits.
#[inline(always)]
const fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Turns a frame holding a refused SYN into the reset `reset`, in place: Ethernet addresses
/// swapped (VLAN tags stay), the IP and TCP headers written at the probe's `l3`. The frame
/// must already be cut to `l3 + reset.len` bytes.
#[inline(always)]
pub fn write<F: FrameWrite + ?Sized>(frame: &mut F, probe: Probe, reset: &Reset) -> Option<()> {
    if probe.ip_link == 0 {
        let destination: [u8; 6] = frame.bytes(0)?;
        let source: [u8; 6] = frame.bytes(6)?;
        frame.put(0, source)?;
        frame.put(6, destination)?;
    }
    let l3 = usize::from(probe.l3);
    for index in 0..15 {
        if 4 * index < reset.len as usize {
            frame.put(l3 + 4 * index, reset.words[index].to_be_bytes())?;
        }
    }
    Some(())
}

/// A frame the program may write to, through one bounds-checked accessor like
/// [`FrameBytes::bytes`].
pub trait FrameWrite: FrameBytes {
    /// Writes `bytes` at `offset`, or `None` when the frame ends before their end.
    fn put<const N: usize>(&mut self, offset: usize, bytes: [u8; N]) -> Option<()>;
}

impl FrameWrite for [u8] {
    fn put<const N: usize>(&mut self, offset: usize, bytes: [u8; N]) -> Option<()> {
        let end = offset.checked_add(N)?;
        self.get_mut(offset..end)?.copy_from_slice(&bytes);
        Some(())
    }
}

#[cfg(test)]
mod tests;
