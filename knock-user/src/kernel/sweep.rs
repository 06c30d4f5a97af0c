//! Expiry from user space: the kernel enforces every deadline itself, but only notices a stale
//! attempt when its source sends again. The sweeper removes stale progress (logging its timeout
//! as knockd would) and expired gate entries, so the maps hold only live state.

use aya::maps::{HashMap, MapData};
use knock_common::gate::Pass;
use knock_common::progress::{self, Change, Observer, Progress};
use knock_common::{Addr, Door};

use knock_common::event::DoorEvent;

/// Removes attempts past their sequence timeout; returns a `TimedOut` event for each.
pub fn progress(
    map: &mut HashMap<&mut MapData, Addr, Progress>,
    doors: &[Door],
    now_ns: u64,
) -> Vec<DoorEvent> {
    let sources: Vec<Addr> = map.keys().filter_map(Result::ok).collect();
    let mut events = Vec::new();
    for source in sources {
        let Ok(mut value) = map.get(&source, 0) else {
            continue;
        };
        let mut collector = Collector {
            source,
            events: Vec::new(),
        };
        progress::expire(&mut value, doors, now_ns, &mut collector);
        if collector.events.is_empty() {
            continue;
        }
        // A knock from this source between the read above and this write is lost; the window
        // is microseconds and only ever costs the knocker a retry.
        if value.is_empty() {
            let _ = map.remove(&source);
        } else {
            let _ = map.insert(source, value, 0);
        }
        events.extend(collector.events);
    }
    events
}

/// Removes the passes of sources whose doors have all closed. Returns how many remain.
pub fn gate(map: &mut HashMap<&mut MapData, Addr, Pass>, now_ns: u64) -> usize {
    let entries: Vec<(Addr, Pass)> = map.iter().filter_map(Result::ok).collect();
    let mut remaining = 0;
    for (source, pass) in entries {
        if !pass.is_closed_at(now_ns) {
            remaining += 1;
            continue;
        }
        // Read again just before removing: a sequence completed since the listing has opened
        // a door, and that pass must stay.
        match map.get(&source, 0) {
            Ok(fresh) if !fresh.is_closed_at(now_ns) => remaining += 1,
            _ => {
                let _ = map.remove(&source);
            }
        }
    }
    remaining
}

/// Closes, in every pass, the slots of doors that no longer exist, so their ids can be reused.
pub fn forget_doors(map: &mut HashMap<&mut MapData, Addr, Pass>, doors: &[u8]) {
    if doors.is_empty() {
        return;
    }
    let entries: Vec<(Addr, Pass)> = map.iter().filter_map(Result::ok).collect();
    for (source, mut pass) in entries {
        let mut changed = false;
        for slot in 0..pass.door.len() {
            if doors.contains(&pass.door[slot]) && pass.expires_ns[slot] != 0 {
                pass.expires_ns[slot] = 0;
                changed = true;
            }
        }
        if changed {
            let _ = map.insert(source, pass, 0);
        }
    }
}

struct Collector {
    source: Addr,
    events: Vec<DoorEvent>,
}

impl Observer for Collector {
    fn observe(&mut self, door: u8, _: &Door, change: Change) {
        if let Change::TimedOut(stage) = change {
            self.events.push(DoorEvent::TimedOut {
                source: self.source,
                door,
                stage,
            });
        }
    }
}
