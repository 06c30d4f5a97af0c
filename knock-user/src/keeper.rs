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

struct OpenDoor {
    expires_ns: u64,
    /// The start command, which the stop command waits for.
    start: Option<JoinHandle<()>>,
}

pub struct Keeper {
    config: Arc<Config>,
    journal: Arc<Journal>,
    open: HashMap<(Addr, u8), OpenDoor>,
    commands: JoinSet<()>,
}

impl Keeper {
    pub fn new(config: Arc<Config>, journal: Arc<Journal>) -> Self {
        Self {
            config,
            journal,
            open: HashMap::new(),
            commands: JoinSet::new(),
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn open_doors(&self) -> usize {
        self.open.len()
    }

    fn door(&self, id: u8) -> Option<&DoorConfig> {
        self.config.doors.get(usize::from(id))
    }

    fn name(&self, id: u8) -> String {
        self.door(id)
            .map_or_else(|| format!("door#{id}"), |d| d.name.clone())
    }

    pub fn on_event(&mut self, event: DoorEvent) {
        let journal = Arc::clone(&self.journal);
        match event {
            DoorEvent::Stage {
                source,
                door,
                stage,
            } => {
                journal.line(&format!("{source}: {}: Stage {stage}", self.name(door)));
            }
            DoorEvent::Opened {
                source,
                door,
                expires_ns,
            } => {
                journal.line(&format!("{source}: {}: OPEN SESAME", self.name(door)));
                let start = self.spawn_command(door, source, Which::Start, None);
                if let Some(previous) = self
                    .open
                    .insert((source, door), OpenDoor { expires_ns, start })
                {
                    // The kernel saw the door as closed (its deadline had passed) before this
                    // sweep did: close the old opening first so its stop command is not lost.
                    self.close(source, door, previous);
                }
            }
            DoorEvent::Refreshed {
                source,
                door,
                expires_ns,
            } => {
                journal.line(&format!(
                    "{source}: {}: OPEN SESAME (already open: stays open longer, command not repeated)",
                    self.name(door)
                ));
                match self.open.get_mut(&(source, door)) {
                    Some(open) => open.expires_ns = expires_ns,
                    None => {
                        self.open.insert(
                            (source, door),
                            OpenDoor {
                                expires_ns,
                                start: None,
                            },
                        );
                    }
                }
            }
            DoorEvent::Reset {
                source,
                door,
                stage,
            } => {
                journal.detail(&format!(
                    "{source}: {}: sequence reset by a wrong knock (stage {stage})",
                    self.name(door)
                ));
            }
            DoorEvent::TimedOut {
                source,
                door,
                stage,
            } => {
                journal.line(&format!(
                    "{source}: {}: sequence timeout (stage {stage})",
                    self.name(door)
                ));
            }
            DoorEvent::Crowded { source, door } => journal.line(&format!(
                "{source}: {}: too many attempts in progress from this source; knock ignored",
                self.name(door)
            )),
            DoorEvent::GateFull { source, door } => journal.line(&format!(
                "{source}: {}: the gate is full (raise Gate_Capacity); the door stays shut",
                self.name(door)
            )),
        }
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
            self.journal
                .line(&format!("{source}: {}: command timeout", self.name(door)));
            self.spawn_command(door, source, Which::Stop, open.start);
        } else {
            self.journal
                .detail(&format!("{source}: {}: door closed", self.name(door)));
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
