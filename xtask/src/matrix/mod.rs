//! `cargo xtask matrix`: the XDP programs on Debian's own kernels. Each row boots one kernel
//! under qemu-system with a small initramfs: busybox, a static knock-user, the kernel's veth
//! module and a test driver (assets/matrix-init.sh). The driver builds two network namespaces
//! joined by a veth pair, runs `knock-user run` on the server side with the guide's knockd.conf
//! followed by an SPA door and a rotating door (assets/matrix-doors.conf), and checks over IPv4
//! and IPv6: port 22 connects without knock-user, is dropped with it until the client knocks
//! with `knock-user knock`, and connects after; SPA packets from the guest's client open their
//! door, and a replay and a forged MAC are refused with the counters saying why; a rotating
//! door opens with its current sequence and not with the same one again. The host then checks
//! that the JIT compiled both programs and that the verifier's walk stays under a ceiling.
//!
//! Kernel packages are downloaded with apt and unpacked by hand, never installed; foreign
//! architectures and other releases use a private apt state under target/matrix, leaving dpkg's
//! configuration alone.

mod initramfs;
mod kernel;
mod rows;
mod verdict;
mod vm;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cross;
use crate::debian::{self, Apt};
use crate::{configs, shell};
use initramfs::Cpio;
use rows::{Name, ROWS, Row};
use verdict::Verdict;
use vm::{Accel, Boot, Outcome};

const INIT: &str = include_str!("../../assets/matrix-init.sh");
/// The doors the driver checks beyond the guide's: SPA and rotating.
const DOORS: &str = include_str!("../../assets/matrix-doors.conf");
/// Stands in for iptables: the guide's start command appends to a log the driver reads back.
const IPTABLES_STUB: &str = "#!/bin/sh\necho \"$@\" >> /tmp/iptables.log\n";

#[derive(clap::Args)]
pub struct Args {
    /// A kernel to boot (repeatable); default: all of them.
    #[arg(long = "kernel", value_enum)]
    kernels: Vec<Name>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    cross::install_packages(&["qemu-system-x86", "qemu-system-arm", "xz-utils"])?;
    let rows: Vec<&Row> = ROWS
        .iter()
        .filter(|r| args.kernels.is_empty() || args.kernels.contains(&r.id))
        .collect();
    let mut kvm = KvmState::new();
    let mut verdicts = Vec::new();
    for row in rows {
        let verdict = run_row(row, &mut kvm).with_context(|| format!("kernel {}", row.name))?;
        verdict::show(&verdict);
        verdicts.push(verdict);
    }
    eprintln!("\nmatrix: SPA and rotating doors");
    for verdict in &verdicts {
        for line in verdict::evidence(verdict) {
            eprintln!("  {}: {line}", verdict.row);
        }
    }
    println!("\n{}", verdict::table(&verdicts));
    eprintln!("matrix: done in {:.0} s", started.elapsed().as_secs_f64());
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.failed.is_empty())
        .map(|v| v.row)
        .collect();
    if !failed.is_empty() {
        bail!("failed on {}", failed.join(", "));
    }
    Ok(())
}

fn run_row(row: &Row, kvm: &mut KvmState) -> anyhow::Result<Verdict> {
    eprintln!(
        "\n== kernel {}: {} on {}",
        row.name, row.meta, row.board.qemu
    );
    let started = Instant::now();
    let base = shell::target_dir().join("matrix");
    // busybox comes from the host's release whatever the kernel's, so that every row runs the
    // driver with the same tools.
    let host_apt = Apt::foreign(row.arch, &base.join(format!("apt-{}", row.arch)))?;
    let apt = match row.release.sources() {
        None => Apt::foreign(row.arch, &base.join(format!("apt-{}", row.arch)))?,
        Some(sources) => Apt::private(
            row.arch,
            &base.join(format!("apt-{}-{}", row.arch, row.release.name())),
            &sources,
        )?,
    };
    let debs = base.join("debs");
    let (package, deb, fallback) = kernel_package(&apt, row.meta, &debs)?;
    let kernel = kernel::unpack(&deb, &base.join(&package), &["veth"])?;
    if !kernel.release.starts_with(row.series) {
        bail!(
            "{} now names kernel {}, not a {}x kernel",
            row.meta,
            kernel.release,
            row.series
        );
    }
    let busybox = busybox(
        &host_apt,
        &debs,
        &base.join(format!("busybox-{}", row.arch)),
    )?;
    let binary = cross::build(row.binary)?;

    let dir = base.join(row.name);
    std::fs::create_dir_all(&dir)?;
    let initramfs = dir.join("initramfs.cpio");
    std::fs::write(&initramfs, pack(&busybox, &binary, &kernel)?)?;
    let console_log = dir.join("console.log");

    let native = row.arch == "amd64" && cfg!(target_arch = "x86_64");
    let mut accel = if native && kvm.usable() {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    loop {
        let boot = Boot {
            board: row.board,
            accel,
            kernel: &kernel.image,
            initramfs: &initramfs,
            console_log: &console_log,
            first_line_within: Duration::from_secs(if accel == Accel::Kvm { 20 } else { 180 }),
            finish_within: Duration::from_secs(600),
        };
        eprintln!(
            "booting {} ({}) under {}",
            kernel.release,
            row.board.qemu,
            accel.name()
        );
        match vm::boot(&boot)? {
            Outcome::Finished(lines) => {
                let mut verdict = verdict::parse(row.name, accel, &lines);
                verdict.notes.extend(fallback);
                verdict.seconds = started.elapsed().as_secs_f64();
                return Ok(verdict);
            }
            Outcome::NoBoot(why) if accel == Accel::Kvm => {
                eprintln!(
                    "KVM cannot boot Debian's kernel on this host ({why}); using TCG from here on"
                );
                kvm.broken();
                accel = Accel::Tcg;
            }
            Outcome::NoBoot(why) => bail!(
                "the guest printed nothing (console in {}): {why}",
                console_log.display()
            ),
        }
    }
}

/// The newest kernel package of `meta` that can be downloaded here, and a note when a newer one
/// could not be (a mirror without the latest security update).
fn kernel_package(
    apt: &Apt,
    meta: &str,
    debs: &Path,
) -> anyhow::Result<(String, PathBuf, Option<String>)> {
    apt.with_lists(|apt| {
        let mut refused = Vec::new();
        for package in apt.images(meta)? {
            match apt.download(&package, debs) {
                Ok(deb) => {
                    let note = (!refused.is_empty()).then(|| {
                        format!(
                            "took {package}: the newer {} cannot be downloaded here",
                            refused.join(", ")
                        )
                    });
                    if let Some(note) = &note {
                        eprintln!("{note}");
                    }
                    return Ok((package, deb, note));
                }
                Err(_) => refused.push(package),
            }
        }
        bail!(
            "no version of {meta} can be downloaded: {}",
            refused.join(", ")
        )
    })
}

/// KVM is tried once; on hosts whose KVM cannot run an unmodified kernel (nested setups that
/// offer /dev/kvm without hardware virtualization) the first row falls back to TCG and the rest
/// start there.
struct KvmState(Option<bool>);

impl KvmState {
    fn new() -> Self {
        Self(None)
    }
    fn usable(&self) -> bool {
        self.0.unwrap_or_else(vm::kvm_available)
    }
    fn broken(&mut self) {
        self.0 = Some(false);
    }
}

/// busybox-static for the row's architecture: a shell and the tools the driver uses.
fn busybox(apt: &Apt, debs: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let busybox = dir.join("bin").join("busybox");
    if !busybox.exists() {
        let deb = apt.with_lists(|apt| apt.download("busybox-static", debs))?;
        debian::extract(&deb, dir, &["./bin/busybox".to_owned()])?;
    }
    Ok(busybox)
}

fn pack(busybox: &Path, binary: &Path, kernel: &kernel::Kernel) -> anyhow::Result<Vec<u8>> {
    let mut cpio = Cpio::default();
    for dir in [
        "/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/run", "/modules",
    ] {
        cpio.dir(dir);
    }
    // The kernel opens it for init's output before anything mounts devtmpfs.
    cpio.char_device("/dev/console", 5, 1);
    cpio.file("/init", 0o755, INIT.as_bytes());
    cpio.file("/bin/busybox", 0o755, &std::fs::read(busybox)?);
    cpio.symlink("/bin/sh", "busybox");
    cpio.file("/sbin/iptables", 0o755, IPTABLES_STUB.as_bytes());
    cpio.file("/knock-user", 0o755, &std::fs::read(binary)?);
    let config = format!("{}{DOORS}", configs::GUIDE);
    cpio.file("/knockd.conf", 0o644, config.as_bytes());
    for (index, (name, path)) in kernel.modules.iter().enumerate() {
        // The driver loads them in name order: dependencies first.
        let module = std::fs::read(path)?;
        cpio.file(&format!("/modules/{index:02}-{name}.ko"), 0o644, &module);
    }
    Ok(cpio.finish())
}
