use super::*;

fn link(kind_of_link: u16, driver: Option<&str>, broadcast: &[u8]) -> LinkInfo {
    LinkInfo {
        kind_of_link,
        driver: driver.map(str::to_owned),
        broadcast: broadcast.to_vec(),
        ..LinkInfo::default()
    }
}

fn judged(info: &LinkInfo) -> Result<Link, String> {
    judge("if0", info, true).map_err(|e| e.to_string())
}

#[test]
fn ethernet_links_get_the_ethernet_entry_point() {
    assert_eq!(
        judged(&link(ARPHRD_ETHER, Some("veth"), &[0xff; 6])),
        Ok(Link::Ethernet)
    );
    assert_eq!(
        judged(&link(ARPHRD_ETHER, None, &[0xff; 6])),
        Ok(Link::Ethernet)
    );
}

#[test]
fn tun_wireguard_ppp_and_raw_ip_get_the_ip_entry_point() {
    for info in [
        link(ARPHRD_NONE, Some("tun"), &[]),
        link(ARPHRD_NONE, Some("wireguard"), &[]),
        link(ARPHRD_PPP, Some("ppp"), &[]),
        link(ARPHRD_PPP, None, &[]),
        link(ARPHRD_RAWIP, None, &[]),
    ] {
        assert_eq!(judged(&info), Ok(Link::Ip), "{info:?}");
    }
}

#[test]
fn ip_tunnels_get_the_ip_entry_point_on_kernels_that_reset_their_mac_header() {
    for info in [
        link(ARPHRD_TUNNEL, Some("ipip"), &[203, 0, 113, 9]),
        link(ARPHRD_TUNNEL, Some("ipip"), &[0, 0, 0, 0]),
        link(ARPHRD_SIT, Some("sit"), &[203, 0, 113, 9]),
        link(ARPHRD_TUNNEL6, Some("ip6tnl"), &[0x20; 16]),
        link(ARPHRD_IPGRE, Some("gre"), &[203, 0, 113, 9]),
        link(ARPHRD_IP6GRE, Some("ip6gre"), &[0x20; 16]),
    ] {
        assert_eq!(judged(&info), Ok(Link::Ip), "{info:?}");
    }
}

#[test]
fn ip_tunnels_are_refused_where_xdp_would_see_their_outer_headers() {
    let error = judge(
        "tun4",
        &link(ARPHRD_TUNNEL, Some("ipip"), &[203, 0, 113, 9]),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("tun4") && error.contains("5.14"), "{error}");
    assert!(error.contains("IPv4-in-IPv4 tunnel"), "{error}");
}

#[test]
fn gre_without_a_unicast_remote_is_refused() {
    for remote in [
        &[0u8, 0, 0, 0][..],
        &[239, 1, 1, 1],
        &[0; 16],
        &[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        &[],
    ] {
        let kind = if remote.len() == 4 {
            ARPHRD_IPGRE
        } else {
            ARPHRD_IP6GRE
        };
        let error = judged(&link(kind, Some("gre"), remote)).unwrap_err();
        assert!(error.contains("without a fixed unicast remote"), "{error}");
    }
}

#[test]
fn loopback_is_refused_by_name() {
    let error = judged(&link(ARPHRD_LOOPBACK, None, &[0; 6])).unwrap_err();
    assert!(error.contains("if0"), "{error}");
    assert!(
        error.contains("the loopback interface (ARPHRD 772)"),
        "{error}"
    );
    assert!(error.contains("attaches nothing"), "{error}");
}

#[test]
fn links_knock_cannot_judge_are_refused_naming_their_type() {
    for (info, what) in [
        (link(ARPHRD_NONE, Some("gtp"), &[]), "driver gtp"),
        (link(ARPHRD_NONE, None, &[]), "without link-layer headers"),
        (link(ARPHRD_INFINIBAND, None, &[]), "InfiniBand"),
        (link(ARPHRD_IEEE80211_RADIOTAP, None, &[]), "Wi-Fi monitor"),
        (link(ARPHRD_CAN, Some("vcan"), &[]), "CAN bus"),
        (link(0xffff, None, &[]), "a link of type 65535"),
    ] {
        let error = judged(&info).unwrap_err();
        assert!(error.contains(what), "{error}");
    }
}

/// An RTM_NEWLINK reply as the kernel builds it, with the given attributes.
fn reply(kind_of_link: u16, attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![0u8; IFINFOMSG];
    body[2..4].copy_from_slice(&kind_of_link.to_ne_bytes());
    body[4..8].copy_from_slice(&7u32.to_ne_bytes());
    for (kind, value) in attributes {
        body.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(value);
        body.resize(netlink::align(body.len()), 0);
    }
    let mut message = Vec::new();
    message.extend_from_slice(&((netlink::NLMSG_HEADER + body.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    message.extend_from_slice(&[0; 10]);
    message.extend_from_slice(&body);
    message
}

fn nested(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(value);
    bytes
}

#[test]
fn a_reply_gives_the_index_name_type_driver_remote_and_xdp_mode() {
    let message = reply(
        ARPHRD_IPGRE,
        &[
            (IFLA_IFNAME, b"gre1\0".to_vec()),
            (IFLA_BROADCAST, vec![203, 0, 113, 9]),
            (IFLA_LINKINFO | 0x8000, nested(IFLA_INFO_KIND, b"gre\0")),
            (IFLA_XDP | 0x8000, nested(IFLA_XDP_ATTACHED, &[2, 0, 0, 0])),
        ],
    );
    let info = parse(&message).expect("a link");
    assert_eq!(
        info,
        LinkInfo {
            index: 7,
            name: "gre1".to_owned(),
            xdp: 2,
            ..link(ARPHRD_IPGRE, Some("gre"), &[203, 0, 113, 9])
        }
    );
    assert_eq!(info.xdp_mode(), Some(XdpMode::Generic));
}

#[test]
fn a_cut_reply_is_no_link_not_a_panic() {
    let message = reply(ARPHRD_ETHER, &[(IFLA_BROADCAST, vec![0xff; 6])]);
    for len in 0..message.len() {
        let _ = parse(&message[..len]);
    }
    assert_eq!(parse(&message[..3]), None);
}

#[test]
fn the_request_names_the_interface() {
    let request = request("tunk");
    assert_eq!(request.len() % 4, 0);
    assert_eq!(netlink::u32_at(&request, 0), Some(request.len() as u32));
    let (kind, value) = netlink::attributes(&request[netlink::NLMSG_HEADER + IFINFOMSG..])
        .next()
        .expect("an attribute");
    assert_eq!((kind, value), (IFLA_IFNAME, &b"tunk\0"[..]));
}

#[test]
fn the_loopback_interface_of_this_namespace_is_judged_from_the_kernel() {
    // No root needed: every process may ask rtnetlink about its own namespace.
    let info = query("lo").expect("rtnetlink answers");
    assert_eq!(info.kind_of_link, ARPHRD_LOOPBACK);
    assert!(matches!(
        query("no-such-if0"),
        Err(LinkError::NoSuchInterface(name)) if name == "no-such-if0"
    ));
}
