//! Which interfaces face the world: those that carry a default route (IPv4 `0.0.0.0/0` or IPv6
//! `::/0` in the main table, as `ip route show default` lists them), and the other interfaces
//! that are up with addresses others can reach. Split routes that cover the whole space in
//! halves (OpenVPN's `def1`: `0.0.0.0/1` and `128.0.0.0/1`) are not default routes: the
//! interface they leave by is a tunnel the traffic of the world does not come in through alone.
//!
//! Read from rtnetlink and getifaddrs(3); the choices are pure functions over what was read.

use std::net::IpAddr;

use super::netlink;

// From linux/rtnetlink.h.
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTMSG: usize = 12;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTN_UNICAST: u8 = 1;
const RT_TABLE_MAIN: u32 = 254;

/// A route as rtnetlink describes it, with what the choice needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub ipv6: bool,
    /// The length of the destination prefix: 0 for a default route.
    pub prefix_len: u8,
    pub table: u32,
    /// The route's type: unicast (1), or blackhole, unreachable, prohibit, ...
    pub kind: u8,
    pub metric: u32,
    /// The interfaces it leaves by (several for a multipath route).
    pub interfaces: Vec<u32>,
}

impl Route {
    /// A route that sends everything, from anywhere, out of an interface.
    fn is_default(&self) -> bool {
        self.prefix_len == 0
            && self.kind == RTN_UNICAST
            && self.table == RT_TABLE_MAIN
            && !self.interfaces.is_empty()
    }
}

/// The interfaces of the default routes, IPv4 and IPv6, by metric (the preferred route first,
/// IPv4 before IPv6 at equal metric), each once.
pub fn default_interfaces(routes: &[Route]) -> Vec<u32> {
    let mut defaults: Vec<&Route> = routes.iter().filter(|r| r.is_default()).collect();
    defaults.sort_by_key(|r| (r.metric, r.ipv6));
    let mut chosen = Vec::new();
    for index in defaults.iter().flat_map(|r| &r.interfaces) {
        if !chosen.contains(index) {
            chosen.push(*index);
        }
    }
    chosen
}

/// Every route of this network namespace, IPv4 and IPv6.
pub fn read() -> std::io::Result<Vec<Route>> {
    let socket = netlink::Socket::open()?;
    let mut routes = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let mut rtmsg = [0u8; RTMSG];
        rtmsg[0] = family as u8;
        let request = netlink::request(RTM_GETROUTE, netlink::NLM_F_DUMP, &rtmsg);
        for message in socket.ask(&request)? {
            routes.extend(parse(&message));
        }
    }
    Ok(routes)
}

/// The names of the interfaces of the default routes (see [`default_interfaces`]).
pub fn default_route_interfaces() -> std::io::Result<Vec<String>> {
    Ok(default_interfaces(&read()?)
        .into_iter()
        .filter_map(netlink::interface_name)
        .collect())
}

/// The route an RTM_NEWROUTE message describes.
fn parse(message: &[u8]) -> Option<Route> {
    use netlink::NLMSG_HEADER;
    if netlink::kind(message)? != RTM_NEWROUTE {
        return None;
    }
    let header = message.get(NLMSG_HEADER..NLMSG_HEADER + RTMSG)?;
    let mut route = Route {
        ipv6: i32::from(header[0]) == libc::AF_INET6,
        prefix_len: header[1],
        table: u32::from(header[4]),
        kind: header[7],
        metric: 0,
        interfaces: Vec::new(),
    };
    for (kind, value) in netlink::attributes(message.get(NLMSG_HEADER + RTMSG..)?) {
        match kind {
            RTA_OIF => route.interfaces.extend(netlink::u32_at(value, 0)),
            RTA_PRIORITY => route.metric = netlink::u32_at(value, 0).unwrap_or(0),
            RTA_TABLE => route.table = netlink::u32_at(value, 0).unwrap_or(route.table),
            RTA_MULTIPATH => route.interfaces.extend(next_hops(value)),
            _ => {}
        }
    }
    Some(route)
}

/// The interfaces of a multipath route's next hops (`struct rtnexthop`: length, flags, hops,
/// interface index, then attributes).
fn next_hops(bytes: &[u8]) -> Vec<u32> {
    let mut at = 0;
    let mut found = Vec::new();
    while let (Some(length), Some(index)) =
        (netlink::u16_at(bytes, at), netlink::u32_at(bytes, at + 4))
    {
        found.push(index);
        if length < 8 {
            break;
        }
        at += netlink::align(usize::from(length));
    }
    found
}

/// One address of one interface, as getifaddrs(3) lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    pub up: bool,
    pub loopback: bool,
    pub address: IpAddr,
}

/// Whether others can send to `address` from beyond the link: not loopback, not link-local,
/// not multicast, not unspecified. Private networks (RFC 1918, unique local) count: a LAN can
/// reach them.
pub fn is_reachable(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unicast_link_local()
                || v6.is_unspecified()
                || v6.is_multicast())
        }
    }
}

/// Interfaces that are up, reachable from beyond their link (see [`is_reachable`]) and not in
/// `guarded`, each with those addresses: what an operator should know knock leaves open.
pub fn unguarded(addresses: &[InterfaceAddress], guarded: &[String]) -> Vec<(String, Vec<IpAddr>)> {
    let mut found: Vec<(String, Vec<IpAddr>)> = Vec::new();
    for entry in addresses {
        if !entry.up
            || entry.loopback
            || guarded.contains(&entry.interface)
            || !is_reachable(entry.address)
        {
            continue;
        }
        match found.iter_mut().find(|(name, _)| *name == entry.interface) {
            Some((_, list)) => list.push(entry.address),
            None => found.push((entry.interface.clone(), vec![entry.address])),
        }
    }
    found
}

#[cfg(test)]
mod tests;
