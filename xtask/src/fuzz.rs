//! Fuzzing with cargo-fuzz: every target in `fuzz/` (the knockd.conf parser, the frame
//! classifier) runs for a bounded time, starting from its checked-in seeds in
//! `fuzz/corpus/<target>`. Inputs the fuzzer finds go to `fuzz/target/corpus/<target>`, so the
//! checked-in seeds stay as they are while later runs still start from everything found so far.
//! A crash leaves its input in `fuzz/artifacts/<target>` and fails the run, naming the file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use crate::shell::{self, output, run as sh};

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
pub fn bootstrap() -> anyhow::Result<()> {
    if has_cargo_fuzz() {
        return Ok(());
    }
    eprintln!("bootstrap: installing cargo-fuzz (about two minutes)");
    sh(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("the fuzz targets run with cargo-fuzz")
}

/// Runs each fuzz target for `seconds_per_target` seconds (after building it); fails on the
/// first target that crashes, times out or runs out of memory.
pub fn run_bounded(seconds_per_target: u64) -> anyhow::Result<()> {
    if !has_cargo_fuzz() {
        bail!("cargo-fuzz is missing; run `cargo xtask bootstrap`");
    }
    let fuzz = shell::root().join("fuzz");
    let targets = output(shell::nightly_cargo().args(["fuzz", "list"]))
        .context("`cargo fuzz list` failed")?;
    let targets: Vec<&str> = targets
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if targets.is_empty() {
        bail!(
            "`cargo fuzz list` found no fuzz targets in {}",
            fuzz.display()
        );
    }
    for target in targets {
        let found = fuzz.join("target").join("corpus").join(target);
        fs::create_dir_all(&found).with_context(|| format!("cannot create {}", found.display()))?;
        let seeds = fuzz.join("corpus").join(target);
        let started = SystemTime::now();
        eprintln!("fuzz: {target} for {seconds_per_target} s");
        let mut command = shell::nightly_cargo();
        command.args(["fuzz", "run", target]).arg(&found);
        // libFuzzer gives up on a corpus directory that does not exist.
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command
            .arg("--")
            .arg(format!("-max_total_time={seconds_per_target}"))
            // A single input taking seconds is a hang, as bad as a crash for a packet path.
            .arg("-timeout=10")
            .arg("-rss_limit_mb=4096");
        let dictionary = fuzz.join(format!("{target}.dict"));
        if dictionary.exists() {
            command.arg(format!("-dict={}", dictionary.display()));
        }
        let status = command
            .status()
            .with_context(|| format!("cannot start cargo fuzz for {target}"))?;
        if !status.success() {
            let artifacts = fuzz.join("artifacts").join(target);
            match newest_since(&artifacts, started) {
                Some(input) => bail!(
                    "fuzz target `{target}` failed ({status}) on the input {}; replay it with \
                     `rustup run nightly cargo fuzz run {target} {}`",
                    input.display(),
                    input.display()
                ),
                None => bail!(
                    "fuzz target `{target}` failed ({status}) and left no input in {}",
                    artifacts.display()
                ),
            }
        }
        eprintln!("fuzz: {target}: no failure in {seconds_per_target} s");
    }
    Ok(())
}

fn has_cargo_fuzz() -> bool {
    output(Command::new("cargo").args(["fuzz", "--version"])).is_some()
}

/// The file most recently written to `dir`, if written after `since`.
fn newest_since(dir: &Path, since: SystemTime) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .filter(|(modified, _)| *modified >= since)
        .max()
        .map(|(_, path)| path)
}
