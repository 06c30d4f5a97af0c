//! What `check` (and `run`, at start) tell about a file beyond its errors: where knock will
//! behave differently from knockd with this very file, and whether the SSH session they run in
//! would get back in. Pure: the host's facts (cron's flushes, the SSH session, `-4`) come in as
//! arguments.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use knock_common::ProtoPort;

use super::meaning::{Effect, effect, removes_rule_of, rule_chain};
use super::{Config, DoorConfig, Protection};

/// Something in the host's schedule that takes rules out of a firewall chain now and then, as
/// the guide's `/etc/cron.daily/clear_knockd_iptables` (`iptables -F KNOCKD`) does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flush {
    /// The file that runs it.
    pub file: PathBuf,
    pub chain: String,
    /// How often, in seconds, when the schedule says.
    pub every_s: Option<u64>,
}

/// The flushes in cron's files: `(path, text)` pairs of `/etc/cron.{hourly,daily,weekly,
/// monthly}/*` (scripts) and crontabs (`/etc/crontab`, `/etc/cron.d/*`, user crontabs).
pub fn flushes(files: &[(PathBuf, String)]) -> Vec<Flush> {
    let mut found = Vec::new();
    for (file, text) in files {
        let period = script_period(file);
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (every_s, command) = match period {
                Some(every_s) => (Some(every_s), line),
                None => match crontab_line(line) {
                    Some((every_s, command)) => (every_s, command),
                    None => continue,
                },
            };
            for chain in flushed_chains(command) {
                found.push(Flush {
                    file: file.clone(),
                    chain,
                    every_s,
                });
            }
        }
    }
    found
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The period of a script in `/etc/cron.daily/` and its siblings.
fn script_period(file: &Path) -> Option<u64> {
    let dir = file.parent()?.file_name()?.to_str()?;
    match dir {
        "cron.hourly" => Some(HOUR),
        "cron.daily" => Some(DAY),
        "cron.weekly" => Some(7 * DAY),
        "cron.monthly" => Some(30 * DAY),
        _ => None,
    }
}

/// A crontab line's period (when it is a plain one) and command. System crontabs carry a user
/// field after the schedule, which is skipped as part of the command's words.
fn crontab_line(line: &str) -> Option<(Option<u64>, &str)> {
    if let Some(rest) = line.strip_prefix('@') {
        let (word, command) = rest.split_once(char::is_whitespace)?;
        let every_s = match word {
            "hourly" => Some(HOUR),
            "daily" | "midnight" => Some(DAY),
            "weekly" => Some(7 * DAY),
            "monthly" => Some(30 * DAY),
            _ => None,
        };
        return Some((every_s, command));
    }
    let fields: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
    let [minute, hour, day, month, weekday, command] = fields.as_slice() else {
        return None;
    };
    let fixed = |f: &str| f.parse::<u32>().is_ok();
    let every_s = match (fixed(minute), *hour, *day, *month, *weekday) {
        (true, "*", "*", "*", "*") => Some(HOUR),
        (true, h, "*", "*", "*") if fixed(h) => Some(DAY),
        (true, h, "*", "*", w) if fixed(h) && fixed(w) => Some(7 * DAY),
        _ => None,
    };
    Some((every_s, command))
}

/// The chains `iptables -F CHAIN` (or `ip6tables`) flushes in a command line.
fn flushed_chains(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut chains = Vec::new();
    for (index, word) in words.iter().enumerate() {
        let program = word.rsplit('/').next().unwrap_or(word);
        if !(program.starts_with("iptables") || program.starts_with("ip6tables")) {
            continue;
        }
        let flush = words[index + 1..]
            .iter()
            .take_while(|w| !matches!(**w, ";" | "&&" | "||" | "|"))
            .position(|w| *w == "-F" || *w == "--flush");
        if let Some(at) = flush
            && let Some(chain) = words.get(index + 1 + at + 1)
            && !chain.starts_with('-')
        {
            chains.push((*chain).to_owned());
        }
    }
    chains
}

/// What knock needs to know about the host to advise on a file.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub flushes: Vec<Flush>,
    /// `-4`: IPv6 packets never count as knocks.
    pub ipv4_only: bool,
}

/// Where knock will do something else than knockd did with this file, one line per finding,
/// each naming its door.
pub fn differences(config: &Config, facts: &Facts) -> Vec<String> {
    let mut said = Vec::new();
    for door in &config.doors {
        if door.protection == Protection::Unclear {
            said.push(format!(
                "[{}]: knock cannot tell which ports the start command opens (`{}`), so the \
                 door opens knock's default, {}; say which with Protect = PORT[:udp],... (or \
                 `none`)",
                door.name,
                door.start_command
                    .as_deref()
                    .or(door.start_command_6.as_deref())
                    .unwrap_or_default(),
                list(&door.protect)
            ));
        }
        if let Some(line) = start_without_stop(config, door, facts) {
            said.push(line);
        }
        let udp: Vec<ProtoPort> = door
            .protect
            .iter()
            .filter(|p| **p == ProtoPort::udp(p.port))
            .copied()
            .collect();
        if !udp.is_empty() {
            said.push(format!(
                "[{}]: protects {}: UDP has no connections, so every datagram meets the gate, \
                 and Cmd_Timeout ({} s) after the knock the service stops hearing the knocker, \
                 even in the middle of a session (a firewall rule with conntrack keeps it); set \
                 Cmd_Timeout to the longest session",
                door.name,
                list(&udp),
                door.cmd_timeout.as_secs()
            ));
        }
    }
    if facts.ipv4_only {
        let guarded: Vec<ProtoPort> = config
            .doors
            .iter()
            .flat_map(|d| d.protect.iter().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !guarded.is_empty() {
            said.push(format!(
                "-4: no IPv6 knock counts, but the gate still guards IPv6: new IPv6 \
                 connections to {} are dropped for every source outside Always_Allow (knockd \
                 -4 left IPv6 to the firewall)",
                list(&guarded)
            ));
        }
    }
    said
}

/// A start command whose rule stays until something removes it: under knockd the knocker stays
/// in that long, under knock only until Cmd_Timeout.
fn start_without_stop(config: &Config, door: &DoorConfig, facts: &Facts) -> Option<String> {
    let start = door
        .start_command
        .as_deref()
        .or(door.start_command_6.as_deref())?;
    if door.stop_command.is_some()
        || door.protect.is_empty()
        || !matches!(effect(start), Effect::Opens(_))
    {
        return None;
    }
    let timeout = door.cmd_timeout.as_secs();
    let mut line = format!(
        "[{}]: the start command has no Stop_Command. Under knockd its rule let the knocker in \
         until something removed it; knock's gate shuts {} to new connections from them after \
         Cmd_Timeout ({timeout} s), whatever the rule says (open sessions stay)",
        door.name,
        list(&door.protect)
    );
    let closer = config.doors.iter().find(|other| {
        other
            .start_command
            .as_deref()
            .is_some_and(|c| removes_rule_of(c, start))
    });
    let flush = rule_chain(start).and_then(|chain| facts.flushes.iter().find(|f| f.chain == chain));
    if let Some(closer) = closer {
        line.push_str(&format!(
            ". Knocking [{}] removes the rule but does not shut the gate: set Cmd_Timeout to \
             how long a knock should let someone in",
            closer.name
        ));
    } else if let Some(flush) = flush {
        match flush.every_s {
            Some(every_s) => line.push_str(&format!(
                ". {} flushes {} every {}: Cmd_Timeout = {every_s} keeps the door open as long \
                 as the rule",
                flush.file.display(),
                flush.chain,
                period(every_s)
            )),
            None => line.push_str(&format!(
                ". {} flushes {}: set Cmd_Timeout to its period in seconds",
                flush.file.display(),
                flush.chain
            )),
        }
    } else {
        line.push_str(
            ": set Cmd_Timeout to how long a knock should let someone in (86400 for a day), \
             or add a Stop_Command that removes the rule",
        );
    }
    Some(line)
}

fn period(seconds: u64) -> String {
    match seconds {
        HOUR => "hour".to_owned(),
        DAY => "day".to_owned(),
        s if s == 7 * DAY => "week".to_owned(),
        s => format!("{s} s"),
    }
}

fn list(ports: &[ProtoPort]) -> String {
    ports
        .iter()
        .map(|p| format!("{}:{}", p.port, p.proto_name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The warning for an operator whose SSH session (`$SSH_CONNECTION`: `client port server
/// port`) comes from an address that would not get back in once knock guards: its port is
/// protected and the address is not always allowed. `None` when there is nothing to fear.
pub fn lockout(config: &Config, ssh_connection: &str) -> Option<String> {
    let mut fields = ssh_connection.split_whitespace();
    let client: IpAddr = fields.next()?.parse().ok()?;
    let _client_port = fields.next()?;
    let _server = fields.next()?;
    let port: u16 = fields.next()?.parse().ok()?;
    let ssh = ProtoPort::tcp(port);
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    let doors: Vec<&str> = config
        .doors
        .iter()
        .filter(|d| d.protect.contains(&ssh))
        .map(|d| d.name.as_str())
        .collect();
    if doors.is_empty()
        || config
            .options
            .always_allow
            .iter()
            .any(|network| network.contains(client))
    {
        return None;
    }
    Some(format!(
        "this SSH session comes from {client} to port {port}, which door(s) {} guard; \
         {client} is not in Always_Allow, so once knock guards, a new connection from it needs \
         a knock (this session stays up). Add `Always_Allow = {client}` (or its network) to \
         [options], or start with `knock-user run --trial 10m` and run `knock-user confirm` \
         once a new connection gets in",
        doors
            .iter()
            .map(|d| format!("[{d}]"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests;
