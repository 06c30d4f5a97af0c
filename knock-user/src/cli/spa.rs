//! The SPA client: one authenticated UDP datagram that opens a door, with the server's details
//! from a saved host (`cli::hosts`) and, behind NAT, the public address from STUN
//! (`cli::stun`).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::hosts::{self, Source};
use crate::cli::knock::{self as client, Family};

use knock_common::Addr;
use knock_common::spa;

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
    let request = spa::Request {
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

/// What `knock-user spa` was asked, before the saved host fills in the rest.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// A host name or address, or the name of a saved host.
    pub target: String,
    /// The door; with none, `target` must be a saved host.
    pub door: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_id: Option<u32>,
    pub port: Option<u16>,
    pub source: Option<Source>,
    /// The STUN server for `source = auto`, `HOST:PORT`.
    pub stun: Option<String>,
    pub family: Family,
    /// The saved hosts file, when not the usual one.
    pub hosts: Option<PathBuf>,
    /// Time and nonce to seal with instead of fresh ones (hidden options for tests).
    pub at: Option<u64>,
    pub nonce: Option<[u8; 16]>,
}

/// What was sent, for `-v`.
pub struct Sent {
    pub door: String,
    pub key_id: u32,
    pub server: SocketAddr,
    pub source: IpAddr,
    /// The STUN server that reported `source`.
    pub stun: Option<SocketAddr>,
    /// Said on stderr before sending: a signed address the server will not see.
    pub warning: Option<String>,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent SPA for door {} with key {} to {}, signed for source {}",
            self.door, self.key_id, self.server, self.source
        )?;
        match self.stun {
            Some(stun) => write!(f, " (as STUN server {stun} saw it)"),
            None => Ok(()),
        }
    }
}

/// Sends the SPA packet `request` asks for: the command line first, then the saved host.
pub fn run(request: Request) -> anyhow::Result<Sent> {
    let hosts_file = request.hosts.clone().or_else(hosts::file);
    let saved = match &hosts_file {
        Some(file) => hosts::load(file)?
            .into_iter()
            .find(|h| h.name == request.target),
        None => None,
    };
    let Some(door) = request
        .door
        .clone()
        .or_else(|| saved.as_ref().map(|h| h.door.clone()))
    else {
        anyhow::bail!(
            "`{}` is no saved host in {}: give HOST DOOR, or save it with `knock-user keygen \
             --save-host {} --host HOST --door DOOR`",
            request.target,
            hosts_file.map_or_else(
                || "~/.config/knock/hosts".to_owned(),
                |f| f.display().to_string()
            ),
            request.target
        );
    };
    let saved = saved.unwrap_or_default();
    let host = if saved.host.is_empty() {
        request.target.clone()
    } else {
        saved.host.clone()
    };
    let key_path = request
        .key_file
        .clone()
        .or(saved.key_file.clone())
        .or_else(|| hosts::dir().map(|d| d.join("spa.key")))
        .context("no key file: give --key-file (HOME is not set)")?;
    let keys = crate::config::keys::load(&key_path)?;
    let key = match request.key_id.or(saved.key_id) {
        Some(id) => keys.iter().find(|k| k.id == id),
        None => keys.first(),
    }
    .ok_or_else(|| anyhow::anyhow!("{}: no such key", key_path.display()))?;
    let family = match request.family {
        Family::Any => saved.family.unwrap_or_default(),
        family => family,
    };
    let ip = client::resolve(&host, family)?;
    let server = SocketAddr::new(
        ip,
        request
            .port
            .or(saved.port)
            .unwrap_or(knock_common::spa::DEFAULT_PORT),
    );
    let (source, stun) = match request.source.or(saved.source) {
        None => (None, None),
        Some(Source::Address(address)) => (Some(address), None),
        Some(Source::Auto) => {
            let named = request
                .stun
                .clone()
                .or(saved.stun.clone())
                .unwrap_or_else(|| crate::cli::stun::DEFAULT_SERVER.to_owned());
            let stun = stun_server(&named, ip.is_ipv4())?;
            (Some(crate::cli::stun::public_address(stun)?), Some(stun))
        }
    };
    let signed = match source {
        Some(source) => source,
        None => local_address(server)?,
    };
    let warning = private_warning(signed, ip);
    if let Some(warning) = &warning {
        eprintln!("warning: {warning}");
    }
    let fresh = Stamp::fresh()?;
    let stamp = Stamp {
        timestamp: request.at.unwrap_or(fresh.timestamp),
        nonce: request.nonce.unwrap_or(fresh.nonce),
    };
    let source = send(server, key, &door, Some(signed), &stamp)?;
    Ok(Sent {
        door,
        key_id: key.id,
        server,
        source,
        stun,
        warning,
    })
}

/// The STUN server `HOST:PORT` (port 3478 when left out), in the server's family.
fn stun_server(named: &str, ipv4: bool) -> anyhow::Result<SocketAddr> {
    let with_port = if named.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']'))
    }) {
        named.to_owned()
    } else if named.contains(':') && !named.starts_with('[') {
        format!("[{named}]:3478")
    } else {
        format!("{named}:3478")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the STUN server `{named}`"))?
        .find(|a| a.is_ipv4() == ipv4)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the STUN server `{named}` has no {} address, and the SPA server is reached \
                 over {}",
                if ipv4 { "IPv4" } else { "IPv6" },
                if ipv4 { "IPv4" } else { "IPv6" }
            )
        })
}

/// The address this host sends to `server` from.
fn local_address(server: SocketAddr) -> Result<IpAddr, SpaError> {
    let socket =
        UdpSocket::bind(unspecified(server)).map_err(|e| SpaError::Source(server.ip(), e))?;
    socket
        .connect(server)
        .map_err(|e| SpaError::Source(server.ip(), e))?;
    Ok(socket
        .local_addr()
        .map_err(|e| SpaError::Source(server.ip(), e))?
        .ip())
}

/// Addresses that never reach the Internet as they are: RFC 1918, shared (CGNAT), link-local,
/// loopback, unique local IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_loopback()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The warning for a packet signed for a private address but sent to a server that is not:
/// on the way, a NAT gives it another source, and the server refuses the MAC.
pub fn private_warning(signed: IpAddr, server: IpAddr) -> Option<String> {
    (is_private(signed) && !is_private(server)).then(|| {
        format!(
            "the packet is signed for {signed}, a private address, but the server {server} is \
             not on a private network: behind NAT it sees another source and refuses the \
             packet. Use --source auto (STUN) or --source PUBLIC_ADDRESS"
        )
    })
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
    fn a_private_source_for_a_public_server_is_warned_about() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for private in [
            "10.1.2.3",
            "172.20.0.5",
            "192.168.1.20",
            "100.64.0.9",
            "169.254.3.3",
            "fd12::5",
            "fe80::1",
        ] {
            assert!(is_private(ip(private)), "{private}");
            let warning = private_warning(ip(private), ip("203.0.113.1")).expect(private);
            assert!(warning.contains("Use --source auto"), "{warning}");
        }
        for public in ["198.51.100.2", "203.0.113.7", "2001:db8::2", "100.128.0.1"] {
            assert!(!is_private(ip(public)), "{public}");
            assert_eq!(private_warning(ip(public), ip("203.0.113.1")), None);
        }
        // A server on the same private network sees the private address.
        assert_eq!(private_warning(ip("192.168.1.20"), ip("192.168.1.1")), None);
    }

    #[test]
    fn stun_servers_take_port_3478_unless_told() {
        assert_eq!(
            stun_server("127.0.0.1", true).unwrap(),
            "127.0.0.1:3478".parse().unwrap()
        );
        assert_eq!(
            stun_server("127.0.0.1:19302", true).unwrap(),
            "127.0.0.1:19302".parse().unwrap()
        );
        assert_eq!(
            stun_server("::1", false).unwrap(),
            "[::1]:3478".parse().unwrap()
        );
        assert_eq!(
            stun_server("[::1]:5", false).unwrap(),
            "[::1]:5".parse().unwrap()
        );
        assert!(
            stun_server("127.0.0.1", false).is_err(),
            "the family must match"
        );
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
