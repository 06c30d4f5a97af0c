//! The guest's disk: Debian 12 made by debootstrap from Debian's packages (minbase, plus what
//! systemd, the kernel, apt and the walk need), cached under target/system/ by a key of what
//! went into it. Downloaded packages are kept in target/system/debs for the next build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::shell::{output, run as sh};

/// The Debian release of the guest: 12 (bookworm, systemd 252) unless asked otherwise.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Debian {
    /// bookworm: systemd 252, Linux 6.1.
    #[value(name = "12")]
    Bookworm,
    /// trixie: systemd 257, Linux 6.12.
    #[value(name = "13")]
    Trixie,
}

impl Debian {
    pub fn suite(self) -> &'static str {
        match self {
            Self::Bookworm => "bookworm",
            Self::Trixie => "trixie",
        }
    }
}
/// On top of minbase: systemd as init, udev, Debian's kernel (and initramfs-tools, which it
/// pulls in), ip and ip netns, and iptables for the guide's start and stop commands.
const INCLUDE: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "linux-image-amd64",
    "iproute2",
    "iptables",
    "kmod",
];
/// Raised when the steps below change in a way the key would not see.
const RECIPE: u32 = 1;

const WALK_SERVICE: &str = include_str!("../../assets/system/walk.service");
const WALK_NET_SERVICE: &str = include_str!("../../assets/system/walk-net.service");
const PORT22_SOCKET: &str = include_str!("../../assets/system/port22.socket");
const PORT22_SERVICE: &str = include_str!("../../assets/system/port22@.service");

/// A built image: a raw ext4 disk, and the kernel and initramfs installed on it.
pub struct Image {
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Built by this run (not taken from the cache).
    pub built: bool,
}

/// The cached image for the current recipe, built first if there is none.
pub fn prepare(dir: &Path, debian: Debian, rebuild: bool) -> anyhow::Result<Image> {
    let suite = debian.suite();
    let key = key(suite);
    let cached = dir.join(format!("image-{suite}-{key:016x}"));
    let image = Image {
        disk: cached.join("disk.img"),
        kernel: cached.join("vmlinuz"),
        initrd: cached.join("initrd.img"),
        built: false,
    };
    let ready = cached.join("ready");
    if ready.exists() && !rebuild {
        eprintln!("system: guest image {} (cached)", cached.display());
        return Ok(image);
    }
    let started = Instant::now();
    // Older images of this release are of no more use: each holds a 2 GiB disk.
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("image-{suite}-")) || name == "rootfs" {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    let rootfs = dir.join("rootfs");
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let mirror = mirror()?;
    eprintln!(
        "system: debootstrap {suite} (minbase + {}) from the host's Debian mirror",
        INCLUDE.join(", ")
    );
    let log = dir.join("debootstrap.log");
    let status = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={}", INCLUDE.join(",")),
        ])
        .arg(format!("--cache-dir={}", debs.display()))
        .arg(suite)
        .arg(&rootfs)
        .arg(&mirror)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .status()
        .context("cannot run debootstrap")?;
    if !status.success() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        bail!(
            "debootstrap failed ({status}); its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    customize(&rootfs)?;
    std::fs::create_dir_all(&cached)?;
    let boot = rootfs.join("boot");
    let find = |prefix: &str| -> anyhow::Result<PathBuf> {
        std::fs::read_dir(&boot)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .with_context(|| format!("no {prefix}* in {}", boot.display()))
    };
    std::fs::copy(find("vmlinuz-")?, &image.kernel)?;
    std::fs::copy(find("initrd.img-")?, &image.initrd)?;
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "root", "-d"])
        .arg(&rootfs)
        .arg(&image.disk)
        .arg("2G")
        .stdout(std::process::Stdio::null()))?;
    std::fs::remove_dir_all(&rootfs)?;
    std::fs::write(&ready, format!("{suite} {}\n", INCLUDE.join(" ")))?;
    eprintln!(
        "system: guest image built in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        cached.display()
    );
    Ok(Image {
        built: true,
        ..image
    })
}

/// What makes the debootstrapped tree the walk's guest: an fstab, no network source for apt
/// (the guest is offline; `apt install ./knock_*.deb` needs none), no login prompts on the
/// console the walk reports on, and the walk's units.
fn customize(root: &Path) -> anyhow::Result<()> {
    let write = |path: &str, text: &str| -> anyhow::Result<()> {
        let path = root.join(path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let link = |path: &str, target: &str| -> anyhow::Result<()> {
        let path = root.join(path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path)
            .with_context(|| format!("cannot link {}", path.display()))
    };
    write("/etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")?;
    write("/etc/hostname", "guest\n")?;
    write(
        "/etc/hosts",
        "127.0.0.1 localhost\n127.0.1.1 guest\n::1 localhost\n",
    )?;
    write(
        "/etc/apt/sources.list",
        "# The guest of cargo xtask system is offline: packages come from /run/walk.\n",
    )?;
    let units = "/etc/systemd/system";
    write(&format!("{units}/walk.service"), WALK_SERVICE)?;
    write(&format!("{units}/walk-net.service"), WALK_NET_SERVICE)?;
    write(&format!("{units}/port22.socket"), PORT22_SOCKET)?;
    write(&format!("{units}/port22@.service"), PORT22_SERVICE)?;
    for (wants, unit) in [
        ("multi-user.target.wants", "walk.service"),
        ("multi-user.target.wants", "walk-net.service"),
        ("network-online.target.wants", "walk-net.service"),
        ("sockets.target.wants", "port22.socket"),
    ] {
        link(
            &format!("{units}/{wants}/{unit}"),
            &format!("{units}/{unit}"),
        )?;
    }
    for masked in [
        "serial-getty@ttyS0.service",
        "getty@tty1.service",
        "systemd-timesyncd.service",
        // apt's daily runs would hold dpkg's lock while the walk installs.
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
    ] {
        link(&format!("{units}/{masked}"), "/dev/null")?;
    }
    // The downloaded packages are in target/system/debs already.
    let archives = root.join("var/cache/apt/archives");
    for entry in std::fs::read_dir(&archives)?.filter_map(Result::ok) {
        if entry.path().extension().is_some_and(|e| e == "deb") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The cache key: the suite, the package list, the guest's own units, the recipe.
fn key(suite: &str) -> u64 {
    let mut hash = Fnv::default();
    hash.add(suite);
    for package in INCLUDE {
        hash.add(package);
    }
    for text in [
        WALK_SERVICE,
        WALK_NET_SERVICE,
        PORT22_SOCKET,
        PORT22_SERVICE,
    ] {
        hash.add(text);
    }
    hash.add(&RECIPE.to_string());
    hash.0
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike the standard library's hasher.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, text: &str) {
        for byte in text.bytes().chain([0]) {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The Debian mirror the host's apt uses (from `apt-cache policy`: a source of a Debian
/// release's main component that is not its security archive), so the guest is built from the
/// same place as the host; the mirror serves every release.
fn mirror() -> anyhow::Result<String> {
    let policy = output(Command::new("apt-cache").arg("policy")).context("apt-cache policy")?;
    let lines: Vec<&str> = policy.lines().collect();
    lines
        .iter()
        .enumerate()
        .find_map(|(index, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, uri, dist, _, "Packages"] = fields[..] else {
                return None;
            };
            let release = lines.get(index + 1)?;
            (dist.ends_with("/main")
                && !dist.contains("-security")
                && release.contains("o=Debian,"))
            .then(|| uri.to_owned())
        })
        .context("apt on this host reads no Debian mirror (apt-cache policy lists none)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_what_goes_into_the_image() {
        let mut a = Fnv::default();
        a.add("bookworm");
        let mut b = Fnv::default();
        b.add("trixie");
        assert_ne!(a.0, b.0);
        // FNV-1a of the separator byte alone, a published test value.
        let mut c = Fnv::default();
        c.add("");
        assert_eq!(c.0, 0xaf63_bd4c_8601_b7df);
    }
}
