//! The iptables backend: one ACCEPT rule per (source, door) and protocol, marked
//! `-m comment --comment knock:DOOR`, checked with `-C` before `-A` so a source never gets two.
//! IPv6 sources go through ip6tables. Every call waits for the xtables lock (`-w`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::bail;
use knock_common::ProtoPort;
use knock_common::segment::{PROTO_TCP, PROTO_UDP};

use super::{DEADLINE, logged};
use crate::config::DoorConfig;
use crate::journal::Journal;
use crate::system::process::Run;

/// Seconds to wait for the xtables lock.
const LOCK_WAIT_S: &str = "10";
/// The comment that marks knock's rules; the door's name follows.
pub const MARK: &str = "knock:";

/// One ACCEPT rule: a source, a protocol and its ports (`--dport`, or `-m multiport --dports`
/// for several), and the door's name in the comment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub source: IpAddr,
    pub proto: u8,
    /// Sorted, without repeats.
    pub ports: Vec<u16>,
    pub comment: String,
}

/// The rules an open door puts in: one per protocol among its protected ports.
pub fn rules_for(source: IpAddr, door: &DoorConfig) -> Vec<Rule> {
    let mut by_proto: BTreeMap<u8, Vec<u16>> = BTreeMap::new();
    for ProtoPort { port, proto, .. } in &door.protect {
        by_proto.entry(*proto).or_default().push(*port);
    }
    by_proto
        .into_iter()
        .map(|(proto, mut ports)| {
            ports.sort_unstable();
            ports.dedup();
            Rule {
                source,
                proto,
                ports,
                comment: format!("{MARK}{}", door.name),
            }
        })
        .collect()
}

fn program(v6: bool) -> &'static str {
    if v6 { "ip6tables" } else { "iptables" }
}

fn proto_name(proto: u8) -> &'static str {
    if proto == PROTO_UDP { "udp" } else { "tcp" }
}

impl Rule {
    pub fn is_v6(&self) -> bool {
        self.source.is_ipv6()
    }

    /// The rule's matches and target, as given after `-A CHAIN`.
    pub fn spec(&self) -> Vec<String> {
        let prefix = if self.is_v6() { 128 } else { 32 };
        let mut spec = vec![
            "-s".to_owned(),
            format!("{}/{prefix}", self.source),
            "-p".to_owned(),
            proto_name(self.proto).to_owned(),
        ];
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        if ports.len() == 1 {
            spec.extend(["--dport".to_owned(), ports[0].clone()]);
        } else {
            spec.extend([
                "-m".to_owned(),
                "multiport".to_owned(),
                "--dports".to_owned(),
                ports.join(","),
            ]);
        }
        spec.extend([
            "-m".to_owned(),
            "comment".to_owned(),
            "--comment".to_owned(),
            self.comment.clone(),
            "-j".to_owned(),
            "ACCEPT".to_owned(),
        ]);
        spec
    }

    /// `iptables -w 10 ACTION CHAIN spec...`, with ACTION one of -C, -A, -D.
    pub fn command(&self, action: &str, chain: &str) -> Run {
        let mut args = vec!["-w", LOCK_WAIT_S, action, chain]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        args.extend(self.spec());
        Run::new(program(self.is_v6()), args)
    }
}

fn call(v6: bool, args: &[&str]) -> Run {
    let mut all = vec!["-w", LOCK_WAIT_S];
    all.extend_from_slice(args);
    Run::new(program(v6), all)
}

/// Makes the chain in iptables and ip6tables if it is missing, and says whether anything jumps
/// to it. IPv4 failing is fatal; IPv6 failing is logged (a host without IPv6).
pub fn set_up(chain: &str, journal: &Journal) -> anyhow::Result<()> {
    for v6 in [false, true] {
        let name = program(v6);
        if call(v6, &["-S", chain]).output(DEADLINE).is_err() {
            let create = call(v6, &["-N", chain]);
            match create.output(DEADLINE) {
                Ok(_) => journal.line(&format!(
                    "knock: mirror: created the {name} chain {chain}; knock never touches INPUT, \
                     so jump to it as the knockd guide does: {name} -I INPUT -j {chain}"
                )),
                Err(failure) if v6 => {
                    journal.line(&format!(
                        "knock: mirror: failed: {create}: {failure}; IPv6 sources will not be mirrored"
                    ));
                    continue;
                }
                Err(failure) => bail!("cannot mirror into iptables: {create}: {failure}"),
            }
        }
        match call(v6, &["-S"]).output(DEADLINE) {
            Ok(all) if jumps_to(&all, chain) => {}
            Ok(_) => journal.line(&format!(
                "knock: mirror: no {name} rule jumps to {chain}, so its rules let nobody in; \
                 add one: {name} -I INPUT -j {chain}"
            )),
            Err(failure) => journal.line(&format!(
                "knock: mirror: failed: {}: {failure}",
                call(v6, &["-S"])
            )),
        }
    }
    Ok(())
}

/// Whether a rule in `iptables -S` output jumps or goes to `chain`.
fn jumps_to(saved: &str, chain: &str) -> bool {
    saved.lines().any(|line| {
        let words = tokens(line);
        words.first().is_some_and(|w| w == "-A")
            && words
                .windows(2)
                .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == chain)
    })
}

/// Puts a rule in unless it is there: `-C`, then `-A`. A missing chain (flushed by the
/// operator's firewall reload) is made again.
pub fn add(chain: &str, rule: &Rule, journal: &Journal) {
    if rule.command("-C", chain).output(DEADLINE).is_ok() {
        return;
    }
    let append = rule.command("-A", chain);
    if append.output(DEADLINE).is_ok() {
        journal.line(&format!("knock: mirror: {append}"));
        return;
    }
    let _ = call(rule.is_v6(), &["-N", chain]).output(DEADLINE);
    logged(&append, journal);
}

pub fn remove(chain: &str, rule: &Rule, journal: &Journal) {
    logged(&rule.command("-D", chain), journal);
}

/// Deletes knock's rules in `chain` (iptables and ip6tables) that are not in `keep`; with an
/// empty `keep`, every rule marked `knock:`. Returns how many went.
pub fn prune(chain: &str, keep: &[Rule], journal: &Journal) -> anyhow::Result<usize> {
    let mut removed = 0;
    for v6 in [false, true] {
        let list = call(v6, &["-S", chain]);
        let saved = match list.output(DEADLINE) {
            Ok(saved) => saved,
            // No chain (or no ip6tables): nothing of knock's is there.
            Err(_) => continue,
        };
        let lines: Vec<&str> = saved
            .lines()
            .filter(|line| line.starts_with(&format!("-A {chain} ")))
            .collect();
        let stale: Vec<usize> = knock_rules(&saved, chain)
            .into_iter()
            .filter(|(_, rule)| !rule.as_ref().is_some_and(|r| keep.contains(r)))
            .map(|(number, _)| number)
            .collect();
        // From the bottom up, so the numbers above stay right.
        for number in stale.into_iter().rev() {
            let delete = call(v6, &["-D", chain, &number.to_string()]);
            match delete.output(DEADLINE) {
                Ok(_) => {
                    let was = lines.get(number - 1).copied().unwrap_or("?");
                    journal.line(&format!("knock: mirror: {delete} (was: {was})"));
                    removed += 1;
                }
                Err(failure) => bail!("{delete}: {failure}"),
            }
        }
    }
    Ok(removed)
}

/// The rules of `iptables -S CHAIN` output marked as knock's: each with its rule number, and
/// the rule when knock can read it back.
pub fn knock_rules(saved: &str, chain: &str) -> Vec<(usize, Option<Rule>)> {
    saved
        .lines()
        .map(tokens)
        .filter(|words| words.len() >= 2 && words[0] == "-A" && words[1] == chain)
        .enumerate()
        .filter_map(|(index, words)| {
            let comment = value_of(&words, "--comment")?;
            comment
                .starts_with(MARK)
                .then(|| (index + 1, read_rule(&words)))
        })
        .collect()
}

fn value_of<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    words
        .windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

/// A rule as `iptables -S` prints it: `-A KNOCKD -s 198.51.100.2/32 -p tcp -m tcp --dport 22
/// -m comment --comment "knock:openSSH" -j ACCEPT`.
fn read_rule(words: &[String]) -> Option<Rule> {
    let (address, prefix) = value_of(words, "-s")?.split_once('/')?;
    let source: IpAddr = address.parse().ok()?;
    let full = if source.is_ipv6() { "128" } else { "32" };
    if prefix != full || value_of(words, "-j")? != "ACCEPT" {
        return None;
    }
    let proto = match value_of(words, "-p")? {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        _ => return None,
    };
    let ports = value_of(words, "--dport").or_else(|| value_of(words, "--dports"))?;
    let mut ports = ports
        .split(',')
        .map(|p| p.parse::<u16>().ok())
        .collect::<Option<Vec<u16>>>()?;
    ports.sort_unstable();
    ports.dedup();
    Some(Rule {
        source,
        proto,
        ports,
        comment: value_of(words, "--comment")?.to_owned(),
    })
}

/// Splits an `iptables -S` line into words: double quotes group, a backslash escapes.
fn tokens(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh_door() -> DoorConfig {
        DoorConfig::new("openSSH", 1)
    }

    #[test]
    fn the_default_door_makes_the_guides_rule_with_knocks_comment() {
        let rules = rules_for("198.51.100.2".parse().unwrap(), &ssh_door());
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].command("-A", "KNOCKD").to_string(),
            "iptables -w 10 -A KNOCKD -s 198.51.100.2/32 -p tcp --dport 22 \
             -m comment --comment knock:openSSH -j ACCEPT"
        );
        assert_eq!(
            rules[0].command("-C", "KNOCKD").to_string(),
            "iptables -w 10 -C KNOCKD -s 198.51.100.2/32 -p tcp --dport 22 \
             -m comment --comment knock:openSSH -j ACCEPT"
        );
    }

    #[test]
    fn ipv6_sources_go_through_ip6tables() {
        let rules = rules_for("2001:db8::2".parse().unwrap(), &ssh_door());
        assert_eq!(
            rules[0].command("-D", "KNOCKD").to_string(),
            "ip6tables -w 10 -D KNOCKD -s 2001:db8::2/128 -p tcp --dport 22 \
             -m comment --comment knock:openSSH -j ACCEPT"
        );
    }

    #[test]
    fn several_ports_make_one_multiport_rule_per_protocol() {
        let mut door = ssh_door();
        door.protect = vec![
            ProtoPort::tcp(443),
            ProtoPort::tcp(22),
            ProtoPort::udp(53),
            ProtoPort::tcp(22),
        ];
        let rules = rules_for("198.51.100.2".parse().unwrap(), &door);
        let lines: Vec<String> = rules
            .iter()
            .map(|r| r.command("-A", "KNOCKD").to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "iptables -w 10 -A KNOCKD -s 198.51.100.2/32 -p tcp -m multiport --dports 22,443 \
                 -m comment --comment knock:openSSH -j ACCEPT",
                "iptables -w 10 -A KNOCKD -s 198.51.100.2/32 -p udp --dport 53 \
                 -m comment --comment knock:openSSH -j ACCEPT",
            ]
        );
        door.protect.clear();
        assert!(rules_for("198.51.100.2".parse().unwrap(), &door).is_empty());
    }

    /// `iptables -S KNOCKD` from iptables 1.8.9 (nf_tables), with a rule of the guide's start
    /// command that knock must leave alone.
    const SAVED: &str = "-N KNOCKD\n\
        -A KNOCKD -s 198.51.100.2/32 -p tcp -m tcp --dport 22 -m comment --comment \"knock:openSSH\" -j ACCEPT\n\
        -A KNOCKD -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -j ACCEPT\n\
        -A KNOCKD -s 198.51.100.2/32 -p tcp -m multiport --dports 22,443 -m comment --comment \"knock:open \\\"SSH\\\"\" -j ACCEPT\n\
        -A KNOCKD -s 198.51.100.3/32 -p udp -m udp --dport 53 -m comment --comment knock:dns -j ACCEPT\n\
        -A KNOCKD -s 198.51.100.0/24 -m comment --comment \"knock:odd\" -j ACCEPT\n";

    #[test]
    fn knocks_rules_are_read_back_from_iptables_save_output_with_their_numbers() {
        let found = knock_rules(SAVED, "KNOCKD");
        let numbers: Vec<usize> = found.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 3, 4, 5], "the unmarked rule 2 is not knock's");
        let mut door = ssh_door();
        assert_eq!(
            found[0].1,
            Some(rules_for("198.51.100.2".parse().unwrap(), &door).remove(0))
        );
        door.name = "open \"SSH\"".into();
        door.protect = vec![ProtoPort::tcp(443), ProtoPort::tcp(22)];
        assert_eq!(
            found[1].1,
            Some(rules_for("198.51.100.2".parse().unwrap(), &door).remove(0))
        );
        let dns = found[2].1.as_ref().unwrap();
        assert_eq!((dns.proto, dns.ports.as_slice()), (PROTO_UDP, &[53][..]));
        assert_eq!(found[3].1, None, "marked but not a shape knock makes");
        assert!(knock_rules(SAVED, "OTHER").is_empty());
    }

    #[test]
    fn a_jump_from_any_chain_counts() {
        assert!(jumps_to("-P INPUT DROP\n-A INPUT -j KNOCKD\n", "KNOCKD"));
        assert!(jumps_to("-A ufw-user-input -p tcp -g KNOCKD\n", "KNOCKD"));
        assert!(!jumps_to("-N KNOCKD\n-A INPUT -j KNOCKD2\n", "KNOCKD"));
    }
}
