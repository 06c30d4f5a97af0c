//! A client behind a NAT router, and a server on the other side: three namespaces, two veth
//! pairs, and nftables masquerading on the router's outside interface, as a home router does.
//! The server has no route back to the client's network, so only what the NAT rewrote reaches
//! it and gets an answer.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;

use crate::{Netns, unique_id};

/// The client, on the router's inside network.
pub const NAT_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The router's inside address: the client's gateway.
pub const NAT_INSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The router's outside address, which the NAT gives the client's packets.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The server, outside.
pub const NAT_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

pub struct NatLab {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
    pub client_if: String,
    /// The router's interfaces: toward the client, toward the server.
    pub inside_if: String,
    pub outside_if: String,
    /// The server's interface, where knock attaches.
    pub server_if: String,
}

impl NatLab {
    pub fn new() -> std::io::Result<Self> {
        let id = unique_id();
        let lab = Self {
            client: Netns::create(&format!("knock-{id}-natc"))?,
            router: Netns::create(&format!("knock-{id}-natr"))?,
            server: Netns::create(&format!("knock-{id}-nats"))?,
            client_if: format!("kn{id}c"),
            inside_if: format!("kn{id}i"),
            outside_if: format!("kn{id}o"),
            server_if: format!("kn{id}s"),
        };
        lab.wire()?;
        Ok(lab)
    }

    fn wire(&self) -> std::io::Result<()> {
        for (a, a_if, b, b_if) in [
            (&self.client, &self.client_if, &self.router, &self.inside_if),
            (
                &self.router,
                &self.outside_if,
                &self.server,
                &self.server_if,
            ),
        ] {
            crate::netns::ip(&[
                "link",
                "add",
                a_if,
                "netns",
                a.name(),
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                b.name(),
            ])?;
        }
        for (ns, iface, address) in [
            (&self.client, &self.client_if, NAT_CLIENT),
            (&self.router, &self.inside_if, NAT_INSIDE),
            (&self.router, &self.outside_if, NAT_PUBLIC),
            (&self.server, &self.server_if, NAT_SERVER),
        ] {
            ns.ip(&["addr", "add", &format!("{address}/24"), "dev", iface])?;
            ns.ip(&["link", "set", iface, "up"])?;
            ns.ip(&["link", "set", "lo", "up"])?;
        }
        self.client
            .ip(&["route", "add", "default", "via", &NAT_INSIDE.to_string()])?;
        run(
            self.router
                .command("sysctl")
                .args(["-qw", "net.ipv4.ip_forward=1"]),
            None,
        )?;
        let ruleset = format!(
            "table ip knock_lab_nat {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname \"{}\" masquerade\n\
             \t}}\n\
             }}\n",
            self.outside_if
        );
        run(self.router.command("nft").args(["-f", "-"]), Some(&ruleset))
    }

    /// The router's NAT rules, as `nft list ruleset` shows them.
    pub fn nat_rules(&self) -> std::io::Result<String> {
        let output = self
            .router
            .command("nft")
            .args(["list", "ruleset"])
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn run(command: &mut std::process::Command, input: Option<&str>) -> std::io::Result<()> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
