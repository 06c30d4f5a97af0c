//! Pinned state: the program's links and the maps holding knock state live in bpffs, under
//! `/sys/fs/bpf/knock/<interface>/`. A restarted or upgraded daemon finds open doors and
//! attempts where the last one left them, and while no daemon runs the kernel keeps gating and
//! opening doors; only log lines and commands wait for the next daemon.
//!
//! The maps that describe the configuration are not pinned: every start builds them afresh
//! from the file, so nothing stale survives a change of configuration or version.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData, MapInfo};
use knock_common::maps;
use knock_common::status::{DaemonInfo, LAYOUT};

use crate::system::proc;

/// Where state directories live unless `--state-dir` says otherwise.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/knock";

/// Where bpffs is conventionally mounted.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// statfs(2)'s magic number for bpffs.
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// The maps that outlive the daemon: state, counters, the event ring (events that happen while
/// no daemon runs wait there), the door records and names that tie ids to doors, the
/// fingerprint and daemon record that `status` and the next daemon read, and the program array
/// that hands SPA datagrams to their program (the kernel empties a program array when the last
/// descriptor or pin of it goes, and SPA would stop opening doors while no daemon runs).
pub const PINNED: [&str; 15] = [
    knock_common::HANDOFF,
    maps::SPENT,
    maps::PROGRESS,
    maps::LAST_KNOCK,
    maps::GATE,
    maps::GATE_RESERVE,
    maps::RESERVE_SEEN,
    maps::BANS,
    maps::NONCES,
    maps::COUNTERS,
    maps::EVENTS,
    maps::DOORS,
    maps::NAMES,
    maps::LAYOUT,
    maps::DAEMON,
];

/// The prefix of a pinned link's file name; the interface's name follows.
const LINK_PREFIX: &str = "link-";
/// The pinned link of the socket-lookup guard (no interface: it guards the namespace).
const GUARD_LINK: &str = "guard";

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

    pub fn guard_path(&self) -> PathBuf {
        self.path.join(GUARD_LINK)
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// The interfaces whose links are pinned here.
    pub fn linked_interfaces(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix(LINK_PREFIX)
                    .map(decode)
            })
            .collect();
        names.sort();
        names
    }

    /// Makes the directory ready for a daemon: on a bpffs (mounting one on /sys/fs/bpf when
    /// the root lies there and nothing is mounted), not in use by a live daemon, and holding
    /// maps of this version's layout or none.
    pub fn open(&self) -> Result<Found, StateError> {
        let root = self.path.parent().unwrap_or(&self.path);
        ensure_bpffs(root)?;
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
        if self.guard_path().exists() {
            let _ = detach_pinned_link(&self.guard_path());
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

/// Detaches the link pinned at `path` now, and removes the pin. Removing the pin alone would
/// let the kernel release the link a moment later, from a work queue, and an attach in another
/// mode right after could still find the old program in place.
pub fn detach_pinned_link(path: &Path) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_LINK_DETACH: libc::c_long = 34;
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: u32,
        _pad: u32,
    }
    #[repr(C)]
    struct LinkDetach {
        link_fd: u32,
    }
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let get = ObjGet {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: BPF_OBJ_GET reads the attribute struct we own, which points to a NUL-terminated
    // path that outlives the call, and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const ObjGet,
            size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let detach = LinkDetach {
        link_fd: link.as_raw_fd() as u32,
    };
    // SAFETY: BPF_LINK_DETACH reads the attribute struct we own.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &detach as *const LinkDetach,
            size_of::<LinkDetach>(),
        )
    };
    let detached = if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    };
    std::fs::remove_file(path)?;
    detached
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
                    || dir.linked_interfaces().iter().any(|i| i == name)
            }
            None => true,
        })
        .collect()
}

/// Makes sure `dir` lies on a bpffs. When it is under /sys/fs/bpf and nothing is mounted there
/// (no systemd, or a fresh mount namespace from `ip netns exec`), a bpffs is mounted.
fn ensure_bpffs(dir: &Path) -> Result<(), StateError> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if is_bpffs(&probe) {
        return Ok(());
    }
    if dir.starts_with(BPFFS_MOUNT) && !is_bpffs(Path::new(BPFFS_MOUNT)) {
        mount_bpffs()?;
        return Ok(());
    }
    Err(StateError::NotBpffs {
        path: dir.to_path_buf(),
    })
}

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        // f_type's width and sign differ between C libraries; the magic is 32 bits.
        libc::statfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_type as u32 == BPF_FS_MAGIC
    }
}

fn mount_bpffs() -> Result<(), StateError> {
    let target = CString::new(BPFFS_MOUNT).map_err(|e| StateError::Mount(e.into()))?;
    let kind = c"bpf";
    // SAFETY: mount(2) with NUL-terminated strings we own and no data.
    let result = unsafe {
        libc::mount(
            kind.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if result != 0 {
        return Err(StateError::Mount(std::io::Error::last_os_error()));
    }
    Ok(())
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
    fn a_link_pin_is_named_after_its_interface() {
        let dir = StateDir::for_interfaces(Path::new("/sys/fs/bpf/knock"), &["eth0.100".into()]);
        assert_eq!(dir.path(), Path::new("/sys/fs/bpf/knock/eth0%2e100"));
        assert_eq!(
            dir.link_path("eth0.100"),
            Path::new("/sys/fs/bpf/knock/eth0%2e100/link-eth0%2e100")
        );
    }
}
