//! Parsers for the values of knockd.conf keys. Each returns a message that completes
//! "file:line: key: ..." on failure.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use knock_common::segment::tcp_flags;
use knock_common::{MAX_GUARDED_PORTS, MAX_STEPS, ProgressRule, ProtoPort};

/// The TCP flags a knock must carry and must not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags {
    pub set: u8,
    pub clear: u8,
}

impl Default for TcpFlags {
    /// knock's default: a SYN without ACK, which is what a connect() sends. knockd's default
    /// accepts any TCP packet, so a stray ACK could count as a knock.
    fn default() -> Self {
        Self {
            set: tcp_flags::SYN,
            clear: tcp_flags::ACK,
        }
    }
}

const FLAG_NAMES: [(&str, u8); 6] = [
    ("fin", tcp_flags::FIN),
    ("syn", tcp_flags::SYN),
    ("rst", tcp_flags::RST),
    ("psh", tcp_flags::PSH),
    ("ack", tcp_flags::ACK),
    ("urg", tcp_flags::URG),
];

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, bit) in FLAG_NAMES {
            if self.set & bit != 0 {
                parts.push(name.to_owned());
            }
            if self.clear & bit != 0 {
                parts.push(format!("!{name}"));
            }
        }
        if parts.is_empty() {
            f.write_str("any")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

pub fn tcp_flags(value: &str) -> Result<TcpFlags, String> {
    let mut flags = TcpFlags { set: 0, clear: 0 };
    for item in value.split(',').map(str::trim) {
        let (negated, name) = match item.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, item),
        };
        let Some((_, bit)) = FLAG_NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
        else {
            return Err(format!(
                "`{item}` is not a TCP flag (use fin, syn, rst, psh, ack, urg, each optionally with `!`)"
            ));
        };
        if (flags.set | flags.clear) & bit != 0 {
            return Err(format!("flag `{name}` appears twice"));
        }
        if negated {
            flags.clear |= bit;
        } else {
            flags.set |= bit;
        }
    }
    Ok(flags)
}

/// One `port[:tcp|:udp]` item.
pub fn proto_port(item: &str) -> Result<ProtoPort, String> {
    let item = item.trim();
    let (port, proto) = match item.split_once(':') {
        Some((port, proto)) => (port.trim(), Some(proto.trim())),
        None => (item, None),
    };
    let number: u32 = port
        .parse()
        .map_err(|_| format!("`{item}` is not a port (write a number from 1 to 65535, optionally followed by :tcp or :udp)"))?;
    if number == 0 || number > 65535 {
        return Err(format!("port {number} is out of range 1-65535"));
    }
    let number = number as u16;
    match proto {
        None => Ok(ProtoPort::tcp(number)),
        Some(p) if p.eq_ignore_ascii_case("tcp") => Ok(ProtoPort::tcp(number)),
        Some(p) if p.eq_ignore_ascii_case("udp") => Ok(ProtoPort::udp(number)),
        Some(p) => Err(format!("`{p}` is not a protocol (use tcp or udp)")),
    }
}

/// A comma-separated knock sequence.
pub fn sequence(value: &str) -> Result<Vec<ProtoPort>, String> {
    let steps = value
        .split(',')
        .map(proto_port)
        .collect::<Result<Vec<_>, _>>()?;
    if steps.len() > MAX_STEPS {
        return Err(format!(
            "{} knocks; a sequence holds at most {MAX_STEPS}",
            steps.len()
        ));
    }
    Ok(steps)
}

/// The ports a door protects, or `none`.
pub fn protected_ports(value: &str) -> Result<Vec<ProtoPort>, String> {
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut ports: Vec<ProtoPort> = Vec::new();
    for item in value.split(',') {
        let port = proto_port(item)?;
        if ports.contains(&port) {
            return Err(format!(
                "port {}:{} is listed twice",
                port.port,
                port.proto_name()
            ));
        }
        ports.push(port);
    }
    if ports.len() > MAX_GUARDED_PORTS {
        return Err(format!(
            "{} ports; a door protects at most {MAX_GUARDED_PORTS}",
            ports.len()
        ));
    }
    Ok(ports)
}

/// A whole number of seconds, at least one.
pub fn seconds(value: &str) -> Result<Duration, String> {
    let secs: u32 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a whole number of seconds"))?;
    if secs == 0 {
        return Err("must be at least 1 second".to_owned());
    }
    Ok(Duration::from_secs(u64::from(secs)))
}

pub fn address(value: &str) -> Result<IpAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not an IPv4 or IPv6 address"))
}

pub fn progress_rule(value: &str) -> Result<ProgressRule, String> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("strict") => Ok(ProgressRule::Strict),
        v if v.eq_ignore_ascii_case("knockd") => Ok(ProgressRule::Knockd),
        v => Err(format!(
            "`{v}` is not a progress rule (use strict or knockd)"
        )),
    }
}

pub fn look(value: &str) -> Result<knock_common::settings::Look, String> {
    use knock_common::settings::Look;
    [Look::Closed, Look::Filtered, Look::Stealth]
        .into_iter()
        .find(|look| value.trim().eq_ignore_ascii_case(look.name()))
        .ok_or_else(|| {
            format!(
                "`{}` is not a look (use closed, filtered or stealth)",
                value.trim()
            )
        })
}

pub fn capacity(value: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a whole number"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("{n} is outside {min}-{max}"));
    }
    Ok(n)
}

pub fn yes_no(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" => Ok(true),
        "no" | "off" | "false" => Ok(false),
        other => Err(format!("`{other}` is not yes or no")),
    }
}

/// A network in CIDR form, or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` lies in this network (an IPv4 network holds no IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

pub fn network(item: &str) -> Result<Network, String> {
    let item = item.trim();
    let (address, prefix) = match item.split_once('/') {
        Some((a, p)) => (a.trim(), Some(p.trim())),
        None => (item, None),
    };
    let address: IpAddr = address.parse().map_err(|_| {
        format!("`{item}` is not a network such as 198.51.100.0/24 or 2001:db8::/32")
    })?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{item}` has a prefix length above {max}"))?,
        None => max,
    };
    Ok(Network { address, prefix })
}
