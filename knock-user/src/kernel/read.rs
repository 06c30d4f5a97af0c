//! Reading the maps back: what the loaded program holds (for the daemon) and what a pinned state
//! directory holds (for `status`, `stop` and the next daemon), through the same readers.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use knock_common::counter::Counter;
use knock_common::spent::Tag;
use knock_common::status::{DaemonInfo, DoorName};
use knock_common::{Door, MAX_DOORS, maps};

use super::{Knock, LoadError, map_error};

/// Door records and names by id, as `DOORS` and `NAMES` hold them.
pub fn doors<T: Borrow<MapData>>(
    records: &Array<T, Door>,
    names: &Array<T, DoorName>,
) -> Vec<(Door, Option<String>)> {
    (0..MAX_DOORS as u32)
        .map(|id| {
            let door = records.get(&id, 0).unwrap_or_else(|_| Door::new());
            let name = names
                .get(&id, 0)
                .ok()
                .and_then(|n| n.as_str().map(str::to_owned));
            (door, name)
        })
        .collect()
}

/// The packet counters, summed over CPUs; a counter that cannot be read counts zero.
pub fn counters<T: Borrow<MapData>>(map: &PerCpuArray<T, u64>) -> Vec<(Counter, u64)> {
    Counter::ALL
        .iter()
        .map(|counter| {
            let value = map
                .get(&(*counter as u32), 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0);
            (*counter, value)
        })
        .collect()
}

impl Knock {
    /// The door records and names as the pinned maps hold them, by id: what an earlier daemon
    /// pushed, so a new one keeps each door's id.
    pub fn kept_doors(&self) -> Result<Vec<(Door, Option<String>)>, LoadError> {
        let records: Array<_, Door> =
            Array::try_from(self.map(maps::DOORS)?).map_err(map_error(maps::DOORS))?;
        let names: Array<_, DoorName> =
            Array::try_from(self.map(maps::NAMES)?).map_err(map_error(maps::NAMES))?;
        Ok(doors(&records, &names))
    }

    /// The packet counters, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, LoadError> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.map(maps::COUNTERS)?).map_err(map_error(maps::COUNTERS))?;
        Ok(counters(&map))
    }

    /// The daemon record as the pinned maps hold it.
    pub fn daemon_record(&mut self) -> Option<DaemonInfo> {
        let daemon: Array<_, DaemonInfo> = self.array(maps::DAEMON).ok()?;
        daemon.get(&0, 0).ok()
    }

    /// A door record as the kernel holds it now (the program empties used one-time sequences).
    pub fn door_record(&mut self, id: usize) -> Option<Door> {
        let doors: Array<_, Door> = self.array(maps::DOORS).ok()?;
        doors.get(&(id as u32), 0).ok()
    }

    /// What a map was created with; a pinned map keeps the capacity it was first made with.
    pub fn capacity(&self, name: &str) -> Option<u32> {
        let map = self.ebpf.map(name)?;
        let data = match map {
            aya::maps::Map::HashMap(data) | aya::maps::Map::LruHashMap(data) => data,
            _ => return None,
        };
        data.info().ok().map(|info| info.max_entries())
    }

    /// Every single-use sequence the program has claimed, by tag, with when it was claimed
    /// (monotonic clock, ns): see `knock_common::spent`.
    pub fn spent(&mut self) -> Result<BTreeMap<Tag, u64>, LoadError> {
        let map: HashMap<_, Tag, u64> = self.hash(maps::SPENT)?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    /// Whether the program has claimed `tag`. A read error counts as no: the caller only moves
    /// a door on when it is sure.
    pub fn is_spent(&mut self, tag: Tag) -> bool {
        self.hash::<Tag, u64>(maps::SPENT)
            .is_ok_and(|map| map.get(&tag, 0).is_ok())
    }

    /// Forgets claimed tags (stale rotating ones); a tag already gone is no error.
    pub fn forget_spent(&mut self, tags: &[Tag]) -> Result<(), LoadError> {
        let mut map: HashMap<_, Tag, u64> = self.hash(maps::SPENT)?;
        for tag in tags {
            let _ = map.remove(tag);
        }
        Ok(())
    }

    /// Instructions of the program as loaded, and how many the verifier walked to accept it.
    /// Summed over the programs loaded: the entry points in use and the SPA program.
    pub fn instruction_count(&self) -> Option<(u32, u32)> {
        let mut total = (0, 0);
        for name in self.loaded_programs() {
            let info = self.ebpf.program(name)?.info().ok()?;
            total.0 += info.size_translated()? / 8;
            total.1 += info.verified_instruction_count()?;
        }
        Some(total)
    }

    /// What each of the program's maps holds at most, and the memory the kernel charges for it.
    /// Read through this process's own map descriptors: looking maps up by id would need
    /// CAP_SYS_ADMIN, which knock.service does not grant. Call it before `take_events`, or the
    /// ring is missing from the list.
    pub fn map_memory(&self) -> Vec<MapMemory> {
        let mut maps: Vec<MapMemory> = self
            .ebpf
            .maps()
            .filter_map(|(name, map)| {
                let data = map_data(map)?;
                let info = data.info().ok()?;
                Some(MapMemory {
                    name: name.to_owned(),
                    entries: info.max_entries(),
                    bytes: memlock(data.fd()),
                })
            })
            .collect();
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        maps
    }
}

/// The kernel object behind a map of one of the kinds the program uses.
fn map_data(map: &aya::maps::Map) -> Option<&MapData> {
    use aya::maps::Map;
    match map {
        Map::Array(data)
        | Map::HashMap(data)
        | Map::LruHashMap(data)
        | Map::LpmTrie(data)
        | Map::PerCpuArray(data)
        | Map::PerCpuHashMap(data)
        | Map::PerCpuLruHashMap(data)
        | Map::ProgramArray(data)
        | Map::RingBuf(data)
        | Map::PerfEventArray(data) => Some(data),
        _ => None,
    }
}

/// One map's capacity and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMemory {
    pub name: String,
    pub entries: u32,
    /// As /proc reports it for the map's descriptor; `None` when the kernel does not say.
    pub bytes: Option<u64>,
}

/// The `memlock` line of a BPF map descriptor's fdinfo: the memory the map uses.
fn memlock(fd: &impl std::os::fd::AsFd) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    let raw = fd.as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
}
