//! The knock client: sends a sequence exactly as knock(1) does. A TCP knock is one non-blocking
//! connect() closed at once, so one SYN leaves; a UDP knock is a one-byte datagram.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

use knock_common::ProtoPort;

use crate::system::net;

/// Which address family to use for a host name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a port (write a number from 1 to 65535, optionally with :tcp or :udp)")]
    BadPort(String),
    #[error("cannot resolve `{host}`: {reason}")]
    Resolve { host: String, reason: String },
    #[error("`{host}` has no {family} address")]
    NoAddress { host: String, family: &'static str },
    #[error("cannot send the knock on {port}: {source}")]
    Send {
        port: String,
        source: std::io::Error,
    },
}

/// Parses `port[:tcp|:udp]`; `udp` makes UDP the default, as knock's `-u` does.
pub fn parse_port(spec: &str, udp: bool) -> Result<ProtoPort, ClientError> {
    let bad = || ClientError::BadPort(spec.to_owned());
    let (number, proto) = match spec.split_once(':') {
        Some((number, proto)) => (number, Some(proto)),
        None => (spec, None),
    };
    let number: u16 = number.trim().parse().map_err(|_| bad())?;
    if number == 0 {
        return Err(bad());
    }
    match proto.map(str::to_ascii_lowercase).as_deref() {
        None if udp => Ok(ProtoPort::udp(number)),
        None | Some("tcp") => Ok(ProtoPort::tcp(number)),
        Some("udp") => Ok(ProtoPort::udp(number)),
        Some(_) => Err(bad()),
    }
}

/// The address to knock on.
pub fn resolve(host: &str, family: Family) -> Result<IpAddr, ClientError> {
    let addresses = (host, 0)
        .to_socket_addrs()
        .map_err(|e| ClientError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
    addresses
        .map(|a| a.ip())
        .find(|ip| match family {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        })
        .ok_or(ClientError::NoAddress {
            host: host.to_owned(),
            family: match family {
                Family::V6 => "IPv6",
                Family::V4 => "IPv4",
                Family::Any => "IP",
            },
        })
}

/// Sends one knock.
pub fn knock(ip: IpAddr, port: ProtoPort) -> Result<(), ClientError> {
    let target = SocketAddr::new(ip, port.port);
    let result = if port.proto == knock_common::segment::PROTO_UDP {
        udp_knock(target)
    } else {
        tcp_knock(target)
    };
    result.map_err(|source| ClientError::Send {
        port: format!("{}:{}", port.port, port.proto_name()),
        source,
    })
}

/// Sends the whole sequence, waiting `delay` between knocks; `verbose` prints each.
pub fn knock_all(
    ip: IpAddr,
    ports: &[ProtoPort],
    delay: Duration,
    verbose: bool,
) -> Result<(), ClientError> {
    for (index, port) in ports.iter().enumerate() {
        if index > 0 && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if verbose {
            println!(
                "hitting {} {}",
                port.proto_name(),
                SocketAddr::new(ip, port.port)
            );
        }
        knock(ip, *port)?;
    }
    Ok(())
}

fn udp_knock(target: SocketAddr) -> std::io::Result<()> {
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let socket = UdpSocket::bind(local)?;
    socket.send_to(&[0], target)?;
    Ok(())
}

fn tcp_knock(target: SocketAddr) -> std::io::Result<()> {
    let family = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns; dropping it closes the socket, which
    // in SYN_SENT discards it without sending anything more.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let (storage, len) = net::sockaddr_of(target);
    // SAFETY: storage holds a valid sockaddr of `len` bytes for this family.
    let rc = unsafe { libc::connect(socket.as_raw_fd(), (&raw const storage).cast(), len) };
    if rc < 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(error);
        }
    }
    Ok(())
}

/// The sequence of a rotating door for the period holding `unix_s` (the current one, but for
/// tests that pin the clock); `rest` may name the door, which must match.
pub fn rotating_sequence(
    file: &std::path::Path,
    rest: &[String],
    unix_s: u64,
) -> anyhow::Result<Vec<ProtoPort>> {
    let secret = crate::config::rotate::load(file)?;
    match rest {
        [] => {}
        [door] if *door == secret.door => {}
        [door] => anyhow::bail!(
            "{} is the secret of door `{}`, not `{door}`",
            file.display(),
            secret.door
        ),
        _ => anyhow::bail!("with --secret-file, give only the host and the door's name"),
    }
    Ok(secret.sequence(secret.period_at(unix_s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_take_protocol_suffixes_and_the_udp_default() {
        assert_eq!(parse_port("4438", false).unwrap(), ProtoPort::tcp(4438));
        assert_eq!(parse_port("4438", true).unwrap(), ProtoPort::udp(4438));
        assert_eq!(parse_port("4438:tcp", true).unwrap(), ProtoPort::tcp(4438));
        assert_eq!(parse_port("4438:UDP", false).unwrap(), ProtoPort::udp(4438));
    }

    #[test]
    fn bad_ports_are_named_in_the_error() {
        for spec in ["0", "65536", "x", "22:sctp", ""] {
            let error = parse_port(spec, false).unwrap_err();
            assert!(error.to_string().contains(&format!("`{spec}`")), "{error}");
        }
    }

    #[test]
    fn a_literal_address_resolves_to_itself_and_respects_the_family() {
        assert_eq!(
            resolve("198.51.100.1", Family::Any).unwrap().to_string(),
            "198.51.100.1"
        );
        assert!(resolve("198.51.100.1", Family::V6).is_err());
        assert_eq!(
            resolve("2001:db8::1", Family::V6).unwrap().to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn a_udp_knock_is_one_byte_datagram() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        knock("127.0.0.1".parse().unwrap(), ProtoPort::udp(port)).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = listener.recv_from(&mut buf).unwrap();
        assert_eq!(n, 1);
    }
}
