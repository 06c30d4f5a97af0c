//! The line-by-line reader of knockd.conf.
//!
//! Differences from knockd, all toward catching mistakes: unknown keys, repeated keys, empty
//! values and bad numbers are errors instead of being ignored or read as zero; a `#` after
//! whitespace starts a comment in every value except commands (which the shell reads anyway).

use std::collections::HashMap;
use std::path::Path;

use knock_common::MAX_DOORS;

use super::{Config, ConfigError, DoorConfig, ErrorKind, MAX_NAME_LEN, Options};
use super::{mirror, value};

mod doors;

/// What a key is once its aliases are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    UseSyslog,
    LogFile,
    PidFile,
    Interface,
    ProgressCapacity,
    GateCapacity,
    Sequence,
    OneTimeSequences,
    SeqTimeout,
    TcpFlags,
    StartCommand,
    StartCommand6,
    CmdTimeout,
    StopCommand,
    StopCommand6,
    Target,
    Protect,
    Progress,
    SpaPort,
    SpaKeys,
    SpaWindow,
    AlwaysAllow,
    BanFailures,
    BanWindow,
    BanTime,
    Spa,
    SecretFile,
    Mirror,
    MirrorChain,
    MirrorTable,
    GateReserve,
    PortsLook,
    BanPrefix6,
}

/// Every key knock reads, aliases included, and whether knockd reads it too.
const KEYS: &[(&str, Key, Origin)] = {
    use Key::*;
    use Origin::{Extension, Knockd};
    &[
        ("UseSyslog", UseSyslog, Knockd),
        ("LogFile", LogFile, Knockd),
        ("PidFile", PidFile, Knockd),
        ("Interface", Interface, Knockd),
        ("Sequence", Sequence, Knockd),
        ("One_Time_Sequences", OneTimeSequences, Knockd),
        ("Seq_Timeout", SeqTimeout, Knockd),
        ("Timeout", SeqTimeout, Knockd),
        ("TCPFlags", TcpFlags, Knockd),
        ("Start_Command", StartCommand, Knockd),
        ("Command", StartCommand, Knockd),
        ("Start_Command_6", StartCommand6, Knockd),
        ("Command_6", StartCommand6, Knockd),
        ("Cmd_Timeout", CmdTimeout, Knockd),
        ("Stop_Command", StopCommand, Knockd),
        ("Stop_Command_6", StopCommand6, Knockd),
        ("Target", Target, Knockd),
        ("Protect", Protect, Extension),
        ("Progress", Progress, Extension),
        ("Progress_Capacity", ProgressCapacity, Extension),
        ("Gate_Capacity", GateCapacity, Extension),
        ("Always_Allow", AlwaysAllow, Extension),
        ("Ban_Failures", BanFailures, Extension),
        ("Ban_Window", BanWindow, Extension),
        ("Ban_Time", BanTime, Extension),
        ("SPA", Spa, Extension),
        ("SPA_Keys", SpaKeys, Extension),
        ("SPA_Port", SpaPort, Extension),
        ("SPA_Window", SpaWindow, Extension),
        ("Secret_File", SecretFile, Extension),
        ("Mirror", Mirror, Extension),
        ("Mirror_Chain", MirrorChain, Extension),
        ("Mirror_Table", MirrorTable, Extension),
        ("Gate_Reserve", GateReserve, Extension),
        ("Ports_Look", PortsLook, Extension),
        ("Ban_IPv6_Prefix", BanPrefix6, Extension),
    ]
};

/// Whether knockd knows a key, or only knock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Knockd,
    Extension,
}

/// The keys knock reads beyond knockd's, as the unknown-key error and the docs list them.
pub fn extension_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .filter(|(_, _, origin)| *origin == Origin::Extension)
        .map(|(name, _, _)| *name)
}

impl Key {
    fn from_name(name: &str) -> Option<Self> {
        KEYS.iter()
            .find(|(known, _, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, key, _)| *key)
    }

    const fn is_option(self) -> bool {
        matches!(
            self,
            Self::UseSyslog
                | Self::LogFile
                | Self::PidFile
                | Self::Interface
                | Self::ProgressCapacity
                | Self::GateCapacity
                | Self::SpaPort
                | Self::SpaKeys
                | Self::SpaWindow
                | Self::AlwaysAllow
                | Self::BanFailures
                | Self::BanWindow
                | Self::BanTime
                | Self::Mirror
                | Self::MirrorChain
                | Self::MirrorTable
                | Self::GateReserve
                | Self::PortsLook
                | Self::BanPrefix6
        )
    }

    const fn is_command(self) -> bool {
        matches!(
            self,
            Self::StartCommand | Self::StartCommand6 | Self::StopCommand | Self::StopCommand6
        )
    }

    /// Keys that may appear more than once in a section.
    const fn repeats(self) -> bool {
        matches!(self, Self::Interface | Self::AlwaysAllow)
    }
}

enum Section {
    None,
    Options,
    Door(usize),
}

struct Reader<'a> {
    path: &'a Path,
    options: Options,
    doors: Vec<DoorConfig>,
    section: Section,
    seen: HashMap<Key, usize>,
}

/// Parses the text of a configuration file; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut reader = Reader {
        path,
        options: Options::default(),
        doors: Vec::new(),
        section: Section::None,
        seen: HashMap::new(),
    };
    for (index, raw) in text.lines().enumerate() {
        reader.line(index + 1, raw)?;
    }
    reader.finish()
}

impl Reader<'_> {
    fn error(&self, line: usize, key: Option<&str>, kind: ErrorKind) -> ConfigError {
        ConfigError {
            path: self.path.to_owned(),
            line,
            key: key.map(str::to_owned),
            kind,
        }
    }

    fn line(&mut self, number: usize, raw: &str) -> Result<(), ConfigError> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        if let Some(header) = line.strip_prefix('[') {
            return self.section(number, header);
        }
        let Some((name, value)) = line.split_once('=') else {
            if line.eq_ignore_ascii_case("usesyslog") {
                return self.set(number, "UseSyslog", Key::UseSyslog, "");
            }
            return Err(self.error(number, Some(line), ErrorKind::MissingEquals));
        };
        let name = name.trim();
        let key = Key::from_name(name)
            .ok_or_else(|| self.error(number, Some(name), ErrorKind::UnknownKey))?;
        if key == Key::UseSyslog {
            return Err(self.error(number, Some(name), ErrorKind::UseSyslogWithValue));
        }
        let value = if key.is_command() {
            value.trim()
        } else {
            strip_comment(value)
        };
        // knockd documents an empty `Start_Command_6 =` (and `Stop_Command_6 =`) as "no command
        // for IPv6 sources", instead of falling back to the IPv4 one.
        let empty_means_none = matches!(key, Key::StartCommand6 | Key::StopCommand6);
        if value.is_empty() && !empty_means_none {
            return Err(self.error(number, Some(name), ErrorKind::MissingValue("this key")));
        }
        self.set(number, name, key, value)
    }

    fn section(&mut self, number: usize, header: &str) -> Result<(), ConfigError> {
        let name = header
            .strip_suffix(']')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.error(number, None, ErrorKind::BadSection))?;
        self.seen.clear();
        if name.eq_ignore_ascii_case("options") {
            self.section = Section::Options;
            return Ok(());
        }
        if name.len() > MAX_NAME_LEN {
            return Err(self.error(number, None, ErrorKind::LongName(name.len())));
        }
        if let Some(first) = self.doors.iter().find(|d| d.name == name) {
            let kind = ErrorKind::DuplicateDoor(name.to_owned(), first.line);
            return Err(self.error(number, None, kind));
        }
        self.doors.push(DoorConfig::new(name, number));
        self.section = Section::Door(self.doors.len() - 1);
        Ok(())
    }

    fn set(&mut self, number: usize, name: &str, key: Key, value: &str) -> Result<(), ConfigError> {
        let bad = |reader: &Self, message: String| {
            reader.error(number, Some(name), ErrorKind::BadValue(message))
        };
        // `Progress` also sits in [options], as the default for doors that do not set it.
        let door_index = match (&self.section, key.is_option() || key == Key::Progress) {
            (Section::None, _) => {
                return Err(self.error(number, Some(name), ErrorKind::OutsideSection));
            }
            (Section::Options, false) => {
                return Err(self.error(number, Some(name), ErrorKind::DoorKeyInOptions));
            }
            (Section::Door(index), true) if key == Key::Progress => Some(*index),
            (Section::Door(_), true) => {
                return Err(self.error(number, Some(name), ErrorKind::OptionKeyInDoor));
            }
            (Section::Options, true) => None,
            (Section::Door(index), false) => Some(*index),
        };
        if !key.repeats()
            && let Some(first) = self.seen.insert(key, number)
        {
            return Err(self.error(number, Some(name), ErrorKind::Duplicate(first)));
        }
        let Some(index) = door_index else {
            let options = &mut self.options;
            match key {
                Key::UseSyslog => options.use_syslog = true,
                Key::LogFile => options.log_file = Some(value.into()),
                Key::PidFile => options.pid_file = Some(value.into()),
                Key::Interface => {
                    for iface in value.split(',').map(str::trim) {
                        if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
                            let message = format!("`{iface}` is not an interface name");
                            return Err(bad(self, message));
                        }
                        self.options.interfaces.push(iface.to_owned());
                    }
                }
                Key::ProgressCapacity => {
                    let n =
                        value::capacity(value, 16, 16 * 1024 * 1024).map_err(|m| bad(self, m))?;
                    self.options.progress_capacity = n;
                }
                Key::Progress => {
                    let rule = value::progress_rule(value).map_err(|m| bad(self, m))?;
                    self.options.progress = rule;
                }
                Key::SpaPort => {
                    let port = value::proto_port(value).map_err(|m| bad(self, m))?;
                    self.options.spa_port = Some(port.port);
                }
                Key::SpaKeys => self.options.spa_keys = Some(value.into()),
                Key::SpaWindow => {
                    let window = value::seconds(value).map_err(|m| bad(self, m))?;
                    self.options.spa_window_s = window.as_secs() as u32;
                }
                Key::AlwaysAllow => {
                    for item in value.split(',') {
                        let network = value::network(item).map_err(|m| bad(self, m))?;
                        self.options.always_allow.push(network);
                    }
                }
                Key::BanFailures => {
                    let n = value::capacity(value, 0, 1_000_000).map_err(|m| bad(self, m))?;
                    self.options.ban.failures = n;
                }
                Key::BanWindow => {
                    let window = value::seconds(value).map_err(|m| bad(self, m))?;
                    self.options.ban.window_s = window.as_secs() as u32;
                }
                Key::BanTime => {
                    let time = value::seconds(value).map_err(|m| bad(self, m))?;
                    self.options.ban.time_s = time.as_secs() as u32;
                }
                Key::GateCapacity => {
                    let n = value::capacity(value, 16, 1024 * 1024).map_err(|m| bad(self, m))?;
                    self.options.gate_capacity = n;
                }
                Key::GateReserve => {
                    let n = value::capacity(value, 16, 1024 * 1024).map_err(|m| bad(self, m))?;
                    self.options.gate_reserve = n;
                }
                Key::PortsLook => {
                    self.options.look = value::look(value).map_err(|m| bad(self, m))?;
                }
                Key::BanPrefix6 => {
                    let prefix = value::capacity(value.trim_start_matches('/'), 16, 128)
                        .map_err(|m| bad(self, m))?;
                    self.options.ban.prefix6 = prefix as u8;
                }
                Key::Mirror => {
                    let backend = mirror::Backend::parse(value).map_err(|m| bad(self, m))?;
                    self.options.mirror = Some(backend);
                    self.check_mirror(number)?;
                }
                Key::MirrorChain => {
                    mirror::check_chain(value).map_err(|m| bad(self, m))?;
                    self.options.mirror_chain = Some(value.to_owned());
                    self.check_mirror(number)?;
                }
                Key::MirrorTable => {
                    mirror::check_table(value).map_err(|m| bad(self, m))?;
                    self.options.mirror_table = Some(value.to_owned());
                    self.check_mirror(number)?;
                }
                _ => unreachable!("door keys are rejected in [options] above"),
            }
            return Ok(());
        };
        let parsed: Result<(), String> = (|| {
            let door = &mut self.doors[index];
            match key {
                Key::Sequence => door.sequence = value::sequence(value)?,
                Key::OneTimeSequences => door.one_time_sequences = Some(value.into()),
                Key::SeqTimeout => door.seq_timeout = value::seconds(value)?,
                Key::TcpFlags => door.tcp_flags = value::tcp_flags(value)?,
                Key::StartCommand => door.start_command = Some(value.to_owned()),
                Key::StartCommand6 => door.start_command_6 = Some(value.to_owned()),
                Key::CmdTimeout => door.cmd_timeout = value::seconds(value)?,
                Key::StopCommand => door.stop_command = Some(value.to_owned()),
                Key::StopCommand6 => door.stop_command_6 = Some(value.to_owned()),
                Key::Target => door.target = Some(value::address(value)?),
                Key::Protect => {
                    door.protect = value::protected_ports(value)?;
                    door.protection = super::Protection::Given;
                }
                Key::Progress => door.progress = Some(value::progress_rule(value)?),
                Key::Spa => door.spa = value::yes_no(value)?,
                Key::SecretFile => door.secret_file = Some(value.into()),
                _ => unreachable!("option keys are rejected in doors above"),
            }
            Ok(())
        })();
        parsed.map_err(|message| bad(self, message))
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        if self.doors.is_empty() {
            return Err(self.error(0, None, ErrorKind::NoDoors));
        }
        if self.doors.len() > MAX_DOORS {
            let line = self.doors[MAX_DOORS].line;
            return Err(self.error(line, None, ErrorKind::TooManyDoors { max: MAX_DOORS }));
        }
        for door in &self.doors {
            let sources = usize::from(!door.sequence.is_empty())
                + usize::from(door.one_time_sequences.is_some())
                + usize::from(door.secret_file.is_some());
            if sources == 0 && !door.spa {
                let kind = ErrorKind::NoSequence(door.name.clone());
                return Err(self.error(door.line, None, kind));
            }
            if sources > 1 {
                let keys: Vec<&str> = [
                    (!door.sequence.is_empty(), "Sequence"),
                    (door.one_time_sequences.is_some(), "One_Time_Sequences"),
                    (door.secret_file.is_some(), "Secret_File"),
                ]
                .into_iter()
                .filter_map(|(set, key)| set.then_some(key))
                .collect();
                let listed = match keys.as_slice() {
                    [first, second] => format!("both {first} and {second}"),
                    [first, second, third] => format!("{first}, {second} and {third}"),
                    _ => keys.join(", "),
                };
                let kind = ErrorKind::TwoSequences(door.name.clone(), listed);
                return Err(self.error(door.line, None, kind));
            }
        }
        for index in 0..self.doors.len() {
            self.derive_protection(index)?;
        }
        self.check_spa()?;
        self.check_overlaps()?;
        let default_rule = self.options.progress;
        let mut doors = self.doors;
        for door in &mut doors {
            door.progress.get_or_insert(default_rule);
        }
        Ok(Config {
            path: self.path.to_owned(),
            options: self.options,
            doors,
            spa_keys: Vec::new(),
        })
    }
}

impl Reader<'_> {
    /// `Mirror_Chain` goes with `Mirror = iptables` and `Mirror_Table` with `Mirror = nftables`
    /// (either alone names where a `--mirror` on the command line writes).
    fn check_mirror(&self, number: usize) -> Result<(), ConfigError> {
        use mirror::Backend;
        let options = &self.options;
        let (key, backend) = match options.mirror {
            Some(Backend::Iptables) if options.mirror_table.is_some() => {
                ("Mirror_Table", "nftables")
            }
            Some(Backend::Nftables | Backend::None) if options.mirror_chain.is_some() => {
                ("Mirror_Chain", "iptables")
            }
            Some(Backend::None) if options.mirror_table.is_some() => ("Mirror_Table", "nftables"),
            _ => return Ok(()),
        };
        let message = format!("{key} goes with Mirror = {backend}");
        Err(self.error(number, Some(key), ErrorKind::BadValue(message)))
    }
}

/// Cuts a trailing ` # comment` from a value.
fn strip_comment(value: &str) -> &str {
    let mut previous_is_space = true;
    for (index, c) in value.char_indices() {
        if c == '#' && previous_is_space {
            return value[..index].trim();
        }
        previous_is_space = c.is_whitespace();
    }
    value.trim()
}
