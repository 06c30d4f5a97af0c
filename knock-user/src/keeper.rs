//! The doorkeeper: turns kernel events into knockd's log lines and commands, and remembers which
//! doors are open so that each one's stop command runs once, after its start command, when the
//! door closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use knock_common::Addr;
use tokio::task::{JoinHandle, JoinSet};

use crate::clock;
use crate::command::{self, COMMAND_DEADLINE};
use crate::config::{Config, DoorConfig};
use crate::events::DoorEvent;
use crate::journal::Journal;
use crate::names::Names;
use crate::plan::Plan;

struct OpenDoor {
    expires_ns: u64,
    /// The start command, which the stop command waits for.
    start: Option<JoinHandle<()>>,
}

/// The doors of a configuration by kernel id.
pub fn doors_by_id(config: &Config, plan: &Plan) -> Vec<Option<DoorConfig>> {
    plan.names
        .iter()
        .map(|name| {
            let name = name.as_deref()?;
            config.doors.iter().find(|d| d.name == name).cloned()
        })
        .collect()
}

pub struct Keeper {
    doors: Vec<Option<DoorConfig>>,
    journal: Arc<Journal>,
    names: Names,
    open: HashMap<(Addr, u8), OpenDoor>,
    commands: JoinSet<()>,
}

impl Keeper {
    pub fn new(doors: Vec<Option<DoorConfig>>, journal: Arc<Journal>, names: Names) -> Self {
        Self {
            doors,
            journal,
            names,
            open: HashMap::new(),
            commands: JoinSet::new(),
        }
    }

    /// Takes a new configuration's doors. Doors whose ids are in `removed` close now.
    pub fn set_doors(&mut self, doors: Vec<Option<DoorConfig>>, removed: &[u8]) {
        let closing: Vec<(Addr, u8)> = self
            .open
            .keys()
            .filter(|(_, id)| removed.contains(id))
            .copied()
            .collect();
        for (source, id) in closing {
            if let Some(open) = self.open.remove(&(source, id)) {
                self.close(source, id, open);
            }
        }
        self.doors = doors;
    }

    pub fn open_doors(&self) -> usize {
        self.open.len()
    }

    fn door(&self, id: u8) -> Option<&DoorConfig> {
        self.doors.get(usize::from(id)).and_then(Option::as_ref)
    }

    fn name(&self, id: u8) -> String {
        self.door(id)
            .map_or_else(|| format!("door#{id}"), |d| d.name.clone())
    }

    /// The source as log lines show it, with its host name under `--lookup`.
    fn who(&self, source: Addr) -> String {
        self.names.label(source.ip())
    }

    fn say(&self, source: Addr, door: u8, what: &str) {
        self.journal.line(&format!(
            "{}: {}: {what}",
            self.who(source),
            self.name(door)
        ));
    }

    /// Logs an event and runs its commands. Returns the id of a one-time door that has just
    /// used its sequence, so the caller can move it to the next one.
    pub fn on_event(&mut self, event: DoorEvent) -> Option<u8> {
        match event {
            DoorEvent::Stage {
                source,
                door,
                stage,
            } => self.say(source, door, &format!("Stage {stage}")),
            DoorEvent::Opened {
                source,
                door,
                expires_ns,
            } => {
                self.say(source, door, "OPEN SESAME");
                let start = self.spawn_command(door, source, Which::Start, None);
                if let Some(previous) = self
                    .open
                    .insert((source, door), OpenDoor { expires_ns, start })
                {
                    // The kernel saw the door as closed (its deadline had passed) before this
                    // daemon did: close the old opening first so its stop command is not lost.
                    self.close(source, door, previous);
                }
                if self
                    .door(door)
                    .is_some_and(|d| d.one_time_sequences.is_some())
                {
                    return Some(door);
                }
            }
            DoorEvent::Refreshed {
                source,
                door,
                expires_ns,
            } => {
                self.say(
                    source,
                    door,
                    "OPEN SESAME (already open: stays open longer, command not repeated)",
                );
                self.open
                    .entry((source, door))
                    .and_modify(|open| open.expires_ns = expires_ns)
                    .or_insert(OpenDoor {
                        expires_ns,
                        start: None,
                    });
            }
            DoorEvent::Reset {
                source,
                door,
                stage,
            } => self.journal.detail(&format!(
                "{}: {}: sequence reset by a wrong knock (stage {stage})",
                self.who(source),
                self.name(door)
            )),
            DoorEvent::TimedOut {
                source,
                door,
                stage,
            } => self.say(source, door, &format!("sequence timeout (stage {stage})")),
            DoorEvent::Crowded { source, door } => self.say(
                source,
                door,
                "too many attempts in progress from this source; knock ignored",
            ),
            DoorEvent::GateFull { source, door } => self.say(
                source,
                door,
                "the gate is full (raise Gate_Capacity); the door stays shut",
            ),
        }
        None
    }

    /// Closes every door whose deadline has passed and returns when the next one is due.
    pub fn close_due(&mut self) -> Option<u64> {
        let now = clock::monotonic_ns();
        let due: Vec<(Addr, u8)> = self
            .open
            .iter()
            .filter(|(_, open)| open.expires_ns <= now)
            .map(|(key, _)| *key)
            .collect();
        for (source, door) in due {
            if let Some(open) = self.open.remove(&(source, door)) {
                self.close(source, door, open);
            }
        }
        self.open.values().map(|open| open.expires_ns).min()
    }

    /// Closes every open door now: on shutdown nothing may stay open behind the daemon's back.
    pub fn close_all(&mut self) {
        let all: Vec<((Addr, u8), OpenDoor)> = self.open.drain().collect();
        for ((source, door), open) in all {
            self.close(source, door, open);
        }
    }

    /// Waits for running commands to finish.
    pub async fn finish(&mut self) {
        while self.commands.join_next().await.is_some() {}
    }

    /// Reaps commands that have finished, so the set does not grow.
    pub fn reap(&mut self) {
        while self.commands.try_join_next().is_some() {}
    }

    fn close(&mut self, source: Addr, door: u8, open: OpenDoor) {
        let has_stop = self
            .door(door)
            .and_then(|d| d.stop_command_for(source.ip()))
            .is_some();
        if has_stop {
            self.say(source, door, "command timeout");
            self.spawn_command(door, source, Which::Stop, open.start);
        } else {
            self.journal.detail(&format!(
                "{}: {}: door closed",
                self.who(source),
                self.name(door)
            ));
            if let Some(start) = open.start {
                self.commands.spawn(async move {
                    let _ = start.await;
                });
            }
        }
    }

    fn spawn_command(
        &mut self,
        door: u8,
        source: Addr,
        which: Which,
        after: Option<JoinHandle<()>>,
    ) -> Option<JoinHandle<()>> {
        let config = self.door(door)?;
        let ip: IpAddr = source.ip();
        let template = match which {
            Which::Start => config.start_command_for(ip),
            Which::Stop => config.stop_command_for(ip),
        }?;
        let command = command::expand(template, ip);
        let journal = Arc::clone(&self.journal);
        let name = config.name.clone();
        let task = async move {
            if let Some(start) = after {
                let _ = start.await;
            }
            command::run(journal, name, command, COMMAND_DEADLINE).await;
        };
        match which {
            // The stop command waits on the start command's handle, so the start command runs
            // as its own task; the join set tracks the stop command that awaits it.
            Which::Start => Some(tokio::spawn(task)),
            Which::Stop => {
                self.commands.spawn(task);
                None
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Which {
    Start,
    Stop,
}
