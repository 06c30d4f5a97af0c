//! `cargo xtask matrix`: the XDP program on Debian's own kernels. Each row boots one kernel
//! under qemu-system with a small initramfs: busybox, a static knock-user, the kernel's veth
//! module and a test driver (assets/matrix-init.sh). The driver builds two network namespaces
//! joined by a veth pair, runs `knock-user run` with the guide's knockd.conf on the server side,
//! and checks the gate over IPv4 and IPv6: port 22 connects without knock-user, is dropped
//! with it until the client knocks with `knock-user knock`, and connects after.
//!
//! Kernel packages are downloaded with apt and unpacked by hand, never installed; foreign
//! architectures use a private apt state under target/matrix, leaving dpkg's configuration alone.

pub mod debian;
pub mod emulate;
mod initramfs;
mod kernel;
mod vm;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cross::{self, Target};
use crate::shell;
use debian::Apt;
use initramfs::Cpio;
use vm::{Accel, Board, Boot, Outcome};

const INIT: &str = include_str!("../../assets/matrix-init.sh");
/// Stands in for iptables: the guide's start command appends to a log the driver reads back.
const IPTABLES_STUB: &str = "#!/bin/sh\necho \"$@\" >> /tmp/iptables.log\n";

#[derive(clap::Args)]
pub struct Args {
    /// A kernel to boot (repeatable); default: all of them.
    #[arg(long = "kernel", value_enum)]
    kernels: Vec<Name>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Name {
    #[value(name = "6.1-amd64")]
    Amd64V61,
    #[value(name = "6.12-amd64")]
    Amd64V612,
    #[value(name = "6.1-arm64")]
    Arm64V61,
    #[value(name = "6.12-arm64")]
    Arm64V612,
    #[value(name = "6.1-armhf")]
    ArmhfV61,
}

struct Row {
    id: Name,
    name: &'static str,
    /// Debian's architecture name.
    arch: &'static str,
    /// The metapackage that names the current kernel of this series.
    meta: &'static str,
    series: &'static str,
    binary: Target,
    board: &'static Board,
    /// arm32's JIT declines some programs, which then run in the interpreter: reported, not
    /// required. Elsewhere an interpreted program would be a regression.
    jit_required: bool,
}

const PC: Board = Board {
    qemu: "qemu-system-x86_64",
    machine: &[],
    console: "ttyS0",
    cpu: "max",
};
const VIRT64: Board = Board {
    qemu: "qemu-system-aarch64",
    machine: &["-machine", "virt"],
    console: "ttyAMA0",
    // A Pi 3's core.
    cpu: "cortex-a53",
};
const VIRT32: Board = Board {
    qemu: "qemu-system-arm",
    machine: &["-machine", "virt"],
    console: "ttyAMA0",
    // A Pi 2's core; Debian's armmp-lpae kernel needs LPAE, which it has.
    cpu: "cortex-a7",
};

const ROWS: [Row; 5] = [
    Row {
        id: Name::Amd64V61,
        name: "6.1-amd64",
        arch: "amd64",
        meta: "linux-image-amd64",
        series: "6.1.",
        binary: Target::X86_64,
        board: &PC,
        jit_required: true,
    },
    Row {
        id: Name::Amd64V612,
        name: "6.12-amd64",
        arch: "amd64",
        meta: "linux-image-6.12-amd64",
        series: "6.12.",
        binary: Target::X86_64,
        board: &PC,
        jit_required: true,
    },
    Row {
        id: Name::Arm64V61,
        name: "6.1-arm64",
        arch: "arm64",
        meta: "linux-image-arm64",
        series: "6.1.",
        binary: Target::Aarch64,
        board: &VIRT64,
        jit_required: true,
    },
    Row {
        id: Name::Arm64V612,
        name: "6.12-arm64",
        arch: "arm64",
        meta: "linux-image-6.12-arm64",
        series: "6.12.",
        binary: Target::Aarch64,
        board: &VIRT64,
        jit_required: true,
    },
    Row {
        id: Name::ArmhfV61,
        name: "6.1-armhf",
        arch: "armhf",
        meta: "linux-image-armmp-lpae",
        series: "6.1.",
        // The ARMv6 binary: it is the one for every 32-bit Pi, and it runs on this v7 core.
        binary: Target::Armv6,
        board: &VIRT32,
        jit_required: false,
    },
];

/// What one boot showed.
struct Verdict {
    row: &'static str,
    release: String,
    accel: Accel,
    passed: Vec<String>,
    failed: Vec<String>,
    jit: Option<bool>,
    walked: Option<String>,
    rss_kb: Option<u64>,
    peak_kb: Option<u64>,
    log: Vec<String>,
    notes: Vec<String>,
    seconds: f64,
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
        show(&verdict);
        verdicts.push(verdict);
    }
    println!("\n{}", table(&verdicts));
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
    let apt = Apt::foreign(row.arch, &base.join(format!("apt-{}", row.arch)))?;
    let debs = base.join("debs");
    let package = apt.with_lists(|apt| apt.resolve(row.meta))?;
    let deb = apt.with_lists(|apt| apt.download(&package, &debs))?;
    let kernel = kernel::unpack(&deb, &base.join(&package), &["veth"])?;
    if !kernel.release.starts_with(row.series) {
        bail!(
            "{} now names kernel {}, not a {}x kernel",
            row.meta,
            kernel.release,
            row.series
        );
    }
    let busybox = busybox(&apt, &debs, &base.join(format!("busybox-{}", row.arch)))?;
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
                let mut verdict = parse(row, accel, &lines);
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
    cpio.file("/knockd.conf", 0o644, emulate::GUIDE.as_bytes());
    for (index, (name, path)) in kernel.modules.iter().enumerate() {
        // The driver loads them in name order: dependencies first.
        let module = std::fs::read(path)?;
        cpio.file(&format!("/modules/{index:02}-{name}.ko"), 0o644, &module);
    }
    Ok(cpio.finish())
}

fn parse(row: &Row, accel: Accel, lines: &[String]) -> Verdict {
    let mut verdict = Verdict {
        row: row.name,
        release: String::new(),
        accel,
        passed: Vec::new(),
        failed: Vec::new(),
        jit: None,
        walked: None,
        rss_kb: None,
        peak_kb: None,
        log: Vec::new(),
        notes: Vec::new(),
        seconds: 0.0,
    };
    for line in lines {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "INFO" => {
                if let Some(kernel) = rest.strip_prefix("kernel ") {
                    verdict.release = kernel.to_owned();
                } else {
                    verdict.notes.push(rest.to_owned());
                }
            }
            "PASS" => {
                if let Some((_, walked)) = rest.split_once("verifier walked ") {
                    verdict.walked = Some(walked.trim_end_matches(')').to_owned());
                }
                verdict.passed.push(rest.to_owned());
            }
            "FAIL" => verdict.failed.push(rest.to_owned()),
            "JIT" => verdict.jit = Some(rest == "yes"),
            // The last reading, after the knocks, is the daemon at work.
            "RSS" => verdict.rss_kb = rest.trim_end_matches(" kB").parse().ok(),
            // The high-water mark: loading (parsing the kernel's BTF) peaks above the steady state.
            "PEAK" => verdict.peak_kb = rest.trim_end_matches(" kB").parse().ok(),
            "LOG" => verdict.log.push(rest.trim_start_matches("| ").to_owned()),
            _ => {}
        }
    }
    if verdict.jit == Some(false) && row.jit_required {
        verdict
            .failed
            .push("the kernel runs the program in the interpreter, not JIT-compiled".into());
    }
    if !lines.iter().any(|l| l == "DONE ok" || l == "DONE failed") {
        verdict.failed.push("the driver did not finish".into());
    }
    verdict
}

fn show(verdict: &Verdict) {
    for pass in &verdict.passed {
        eprintln!("  ok   {pass}");
    }
    if let Some(jit) = verdict.jit {
        eprintln!(
            "  {}   JIT: {}",
            if jit { "ok" } else { "note" },
            if jit {
                "compiled"
            } else {
                "declined; the interpreter runs it"
            }
        );
    }
    for note in &verdict.notes {
        eprintln!("  note {note}");
    }
    for fail in &verdict.failed {
        eprintln!("  FAIL {fail}");
    }
    if !verdict.failed.is_empty() {
        eprintln!("  knock-user's output (on a load failure, the verifier's last lines):");
        for line in &verdict.log {
            eprintln!("    | {line}");
        }
    }
}

fn table(verdicts: &[Verdict]) -> String {
    let mut out = String::from(
        "| kernel | release | accel | verifier walked | JIT | daemon VmRSS (peak) | checks | result | time |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for v in verdicts {
        let memory = format!("{} ({})", mib(v.rss_kb), mib(v.peak_kb));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {}/{} | {} | {:.0} s |\n",
            v.row,
            v.release,
            v.accel.name(),
            v.walked.as_deref().unwrap_or("-"),
            match v.jit {
                Some(true) => "yes",
                Some(false) => "no (interpreter)",
                None => "-",
            },
            memory,
            v.passed.len(),
            v.passed.len() + v.failed.len(),
            if v.failed.is_empty() { "pass" } else { "FAIL" },
            v.seconds,
        ));
    }
    out
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "-".to_owned(),
        |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
    )
}
