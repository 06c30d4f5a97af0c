//! `cargo xtask package`: the Debian package, built with cargo-deb from knock-user's
//! `[package.metadata.deb]`, and its check (`cargo xtask test` runs both).
//!
//! The package holds /usr/sbin/knock-user, knock.service (neither enabled nor started), man pages
//! and completions made by `knock-user generate-manuals`, /etc/default/knock, an example
//! knockd.conf and the docs. It owns nothing of Debian's knockd package, so both can be
//! installed: knockd keeps /usr/sbin/knockd and /etc/knockd.conf, and knock's link with knockd's
//! command line is /usr/libexec/knock/knockd.
//!
//! The native package links this machine's glibc; the Raspberry Pi ones hold the static musl
//! binaries of `cargo xtask cross` (armv7 and armv6 are both Debian's armhf, so each goes to its
//! own directory: the armv6 one runs on every Pi and on Raspberry Pi OS's 32-bit userland).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};

use crate::cross::{self, Target};
use crate::shell::{self, output, run as sh};

pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// The install check, run in a private mount namespace (see `check`).
const INSTALL_CHECK: &str = include_str!("../assets/package-check.sh");

#[derive(clap::Args)]
pub struct Args {
    /// The architecture: this machine's, or a Raspberry Pi's static build.
    #[arg(long, value_enum, default_value_t = Choice::Native)]
    target: Choice,
    /// Also install the package into a scratch root and check it (needs root).
    #[arg(long)]
    check: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    Native,
    Aarch64,
    Armv7,
    Armv6,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let deb = build(args.target)?;
    if args.check {
        ensure!(
            args.target == Choice::Native,
            "--check installs the package here, so it needs the native one"
        );
        check(&deb)?;
    }
    eprintln!("package: done in {:.0} s", started.elapsed().as_secs_f64());
    println!("{}", deb.display());
    Ok(())
}

/// Installs cargo-deb unless this version is there (`bootstrap` calls it).
pub fn bootstrap() -> anyhow::Result<Option<String>> {
    let installed = output(Command::new("cargo-deb").arg("--version"));
    if installed.is_some_and(|v| v.split_whitespace().last() == Some(CARGO_DEB_VERSION)) {
        return Ok(None);
    }
    eprintln!("bootstrap: installing cargo-deb {CARGO_DEB_VERSION} (about 2 minutes)");
    sh(Command::new("cargo").args([
        "install",
        "cargo-deb",
        "--locked",
        "--version",
        CARGO_DEB_VERSION,
    ]))?;
    Ok(Some(format!("cargo-deb {CARGO_DEB_VERSION}")))
}

/// Builds the package for `choice` and returns its path.
pub fn build(choice: Choice) -> anyhow::Result<PathBuf> {
    let target = match choice {
        Choice::Native => None,
        Choice::Aarch64 => Some(Target::Aarch64),
        Choice::Armv7 => Some(Target::Armv7),
        Choice::Armv6 => Some(Target::Armv6),
    };
    let (binary, release) = match target {
        None => {
            eprintln!("\n== knock-user (release)");
            sh(shell::cargo().args(["build", "--release", "-p", "knock-user"]))?;
            let release = shell::target_dir().join("release");
            (release.join("knock-user"), release)
        }
        Some(target) => {
            cross::build(target)?;
            let release = shell::target_dir().join(target.triple()).join("release");
            (release.join("knock-user"), release)
        }
    };
    eprintln!("\n== man pages and completions");
    let generated = release.join("packaging");
    let _ = std::fs::remove_dir_all(&generated);
    let mut generate = match target.and_then(Target::emulator) {
        None => Command::new(&binary),
        Some((qemu, cpu)) => {
            cross::install_packages(&["qemu-user-static"])?;
            let mut command = Command::new(qemu);
            command.args(["-cpu", cpu]).arg(&binary);
            command
        }
    };
    let written = output(generate.arg("generate-manuals").arg(&generated)).with_context(|| {
        format!(
            "{} generate-manuals {} failed",
            binary.display(),
            generated.display()
        )
    })?;
    let pages: Vec<PathBuf> = written
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    ensure!(!pages.is_empty(), "generate-manuals wrote no man page");
    // -n: no name or time stamp inside, so the same page makes the same bytes.
    sh(Command::new("gzip").arg("-9nf").args(&pages))?;

    eprintln!("\n== cargo deb");
    let out_dir = match target {
        None => shell::target_dir().join("debian"),
        Some(target) => shell::target_dir().join("debian").join(target.name()),
    };
    std::fs::create_dir_all(&out_dir)?;
    let mut deb = Command::new("cargo");
    deb.current_dir(shell::root())
        .args(["deb", "-p", "knock-user", "--no-build", "--output"])
        .arg(&out_dir);
    if let Some(target) = target {
        // The host's strip cannot read ARM binaries; the release profile already dropped the
        // debug info.
        deb.args(["--target", target.triple(), "--no-strip"]);
    }
    let shown = format!("{deb:?}");
    let result = deb
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {shown} (cargo xtask bootstrap installs it)"))?;
    if !result.status.success() {
        bail!("{shown} failed: {}", result.status);
    }
    let path = String::from_utf8_lossy(&result.stdout)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("{shown} named no .deb"))?;
    ensure!(path.exists(), "{} does not exist", path.display());
    eprintln!(
        "package: {} ({:.2} MiB)",
        path.display(),
        std::fs::metadata(&path)?.len() as f64 / 1024.0 / 1024.0
    );
    Ok(path)
}

/// Every file the package must hold, and what each must be.
const EXPECTED: &[(&str, &str)] = &[
    ("./usr/sbin/knock-user", "-rwxr-xr-x"),
    ("./usr/libexec/knock/knockd", "lrwxrwxrwx"),
    ("./usr/lib/systemd/system/knock.service", "-rw-r--r--"),
    ("./etc/default/knock", "-rw-r--r--"),
    ("./usr/share/man/man1/knock-user.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/knock-user-run.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/knock-user-check.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/knock-user-knock.1.gz", "-rw-r--r--"),
    (
        "./usr/share/bash-completion/completions/knock-user",
        "-rw-r--r--",
    ),
    (
        "./usr/share/zsh/vendor-completions/_knock-user",
        "-rw-r--r--",
    ),
    (
        "./usr/share/fish/vendor_completions.d/knock-user.fish",
        "-rw-r--r--",
    ),
    ("./usr/share/doc/knock/examples/knockd.conf", "-rw-r--r--"),
    ("./usr/share/doc/knock/README.md", "-rw-r--r--"),
    ("./usr/share/doc/knock/copyright", "-rw-r--r--"),
    (
        "./usr/share/doc/knock/docs/migrating-from-knockd.md",
        "-rw-r--r--",
    ),
];

/// Checks the package's metadata and contents, then installs it into a scratch root (an
/// overlay of this machine, so Debian's knockd is installed beside it) and checks it there:
/// the files land, nothing clashes with knockd, the binary and its knockd link run, the example
/// configuration passes `check`, the man pages are found, systemd accepts the unit and it is
/// not enabled; then removal and purge. The machine itself is left untouched.
pub fn check(deb: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("\n== package check: {}", deb.display());
    let info = output(Command::new("dpkg-deb").arg("--info").arg(deb))
        .context("dpkg-deb --info failed")?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
    };
    let arch = output(Command::new("dpkg").arg("--print-architecture"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    ensure!(field("Package").as_deref() == Some("knock"), "{info}");
    ensure!(
        field("Architecture").as_deref() == Some(arch.as_str()),
        "Architecture is not {arch}: {info}"
    );
    ensure!(
        field("Version").is_some_and(|v| v.starts_with(&format!("{}-", env!("CARGO_PKG_VERSION")))),
        "Version: {info}"
    );
    ensure!(
        field("Depends").is_some_and(|d| d.contains("libc6")),
        "Depends: {info}"
    );
    for absent in ["Conflicts", "Replaces", "Breaks"] {
        ensure!(
            field(absent).is_none(),
            "{absent}: knock must install beside knockd: {info}"
        );
    }
    for script in ["postinst", "prerm", "postrm"] {
        ensure!(info.contains(script), "no {script}: {info}");
    }
    eprintln!(
        "  ok   metadata: knock {}, {arch}",
        field("Version").unwrap_or_default().trim()
    );

    let listing = output(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .context("dpkg-deb --contents failed")?;
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| {
            let mode = line.split_whitespace().next()?;
            let path = line.split_whitespace().nth(5)?;
            Some((path, mode))
        })
        .collect();
    for (path, mode) in EXPECTED {
        match entries.iter().find(|(p, _)| p == path) {
            Some((_, found)) => ensure!(found == mode, "{path} has mode {found}, not {mode}"),
            None => bail!("the package lacks {path}:\n{listing}"),
        }
    }
    let knockd_files = output(Command::new("dpkg").args(["-L", "knockd"])).unwrap_or_default();
    for (path, _) in &entries {
        let path = path.trim_start_matches('.');
        let is_dir = path.ends_with('/');
        ensure!(
            is_dir || !knockd_files.lines().any(|k| k == path),
            "{path} belongs to Debian's knockd package"
        );
    }
    eprintln!(
        "  ok   contents: {} entries, none of them knockd's",
        entries.len()
    );

    ensure!(
        shell::is_root(),
        "installing into a scratch root needs root (mount namespaces, overlayfs, chroot)"
    );
    let scratch = shell::target_dir().join("debian").join("scratch");
    std::fs::create_dir_all(&scratch)?;
    sh(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(INSTALL_CHECK)
        .arg("package-check.sh")
        .arg(deb)
        .arg(&scratch))
    .context("the install check failed (its output is above)")?;
    eprintln!(
        "package check: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
