//! The BPF filesystem the pins live in: found, or mounted on /sys/fs/bpf when nothing is there;
//! and whether it outlives the daemon. A bpffs is an instance per mount: one the daemon mounts
//! in the host's mount namespace stays mounted after it, but one it mounts in a mount namespace
//! of its own (`ip netns exec`, `unshare -m`, a container without the host's /sys/fs/bpf) goes
//! with the namespace's last process, and with it every pin: the links detach, the gate is gone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use super::StateError;

/// Where bpffs is conventionally mounted.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// statfs(2)'s magic number for bpffs.
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// How the state directory's BPF filesystem got there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bpffs {
    /// It was mounted already (by systemd, the operator, a container runtime).
    Found,
    /// This daemon mounted it, here.
    Mounted(PathBuf),
}

/// Whether the pins outlive the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// They do: the bpffs was there before the daemon, or the host's mount table holds the one
    /// it mounted.
    Outlives,
    /// They go when the daemon's mount namespace goes, with its last process: the daemon
    /// mounted the bpffs at `mount` in a mount namespace that is not the host's.
    DiesWith { mount: PathBuf },
    /// The daemon mounted the bpffs at `mount` and cannot tell whether the host holds it
    /// (`why`).
    Unknown { mount: PathBuf, why: String },
}

/// What tells whether a bpffs the daemon mounted outlives it.
#[derive(Debug)]
pub struct Facts {
    /// Whether this process lives in the initial PID namespace, where PID 1 is the host's init
    /// and not a container's.
    pub initial_pid: std::io::Result<bool>,
    /// Whether PID 1's mount table holds the very BPF filesystem the pins are on (the same
    /// device, wherever it is mounted there): then the host keeps it mounted. Read from
    /// /proc/1/mountinfo, which needs no right to trace PID 1, unlike /proc/1/ns/mnt.
    pub host_holds: std::io::Result<bool>,
}

/// Whether pins on `bpffs` outlive the daemon: pure, so every case is tested.
pub fn lifetime(bpffs: &Bpffs, facts: &Facts) -> Lifetime {
    let Bpffs::Mounted(mount) = bpffs else {
        return Lifetime::Outlives;
    };
    let unknown = |why: String| Lifetime::Unknown {
        mount: mount.clone(),
        why,
    };
    let dies = Lifetime::DiesWith {
        mount: mount.clone(),
    };
    match (&facts.initial_pid, &facts.host_holds) {
        (Ok(false), _) | (Ok(true), Ok(false)) => dies,
        (Ok(true), Ok(true)) => Lifetime::Outlives,
        (Err(error), _) => unknown(format!("cannot read /proc/self/ns/pid: {error}")),
        (_, Err(error)) => unknown(format!("cannot read /proc/1/mountinfo: {error}")),
    }
}

/// Whether a mount table (/proc/PID/mountinfo) holds a BPF filesystem on device
/// `major:minor`.
pub fn holds(mountinfo: &str, device: (u32, u32)) -> bool {
    let wanted = format!("{}:{}", device.0, device.1);
    mountinfo.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(mount), Some(filesystem)) = (halves.next(), halves.next()) else {
            return false;
        };
        mount.split_whitespace().nth(2) == Some(wanted.as_str())
            && filesystem.split_whitespace().next() == Some("bpf")
    })
}

/// The device (major, minor) of the filesystem `path` is on.
pub fn device_of(path: &Path) -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let device = std::fs::metadata(path)?.dev();
    Ok((libc::major(device), libc::minor(device)))
}

/// Makes sure `dir` lies on a bpffs. When it is under /sys/fs/bpf and nothing is mounted there
/// (no systemd, or a fresh mount namespace from `ip netns exec`), a bpffs is mounted.
pub(super) fn ensure_bpffs(dir: &Path) -> Result<Bpffs, StateError> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if is_bpffs(&probe) {
        return Ok(Bpffs::Found);
    }
    if dir.starts_with(BPFFS_MOUNT) && !is_bpffs(Path::new(BPFFS_MOUNT)) {
        mount_bpffs()?;
        return Ok(Bpffs::Mounted(PathBuf::from(BPFFS_MOUNT)));
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

    fn facts(initial_pid: bool, host_holds: bool) -> Facts {
        Facts {
            initial_pid: Ok(initial_pid),
            host_holds: Ok(host_holds),
        }
    }

    fn mounted() -> Bpffs {
        Bpffs::Mounted(PathBuf::from(BPFFS_MOUNT))
    }

    #[test]
    fn a_bpffs_that_was_there_outlives_the_daemon_wherever_it_runs() {
        assert_eq!(
            lifetime(&Bpffs::Found, &facts(false, false)),
            Lifetime::Outlives
        );
    }

    #[test]
    fn a_bpffs_mounted_where_the_host_sees_it_outlives_the_daemon() {
        assert_eq!(lifetime(&mounted(), &facts(true, true)), Lifetime::Outlives);
    }

    #[test]
    fn a_bpffs_mounted_in_a_private_mount_namespace_dies_with_it() {
        let dies = Lifetime::DiesWith {
            mount: PathBuf::from(BPFFS_MOUNT),
        };
        assert_eq!(
            lifetime(&mounted(), &facts(true, false)),
            dies,
            "ip netns exec"
        );
        assert_eq!(
            lifetime(&mounted(), &facts(false, true)),
            dies,
            "in a container, PID 1 is the container's init: its namespace goes with it"
        );
    }

    #[test]
    fn what_cannot_be_read_leaves_it_unknown_and_says_why() {
        let cannot = Facts {
            initial_pid: Ok(true),
            host_holds: Err(std::io::Error::from_raw_os_error(libc::EACCES)),
        };
        let Lifetime::Unknown { why, .. } = lifetime(&mounted(), &cannot) else {
            panic!("unknown");
        };
        assert!(why.contains("/proc/1/mountinfo"), "{why}");
    }

    #[test]
    fn the_hosts_mount_table_holds_a_bpffs_by_its_device() {
        let table = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                     31 23 0:28 / /sys/fs/bpf rw,nosuid - bpf bpf rw,mode=700\n\
                     40 27 0:45 / /tmp/x rw - tmpfs tmpfs rw\n";
        assert!(holds(table, (0, 28)));
        assert!(
            !holds(table, (0, 45)),
            "another filesystem on that device is no bpffs"
        );
        assert!(!holds(table, (0, 29)));
        assert!(!holds("garbage", (0, 28)));
    }
}
