//! `cargo xtask cross`: static knock-user binaries for Raspberry Pis (and x86_64), built with
//! cargo-zigbuild and checked under qemu-user.
//!
//! Only the loader is cross compiled: the XDP object is bpfel for every CPU, and knock-user's
//! build.rs builds it for each target (aya-build picks bpfel from the target's endianness).
//! Types shared through maps are checked too: knock-common is compiled for each target and
//! asserts every map type's size and alignment at compile time.

mod clients;
mod elf;
mod emulate;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, ensure};

use crate::configs::Configs;
use crate::shell::{self, output, run as sh};

const ZIGBUILD_VERSION: &str = "0.24.1";
/// Zig from PyPI's ziglang wheel: the only way to get it from the registries this project uses.
const ZIG_VERSION: &str = "0.15.2";

#[derive(clap::Args)]
pub struct Args {
    /// Which binary to build; `all` is the three Raspberry Pi targets.
    #[arg(long, value_enum, default_value_t = Choice::All)]
    target: Choice,
    /// Build only, without the checks under emulation.
    #[arg(long)]
    no_check: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Choice {
    Aarch64,
    Armv7,
    Armv6,
    #[value(name = "x86_64")]
    X86_64,
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// Pi 3, 4, 5 and Zero 2 with a 64-bit OS.
    Aarch64,
    /// Pi 2, 3, 4 with a 32-bit OS.
    Armv7,
    /// Pi 1 and Zero with Raspberry Pi OS (32-bit, hard float); runs on every Pi.
    Armv6,
    /// Not a Pi: the kernel matrix boots it in x86_64 VMs.
    X86_64,
}

pub const PI_TARGETS: [Target; 3] = [Target::Aarch64, Target::Armv7, Target::Armv6];

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Aarch64 => "aarch64",
            Self::Armv7 => "armv7",
            Self::Armv6 => "armv6",
            Self::X86_64 => "x86_64",
        }
    }

    pub fn triple(self) -> &'static str {
        match self {
            Self::Aarch64 => "aarch64-unknown-linux-musl",
            Self::Armv7 => "armv7-unknown-linux-musleabihf",
            Self::Armv6 => "arm-unknown-linux-musleabihf",
            Self::X86_64 => "x86_64-unknown-linux-musl",
        }
    }

    /// rustup cannot download std for these: nightly builds it from rust-src.
    fn builds_std(self) -> bool {
        matches!(self, Self::Armv7 | Self::Armv6)
    }

    /// qemu-user and the CPU it emulates: the oldest core each binary must run on.
    pub(crate) fn emulator(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Aarch64 => Some(("qemu-aarch64-static", "cortex-a53")),
            Self::Armv7 => Some(("qemu-arm-static", "cortex-a7")),
            Self::Armv6 => Some(("qemu-arm-static", "arm1176")),
            Self::X86_64 => None,
        }
    }

    /// The build for the machine running xtask: the reference the Pi clients must match.
    pub fn host() -> anyhow::Result<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Self::X86_64),
            "aarch64" => Ok(Self::Aarch64),
            other => anyhow::bail!(
                "no static build of knock-user for this machine's CPU ({other}) to compare the \
                 Pi clients with"
            ),
        }
    }

    /// Whether this machine runs the binary natively.
    pub fn is_host(self) -> bool {
        Self::host().is_ok_and(|host| host == self)
    }

    /// Where `cargo xtask cross` leaves the binary.
    pub fn binary(self) -> PathBuf {
        shell::target_dir()
            .join("cross")
            .join(self.name())
            .join("knock-user")
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let targets: Vec<Target> = match args.target {
        Choice::Aarch64 => vec![Target::Aarch64],
        Choice::Armv7 => vec![Target::Armv7],
        Choice::Armv6 => vec![Target::Armv6],
        Choice::X86_64 => vec![Target::X86_64],
        Choice::All => PI_TARGETS.to_vec(),
    };
    ensure_tools(&targets, !args.no_check)?;
    let mut built = Vec::new();
    for &target in &targets {
        built.push((target, build(target)?));
    }
    let mut evidence = Vec::new();
    if !args.no_check {
        let configs = Configs::prepare()?;
        // The host's own build: the bytes every Pi client must send.
        let host = Target::host()?;
        let reference = match built.iter().find(|(target, _)| *target == host) {
            Some((_, binary)) => binary.clone(),
            None => build(host)?,
        };
        let host = emulate::Runner::new(host, &reference);
        for (target, binary) in &built {
            eprintln!("\n== checks of the {} binary", target.name());
            elf::header(*target, binary)?;
            evidence.extend(emulate::check(
                &emulate::Runner::new(*target, binary),
                &host,
                &configs,
            )?);
        }
    }
    eprintln!("\ncross: binaries");
    for (target, binary) in &built {
        let size = std::fs::metadata(binary)?.len();
        eprintln!(
            "  {:<8} {:<32} {:>5.2} MiB  {}",
            target.name(),
            target.triple(),
            size as f64 / 1024.0 / 1024.0,
            binary.display()
        );
        if *target == Target::Armv6 {
            ensure!(
                size < 8 << 20,
                "the ARMv6 binary is {size} bytes, over 8 MiB"
            );
        }
    }
    if !evidence.is_empty() {
        eprintln!("\ncross: the clients against the host's build");
        for line in &evidence {
            eprintln!("  {line}");
        }
    }
    eprintln!("cross: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds knock-user for `target` (installing what is missing) and copies it to
/// `target.binary()`.
pub fn build(target: Target) -> anyhow::Result<PathBuf> {
    ensure_tools(&[target], false)?;
    eprintln!(
        "\n== knock-user for {} ({})",
        target.name(),
        target.triple()
    );
    let mut command = if target.builds_std() {
        let mut command = shell::nightly_cargo();
        command
            .args(["zigbuild", "-Zbuild-std=std,panic_abort"])
            // zig brings musl's start files and libc; rustc's own copies would clash with them.
            // The lint hides zig's note that rustc's (absent) self-contained directory is missing.
            .env("RUSTFLAGS", "-C link-self-contained=no -A linker_messages");
        command
    } else {
        let mut command = shell::cargo();
        command.arg("zigbuild");
        command
    };
    command
        .args(["--release", "-p", "knock-user", "--target", target.triple()])
        .env("CARGO_ZIGBUILD_ZIG_COMMAND", zig())
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    sh(&mut command)?;
    let built = shell::target_dir()
        .join(target.triple())
        .join("release")
        .join("knock-user");
    let binary = target.binary();
    if let Some(dir) = binary.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Through a new file and a rename: the old binary may be running (a test, a VM's daemon).
    let fresh = binary.with_extension("new");
    std::fs::copy(&built, &fresh)
        .with_context(|| format!("cannot copy {} to {}", built.display(), fresh.display()))?;
    std::fs::rename(&fresh, &binary)?;
    elf::bpf_object(&binary)?;
    Ok(binary)
}

/// Installs what cross builds (and with `emulation`, their checks) need, and nothing present.
fn ensure_tools(targets: &[Target], emulation: bool) -> anyhow::Result<()> {
    let mut packages = vec!["binutils"];
    if emulation {
        packages.push("qemu-user-static");
    }
    if output(Command::new("python3").args(["-m", "pip", "--version"])).is_none() {
        packages.push("python3-pip");
    }
    install_packages(&packages)?;
    let zigbuild = output(Command::new("cargo-zigbuild").arg("--version"));
    if zigbuild.is_none_or(|v| v.trim() != format!("cargo-zigbuild {ZIGBUILD_VERSION}")) {
        eprintln!("cross: installing cargo-zigbuild {ZIGBUILD_VERSION}");
        sh(Command::new("cargo").args([
            "install",
            "cargo-zigbuild",
            "--locked",
            "--version",
            ZIGBUILD_VERSION,
        ]))?;
    }
    let zig = zig();
    if output(Command::new(&zig).arg("version")).is_none_or(|v| v.trim() != ZIG_VERSION) {
        eprintln!("cross: installing zig {ZIG_VERSION} (PyPI's ziglang) for the cross linker");
        let dir = zig_dir();
        let _ = std::fs::remove_dir_all(&dir);
        // --target keeps it out of every Python environment: a PEP 668 system Python allows it.
        sh(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dir)
            .arg(format!("ziglang=={ZIG_VERSION}")))?;
    }
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup target list")?;
    for target in targets.iter().filter(|t| !t.builds_std()) {
        if !installed.lines().any(|l| l.trim() == target.triple()) {
            sh(Command::new("rustup").args(["target", "add", target.triple()]))?;
        }
    }
    Ok(())
}

pub fn install_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    ensure!(
        shell::is_root(),
        "missing Debian packages {}: run as root",
        missing.join(" ")
    );
    eprintln!("installing {}", missing.join(" "));
    let install = |apt: &mut Command| {
        sh(apt
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    install(&mut Command::new("apt-get")).or_else(|_| {
        sh(Command::new("apt-get").args(["update", "-q"]))?;
        install(&mut Command::new("apt-get"))
    })
}

fn zig_dir() -> PathBuf {
    shell::target_dir()
        .join("cross")
        .join("tools")
        .join(format!("ziglang-{ZIG_VERSION}"))
}

fn zig() -> PathBuf {
    zig_dir().join("ziglang").join("zig")
}
