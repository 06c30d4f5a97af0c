//! Checks of a cross-compiled knock-user under qemu-user, on the oldest CPU each binary targets.
//! qemu-user does not pass bpf() through, so only what needs no BPF runs here: the command line,
//! the configuration reader, and the clients (knocks, rotating knocks and SPA packets) against
//! listeners on loopback; the kernel's side runs in `cargo xtask matrix`.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::Target;
use super::clients;
use crate::configs::Configs;

/// One knock-user binary and how to run it: under qemu-user on its oldest CPU, or natively.
pub struct Runner {
    pub target: Target,
    binary: PathBuf,
    emulator: Option<(&'static str, &'static str)>,
}

impl Runner {
    pub fn new(target: Target, binary: &Path) -> Self {
        let native = target.is_host();
        Self {
            target,
            binary: binary.to_owned(),
            emulator: if native { None } else { target.emulator() },
        }
    }

    /// "under qemu-arm-static -cpu arm1176", or "natively".
    pub fn shown(&self) -> String {
        self.emulator.map_or_else(
            || "natively".to_owned(),
            |(qemu, cpu)| format!("under {qemu} -cpu {cpu}"),
        )
    }

    pub fn command(&self, args: &[&str]) -> Command {
        // A binary that hangs under emulation must fail the check, not stall it.
        let mut command = Command::new("timeout");
        command.arg("60");
        if let Some((qemu, cpu)) = self.emulator {
            command.args([qemu, "-cpu", cpu]);
        }
        command.arg(&self.binary).args(args);
        command
    }

    /// Runs knock-user with `args`; its stdout, or an error with everything it printed.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .output()
            .with_context(|| format!("cannot run {} {}", self.binary.display(), self.shown()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "knock-user {} failed {} ({}):\n{stdout}{}",
            args.join(" "),
            self.shown(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    }
}

/// Every check of one binary; `host` is the host's own build, the reference the clients must
/// match. Returns the evidence lines of the SPA and rotating checks, for the summary.
pub fn check(binary: &Runner, host: &Runner, configs: &Configs) -> anyhow::Result<Vec<String>> {
    eprintln!("  (runs {})", binary.shown());
    let version = binary.run(&["--version"])?;
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
        let described = binary.run(&["check", "-c", &shown_path])?;
        for door in doors {
            ensure!(
                described.contains(&format!("[{door}]")),
                "check -c {shown_path} does not show door {door}:\n{described}"
            );
        }
        let summary = described.lines().next().unwrap_or_default();
        ok(&format!("check -c {what}: {}", summary.trim()));
    }

    knocks(binary)?;
    let dir = crate::shell::target_dir()
        .join("cross")
        .join("clients")
        .join(binary.target.name());
    std::fs::create_dir_all(&dir)?;
    let mut evidence = vec![clients::spa(binary, host, &dir)?];
    evidence.push(clients::rotating(binary, host, &dir)?);
    Ok(evidence)
}

/// `knock-user knock` against a TCP and a UDP listener on loopback: the TCP knock must reach the
/// listener as a connection attempt, the UDP knock as a one-byte datagram.
fn knocks(binary: &Runner) -> anyhow::Result<()> {
    let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    tcp.set_nonblocking(true)?;
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    udp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let tcp_port = tcp.local_addr()?.port().to_string();
    let udp_port = format!("{}:udp", udp.local_addr()?.port());
    let printed = binary.run(&["knock", "-v", "127.0.0.1", &tcp_port, &udp_port])?;

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

pub fn accept_within(listener: &TcpListener, timeout: Duration) -> anyhow::Result<SocketAddr> {
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

pub fn ok(what: &str) {
    eprintln!("  ok   {what}");
}
