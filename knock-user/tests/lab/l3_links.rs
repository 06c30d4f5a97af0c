//! Links without Ethernet headers, end to end: a tun device (IFF_TUN, as OpenVPN, wireguard-go
//! and PPP daemons make them) in a namespace of its own, guarded in generic XDP. The test is
//! the far end of the link: it writes IP packets into the device and reads the host's answers.
//! And the link types knock cannot judge are refused, with nothing attached.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{BINARY, TempDir};
use knock_common::Addr;
use knock_common::craft::{Craft, Transport};
use knock_common::segment::tcp_flags::{ACK, RST, SYN};
use knock_common::spa::{self, Request, door_tag};
use knock_lab::{BpfMount, Daemon, Listener, Netns};

const HOST4: &str = "198.51.100.1";
const CLIENT4: &str = "198.51.100.2";
const SPA_CLIENT4: &str = "198.51.100.3";
const STRANGER4: &str = "198.51.100.5";
const LATE_SPA_CLIENT4: &str = "198.51.100.6";
const HOST6: &str = "2001:db8::1";
const CLIENT6: &str = "2001:db8::2";
const KEY: &str = "7 000102030405060708090a0b0c0d0e0f laptop";
const WAIT: Duration = Duration::from_secs(5);
/// How long a SYN that gets no answer is waited for: the host answers within microseconds.
const SILENCE: Duration = Duration::from_millis(600);

const DOOR: &str = "[options]\nSPA_Keys = $DIR/spa.keys\n\
                    [openSSH]\nsequence = 4438,1813,8235\nseq_timeout = 5\ncmd_timeout = 60\nSPA = yes\n";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// A tun device in a namespace of its own, its file descriptor held by the test.
struct Tun {
    file: File,
    name: String,
    ns: Netns,
}

impl Tun {
    fn new() -> Self {
        let id = std::process::id() % 100_000;
        let ns = Netns::create(&format!("knock-{id}-tun")).expect("a namespace");
        let name = format!("tunk{id}");
        let device = name.clone();
        let file = ns
            .enter(move || open_tun(&device))
            .expect("a thread in the namespace")
            .expect("a tun device");
        for args in [
            vec!["addr", "add", &format!("{HOST4}/24"), "dev", &name],
            vec!["addr", "add", &format!("{HOST6}/64"), "dev", &name, "nodad"],
            vec!["link", "set", &name, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            ns.ip(&args).expect("the tun device is configured");
        }
        Self { file, name, ns }
    }

    /// Writes one IP packet into the device: for the host, it arrives on the link.
    fn send(&mut self, packet: &[u8]) {
        self.file.write_all(packet).expect("the packet is written");
    }

    /// Sends a SYN to `port` and says whether the host answered with a SYN-ACK.
    fn syn_is_answered(&mut self, from: &str, to: &str, port: u16, sport: u16) -> bool {
        self.syn_answer(from, to, port, sport) == Some(SYN | ACK)
    }

    /// Sends a SYN to `port` and returns the TCP flags of the host's answer, if any comes.
    fn syn_answer(&mut self, from: &str, to: &str, port: u16, sport: u16) -> Option<u8> {
        let craft = Craft::new(
            ip(from),
            ip(to),
            Transport::Tcp {
                sport,
                dport: port,
                flags: SYN,
            },
        );
        self.send(&craft.build_ip());
        let deadline = Instant::now() + SILENCE;
        let mut buffer = [0u8; 2048];
        while Instant::now() < deadline {
            match self.file.read(&mut buffer) {
                Ok(n) => {
                    if let Some(flags) = answer(&buffer[..n], ip(to), ip(from), port, sport) {
                        return Some(flags);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("reading the tun device: {e}"),
            }
        }
        None
    }

    fn knock(&mut self, from: &str, to: &str) {
        for (i, port) in [4438u16, 1813, 8235].into_iter().enumerate() {
            let craft = Craft::new(
                ip(from),
                ip(to),
                Transport::Tcp {
                    sport: 41000 + i as u16,
                    dport: port,
                    flags: SYN,
                },
            );
            self.send(&craft.build_ip());
        }
    }

    fn spa(&mut self, from: &str, to: &str, nonce: u8) {
        let key = knock_user::config::keys::parse(Path::new("k"), KEY)
            .expect("a key")
            .remove(0);
        let request = Request {
            key_id: key.id,
            door_tag: door_tag("openSSH"),
            timestamp: knock_user::system::clock::unix_s(),
            nonce: [nonce; 16],
        };
        let payload = spa::seal(&request, &key.key, &Addr::from(ip(from)));
        let mut craft = Craft::udp(ip(from), ip(to), spa::DEFAULT_PORT);
        craft.transport = Transport::Udp {
            sport: 40001,
            dport: spa::DEFAULT_PORT,
            payload: payload.to_vec(),
        };
        self.send(&craft.build_ip());
    }
}

/// Opens /dev/net/tun and makes an IFF_TUN device without packet information, non-blocking.
fn open_tun(name: &str) -> std::io::Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    let mut request = [0u8; 40];
    request[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as u16;
    request[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which the 40-byte buffer holds.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, request.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// The TCP flags of `packet` if it comes from `host`:`port` to `client`:`sport`.
fn answer(packet: &[u8], host: IpAddr, client: IpAddr, port: u16, sport: u16) -> Option<u8> {
    let (src, dst, proto, l4) = match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            let header = usize::from(packet[0] & 0x0f) * 4;
            let src: [u8; 4] = packet[12..16].try_into().expect("four bytes");
            let dst: [u8; 4] = packet[16..20].try_into().expect("four bytes");
            (IpAddr::from(src), IpAddr::from(dst), packet[9], header)
        }
        Some(6) if packet.len() >= 40 => {
            let src: [u8; 16] = packet[8..24].try_into().expect("sixteen bytes");
            let dst: [u8; 16] = packet[24..40].try_into().expect("sixteen bytes");
            (IpAddr::from(src), IpAddr::from(dst), packet[6], 40)
        }
        _ => return None,
    };
    let tcp = packet.get(l4..l4 + 14)?;
    (src == host
        && dst == client
        && proto == 6
        && u16::from_be_bytes([tcp[0], tcp[1]]) == port
        && u16::from_be_bytes([tcp[2], tcp[3]]) == sport)
        .then_some(tcp[13] & (SYN | ACK | RST))
}

fn start_daemon(tun: &Tun, config: &Path, pins: &BpfMount) -> Daemon {
    let state = pins.path().to_string_lossy().into_owned();
    let args = [
        "--config",
        config.to_str().expect("a UTF-8 path"),
        "--interface",
        &tun.name,
        "--xdp-mode",
        "skb",
        "-v",
        "--state-dir",
        &state,
    ];
    Daemon::start(&tun.ns, Path::new(BINARY), &args).expect("the daemon starts")
}

fn expect_line(daemon: &Daemon, needle: &str) {
    assert!(
        daemon.wait_for(needle, WAIT).is_some(),
        "no line with `{needle}` in:\n{}",
        daemon.log().join("\n")
    );
}

#[test]
fn the_gate_knocks_and_spa_work_on_a_tun_device_over_ipv4_and_ipv6() {
    let mut tun = Tun::new();
    let _listener = Listener::start(&tun.ns, 22).expect("a listener on port 22");
    let pins = BpfMount::new(&tun.name).expect("a bpffs for the test");
    let dir = TempDir::new(&format!("l3-{}", tun.name));
    let config = dir.path("knockd.conf");
    std::fs::write(&config, DOOR.replace("$DIR", &dir.0.to_string_lossy())).unwrap();
    std::fs::write(dir.path("spa.keys"), format!("{KEY}\n")).unwrap();

    assert!(
        tun.syn_is_answered(CLIENT4, HOST4, 22, 50000),
        "without knock the host answers over the tun device"
    );
    let daemon = start_daemon(&tun, &config, &pins);
    expect_line(&daemon, "judged from their IP header");

    assert!(
        !tun.syn_is_answered(CLIENT4, HOST4, 22, 50001),
        "an unknocked IPv4 SYN to SSH is dropped"
    );
    assert!(
        !tun.syn_is_answered(CLIENT6, HOST6, 22, 50002),
        "an unknocked IPv6 SYN to SSH is dropped"
    );
    assert_eq!(
        tun.syn_answer(CLIENT4, HOST4, 80, 50003),
        Some(RST | ACK),
        "a closed port nobody protects answers as before"
    );

    tun.knock(CLIENT4, HOST4);
    expect_line(&daemon, &format!("{CLIENT4}: openSSH: OPEN SESAME"));
    assert!(
        tun.syn_is_answered(CLIENT4, HOST4, 22, 50004),
        "the IPv4 client gets in after knocking"
    );

    tun.knock(CLIENT6, HOST6);
    expect_line(&daemon, &format!("{CLIENT6}: openSSH: OPEN SESAME"));
    assert!(
        tun.syn_is_answered(CLIENT6, HOST6, 22, 50005),
        "the IPv6 client gets in after knocking"
    );

    assert!(!tun.syn_is_answered(SPA_CLIENT4, HOST4, 22, 50006));
    tun.spa(SPA_CLIENT4, HOST4, 1);
    expect_line(&daemon, &format!("{SPA_CLIENT4}: openSSH: OPEN SESAME"));
    assert!(
        tun.syn_is_answered(SPA_CLIENT4, HOST4, 22, 50007),
        "an SPA packet over the tun device opens the door"
    );
    assert!(
        !tun.syn_is_answered(STRANGER4, HOST4, 22, 50008),
        "the doors open for their clients alone"
    );

    // A restart takes the pinned link over with the entry point for IP links.
    let (log, clean) = daemon.stop();
    assert!(clean, "the daemon stops cleanly: {log:#?}");
    assert!(
        !tun.syn_is_answered(STRANGER4, HOST4, 22, 50009),
        "the gate stays while no daemon runs"
    );
    tun.spa(LATE_SPA_CLIENT4, HOST4, 2);
    assert!(
        tun.syn_is_answered(LATE_SPA_CLIENT4, HOST4, 22, 50012),
        "SPA opens the door while no daemon runs"
    );
    let daemon = start_daemon(&tun, &config, &pins);
    expect_line(&daemon, "the pinned link now runs this program");
    assert!(
        !tun.syn_is_answered(STRANGER4, HOST4, 22, 50010),
        "the gate holds after the takeover"
    );
    assert!(
        tun.syn_is_answered(CLIENT4, HOST4, 22, 50011),
        "the door opened before the restart is still open"
    );
}

#[test]
fn the_loopback_interface_is_refused_by_name_and_nothing_is_attached() {
    let ns =
        Netns::create(&format!("knock-{}-lo", std::process::id() % 100_000)).expect("a namespace");
    ns.ip(&["link", "set", "lo", "up"]).expect("lo is up");
    let pins = BpfMount::new(&format!("lo{}", std::process::id())).expect("a bpffs");
    let dir = TempDir::new("l3-refusal");
    let config = dir.path("knockd.conf");
    std::fs::write(&config, "[openSSH]\nsequence = 4438,1813,8235\n").unwrap();
    let output = ns
        .command(BINARY)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--interface", "lo", "--xdp-mode", "skb", "--state-dir"])
        .arg(pins.path())
        .output()
        .expect("knock-user runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("knock cannot guard lo: it is the loopback interface (ARPHRD 772)")
            && stderr.contains("attaches nothing"),
        "one clear line naming the interface and its type: {stderr}"
    );
    let link = ns.ip(&["-d", "link", "show", "lo"]).expect("ip link show");
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("xdp"), "nothing attached to lo: {link}");
    // A fresh bpffs holds the kernel's own iterators (maps.debug, progs.debug); nothing else.
    let left: Vec<_> = std::fs::read_dir(pins.path())
        .expect("the bpffs")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".debug"))
        .collect();
    assert!(left.is_empty(), "no state pinned: {left:?}");
}
