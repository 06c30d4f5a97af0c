//! The scenario table: its reader, and what a scenario says. The format is described at the top
//! of scenarios.txt.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use knock_lab::{CLIENT_V4, CLIENT_V6, OTHER_V4, SERVER_ALT_V4, SERVER_V4, SERVER_V6};

/// A second IPv6 source, which the lab does not have: only crafted frames come from it.
const OTHER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);

/// The addresses a scenario can name.
fn addresses() -> [(&'static str, IpAddr); 7] {
    [
        ("server", SERVER_V4.into()),
        ("alt", SERVER_ALT_V4.into()),
        ("server6", SERVER_V6.into()),
        ("client", CLIENT_V4.into()),
        ("other", OTHER_V4.into()),
        ("client6", CLIENT_V6.into()),
        ("other6", OTHER_V6.into()),
    ]
}

/// The address a scenario names, by name or literally.
pub fn address(name: &str) -> Option<IpAddr> {
    addresses()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ip)| ip)
        .or_else(|| name.parse().ok())
}

/// The name of an address in outcomes, or the address itself when it has none.
pub fn name_of(ip: IpAddr) -> String {
    addresses()
        .into_iter()
        .find(|(_, a)| *a == ip)
        .map_or_else(|| ip.to_string(), |(n, _)| n.to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One step of a scenario's play.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Debian's knock(1) client in the client namespace, knocking on `to`.
    Knock {
        to: IpAddr,
        ports: Vec<String>,
    },
    /// A crafted frame, `times` times, from the client's veth.
    Send {
        proto: Proto,
        port: u16,
        flags: u8,
        from: IpAddr,
        to: IpAddr,
        times: u32,
        /// An IPv6 destination options header before the transport header.
        options: bool,
        /// The first fragment of a datagram with more to come.
        fragment: bool,
    },
    /// A real TCP connection from the client; its result goes into the outcome.
    Connect {
        port: u16,
        to: IpAddr,
    },
    Wait(Duration),
    /// The configuration rewritten (to `reload config:`, if the scenario has one) and the
    /// daemon sent SIGHUP.
    Reload,
}

/// What a run leaves behind: `door@source` for every source a start command ran for (with
/// `*N` when it ran N times), `port:open` or `port:shut` for every connection tried,
/// `file=line/line` for every file of the scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome(pub BTreeSet<String>);

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let tokens: Vec<&str> = self.0.iter().map(String::as_str).collect();
        f.write_str(&tokens.join(" "))
    }
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// Where the scenario starts in scenarios.txt.
    pub line: usize,
    /// The scenario as written, for failure messages.
    pub text: String,
    /// A knockd.conf without start commands: the runner adds the recording ones.
    pub config: String,
    /// The configuration that `reload` puts in place, if not the same.
    pub reload_config: Option<String>,
    pub files: Vec<(String, String)>,
    pub daemon_args: Vec<String>,
    pub listen: Vec<u16>,
    pub play: Vec<Action>,
    /// What Debian's knockd does.
    pub knockd: Outcome,
    /// What knock does with `Progress = knockd`, when it differs on purpose, and the key of the
    /// section of docs/migrating-from-knockd.md that says why.
    pub deliberate: Option<(Outcome, String)>,
    /// What knock does with `Progress = strict`.
    pub strict: Outcome,
    /// Why knockd's log lines for the knocks are not compared with knock's, when they are not
    /// (`lines: unchecked because REASON`).
    pub lines_unchecked: Option<String>,
}

impl Scenario {
    /// What knock must do in knockd mode.
    pub fn knock_expected(&self) -> &Outcome {
        self.deliberate.as_ref().map_or(&self.knockd, |(o, _)| o)
    }
}

/// Reads the whole table; errors name the line.
pub fn parse(text: &str) -> Result<Vec<Scenario>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut current: Option<Draft> = None;
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let line = lines[index];
        index += 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            return Err(format!("line {number}: an indented line outside a block"));
        }
        let (key, value) = line
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("line {number}: expected `key: value`"))?;
        // Blocks: the indented lines that follow.
        let mut block = Vec::new();
        while index < lines.len()
            && (lines[index].starts_with(char::is_whitespace) || lines[index].trim().is_empty())
        {
            block.push(lines[index].trim());
            index += 1;
        }
        // Blank lines inside a block are kept (a file may hold them); those after it are not.
        while block.last().is_some_and(|l| l.is_empty()) {
            block.pop();
            index -= 1;
        }
        let at = |e: String| format!("line {number}: {e}");
        if key == "scenario" {
            if let Some(draft) = current.take() {
                scenarios.push(draft.finish(&lines)?);
            }
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(at(format!("`{value}` is not a snake_case name")));
            }
            if scenarios.iter().any(|s| s.name == value) {
                return Err(at(format!("scenario `{value}` appears twice")));
            }
            current = Some(Draft::new(value, number));
            continue;
        }
        let draft = current
            .as_mut()
            .ok_or_else(|| at("a key before the first `scenario:`".into()))?;
        draft.end = index;
        draft.set(key, value, &block).map_err(at)?;
    }
    if let Some(draft) = current.take() {
        scenarios.push(draft.finish(&lines)?);
    }
    Ok(scenarios)
}

struct Draft {
    name: String,
    line: usize,
    end: usize,
    config: Option<String>,
    reload_config: Option<String>,
    files: Vec<(String, String)>,
    daemon_args: Vec<String>,
    listen: Vec<u16>,
    play: Option<Vec<Action>>,
    knockd: Option<Outcome>,
    deliberate: Option<(Outcome, String)>,
    strict: Option<Outcome>,
    lines_unchecked: Option<String>,
}

impl Draft {
    fn new(name: &str, line: usize) -> Self {
        Self {
            name: name.to_owned(),
            line,
            end: line,
            config: None,
            reload_config: None,
            files: Vec::new(),
            daemon_args: Vec::new(),
            listen: Vec::new(),
            play: None,
            knockd: None,
            deliberate: None,
            strict: None,
            lines_unchecked: None,
        }
    }

    fn set(&mut self, key: &str, value: &str, block: &[&str]) -> Result<(), String> {
        let inline_only = |what: &str| {
            if block.is_empty() {
                Ok(())
            } else {
                Err(format!("`{what}` takes no indented lines"))
            }
        };
        match key {
            "config" => self.config = Some(lines_of(value, block).join("\n") + "\n"),
            "reload config" => {
                self.reload_config = Some(lines_of(value, block).join("\n") + "\n");
            }
            "play" => {
                let actions = lines_of(value, block)
                    .iter()
                    .map(|l| action(l))
                    .collect::<Result<Vec<_>, _>>()?;
                self.play = Some(actions);
            }
            "daemon" => {
                inline_only(key)?;
                self.daemon_args = value.split_whitespace().map(str::to_owned).collect();
            }
            "listen" => {
                inline_only(key)?;
                self.listen = value
                    .split_whitespace()
                    .map(port)
                    .collect::<Result<_, _>>()?;
            }
            "knockd" => {
                inline_only(key)?;
                self.knockd = Some(outcome(value)?);
            }
            "strict" => {
                inline_only(key)?;
                self.strict = Some(outcome(value)?);
            }
            "lines" => {
                inline_only(key)?;
                let reason = value
                    .strip_prefix("unchecked because ")
                    .filter(|r| !r.trim().is_empty())
                    .ok_or("`lines: unchecked because REASON`")?;
                self.lines_unchecked = Some(reason.trim().to_owned());
            }
            "knock" => {
                inline_only(key)?;
                let (tokens, reason) = value.split_once(" because ").ok_or(
                    "`knock:` states a deliberate difference: `knock: OUTCOME because KEY`",
                )?;
                self.deliberate = Some((outcome(tokens)?, reason.trim().to_owned()));
            }
            _ => {
                let name = key
                    .strip_prefix("file ")
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && !n.contains('/'))
                    .ok_or_else(|| format!("unknown key `{key}`"))?;
                self.files
                    .push((name.to_owned(), lines_of(value, block).join("\n") + "\n"));
            }
        }
        Ok(())
    }

    fn finish(self, lines: &[&str]) -> Result<Scenario, String> {
        let missing = |what: &str| format!("scenario `{}` has no `{what}:`", self.name);
        let text = lines[self.line - 1..self.end.min(lines.len())]
            .iter()
            .map(|l| l.trim_end())
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_owned();
        Ok(Scenario {
            text,
            config: self.config.ok_or_else(|| missing("config"))?,
            play: self.play.ok_or_else(|| missing("play"))?,
            knockd: self.knockd.ok_or_else(|| missing("knockd"))?,
            strict: self.strict.ok_or_else(|| missing("strict"))?,
            name: self.name,
            line: self.line,
            reload_config: self.reload_config,
            files: self.files,
            daemon_args: self.daemon_args,
            listen: self.listen,
            deliberate: self.deliberate,
            lines_unchecked: self.lines_unchecked,
        })
    }
}

fn lines_of<'a>(value: &'a str, block: &[&'a str]) -> Vec<&'a str> {
    std::iter::once(value)
        .filter(|v| !v.is_empty())
        .chain(block.iter().copied())
        .collect()
}

fn port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{text}` is not a port"))
}

fn ip(name: &str) -> Result<IpAddr, String> {
    address(name).ok_or_else(|| format!("`{name}` is neither an address nor a name for one"))
}

fn outcome(text: &str) -> Result<Outcome, String> {
    if text == "none" {
        return Ok(Outcome::default());
    }
    let mut tokens = BTreeSet::new();
    for token in text.split_whitespace() {
        let valid = if let Some((door, source)) = token.split_once('@') {
            // `door@source*3`: the start command ran three times.
            let (source, count) = source.split_once('*').unwrap_or((source, "2"));
            !door.is_empty()
                && address(source).is_some()
                && count.parse::<u32>().is_ok_and(|n| n >= 2)
        } else if let Some((port_text, state)) = token.split_once(':') {
            port(port_text).is_ok() && matches!(state, "open" | "shut")
        } else {
            token
                .split_once('=')
                .is_some_and(|(file, _)| !file.is_empty())
        };
        if !valid {
            return Err(format!(
                "`{token}` is not an outcome: door@source, port:open, port:shut or file=lines"
            ));
        }
        tokens.insert(token.to_owned());
    }
    Ok(Outcome(tokens))
}

fn action(line: &str) -> Result<Action, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (verb, mut rest) = words.split_first().ok_or("an empty action")?;
    // `to ADDR` may follow the verb; `from`, `flags`, `times`, `options` and `fragment` only
    // apply to `send`.
    let mut to = None;
    let mut from = None;
    let mut flags = None;
    let mut times = 1;
    let mut options = false;
    let mut fragment = false;
    let mut operands = Vec::new();
    while let Some((word, tail)) = rest.split_first() {
        let value = || {
            tail.first()
                .copied()
                .ok_or(format!("`{word}` needs a value"))
        };
        match *word {
            "options" | "fragment" => {
                options |= *word == "options";
                fragment |= *word == "fragment";
                rest = tail;
                continue;
            }
            "to" => to = Some(ip(value()?)?),
            "from" => from = Some(ip(value()?)?),
            "flags" => flags = Some(tcp_flags(value()?)?),
            "times" => times = value()?.parse().map_err(|_| "`times` needs a count")?,
            operand => {
                operands.push(operand);
                rest = tail;
                continue;
            }
        }
        rest = &tail[1..];
    }
    let server = |v6: bool| ip(if v6 { "server6" } else { "server" });
    match *verb {
        "knock" => {
            if operands.is_empty() {
                return Err("`knock` needs ports".into());
            }
            for operand in &operands {
                let (number, proto) = operand.split_once(':').unwrap_or((operand, "tcp"));
                port(number)?;
                if !matches!(proto, "tcp" | "udp") {
                    return Err(format!("`{operand}`: the protocol is tcp or udp"));
                }
            }
            Ok(Action::Knock {
                to: to.map_or_else(|| server(false), Ok)?,
                ports: operands.iter().map(|o| (*o).to_owned()).collect(),
            })
        }
        "send" => {
            let [proto, number] = operands[..] else {
                return Err(
                    "`send tcp|udp PORT [flags F,G] [from A] [to A] [times N] [options] [fragment]`"
                        .into(),
                );
            };
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => return Err(format!("`{proto}`: the protocol is tcp or udp")),
            };
            let v6 = to.or(from).is_some_and(|a| a.is_ipv6());
            let to = to.map_or_else(|| server(v6), Ok)?;
            let from = from.map_or_else(|| ip(if v6 { "client6" } else { "client" }), Ok)?;
            if to.is_ipv6() != from.is_ipv6() {
                return Err("`from` and `to` must be of one family".into());
            }
            if options && !to.is_ipv6() {
                return Err("`options` is an IPv6 extension header".into());
            }
            Ok(Action::Send {
                proto,
                port: port(number)?,
                flags: flags.unwrap_or(SYN),
                from,
                to,
                times,
                options,
                fragment,
            })
        }
        "connect" => {
            let [number] = operands[..] else {
                return Err("`connect PORT [to A]`".into());
            };
            Ok(Action::Connect {
                port: port(number)?,
                to: to.map_or_else(|| server(false), Ok)?,
            })
        }
        "wait" => {
            let [ms] = operands[..] else {
                return Err("`wait MILLISECONDS`".into());
            };
            let ms = ms
                .parse()
                .map_err(|_| format!("`{ms}` is not milliseconds"))?;
            Ok(Action::Wait(Duration::from_millis(ms)))
        }
        "reload" if operands.is_empty() => Ok(Action::Reload),
        _ => Err(format!("unknown action `{line}`")),
    }
}

const SYN: u8 = 0x02;

fn tcp_flags(text: &str) -> Result<u8, String> {
    text.split(',').try_fold(0, |bits, name| {
        let bit = match name {
            "fin" => 0x01,
            "syn" => SYN,
            "rst" => 0x04,
            "psh" => 0x08,
            "ack" => 0x10,
            "urg" => 0x20,
            _ => return Err(format!("`{name}` is not a TCP flag")),
        };
        Ok(bits | bit)
    })
}
