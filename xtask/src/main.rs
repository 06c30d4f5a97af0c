//! `cargo xtask ...`: everything that is not a plain cargo build.

mod bench;
mod bootstrap;
mod configs;
mod cross;
mod debian;
mod demo;
mod fuzz;
mod matrix;
mod package;
mod shell;
mod system;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "knock's project commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks to build and test knock (idempotent).
    Bootstrap,
    /// Show knock guarding SSH between two network namespaces.
    Demo,
    /// Run every test: formatting, lints, unit tests, kernel verdicts, end to end.
    Test,
    /// Build static knock-user binaries for Raspberry Pis (aarch64, ARMv7, ARMv6) into
    /// target/cross/<name>/ and check them under qemu-user, their clients against the host's.
    Cross(cross::Args),
    /// Build the Debian package (cargo-deb) and print its path; --check installs it into a
    /// scratch root and checks it.
    Package(package::Args),
    /// Boot Debian's 5.10, 6.1 and 6.12 kernels (amd64, arm64; armhf 5.10 and 6.1) under
    /// qemu-system and check in each the gate, knocks, SPA and rotating doors, the JIT and the
    /// verifier's walk.
    Matrix(matrix::Args),
    /// Boot a Debian 12 guest with real systemd under qemu, install the freshly built .deb and
    /// walk README's deployment and operations steps in it (needs root; caches the guest in
    /// target/system/).
    System(system::Args),
    /// Measure knock against the empty XDP program and against Debian's knockd: per-packet cost,
    /// knock-to-connect, floods, port scans, growth. Writes docs/bench.md and docs/bench.png.
    Bench {
        /// A short run that only proves the benchmarks still work; results go to target/bench/.
        #[arg(long)]
        quick: bool,
        /// Only the per-packet cost (part 1), printed and not recorded: for working on the
        /// program's speed.
        #[arg(long)]
        packets_only: bool,
    },
}

fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bootstrap => bootstrap::run(),
        Command::Demo => {
            bootstrap::run()?;
            demo::run()
        }
        Command::Test => {
            bootstrap::run()?;
            test::run()
        }
        Command::Cross(args) => {
            bootstrap::run()?;
            cross::run(&args)
        }
        Command::Package(args) => {
            bootstrap::run()?;
            package::run(&args)
        }
        Command::Matrix(args) => {
            bootstrap::run()?;
            matrix::run(&args)
        }
        Command::System(args) => {
            bootstrap::run()?;
            system::run(&args)
        }
        Command::Bench {
            quick,
            packets_only,
        } => {
            bootstrap::run()?;
            bench::run(quick, packets_only)
        }
    }
}
