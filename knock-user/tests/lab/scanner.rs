//! What a port scanner sees, end to end: TCP and UDP probes from the client namespace, over
//! IPv4 and IPv6, of every knock port, of the protected ports (unknocked) and of closed ports.
//! In the default (closed) look every one of them is refused as a closed port refuses (a reset,
//! an ICMP port unreachable), the reset knock builds in XDP matching the host's own field by
//! field; in the stealth look none of them gets any answer. Needs root: `cargo xtask test`.
use crate::common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use common::BINARY;
use knock_common::craft::{Craft, Transport};
use knock_common::frame::{Frame, classify};
use knock_common::segment::tcp_flags::{RST, SYN};
use knock_lab::{CLIENT_V4, CLIENT_V6, Lab, SERVER_V4, SERVER_V6, Scene};

/// Two doors: SSH behind TCP and UDP knocks, and a UDP service (5353) behind two TCP knocks.
const DOORS: &str = "[options]\n\
    [openSSH]\nsequence = 7000,8000:udp,9000\nseq_timeout = 5\ntcpflags = syn\n\
    [openDNS]\nsequence = 7100,7200\nseq_timeout = 5\nprotect = 5353:udp\n";

/// Knock ports, protected ports and closed ports (none in the ephemeral range): each probed
/// with TCP and with UDP.
const PORTS: [u16; 10] = [7000, 8000, 9000, 7100, 7200, 22, 5353, 23, 161, 8080];
/// A TCP service nothing protects.
const SERVED: u16 = 80;

const WAIT: Duration = Duration::from_millis(700);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// A reset or an ICMP port unreachable: what a closed port gives.
    Refused,
    /// Nothing within the wait: what a filtered port gives.
    Silent,
    /// A connection or a datagram back.
    Served,
    Other,
}

fn tcp_probe(target: SocketAddr) -> Answer {
    match TcpStream::connect_timeout(&target, WAIT) {
        Ok(_) => Answer::Served,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Answer::Refused,
        Err(e) if e.kind() == ErrorKind::TimedOut => Answer::Silent,
        Err(_) => Answer::Other,
    }
}

fn udp_probe(target: SocketAddr) -> Answer {
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let Ok(socket) = UdpSocket::bind(any) else {
        return Answer::Other;
    };
    if socket.connect(target).is_err() || socket.set_read_timeout(Some(WAIT)).is_err() {
        return Answer::Other;
    }
    if socket.send(b"probe").is_err() {
        return Answer::Other;
    }
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Ok(_) => Answer::Served,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Answer::Refused,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Answer::Silent,
        Err(_) => Answer::Other,
    }
}

/// Every probe of `ports`, TCP and UDP, IPv4 and IPv6, run at once from the client namespace:
/// the answer of each, by (family, protocol, port).
fn scan(lab: &Lab, ports: &[u16]) -> BTreeMap<(&'static str, &'static str, u16), Answer> {
    let ports = ports.to_vec();
    lab.client
        .enter(move || {
            std::thread::scope(|scope| {
                let mut probes = Vec::new();
                for (family, server) in [
                    ("ipv4", IpAddr::from(SERVER_V4)),
                    ("ipv6", SERVER_V6.into()),
                ] {
                    for &port in &ports {
                        let target = SocketAddr::new(server, port);
                        probes.push((
                            (family, "tcp", port),
                            scope.spawn(move || tcp_probe(target)),
                        ));
                        probes.push((
                            (family, "udp", port),
                            scope.spawn(move || udp_probe(target)),
                        ));
                    }
                }
                probes
                    .into_iter()
                    .map(|(key, probe)| (key, probe.join().unwrap_or(Answer::Other)))
                    .collect()
            })
        })
        .expect("the client namespace")
}

/// A UDP service on `port` in the server namespace that echoes what it gets, until the test
/// ends.
fn udp_echo(lab: &Lab, port: u16) {
    let sockets = lab
        .server
        .enter(move || {
            [
                UdpSocket::bind(SocketAddr::new(SERVER_V4.into(), port)),
                UdpSocket::bind(SocketAddr::new(SERVER_V6.into(), port)),
            ]
        })
        .expect("the server namespace");
    for socket in sockets {
        let socket = socket.expect("the UDP service binds");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], peer);
            }
        });
    }
}

/// The host's own limits on ICMP errors would make a scan of many UDP ports from one source
/// see silence after the first few (as they do at any closed port); the scan here is about
/// which kind of answer each port gives, so the server namespace lifts them.
fn lift_icmp_limits(lab: &Lab) {
    lab.server
        .command("sysctl")
        .args([
            "-qw",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ])
        .output()
        .expect("sysctl runs");
}

fn scene(extra: &[&str]) -> Scene {
    let s = Scene::build(DOORS)
        .pinned()
        .listen(&[SERVED])
        .args(extra)
        .start(Path::new(BINARY))
        .expect("the daemon starts");
    lift_icmp_limits(&s.lab);
    udp_echo(&s.lab, 5353);
    s
}

/// [`scan`] of every port in [`PORTS`], the protected and closed ports first: probed all at
/// once, the knock ports could arrive in a door's order and open it, and the protected port
/// would then rightly answer.
fn scan_all(lab: &Lab) -> BTreeMap<(&'static str, &'static str, u16), Answer> {
    let (knock_ports, others): (Vec<u16>, Vec<u16>) =
        PORTS.iter().partition(|p| (7000..=9000).contains(*p));
    let mut answers = scan(lab, &others);
    answers.extend(scan(lab, &knock_ports));
    answers
}

fn unexpected(
    scan: &BTreeMap<(&'static str, &'static str, u16), Answer>,
    expected: Answer,
) -> Vec<String> {
    scan.iter()
        .filter(|(_, answer)| **answer != expected)
        .map(|((family, proto, port), answer)| format!("{family} {proto} {port}: {answer:?}"))
        .collect()
}

#[test]
fn a_scan_finds_knock_ports_and_protected_ports_closed_like_every_other_closed_port() {
    let s = scene(&[]);
    let scan = scan_all(&s.lab);
    assert_eq!(scan.len(), PORTS.len() * 4);
    let wrong = unexpected(&scan, Answer::Refused);
    assert!(
        wrong.is_empty(),
        "every probe must be refused as at a closed port; these were not: {wrong:?}\n{}",
        s.daemon().log().join("\n")
    );
    // Four refused at protected ports (TCP 22 and UDP 5353, over IPv4 and IPv6): by the gate,
    // then by the guard, so the host answered as for a closed port.
    assert_eq!(counter_of(&s, "gate_dropped"), 4);
    assert_eq!(counter_of(&s, "guard_refused"), 4);
    assert_eq!(
        scan_one(&s.lab, SERVED),
        Answer::Served,
        "the service left open"
    );
}

/// A counter of the scene's daemon, as `knock-user status --json` shows it.
fn counter_of(s: &Scene, name: &str) -> u64 {
    let status = std::process::Command::new(BINARY)
        .args(["status", "--json", "--state-dir"])
        .arg(s.state_dir().expect("the scene pins"))
        .output()
        .expect("knock-user status runs");
    let needle = format!("\"{name}\": ");
    String::from_utf8_lossy(&status.stdout)
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix(&needle)
                .and_then(|value| value.trim_end_matches(',').parse().ok())
        })
        .unwrap_or_else(|| panic!("no counter {name} in the status"))
}

fn scan_one(lab: &Lab, port: u16) -> Answer {
    lab.client
        .enter(move || tcp_probe(SocketAddr::new(SERVER_V4.into(), port)))
        .expect("the client namespace")
}

#[test]
fn after_its_knocks_the_protected_udp_service_answers_the_knocker() {
    let s = scene(&[]);
    let target = SocketAddr::new(SERVER_V4.into(), 5353);
    let before = s
        .lab
        .client
        .enter(move || udp_probe(target))
        .expect("the client namespace");
    assert_eq!(
        before,
        Answer::Refused,
        "unknocked, the service looks closed"
    );
    for port in [7100, 7200] {
        let _ = s
            .lab
            .client
            .enter(move || tcp_probe(SocketAddr::new(SERVER_V4.into(), port)));
    }
    s.daemon()
        .wait_for("openDNS", Duration::from_secs(5))
        .expect("the door opens");
    let after = s
        .lab
        .client
        .enter(move || udp_probe(target))
        .expect("the client namespace");
    assert_eq!(after, Answer::Served, "the knocker reaches the service");
}

#[test]
fn in_the_stealth_look_a_scan_gets_no_answer_but_served_ports_still_serve() {
    let s = scene(&["--ports-look", "stealth"]);
    let scan = scan_all(&s.lab);
    let wrong = unexpected(&scan, Answer::Silent);
    assert_eq!(scan.len(), PORTS.len() * 4);
    assert!(
        wrong.is_empty(),
        "every probe must go unanswered; these were answered: {wrong:?}"
    );
    assert_eq!(scan_one(&s.lab, SERVED), Answer::Served);
}

/// The first RST the client's capture saw going to `sport`, from the IP header on.
fn reset_to(frames: &[Vec<u8>], sport: u16) -> Option<Vec<u8>> {
    frames
        .iter()
        .find(|frame| {
            matches!(classify(frame.as_slice()), Frame::Segment(s)
                if s.tcp_flags & RST != 0 && s.dport == sport)
        })
        .map(|frame| frame[14..].to_vec())
}

/// A reset with what must differ between two answers to two probes blanked: the ports, the
/// checksums, IPv4's header checksum and IPv6's flow label (the host's is a hash of the flow,
/// as is knock's; both must be there or both absent, which is compared apart).
fn comparable(reset: &[u8], ipv6: bool) -> Vec<u8> {
    let mut reset = reset.to_vec();
    let l4 = if ipv6 { 40 } else { 20 };
    if ipv6 {
        reset[1] &= 0xf0;
        reset[2] = 0;
        reset[3] = 0;
    } else {
        reset[10] = 0;
        reset[11] = 0;
    }
    reset[l4..l4 + 4].fill(0);
    reset[l4 + 16..l4 + 18].fill(0);
    reset
}

fn flow_label(reset: &[u8]) -> u32 {
    u32::from_be_bytes([0, reset[1] & 0x0f, reset[2], reset[3]])
}

/// In skb mode: a veth delivers the frames a native XDP program sends back only to a peer that
/// runs XDP itself, so on a veth in native mode the daemon leaves resets to the host's stack
/// (see `a_scan_finds_...`, which runs in native mode); a real NIC sends them in either mode.
#[test]
fn the_reset_built_in_xdp_matches_the_hosts_own_reset_field_by_field() {
    let s = scene(&["--xdp-mode", "skb"]);
    for (client, server, ipv6) in [
        (IpAddr::from(CLIENT_V4), IpAddr::from(SERVER_V4), false),
        (CLIENT_V6.into(), SERVER_V6.into(), true),
    ] {
        let capture = s.lab.capture_on_client().expect("a capture on the client");
        // The same SYN (sequence number, window, TOS and all) to a closed port and to the
        // protected port, unknocked.
        for (sport, dport) in [(41001, 23), (41002, 22)] {
            let mut craft = Craft::tcp(client, server, dport, SYN);
            if let Transport::Tcp { sport: s, .. } = &mut craft.transport {
                *s = sport;
            }
            s.lab
                .send_from_client(&craft.build())
                .expect("the SYN leaves");
        }
        let frames = capture.frames_for(Duration::from_millis(500));
        let host = reset_to(&frames, 41001).expect("the host resets the closed port");
        let knock = reset_to(&frames, 41002).unwrap_or_else(|| {
            let seen: Vec<String> = frames
                .iter()
                .map(|f| format!("{:02x?}", &f[..f.len().min(60)]))
                .collect();
            let resets_sent = counter_of(&s, "gate_resets_sent");
            panic!(
                "knock resets the protected port (gate_resets_sent {resets_sent}); the client \
                 saw {seen:#?}\n{}",
                s.daemon().log().join("\n")
            )
        });
        assert_eq!(
            comparable(&knock, ipv6),
            comparable(&host, ipv6),
            "{}: the reset knock built differs from the host's\n knock: {knock:02x?}\n  host: {host:02x?}",
            if ipv6 { "IPv6" } else { "IPv4" }
        );
        if ipv6 {
            assert_eq!(
                flow_label(&knock) != 0,
                flow_label(&host) != 0,
                "both carry a flow label, or neither"
            );
        }
    }
}

/// A scanner's own SYN (nmap -sS crafts it whole, checksum and all) to the protected port of a
/// veth guarded in native mode: the host's stack answers it, since the veth would lose the
/// program's own reset.
#[test]
fn on_a_veth_in_native_mode_a_crafted_syn_to_the_protected_port_gets_the_hosts_reset() {
    let s = scene(&[]);
    for (client, server) in [
        (IpAddr::from(CLIENT_V4), IpAddr::from(SERVER_V4)),
        (CLIENT_V6.into(), SERVER_V6.into()),
    ] {
        let capture = s.lab.capture_on_client().expect("a capture on the client");
        let mut craft = Craft::tcp(client, server, 22, SYN);
        if let Transport::Tcp { sport, .. } = &mut craft.transport {
            *sport = 41005;
        }
        s.lab
            .send_from_client(&craft.build())
            .expect("the SYN leaves");
        let frames = capture.frames_for(Duration::from_millis(500));
        assert!(
            reset_to(&frames, 41005).is_some(),
            "{server}: the crafted SYN is reset"
        );
    }
    assert_eq!(counter_of(&s, "gate_resets_sent"), 0);
    assert_eq!(counter_of(&s, "guard_refused"), 2);
}
