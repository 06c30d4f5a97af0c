//! Firewall mirroring: while a door is open for a source, the host's own firewall lets that
//! source through to the door's protected ports too, so an operator whose INPUT drops by default
//! needs no Start_Command or Stop_Command.
//!
//! - `iptables`: one ACCEPT rule per (source, door) and protocol in a chain (`KNOCKD`, as in the
//!   knockd guide), marked with the comment `knock:DOOR`; ip6tables for IPv6 sources.
//! - `nftables`: one element per (source, protected port) in the sets `knock4` and `knock6` of an
//!   inet table (`knock`), with the door's remaining time as the element's timeout.
//!
//! knock never touches INPUT: the operator jumps to the chain, or references the sets. Commands
//! run one at a time on a worker, in the order the doors opened and closed, each with a
//! deadline; failures are logged with the exact command. The kernel's gate stays the authority:
//! the mirror only follows it.

mod iptables;
mod nftables;
mod worker;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use knock_common::Addr;
use knock_common::status::{self, DaemonInfo};

pub use crate::config::mirror::{Backend, check_chain, check_table};
use crate::config::{DoorConfig, Options};
use crate::journal::Journal;
use crate::system::process::Run;
use worker::{Op, Queue};

pub use iptables::Rule;
pub use nftables::Element;

/// The chain of the iptables backend, as in the knockd guide.
pub const DEFAULT_CHAIN: &str = "KNOCKD";
/// The inet table of the nftables backend.
pub const DEFAULT_TABLE: &str = "knock";
/// How long one iptables or nft command may take, xtables lock wait included.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Where the mirror writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Iptables { chain: String },
    Nftables { table: String },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Iptables { chain } => write!(f, "iptables chain {chain}"),
            Self::Nftables { table } => write!(f, "nftables table inet {table}"),
        }
    }
}

/// What the command line asks for; each part overrides the configuration's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub backend: Option<Backend>,
    pub chain: Option<String>,
    pub table: Option<String>,
}

/// The target of a daemon: the command line wins over `Mirror`, `Mirror_Chain` and
/// `Mirror_Table` in [options]. `None` when nothing is mirrored.
pub fn choose(request: &Request, options: &Options) -> Result<Option<Target>, String> {
    let backend = request.backend.or(options.mirror).unwrap_or(Backend::None);
    let target = match backend {
        Backend::None => {
            if request.chain.is_some() || request.table.is_some() {
                return Err(
                    "--mirror-chain and --mirror-table need --mirror (or Mirror in [options])"
                        .into(),
                );
            }
            return Ok(None);
        }
        Backend::Iptables => {
            if request.table.is_some() {
                return Err("--mirror-table is for nftables; iptables takes --mirror-chain".into());
            }
            let chain = request
                .chain
                .clone()
                .or_else(|| options.mirror_chain.clone())
                .unwrap_or_else(|| DEFAULT_CHAIN.into());
            check_chain(&chain).map_err(|m| format!("--mirror-chain: {m}"))?;
            Target::Iptables { chain }
        }
        Backend::Nftables => {
            if request.chain.is_some() {
                return Err("--mirror-chain is for iptables; nftables takes --mirror-table".into());
            }
            let table = request
                .table
                .clone()
                .or_else(|| options.mirror_table.clone())
                .unwrap_or_else(|| DEFAULT_TABLE.into());
            check_table(&table).map_err(|m| format!("--mirror-table: {m}"))?;
            Target::Nftables { table }
        }
    };
    Ok(Some(target))
}

/// One thing in the firewall. Doors that share one (two doors protecting the same port for the
/// same source) hold it together; it goes when the last of them closes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    Rule(Rule),
    Element(Element),
}

impl Target {
    /// What an open door for `source` puts into the firewall.
    pub fn items(&self, source: IpAddr, door: &DoorConfig) -> Vec<Item> {
        match self {
            Self::Iptables { .. } => iptables::rules_for(source, door)
                .into_iter()
                .map(Item::Rule)
                .collect(),
            Self::Nftables { .. } => nftables::elements_for(source, door)
                .into_iter()
                .map(Item::Element)
                .collect(),
        }
    }

    /// Makes the chain, or the table and its sets, if missing, and says how to wire them in.
    /// Fails when the firewall cannot be used at all (no iptables or nft, no permission).
    pub fn set_up(&self, journal: &Journal) -> anyhow::Result<()> {
        match self {
            Self::Iptables { chain } => iptables::set_up(chain, journal),
            Self::Nftables { table } => nftables::set_up(table, journal),
        }
    }

    /// Removes everything knock put into the firewall: iptables rules marked `knock:`, and the
    /// elements of the sets. The chain, or the table and its sets, stay, since the operator's
    /// firewall refers to them. Returns how many rules or elements went.
    pub fn clear(&self, journal: &Journal) -> anyhow::Result<usize> {
        match self {
            Self::Iptables { chain } => iptables::prune(chain, &[], journal),
            Self::Nftables { table } => nftables::clear(table, journal),
        }
    }
}

/// Removes everything knock added to the firewall; for `knock-user stop` when no daemon runs.
pub fn clear(target: &Target, journal: &Journal) -> anyhow::Result<usize> {
    target.clear(journal)
}

type Holder = (Addr, u8);

/// The mirror of the open doors; owned by the keeper.
pub struct Mirror {
    target: Target,
    journal: Arc<Journal>,
    /// What each open (source, door) holds.
    held: HashMap<Holder, Vec<Item>>,
    /// Who holds each item, and until when.
    holders: HashMap<Item, HashMap<Holder, u64>>,
    queue: Queue,
}

impl Mirror {
    /// Sets the firewall up and returns the mirror; for the daemon's start.
    pub fn start(target: Target, journal: Arc<Journal>) -> anyhow::Result<Self> {
        target.set_up(&journal)?;
        Ok(Self::new(target, journal))
    }

    fn new(target: Target, journal: Arc<Journal>) -> Self {
        Self {
            target,
            journal,
            held: HashMap::new(),
            holders: HashMap::new(),
            queue: Queue::Idle,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A door opened for `source`, or was found open, or was refreshed: its items go in, once.
    /// Opening an open door again adds nothing; with nftables it moves the timeout.
    pub fn open(&mut self, source: Addr, door: u8, config: &DoorConfig, expires_ns: u64) {
        let key = (source, door);
        let items = match self.held.get(&key) {
            Some(items) => items.clone(),
            None => self.target.items(source.ip(), config),
        };
        let timeouts = matches!(self.target, Target::Nftables { .. });
        let mut changed = Vec::new();
        for item in &items {
            let holders = self.holders.entry(item.clone()).or_default();
            let before = holders.values().copied().max();
            holders.insert(key, expires_ns);
            let after = holders.values().copied().max().unwrap_or(expires_ns);
            match before {
                None => changed.push((item.clone(), after)),
                Some(before) if timeouts && after > before => changed.push((item.clone(), after)),
                Some(_) => {}
            }
        }
        self.held.insert(key, items);
        if !changed.is_empty() {
            self.send(Op::Add(changed));
        }
    }

    /// A door closed for `source`: what it alone held comes out.
    pub fn close(&mut self, source: Addr, door: u8) {
        let key = (source, door);
        let Some(items) = self.held.remove(&key) else {
            return;
        };
        let mut gone = Vec::new();
        for item in items {
            if let Some(holders) = self.holders.get_mut(&item) {
                holders.remove(&key);
                if holders.is_empty() {
                    self.holders.remove(&item);
                    gone.push(item);
                }
            }
        }
        if !gone.is_empty() {
            self.send(Op::Remove(gone));
        }
    }

    /// Removes knock's rules that no open door holds. Call once at start, after the doors found
    /// open have been opened here. (Set elements expire by themselves.)
    pub fn prune(&mut self) {
        if matches!(self.target, Target::Iptables { .. }) {
            let keep = self.holders.keys().cloned().collect();
            self.send(Op::Prune(keep));
        }
    }

    /// How many (source, door) pairs are mirrored.
    pub fn mirrored(&self) -> usize {
        self.held.len()
    }

    /// Waits until every queued command has run.
    pub async fn finish(&mut self) {
        self.queue.finish().await;
    }

    fn send(&mut self, op: Op) {
        self.queue.send(op, &self.target, &self.journal);
    }
}

/// Runs a firewall command with the mirror's deadline and logs it; a failure is logged with the
/// exact command line.
fn logged(run: &Run, journal: &Journal) -> bool {
    match run.output(DEADLINE) {
        Ok(_) => {
            journal.line(&format!("knock: mirror: {run}"));
            true
        }
        Err(failure) => {
            journal.line(&format!("knock: mirror: failed: {run}: {failure}"));
            false
        }
    }
}

/// The mirror target as the daemon record holds it.
pub fn record(target: Option<&Target>) -> (u32, [u8; 64]) {
    let mut name = [0u8; 64];
    let (kind, text) = match target {
        None => return (status::MIRROR_NONE, name),
        Some(Target::Iptables { chain }) => (status::MIRROR_IPTABLES, chain),
        Some(Target::Nftables { table }) => (status::MIRROR_NFTABLES, table),
    };
    // Chain and table names are checked to be short when the daemon starts.
    let len = text.len().min(name.len());
    name[..len].copy_from_slice(&text.as_bytes()[..len]);
    (kind, name)
}

/// The mirror target a daemon record names, if any.
pub fn from_record(info: &DaemonInfo) -> Option<Target> {
    let end = info.mirror_name.iter().position(|b| *b == 0).unwrap_or(64);
    let name = std::str::from_utf8(&info.mirror_name[..end])
        .ok()?
        .to_owned();
    match info.mirror {
        status::MIRROR_IPTABLES => Some(Target::Iptables { chain: name }),
        status::MIRROR_NFTABLES => Some(Target::Nftables { table: name }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::ProtoPort;

    fn door(protect: &[ProtoPort]) -> DoorConfig {
        let mut door = DoorConfig::new("openSSH", 1);
        door.protect = protect.to_vec();
        door
    }

    fn recording(target: Target) -> Mirror {
        let mut mirror = Mirror::new(target, Arc::new(Journal::stderr_only(false)));
        mirror.queue = Queue::Recorded(Vec::new());
        mirror
    }

    fn ops(mirror: &mut Mirror) -> Vec<Op> {
        match &mut mirror.queue {
            Queue::Recorded(ops) => std::mem::take(ops),
            _ => unreachable!(),
        }
    }

    const SOURCE: Addr = Addr::from_ipv4([198, 51, 100, 2]);

    fn nft() -> Target {
        Target::Nftables {
            table: "knock".into(),
        }
    }

    fn ipt() -> Target {
        Target::Iptables {
            chain: "KNOCKD".into(),
        }
    }

    #[test]
    fn an_open_door_adds_its_items_once_and_closing_removes_them() {
        let ssh = door(&[ProtoPort::tcp(22)]);
        let mut mirror = recording(ipt());
        mirror.open(SOURCE, 0, &ssh, 100);
        let added = ops(&mut mirror);
        assert_eq!(added.len(), 1);
        let Op::Add(items) = &added[0] else {
            panic!("{added:?}")
        };
        assert_eq!(items.len(), 1);
        // Knocking again, or adopting a door found open, adds nothing more.
        mirror.open(SOURCE, 0, &ssh, 200);
        assert_eq!(ops(&mut mirror), vec![]);
        mirror.close(SOURCE, 0);
        assert_eq!(ops(&mut mirror), vec![Op::Remove(vec![items[0].0.clone()])]);
        mirror.close(SOURCE, 0);
        assert_eq!(ops(&mut mirror), vec![], "a second close removes nothing");
        assert_eq!(mirror.mirrored(), 0);
    }

    #[test]
    fn a_refreshed_door_moves_the_element_timeout_forward_only() {
        let ssh = door(&[ProtoPort::tcp(22)]);
        let mut mirror = recording(nft());
        mirror.open(SOURCE, 0, &ssh, 100);
        assert_eq!(ops(&mut mirror).len(), 1);
        mirror.open(SOURCE, 0, &ssh, 300);
        let refreshed = ops(&mut mirror);
        assert!(
            matches!(&refreshed[..], [Op::Add(items)] if items[0].1 == 300),
            "{refreshed:?}"
        );
        mirror.open(SOURCE, 0, &ssh, 250);
        assert_eq!(ops(&mut mirror), vec![]);
    }

    #[test]
    fn doors_sharing_an_element_remove_it_when_the_last_one_closes() {
        let ssh = door(&[ProtoPort::tcp(22)]);
        let mut web = door(&[ProtoPort::tcp(22), ProtoPort::tcp(443)]);
        web.name = "web".into();
        let mut mirror = recording(nft());
        mirror.open(SOURCE, 0, &ssh, 100);
        mirror.open(SOURCE, 1, &web, 50);
        let added = ops(&mut mirror);
        // The second door adds only 443: 22 is already there, for longer.
        assert!(
            matches!(&added[..], [Op::Add(a), Op::Add(b)] if a.len() == 1 && b.len() == 1),
            "{added:?}"
        );
        mirror.close(SOURCE, 1);
        let removed = ops(&mut mirror);
        assert!(
            matches!(&removed[..], [Op::Remove(items)] if items.len() == 1
                && matches!(&items[0], Item::Element(e) if e.port == 443)),
            "{removed:?}"
        );
        mirror.close(SOURCE, 0);
        assert!(matches!(&ops(&mut mirror)[..], [Op::Remove(items)] if items.len() == 1));
    }

    #[test]
    fn prune_keeps_what_open_doors_hold() {
        let ssh = door(&[ProtoPort::tcp(22)]);
        let mut mirror = recording(ipt());
        mirror.open(SOURCE, 0, &ssh, 100);
        ops(&mut mirror);
        mirror.prune();
        let pruned = ops(&mut mirror);
        assert!(
            matches!(&pruned[..], [Op::Prune(keep)] if keep.len() == 1),
            "{pruned:?}"
        );
        let mut nft = recording(nft());
        nft.prune();
        assert_eq!(ops(&mut nft), vec![], "set elements expire by themselves");
    }

    #[test]
    fn the_command_line_wins_over_the_configuration() {
        let mut options = Options {
            mirror: Some(Backend::Iptables),
            mirror_chain: Some("MINE".into()),
            ..Options::default()
        };
        assert_eq!(
            choose(&Request::default(), &options),
            Ok(Some(Target::Iptables {
                chain: "MINE".into()
            }))
        );
        let nft = Request {
            backend: Some(Backend::Nftables),
            ..Request::default()
        };
        assert_eq!(
            choose(&nft, &options),
            Ok(Some(Target::Nftables {
                table: "knock".into()
            }))
        );
        let off = Request {
            backend: Some(Backend::None),
            ..Request::default()
        };
        assert_eq!(choose(&off, &options), Ok(None));
        options.mirror = None;
        options.mirror_chain = None;
        assert_eq!(choose(&Request::default(), &options), Ok(None));
        let ipt = Request {
            backend: Some(Backend::Iptables),
            ..Request::default()
        };
        assert_eq!(
            choose(&ipt, &options),
            Ok(Some(Target::Iptables {
                chain: "KNOCKD".into()
            }))
        );
    }

    #[test]
    fn options_for_the_other_backend_are_refused() {
        let options = Options::default();
        let wrong = Request {
            backend: Some(Backend::Iptables),
            table: Some("t".into()),
            ..Request::default()
        };
        assert!(
            choose(&wrong, &options)
                .unwrap_err()
                .contains("--mirror-table")
        );
        let wrong = Request {
            backend: Some(Backend::Nftables),
            chain: Some("C".into()),
            ..Request::default()
        };
        assert!(
            choose(&wrong, &options)
                .unwrap_err()
                .contains("--mirror-chain")
        );
        let alone = Request {
            chain: Some("C".into()),
            ..Request::default()
        };
        assert!(choose(&alone, &options).is_err());
    }

    #[test]
    fn the_mirror_target_survives_the_daemon_record() {
        for target in [
            Target::Iptables {
                chain: "KNOCKD".into(),
            },
            Target::Nftables {
                table: "filter".into(),
            },
        ] {
            let (mirror, mirror_name) = record(Some(&target));
            let info = DaemonInfo {
                mirror,
                mirror_name,
                ..DaemonInfo::default()
            };
            assert_eq!(from_record(&info), Some(target));
        }
        assert_eq!(from_record(&DaemonInfo::default()), None);
    }
}
