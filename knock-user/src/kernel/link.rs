//! What kind of link an interface is, and so which of the XDP program's entry points judges its
//! frames, or why knock refuses to guard it.
//!
//! Generic XDP hands the program the frame from the skb's MAC header on. That is an Ethernet
//! header on Ethernet links; on links without one the drivers reset the MAC header to the IP
//! header: tun (`tun_get_user`), WireGuard (`wg_reset_packet`), PPP (`ppp_receive_nonmp_frame`),
//! raw-IP modems, and since Linux 5.14 the IP tunnels (ipip, sit, ip6tnl, and GRE devices
//! without `ipgre_header_ops`, which are the ones with a fixed unicast remote). Before 5.14 an
//! IP tunnel's MAC header still pointed at the outer headers (the outer Ethernet header for
//! ipip, the outer IP header for GRE), and GRE devices without a remote keep doing so: the
//! program would read the outer packet and let every inner one pass. Those are refused, as is
//! every link type knock cannot judge.
//!
//! The type and kind come from rtnetlink (RTM_GETLINK) in the daemon's own network namespace,
//! not from /sys, which may belong to another one.

use knock_common::frame::Link;

use crate::system::netlink;

// From linux/if_arp.h.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_INFINIBAND: u16 = 32;
const ARPHRD_CAN: u16 = 280;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_TUNNEL: u16 = 768;
const ARPHRD_TUNNEL6: u16 = 769;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_SIT: u16 = 776;
const ARPHRD_IPGRE: u16 = 778;
const ARPHRD_IEEE80211_RADIOTAP: u16 = 803;
const ARPHRD_IP6GRE: u16 = 823;
const ARPHRD_NONE: u16 = 0xfffe;

/// What rtnetlink says of an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface's index: a re-created interface has a new one.
    pub index: u32,
    pub name: String,
    /// The ARPHRD type.
    pub kind_of_link: u16,
    /// The driver's name for the link (`IFLA_INFO_KIND`): "tun", "wireguard", "gre", ...
    pub driver: Option<String>,
    /// The link's broadcast address (`IFLA_BROADCAST`): for IP tunnels, the remote address.
    pub broadcast: Vec<u8>,
    /// How an XDP program is attached, as `IFLA_XDP_ATTACHED` says: 0 none, 1 in the driver,
    /// 2 generic, 3 offloaded, 4 several.
    pub xdp: u8,
}

impl LinkInfo {
    /// The mode of the XDP program attached, if one is, in one mode.
    pub fn xdp_mode(&self) -> Option<XdpMode> {
        match self.xdp {
            1 => Some(XdpMode::Native),
            2 => Some(XdpMode::Generic),
            _ => None,
        }
    }
}

/// Where an XDP program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum XdpMode {
    /// In the driver, before the kernel allocates anything for the packet.
    Native,
    /// In the generic path, on the kernel's socket buffer: every driver has it.
    Generic,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no network interface named `{0}`")]
    NoSuchInterface(String),
    #[error(
        "knock cannot guard {iface}: it is {what}; knock judges Ethernet links and links that \
         carry bare IP packets (tun, WireGuard, PPP, raw IP, IP tunnels), so it attaches nothing"
    )]
    Unsupported { iface: String, what: String },
    #[error(
        "knock cannot guard {iface}: it is {what}, and before Linux 5.14 generic XDP hands the \
         program such a tunnel's outer headers, not the packet inside; it attaches nothing"
    )]
    TunnelTooOld { iface: String, what: String },
    #[error(
        "knock cannot guard {iface}: it is {what} without a fixed unicast remote address, whose \
         frames reach XDP with the outer IP and GRE headers in front; give the tunnel a remote \
         address, or guard the interface that carries it; knock attaches nothing"
    )]
    GreWithoutRemote { iface: String, what: String },
    #[error("cannot ask the kernel what kind of link {iface} is")]
    Netlink {
        iface: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which entry point judges the frames of `iface`, or why none can.
pub fn judge_interface(iface: &str) -> Result<Link, LinkError> {
    let info = query(iface)?;
    judge(iface, &info, tunnels_start_at_ip())
}

/// The entry point for each interface, in order; the first refusal wins, before anything is
/// attached.
pub fn judge_all(interfaces: &[String]) -> Result<Vec<Link>, LinkError> {
    interfaces.iter().map(|i| judge_interface(i)).collect()
}

/// Since Linux 5.14 every IP tunnel resets the MAC header to the inner packet (but GRE
/// devices that use `ipgre_header_ops`).
pub fn tunnels_start_at_ip() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 14, 0))
}

/// The judgement itself, on what rtnetlink said: pure, so every link type is tested.
pub fn judge(iface: &str, info: &LinkInfo, tunnels_start_at_ip: bool) -> Result<Link, LinkError> {
    let what = describe(info);
    let refuse = |what: String| LinkError::Unsupported {
        iface: iface.to_owned(),
        what,
    };
    match info.kind_of_link {
        ARPHRD_ETHER => Ok(Link::Ethernet),
        ARPHRD_PPP | ARPHRD_RAWIP => Ok(Link::Ip),
        // tun and WireGuard; other drivers of this type are not known to reset the MAC header.
        ARPHRD_NONE => match info.driver.as_deref() {
            Some("tun" | "wireguard") => Ok(Link::Ip),
            _ => Err(refuse(what)),
        },
        ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT | ARPHRD_IPGRE | ARPHRD_IP6GRE => {
            if !tunnels_start_at_ip {
                return Err(LinkError::TunnelTooOld {
                    iface: iface.to_owned(),
                    what,
                });
            }
            let gre = matches!(info.kind_of_link, ARPHRD_IPGRE | ARPHRD_IP6GRE);
            if gre && !unicast_remote(&info.broadcast) {
                return Err(LinkError::GreWithoutRemote {
                    iface: iface.to_owned(),
                    what,
                });
            }
            Ok(Link::Ip)
        }
        _ => Err(refuse(what)),
    }
}

/// A tunnel's remote address, as its broadcast address holds it, that is neither unset nor
/// multicast: only then does the GRE device go without `ipgre_header_ops`.
fn unicast_remote(remote: &[u8]) -> bool {
    match remote {
        [a, _, _, _] => remote.iter().any(|b| *b != 0) && !(224..=239).contains(a),
        [a, ..] if remote.len() == 16 => remote.iter().any(|b| *b != 0) && *a != 0xff,
        _ => false,
    }
}

/// The link's type in words, for the operator.
fn describe(info: &LinkInfo) -> String {
    let name = match info.kind_of_link {
        ARPHRD_ETHER => "an Ethernet link".to_owned(),
        ARPHRD_LOOPBACK => "the loopback interface".to_owned(),
        ARPHRD_PPP => "a PPP link".to_owned(),
        ARPHRD_RAWIP => "a raw-IP link".to_owned(),
        ARPHRD_NONE => "a link without link-layer headers".to_owned(),
        ARPHRD_TUNNEL => "an IPv4-in-IPv4 tunnel".to_owned(),
        ARPHRD_TUNNEL6 => "an IPv6 tunnel".to_owned(),
        ARPHRD_SIT => "an IPv6-in-IPv4 (sit) tunnel".to_owned(),
        ARPHRD_IPGRE => "a GRE tunnel".to_owned(),
        ARPHRD_IP6GRE => "an IPv6 GRE tunnel".to_owned(),
        ARPHRD_INFINIBAND => "an InfiniBand link".to_owned(),
        ARPHRD_CAN => "a CAN bus".to_owned(),
        ARPHRD_IEEE80211_RADIOTAP => "a Wi-Fi monitor interface".to_owned(),
        other => format!("a link of type {other}"),
    };
    match &info.driver {
        Some(driver) => format!("{name} (ARPHRD {}, driver {driver})", info.kind_of_link),
        None => format!("{name} (ARPHRD {})", info.kind_of_link),
    }
}

// rtnetlink, from linux/rtnetlink.h and linux/if_link.h.
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFINFOMSG: usize = 16;

/// Asks rtnetlink about `iface` in this process's network namespace.
pub fn query(iface: &str) -> Result<LinkInfo, LinkError> {
    let netlink = |source| LinkError::Netlink {
        iface: iface.to_owned(),
        source,
    };
    let socket = netlink::Socket::open().map_err(netlink)?;
    let answer = match socket.ask(&request(iface)) {
        Ok(answer) => answer,
        Err(error) if error.raw_os_error() == Some(libc::ENODEV) => {
            return Err(LinkError::NoSuchInterface(iface.to_owned()));
        }
        Err(error) => return Err(netlink(error)),
    };
    answer
        .iter()
        .find_map(|message| parse(message))
        .ok_or_else(|| {
            netlink(std::io::Error::other(
                "the kernel's answer could not be read",
            ))
        })
}

/// An RTM_GETLINK request for the link named `iface`.
fn request(iface: &str) -> Vec<u8> {
    let mut name = iface.as_bytes().to_vec();
    name.push(0);
    // ifinfomsg: any family, any type, any index; the name selects.
    let body = [vec![0u8; IFINFOMSG], netlink::attribute(IFLA_IFNAME, &name)].concat();
    netlink::request(RTM_GETLINK, 0, &body)
}

/// A change of this namespace's links or addresses, as rtnetlink announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A link appeared or changed (a new one, a rename, up or down, an XDP program).
    Link(LinkInfo),
    /// A link went away.
    Gone(LinkInfo),
    /// An address was added or removed.
    Addresses,
}

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;

/// The changes a datagram from a socket subscribed to link and address notifications
/// announces (see `system::netlink::Socket::subscribe`).
pub fn changes(datagram: &[u8]) -> Vec<Change> {
    netlink::messages(datagram)
        .filter_map(|message| match netlink::kind(message)? {
            RTM_NEWLINK => parse(message).map(Change::Link),
            RTM_DELLINK => parse(message).map(Change::Gone),
            RTM_NEWADDR | RTM_DELADDR => Some(Change::Addresses),
            _ => None,
        })
        .collect()
}

/// The groups a daemon subscribes to: links, and IPv4 and IPv6 addresses.
pub const WATCHED: u32 =
    netlink::GROUP_LINK | netlink::GROUP_IPV4_ADDRESS | netlink::GROUP_IPV6_ADDRESS;

/// The link an RTM_NEWLINK or RTM_DELLINK message describes; `None` for any other message.
pub(crate) fn parse(message: &[u8]) -> Option<LinkInfo> {
    use netlink::NLMSG_HEADER;
    if !matches!(netlink::kind(message)?, RTM_NEWLINK | RTM_DELLINK) {
        return None;
    }
    let mut info = LinkInfo {
        kind_of_link: netlink::u16_at(message, NLMSG_HEADER + 2)?,
        index: netlink::u32_at(message, NLMSG_HEADER + 4)?,
        ..LinkInfo::default()
    };
    for (kind, value) in netlink::attributes(message.get(NLMSG_HEADER + IFINFOMSG..)?) {
        match kind {
            IFLA_BROADCAST => info.broadcast = value.to_vec(),
            IFLA_IFNAME => info.name = netlink::string(value),
            IFLA_LINKINFO => {
                info.driver = netlink::attributes(value)
                    .find(|(kind, _)| *kind == IFLA_INFO_KIND)
                    .map(|(_, name)| netlink::string(name));
            }
            IFLA_XDP => {
                info.xdp = netlink::attributes(value)
                    .find(|(kind, _)| *kind == IFLA_XDP_ATTACHED)
                    .and_then(|(_, mode)| mode.first().copied())
                    .unwrap_or(0);
            }
            _ => {}
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests;
