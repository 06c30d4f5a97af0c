//! The `knock-user` binary: daemon, client and operator commands. Invoked as `knockd` (through
//! a symlink), it takes knockd's command line and runs the daemon, so init scripts and unit files
//! written for knockd keep working.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use knock_user::cli::hosts::Source;
use knock_user::cli::knock::{self as client, Family};
use knock_user::cli::status::Format;
use knock_user::config::DEFAULT_PATH;
use knock_user::daemon::{self, RunOptions};
use knock_user::kernel::AttachMode;
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
    /// Validate a configuration, print the effective doors, and judge the interfaces `run`
    /// would guard; takes `run`'s options, so it checks what `run` will do.
    Check {
        #[command(flatten)]
        run: RunArgs,
        /// Print only warnings and errors (knock.service checks before each start and reload).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Send a knock sequence, as knock(1) does, or the current rotating sequence of a door.
    Knock(KnockArgs),
    /// Send a single-packet authorization that opens a door.
    Spa(SpaArgs),
    /// Make an SPA client key (a key file line), or with --rotating a rotating-sequence secret.
    Keygen(KeygenArgs),
    /// Show what the kernel is doing: daemon, doors, attempts, open doors, counters, map fill.
    Status(StatusArgs),
    /// Close every door, detach the program and remove its pinned state.
    Stop(StopArgs),
    /// Keep what `run --trial` started: without this, it undoes itself when the trial ends.
    Confirm(StopArgs),
    /// Forget a source's failures and lift its ban, with or without a running daemon.
    Unban(UnbanArgs),
    /// Write man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateManuals { dir: PathBuf },
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
    /// Where the program runs: in the driver where it can (auto), only in the driver (native),
    /// or in the generic path that every driver has (skb).
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
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
    /// Where the program and its state are pinned (a directory per daemon, named after its
    /// first interface), so they outlive the daemon.
    #[arg(long, value_name = "DIR", default_value = knock_user::kernel::pins::DEFAULT_ROOT)]
    state_dir: PathBuf,
    /// Pin nothing: the program detaches and all state goes when the daemon exits, as knockd.
    #[arg(long)]
    ephemeral: bool,
    /// Where used single-use sequences are recorded on disk, so that a reboot cannot revive
    /// one (a file per daemon, named after its first interface).
    #[arg(long, value_name = "DIR", default_value = knock_user::daemon::DEFAULT_RECORD_DIR)]
    record_dir: PathBuf,
    /// Mirror open doors into the host's firewall, so a default-drop INPUT lets the source in
    /// too (overrides Mirror in [options]).
    #[arg(long, value_enum, value_name = "FIREWALL")]
    mirror: Option<knock_user::mirror::Backend>,
    /// Undo everything after DURATION (90s, 10m, 1h), as `knock-user stop` does, unless
    /// `knock-user confirm` arrives first: a first start that cannot lock you out.
    #[arg(long, value_name = "DURATION", value_parser = knock_user::cli::duration)]
    trial: Option<Duration>,
    /// Judge every packet but drop none: log (rate-limited) and count the new connections the
    /// gate would drop.
    #[arg(long)]
    observe: bool,
    /// The iptables chain of --mirror iptables, which INPUT jumps to (default: KNOCKD).
    #[arg(long, value_name = "NAME")]
    mirror_chain: Option<String>,
    /// The inet table of --mirror nftables, holding the sets knock4 and knock6 (default: knock).
    #[arg(long, value_name = "NAME")]
    mirror_table: Option<String>,
    /// How the ports answer a scanner (overrides Ports_Look in [options]): `closed` (knock and
    /// protected ports answer as closed ports do), `filtered` (they drop silently: only where
    /// every closed port is filtered), `stealth` (every port the host does not serve drops).
    #[arg(long, value_enum, value_name = "LOOK")]
    ports_look: Option<PortsLook>,
}

/// The values of `--ports-look`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum PortsLook {
    Closed,
    Filtered,
    Stealth,
}

impl From<PortsLook> for knock_common::settings::Look {
    fn from(look: PortsLook) -> Self {
        match look {
            PortsLook::Closed => Self::Closed,
            PortsLook::Filtered => Self::Filtered,
            PortsLook::Stealth => Self::Stealth,
        }
    }
}

/// Which pinned daemons an operator command is about.
#[derive(Args)]
struct Pinned {
    /// Only the daemon guarding this interface.
    #[arg(
        short = 'i',
        long = "interface",
        visible_alias = "iface",
        value_name = "NAME"
    )]
    interface: Option<String>,
    /// Where daemons pin their state.
    #[arg(long, value_name = "DIR", default_value = knock_user::kernel::pins::DEFAULT_ROOT)]
    state_dir: PathBuf,
}

impl Pinned {
    fn nothing_attached(&self) -> String {
        knock_user::cli::status::nothing_attached(&self.state_dir, self.interface.as_deref())
    }
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    pinned: Pinned,
    /// As JSON.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Counters and gauges in node_exporter's textfile format.
    #[arg(long)]
    prometheus: bool,
    /// Write the report to FILE (atomically, through a temporary file) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct StopArgs {
    #[command(flatten)]
    pinned: Pinned,
}

#[derive(Args)]
struct UnbanArgs {
    #[command(flatten)]
    pinned: Pinned,
    /// The source to let knock again.
    address: std::net::IpAddr,
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
    /// Knock the current sequence of a rotating door, from its secret file.
    #[arg(short = 's', long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// The host to knock on.
    host: String,
    /// The knocks: PORT, PORT:tcp or PORT:udp; with --secret-file, optionally the door's name.
    #[arg(
        required_unless_present = "secret_file",
        value_name = "PORT[:tcp|:udp]"
    )]
    ports: Vec<String>,
    /// With --secret-file: the sequence of the period holding this Unix time instead of now
    /// (tests compare clients built for different CPUs).
    #[arg(long, hide = true, value_name = "UNIX_S", requires = "secret_file")]
    at: Option<u64>,
}

#[derive(Args)]
struct SpaArgs {
    /// The key file; its first key is used unless --key-id picks another (default: the saved
    /// host's, else ~/.config/knock/spa.key).
    #[arg(short, long, value_name = "FILE")]
    key_file: Option<String>,
    #[arg(long, value_name = "ID")]
    key_id: Option<u32>,
    /// The server's SPA port (default: the saved host's, else 62202).
    #[arg(short, long)]
    port: Option<u16>,
    /// The address the server sees this host as: an address, or `auto` to ask a STUN server
    /// (behind NAT).
    #[arg(long, value_name = "ADDR|auto", value_parser = Source::parse)]
    source: Option<Source>,
    /// The STUN server for --source auto, HOST[:PORT] (default: stun.l.google.com:19302).
    #[arg(long, value_name = "HOST:PORT")]
    stun: Option<String>,
    /// The saved hosts file (default: ~/.config/knock/hosts).
    #[arg(long, value_name = "FILE")]
    hosts: Option<PathBuf>,
    /// Use IPv4 for a host name.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 for a host name.
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// Say what was sent.
    #[arg(short, long)]
    verbose: bool,
    /// Seal with this Unix time instead of now (tests compare clients built for different CPUs).
    #[arg(long, hide = true, value_name = "UNIX_S")]
    at: Option<u64>,
    /// Seal with this nonce, 32 hex digits, instead of random bytes: the packet is then the same
    /// every time, which only tests want (the server refuses it as a replay after the first).
    #[arg(long, hide = true, value_name = "HEX", value_parser = nonce)]
    nonce: Option<[u8; 16]>,
    /// The server, or the name of a saved host.
    host: String,
    /// The door to open (default: the saved host's).
    door: Option<String>,
}

fn nonce(text: &str) -> Result<[u8; 16], String> {
    knock_user::config::keys::unhex::<16>(text)
        .ok_or_else(|| format!("`{text}` is not 32 hex digits"))
}

#[derive(Args)]
struct KeygenArgs {
    /// The key id (default: random).
    #[arg(long)]
    id: Option<u32>,
    /// A note kept in the key file line, such as the client's name.
    #[arg(long, default_value = "")]
    comment: String,
    /// Write the key (or secret) to FILE, created with mode 0600; an existing file is never
    /// overwritten.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Save the key for the client in one step: a key file (-o, else NAME.key beside the hosts
    /// file) and a [NAME] section in ~/.config/knock/hosts, so `knock-user spa NAME` is enough.
    /// Prints the line for the server's SPA_Keys file.
    #[arg(long, value_name = "NAME", requires_all = ["host", "door"], conflicts_with = "rotating")]
    save_host: Option<String>,
    /// --save-host: the server's name or address.
    #[arg(long, requires = "save_host")]
    host: Option<String>,
    /// --save-host: the door SPA opens.
    #[arg(long, requires = "save_host")]
    door: Option<String>,
    /// --save-host: the address to sign for, or `auto` (STUN, behind NAT).
    #[arg(long, value_name = "ADDR|auto", value_parser = Source::parse, requires = "save_host")]
    source: Option<Source>,
    /// --save-host: the STUN server for `source = auto`.
    #[arg(long, value_name = "HOST:PORT", requires = "save_host")]
    stun: Option<String>,
    /// --save-host: the hosts file (default: ~/.config/knock/hosts).
    #[arg(long, value_name = "FILE", requires = "save_host")]
    hosts: Option<PathBuf>,
    /// Make a rotating-sequence secret for this door instead of an SPA key.
    #[arg(long, value_name = "DOOR")]
    rotating: Option<String>,
    /// Rotating: seconds each sequence lasts.
    #[arg(long, default_value_t = knock_user::config::rotate::DEFAULT_PERIOD_S)]
    period: u64,
    /// Rotating: the port range, LOW-HIGH.
    #[arg(long, default_value = "10000-32767")]
    ports: String,
    /// Rotating: knocks per sequence.
    #[arg(long, default_value_t = knock_user::config::rotate::DEFAULT_LENGTH)]
    length: usize,
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

fn family(ipv4: bool, ipv6: bool) -> Family {
    match (ipv4, ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    }
}

/// `~/` at the start of a path means the home directory.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::GenerateManuals { dir } => {
            for path in
                knock_user::cli::manuals::write(<Cli as clap::CommandFactory>::command(), &dir)?
            {
                println!("{}", path.display());
            }
            Ok(())
        }
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
                look: args.ports_look.map(Into::into),
                guard: false,
                host_resets: false,
                observe: args.observe,
            },
            trial: args.trial,
            pid_file: args.pid_file,
            log_file: args.log_file,
            state_root: (!args.ephemeral).then_some(args.state_dir),
            mirror: knock_user::mirror::Request {
                backend: args.mirror,
                chain: args.mirror_chain,
                table: args.mirror_table,
            },
            record_dir: args.record_dir,
        }),
        Command::Status(args) => knock_user::cli::status::run(
            &args.pinned.state_dir,
            args.pinned.interface.as_deref(),
            if args.json {
                Format::Json
            } else if args.prometheus {
                Format::Prometheus
            } else {
                Format::Text
            },
            args.output.as_deref(),
        ),
        Command::Stop(args) => {
            let pinned = &args.pinned;
            let stopped =
                knock_user::cli::stop::stop(&pinned.state_dir, pinned.interface.as_deref())?;
            if stopped.is_empty() {
                eprintln!("{}", pinned.nothing_attached());
            }
            for done in stopped {
                println!("{done}");
            }
            Ok(())
        }
        Command::Confirm(args) => {
            let pinned = &args.pinned;
            for done in
                knock_user::cli::confirm::confirm(&pinned.state_dir, pinned.interface.as_deref())?
            {
                println!("{done}");
            }
            Ok(())
        }
        Command::Unban(args) => {
            let pinned = &args.pinned;
            let unbanned = knock_user::cli::unban::unban(
                &pinned.state_dir,
                pinned.interface.as_deref(),
                args.address,
            )?;
            if unbanned.is_empty() {
                anyhow::bail!("{}", pinned.nothing_attached());
            }
            for done in unbanned {
                println!("{}: {done}", args.address);
            }
            Ok(())
        }
        Command::Check { run, quiet } => {
            knock_user::cli::check::run(&run.config, quiet, run.only_ipv4, &run.interfaces)
        }
        Command::Knock(args) => {
            let ports = match &args.secret_file {
                Some(file) => client::rotating_sequence(
                    file,
                    &args.ports,
                    args.at.unwrap_or_else(knock_user::system::clock::unix_s),
                )?,
                None => args
                    .ports
                    .iter()
                    .map(|spec| client::parse_port(spec, args.udp))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let ip = client::resolve(&args.host, family(args.ipv4, args.ipv6))?;
            client::knock_all(ip, &ports, Duration::from_millis(args.delay), args.verbose)?;
            Ok(())
        }
        Command::Spa(args) => {
            let sent = knock_user::cli::spa::run(knock_user::cli::spa::Request {
                target: args.host,
                door: args.door,
                key_file: args.key_file.as_deref().map(expand_home),
                key_id: args.key_id,
                port: args.port,
                source: args.source,
                stun: args.stun,
                family: family(args.ipv4, args.ipv6),
                hosts: args.hosts,
                at: args.at,
                nonce: args.nonce,
            })?;
            if args.verbose {
                println!("{sent}");
            }
            Ok(())
        }
        Command::Keygen(args) => {
            use knock_user::cli::keygen;
            let output = args.output.as_deref();
            if let Some(door) = &args.rotating {
                let secret = keygen::rotating_file(
                    door,
                    args.period,
                    &args.ports,
                    args.length,
                    knock_user::system::served::ports()
                        .iter()
                        .map(|p| p.port)
                        .collect(),
                )?;
                return keygen::emit(&secret, output);
            }
            let key = keygen::client_key(args.id, &args.comment)?;
            let (Some(name), Some(host), Some(door)) = (args.save_host, args.host, args.door)
            else {
                return keygen::emit(&format!("{}\n", key.line()), output);
            };
            let saved = knock_user::cli::hosts::SavedHost {
                name: name.clone(),
                host,
                door,
                source: args.source,
                stun: args.stun,
                ..Default::default()
            };
            let key_file = keygen::save_host(&key, &saved, output, args.hosts)?;
            eprintln!("{}", keygen::saved_note(&key_file, &name));
            println!("{}", key.line());
            Ok(())
        }
    }
}
