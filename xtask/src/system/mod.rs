//! `cargo xtask system`: the Debian package under real systemd. A Debian 12 guest (debootstrap
//! from Debian's packages: systemd 252, Debian's own kernel) boots under qemu-system-x86_64 and
//! walks README's "Run it on your own box" and "Operations" with the freshly built .deb: apt
//! install, enable --now, the gate and a knock over IPv4 and IPv6, the start command, restart
//! and a package upgrade while a stranger probes port 22, reload (good and broken), a start
//! that waits for a missing interface and an interface deleted and made again under the daemon,
//! reboot, `systemctl stop` keeping the gate, `knock-user stop`, apt
//! remove and purge (assets/system/walk.sh). Each step prints one line of evidence; a failing
//! step fails the command with the guest's journal tail.
//!
//! The guest has no NIC: its default route goes over a veth pair to a network namespace inside
//! it (assets/system/net.sh), with addresses from 198.51.100.0/24, 203.0.113.0/24 and
//! 2001:db8::/32 only.

mod guest;
mod image;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};

use crate::package::{self, Choice};
use crate::shell::{self, run as sh};

/// The guest's driver and network, handed to it on a second disk with the packages.
const WALK: &str = include_str!("../../assets/system/walk.sh");
const NET: &str = include_str!("../../assets/system/net.sh");

#[derive(clap::Args)]
pub struct Args {
    /// The Debian release of the guest.
    #[arg(long, value_enum, default_value = "12")]
    debian: image::Debian,
    /// Build the guest's image again even if one with the same contents is cached.
    #[arg(long)]
    rebuild: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    ensure!(
        shell::is_root(),
        "cargo xtask system builds a Debian root file system (debootstrap): run it as root"
    );
    crate::cross::install_packages(&["debootstrap", "qemu-system-x86", "e2fsprogs"])?;
    let dir = shell::target_dir().join("system");
    std::fs::create_dir_all(&dir)?;

    let image = image::prepare(&dir, args.debian, args.rebuild)?;
    let image_seconds = started.elapsed().as_secs_f64();

    let built = package::build(Choice::Native)?;
    // Kept aside: cargo deb removes the earlier package when it builds the upgrade.
    let deb = dir.join("knock.deb");
    std::fs::copy(&built, &deb).with_context(|| format!("cannot copy {}", built.display()))?;
    let upgrade = upgrade_package(&dir)?;
    let payload = dir.join("payload.tar");
    pack(&payload, &dir, &deb, &upgrade)?;

    let walked = Instant::now();
    let outcome = guest::walk(&image, &payload, &dir.join("console.log"))?;
    eprintln!(
        "\nsystem: {} in {:.0} s (image {}: {:.0} s; guest under {}: {:.0} s)",
        if outcome.passed { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        if image.built { "built" } else { "cached" },
        image_seconds,
        outcome.accel,
        walked.elapsed().as_secs_f64(),
    );
    if !outcome.passed {
        bail!(
            "the walk failed in the guest; console in {}",
            dir.join("console.log").display()
        );
    }
    Ok(())
}

/// The same package with the next Debian revision, for the upgrade step: what apt sees as a
/// newer version of knock.
fn upgrade_package(dir: &Path) -> anyhow::Result<PathBuf> {
    let out = dir.join("upgrade");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    sh(Command::new("cargo")
        .current_dir(shell::root())
        .args([
            "deb",
            "-p",
            "knock-user",
            "--no-build",
            "--deb-revision",
            "2",
        ])
        .arg("--output")
        .arg(&out)
        .stdout(std::process::Stdio::null()))?;
    std::fs::read_dir(&out)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("cargo deb left no .deb in {}", out.display()))
}

/// The payload disk: a tar archive the guest reads from /dev/vdb.
fn pack(payload: &Path, dir: &Path, deb: &Path, upgrade: &Path) -> anyhow::Result<()> {
    let staging = dir.join("payload");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    write_executable(&staging.join("walk.sh"), WALK)?;
    write_executable(&staging.join("net.sh"), NET)?;
    for (from, name) in [(deb, "knock.deb"), (upgrade, "knock-upgrade.deb")] {
        std::fs::copy(from, staging.join(name))
            .with_context(|| format!("cannot copy {} into the payload", from.display()))?;
    }
    sh(Command::new("tar")
        .arg("-cf")
        .arg(payload)
        .arg("-C")
        .arg(&staging)
        .args(["walk.sh", "net.sh", "knock.deb", "knock-upgrade.deb"]))
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
