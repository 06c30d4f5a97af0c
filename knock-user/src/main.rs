//! The `knock-user` binary: daemon, client and operator commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use knock_user::client::{self, Family};
use knock_user::config::{self, DEFAULT_PATH};
use knock_user::daemon::{self, RunOptions};
use knock_user::loader::AttachMode;

/// Port knocking in the kernel: an XDP replacement for knockd.
#[derive(Parser)]
#[command(name = "knock-user", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to the interface and guard it until SIGINT or SIGTERM.
    Run {
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
        /// Log resets and details as well.
        #[arg(short, long)]
        verbose: bool,
        /// Print the XDP program's per-packet debug log.
        #[arg(short = 'D', long)]
        debug: bool,
    },
    /// Validate a configuration and print the effective doors.
    Check {
        #[arg(short = 'c', long, value_name = "FILE", default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Send a knock sequence, as knock(1) does.
    Knock {
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("knock-user: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            config,
            interfaces,
            xdp_mode,
            verbose,
            debug,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(daemon::run(RunOptions {
                config,
                interfaces,
                mode: xdp_mode,
                verbose,
                debug,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let config = config::load(&config)?;
            print!("{}", knock_user::check::describe(&config));
            Ok(ExitCode::SUCCESS)
        }
        Command::Knock {
            udp,
            delay,
            ipv4,
            ipv6,
            verbose,
            host,
            ports,
        } => {
            let family = match (ipv4, ipv6) {
                (true, _) => Family::V4,
                (_, true) => Family::V6,
                _ => Family::Any,
            };
            let ports = ports
                .iter()
                .map(|spec| client::parse_port(spec, udp))
                .collect::<Result<Vec<_>, _>>()?;
            let ip = client::resolve(&host, family)?;
            client::knock_all(ip, &ports, Duration::from_millis(delay), verbose)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
