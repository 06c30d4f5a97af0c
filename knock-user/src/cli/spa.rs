//! The SPA client: one authenticated UDP datagram that opens a door.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use knock_common::Addr;
use knock_common::spa::{self, Request};

use crate::config::keys::ClientKey;
use knock_common::spa::door_tag;

#[derive(Debug, thiserror::Error)]
pub enum SpaError {
    #[error("cannot find the address this host sends to {0} from: {1}")]
    Source(IpAddr, std::io::Error),
    #[error("cannot make a nonce: {0}")]
    Random(std::io::Error),
    #[error("cannot send the SPA packet to {0}: {1}")]
    Send(SocketAddr, std::io::Error),
}

/// What makes each packet unique: the time it was sealed and 16 random bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub timestamp: u64,
    pub nonce: [u8; 16],
}

impl Stamp {
    /// Now, with a nonce from the kernel's random source: what every real packet carries.
    pub fn fresh() -> Result<Self, SpaError> {
        let mut nonce = [0u8; 16];
        crate::system::random::fill(&mut nonce).map_err(SpaError::Random)?;
        Ok(Self {
            timestamp: crate::system::clock::unix_s(),
            nonce,
        })
    }
}

/// Sends the packet that asks `door` to open, signed with `key` for the source address the
/// server will see: `source` when given (behind NAT, the public address), else the address this
/// host sends from. Returns that source.
pub fn send(
    server: SocketAddr,
    key: &ClientKey,
    door: &str,
    source: Option<IpAddr>,
    stamp: &Stamp,
) -> Result<IpAddr, SpaError> {
    let socket = UdpSocket::bind(unspecified(server)).map_err(|e| SpaError::Send(server, e))?;
    socket
        .connect(server)
        .map_err(|e| SpaError::Source(server.ip(), e))?;
    let source = match source {
        Some(source) => source,
        None => socket
            .local_addr()
            .map_err(|e| SpaError::Source(server.ip(), e))?
            .ip(),
    };
    let request = Request {
        key_id: key.id,
        door_tag: door_tag(door),
        timestamp: stamp.timestamp,
        nonce: stamp.nonce,
    };
    let packet = spa::seal(&request, &key.key, &Addr::from(source));
    socket
        .send(&packet)
        .map_err(|e| SpaError::Send(server, e))?;
    Ok(source)
}

fn unspecified(server: SocketAddr) -> SocketAddr {
    let ip: IpAddr = if server.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends with `stamp` to a listener on loopback and returns what it received.
    fn caught(key: &ClientKey, stamp: &Stamp) -> (IpAddr, [u8; spa::PACKET_LEN]) {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let source = send(listener.local_addr().unwrap(), key, "openSSH", None, stamp).unwrap();
        let mut buf = [0u8; 128];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(n, spa::PACKET_LEN);
        (source, buf[..n].try_into().unwrap())
    }

    #[test]
    fn the_packet_on_the_wire_verifies_for_the_reported_source() {
        let key = crate::cli::keygen::client_key(Some(5), "test").unwrap();
        let (source, packet) = caught(&key, &Stamp::fresh().unwrap());
        let request = spa::parse(&packet).unwrap();
        assert_eq!((request.key_id, request.door_tag), (5, door_tag("openSSH")));
        assert!(spa::authentic(&key.key, &packet, &Addr::from(source)));
    }

    #[test]
    fn a_fixed_stamp_gives_the_same_packet_every_time_and_fresh_ones_differ() {
        let key = crate::cli::keygen::client_key(Some(5), "test").unwrap();
        let stamp = Stamp {
            timestamp: 1_700_000_000,
            nonce: [0x5a; 16],
        };
        let (_, first) = caught(&key, &stamp);
        let (_, second) = caught(&key, &stamp);
        assert_eq!(first, second);
        let request = spa::parse(&first).unwrap();
        assert_eq!(
            (request.timestamp, request.nonce),
            (1_700_000_000, [0x5a; 16])
        );
        let (_, fresh) = caught(&key, &Stamp::fresh().unwrap());
        assert_ne!(spa::parse(&fresh).unwrap().nonce, [0x5a; 16]);
    }
}
