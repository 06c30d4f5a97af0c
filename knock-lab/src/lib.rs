//! A small network laboratory for knock's tests, demo and benchmarks: two network namespaces
//! joined by a veth pair, with helpers to listen, connect and run the daemon inside them.
//! Everything it creates is removed when it is dropped, also when a test fails.
//!
//! Addresses come only from the documentation ranges 198.51.100.0/24 and 2001:db8::/32.

mod daemon;
mod netns;
mod socket;

pub use daemon::Daemon;
pub use netns::Netns;
pub use socket::{Listener, connects, connects_from};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// A second client address on the client side, for "another source" cases.
pub const OTHER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
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

impl Lab {
    /// Builds the two namespaces and the link between them, with addresses up and ready.
    pub fn new() -> std::io::Result<Self> {
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
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
        Ok(())
    }

    pub fn server_addr(v6: bool) -> IpAddr {
        if v6 {
            SERVER_V6.into()
        } else {
            SERVER_V4.into()
        }
    }
}
