//! Real sockets inside the lab: a listener that counts connections, and connection attempts.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::Netns;

/// A TCP listener inside a namespace that accepts and counts connections until dropped.
pub struct Listener {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// Listens on every address of the namespace, both families, at `port`.
    pub fn start(ns: &Netns, port: u16) -> std::io::Result<Self> {
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = ns.enter(move || -> std::io::Result<TcpListener> {
            let listener =
                TcpListener::bind(SocketAddr::new("::".parse().expect("literal"), port))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })??;
        let (count, halt) = (Arc::clone(&accepted), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        // Keep connections open so a client can test that they survive.
                        held.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self { accepted, stop })
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until at least `count` connections were accepted; returns how many were.
    pub fn wait_accepted(&self, count: usize, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        while self.accepted() < count && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.accepted()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Opens a TCP connection from inside `ns`, or tells why it could not within `timeout`.
pub fn connects(
    ns: &Netns,
    ip: IpAddr,
    port: u16,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    ns.enter(move || TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout))?
}

/// Like [`connects`], from a chosen source address of the namespace.
pub fn connects_from(
    ns: &Netns,
    source: IpAddr,
    ip: IpAddr,
    port: u16,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    ns.enter(move || connect_from(source, SocketAddr::new(ip, port), timeout))?
}

fn connect_from(
    source: IpAddr,
    target: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let family = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the descriptor is owned by the TcpStream made from it below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned from here on.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let (local, local_len) = sockaddr(SocketAddr::new(source, 0));
    // SAFETY: a valid sockaddr of the stated length.
    if unsafe { libc::bind(fd, (&raw const local).cast(), local_len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    stream.set_nonblocking(true)?;
    let (remote, remote_len) = sockaddr(target);
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&raw const remote).cast(), remote_len) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(error);
        }
    }
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd we own.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as i32) };
    if ready == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connection timed out",
        ));
    }
    if let Some(error) = stream.take_error()? {
        return Err(error);
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
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
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
