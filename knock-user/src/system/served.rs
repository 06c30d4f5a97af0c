//! The ports this host serves: TCP sockets listening and UDP sockets bound without a peer, read
//! from /proc/net. A knock port that is also served keeps serving (knocks on it are counted but
//! not dropped), so knock can find out and `check` can warn.

use std::collections::BTreeSet;

use knock_common::ProtoPort;

/// TCP's LISTEN state and an unconnected UDP socket's state in /proc/net.
const TCP_LISTEN: &str = "0A";
const UDP_UNCONNECTED: &str = "07";

/// The served ports of the calling process's network namespace. Files that cannot be read (no
/// IPv6, say) contribute nothing.
pub fn ports() -> BTreeSet<ProtoPort> {
    let mut served = BTreeSet::new();
    for (file, tcp) in [
        ("/proc/net/tcp", true),
        ("/proc/net/tcp6", true),
        ("/proc/net/udp", false),
        ("/proc/net/udp6", false),
    ] {
        if let Ok(table) = std::fs::read_to_string(file) {
            served.extend(parse(&table, tcp));
        }
    }
    served
}

/// Parses one /proc/net table.
pub fn parse(table: &str, tcp: bool) -> impl Iterator<Item = ProtoPort> + '_ {
    table.lines().skip(1).filter_map(move |line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let remote = fields.next()?;
        let state = fields.next()?;
        let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
        let remote_port = remote.rsplit_once(':')?.1;
        if tcp && state == TCP_LISTEN {
            Some(ProtoPort::tcp(port))
        } else if !tcp && state == UDP_UNCONNECTED && remote_port == "0000" {
            Some(ProtoPort::udp(port))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_tcp_and_unconnected_udp_sockets_are_served() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
";
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0 0
  2: 0100007F:C350 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 4 2 0 0
";
        let served: Vec<ProtoPort> = parse(tcp, true).chain(parse(udp, false)).collect();
        assert_eq!(served, [ProtoPort::tcp(22), ProtoPort::udp(53)]);
    }
}
