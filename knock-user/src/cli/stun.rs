//! The public address of this host, as a STUN server sees it (RFC 5389 Binding request, answered
//! with XOR-MAPPED-ADDRESS), for an SPA client behind NAT: the server checks the MAC against the
//! address its packets arrive from, which is the NAT's, not the client's own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The STUN server asked unless told otherwise.
pub const DEFAULT_SERVER: &str = "stun.l.google.com:19302";

const MAGIC_COOKIE: u32 = 0x2112_a442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ERROR_CODE: u16 = 0x0009;
const HEADER_LEN: usize = 20;

/// RFC 5389's retransmission: the first wait, doubled after each try.
const FIRST_WAIT: Duration = Duration::from_millis(500);
const TRIES: u32 = 4;

pub type TransactionId = [u8; 12];

#[derive(Debug, thiserror::Error)]
pub enum StunError {
    #[error("cannot ask the STUN server {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("the STUN server {server} did not answer (asked {TRIES} times over {} s)", waited.as_secs_f32())]
    NoAnswer {
        server: SocketAddr,
        waited: Duration,
    },
    #[error("the STUN server {server} refused: {reason}")]
    Refused { server: SocketAddr, reason: String },
    #[error("the STUN server {server} answered with {family} address {address}, not {wanted}")]
    WrongFamily {
        server: SocketAddr,
        family: &'static str,
        address: IpAddr,
        wanted: &'static str,
    },
}

/// What a datagram from the server says.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The address and port the server saw the request come from.
    Mapped(SocketAddr),
    /// An error response, with its code and reason.
    Error(u16, String),
    /// Not an answer to this request (another transaction, not STUN, malformed).
    Unrelated,
}

/// A Binding request: the header alone, no attributes.
pub fn request(id: &TransactionId) -> [u8; HEADER_LEN] {
    let mut message = [0u8; HEADER_LEN];
    message[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Length 0: no attributes.
    message[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    message[8..20].copy_from_slice(id);
    message
}

/// Reads a datagram as the answer to the request `id`.
pub fn answer(message: &[u8], id: &TransactionId) -> Answer {
    let Some(header) = message.get(..HEADER_LEN) else {
        return Answer::Unrelated;
    };
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[4..8] != MAGIC_COOKIE.to_be_bytes()
        || header[8..20] != id[..]
        || length % 4 != 0
        || message.len() < HEADER_LEN + length
    {
        return Answer::Unrelated;
    }
    let mut attributes = &message[HEADER_LEN..HEADER_LEN + length];
    let mut mapped = None;
    let mut xor_mapped = None;
    let mut error = None;
    while attributes.len() >= 4 {
        let kind = u16::from_be_bytes([attributes[0], attributes[1]]);
        let len = usize::from(u16::from_be_bytes([attributes[2], attributes[3]]));
        let Some(value) = attributes.get(4..4 + len) else {
            return Answer::Unrelated;
        };
        match kind {
            XOR_MAPPED_ADDRESS => xor_mapped = address(value, Some(id)),
            MAPPED_ADDRESS => mapped = address(value, None),
            ERROR_CODE if value.len() >= 4 => {
                let code = u16::from(value[2] & 0x07) * 100 + u16::from(value[3]);
                error = Some((code, String::from_utf8_lossy(&value[4..]).into_owned()));
            }
            _ => {}
        }
        // Attributes are padded to four bytes.
        attributes = attributes
            .get(4 + len.next_multiple_of(4)..)
            .unwrap_or_default();
    }
    match (kind, xor_mapped.or(mapped), error) {
        (BINDING_SUCCESS, Some(address), _) => Answer::Mapped(address),
        (BINDING_ERROR, _, Some((code, reason))) => Answer::Error(code, reason),
        (BINDING_ERROR, _, None) => Answer::Error(0, "no reason given".to_owned()),
        _ => Answer::Unrelated,
    }
}

/// A MAPPED-ADDRESS value, or an XOR-MAPPED-ADDRESS one when `xor_with` gives the transaction.
fn address(value: &[u8], xor_with: Option<&TransactionId>) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let mut port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
    // The cookie, then the transaction id: what the address is XORed with.
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    if let Some(id) = xor_with {
        mask[4..].copy_from_slice(id);
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let xor = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .zip(mask)
            .map(|(b, m)| if xor_with.is_some() { b ^ m } else { *b })
            .collect()
    };
    let ip: IpAddr = match family {
        0x01 => {
            let octets: [u8; 4] = xor(value.get(4..8)?).try_into().ok()?;
            Ipv4Addr::from(octets).into()
        }
        0x02 => {
            let octets: [u8; 16] = xor(value.get(4..20)?).try_into().ok()?;
            Ipv6Addr::from(octets).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Asks `server` which address this host's datagrams come from, over `server`'s family.
pub fn public_address(server: SocketAddr) -> Result<IpAddr, StunError> {
    ask(server, FIRST_WAIT)
}

/// As [`public_address`], waiting `first_wait` for the first answer, twice that for the next.
fn ask(server: SocketAddr, first_wait: Duration) -> Result<IpAddr, StunError> {
    let io = |e| StunError::Io(server, e);
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(io)?;
    socket.connect(server).map_err(io)?;
    let mut id = [0u8; 12];
    crate::system::random::fill(&mut id).map_err(io)?;
    let message = request(&id);
    let mut buffer = [0u8; 1500];
    let mut wait = first_wait;
    let mut waited = Duration::ZERO;
    for _ in 0..TRIES {
        waited += wait;
        socket.send(&message).map_err(io)?;
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(io)?;
            let len = match socket.recv(&mut buffer) {
                Ok(len) => len,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                // An ICMP error for an earlier try (nothing listens there): wait on.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(io(e)),
            };
            match answer(&buffer[..len], &id) {
                Answer::Mapped(mapped) => return same_family(server, mapped.ip()),
                Answer::Error(code, reason) => {
                    return Err(StunError::Refused {
                        server,
                        reason: format!("{code} {reason}"),
                    });
                }
                Answer::Unrelated => {}
            }
        }
        wait *= 2;
    }
    Err(StunError::NoAnswer { server, waited })
}

fn same_family(server: SocketAddr, address: IpAddr) -> Result<IpAddr, StunError> {
    let name = |ip: bool| if ip { "IPv4" } else { "IPv6" };
    if address.is_ipv4() == server.is_ipv4() {
        Ok(address)
    } else {
        Err(StunError::WrongFamily {
            server,
            family: name(address.is_ipv4()),
            address,
            wanted: name(server.is_ipv4()),
        })
    }
}

#[cfg(test)]
mod tests;
