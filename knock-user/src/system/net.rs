//! The host's network: the addresses of the guarded interfaces (knocks count only when sent to
//! one of them, or to a door's Target, as knockd only sees its own addresses; read with
//! getifaddrs(3) and looked up again whenever an address changes, so a DHCP renewal is
//! followed), and every interface's addresses (`system::routes` tells which face the world).

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use knock_common::Addr;

pub use super::routes::InterfaceAddress;

/// Every IPv4 and IPv6 address of the named interfaces.
pub fn of_interfaces(names: &[String]) -> BTreeSet<Addr> {
    addresses()
        .into_iter()
        .filter(|entry| names.contains(&entry.interface))
        .map(|entry| Addr::from(entry.address))
        .collect()
}

/// Every IPv4 and IPv6 address of every interface of this network namespace, with whether its
/// interface is up and whether it is a loopback.
pub fn addresses() -> Vec<InterfaceAddress> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, which is freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return found;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned.
        let node = unsafe { &*entry };
        entry = node.ifa_next;
        if node.ifa_addr.is_null() || node.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated interface name from the kernel.
        let name = unsafe { CStr::from_ptr(node.ifa_name) }.to_string_lossy();
        // SAFETY: ifa_addr points to a sockaddr whose family says which one.
        let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
        let address = if family == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in>() };
            IpAddr::from(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let sin6 = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in6>() };
            IpAddr::from(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
        } else {
            continue;
        };
        let flags = node.ifa_flags;
        found.push(InterfaceAddress {
            interface: name.into_owned(),
            up: flags & libc::IFF_UP as u32 != 0,
            loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
            address,
        });
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// A socket address in the C form the system calls take.
pub fn sockaddr_of(target: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match target {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_addresses() {
        let found = of_interfaces(&["lo".to_owned()]);
        assert!(
            found.contains(&Addr::from(Ipv4Addr::LOCALHOST)),
            "{found:?}"
        );
    }

    #[test]
    fn an_unknown_interface_has_none() {
        assert!(of_interfaces(&["no-such-if0".to_owned()]).is_empty());
    }
}
