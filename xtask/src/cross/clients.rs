//! The clients a Pi runs, compared with the host's own build: a 32-bit ARM client must send the
//! bytes x86_64 sends (64-bit arithmetic in SipHash and in the rotating sequence's HMAC, 64-bit
//! time on 32-bit musl, byte order, struct layout). Keys and secrets come from the Pi binary's
//! own `keygen`, so the file formats cross CPUs too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use knock_common::Addr;
use knock_common::spa::{self, PACKET_LEN};

use super::emulate::{Runner, accept_within, ok};

/// 2100-01-01: past 2038, so a 32-bit client must carry the time in 64 bits.
const AT: u64 = 4_102_444_800;
const NONCE: [u8; 16] = *b"knock-pi-check!!";
const DOOR: &str = "openSSH";
const KEY_ID: u32 = 7;
/// Rotating knocks land below Linux's ephemeral ports, where listeners rarely collide.
const ROTATING_PORTS: &str = "20000-29999";

/// `keygen` makes a key; `spa` with a fixed time and nonce sends, over IPv4 and IPv6 loopback,
/// the very packet the host's build sends, and its MAC verifies for the loopback source; a
/// fresh packet (the clock, random bytes) verifies too.
pub fn spa(binary: &Runner, host: &Runner, dir: &Path) -> anyhow::Result<String> {
    let line = binary.run(&["keygen", "--id", &KEY_ID.to_string(), "--comment", "pi"])?;
    let key = key_of(line.trim())?;
    let key_file = dir.join("spa.key");
    std::fs::write(&key_file, &line)?;
    let key_file = key_file.to_string_lossy().into_owned();

    let mut macs = Vec::new();
    for loopback in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let sent = caught(binary, &key_file, loopback, true)?;
        let reference = caught(host, &key_file, loopback, true)?;
        ensure!(
            sent == reference,
            "the {} client's SPA packet to {loopback} differs from the {} build's:\n  {}\n  {}",
            binary.target.name(),
            host.target.name(),
            hex(&sent),
            hex(&reference)
        );
        let request = spa::parse(&sent).context("the packet does not parse as SPA")?;
        ensure!(
            (request.key_id, request.timestamp, request.nonce) == (KEY_ID, AT, NONCE),
            "the packet carries key {}, time {}, nonce {}, not {KEY_ID}, {AT}, {}",
            request.key_id,
            request.timestamp,
            hex(&request.nonce),
            hex(&NONCE)
        );
        ensure!(
            spa::authentic(&key, &sent, &Addr::from(loopback)),
            "the packet's MAC does not verify for source {loopback}"
        );
        macs.push(format!("{loopback} MAC {}", hex(&sent[spa::SIGNED_LEN..])));
    }

    let now = unix_s();
    let first = caught(binary, &key_file, Ipv4Addr::LOCALHOST.into(), false)?;
    let second = caught(binary, &key_file, Ipv4Addr::LOCALHOST.into(), false)?;
    let mut skew = 0;
    for packet in [&first, &second] {
        let request = spa::parse(packet).context("a fresh packet does not parse as SPA")?;
        ensure!(
            spa::authentic(&key, packet, &Addr::from(Ipv4Addr::LOCALHOST)),
            "a fresh packet's MAC does not verify"
        );
        skew = skew.max(request.timestamp.abs_diff(now));
        ensure!(
            skew <= 120,
            "a fresh packet says {} where the clock says {now}",
            request.timestamp
        );
    }
    ensure!(
        first[24..40] != second[24..40],
        "two fresh packets carry the same nonce"
    );

    let evidence = format!(
        "SPA {}: keygen made key {KEY_ID}; spa --at {AT} --nonce {} sent, to 127.0.0.1 and ::1, \
         packets byte-identical to the {} build's that verify for their source ({}); fresh \
         packets verify (clock {skew} s off, nonces differ)",
        binary.target.name(),
        hex(&NONCE),
        host.target.name(),
        macs.join(", ")
    );
    ok(&evidence);
    Ok(evidence)
}

/// `keygen --rotating` makes a door's secret; `knock --secret-file` knocks, for a period past
/// 2038 and for the current one, the sequence the host's build knocks, and every knock reaches
/// a listener on loopback.
pub fn rotating(binary: &Runner, host: &Runner, dir: &Path) -> anyhow::Result<String> {
    let secret = binary.run(&["keygen", "--rotating", DOOR, "--ports", ROTATING_PORTS])?;
    let secret_file = dir.join(format!("{DOOR}.secret"));
    std::fs::write(&secret_file, &secret)?;
    let secret_file = secret_file.to_string_lossy().into_owned();
    let mut shown = Vec::new();
    for at in [AT, unix_s()] {
        let knock = |runner: &Runner| {
            let at = at.to_string();
            let args = [
                "knock",
                "-v",
                "--secret-file",
                &secret_file,
                "--at",
                &at,
                "127.0.0.1",
                DOOR,
            ];
            runner.run(&args).map(|printed| hits(&printed))
        };
        let expected = knock(host)?;
        ensure!(
            expected.len() >= 2,
            "the {} build knocked {expected:?}",
            host.target.name()
        );
        let listeners = expected
            .iter()
            .map(|hit| Listener::bind(hit))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let knocked = knock(binary)?;
        ensure!(
            knocked == expected,
            "for time {at} the {} client knocked {knocked:?}, the {} build {expected:?}",
            binary.target.name(),
            host.target.name()
        );
        for listener in &listeners {
            listener.saw_a_knock()?;
        }
        shown.push(format!("--at {at}: {}", expected.join(" ")));
    }
    let evidence = format!(
        "rotating {}: keygen --rotating made {DOOR}'s secret; knock --secret-file knocked the \
         {} build's sequence, each knock caught on 127.0.0.1 ({})",
        binary.target.name(),
        host.target.name(),
        shown.join("; ")
    );
    ok(&evidence);
    Ok(evidence)
}

/// Sends an SPA packet (with the fixed time and nonce, or fresh ones) to a listener on
/// `loopback` and returns the datagram the listener got.
fn caught(
    runner: &Runner,
    key_file: &str,
    loopback: IpAddr,
    fixed: bool,
) -> anyhow::Result<[u8; PACKET_LEN]> {
    let socket = UdpSocket::bind((loopback, 0))
        .with_context(|| format!("cannot listen on {loopback} (no loopback address?)"))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let port = socket.local_addr()?.port().to_string();
    let (at, nonce) = (AT.to_string(), hex(&NONCE));
    let host = loopback.to_string();
    let mut args = vec!["spa", "--key-file", key_file, "--port", &port];
    if fixed {
        args.extend(["--at", &at, "--nonce", &nonce]);
    }
    args.extend([host.as_str(), DOOR]);
    runner.run(&args)?;
    let mut buf = [0u8; 128];
    let (length, from) = socket.recv_from(&mut buf).with_context(|| {
        format!(
            "no SPA datagram reached {loopback} from the {} client",
            runner.target.name()
        )
    })?;
    ensure!(
        from.ip() == loopback,
        "the datagram came from {from}, not {loopback}"
    );
    buf.get(..length)
        .and_then(|b| <[u8; PACKET_LEN]>::try_from(b).ok())
        .with_context(|| format!("the listener got {length} bytes, not {PACKET_LEN}"))
}

/// The key of a key file line `id hex comment`, checking the id.
fn key_of(line: &str) -> anyhow::Result<[u8; 16]> {
    let mut fields = line.split_whitespace();
    let id = fields.next().unwrap_or_default();
    ensure!(
        id == KEY_ID.to_string(),
        "keygen --id {KEY_ID} printed {line:?}"
    );
    let text = fields.next().unwrap_or_default();
    let mut key = [0u8; 16];
    ensure!(
        text.len() == 32 && text.is_ascii(),
        "keygen printed {line:?}: no 32-digit key"
    );
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16)
            .with_context(|| format!("keygen printed {line:?}: not hex"))?;
    }
    Ok(key)
}

/// The knocks `knock -v` printed ("hitting tcp 127.0.0.1:20001"), as `20001:tcp`.
fn hits(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter_map(|l| l.strip_prefix("hitting "))
        .filter_map(|rest| {
            let (proto, address) = rest.split_once(' ')?;
            let port = address.rsplit_once(':')?.1;
            Some(format!("{port}:{proto}"))
        })
        .collect()
}

/// A listener on 127.0.0.1 for one knock (`PORT:tcp` or `PORT:udp`).
enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    fn bind(hit: &str) -> anyhow::Result<Self> {
        let (port, proto) = hit.split_once(':').context("a knock without protocol")?;
        let port: u16 = port.parse().with_context(|| format!("knock {hit}"))?;
        let address = (Ipv4Addr::LOCALHOST, port);
        let listener = match proto {
            "tcp" => TcpListener::bind(address).map(|l| {
                let _ = l.set_nonblocking(true);
                Self::Tcp(l)
            }),
            "udp" => UdpSocket::bind(address).map(|s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                Self::Udp(s)
            }),
            other => bail!("knock {hit}: protocol {other}"),
        };
        listener.with_context(|| {
            format!("cannot listen on 127.0.0.1:{port}/{proto} to catch the knock (in use?)")
        })
    }

    fn saw_a_knock(&self) -> anyhow::Result<()> {
        match self {
            Self::Tcp(listener) => accept_within(listener, Duration::from_secs(5)).map(|_| ()),
            Self::Udp(socket) => {
                let mut byte = [0u8; 8];
                let length = socket.recv(&mut byte).context("no UDP knock arrived")?;
                ensure!(length == 1, "a UDP knock of {length} bytes");
                Ok(())
            }
        }
    }
}

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_knocks_read_as_port_and_protocol() {
        let printed = "hitting tcp 127.0.0.1:20001\nhitting udp [::1]:29999\nother\n";
        assert_eq!(hits(printed), ["20001:tcp", "29999:udp"]);
    }

    #[test]
    fn a_key_line_gives_its_key_and_must_carry_the_id() {
        let key = key_of("7 000102030405060708090a0b0c0d0e0f pi").unwrap();
        assert_eq!(key[15], 0x0f);
        assert!(key_of("8 000102030405060708090a0b0c0d0e0f").is_err());
        assert!(key_of("7 0001").is_err());
    }
}
