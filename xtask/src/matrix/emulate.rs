//! Checks of a cross-compiled knock-user under qemu-user, on the oldest CPU each binary targets.
//! qemu-user does not pass bpf() through, so only what needs no BPF runs here: the command line,
//! the configuration reader, and the client's knocks to listeners on loopback.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::cross::{self, Target};
use crate::shell;

/// The Raspberry Pi guide's knockd.conf, verbatim.
pub const GUIDE: &str = include_str!("../../assets/guide-knockd.conf");

/// The configurations every binary must read as the host's does.
pub struct Configs {
    guide: PathBuf,
    debian: PathBuf,
}

impl Configs {
    pub fn prepare() -> anyhow::Result<Self> {
        let dir = shell::target_dir().join("cross").join("configs");
        std::fs::create_dir_all(&dir)?;
        let guide = dir.join("guide-knockd.conf");
        std::fs::write(&guide, GUIDE)?;
        let debian = cross::debian_knockd_conf(&dir)?;
        Ok(Self { guide, debian })
    }
}

pub fn check(target: Target, binary: &Path, configs: &Configs) -> anyhow::Result<()> {
    let emulator = target.emulator();
    let shown = emulator.map_or_else(
        || "natively".to_owned(),
        |(qemu, cpu)| format!("under {qemu} -cpu {cpu}"),
    );
    eprintln!("  (runs {shown})");
    let command = |args: &[&str]| {
        // A binary that hangs under emulation must fail the check, not stall it.
        let mut command = Command::new("timeout");
        command.arg("60");
        if let Some((qemu, cpu)) = emulator {
            command.args([qemu, "-cpu", cpu]);
        }
        command.arg(binary).args(args);
        command
    };
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = command(args)
            .output()
            .with_context(|| format!("cannot run {shown}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            out.status.success(),
            "knock-user {} failed {shown} ({}):\n{text}",
            args.join(" "),
            out.status
        );
        Ok(text)
    };

    let version = run(&["--version"])?;
    let expected = format!("knock-user {}", env!("CARGO_PKG_VERSION"));
    ensure!(
        version.trim() == expected,
        "--version printed {version:?}, not {expected:?}"
    );
    ok(&format!("--version: {expected}"));

    for (what, path, doors) in [
        ("the guide's knockd.conf", &configs.guide, &["openSSH"][..]),
        (
            "Debian's default knockd.conf",
            &configs.debian,
            &["openSSH", "closeSSH", "openHTTPS"][..],
        ),
    ] {
        let shown_path = path.to_string_lossy();
        let described = run(&["check", "-c", &shown_path])?;
        for door in doors {
            ensure!(
                described.contains(&format!("[{door}]")),
                "check -c {shown_path} does not show door {door}:\n{described}"
            );
        }
        let summary = described.lines().next().unwrap_or_default();
        ok(&format!("check -c {what}: {}", summary.trim()));
    }

    knocks(&command)?;
    spa_client(&command)
}

/// `knock-user knock` against a TCP and a UDP listener on loopback: the TCP knock must reach the
/// listener as a connection attempt, the UDP knock as a one-byte datagram.
fn knocks(command: &dyn Fn(&[&str]) -> Command) -> anyhow::Result<()> {
    let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    tcp.set_nonblocking(true)?;
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    udp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let tcp_port = tcp.local_addr()?.port().to_string();
    let udp_port = format!("{}:udp", udp.local_addr()?.port());
    let args = ["knock", "-v", "127.0.0.1", &tcp_port, &udp_port];
    let out = command(&args).output().context("cannot run the client")?;
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "knock-user {} failed ({}):\n{printed}",
        args.join(" "),
        out.status
    );

    let mut datagram = [0u8; 64];
    let (length, from) = udp
        .recv_from(&mut datagram)
        .context("the UDP listener got no datagram")?;
    ensure!(
        length == 1 && from.ip().is_loopback(),
        "the UDP listener got {length} bytes from {from}, not one byte from loopback"
    );
    let from = accept_within(&tcp, Duration::from_secs(5))?;
    ok(&format!(
        "knock -v 127.0.0.1 {tcp_port} {udp_port}: TCP listener saw a connection from {from}, \
         UDP listener a 1-byte datagram; the client printed {:?}",
        printed.lines().collect::<Vec<_>>()
    ));
    Ok(())
}

fn accept_within(listener: &TcpListener, timeout: Duration) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((_, from)) => return Ok(from),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                bail!("the TCP listener saw no connection attempt within {timeout:?}")
            }
            Err(e) => return Err(e).context("accept on the TCP listener"),
        }
    }
}

/// HOOK for the SPA client, which does not exist yet. When knock-user can send an SPA packet,
/// send one here under emulation to a UDP listener on loopback and compare it with what the
/// host's binary sends for the same key and clock: a 32-bit ARM client must compute the same
/// bytes as x86_64 (endianness, struct layout, 64-bit time on 32-bit musl).
fn spa_client(_command: &dyn Fn(&[&str]) -> Command) -> anyhow::Result<()> {
    eprintln!(
        "  skip SPA client: knock-user has no SPA client yet (hook: spa_client in {})",
        file!()
    );
    Ok(())
}

fn ok(what: &str) {
    eprintln!("  ok   {what}");
}
