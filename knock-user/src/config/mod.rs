//! The knockd.conf reader: the same files knockd reads, with every mistake reported by file,
//! line and key.

pub mod advice;
mod error;
pub mod keys;
pub mod meaning;
pub mod mirror;
pub mod onetime;
mod parse;
pub mod rotate;
pub(crate) mod value;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knock_common::{ProgressRule, ProtoPort};

pub use error::{ConfigError, ErrorKind};
pub use parse::parse;
pub use value::{Network, TcpFlags};

/// Where knockd and knock look for their configuration.
pub const DEFAULT_PATH: &str = "/etc/knockd.conf";
/// Where a missing /etc/knockd.conf points: knockd's package owns the file, so knock's ships
/// none, only an example.
pub const MISSING_DEFAULT: &str = "knock's package ships no configuration (knockd's owns this \
     file): start from /usr/share/doc/knock/examples/knockd.conf";
/// The longest door name: with a rotating door's `@period` it still fits the kernel's name
/// table, which a restarted daemon reads to find each door's id.
pub const MAX_NAME_LEN: usize = knock_common::status::NAME_LEN - 21;

/// A whole configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub path: PathBuf,
    pub options: Options,
    pub doors: Vec<DoorConfig>,
    /// The SPA client keys, read from `SPA_Keys`.
    pub spa_keys: Vec<crate::config::keys::ClientKey>,
}

/// The `[options]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub use_syslog: bool,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub interfaces: Vec<String>,
    /// How many sources may have knocks in progress at once (knock extension).
    pub progress_capacity: u32,
    /// How many sources the gate holds doors opened by static sequences for at once (knock
    /// extension).
    pub gate_capacity: u32,
    /// How many sources the gate holds doors opened by SPA and single-use sequences for at
    /// once, a room static sequences cannot fill (knock extension `Gate_Reserve`).
    pub gate_reserve: u32,
    /// How knock ports, protected ports and (in the stealth look) the others answer a
    /// scanner (knock extension `Ports_Look`).
    pub look: knock_common::settings::Look,
    /// The progress rule of doors that do not set their own (knock extension `Progress`).
    pub progress: ProgressRule,
    /// The UDP port of single-packet authorization, set when some door takes SPA.
    pub spa_port: Option<u16>,
    /// The file of SPA client keys.
    pub spa_keys: Option<PathBuf>,
    /// How far an SPA timestamp may stray from the host's clock.
    pub spa_window_s: u32,
    /// Networks the gate never blocks.
    pub always_allow: Vec<value::Network>,
    pub ban: BanOptions,
    /// The firewall open doors are mirrored into (knock extension `Mirror`).
    pub mirror: Option<mirror::Backend>,
    /// The iptables chain of the mirror (`Mirror_Chain`).
    pub mirror_chain: Option<String>,
    /// The nftables inet table of the mirror (`Mirror_Table`).
    pub mirror_table: Option<String>,
}

/// The failure budget: `failures` within `window_s` ban a source for `time_s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanOptions {
    /// Zero turns bans off.
    pub failures: u32,
    pub window_s: u32,
    pub time_s: u32,
    /// IPv6 sources are counted and banned by this prefix (`Ban_IPv6_Prefix`).
    pub prefix6: u8,
}

pub const DEFAULT_SPA_WINDOW_S: u32 = 30;
pub const DEFAULT_BAN: BanOptions = BanOptions {
    failures: 10,
    window_s: 60,
    time_s: 600,
    prefix6: knock_common::ban::DEFAULT_PREFIX6,
};

pub const DEFAULT_PROGRESS_CAPACITY: u32 = 16_384;
pub const DEFAULT_GATE_CAPACITY: u32 = 4_096;
pub const DEFAULT_GATE_RESERVE: u32 = 1_024;

impl Default for Options {
    fn default() -> Self {
        Self {
            use_syslog: false,
            log_file: None,
            pid_file: None,
            interfaces: Vec::new(),
            progress_capacity: DEFAULT_PROGRESS_CAPACITY,
            gate_capacity: DEFAULT_GATE_CAPACITY,
            gate_reserve: DEFAULT_GATE_RESERVE,
            look: knock_common::settings::Look::Closed,
            progress: ProgressRule::Strict,
            spa_port: None,
            spa_keys: None,
            spa_window_s: DEFAULT_SPA_WINDOW_S,
            always_allow: Vec::new(),
            ban: DEFAULT_BAN,
            mirror: None,
            mirror_chain: None,
            mirror_table: None,
        }
    }
}

/// One door: a section other than `[options]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoorConfig {
    pub name: String,
    /// The line of the section header, for messages.
    pub line: usize,
    pub sequence: Vec<ProtoPort>,
    pub one_time_sequences: Option<PathBuf>,
    /// For a one-time door, the line of its file that `sequence` came from; `None` with
    /// `one_time_sequences` set means every sequence is used and the door is closed.
    pub one_time_line: Option<usize>,
    pub seq_timeout: Duration,
    pub tcp_flags: TcpFlags,
    pub start_command: Option<String>,
    pub start_command_6: Option<String>,
    pub stop_command: Option<String>,
    pub stop_command_6: Option<String>,
    pub cmd_timeout: Duration,
    pub target: Option<IpAddr>,
    /// The ports the door opens (knock extension `Protect`; else what the start command opens,
    /// else tcp/22). Why these: `protection`.
    pub protect: Vec<ProtoPort>,
    pub protection: Protection,
    /// How wrong packets affect an attempt (knock extension `Progress`). Always set once the
    /// file is parsed: a door without its own takes the [options] default.
    pub progress: Option<ProgressRule>,
    /// Single-packet authorization opens this door (knock extension `SPA`).
    pub spa: bool,
    /// The secret of a rotating sequence (knock extension `Secret_File`).
    pub secret_file: Option<PathBuf>,
    pub secret: Option<crate::config::rotate::Secret>,
    /// For one period's instance of a rotating door: the period number.
    pub period: Option<u64>,
}

/// Why a door protects the ports it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// `Protect = ...` in the door.
    Given,
    /// Read from the start command, which opens these ports for the knocker (see
    /// [`meaning`]).
    Derived,
    /// The start command only takes access away (`iptables -D`, `ufw delete`): under knockd the
    /// door opened nothing, so it protects nothing.
    RemovesAccess,
    /// No start command: knock's default, 22:tcp.
    Default,
    /// knock cannot tell what the start command opens: knock's default, 22:tcp, with a warning.
    Unclear,
}

pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(25);
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PROTECTED_PORT: ProtoPort = ProtoPort::tcp(22);

impl DoorConfig {
    pub fn new(name: &str, line: usize) -> Self {
        Self {
            name: name.to_owned(),
            line,
            sequence: Vec::new(),
            one_time_sequences: None,
            one_time_line: None,
            seq_timeout: DEFAULT_SEQ_TIMEOUT,
            tcp_flags: TcpFlags::default(),
            start_command: None,
            start_command_6: None,
            stop_command: None,
            stop_command_6: None,
            cmd_timeout: DEFAULT_CMD_TIMEOUT,
            target: None,
            protect: vec![DEFAULT_PROTECTED_PORT],
            protection: Protection::Default,
            progress: None,
            spa: false,
            secret_file: None,
            secret: None,
            period: None,
        }
    }

    /// The name that tells this door apart in the kernel: its own, with the period for the
    /// instances of a rotating door.
    pub fn key(&self) -> String {
        match self.period {
            Some(period) => format!("{}@{period}", self.name),
            None => self.name.clone(),
        }
    }

    pub fn progress_rule(&self) -> ProgressRule {
        self.progress.unwrap_or_default()
    }

    /// The start command for a source of this family: `Start_Command_6` falls back to
    /// `Start_Command` for IPv6, and an empty `Start_Command_6 =` means none, as in knockd.
    pub fn start_command_for(&self, ip: IpAddr) -> Option<&str> {
        for_family(ip, &self.start_command, &self.start_command_6)
    }

    /// The stop command for a source of this family, as [`Self::start_command_for`].
    pub fn stop_command_for(&self, ip: IpAddr) -> Option<&str> {
        for_family(ip, &self.stop_command, &self.stop_command_6)
    }
}

fn for_family<'a>(ip: IpAddr, v4: &'a Option<String>, v6: &'a Option<String>) -> Option<&'a str> {
    match ip {
        IpAddr::V6(_) => match v6.as_deref() {
            Some("") => None,
            Some(command) => Some(command),
            None => v4.as_deref(),
        },
        IpAddr::V4(_) => v4.as_deref(),
    }
}

/// The text of a file the configuration names (the configuration itself, key and secret
/// files), or an error that names it.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| unreadable(path, &source))
}

/// A file that cannot be read; a missing /etc/knockd.conf points at knock's example.
fn unreadable(path: &Path, source: &std::io::Error) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        line: 0,
        key: None,
        kind: ErrorKind::Unreadable(
            if source.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) {
                format!("{source}; {MISSING_DEFAULT}")
            } else {
                source.to_string()
            },
        ),
    }
}

/// Reads and parses a configuration file, and reads the current sequence of one-time doors.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    let mut config = parse(path, &text)?;
    for door in &mut config.doors {
        if let Some(file) = &door.one_time_sequences {
            let file = crate::config::onetime::resolve(path, file);
            door.load_one_time(&file)?;
            door.one_time_sequences = Some(file);
        }
        if let Some(file) = &door.secret_file {
            let file = crate::config::onetime::resolve(path, file);
            let secret = crate::config::rotate::load(&file)?;
            if secret.door != door.name {
                return Err(ConfigError {
                    path: file,
                    line: 0,
                    key: Some("door".into()),
                    kind: ErrorKind::BadValue(format!(
                        "the secret is for door `{}`, but it is used by door `{}` (line {})",
                        secret.door, door.name, door.line
                    )),
                });
            }
            door.secret = Some(secret);
            door.secret_file = Some(file);
        }
    }
    if let Some(file) = &config.options.spa_keys {
        let file = crate::config::onetime::resolve(path, file);
        config.spa_keys = crate::config::keys::load(&file)?;
        check_key_doors(&config, &file)?;
        config.options.spa_keys = Some(file);
    }
    check_one_time_ports(&config)?;
    Ok(config)
}

/// A one-time sequence never knocks on a protected port or the SPA port: a knock there would be
/// a connection to the gate itself. (Ports the host serves, which change while it runs, are
/// left to the plan: such a door stays shut, see `plan::expand`.)
fn check_one_time_ports(config: &Config) -> Result<(), ConfigError> {
    for door in &config.doors {
        let (Some(file), Some(line)) = (&door.one_time_sequences, door.one_time_line) else {
            continue;
        };
        for step in &door.sequence {
            let problem = if config
                .options
                .spa_port
                .is_some_and(|p| ProtoPort::udp(p) == *step)
            {
                "the SPA port".to_owned()
            } else if let Some(other) = config.doors.iter().find(|d| d.protect.contains(step)) {
                format!("a port door `{}` protects", other.name)
            } else {
                continue;
            };
            return Err(ConfigError {
                path: file.clone(),
                line,
                key: None,
                kind: ErrorKind::BadValue(format!(
                    "the sequence knocks on {}:{}, {problem}; use another line",
                    step.port,
                    step.proto_name()
                )),
            });
        }
    }
    Ok(())
}

/// Every door a key line names is a door that takes SPA.
fn check_key_doors(config: &Config, file: &Path) -> Result<(), ConfigError> {
    for key in &config.spa_keys {
        for name in &key.doors {
            let door = config.doors.iter().find(|d| &d.name == name);
            let problem = match door {
                None => format!(
                    "key {} names door `{name}`, which the configuration lacks",
                    key.id
                ),
                Some(door) if !door.spa => format!(
                    "key {} names door `{name}`, which takes no SPA (add `SPA = yes` to it)",
                    key.id
                ),
                Some(_) => continue,
            };
            return Err(ConfigError {
                path: file.to_owned(),
                line: key.line,
                key: Some(
                    crate::config::keys::DOORS_FIELD
                        .trim_end_matches('=')
                        .to_owned(),
                ),
                kind: ErrorKind::BadValue(problem),
            });
        }
    }
    Ok(())
}

impl DoorConfig {
    /// Takes the first unused sequence of a one-time file as this door's sequence.
    pub fn load_one_time(&mut self, file: &Path) -> Result<(), ConfigError> {
        match crate::config::onetime::current(file)? {
            Some(current) => {
                self.sequence = current.sequence;
                self.one_time_line = Some(current.line);
            }
            None => {
                self.sequence.clear();
                self.one_time_line = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
