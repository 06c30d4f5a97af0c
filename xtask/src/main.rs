//! `cargo xtask ...`: everything that is not a plain cargo build.

mod bootstrap;
mod demo;
mod shell;
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
    }
}
