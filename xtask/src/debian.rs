//! Debian packages fetched with apt and unpacked by hand, never installed: kernels, busybox for
//! other architectures and releases, Debian's default knockd.conf.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::shell::{output, run as sh};

/// The Debian archive keyring that signs the host's sources.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// apt for one architecture: the host's own, or a private one for a foreign architecture.
pub struct Apt {
    arch: String,
    /// apt options pointing lists, cache and sources at a private directory, so that fetching an
    /// arm64 kernel neither adds a foreign architecture to dpkg nor touches the host's lists.
    private: Vec<String>,
}

impl Apt {
    pub fn host() -> anyhow::Result<Self> {
        Ok(Self {
            arch: host_arch()?,
            private: Vec::new(),
        })
    }

    /// apt for `arch` with its own lists under `dir`, reading the Debian sources the host uses.
    pub fn foreign(arch: &str, dir: &Path) -> anyhow::Result<Self> {
        if arch == host_arch()? {
            return Self::host();
        }
        Self::private(arch, dir, &host_sources()?)
    }

    /// apt for `arch` with its own lists under `dir`, reading `sources` (URI, suite, component):
    /// another Debian release than the host's, for instance.
    pub fn private(
        arch: &str,
        dir: &Path,
        sources: &[(String, String, String)],
    ) -> anyhow::Result<Self> {
        for sub in ["lists/partial", "cache/archives/partial", "parts"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            std::fs::write(&status, "")?;
        }
        let signed = if Path::new(KEYRING).exists() {
            format!(" signed-by={KEYRING}")
        } else {
            String::new()
        };
        let list: String = sources
            .iter()
            .map(|(uri, suite, component)| {
                format!("deb [arch={arch}{signed}] {uri} {suite} {component}\n")
            })
            .collect();
        std::fs::write(dir.join("sources.list"), list)?;
        let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let private = [
            format!("APT::Architecture={arch}"),
            format!("APT::Architectures={arch}"),
            format!("Dir::State::Lists={}", path("lists")),
            format!("Dir::State::status={}", path("status")),
            format!("Dir::Cache={}", path("cache")),
            format!("Dir::Etc::SourceList={}", path("sources.list")),
            format!("Dir::Etc::SourceParts={}", path("parts")),
            // Only package lists are needed, not the desktop metadata some hosts enable.
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false".into(),
            // The private lists are ours alone; the host's apt lock is not needed for them.
            "Debug::NoLocking=1".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect();
        Ok(Self {
            arch: arch.to_owned(),
            private,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        // apt's sandbox user cannot write to root's directories under target/; it need not.
        command
            .args(["-o", "APT::Sandbox::User=root"])
            .args(&self.private)
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    pub fn update(&self) -> anyhow::Result<()> {
        eprintln!("apt ({}): updating package lists", self.arch);
        // A source that lacks this architecture makes apt-get update fail although the others
        // were read; whether what we need is there shows in the next step.
        let _ = self
            .command("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .status();
        Ok(())
    }

    /// The kernel packages that the versions of `meta` depend on, newest first, e.g.
    /// linux-image-arm64 -> [linux-image-5.10.0-46-arm64, linux-image-5.10.0-32-arm64] when a
    /// release and its security updates both carry one. A mirror may lack the newest.
    pub fn images(&self, meta: &str) -> anyhow::Result<Vec<String>> {
        let shown = output(self.command("apt-cache").args(["show", meta]))
            .with_context(|| format!("apt-cache show {meta} ({})", self.arch))?;
        let mut images: Vec<String> = Vec::new();
        let depends = shown
            .lines()
            .filter_map(|l| l.strip_prefix("Depends: "))
            .flat_map(|d| d.split(','));
        for dependency in depends {
            let name = dependency.split_whitespace().next().unwrap_or_default();
            let name = name.trim_end_matches(&format!(":{}", self.arch));
            if name.starts_with("linux-image-") && !images.iter().any(|i| i == name) {
                images.push(name.to_owned());
            }
        }
        if images.is_empty() {
            bail!("{meta} ({}) depends on no linux-image package", self.arch);
        }
        Ok(images)
    }

    /// `package`'s .deb in `cache`, downloaded unless a version of it is already there.
    pub fn download(&self, package: &str, cache: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(cache)?;
        if let Some(deb) = cached(package, &self.arch, cache)? {
            return Ok(deb);
        }
        eprintln!("apt ({}): downloading {package}", self.arch);
        let name = format!("{package}:{}", self.arch);
        let status = self
            .command("apt-get")
            .args(["download", "-q", &name])
            .current_dir(cache)
            .stdout(Stdio::null())
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get download {name} failed");
        }
        cached(package, &self.arch, cache)?.with_context(|| {
            format!(
                "apt-get download {name} left no .deb in {}",
                cache.display()
            )
        })
    }

    /// Runs `fetch`, and once more after refreshing the package lists if it fails: a private
    /// apt starts with none, and the host's may be older than the archive.
    pub fn with_lists<T>(&self, fetch: impl Fn(&Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        fetch(self).or_else(|_| {
            self.update()?;
            fetch(self)
        })
    }
}

fn cached(package: &str, arch: &str, cache: &Path) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let suffix = format!("_{arch}.deb");
    for entry in std::fs::read_dir(cache)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(&suffix) {
            return Ok(Some(cache.join(name)));
        }
    }
    Ok(None)
}

fn host_arch() -> anyhow::Result<String> {
    output(Command::new("dpkg").arg("--print-architecture"))
        .map(|a| a.trim().to_owned())
        .context("dpkg --print-architecture")
}

/// (URI, suite, component) of every Debian source apt on this host reads, from `apt-cache
/// policy`, so that a private apt fetches from the same mirrors.
fn host_sources() -> anyhow::Result<Vec<(String, String, String)>> {
    let policy = output(Command::new("apt-cache").arg("policy")).context("apt-cache policy")?;
    let lines: Vec<&str> = policy.lines().collect();
    let mut sources = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, uri, dist, _, "Packages"] = fields[..] else {
            continue;
        };
        let Some((suite, component)) = dist.split_once('/') else {
            continue;
        };
        let debian = lines
            .get(index + 1)
            .is_some_and(|release| release.contains("o=Debian,"));
        let source = (uri.to_owned(), suite.to_owned(), component.to_owned());
        if debian && !sources.contains(&source) {
            sources.push(source);
        }
    }
    if sources.is_empty() {
        bail!("apt on this host reads no Debian source (apt-cache policy lists none)");
    }
    Ok(sources)
}

/// The paths in a package, as `./dir/file`.
pub fn contents(deb: &Path) -> anyhow::Result<Vec<String>> {
    let listing = output(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .with_context(|| format!("dpkg-deb --contents {}", deb.display()))?;
    Ok(listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(str::to_owned)
        .collect())
}

/// Unpacks `members` (paths as `contents` gives them) of `deb` under `dir`.
pub fn extract(deb: &Path, dir: &Path, members: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut unpack = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run dpkg-deb")?;
    let tar_input = unpack
        .stdout
        .take()
        .context("dpkg-deb gave no output pipe")?;
    let tar = sh(Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .args(members)
        .stdin(tar_input));
    let status = unpack.wait()?;
    tar?;
    if !status.success() {
        bail!("dpkg-deb --fsys-tarfile {} failed: {status}", deb.display());
    }
    Ok(())
}
