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

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use knock_common::frame::Link;

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
    /// The ARPHRD type.
    pub kind_of_link: u16,
    /// The driver's name for the link (`IFLA_INFO_KIND`): "tun", "wireguard", "gre", ...
    pub driver: Option<String>,
    /// The link's broadcast address (`IFLA_BROADCAST`): for IP tunnels, the remote address.
    pub broadcast: Vec<u8>,
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
fn tunnels_start_at_ip() -> bool {
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

// rtnetlink, from linux/netlink.h and linux/rtnetlink.h.
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const NLMSG_HEADER: usize = 16;
const IFINFOMSG: usize = 16;

/// Asks rtnetlink about `iface` in this process's network namespace.
pub fn query(iface: &str) -> Result<LinkInfo, LinkError> {
    let netlink = |source| LinkError::Netlink {
        iface: iface.to_owned(),
        source,
    };
    // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(netlink(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = request(iface);
    // SAFETY: the request buffer is valid for its length; the kernel is the destination
    // (netlink sockets send to it without an address).
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(netlink(std::io::Error::last_os_error()));
    }
    let mut reply = vec![0u8; 32 * 1024];
    // SAFETY: the buffer is valid for its length.
    let received = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            reply.as_mut_ptr().cast(),
            reply.len(),
            0,
        )
    };
    if received < 0 {
        return Err(netlink(std::io::Error::last_os_error()));
    }
    reply.truncate(received as usize);
    match parse(&reply) {
        Ok(info) => Ok(info),
        Err(Reply::Errno(errno)) if errno == libc::ENODEV => {
            Err(LinkError::NoSuchInterface(iface.to_owned()))
        }
        Err(Reply::Errno(errno)) => Err(netlink(std::io::Error::from_raw_os_error(errno))),
        Err(Reply::Garbled) => Err(netlink(std::io::Error::other(
            "the kernel's answer could not be read",
        ))),
    }
}

/// An RTM_GETLINK request for the link named `iface`.
fn request(iface: &str) -> Vec<u8> {
    let name_len = iface.len() + 1;
    let attribute = 4 + name_len;
    let total = NLMSG_HEADER + IFINFOMSG + align(attribute);
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&(total as u32).to_ne_bytes());
    message.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: any family, any type, any index; the name selects.
    message.extend_from_slice(&[0u8; IFINFOMSG]);
    message.extend_from_slice(&(attribute as u16).to_ne_bytes());
    message.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    message.extend_from_slice(iface.as_bytes());
    message.resize(total, 0);
    message
}

/// What a reply other than the link's description says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// An error message with this errno.
    Errno(i32),
    Garbled,
}

const fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The link described by an RTM_GETLINK reply.
fn parse(reply: &[u8]) -> Result<LinkInfo, Reply> {
    let length = u32_at(reply, 0).ok_or(Reply::Garbled)? as usize;
    let kind = u16_at(reply, 4).ok_or(Reply::Garbled)?;
    let message = reply.get(..length).ok_or(Reply::Garbled)?;
    if kind == NLMSG_ERROR {
        let errno = u32_at(message, NLMSG_HEADER).ok_or(Reply::Garbled)? as i32;
        return Err(Reply::Errno(-errno));
    }
    if kind != RTM_NEWLINK {
        return Err(Reply::Garbled);
    }
    let kind_of_link = u16_at(message, NLMSG_HEADER + 2).ok_or(Reply::Garbled)?;
    let mut info = LinkInfo {
        kind_of_link,
        ..LinkInfo::default()
    };
    for (kind, value) in attributes(message.get(NLMSG_HEADER + IFINFOMSG..).unwrap_or(&[])) {
        match kind {
            IFLA_BROADCAST => info.broadcast = value.to_vec(),
            IFLA_LINKINFO => {
                info.driver = attributes(value)
                    .find(|(kind, _)| *kind == IFLA_INFO_KIND)
                    .map(|(_, name)| {
                        let name = name.split(|b| *b == 0).next().unwrap_or_default();
                        String::from_utf8_lossy(name).into_owned()
                    });
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The attributes in `bytes`, as (type, value); a malformed one ends the walk.
fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let length = usize::from(u16_at(bytes, at)?);
        // The top bits of the type are flags (nested, byte order).
        let kind = u16_at(bytes, at + 2)? & 0x3fff;
        let value = bytes.get(at + 4..at + length.max(4))?;
        at += align(length.max(4));
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests;
