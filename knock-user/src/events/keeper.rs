//! The doorkeeper: turns kernel events into knockd's log lines and commands, and remembers which
//! doors are open so that each one's stop command runs once, after its start command, when the
//! door closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use knock_common::Addr;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::DoorConfig;
use crate::events::DoorEvent;
use crate::events::commands::{self, COMMAND_DEADLINE};
use crate::events::names::Names;
use crate::journal::Journal;
use crate::mirror::Mirror;
use crate::system::clock;

struct OpenDoor {
    expires_ns: u64,
    /// The start command, which the stop command waits for.
    start: Option<JoinHandle<()>>,
}

pub struct Keeper {
    doors: Vec<Option<DoorConfig>>,
    journal: Arc<Journal>,
    names: Names,
    open: HashMap<(Addr, u8), OpenDoor>,
    commands: JoinSet<()>,
    hush: Hush,
    /// The firewall that follows the open doors (`--mirror`).
    mirror: Option<Mirror>,
}

/// How many lines of each kind an outsider can provoke may be logged per second. Anyone can send
/// first knocks, wrong knocks and forged SPA packets from spoofed addresses, and whoever sniffed
/// a static sequence can replay it from as many; beyond this, lines are counted, not written,
/// so a flood cannot fill the disk, keep the daemon from its events (a daemon that falls behind
/// loses them, and with them start commands), or start name lookups at its rate. Openings and
/// commands are always logged: the gate's capacities bound them.
pub const NOISE_PER_SECOND: u32 = 20;

/// The lines an outsider can provoke, by what it takes.
#[derive(Clone, Copy)]
enum Noise {
    /// Nothing: first knocks, wrong knocks, first-stage timeouts, bans, refused SPA packets,
    /// replays of a used single-use sequence.
    Anyone,
    /// A sniffed static sequence: later stages and their timeouts, a full gate.
    Sniffer,
    /// A scan under `--observe`: would-be drops have a budget of their own, so a scan of
    /// protected ports cannot hush knocks, nor knocks the scan.
    Observed,
}

/// One budget of lines per second, and what it held back.
#[derive(Default)]
struct Budget {
    logged: u32,
    suppressed: u64,
}

#[derive(Default)]
struct Hush {
    window_start_ns: u64,
    anyone: Budget,
    sniffer: Budget,
    observed: Budget,
}

impl Keeper {
    pub fn new(doors: Vec<Option<DoorConfig>>, journal: Arc<Journal>, names: Names) -> Self {
        Self {
            doors,
            journal,
            names,
            open: HashMap::new(),
            commands: JoinSet::new(),
            hush: Hush::default(),
            mirror: None,
        }
    }

    /// Mirrors open doors into the host's firewall.
    pub fn with_mirror(mut self, mirror: Option<Mirror>) -> Self {
        self.mirror = mirror;
        self
    }

    /// Puts an open door into the mirror; idempotent, and with nftables it moves the timeout.
    fn mirror_open(&mut self, source: Addr, door: u8, expires_ns: u64) {
        let config = self.doors.get(usize::from(door)).and_then(Option::as_ref);
        if let (Some(mirror), Some(config)) = (self.mirror.as_mut(), config) {
            mirror.open(source, door, config, expires_ns);
        }
    }

    /// Removes mirrored rules that no open door holds: call once at start, after adopting.
    pub fn prune_mirror(&mut self) {
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.prune();
        }
    }

    /// Whether a line anyone can provoke may be logged now.
    fn may_log_noise(&mut self) -> bool {
        self.may_log(Noise::Anyone)
    }

    /// Whether a line of kind `noise` may be logged now.
    fn may_log(&mut self, noise: Noise) -> bool {
        let now = clock::monotonic_ns();
        if now.saturating_sub(self.hush.window_start_ns) >= 1_000_000_000 {
            self.report_hushed();
            self.hush.window_start_ns = now;
            self.hush.anyone.logged = 0;
            self.hush.sniffer.logged = 0;
            self.hush.observed.logged = 0;
        }
        let budget = match noise {
            Noise::Anyone => &mut self.hush.anyone,
            Noise::Sniffer => &mut self.hush.sniffer,
            Noise::Observed => &mut self.hush.observed,
        };
        if budget.logged < NOISE_PER_SECOND {
            budget.logged += 1;
            true
        } else {
            budget.suppressed += 1;
            false
        }
    }

    /// Whether an `--observe` line may be logged now.
    fn may_log_observed(&mut self) -> bool {
        self.may_log(Noise::Observed)
    }

    /// Says how many lines were held back, if any.
    pub fn report_hushed(&mut self) {
        if self.hush.anyone.suppressed > 0 {
            self.journal.line(&format!(
                "knock: {} first-knock lines not logged in the last second (a flood of first \
                 knocks, wrong knocks or forged packets?)",
                self.hush.anyone.suppressed
            ));
            self.hush.anyone.suppressed = 0;
        }
        if self.hush.sniffer.suppressed > 0 {
            self.journal.line(&format!(
                "knock: {} later-knock lines not logged in the last second (a sniffed sequence \
                 replayed from many sources?)",
                self.hush.sniffer.suppressed
            ));
            self.hush.sniffer.suppressed = 0;
        }
        if self.hush.observed.suppressed > 0 {
            self.journal.line(&format!(
                "knock: observing: {} more would-be drops not logged in the last second \
                 (the counter observe_passed has them all)",
                self.hush.observed.suppressed
            ));
            self.hush.observed.suppressed = 0;
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

    /// Takes over a door an earlier daemon opened (found in the pinned gate): its start command
    /// ran then, its stop command runs here when it closes. Doors this daemon already knows of
    /// (from events that waited in the ring) are left alone. Returns whether it was adopted.
    pub fn adopt(&mut self, source: Addr, door: u8, expires_ns: u64) -> bool {
        if self.open.contains_key(&(source, door)) || self.door(door).is_none() {
            return false;
        }
        self.open.insert(
            (source, door),
            OpenDoor {
                expires_ns,
                start: None,
            },
        );
        self.mirror_open(source, door, expires_ns);
        true
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

    /// knockd's line for the knock that completed a sequence of `steps` knocks, which comes
    /// before its OPEN SESAME; none for a door an SPA packet opened (`steps` zero). Never held
    /// back as noise: it takes knowing the sequence.
    fn say_last_stage(&self, source: Addr, door: u8, steps: u8) {
        if steps > 0 {
            self.say(source, door, &format!("Stage {steps}"));
        }
    }

    /// Logs an event and runs its commands. Returns the id of a one-time door that has just
    /// used its sequence, so the caller can move it to the next one.
    pub fn on_event(&mut self, event: DoorEvent) -> Option<u8> {
        match event {
            DoorEvent::Stage {
                source,
                door,
                stage,
            } => {
                if self.may_log(Self::noise_of(stage)) {
                    self.say(source, door, &format!("Stage {stage}"));
                }
            }
            DoorEvent::Opened {
                source,
                door,
                expires_ns,
                steps,
            } => {
                self.say_last_stage(source, door, steps);
                self.say(source, door, "OPEN SESAME");
                let start = self.spawn_command(door, source, Which::Start, None);
                let opening = OpenDoor { expires_ns, start };
                if let Some(previous) = self.open.insert((source, door), opening) {
                    // The kernel saw the door as closed (its deadline had passed) before this
                    // daemon did: close the old opening first so its stop command is not lost.
                    self.close(source, door, previous);
                }
                // After the close above, so the mirror removes the old opening first.
                self.mirror_open(source, door, expires_ns);
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
                steps,
            } => {
                self.say_last_stage(source, door, steps);
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
                self.mirror_open(source, door, expires_ns);
            }
            DoorEvent::Reset {
                source,
                door,
                stage,
            } => {
                if self.journal.is_verbose() && self.may_log_noise() {
                    self.journal.detail(&format!(
                        "{}: {}: sequence reset by a wrong knock (stage {stage})",
                        self.who(source),
                        self.name(door)
                    ));
                }
            }
            DoorEvent::TimedOut {
                source,
                door,
                stage,
            } => {
                if self.may_log(Self::noise_of(stage)) {
                    self.say(source, door, &format!("sequence timeout (stage {stage})"));
                }
            }
            DoorEvent::Crowded { source, door } => {
                if self.may_log_noise() {
                    self.say(
                        source,
                        door,
                        "too many attempts in progress from this source; knock ignored",
                    );
                }
            }
            DoorEvent::GateFull {
                source,
                door,
                static_share,
            } => {
                if self.may_log(Noise::Sniffer) {
                    let what = if static_share {
                        "the gate's room for doors opened by static sequences is full (raise \
                         Gate_Capacity; SPA and single-use sequences still find room); the door \
                         stays shut"
                    } else {
                        "the gate's reserve is full (raise Gate_Reserve); the door stays shut"
                    };
                    self.say(source, door, what);
                }
            }
            DoorEvent::Banned {
                source,
                until_ns,
                prefix,
            } => {
                if self.may_log_noise() {
                    let whom = if prefix == 0 {
                        self.who(source)
                    } else {
                        format!("{} (with its /{prefix})", self.who(source))
                    };
                    self.journal.line(&format!(
                        "{whom}: failed too often; its knocks are ignored for {} s",
                        clock::until(until_ns).as_secs()
                    ));
                }
            }
            DoorEvent::SpentRefused {
                source,
                door,
                no_room: true,
            } => self.say(
                source,
                door,
                "no room to record a used single-use sequence; the door stays shut \
                 (`knock-user stop` clears the record)",
            ),
            DoorEvent::SpentRefused { source, door, .. } => {
                // Only whoever saw the sequence used can replay it, but from any address.
                if self.may_log_noise() {
                    self.say(
                        source,
                        door,
                        "this single-use sequence was used before; it opens nothing again",
                    );
                }
            }
            DoorEvent::WouldDrop { source, port } => {
                if self.may_log_observed() {
                    self.journal.line(&format!(
                        "knock: observing: {} would have been dropped: a new connection to \
                         {}:{} without an open door (passed)",
                        self.who(source),
                        port.port,
                        port.proto_name()
                    ));
                }
            }
            DoorEvent::SpaRejected { source, reason } => {
                if self.journal.is_verbose() && self.may_log_noise() {
                    self.journal.detail(&format!(
                        "{}: SPA packet refused: {}",
                        self.who(source),
                        reason.describe()
                    ));
                }
            }
        }
        None
    }

    /// What it takes to provoke a line about an attempt at `stage`: a first knock takes
    /// nothing, a later one the sequence.
    fn noise_of(stage: u8) -> Noise {
        if stage > 1 {
            Noise::Sniffer
        } else {
            Noise::Anyone
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

    /// Waits for running commands to finish, the start commands of doors that stay open
    /// included: the next daemon takes those doors over as opened.
    pub async fn finish(&mut self) {
        let starts: Vec<JoinHandle<()>> = self
            .open
            .values_mut()
            .filter_map(|open| open.start.take())
            .collect();
        for start in starts {
            let _ = start.await;
        }
        while self.commands.join_next().await.is_some() {}
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.finish().await;
        }
    }

    /// Reaps commands that have finished, so the set does not grow.
    pub fn reap(&mut self) {
        while self.commands.try_join_next().is_some() {}
    }

    fn close(&mut self, source: Addr, door: u8, open: OpenDoor) {
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.close(source, door);
        }
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
        let command = commands::expand(template, ip);
        let journal = Arc::clone(&self.journal);
        let name = config.name.clone();
        let task = async move {
            if let Some(start) = after {
                let _ = start.await;
            }
            commands::run(journal, name, command, COMMAND_DEADLINE).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DoorConfig;

    fn keeper_logging_to(path: &std::path::Path) -> Keeper {
        let journal = Arc::new(Journal::new(false, Some(path), false).unwrap());
        Keeper::new(
            vec![Some(DoorConfig::new("openSSH", 1))],
            journal,
            Names::new(false),
        )
    }

    fn log_of(events: &[DoorEvent]) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!(
            "knock-keeper-{}-{}",
            std::process::id(),
            events.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut keeper = keeper_logging_to(&path);
        for event in events {
            keeper.on_event(*event);
        }
        keeper.report_hushed();
        let log = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        log.lines()
            .map(|l| l.split_once("] ").map_or(l, |(_, m)| m).to_owned())
            .collect()
    }

    #[test]
    fn the_last_knock_logs_its_stage_before_open_sesame_as_knockd_does() {
        let source = Addr::from_ipv4([198, 51, 100, 2]);
        let stage = |stage| DoorEvent::Stage {
            source,
            door: 0,
            stage,
        };
        let log = log_of(&[
            stage(1),
            stage(2),
            DoorEvent::Opened {
                source,
                door: 0,
                expires_ns: u64::MAX,
                steps: 3,
            },
        ]);
        assert_eq!(
            log,
            [
                "198.51.100.2: openSSH: Stage 1",
                "198.51.100.2: openSSH: Stage 2",
                "198.51.100.2: openSSH: Stage 3",
                "198.51.100.2: openSSH: OPEN SESAME",
            ]
        );
    }

    #[test]
    fn a_door_an_spa_packet_opened_logs_no_stage() {
        let log = log_of(&[DoorEvent::Opened {
            source: Addr::from_ipv4([198, 51, 100, 2]),
            door: 0,
            expires_ns: u64::MAX,
            steps: 0,
        }]);
        assert_eq!(log, ["198.51.100.2: openSSH: OPEN SESAME"]);
    }

    #[test]
    fn would_be_drops_are_logged_within_their_own_budget() {
        let mut events: Vec<DoorEvent> = (0..50u8)
            .map(|i| DoorEvent::WouldDrop {
                source: Addr::from_ipv4([203, 0, 113, i]),
                port: knock_common::ProtoPort::tcp(22),
            })
            .collect();
        events.push(DoorEvent::Stage {
            source: Addr::from_ipv4([198, 51, 100, 2]),
            door: 0,
            stage: 1,
        });
        let log = log_of(&events);
        let observed = log
            .iter()
            .filter(|l| l.contains("would have been dropped"))
            .count();
        assert_eq!(observed, NOISE_PER_SECOND as usize, "{log:#?}");
        assert!(log.contains(&"knock: observing: 203.0.113.0 would have been dropped: a new connection to 22:tcp without an open door (passed)".to_owned()), "{log:#?}");
        assert!(
            log.contains(&"198.51.100.2: openSSH: Stage 1".to_owned()),
            "a scan does not hush knocks: {log:#?}"
        );
        assert!(
            log.iter()
                .any(|l| l.starts_with("knock: observing: 30 more would-be drops not logged")),
            "{log:#?}"
        );
    }

    #[test]
    fn a_flood_of_first_knocks_is_counted_not_logged_line_by_line() {
        let dir = std::env::temp_dir().join(format!("knock-hush-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut keeper = keeper_logging_to(&path);
        for i in 0..100u8 {
            keeper.on_event(DoorEvent::Stage {
                source: Addr::from_ipv4([198, 51, 100, i]),
                door: 0,
                stage: 1,
            });
        }
        keeper.on_event(DoorEvent::Stage {
            source: Addr::from_ipv4([198, 51, 100, 200]),
            door: 0,
            stage: 2,
        });
        keeper.report_hushed();
        let log = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let stage_ones = log.lines().filter(|l| l.ends_with("Stage 1")).count();
        assert_eq!(stage_ones, NOISE_PER_SECOND as usize);
        assert!(
            log.contains("198.51.100.200: openSSH: Stage 2"),
            "later stages always log"
        );
        assert!(
            log.contains("knock: 80 first-knock lines not logged"),
            "{log}"
        );
    }
}
