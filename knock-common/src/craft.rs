//! Builds Ethernet frames byte by byte for tests, the packet corpus, benchmarks and fuzz seeds:
//! valid ones with correct checksums, and every kind of broken one.

use alloc::vec::Vec;
use core::net::IpAddr;

use crate::segment::{PROTO_TCP, PROTO_UDP};

/// The transport part of a crafted frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// Any other protocol, with its payload as given.
    Raw {
        proto: u8,
        payload: Vec<u8>,
    },
}

/// An IPv6 extension header placed between the fixed header and the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The header's own type (0, 43, 44, 51, 60 ...).
    pub kind: u8,
    /// The header's bytes after its first two (next header and length), padded by `build`.
    pub body: Vec<u8>,
}

/// A frame under construction. Fields are public so a test can state exactly what is odd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Craft {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI).
    pub vlan_tags: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
    /// IPv4 options, padded to whole words by `build`.
    pub ipv4_options: Vec<u8>,
    pub ipv6_extensions: Vec<Extension>,
    /// Fragment offset in 8-byte units and the more-fragments flag. For IPv6 this adds a
    /// fragment header after the other extensions.
    pub fragment: Option<(u16, bool)>,
    pub ttl: u8,
}

pub const ETH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const ETH_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const ETH_BROADCAST: [u8; 6] = [0xff; 6];

impl Craft {
    pub fn tcp(src: IpAddr, dst: IpAddr, dport: u16, flags: u8) -> Self {
        Self::new(
            src,
            dst,
            Transport::Tcp {
                sport: 40000,
                dport,
                flags,
            },
        )
    }

    pub fn udp(src: IpAddr, dst: IpAddr, dport: u16) -> Self {
        Self::new(
            src,
            dst,
            Transport::Udp {
                sport: 40000,
                dport,
                payload: alloc::vec![0],
            },
        )
    }

    pub fn new(src: IpAddr, dst: IpAddr, transport: Transport) -> Self {
        Self {
            eth_dst: ETH_DST,
            eth_src: ETH_SRC,
            vlan_tags: Vec::new(),
            src,
            dst,
            transport,
            ipv4_options: Vec::new(),
            ipv6_extensions: Vec::new(),
            fragment: None,
            ttl: 64,
        }
    }

    pub fn with_vlan(mut self, tpid: u16, id: u16) -> Self {
        self.vlan_tags.push((tpid, id));
        self
    }

    pub fn with_ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        self
    }

    pub fn with_extension(mut self, kind: u8, body: &[u8]) -> Self {
        self.ipv6_extensions.push(Extension {
            kind,
            body: body.to_vec(),
        });
        self
    }

    pub fn with_fragment(mut self, offset_units: u16, more: bool) -> Self {
        self.fragment = Some((offset_units, more));
        self
    }

    pub fn with_eth_dst(mut self, mac: [u8; 6]) -> Self {
        self.eth_dst = mac;
        self
    }

    /// The transport header and payload, with a correct checksum.
    pub fn transport_bytes(&self) -> Vec<u8> {
        let (proto, mut bytes, checksum_at) = match &self.transport {
            Transport::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut b = Vec::with_capacity(20);
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&0x1000_0000u32.to_be_bytes());
                b.extend_from_slice(&0u32.to_be_bytes());
                b.push(5 << 4);
                b.push(*flags);
                b.extend_from_slice(&64240u16.to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, 0]);
                (PROTO_TCP, b, Some(16))
            }
            Transport::Udp {
                sport,
                dport,
                payload,
            } => {
                let mut b = Vec::with_capacity(8 + payload.len());
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(payload);
                (PROTO_UDP, b, Some(6))
            }
            Transport::Raw { proto, payload } => (*proto, payload.clone(), None),
        };
        if let Some(at) = checksum_at {
            let sum = self.pseudo_header_sum(proto, bytes.len()) + ones_sum(&bytes);
            let mut checksum = fold(sum);
            if checksum == 0 && proto == PROTO_UDP {
                checksum = 0xffff;
            }
            bytes[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
        }
        bytes
    }

    fn proto(&self) -> u8 {
        match self.transport {
            Transport::Tcp { .. } => PROTO_TCP,
            Transport::Udp { .. } => PROTO_UDP,
            Transport::Raw { proto, .. } => proto,
        }
    }

    fn pseudo_header_sum(&self, proto: u8, len: usize) -> u32 {
        let mut pseudo = Vec::new();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, proto]);
                pseudo.extend_from_slice(&(len as u16).to_be_bytes());
            }
            (s, d) => {
                pseudo.extend_from_slice(&v6(s));
                pseudo.extend_from_slice(&v6(d));
                pseudo.extend_from_slice(&(len as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, proto]);
            }
        }
        ones_sum(&pseudo)
    }

    /// The whole frame.
    pub fn build(&self) -> Vec<u8> {
        let payload = self.transport_bytes();
        self.build_with_payload(&payload)
    }

    /// The packet as a link without an Ethernet header carries it (tun, WireGuard, PPP): the
    /// frame from its IP header on.
    pub fn build_ip(&self) -> Vec<u8> {
        let frame = self.build();
        frame[self.link_header_len()..].to_vec()
    }

    /// Like `build_with_payload`, from the IP header on.
    pub fn build_ip_with_payload(&self, payload: &[u8]) -> Vec<u8> {
        let frame = self.build_with_payload(payload);
        frame[self.link_header_len()..].to_vec()
    }

    /// The bytes before the IP header: Ethernet's 14, and 4 per VLAN tag.
    pub fn link_header_len(&self) -> usize {
        14 + 4 * self.vlan_tags.len()
    }

    /// The frame around an IP payload given verbatim, for fragments and broken transports.
    pub fn build_with_payload(&self, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(64 + payload.len());
        frame.extend_from_slice(&self.eth_dst);
        frame.extend_from_slice(&self.eth_src);
        for (tpid, tci) in &self.vlan_tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut options = self.ipv4_options.clone();
                while !options.len().is_multiple_of(4) {
                    options.push(0);
                }
                let header_len = 20 + options.len();
                let mut ip = Vec::with_capacity(header_len);
                ip.push(0x40 | (header_len / 4) as u8);
                ip.push(0);
                ip.extend_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&0x1234u16.to_be_bytes());
                let fragment = self.fragment.map_or(0x4000, |(offset, more)| {
                    (offset & 0x1fff) | (u16::from(more) << 13)
                });
                ip.extend_from_slice(&fragment.to_be_bytes());
                ip.push(self.ttl);
                ip.push(self.proto());
                ip.extend_from_slice(&[0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                ip.extend_from_slice(&options);
                let checksum = fold(ones_sum(&ip));
                ip[10..12].copy_from_slice(&checksum.to_be_bytes());
                frame.extend_from_slice(&ip);
            }
            (s, d) => {
                frame.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut chain = Vec::new();
                let mut kinds: Vec<u8> = self.ipv6_extensions.iter().map(|e| e.kind).collect();
                if self.fragment.is_some() {
                    kinds.push(44);
                }
                kinds.push(self.proto());
                for (i, ext) in self.ipv6_extensions.iter().enumerate() {
                    let mut body = ext.body.clone();
                    let unit = if ext.kind == 51 { 4 } else { 8 };
                    while !(body.len() + 2).is_multiple_of(unit) || body.len() + 2 < 8 {
                        body.push(0);
                    }
                    let total = body.len() + 2;
                    let length = if ext.kind == 51 {
                        total / 4 - 2
                    } else {
                        total / 8 - 1
                    };
                    chain.push(kinds[i + 1]);
                    chain.push(length as u8);
                    chain.extend_from_slice(&body);
                }
                if let Some((offset, more)) = self.fragment {
                    chain.push(self.proto());
                    chain.push(0);
                    chain.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
                    chain.extend_from_slice(&0xdead_beefu32.to_be_bytes());
                }
                frame.extend_from_slice(&0x6000_0000u32.to_be_bytes());
                frame.extend_from_slice(&((chain.len() + payload.len()) as u16).to_be_bytes());
                frame.push(kinds[0]);
                frame.push(self.ttl);
                frame.extend_from_slice(&v6(s));
                frame.extend_from_slice(&v6(d));
                frame.extend_from_slice(&chain);
            }
        }
        frame.extend_from_slice(payload);
        frame
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn ones_sum(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
