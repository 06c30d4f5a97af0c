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

    /// Puts claims recorded elsewhere (tag, monotonic ns of the claim) back into the
    /// program's record, where it has none yet; returns how many were missing.
    pub fn restore_spent(&mut self, claims: &[(Tag, u64)]) -> Result<usize, LoadError> {
        const BPF_NOEXIST: u64 = 1;
        let mut map: HashMap<_, Tag, u64> = self.hash(maps::SPENT)?;
        let mut restored = 0;
        for (tag, at) in claims {
            match map.insert(tag, at, BPF_NOEXIST) {
                Ok(()) => restored += 1,
                // Claimed already: the kernel's own record stands.
                Err(aya::maps::MapError::SyscallError(error))
                    if error.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => {
                    return Err(LoadError::Map {
                        map: maps::SPENT,
                        source,
                    });
                }
            }
        }
        Ok(restored)
    }

    /// Forgets claimed tags (stale rotating ones); a tag already gone is no error.
    pub fn forget_spent(&mut self, tags: &[Tag]) -> Result<(), LoadError> {
        let mut map: HashMap<_, Tag, u64> = self.hash(maps::SPENT)?;
        for tag in tags {
            let _ = map.remove(tag);
        }
        Ok(())
    }

    /// What the kernel made of each loaded program: the entry points in use and the SPA one.
    pub fn program_sizes(&self) -> Vec<ProgramSize> {
        self.loaded_programs()
            .into_iter()
            .map(|name| {
                let info = self.ebpf.program(name).and_then(|p| p.info().ok());
                ProgramSize {
                    name,
                    instructions: info
                        .as_ref()
                        .and_then(|i| i.size_translated())
                        .map(|bytes| bytes / 8),
                    verified: info.as_ref().and_then(|i| i.verified_instruction_count()),
                    jited_bytes: info.as_ref().map_or(0, |i| i.size_jitted()),
                }
            })
            .collect()
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

/// One program as the kernel took it, for the daemon's `-v` lines and the kernel matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSize {
    pub name: &'static str,
    /// Instructions after the verifier's rewrites; `None` when the kernel does not say.
    pub instructions: Option<u32>,
    /// Instructions the verifier walked to accept it; kernels report it from 5.16 on.
    pub verified: Option<u32>,
    /// Bytes of machine code the JIT made; 0 when the kernel interprets the program.
    pub jited_bytes: u32,
}

impl std::fmt::Display for ProgramSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = |n: Option<u32>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        write!(
            f,
            "program {}: {} instructions, verifier walked {}",
            self.name,
            unknown(self.instructions),
            unknown(self.verified),
        )?;
        if self.verified.is_none() {
            f.write_str(" (kernels before 5.16 do not say)")?;
        }
        match self.jited_bytes {
            0 => f.write_str(", not JIT-compiled (the kernel interprets it)"),
            bytes => write!(f, ", JIT image {bytes} bytes"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_sizes_read_as_the_kernel_matrix_expects() {
        let jited = ProgramSize {
            name: "knock",
            instructions: Some(2345),
            verified: Some(241_875),
            jited_bytes: 12_345,
        };
        assert_eq!(
            jited.to_string(),
            "program knock: 2345 instructions, verifier walked 241875, JIT image 12345 bytes"
        );
        let old_kernel = ProgramSize {
            name: "knock_spa",
            instructions: Some(800),
            verified: None,
            jited_bytes: 0,
        };
        assert_eq!(
            old_kernel.to_string(),
            "program knock_spa: 800 instructions, verifier walked ? (kernels before 5.16 do not \
             say), not JIT-compiled (the kernel interprets it)"
        );
    }
}
