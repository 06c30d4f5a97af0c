//! Booting the guest under qemu-system-x86_64 and following the walk on its serial console:
//! lines "SYSTEM ok|FAIL|INFO|LOG ..." and finally "SYSTEM DONE ok|failed". The guest reboots
//! once (qemu runs on; the disk's changes live in qemu's snapshot until it exits) and powers
//! off at the end.
//!
//! KVM is tried first; this project's hosts may offer /dev/kvm yet refuse Debian's kernel (an
//! MSR assertion in qemu, or a guest that never prints), so a KVM boot that shows nothing is
//! retried under TCG, as `cargo xtask matrix` does.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::image::Image;

/// The whole walk, both boots, under TCG on 2 cores.
const WALK_WITHIN: Duration = Duration::from_secs(1800);

pub struct Outcome {
    pub passed: bool,
    pub accel: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Self::Kvm => "KVM",
            Self::Tcg => "TCG",
        }
    }
    /// How long the guest may take to print the walk's first line.
    fn first_line_within(self) -> Duration {
        Duration::from_secs(match self {
            Self::Kvm => 60,
            Self::Tcg => 400,
        })
    }
}

/// Kills qemu when dropped, also when the caller returns early with an error.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub fn walk(image: &Image, payload: &Path, console: &Path) -> anyhow::Result<Outcome> {
    let mut accel = if kvm_available() {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    loop {
        eprintln!("\n== booting the guest under {}", accel.name());
        match boot(image, payload, console, accel)? {
            Some(passed) => {
                return Ok(Outcome {
                    passed,
                    accel: accel.name(),
                });
            }
            None if accel == Accel::Kvm => {
                eprintln!("KVM cannot boot Debian's kernel on this host; using TCG");
                accel = Accel::Tcg;
            }
            None => bail!(
                "the guest printed nothing within {} s (console in {})",
                accel.first_line_within().as_secs(),
                console.display()
            ),
        }
    }
}

/// One qemu run: `Some(passed)` once the walk is done, `None` if the guest never reported.
fn boot(
    image: &Image,
    payload: &Path,
    console: &Path,
    accel: Accel,
) -> anyhow::Result<Option<bool>> {
    let _ = std::fs::remove_file(console);
    let stderr_log = console.with_extension("stderr");
    let mut command = Command::new("qemu-system-x86_64");
    match accel {
        Accel::Kvm => command.args(["-accel", "kvm", "-cpu", "host"]),
        // Not "max,-vmx,-svm", although udev then loads kvm_intel in the guest (15 s a boot):
        // without it the first start of knock.service failed with 226/NAMESPACE ("Failed to
        // set up mount namespacing: /run/systemd/unit-root/: Device or resource busy"), which
        // remains to be understood.
        Accel::Tcg => command.args(["-accel", "tcg", "-cpu", "max"]),
    };
    command
        .args(["-m", "1024", "-smp", "2", "-nodefaults", "-display", "none"])
        .args(["-nic", "none"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,snapshot=on",
            image.disk.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,readonly=on",
            payload.display()
        ))
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        // tsc=reliable: under TCG the two vCPUs' TSCs come from one clock, but the kernel
        // finds them "unsynchronized" and falls back to the HPET, each read of which qemu
        // emulates; that made every boot two to three times slower.
        .arg("-append")
        .arg("root=/dev/vda rw console=ttyS0 quiet systemd.show_status=error tsc=reliable")
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_log)?);
    let mut qemu = Qemu(command.spawn().context("cannot start qemu-system-x86_64")?);
    let started = Instant::now();
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let lines = walk_lines(console);
        for line in &lines[shown.min(lines.len())..] {
            show(line, started.elapsed());
        }
        shown = lines.len();
        if let Some(done) = lines.iter().find_map(|l| l.strip_prefix("DONE ")) {
            let stop = Instant::now() + Duration::from_secs(30);
            while qemu.0.try_wait()?.is_none() && Instant::now() < stop {
                std::thread::sleep(Duration::from_millis(200));
            }
            return Ok(Some(done == "ok"));
        }
        let exited = qemu.0.try_wait()?;
        if lines.is_empty() && (exited.is_some() || started.elapsed() > accel.first_line_within()) {
            let stderr = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            eprintln!("  (no report: {}{})", stderr.trim(), tail(console, 5));
            return Ok(None);
        }
        if let Some(status) = exited {
            bail!(
                "qemu exited ({status}) before the walk finished; console:{}",
                tail(console, 40)
            );
        }
        if started.elapsed() > WALK_WITHIN {
            bail!(
                "the walk did not finish within {} s; console:{}",
                WALK_WITHIN.as_secs(),
                tail(console, 40)
            );
        }
    }
}

/// A line of the walk, with the time since qemu started.
fn show(line: &str, at: Duration) {
    let at = at.as_secs();
    match line.split_once(' ') {
        Some(("LOG", rest)) => eprintln!("    | {rest}"),
        Some(("INFO", rest)) => eprintln!("  {at:>4} s info {rest}"),
        Some(("DONE", _)) | None => {}
        Some(_) => eprintln!("  {at:>4} s {line}"),
    }
}

fn console_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\r', ""))
        .unwrap_or_default()
}

/// The walk's complete lines (a line still being written waits for the next look), without
/// their "SYSTEM " prefix.
fn walk_lines(console: &Path) -> Vec<String> {
    let text = console_text(console);
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|l| l.split_once("SYSTEM ").map(|(_, rest)| rest.to_owned()))
        .collect()
}

fn tail(console: &Path, count: usize) -> String {
    let text = console_text(console);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|l| format!("\n    {l}"))
        .collect()
}

/// Whether this host offers KVM at all: /dev/kvm opens read-write.
fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}
