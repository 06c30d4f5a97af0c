//! The chart: a Python script with matplotlib, in a virtual environment under target/ that the
//! benchmark makes for itself (idempotently), so a fresh machine needs nothing by hand.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::shell::{output, run as sh, target_dir};

const MATPLOTLIB: &str = "matplotlib>=3.6,<4";

fn venv() -> PathBuf {
    target_dir().join("bench").join("venv")
}

pub fn python() -> PathBuf {
    venv().join("bin").join("python3")
}

fn has_matplotlib() -> bool {
    output(Command::new(python()).args(["-c", "import matplotlib"])).is_some()
}

/// Makes the virtual environment and installs matplotlib into it, unless both are there.
pub fn bootstrap() -> anyhow::Result<()> {
    if has_matplotlib() {
        return Ok(());
    }
    let dir = venv();
    eprintln!("bench: installing matplotlib into {}", dir.display());
    if !python().exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            // Debian's own python3 keeps venv in a package of its own.
            let _ = std::fs::remove_dir_all(&dir);
            sh(Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "python3-venv",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            sh(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        }
    }
    sh(Command::new(python()).args(["-m", "pip", "install", "-q", MATPLOTLIB]))
        .context("installing matplotlib for the benchmark's chart")?;
    if !has_matplotlib() {
        bail!("matplotlib did not install into {}", dir.display());
    }
    Ok(())
}

#[cfg(feature = "bench")]
/// Draws `png` from the tab-separated data in `data`.
pub fn draw(data: &std::path::Path, png: &std::path::Path, title: &str) -> anyhow::Result<()> {
    let script = crate::shell::root().join("xtask/bench/chart.py");
    sh(Command::new(python())
        .arg(script)
        .arg(data)
        .arg(png)
        .arg(title)
        .env("MPLBACKEND", "Agg"))
}
