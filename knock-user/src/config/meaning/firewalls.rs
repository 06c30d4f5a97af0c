//! What each firewall tool's command does to the knocker's access: iptables and ip6tables,
//! nft, ufw, and Debian's `knock_add` helper.

use std::collections::BTreeSet;

use knock_common::ProtoPort;

use super::Statement;

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

pub(super) fn iptables(args: &[String]) -> Statement {
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

pub(super) fn nft(args: &[String]) -> Statement {
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

pub(super) fn ufw(args: &[String]) -> Statement {
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
pub(super) fn knock_add(args: &[String]) -> Statement {
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
