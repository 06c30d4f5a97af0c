//! Booting a kernel and an initramfs under qemu-system, and reading what the guest's test driver
//! printed on the serial console.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvm => "KVM",
            Self::Tcg => "TCG",
        }
    }
}

/// The emulated board: which qemu, which machine and CPU, which console.
pub struct Board {
    pub qemu: &'static str,
    pub machine: &'static [&'static str],
    pub console: &'static str,
    /// CPU model without KVM (with KVM the host's CPU is used).
    pub cpu: &'static str,
}

pub struct Boot<'a> {
    pub board: &'a Board,
    pub accel: Accel,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub console_log: &'a Path,
    /// How long the guest may take to print its first line: a kernel that cannot boot under this
    /// accelerator is told apart from a slow test.
    pub first_line_within: Duration,
    pub finish_within: Duration,
}

pub enum Outcome {
    /// The guest's driver ran to its end; these are its "MATRIX " lines, without the prefix.
    Finished(Vec<String>),
    /// The guest never printed a line: the kernel did not boot under this accelerator.
    NoBoot(String),
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

pub fn boot(boot: &Boot) -> anyhow::Result<Outcome> {
    let _ = std::fs::remove_file(boot.console_log);
    let stderr_log = boot.console_log.with_extension("stderr");
    let mut command = Command::new(boot.board.qemu);
    command.args(boot.board.machine);
    match boot.accel {
        Accel::Kvm => command.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => command.args(["-accel", "tcg", "-cpu", boot.board.cpu]),
    };
    command
        .args(["-m", "512", "-smp", "1", "-nodefaults", "-display", "none"])
        .arg("-no-reboot")
        .arg("-serial")
        .arg(format!("file:{}", boot.console_log.display()))
        .arg("-kernel")
        .arg(boot.kernel)
        .arg("-initrd")
        .arg(boot.initramfs)
        .arg("-append")
        .arg(format!("console={} panic=-1 quiet", boot.board.console))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_log)?);
    let mut qemu = Qemu(
        command
            .spawn()
            .with_context(|| format!("cannot start {}", boot.board.qemu))?,
    );
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let console = read_console(boot.console_log);
        let lines = matrix_lines(&console);
        let exited = qemu.0.try_wait()?;
        if lines.iter().any(|l| l.starts_with("DONE")) {
            // The guest powers off right after; give it a moment rather than cutting it.
            let stop = Instant::now() + Duration::from_secs(10);
            while qemu.0.try_wait()?.is_none() && Instant::now() < stop {
                std::thread::sleep(Duration::from_millis(100));
            }
            return Ok(Outcome::Finished(lines));
        }
        if lines.is_empty() && (exited.is_some() || started.elapsed() > boot.first_line_within) {
            let stderr = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            return Ok(Outcome::NoBoot(format!(
                "{}{}",
                stderr.trim(),
                tail(&console, 5)
            )));
        }
        if let Some(status) = exited {
            bail!(
                "{} exited ({status}) before the test driver finished; console:\n{}",
                boot.board.qemu,
                tail(&console, 40)
            );
        }
        if started.elapsed() > boot.finish_within {
            bail!(
                "the guest did not finish within {} s; console:\n{}",
                boot.finish_within.as_secs(),
                tail(&console, 40)
            );
        }
    }
}

fn read_console(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\r', ""))
        .unwrap_or_default()
}

fn matrix_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.strip_prefix("MATRIX "))
        .map(str::to_owned)
        .collect()
}

fn tail(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(count);
    lines[start..]
        .iter()
        .map(|l| format!("\n    {l}"))
        .collect()
}

/// Whether this host can run KVM guests at all: /dev/kvm opens read-write.
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}
