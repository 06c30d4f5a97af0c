//! A small network laboratory for knock's tests, demo and benchmarks: two network namespaces
//! joined by a veth pair ([`Lab`]), with helpers to listen, connect and run the daemon inside
//! them, and the one [`Scene`] that puts them together (a lab, listeners, a configuration, a
//! private bpffs, the daemon). Everything it creates is removed when it is dropped, also when a
//! test fails.
//!
//! Addresses come only from the documentation ranges 198.51.100.0/24, 203.0.113.0/24 (outside
//! the NAT of [`nat::NatLab`]) and 2001:db8::/32.

mod bpffs;
mod clone;
mod daemon;
mod generator;
pub mod knockd;
mod live;
pub mod nat;
mod netns;
mod raw;
mod scene;
mod socket;
pub mod stun;
mod tempdir;
mod txring;

pub use bpffs::BpfMount;
pub use clone::{CloneRedirect, MAX_CLONES};
pub use daemon::Daemon;
pub use generator::{CLONES_PER_RUN, Flood, Flooded, Sender, stamp};
pub use live::DropAll;
pub use netns::Netns;
pub use raw::Capture;
pub use scene::{SHORT, Scene, SceneBuilder};
pub use socket::{Listener, connects, connects_from};
pub use tempdir::TempDir;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// A second client address on the client side, for "another source" cases.
pub const OTHER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// A second server address, for doors with a `Target`.
pub const SERVER_ALT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 4);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// A server namespace and a client namespace joined by a veth pair.
pub struct Lab {
    pub server: Netns,
    pub client: Netns,
    /// The veth end inside the server namespace, where knock attaches.
    pub server_if: String,
    pub client_if: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A tag for names (namespaces, interfaces) no other lab of any process uses at the same time.
pub(crate) fn unique_id() -> String {
    format!(
        "{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Lab {
    /// Builds the two namespaces and the link between them, with addresses up and ready.
    pub fn new() -> std::io::Result<Self> {
        let id = unique_id();
        let server = Netns::create(&format!("knock-{id}-server"))?;
        let client = Netns::create(&format!("knock-{id}-client"))?;
        let lab = Self {
            server_if: format!("kn{id}s"),
            client_if: format!("kn{id}c"),
            server,
            client,
        };
        lab.wire()?;
        Ok(lab)
    }

    /// Deletes the veth pair, as a USB Ethernet reset or `ifdown` takes an interface away.
    pub fn unwire(&self) -> std::io::Result<()> {
        self.server.ip(&["link", "del", &self.server_if]).map(drop)
    }

    /// Makes the veth pair again, under the same names and with the same addresses: a new
    /// interface (a new index) where the old one was.
    pub fn rewire(&self) -> std::io::Result<()> {
        self.wire()
    }

    fn wire(&self) -> std::io::Result<()> {
        netns::ip(&[
            "link",
            "add",
            &self.server_if,
            "netns",
            self.server.name(),
            "type",
            "veth",
            "peer",
            "name",
            &self.client_if,
            "netns",
            self.client.name(),
        ])?;
        for (ns, iface, v4, v6) in [
            (&self.server, &self.server_if, SERVER_V4, SERVER_V6),
            (&self.client, &self.client_if, CLIENT_V4, CLIENT_V6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", iface])?;
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", iface, "nodad"])?;
            ns.ip(&["link", "set", iface, "up"])?;
            ns.ip(&["link", "set", "lo", "up"])?;
        }
        self.client.ip(&[
            "addr",
            "add",
            &format!("{OTHER_V4}/24"),
            "dev",
            &self.client_if,
        ])?;
        self.server.ip(&[
            "addr",
            "add",
            &format!("{SERVER_ALT_V4}/24"),
            "dev",
            &self.server_if,
        ])?;
        Ok(())
    }

    pub fn server_addr(v6: bool) -> IpAddr {
        if v6 {
            SERVER_V6.into()
        } else {
            SERVER_V4.into()
        }
    }

    /// The MAC address of an interface in a namespace.
    pub fn mac(ns: &Netns, iface: &str) -> std::io::Result<[u8; 6]> {
        let output = ns.ip(&["-o", "link", "show", iface])?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mac = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .ok_or_else(|| std::io::Error::other(format!("no MAC address for {iface}: {text}")))?;
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(mac.split(':')) {
            *byte = u8::from_str_radix(part, 16).map_err(std::io::Error::other)?;
        }
        Ok(bytes)
    }

    /// Sends a raw Ethernet frame out of the client's veth, toward the server, exactly as given
    /// except that unicast Ethernet addresses are replaced by the real ones of the pair.
    pub fn send_from_client(&self, frame: &[u8]) -> std::io::Result<()> {
        let mut frame = frame.to_vec();
        if frame.len() >= 12 {
            if frame[0] & 1 == 0 {
                frame[..6].copy_from_slice(&Self::mac(&self.server, &self.server_if)?);
            }
            frame[6..12].copy_from_slice(&Self::mac(&self.client, &self.client_if)?);
        }
        let iface = self.client_if.clone();
        self.client.enter(move || raw::send(&iface, &frame))?
    }

    /// Starts capturing every frame on the client's veth.
    pub fn capture_on_client(&self) -> std::io::Result<Capture> {
        let iface = self.client_if.clone();
        self.client.enter(move || Capture::open(&iface))?
    }

    /// Sends `count` frames built from `template` out of the client's veth as fast as it can,
    /// `shape` rewriting each one (say, its source address) before it leaves. The Ethernet
    /// addresses are set to the pair's. Returns how many left.
    pub fn burst_from_client(
        &self,
        template: &[u8],
        count: u64,
        shape: impl FnMut(u64, &mut [u8]) + Send + 'static,
    ) -> std::io::Result<u64> {
        let mut frame = template.to_vec();
        if frame.len() >= 12 {
            frame[..6].copy_from_slice(&Self::mac(&self.server, &self.server_if)?);
            frame[6..12].copy_from_slice(&Self::mac(&self.client, &self.client_if)?);
        }
        let iface = self.client_if.clone();
        self.client
            .enter(move || raw::burst(&iface, &frame, count, shape))?
    }
}
