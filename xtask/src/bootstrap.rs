//! Installs what a fresh machine lacks, and nothing else: a second run only checks.
//!
//! - Debian packages: LLVM 22 (for bpf-linker), iproute2, iptables and nftables (the firewall
//!   mirror's tests), and knockd for the real `knock` client.
//! - The nightly toolchain's rust-src, which the BPF target's `-Z build-std=core` needs.
//! - bpf-linker 0.13, built against LLVM 22.
//! - cargo-deb, for `cargo xtask package`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::shell::{self, output, run as sh};

const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "iptables",
    "nftables",
    "knockd",
    // knock-user/tests/service.rs: the unit's system call filter against what the daemon calls.
    "strace",
    // knock-user/tests/service.rs and the package check: systemd-analyze verify, security and
    // syscall-filter judge the unit.
    "systemd",
    // knock-user/tests/host/manuals.rs and the package check read the man pages.
    "man-db",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut installed = Vec::new();
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !has_package(p))
        .collect();
    if !missing.is_empty() {
        if !shell::is_root() {
            bail!(
                "missing Debian packages {}; run `cargo xtask bootstrap` as root",
                missing.join(" ")
            );
        }
        eprintln!("bootstrap: installing {}", missing.join(" "));
        sh(Command::new("apt-get").args(["update", "-q"]))?;
        sh(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        installed.extend(missing.iter().map(|p| p.to_string()));
    }
    if !has_rust_src() {
        eprintln!("bootstrap: adding rust-src to the nightly toolchain");
        sh(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
            .context("the eBPF program builds with nightly and rust-src")?;
        installed.push("rust-src".into());
    }
    if !has_bpf_linker() {
        eprintln!(
            "bootstrap: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)"
        );
        sh(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"))?;
        installed.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    }
    crate::fuzz::bootstrap()?;
    installed.extend(crate::package::bootstrap()?);
    if installed.is_empty() {
        eprintln!(
            "bootstrap: everything present ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "bootstrap: installed {} ({:.0} s)",
            installed.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn has_package(name: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .is_some_and(|status| status.contains("install ok installed"))
}

fn has_rust_src() -> bool {
    output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .is_some_and(|list| list.lines().any(|l| l.starts_with("rust-src")))
}

fn has_bpf_linker() -> bool {
    output(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|version| version.contains(BPF_LINKER_VERSION))
}
