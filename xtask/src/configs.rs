//! The knockd.conf files the Raspberry Pi checks read: the guide's, verbatim, and Debian's
//! default, taken from the knockd package itself (the host's copy may have been edited).

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::debian::{self, Apt};
use crate::shell;

/// The Raspberry Pi guide's knockd.conf, verbatim.
pub const GUIDE: &str = include_str!("../assets/guide-knockd.conf");

/// Both configurations as files, for binaries to read.
pub struct Configs {
    pub guide: PathBuf,
    pub debian: PathBuf,
}

impl Configs {
    pub fn prepare() -> anyhow::Result<Self> {
        let dir = shell::target_dir().join("cross").join("configs");
        std::fs::create_dir_all(&dir)?;
        let guide = dir.join("guide-knockd.conf");
        std::fs::write(&guide, GUIDE)?;
        let debian = debian_knockd_conf(&dir)?;
        Ok(Self { guide, debian })
    }
}

/// Debian's default /etc/knockd.conf, unpacked from the knockd package under `dir`.
fn debian_knockd_conf(dir: &Path) -> anyhow::Result<PathBuf> {
    let conf = dir.join("etc").join("knockd.conf");
    if conf.exists() {
        return Ok(conf);
    }
    let apt = Apt::host()?;
    let cache = dir.join("cache");
    let deb = apt.with_lists(|apt| apt.download("knockd", &cache))?;
    debian::extract(&deb, dir, &["./etc/knockd.conf".to_owned()])?;
    if !conf.exists() {
        bail!("{} has no etc/knockd.conf", deb.display());
    }
    Ok(conf)
}
