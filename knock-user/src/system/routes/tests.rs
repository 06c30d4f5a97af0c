use std::net::IpAddr;

use super::*;

const ETH0: u32 = 2;
const WLAN0: u32 = 3;
const TUN0: u32 = 4;
const PPP0: u32 = 5;

fn route(ipv6: bool, prefix_len: u8, metric: u32, interfaces: &[u32]) -> Route {
    Route {
        ipv6,
        prefix_len,
        table: RT_TABLE_MAIN,
        kind: RTN_UNICAST,
        metric,
        interfaces: interfaces.to_vec(),
    }
}

#[test]
fn every_default_route_counts_preferred_first_ipv4_and_ipv6() {
    let routes = [
        route(false, 0, 600, &[WLAN0]),
        route(false, 0, 100, &[ETH0]),
        route(false, 24, 0, &[ETH0]),
        route(true, 0, 1024, &[PPP0]),
        route(true, 0, 100, &[ETH0]),
    ];
    assert_eq!(default_interfaces(&routes), [ETH0, WLAN0, PPP0]);
}

#[test]
fn an_ipv6_default_route_alone_chooses_its_interface() {
    let routes = [route(true, 0, 1024, &[PPP0]), route(false, 24, 0, &[ETH0])];
    assert_eq!(default_interfaces(&routes), [PPP0]);
}

#[test]
fn split_routes_over_a_tunnel_are_not_default_routes() {
    // OpenVPN's def1: the tunnel takes 0.0.0.0/1 and 128.0.0.0/1 (and ::/1, 8000::/1),
    // the real default route stays on eth0.
    let routes = [
        route(false, 1, 0, &[TUN0]),
        route(false, 1, 0, &[TUN0]),
        route(true, 1, 0, &[TUN0]),
        route(false, 0, 100, &[ETH0]),
    ];
    assert_eq!(default_interfaces(&routes), [ETH0]);
}

#[test]
fn unreachable_routes_and_other_tables_are_not_default_routes() {
    let mut unreachable = route(true, 0, u32::MAX, &[1]);
    unreachable.kind = 7;
    let mut policy = route(false, 0, 0, &[TUN0]);
    policy.table = 51820;
    let nowhere = route(false, 0, 0, &[]);
    assert!(default_interfaces(&[unreachable, policy, nowhere]).is_empty());
}

#[test]
fn a_multipath_default_route_counts_each_next_hop() {
    assert_eq!(
        default_interfaces(&[route(false, 0, 0, &[ETH0, WLAN0])]),
        [ETH0, WLAN0]
    );
}

/// An RTM_NEWROUTE message as the kernel sends it.
fn message(family: u8, prefix_len: u8, kind: u8, attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut rtmsg = vec![0u8; RTMSG];
    rtmsg[0] = family;
    rtmsg[1] = prefix_len;
    rtmsg[4] = 254;
    rtmsg[7] = kind;
    for (kind, value) in attributes {
        rtmsg.extend(netlink::attribute(*kind, value));
    }
    let mut message = netlink::request(RTM_NEWROUTE, 0, &rtmsg);
    message[6..8].copy_from_slice(&0u16.to_ne_bytes());
    message
}

#[test]
fn a_route_message_gives_family_prefix_table_type_metric_and_interfaces() {
    let ipv4 = message(
        libc::AF_INET as u8,
        0,
        RTN_UNICAST,
        &[
            (RTA_OIF, ETH0.to_ne_bytes().to_vec()),
            (RTA_PRIORITY, 100u32.to_ne_bytes().to_vec()),
            (RTA_TABLE, RT_TABLE_MAIN.to_ne_bytes().to_vec()),
        ],
    );
    assert_eq!(parse(&ipv4), Some(route(false, 0, 100, &[ETH0])));
    // Two next hops: (length 8, flags, hops, interface index) each.
    let mut hops = Vec::new();
    for index in [ETH0, WLAN0] {
        hops.extend(8u16.to_ne_bytes());
        hops.extend([0, 0]);
        hops.extend(index.to_ne_bytes());
    }
    let multipath = message(
        libc::AF_INET6 as u8,
        0,
        RTN_UNICAST,
        &[(RTA_MULTIPATH, hops)],
    );
    assert_eq!(parse(&multipath), Some(route(true, 0, 0, &[ETH0, WLAN0])));
    for len in 0..ipv4.len() {
        let _ = parse(&ipv4[..len]);
    }
}

#[test]
fn this_namespace_s_routes_can_be_read_without_root() {
    let routes = read().expect("rtnetlink answers a route dump");
    let _ = default_interfaces(&routes);
}

fn address(interface: &str, up: bool, address: &str) -> InterfaceAddress {
    InterfaceAddress {
        interface: interface.to_owned(),
        up,
        loopback: interface == "lo",
        address: address.parse().expect("an address"),
    }
}

#[test]
fn interfaces_up_with_reachable_addresses_and_not_guarded_are_named() {
    let host = [
        address("lo", true, "127.0.0.1"),
        address("lo", true, "::1"),
        address("eth0", true, "198.51.100.1"),
        address("eth0", true, "2001:db8::1"),
        address("wlan0", true, "203.0.113.5"),
        address("wlan0", true, "fe80::1"),
        address("wlan0", true, "2001:db8:5::5"),
        address("usb0", false, "198.51.100.77"),
        address("wg0", true, "fe80::2"),
        address("eth1", true, "169.254.3.3"),
    ];
    let left = unguarded(&host, &["eth0".to_owned()]);
    let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
    assert_eq!(
        left,
        [(
            "wlan0".to_owned(),
            vec![ip("203.0.113.5"), ip("2001:db8:5::5")]
        )],
        "down interfaces, loopback and link-local addresses are not reachable from afar"
    );
    assert!(unguarded(&host, &["eth0".to_owned(), "wlan0".to_owned()]).is_empty());
}
