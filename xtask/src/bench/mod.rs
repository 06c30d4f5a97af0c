//! `cargo xtask bench`: knock measured against the empty XDP program and against Debian's knockd.
//! Benchmarks are not tests: they print tables and record them (docs/bench.md, docs/bench.png);
//! `--quick` only proves that every part still runs, and writes under target/bench/ instead.
//!
//! The per-packet parts load the XDP program through knock-user, which needs the BPF toolchain
//! that bootstrap installs; so the plain xtask binary bootstraps and then runs itself again
//! built with the `bench` feature, which does the measuring.

mod chart;

#[cfg(feature = "bench")]
mod connect;
#[cfg(feature = "bench")]
mod flood;
#[cfg(feature = "bench")]
mod frames;
#[cfg(feature = "bench")]
mod growth;
#[cfg(feature = "bench")]
mod linerate;
#[cfg(feature = "bench")]
mod measure;
#[cfg(feature = "bench")]
mod packet;
#[cfg(feature = "bench")]
mod report;
#[cfg(feature = "bench")]
mod rig;
#[cfg(feature = "bench")]
mod scan;
#[cfg(feature = "bench")]
mod server;
#[cfg(feature = "bench")]
mod suite;

pub fn run(quick: bool, packets_only: bool) -> anyhow::Result<()> {
    chart::bootstrap()?;
    measure(quick, packets_only)
}

#[cfg(not(feature = "bench"))]
fn measure(quick: bool, packets_only: bool) -> anyhow::Result<()> {
    use crate::shell::{cargo, run as sh};
    let mut command = cargo();
    command.args([
        "run",
        "--quiet",
        "--package",
        "xtask",
        "--features",
        "bench",
        "--",
        "bench",
    ]);
    if quick {
        command.arg("--quick");
    }
    if packets_only {
        command.arg("--packets-only");
    }
    sh(&mut command)
}

#[cfg(feature = "bench")]
fn measure(quick: bool, packets_only: bool) -> anyhow::Result<()> {
    suite::run(quick, packets_only)
}
