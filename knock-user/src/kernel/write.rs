//! Writing a plan into the maps: the plan-to-map diff (`plan::diff`) applied by one generic
//! writer, then the settings. What the maps may hold is tracked across failures
//! (`plan::diff::Held`), so a push that breaks off halfway never leaves a revoked key or a
//! removed network behind the next one.

use std::borrow::BorrowMut;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap, MapData, MapError};
use knock_common::maps;
use knock_common::settings::Settings;

use super::{Knock, LoadError, map_error};
use crate::plan::Plan;
use crate::plan::diff::{Changes, Held, MapDiff};
use crate::system::clock;

/// A map the writer puts entries into and removes them from.
trait Table<K, V> {
    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError>;
    fn remove(&mut self, key: &K) -> Result<(), MapError>;
}

impl<T: BorrowMut<MapData>, V: aya::Pod> Table<u32, V> for Array<T, V> {
    fn put(&mut self, index: &u32, value: &V) -> Result<(), MapError> {
        self.set(*index, value, 0)
    }

    /// An array keeps every slot: the diff empties them with puts and removes none.
    fn remove(&mut self, _: &u32) -> Result<(), MapError> {
        Ok(())
    }
}

impl<T: BorrowMut<MapData>, K: aya::Pod, V: aya::Pod> Table<K, V> for HashMap<T, K, V> {
    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError> {
        self.insert(key, value, 0)
    }

    fn remove(&mut self, key: &K) -> Result<(), MapError> {
        HashMap::remove(self, key)
    }
}

impl<T: BorrowMut<MapData>> Table<(u32, [u8; 16]), u8> for LpmTrie<T, [u8; 16], u8> {
    fn put(&mut self, (prefix, address): &(u32, [u8; 16]), value: &u8) -> Result<(), MapError> {
        self.insert(&LpmKey::new(*prefix, *address), value, 0)
    }

    fn remove(&mut self, (prefix, address): &(u32, [u8; 16])) -> Result<(), MapError> {
        LpmTrie::remove(self, &LpmKey::new(*prefix, *address))
    }
}

/// The one writer: applies a map's changes, removals first (an entry already gone is no
/// error), then puts.
fn apply<K, V>(
    name: &'static str,
    table: &mut impl Table<K, V>,
    changes: &Changes<K, V>,
) -> Result<(), LoadError> {
    for key in &changes.remove {
        let _ = table.remove(key);
    }
    for (key, value) in &changes.put {
        table.put(key, value).map_err(map_error(name))?;
    }
    Ok(())
}

impl Knock {
    /// Writes a plan into the maps: what differs from what they may hold (everything, the first
    /// time), then the settings with the next generation. A push that fails halfway is
    /// remembered as such (`Held::after_failed_push`), so the next one removes whatever this
    /// one may have left.
    pub fn push(&mut self, plan: &Plan) -> Result<(), LoadError> {
        let diff = plan.diff_from_held(&self.held);
        let generation = self.generation + 1;
        log::debug!(
            "push {generation}: {} map entries change ({} doors, {} names, {} ports)",
            diff.len(),
            diff.doors.len(),
            diff.names.len(),
            diff.ports.len()
        );
        let mut pushed = plan.clone();
        pushed.settings.generation = generation;
        pushed.settings.label_key = self.label_key;
        if let Err(error) = self.write(&diff) {
            let held = std::mem::take(&mut self.held);
            self.held = held.after_failed_push(&pushed);
            return Err(error);
        }
        self.generation = generation;
        self.settings = Some(pushed.settings);
        self.held = Held::Exactly(pushed);
        self.sync_clock()
    }

    /// Applies a diff, map by map in the order of `MapDiff`; the first failure ends it.
    fn write(&mut self, diff: &MapDiff) -> Result<(), LoadError> {
        self.write_array(maps::DOORS, &diff.doors)?;
        self.write_array(maps::NAMES, &diff.names)?;
        self.write_hash(maps::FIRST_STEPS, &diff.first_steps)?;
        self.write_array(maps::PORTS, &diff.ports)?;
        self.write_array(maps::GUARDS, &diff.guards)?;
        self.write_hash(maps::KEYS, &diff.keys)?;
        self.write_hash(maps::SPA_DOORS, &diff.spa_doors)?;
        self.write_hash(maps::LOCAL_ADDRS, &diff.local)?;
        let map = self
            .ebpf
            .map_mut(maps::ALWAYS_ALLOW)
            .ok_or(LoadError::MissingMap(maps::ALWAYS_ALLOW))?;
        let mut allow: LpmTrie<_, [u8; 16], u8> =
            LpmTrie::try_from(map).map_err(map_error(maps::ALWAYS_ALLOW))?;
        apply(maps::ALWAYS_ALLOW, &mut allow, &diff.always_allow)
    }

    fn write_array<V: aya::Pod>(
        &mut self,
        name: &'static str,
        changes: &Changes<u32, V>,
    ) -> Result<(), LoadError> {
        let mut array: Array<_, V> = self.array(name)?;
        apply(name, &mut array, changes)
    }

    fn write_hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        changes: &Changes<K, V>,
    ) -> Result<(), LoadError> {
        let mut hash: HashMap<_, K, V> = self.hash(name)?;
        apply(name, &mut hash, changes)
    }

    /// Writes the settings with the current offset of the wall clock from the monotonic one,
    /// which the program needs to judge SPA timestamps, and the coarse time of recent knocks.
    /// The daemon calls this every second.
    pub fn sync_clock(&mut self) -> Result<(), LoadError> {
        let Some(value) = self.settings.as_mut() else {
            return Ok(());
        };
        value.clock_offset_ns = clock::wall_offset_ns();
        value.recent_tick = knock_common::recent::tick(clock::monotonic_ns());
        let value = *value;
        let mut settings: Array<_, Settings> = self.array(maps::SETTINGS)?;
        settings.set(0, value, 0).map_err(map_error(maps::SETTINGS))
    }
}
