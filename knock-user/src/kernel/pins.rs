//! Pinned state: the program's links and the maps holding knock state live in bpffs, under
//! `/sys/fs/bpf/knock/<interface>/`. A restarted or upgraded daemon finds open doors and
//! attempts where the last one left them, and while no daemon runs the kernel keeps gating and
//! opening doors; only log lines and commands wait for the next daemon.
//!
//! The maps that describe the configuration are not pinned: every start builds them afresh
//! from the file, so nothing stale survives a change of configuration or version.

use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData, MapInfo};
use knock_common::maps;
use knock_common::status::{DaemonInfo, LAYOUT};

use crate::system::proc;

/// Where state directories live unless `--state-dir` says otherwise.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/knock";

mod bpffs;
mod links;

pub use bpffs::{BPFFS_MOUNT, Bpffs, Facts, Lifetime, device_of, holds, is_bpffs, lifetime};
pub use links::{attached_ifindex, detach_pinned_link};

/// The maps that outlive the daemon: state, counters, the event ring (events that happen while
/// no daemon runs wait there), the door records and names that tie ids to doors, the
/// fingerprint and daemon record that `status` and the next daemon read, and the settings, whose
/// IPv6 ban prefix `knock-user unban` needs when no daemon runs. The program array and scratch
/// slot that the main program hands packets over with are pinned too, but for each program
/// object (see [`StateDir::handoff_path`]).
pub const PINNED: [&str; 17] = [
    maps::SPENT,
    maps::PROGRESS,
    maps::LAST_KNOCK,
    maps::GATE,
    maps::GATE_RESERVE,
    maps::RESERVE_SEEN,
    maps::PASS_SEEN,
    maps::BANS,
    maps::BAN_SEEN,
    maps::NONCES,
    maps::COUNTERS,
    maps::EVENTS,
    maps::DOORS,
    maps::NAMES,
    maps::LAYOUT,
    maps::DAEMON,
    maps::SETTINGS,
];

/// The prefix of a pinned link's file name; the interface's name follows.
const LINK_PREFIX: &str = "link-";
/// The pinned link of the socket-lookup guard (no interface: it guards the namespace).
const GUARD_LINK: &str = "socket-lookup";
/// The prefixes of the program array and the scratch map pinned for one program object; its
/// fingerprint follows.
const HANDOFF_PREFIX: &str = "HANDOFF-";
const SCRATCH_PREFIX: &str = "SCRATCH-";
/// The program array as versions before per-object hand-overs pinned it, for every object.
const SHARED_HANDOFF: &str = knock_common::HANDOFF;
/// The prefix of the empty directories that name the interfaces a daemon guards, attached or
/// not (one that is missing has no link).
const GUARD_PREFIX: &str = "guard-";

/// An interface name as a bpffs file name. bpffs refuses dots in names (it keeps them for
/// itself), and interface names may hold them (`eth0.100`), so `%` and `.` are escaped.
fn encode(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2e")
}

fn decode(name: &str) -> String {
    name.replace("%2e", ".").replace("%25", "%")
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path} is not on a BPF filesystem, so nothing can be pinned there")]
    NotBpffs { path: PathBuf },
    #[error("cannot mount a BPF filesystem on {BPFFS_MOUNT}")]
    Mount(#[source] std::io::Error),
    #[error("cannot use {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the pinned map {path}")]
    Map {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "{dir} belongs to a running daemon (pid {pid}); stop it first, or send it SIGHUP to reload"
    )]
    Busy { dir: PathBuf, pid: u32 },
}

/// One daemon's state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

/// A state directory made ready for a daemon: what it held, and how its bpffs got there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub found: Found,
    pub bpffs: Bpffs,
}

/// What a state directory held when a daemon opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing: a first start.
    Empty,
    /// Maps of this version's layout, which the daemon takes over.
    Compatible,
    /// Maps of another layout, which were removed (their links detached).
    Replaced { layout: Option<u32> },
}

impl StateDir {
    /// The directory of a daemon guarding `interfaces`, named after the first of them.
    pub fn for_interfaces(root: &Path, interfaces: &[String]) -> Self {
        let first = interfaces.first().map_or("none", String::as_str);
        Self {
            path: root.join(encode(first)),
        }
    }

    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn link_path(&self, iface: &str) -> PathBuf {
        self.path.join(format!("{LINK_PREFIX}{}", encode(iface)))
    }

    pub fn lookup_guard_path(&self) -> PathBuf {
        self.path.join(GUARD_LINK)
    }

    /// Where the program array of the program object with fingerprint `object` is pinned: the
    /// main program tail-calls the object's other programs through it. Each object has its
    /// own, with its own scratch slot ([`Self::scratch_path`]): on an upgrade the earlier main
    /// program goes on calling its own programs, which read the slot it wrote, until its links
    /// are taken over. A restart of the same object shares both. The kernel empties a program
    /// array when its last pin or descriptor goes, so the pin stays as long as a main program
    /// of that object may run (see [`Self::remove_other_objects`]).
    pub fn handoff_path(&self, object: &str) -> PathBuf {
        self.path.join(format!("{HANDOFF_PREFIX}{object}"))
    }

    /// Where the scratch map of the program object with fingerprint `object` is pinned. The
    /// main program leaves each packet there for the programs it tail-calls; only the same
    /// object shares it: another one may lay the slot out differently.
    pub fn scratch_path(&self, object: &str) -> PathBuf {
        self.path.join(format!("{SCRATCH_PREFIX}{object}"))
    }

    /// Unpins the program arrays and scratch maps of program objects other than `object`
    /// (and the program array earlier versions shared between objects). Only once no link
    /// runs another object's main program: its tail calls would find an emptied array. A map
    /// still held keeps working: only the name goes.
    pub fn remove_other_objects(&self, object: &str) {
        let names = std::fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for name in other_objects(&names, object) {
            // Best effort: a pin left here costs a few KiB until `knock-user stop`.
            let _ = std::fs::remove_file(self.path.join(name));
        }
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// The interfaces whose links are pinned here.
    pub fn linked_interfaces(&self) -> Vec<String> {
        self.names_with(LINK_PREFIX)
    }

    /// The interfaces guarded from here: those a daemon recorded (attached or missing), and
    /// those with a pinned link (state from before such records).
    pub fn guarded_interfaces(&self) -> Vec<String> {
        let mut names = self.names_with(GUARD_PREFIX);
        names.extend(self.names_with(LINK_PREFIX));
        names.sort();
        names.dedup();
        names
    }

    /// Whether the program runs on `iface`: its link is pinned here and still attached to an
    /// interface (a link whose interface went away is attached to none).
    pub fn is_attached(&self, iface: &str) -> bool {
        attached_ifindex(&self.link_path(iface)).is_ok_and(|index| index != 0)
    }

    /// Records that this state guards exactly `interfaces`, attached or not.
    pub fn mark_guarded(&self, interfaces: &[String]) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        for stale in self
            .names_with(GUARD_PREFIX)
            .into_iter()
            .filter(|name| !interfaces.contains(name))
        {
            let _ = std::fs::remove_dir(self.guard_path(&stale));
        }
        for iface in interfaces {
            match std::fs::create_dir(self.guard_path(iface)) {
                Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(io(error));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn guard_path(&self, iface: &str) -> PathBuf {
        self.path.join(format!("{GUARD_PREFIX}{}", encode(iface)))
    }

    fn names_with(&self, prefix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_prefix(prefix).map(decode))
            .collect();
        names.sort();
        names
    }

    /// Makes the directory ready for a daemon: on a bpffs (mounting one on /sys/fs/bpf when
    /// the root lies there and nothing is mounted), not in use by a live daemon, and holding
    /// maps of this version's layout or none.
    pub fn open(&self) -> Result<Opened, StateError> {
        let root = self.path.parent().unwrap_or(&self.path);
        let bpffs = bpffs::ensure_bpffs(root)?;
        let found = self.settle()?;
        Ok(Opened { found, bpffs })
    }

    /// What the directory holds, made usable: this version's maps, or none.
    fn settle(&self) -> Result<Found, StateError> {
        std::fs::create_dir_all(&self.path).map_err(|source| StateError::Io {
            path: self.path.clone(),
            source,
        })?;
        if let Some(info) = self.daemon()
            && info.pid != std::process::id()
            && proc::is_knock_daemon(info.pid)
        {
            return Err(StateError::Busy {
                dir: self.path.clone(),
                pid: info.pid,
            });
        }
        let pinned = self.map_path(maps::LAYOUT);
        if !pinned.exists() {
            let leftovers = self.has_entries();
            self.remove()?;
            std::fs::create_dir_all(&self.path).map_err(|source| StateError::Io {
                path: self.path.clone(),
                source,
            })?;
            return Ok(if leftovers {
                Found::Replaced { layout: None }
            } else {
                Found::Empty
            });
        }
        match self.layout() {
            Ok(Some(layout)) if layout == LAYOUT && self.all_maps_pinned() => Ok(Found::Compatible),
            found => {
                self.remove()?;
                std::fs::create_dir_all(&self.path).map_err(|source| StateError::Io {
                    path: self.path.clone(),
                    source,
                })?;
                Ok(Found::Replaced {
                    layout: found.ok().flatten(),
                })
            }
        }
    }

    fn has_entries(&self) -> bool {
        std::fs::read_dir(&self.path).is_ok_and(|mut e| e.next().is_some())
    }

    fn all_maps_pinned(&self) -> bool {
        PINNED.iter().all(|name| self.map_path(name).exists())
    }

    /// The layout fingerprint the pinned maps were made with; `None` before the first daemon
    /// wrote it.
    pub fn layout(&self) -> Result<Option<u32>, StateError> {
        let array: Array<MapData, u32> = self.array(maps::LAYOUT)?;
        let value = array.get(&0, 0).map_err(|source| StateError::Map {
            path: self.map_path(maps::LAYOUT),
            source,
        })?;
        Ok((value != 0).then_some(value))
    }

    /// The daemon record, if the maps are pinned and of this layout.
    pub fn daemon(&self) -> Option<DaemonInfo> {
        if !matches!(self.layout(), Ok(Some(LAYOUT))) {
            return None;
        }
        let array: Array<MapData, DaemonInfo> = self.array(maps::DAEMON).ok()?;
        array.get(&0, 0).ok().filter(|info| info.pid != 0)
    }

    /// A pinned array.
    pub fn array<V: aya::Pod>(&self, name: &str) -> Result<Array<MapData, V>, StateError> {
        let path = self.map_path(name);
        let map = MapData::from_pin(&path)
            .and_then(Map::from_map_data)
            .map_err(|source| StateError::Map {
                path: path.clone(),
                source,
            })?;
        Array::try_from(map).map_err(|source| StateError::Map { path, source })
    }

    /// A pinned map, for the callers that know its type.
    pub fn map(&self, name: &str) -> Result<Map, StateError> {
        let path = self.map_path(name);
        MapData::from_pin(&path)
            .and_then(Map::from_map_data)
            .map_err(|source| StateError::Map { path, source })
    }

    /// How many entries a pinned map holds at most.
    pub fn capacity(&self, name: &str) -> Option<u32> {
        MapInfo::from_pin(self.map_path(name))
            .ok()
            .map(|info| info.max_entries())
    }

    /// Unpins everything here and removes the directory. A link whose pin goes and which no
    /// process holds is released, which detaches its program; maps go with their last user.
    pub fn remove(&self) -> Result<(), StateError> {
        for iface in self.linked_interfaces() {
            // Best effort: a link that cannot be detached here goes with its pin, later.
            let _ = detach_pinned_link(&self.link_path(&iface));
        }
        if self.lookup_guard_path().exists() {
            let _ = detach_pinned_link(&self.lookup_guard_path());
        }
        match std::fs::remove_dir_all(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
                path: self.path.clone(),
                source: error,
            }),
            _ => Ok(()),
        }
    }
}

/// The pins among `names` (a state directory's entries) that belong to program objects other
/// than `object`: their program arrays and scratch maps, and the shared program array of
/// earlier versions.
fn other_objects<'a>(names: &'a [String], object: &str) -> Vec<&'a str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|name| {
            *name == SHARED_HANDOFF
                || [HANDOFF_PREFIX, SCRATCH_PREFIX].iter().any(|prefix| {
                    name.strip_prefix(prefix)
                        .is_some_and(|fingerprint| fingerprint != object)
                })
        })
        .collect()
}

/// Every state directory under `root`.
pub fn all(root: &Path) -> Vec<StateDir> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<StateDir> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| StateDir::at(e.path()))
        .collect();
    dirs.sort_by(|a, b| a.path.cmp(&b.path));
    dirs
}

/// The state directories to act on: those guarding `iface`, or all of them.
pub fn select(root: &Path, iface: Option<&str>) -> Vec<StateDir> {
    all(root)
        .into_iter()
        .filter(|dir| match iface {
            Some(name) => {
                dir.path.file_name().is_some_and(|n| *n == *encode(name))
                    || dir.guarded_interfaces().iter().any(|i| i == name)
            }
            None => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_with_dots_become_bpffs_names_without_and_back() {
        for iface in ["eth0", "eth0.100", "wlan0%x.1", "a.b.c"] {
            let name = encode(iface);
            assert!(!name.contains('.'), "{name}");
            assert_eq!(decode(&name), iface);
        }
    }

    #[test]
    fn another_program_objects_hand_over_pins_are_the_ones_to_remove() {
        let names: Vec<String> = [
            "HANDOFF-0badf00d",
            "SCRATCH-0badf00d",
            "HANDOFF-12345678",
            "SCRATCH-12345678",
            "HANDOFF",
            "DOORS",
            "GATE",
            "link-eth0",
            "guard-eth0",
            "socket-lookup",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            other_objects(&names, "12345678"),
            ["HANDOFF-0badf00d", "SCRATCH-0badf00d", "HANDOFF"]
        );
        assert_eq!(
            other_objects(&names, "0badf00d"),
            ["HANDOFF-12345678", "SCRATCH-12345678", "HANDOFF"]
        );
    }

    #[test]
    fn only_this_program_objects_hand_over_pins_stay() {
        let root = std::env::temp_dir().join(format!("knock-handoff-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let dir = StateDir::at(root.clone());
        for object in ["0badf00d", "12345678"] {
            std::fs::write(dir.scratch_path(object), "").unwrap();
            std::fs::write(dir.handoff_path(object), "").unwrap();
        }
        for name in [SHARED_HANDOFF, maps::DOORS] {
            std::fs::write(dir.map_path(name), "").unwrap();
        }
        dir.remove_other_objects("12345678");
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(left, ["DOORS", "HANDOFF-12345678", "SCRATCH-12345678"]);
    }

    #[test]
    fn a_link_pin_is_named_after_its_interface() {
        let dir = StateDir::for_interfaces(Path::new("/sys/fs/bpf/knock"), &["eth0.100".into()]);
        assert_eq!(dir.path(), Path::new("/sys/fs/bpf/knock/eth0%2e100"));
        assert_eq!(
            dir.link_path("eth0.100"),
            Path::new("/sys/fs/bpf/knock/eth0%2e100/link-eth0%2e100")
        );
    }
}
