//! The nftables backend: the sets `knock4` and `knock6` of an inet table, keyed by
//! `address . protocol . port`, with one element per (source, protected port) whose timeout is
//! the door's remaining time. Each change is one nft transaction that also declares the table
//! and the sets, so a firewall reload that dropped them does not break the mirror.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use knock_common::segment::PROTO_UDP;

use super::{DEADLINE, logged};
use crate::config::DoorConfig;
use crate::journal::Journal;
use crate::system::process::Run;

pub const SET_V4: &str = "knock4";
pub const SET_V6: &str = "knock6";

/// A set element: `198.51.100.2 . tcp . 22`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Element {
    pub source: IpAddr,
    pub proto: u8,
    pub port: u16,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = if self.proto == PROTO_UDP {
            "udp"
        } else {
            "tcp"
        };
        write!(f, "{} . {proto} . {}", self.source, self.port)
    }
}

/// One element per protected port.
pub fn elements_for(source: IpAddr, door: &DoorConfig) -> Vec<Element> {
    let mut elements: Vec<Element> = door
        .protect
        .iter()
        .map(|p| Element {
            source,
            proto: p.proto,
            port: p.port,
        })
        .collect();
    elements.sort_by_key(|e| (e.proto, e.port));
    elements.dedup();
    elements
}

/// Makes the table and its sets if they are missing; an existing set of another type is an
/// error nft reports.
pub fn declare(table: &str) -> String {
    format!(
        "add table inet {table}; \
         add set inet {table} {SET_V4} {{ type ipv4_addr . inet_proto . inet_service; flags timeout; }}; \
         add set inet {table} {SET_V6} {{ type ipv6_addr . inet_proto . inet_service; flags timeout; }}"
    )
}

fn set_of(element: &Element) -> &'static str {
    if element.source.is_ipv6() {
        SET_V6
    } else {
        SET_V4
    }
}

/// nft's time with milliseconds, rounded up: `9500ms`.
fn timeout(left: Duration) -> String {
    format!("{}ms", left.as_nanos().div_ceil(1_000_000).max(1))
}

/// `add element` on an existing element leaves its timeout (before Linux 6.10), so an element
/// is added (a no-op if present), deleted and added again, in one transaction: it ends up
/// present with exactly the new timeout whether or not it was there.
pub fn add_script(table: &str, elements: &[(Element, Duration)]) -> String {
    let mut script = declare(table);
    for set in [SET_V4, SET_V6] {
        let mine: Vec<&(Element, Duration)> =
            elements.iter().filter(|(e, _)| set_of(e) == set).collect();
        if mine.is_empty() {
            continue;
        }
        let timed = mine
            .iter()
            .map(|(e, left)| format!("{e} timeout {}", timeout(*left)))
            .collect::<Vec<_>>()
            .join(", ");
        let keys = mine
            .iter()
            .map(|(e, _)| e.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        script.push_str(&format!(
            "; add element inet {table} {set} {{ {timed} }}; \
             delete element inet {table} {set} {{ {keys} }}; \
             add element inet {table} {set} {{ {timed} }}"
        ));
    }
    script
}

/// Deleting an element that has already timed out is an error, so each is added first (a
/// no-op if present) and then deleted, in one transaction.
pub fn remove_script(table: &str, elements: &[Element]) -> String {
    let mut script = declare(table);
    for set in [SET_V4, SET_V6] {
        let mine: Vec<&Element> = elements.iter().filter(|e| set_of(e) == set).collect();
        if mine.is_empty() {
            continue;
        }
        let timed = mine
            .iter()
            .map(|e| format!("{e} timeout 1s"))
            .collect::<Vec<_>>()
            .join(", ");
        let keys = mine
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        script.push_str(&format!(
            "; add element inet {table} {set} {{ {timed} }}; \
             delete element inet {table} {set} {{ {keys} }}"
        ));
    }
    script
}

pub fn set_up(table: &str, journal: &Journal) -> anyhow::Result<()> {
    let run = Run::new("nft", [declare(table)]);
    if let Err(failure) = run.output(DEADLINE) {
        anyhow::bail!("cannot mirror into nftables: {run}: {failure}");
    }
    journal.line(&format!(
        "knock: mirror: open doors go into the sets {SET_V4} and {SET_V6} of table inet {table}; \
         nftables sets are visible only inside their table, so a rule there admits them: \
         ip saddr . meta l4proto . th dport @{SET_V4} accept"
    ));
    Ok(())
}

pub fn add(table: &str, elements: &[(Element, Duration)], journal: &Journal) {
    // A door whose time ran out before its turn came needs no element.
    let live: Vec<(Element, Duration)> = elements
        .iter()
        .copied()
        .filter(|(_, left)| !left.is_zero())
        .collect();
    if !live.is_empty() {
        logged(&Run::new("nft", [add_script(table, &live)]), journal);
    }
}

pub fn remove(table: &str, elements: &[Element], journal: &Journal) {
    if !elements.is_empty() {
        logged(&Run::new("nft", [remove_script(table, elements)]), journal);
    }
}

/// Empties the sets; the table and the sets stay. Returns how many elements went.
pub fn clear(table: &str, journal: &Journal) -> anyhow::Result<usize> {
    let mut removed = 0;
    for set in [SET_V4, SET_V6] {
        let Ok(listed) = Run::new("nft", ["list", "set", "inet", table, set]).output(DEADLINE)
        else {
            continue;
        };
        let count = count_elements(&listed);
        if count == 0 {
            continue;
        }
        let flush = Run::new("nft", ["flush", "set", "inet", table, set]);
        if let Err(failure) = flush.output(DEADLINE) {
            anyhow::bail!("{flush}: {failure}");
        }
        journal.line(&format!("knock: mirror: {flush}"));
        removed += count;
    }
    Ok(removed)
}

/// How many elements `nft list set` shows.
fn count_elements(listed: &str) -> usize {
    let Some((_, rest)) = listed.split_once("elements = {") else {
        return 0;
    };
    let body = rest.split('}').next().unwrap_or("");
    if body.trim().is_empty() {
        0
    } else {
        body.matches(',').count() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::ProtoPort;

    fn element(source: &str, port: u16) -> Element {
        Element {
            source: source.parse().unwrap(),
            proto: knock_common::segment::PROTO_TCP,
            port,
        }
    }

    #[test]
    fn a_door_makes_one_element_per_protected_port() {
        let mut door = DoorConfig::new("openSSH", 1);
        door.protect = vec![ProtoPort::udp(53), ProtoPort::tcp(22), ProtoPort::tcp(22)];
        let elements = elements_for("2001:db8::2".parse().unwrap(), &door);
        let shown: Vec<String> = elements.iter().map(Element::to_string).collect();
        assert_eq!(shown, ["2001:db8::2 . tcp . 22", "2001:db8::2 . udp . 53"]);
    }

    #[test]
    fn the_declaration_makes_a_table_and_two_sets_with_timeouts() {
        assert_eq!(
            declare("knock"),
            "add table inet knock; \
             add set inet knock knock4 { type ipv4_addr . inet_proto . inet_service; flags timeout; }; \
             add set inet knock knock6 { type ipv6_addr . inet_proto . inet_service; flags timeout; }"
        );
    }

    #[test]
    fn adding_sets_the_timeout_whether_or_not_the_element_is_there() {
        let script = add_script(
            "knock",
            &[
                (
                    element("198.51.100.2", 22),
                    Duration::from_micros(9_499_001),
                ),
                (element("2001:db8::2", 22), Duration::from_secs(10)),
            ],
        );
        let (_, changes) = script.split_at(declare("knock").len());
        assert_eq!(
            changes,
            "; add element inet knock knock4 { 198.51.100.2 . tcp . 22 timeout 9500ms }; \
             delete element inet knock knock4 { 198.51.100.2 . tcp . 22 }; \
             add element inet knock knock4 { 198.51.100.2 . tcp . 22 timeout 9500ms }\
             ; add element inet knock knock6 { 2001:db8::2 . tcp . 22 timeout 10000ms }; \
             delete element inet knock knock6 { 2001:db8::2 . tcp . 22 }; \
             add element inet knock knock6 { 2001:db8::2 . tcp . 22 timeout 10000ms }"
        );
    }

    #[test]
    fn removing_never_fails_on_an_element_that_has_timed_out() {
        let script = remove_script(
            "filter",
            &[element("198.51.100.2", 22), element("198.51.100.2", 443)],
        );
        assert!(script.starts_with(&declare("filter")));
        assert!(script.ends_with(
            "; add element inet filter knock4 { 198.51.100.2 . tcp . 22 timeout 1s, \
             198.51.100.2 . tcp . 443 timeout 1s }; \
             delete element inet filter knock4 { 198.51.100.2 . tcp . 22, 198.51.100.2 . tcp . 443 }"
        ));
        assert!(!script.contains("knock6 {  }"));
    }

    #[test]
    fn elements_are_counted_from_nft_list_set() {
        let listed = "table inet knock {\n\tset knock6 {\n\t\ttype ipv6_addr . inet_proto . inet_service\n\t\tflags timeout\n\t\telements = { 2001:db8::2 . tcp . 22 timeout 5s expires 4s988ms,\n\t\t\t     2001:db8::2 . udp . 53 timeout 5s expires 4s988ms }\n\t}\n}\n";
        assert_eq!(count_elements(listed), 2);
        let empty = "table inet knock {\n\tset knock4 {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tflags timeout\n\t}\n}\n";
        assert_eq!(count_elements(empty), 0);
    }
}
