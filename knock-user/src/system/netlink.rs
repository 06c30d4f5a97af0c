//! rtnetlink, the kernel's own account of links, addresses and routes in this process's network
//! namespace (/sys may belong to another one): a socket for requests and dumps, a socket
//! subscribed to change notifications, and the walk over messages and attributes. What the
//! messages mean is read by their users (`kernel::link`, `system::routes`).

use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

// From linux/netlink.h and linux/rtnetlink.h.
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLMSG_HEADER: usize = 16;
/// Notification groups (`nl_groups` bits) for links and IPv4 and IPv6 addresses.
pub const GROUP_LINK: u32 = 1;
pub const GROUP_IPV4_ADDRESS: u32 = 0x10;
pub const GROUP_IPV6_ADDRESS: u32 = 0x100;

/// An rtnetlink socket.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Socket {
    /// A socket for requests to the kernel.
    pub fn open() -> std::io::Result<Self> {
        Self::with_flags(0)
    }

    /// A non-blocking socket that receives the kernel's notifications for `groups` (a mask of
    /// `GROUP_*`), from the moment it returns.
    pub fn subscribe(groups: u32) -> std::io::Result<Self> {
        let socket = Self::with_flags(libc::SOCK_NONBLOCK)?;
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = groups;
        // SAFETY: bind(2) with a sockaddr_nl we own and its size.
        let bound = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn with_flags(flags: i32) -> std::io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Sends one request to the kernel.
    pub fn send(&self, message: &[u8]) -> std::io::Result<()> {
        // SAFETY: the buffer is valid for its length; netlink sockets send to the kernel
        // without an address.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram (one or more messages). On a subscribed socket, `WouldBlock`
    /// means nothing is waiting, and ENOBUFS that notifications were lost.
    pub fn receive(&self) -> std::io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; 64 * 1024];
        // SAFETY: the buffer is valid for its length.
        let received = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if received < 0 {
            return Err(std::io::Error::last_os_error());
        }
        buffer.truncate(received as usize);
        Ok(buffer)
    }

    /// Sends a request and returns the messages of its answer: one, or every message of a dump
    /// up to its end. An error message is returned as an error.
    pub fn ask(&self, request: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
        self.send(request)?;
        let dump = u16_at(request, 6).is_some_and(|flags| flags & NLM_F_DUMP == NLM_F_DUMP);
        let mut answer = Vec::new();
        loop {
            let datagram = self.receive()?;
            for message in messages(&datagram) {
                match kind(message) {
                    Some(NLMSG_DONE) => return Ok(answer),
                    Some(NLMSG_ERROR) => match error_of(message) {
                        Some(0) => {}
                        Some(errno) => return Err(std::io::Error::from_raw_os_error(errno)),
                        None => return Err(garbled()),
                    },
                    Some(_) => answer.push(message.to_vec()),
                    None => return Err(garbled()),
                }
            }
            if !dump || datagram.is_empty() {
                return Ok(answer);
            }
        }
    }
}

fn garbled() -> std::io::Error {
    std::io::Error::other("the kernel's rtnetlink answer could not be read")
}

/// A request: the netlink header, then `body` (the family's header and attributes).
pub fn request(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let total = NLMSG_HEADER + align(body.len());
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&(total as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(body);
    message.resize(total, 0);
    message
}

/// One attribute, as a request carries it.
pub fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let length = 4 + value.len();
    let mut bytes = Vec::with_capacity(align(length));
    bytes.extend_from_slice(&(length as u16).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(value);
    bytes.resize(align(length), 0);
    bytes
}

/// The messages in a datagram, each with its header; a malformed one ends the walk.
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let length = u32_at(datagram, at)? as usize;
        if length < NLMSG_HEADER {
            return None;
        }
        let message = datagram.get(at..at + length)?;
        at += align(length);
        Some(message)
    })
}

/// A message's type.
pub fn kind(message: &[u8]) -> Option<u16> {
    u16_at(message, 4)
}

/// The errno an error message carries (0 for an acknowledgement).
pub fn error_of(message: &[u8]) -> Option<i32> {
    Some(-(u32_at(message, NLMSG_HEADER)? as i32))
}

/// The attributes in `bytes`, as (type, value); a malformed one ends the walk.
pub fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
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

/// An attribute's value as a string (NUL-terminated in the message).
pub fn string(value: &[u8]) -> String {
    let text = value.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The name of the interface with index `index`, if there is one.
pub fn interface_name(index: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into the buffer we own.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_as_one_message_with_its_attribute() {
        let body = [vec![0u8; 16], attribute(3, b"eth0\0")].concat();
        let message = request(18, 0, &body);
        let all: Vec<&[u8]> = messages(&message).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(kind(all[0]), Some(18));
        let attrs: Vec<(u16, &[u8])> = attributes(&all[0][NLMSG_HEADER + 16..]).collect();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].0, 3);
        assert_eq!(string(attrs[0].1), "eth0");
    }

    #[test]
    fn truncated_messages_and_attributes_end_the_walk() {
        let message = request(16, 0, &attribute(3, b"eth0\0"));
        assert_eq!(messages(&message[..message.len() - 1]).count(), 0);
        assert_eq!(messages(&message[..3]).count(), 0);
        let attribute = attribute(3, b"wlan0\0");
        assert_eq!(attributes(&attribute[..5]).count(), 0);
    }

    #[test]
    fn the_loopback_interface_has_a_name() {
        assert_eq!(interface_name(1).as_deref(), Some("lo"));
        assert_eq!(interface_name(u32::MAX), None);
    }
}
