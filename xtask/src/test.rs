//! `cargo xtask test`: every test, in order of cost. Tests that need root and a kernel run one
//! at a time.

use anyhow::bail;

use crate::shell::{self, cargo, run as sh};

pub fn run() -> anyhow::Result<()> {
    step("formatting");
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    sh(cargo().args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"]))?;
    step("lints");
    sh(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    sh(cargo().args([
        "clippy",
        "--all-targets",
        "--features",
        "privileged-tests",
        "-p",
        "knock-user",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The XDP program only builds for the BPF target, with nightly.
    sh(shell::nightly_cargo()
        .args(["clippy", "-p", "knock-ebpf", "--bins", "--release"])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"",
        ))?;
    step("unit tests (host)");
    sh(cargo().args(["test"]))?;
    if !shell::is_root() {
        bail!("the kernel tests load XDP programs and build network namespaces: run as root");
    }
    step("kernel tests (test_run verdicts, namespaces, real sockets)");
    sh(cargo().args([
        "test",
        "-p",
        "knock-user",
        "--features",
        "privileged-tests",
        "--test",
        "*",
        "--",
        "--test-threads=1",
    ]))?;
    step("Debian package (build, install into a scratch root, remove)");
    let deb = crate::package::build(crate::package::Choice::Native)?;
    crate::package::check(&deb)?;
    step("benchmarks, quick (only proves that every part still runs; numbers not kept)");
    crate::bench::run(true, false)?;
    step("fuzzing (30 s per target)");
    crate::fuzz::run_bounded(30)?;
    eprintln!("\nxtask test: all passed");
    Ok(())
}

fn step(name: &str) {
    eprintln!("\n== {name}");
}
