//! The mirror's worker: firewall commands run one at a time, in the order the doors opened and
//! closed, off the daemon's event loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Element, Item, Rule, Target, iptables, nftables};
use crate::journal::Journal;
use crate::system::clock;

/// What the worker does, in order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Put these in (or, for set elements, give them a new timeout), each with its deadline
    /// on the monotonic clock.
    Add(Vec<(Item, u64)>),
    Remove(Vec<Item>),
    /// Remove knock's rules that are not these: left by a daemon that stopped uncleanly, or by
    /// doors that closed while no daemon ran.
    Prune(Vec<Item>),
}

pub(super) enum Queue {
    /// Started on first use: the daemon may fork after the mirror is made.
    Idle,
    Running {
        sender: mpsc::UnboundedSender<Op>,
        worker: JoinHandle<()>,
    },
    #[cfg(test)]
    Recorded(Vec<Op>),
}

impl Queue {
    /// Queues `op`, starting the worker on first use.
    pub(super) fn send(&mut self, op: Op, target: &Target, journal: &Arc<Journal>) {
        if let Self::Idle = self {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                // Outside the daemon's runtime: run it here.
                apply(target, journal, op);
                return;
            };
            let (sender, receiver) = mpsc::unbounded_channel();
            let worker = runtime.spawn(work(receiver, target.clone(), Arc::clone(journal)));
            *self = Self::Running { sender, worker };
        }
        match self {
            Self::Running { sender, .. } => {
                if let Err(mpsc::error::SendError(op)) = sender.send(op) {
                    journal.line("knock: mirror: the worker has stopped; running the command here");
                    apply(target, journal, op);
                }
            }
            #[cfg(test)]
            Self::Recorded(ops) => ops.push(op),
            Self::Idle => unreachable!("started above"),
        }
    }

    /// Waits until every queued command has run.
    pub(super) async fn finish(&mut self) {
        if let Self::Running { sender, worker } = std::mem::replace(self, Self::Idle) {
            drop(sender);
            let _ = worker.await;
        }
    }
}

/// Runs the queued operations one after the other, off the event loop.
async fn work(mut receiver: mpsc::UnboundedReceiver<Op>, target: Target, journal: Arc<Journal>) {
    let target = Arc::new(target);
    while let Some(op) = receiver.recv().await {
        let (target, journal) = (Arc::clone(&target), Arc::clone(&journal));
        let _ = tokio::task::spawn_blocking(move || apply(&target, &journal, op)).await;
    }
}

fn apply(target: &Target, journal: &Journal, op: Op) {
    match (target, op) {
        (Target::Iptables { chain }, Op::Add(items)) => {
            for (item, _) in items {
                if let Item::Rule(rule) = item {
                    iptables::add(chain, &rule, journal);
                }
            }
        }
        (Target::Iptables { chain }, Op::Remove(items)) => {
            for item in items {
                if let Item::Rule(rule) = item {
                    iptables::remove(chain, &rule, journal);
                }
            }
        }
        (Target::Iptables { chain }, Op::Prune(keep)) => {
            let keep: Vec<Rule> = keep
                .into_iter()
                .filter_map(|item| match item {
                    Item::Rule(rule) => Some(rule),
                    Item::Element(_) => None,
                })
                .collect();
            if let Err(error) = iptables::prune(chain, &keep, journal) {
                journal.line(&format!("knock: mirror: failed: {error:#}"));
            }
        }
        (Target::Nftables { table }, Op::Add(items)) => {
            let elements: Vec<(Element, Duration)> = items
                .into_iter()
                .filter_map(|(item, expires_ns)| match item {
                    Item::Element(element) => Some((element, clock::until(expires_ns))),
                    Item::Rule(_) => None,
                })
                .collect();
            nftables::add(table, &elements, journal);
        }
        (Target::Nftables { table }, Op::Remove(items)) => {
            let elements: Vec<Element> = items
                .into_iter()
                .filter_map(|item| match item {
                    Item::Element(element) => Some(element),
                    Item::Rule(_) => None,
                })
                .collect();
            nftables::remove(table, &elements, journal);
        }
        (Target::Nftables { .. }, Op::Prune(_)) => {}
    }
}
