//! What a door's start command meant under knockd: which ports it opened for the knocker.
//!
//! knockd opens nothing by itself; a door means whatever its start command does to the
//! firewall. knock holds the door in its own gate and needs the ports, so where a door does not
//! say `Protect`, they are read from the start command when it says them unambiguously:
//!
//! - `iptables`/`ip6tables` (`-legacy`, `-nft`) `-A`/`-I` ... `-s %IP%` `-p tcp|udp`
//!   `--dport N` (or multiport `--dports N,M`) `-j ACCEPT`;
//! - `nft add|insert rule ... tcp|udp dport N|{ N, M } accept`, and `nft add element ...
//!   { %IP% . tcp|udp . N }` (the `address . protocol . port` sets knock's own mirror uses);
//! - `ufw allow|insert N allow|prepend allow from %IP% ... port N [proto tcp|udp]` (without a
//!   protocol ufw opens both);
//! - Debian's helper `knock_add` (`knock_helper_ipt.sh`) `-a|-i ... -f %IP% -d N [-p proto]`.
//!
//! A command that only takes access away (`iptables -D ... -j ACCEPT`, `-F`, `nft delete`,
//! `ufw delete`, `knock_add -x`) opens nothing, so its door protects nothing. Anything else
//! (another program, another target, every port, no `%IP%`, a port range) is unclear: the door
//! keeps knock's default, and `check` says so. Pure: no I/O.

use std::collections::BTreeSet;

use knock_common::ProtoPort;

/// What a start command does to the knocker's access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// It opens these ports for the knocker.
    Opens(BTreeSet<ProtoPort>),
    /// It only takes access away (deletes or flushes rules).
    RemovesOnly,
    /// knock cannot tell.
    Unclear,
}

/// What one statement of a command does.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Statement {
    Opens(BTreeSet<ProtoPort>),
    Removes,
    /// Does nothing to the firewall (`true`, `logger ...`).
    Neutral,
    Unclear,
}

/// What `command` (a knockd start command, `%IP%` unexpanded) does.
pub fn effect(command: &str) -> Effect {
    let Some(statements) = statements(command) else {
        return Effect::Unclear;
    };
    let mut opens = BTreeSet::new();
    let mut removes = false;
    for words in &statements {
        match statement(words) {
            Statement::Opens(ports) => opens.extend(ports),
            Statement::Removes => removes = true,
            Statement::Neutral => {}
            Statement::Unclear => return Effect::Unclear,
        }
    }
    if !opens.is_empty() {
        // `iptables -D ...; iptables -A ...` (take out a duplicate, then add) still opens.
        Effect::Opens(opens)
    } else if removes {
        Effect::RemovesOnly
    } else {
        Effect::Unclear
    }
}

/// The statements of a shell command line, each as its words; `None` when the quoting is
/// broken or the line uses what this reader does not follow (substitutions, subshells).
fn statements(command: &str) -> Option<Vec<Vec<String>>> {
    let mut all = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut Option<String>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => w.push(other),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => w.push(chars.next()?),
                        '$' | '`' => return None,
                        other => w.push(other),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            '$' | '`' | '(' | ')' => return None,
            // A comment runs to the end of the line.
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            // `2>&1` and `&>file` are redirections, not separators.
            '&' if word.as_deref().is_some_and(|w| w.ends_with('>'))
                || chars.peek() == Some(&'>') =>
            {
                word.get_or_insert_with(String::new).push(c);
            }
            ';' | '&' | '|' | '\n' => {
                end_word(&mut words, &mut word);
                // `&&`, `||`: one separator.
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                if !words.is_empty() {
                    all.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut words, &mut word);
    if !words.is_empty() {
        all.push(words);
    }
    Some(all.into_iter().map(without_redirections).collect())
}

/// A statement's words without its redirections (`>/dev/null`, `2>&1`, `>> log`).
fn without_redirections(words: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        let operator = word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
        if operator.starts_with('>') || operator.starts_with('<') {
            // `>` alone takes the next word as its file; `>file` and `2>&1` carry it.
            skip_next =
                operator.trim_start_matches(['>', '<', '&']).is_empty() && !operator.ends_with('&');
            continue;
        }
        kept.push(word);
    }
    kept
}

/// The program a statement runs (past `sudo` and `exec`), by its file name, and its arguments.
fn program(words: &[String]) -> Option<(&str, &[String])> {
    let mut rest = words;
    loop {
        let (first, tail) = rest.split_first()?;
        let name = first.rsplit('/').next().unwrap_or(first);
        if matches!(name, "sudo" | "exec" | "command") {
            rest = tail;
            continue;
        }
        return Some((name, tail));
    }
}

fn statement(words: &[String]) -> Statement {
    let Some((name, args)) = program(words) else {
        return Statement::Neutral;
    };
    match name {
        "iptables" | "ip6tables" | "iptables-legacy" | "ip6tables-legacy" | "iptables-nft"
        | "ip6tables-nft" => iptables(args),
        "nft" => nft(args),
        "ufw" => ufw(args),
        "knock_add" | "knock_helper_ipt.sh" => knock_add(args),
        "true" | ":" | "logger" => Statement::Neutral,
        _ => Statement::Unclear,
    }
}

/// One `port` or `port:tcp`-less number; ranges and names are not read.
fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A comma-separated list of port numbers.
fn port_list(text: &str) -> Option<Vec<u16>> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(port_number)
        .collect::<Option<Vec<_>>>()
        .filter(|ports| !ports.is_empty())
}

/// How a port number becomes a protocol's port: `ProtoPort::tcp` or `ProtoPort::udp`.
type Protocol = fn(u16) -> ProtoPort;

fn protocol(text: &str) -> Option<Vec<Protocol>> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Some(vec![ProtoPort::tcp]),
        "udp" | "17" => Some(vec![ProtoPort::udp]),
        _ => None,
    }
}

fn opens(ports: &[u16], protocols: &[Protocol]) -> Statement {
    Statement::Opens(
        ports
            .iter()
            .flat_map(|port| protocols.iter().map(move |make| make(*port)))
            .collect(),
    )
}

fn iptables(args: &[String]) -> Statement {
    #[derive(PartialEq)]
    enum Action {
        Add,
        Delete,
        Flush,
        Other,
    }
    let mut action = None;
    let mut protocols = None;
    let mut ports: Option<Vec<u16>> = None;
    let mut jump = None;
    let mut source_is_knocker = false;
    let mut table_is_filter = true;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| iter.next().cloned());
        match flag {
            "-A" | "--append" | "-I" | "--insert" => action = Some(Action::Add),
            "-D" | "--delete" => action = Some(Action::Delete),
            "-F" | "--flush" => action = Some(Action::Flush),
            "-R" | "--replace" | "-P" | "--policy" | "-N" | "--new-chain" | "-X"
            | "--delete-chain" | "-Z" | "--zero" | "-E" | "--rename-chain" => {
                action = Some(Action::Other);
            }
            "-t" | "--table" => table_is_filter = value().is_some_and(|t| t == "filter"),
            "-p" | "--protocol" => protocols = value().as_deref().and_then(protocol),
            "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
                ports = value().as_deref().and_then(port_list);
                if ports.is_none() {
                    return Statement::Unclear;
                }
            }
            "-s" | "--source" | "--src" => {
                source_is_knocker = value().is_some_and(|s| s.contains("%IP%"));
            }
            "-j" | "--jump" => jump = value(),
            // A negation makes the rule about everything else.
            "!" => return Statement::Unclear,
            _ => {}
        }
    }
    let accepts = jump.as_deref() == Some("ACCEPT");
    match action {
        Some(Action::Flush) => Statement::Removes,
        Some(Action::Delete) if accepts => Statement::Removes,
        Some(Action::Add) if accepts && table_is_filter && source_is_knocker => {
            match (ports, protocols) {
                (Some(ports), Some(protocols)) => opens(&ports, &protocols),
                _ => Statement::Unclear,
            }
        }
        _ => Statement::Unclear,
    }
}

/// nft's words, with braces and commas apart: `{22,80}` is `{ 22 , 80 }`. A rule given as one
/// quoted argument is split as nft would.
fn nft_words(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| !(a.starts_with('-') && a.len() > 1 && !a.contains(' ')))
        .flat_map(|arg| {
            arg.replace('{', " { ")
                .replace('}', " } ")
                .replace(',', " , ")
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn nft(args: &[String]) -> Statement {
    let words = nft_words(args);
    let (Some(verb), Some(object)) = (words.first(), words.get(1)) else {
        return Statement::Unclear;
    };
    match verb.as_str() {
        "delete" | "destroy" | "flush" => return Statement::Removes,
        "add" | "insert" | "create" => {}
        _ => return Statement::Unclear,
    }
    match object.as_str() {
        "rule" => nft_rule(&words[2..]),
        "element" => nft_element(&words[2..]),
        _ => Statement::Unclear,
    }
}

/// `... ip saddr %IP% tcp dport 22 accept`: the ports after `tcp dport` or `udp dport`.
fn nft_rule(words: &[String]) -> Statement {
    if words.last().map(String::as_str) != Some("accept") || !words.iter().any(|w| w == "%IP%") {
        return Statement::Unclear;
    }
    let mut found = BTreeSet::new();
    for (index, pair) in words.windows(2).enumerate() {
        if pair[1] != "dport" {
            continue;
        }
        let Some(protocols) = protocol(&pair[0]) else {
            return Statement::Unclear;
        };
        let Some(ports) = nft_ports(&words[index + 2..]) else {
            return Statement::Unclear;
        };
        if let Statement::Opens(ports) = opens(&ports, &protocols) {
            found.extend(ports);
        }
    }
    if found.is_empty() {
        Statement::Unclear
    } else {
        Statement::Opens(found)
    }
}

/// A port or a `{ N , M }` set at the start of `words`.
fn nft_ports(words: &[String]) -> Option<Vec<u16>> {
    let first = words.first()?;
    if first != "{" {
        return port_number(first).map(|p| vec![p]);
    }
    let mut ports = Vec::new();
    for word in &words[1..] {
        match word.as_str() {
            "}" => return Some(ports).filter(|p| !p.is_empty()),
            "," => {}
            other => ports.push(port_number(other)?),
        }
    }
    None
}

/// `... { %IP% . tcp . 22 }` (a `timeout` may follow each element).
fn nft_element(words: &[String]) -> Statement {
    let Some(open) = words.iter().position(|w| w == "{") else {
        return Statement::Unclear;
    };
    let mut found = BTreeSet::new();
    for element in words[open + 1..]
        .split(|w| w == "," || w == "}")
        .filter(|e| !e.is_empty())
    {
        let parts: Vec<&str> = element.iter().map(String::as_str).collect();
        let port = match parts.as_slice() {
            ["%IP%", ".", proto, ".", port, rest @ ..]
                if rest.is_empty() || rest.first() == Some(&"timeout") =>
            {
                protocol(proto).zip(port_number(port))
            }
            _ => None,
        };
        let Some((protocols, port)) = port else {
            return Statement::Unclear;
        };
        if let Statement::Opens(ports) = opens(&[port], &protocols) {
            found.extend(ports);
        }
    }
    if found.is_empty() {
        Statement::Unclear
    } else {
        Statement::Opens(found)
    }
}

fn ufw(args: &[String]) -> Statement {
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rule = match args.as_slice() {
        ["delete", ..] => return Statement::Removes,
        ["allow" | "limit", rule @ ..] => rule,
        ["prepend", "allow" | "limit", rule @ ..] => rule,
        ["insert", n, "allow" | "limit", rule @ ..] if n.parse::<u32>().is_ok() => rule,
        _ => return Statement::Unclear,
    };
    let (mut direction_in, mut from_knocker) = (true, false);
    let mut ports = None;
    let mut protocols = None;
    let mut context = "";
    let mut iter = rule.iter();
    while let Some(word) = iter.next() {
        match *word {
            "in" | "on" => {
                if *word == "on" {
                    iter.next();
                }
            }
            "out" => direction_in = false,
            "from" => {
                context = "from";
                from_knocker = iter.next().is_some_and(|a| a.contains("%IP%"));
            }
            "to" => {
                context = "to";
                iter.next();
            }
            "port" if context == "to" => {
                ports = iter.next().and_then(|p| port_list(p));
                if ports.is_none() {
                    return Statement::Unclear;
                }
            }
            "port" => {
                // A source port: not what the door is about.
                iter.next();
            }
            "proto" => {
                protocols = iter.next().and_then(|p| protocol(p));
                if protocols.is_none() {
                    return Statement::Unclear;
                }
            }
            "comment" => {
                iter.next();
            }
            _ => return Statement::Unclear,
        }
    }
    match ports {
        Some(ports) if direction_in && from_knocker => opens(
            &ports,
            &protocols.unwrap_or_else(|| vec![ProtoPort::tcp, ProtoPort::udp]),
        ),
        _ => Statement::Unclear,
    }
}

/// Debian's `knock_add` helper, which runs `iptables -A|-I|-D CHAIN -s SRC -p PROTO --dport
/// PORT -j ACCEPT` for its options.
fn knock_add(args: &[String]) -> Statement {
    let mut adds = None;
    let mut port = None;
    let mut protocols = Some(vec![ProtoPort::tcp as Protocol]);
    let mut from_knocker = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| iter.next().cloned());
        match flag {
            "-a" | "--append" | "-i" | "--insert" => adds = Some(true),
            "-x" | "--delete" => adds = Some(false),
            "-f" | "--srcaddr" => from_knocker = value().is_some_and(|v| v.contains("%IP%")),
            "-d" | "--dstport" => port = value().as_deref().and_then(port_number),
            "-p" | "--proto" => protocols = value().as_deref().and_then(protocol),
            "-c" | "--chain" => {
                value();
            }
            // A test run changes nothing.
            "-t" | "--test" | "-h" | "--help" => return Statement::Unclear,
            _ => {}
        }
    }
    match (adds, port, protocols) {
        (Some(false), _, _) => Statement::Removes,
        (Some(true), Some(port), Some(protocols)) if from_knocker => opens(&[port], &protocols),
        _ => Statement::Unclear,
    }
}

/// The chain a command's rule goes into: that of an `iptables -A|-I CHAIN`, or `knock_add`'s
/// `-c CHAIN` (`INPUT` by default).
pub fn rule_chain(command: &str) -> Option<String> {
    let (program, chain, _) = identity(command)?;
    (program != "ufw").then_some(chain)
}

/// Whether `remover` takes out the very rule `adder` puts in, as Debian's `[closeSSH]` does
/// for `[openSSH]`: the same rule with `-D` instead of `-A` or `-I`, `ufw delete`, `knock_add
/// -x`.
pub fn removes_rule_of(remover: &str, adder: &str) -> bool {
    match (identity(remover), identity(adder)) {
        (Some((p1, c1, Rule::Removed(r1))), Some((p2, c2, Rule::Added(r2)))) => {
            p1 == p2 && c1 == c2 && r1 == r2
        }
        _ => false,
    }
}

/// A rule, without the words that add or remove it.
#[derive(PartialEq)]
enum Rule {
    Added(Vec<String>),
    Removed(Vec<String>),
}

/// The program, chain and rule of a one-statement firewall command.
fn identity(command: &str) -> Option<(String, String, Rule)> {
    let statements = statements(command)?;
    let [words] = statements.as_slice() else {
        return None;
    };
    let (name, args) = program(words)?;
    let mut rest = Vec::new();
    let mut chain = None;
    let mut adds = None;
    let mut iter = args.iter().peekable();
    match name {
        "iptables" | "ip6tables" | "iptables-legacy" | "ip6tables-legacy" | "iptables-nft"
        | "ip6tables-nft" => {
            while let Some(arg) = iter.next() {
                match arg.as_str() {
                    "-A" | "--append" | "-I" | "--insert" | "-D" | "--delete" => {
                        adds = Some(!matches!(arg.as_str(), "-D" | "--delete"));
                        chain = iter.next().cloned();
                        // `-I CHAIN 1`: the position is not part of the rule.
                        if iter.peek().is_some_and(|n| n.parse::<u32>().is_ok()) {
                            iter.next();
                        }
                    }
                    _ => rest.push(arg.clone()),
                }
            }
        }
        "knock_add" | "knock_helper_ipt.sh" => {
            chain = Some("INPUT".to_owned());
            while let Some(arg) = iter.next() {
                match arg.as_str() {
                    "-a" | "--append" | "-i" | "--insert" => adds = Some(true),
                    "-x" | "--delete" => adds = Some(false),
                    "-c" | "--chain" => chain = iter.next().cloned(),
                    _ => rest.push(arg.clone()),
                }
            }
        }
        "ufw" => {
            chain = Some(String::new());
            let words: Vec<&String> = iter.collect();
            let rule: &[&String] = match words.as_slice() {
                [delete, rule @ ..] if *delete == "delete" => {
                    adds = Some(false);
                    rule
                }
                [insert, _, rule @ ..] if *insert == "insert" => {
                    adds = Some(true);
                    rule
                }
                [prepend, rule @ ..] if *prepend == "prepend" => {
                    adds = Some(true);
                    rule
                }
                rule => {
                    adds = Some(true);
                    rule
                }
            };
            rest = rule.iter().map(|w| (*w).clone()).collect();
        }
        _ => return None,
    }
    let rule = if adds? {
        Rule::Added(rest)
    } else {
        Rule::Removed(rest)
    };
    Some((name.to_owned(), chain?, rule))
}

#[cfg(test)]
mod tests;
