//! The `knock-user` binary: daemon, client and operator commands. Invoked as `knockd` (through
//! a symlink), it takes knockd's command line and runs the daemon, so init scripts and unit files
//! written for knockd keep working.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use knock_user::client::{self, Family};
use knock_user::config::{self, DEFAULT_PATH};
use knock_user::daemon::{self, RunOptions};
use knock_user::loader::AttachMode;
use knock_user::plan::Switches;

/// Port knocking in the kernel: an XDP replacement for knockd.
#[derive(Parser)]
#[command(name = "knock-user", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// knockd's command line, for `knockd` invocations.
#[derive(Parser)]
#[command(
    name = "knockd",
    version,
    about = "knock, answering to knockd's command line"
)]
struct KnockdCli {
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to the interface and guard it until SIGINT or SIGTERM; SIGHUP reloads.
    Run(RunArgs),
    /// Validate a configuration and print the effective doors.
    Check {
        #[arg(short = 'c', long, value_name = "FILE", default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Send a knock sequence, as knock(1) does.
    Knock(KnockArgs),
}

/// The daemon's options: knockd's, plus the XDP mode.
#[derive(Args)]
struct RunArgs {
    /// The knockd.conf to read.
    #[arg(short = 'c', long, value_name = "FILE", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// The interface to guard (repeatable); default: Interface lines, then the default route's.
    #[arg(
        short = 'i',
        long = "interface",
        visible_alias = "iface",
        value_name = "NAME"
    )]
    interfaces: Vec<String>,
    /// Where the program runs: in the driver, or in the generic path for drivers without XDP.
    #[arg(long, value_enum, default_value_t = AttachMode::Native)]
    xdp_mode: AttachMode,
    /// Detach from the terminal and write a pid file.
    #[arg(short = 'd', long)]
    daemon: bool,
    /// Print the XDP program's per-packet debug log.
    #[arg(short = 'D', long)]
    debug: bool,
    /// Show host names of knocking sources (lookups never delay the daemon).
    #[arg(short = 'l', long)]
    lookup: bool,
    /// IPv6 packets never count as knocks (the gate still guards IPv6).
    #[arg(short = '4', long = "only-ip-v4")]
    only_ipv4: bool,
    /// Also log resets, closed doors and the program's size.
    #[arg(short, long)]
    verbose: bool,
    /// The pid file written with --daemon (default: PidFile, then /var/run/knockd.pid).
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A log file for knockd's lines (overrides LogFile).
    #[arg(short = 'g', long = "logfile", value_name = "FILE")]
    log_file: Option<PathBuf>,
}

#[derive(Args)]
struct KnockArgs {
    /// Knock with UDP unless a port says :tcp.
    #[arg(short, long)]
    udp: bool,
    /// Milliseconds to wait between knocks.
    #[arg(short, long, value_name = "MS", default_value_t = 0)]
    delay: u64,
    /// Use IPv4 for a host name.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 for a host name.
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// Print each knock.
    #[arg(short, long)]
    verbose: bool,
    /// The host to knock on.
    host: String,
    /// The knocks: PORT, PORT:tcp or PORT:udp.
    #[arg(required = true, value_name = "PORT[:tcp|:udp]")]
    ports: Vec<String>,
}

fn main() -> ExitCode {
    let invoked_as_knockd = std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|n| n == "knockd")
        })
        .unwrap_or(false);
    let command = if invoked_as_knockd {
        Command::Run(KnockdCli::parse().run)
    } else {
        Cli::parse().command
    };
    match dispatch(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("knock-user: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => daemon::run(RunOptions {
            config: args.config,
            interfaces: args.interfaces,
            mode: args.xdp_mode,
            verbose: args.verbose,
            debug: args.debug,
            daemon: args.daemon,
            lookup: args.lookup,
            switches: Switches {
                ipv4_only: args.only_ipv4,
            },
            pid_file: args.pid_file,
            log_file: args.log_file,
        }),
        Command::Check { config } => {
            let config = config::load(&config)?;
            print!("{}", knock_user::check::describe(&config));
            for warning in knock_user::check::warnings(&config, &knock_user::served::ports()) {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        Command::Knock(args) => {
            let family = match (args.ipv4, args.ipv6) {
                (true, _) => Family::V4,
                (_, true) => Family::V6,
                _ => Family::Any,
            };
            let ports = args
                .ports
                .iter()
                .map(|spec| client::parse_port(spec, args.udp))
                .collect::<Result<Vec<_>, _>>()?;
            let ip = client::resolve(&args.host, family)?;
            client::knock_all(ip, &ports, Duration::from_millis(args.delay), args.verbose)?;
            Ok(())
        }
    }
}
