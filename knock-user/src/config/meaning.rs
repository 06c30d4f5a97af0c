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

mod firewalls;
mod shell;

use firewalls::{iptables, knock_add, nft, ufw};
use shell::{program, statements};

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
