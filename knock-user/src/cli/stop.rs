//! `knock-user stop`: detach the program and remove its pinned state. A running daemon is
//! asked to do it (SIGUSR2), so open doors close the way they do at Cmd_Timeout, stop commands
//! and all; with no daemon, the pins are removed here and the kernel lets the links go.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::kernel::pins::{self, StateDir};
use crate::system::proc::{self, is_alive};

/// How long a daemon gets to close its doors (its stop commands have their own deadline).
const DAEMON_GRACE: Duration = Duration::from_secs(30);

/// What stopping one state directory did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The daemon closed its doors, detached and removed its state.
    ByDaemon { dir: String, pid: u32 },
    /// No daemon ran: the pins were removed here. `open` doors were still open in the
    /// kernel; their Stop_Commands (if any) did not run.
    Unpinned {
        dir: String,
        open: usize,
        mirror: Option<Mirrored>,
    },
}

/// What became of the firewall mirror of a daemon that no longer ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mirrored {
    /// Emptied: this many rules or set elements went.
    Cleared {
        target: String,
        removed: usize,
    },
    /// Left alone: it lives in another network namespace than this command's.
    ElsewhereLeft {
        target: String,
    },
    Failed {
        target: String,
        error: String,
    },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ByDaemon { dir, pid } => write!(
                f,
                "{dir}: daemon {pid} closed its doors, detached the program and removed its state"
            ),
            Self::Unpinned { dir, open, mirror } => {
                write!(f, "{dir}: no daemon ran; program detached, state removed")?;
                if *open > 0 {
                    write!(
                        f,
                        "; {open} door(s) were open, and their Stop_Commands did not run"
                    )?;
                }
                match mirror {
                    None => Ok(()),
                    Some(Mirrored::Cleared { target, removed }) => {
                        write!(f, "; {removed} mirrored entries removed from the {target}")
                    }
                    Some(Mirrored::ElsewhereLeft { target }) => write!(
                        f,
                        "; the {target} lives in the daemon's network namespace, not this one: \
                         run `knock-user stop` there to empty it"
                    ),
                    Some(Mirrored::Failed { target, error }) => {
                        write!(f, "; cannot empty the {target}: {error}")
                    }
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("{dir}: daemon {pid} did not finish within {} s", DAEMON_GRACE.as_secs())]
    Slow { dir: String, pid: u32 },
    #[error(transparent)]
    State(#[from] pins::StateError),
}

/// Stops what guards `iface`, or everything under `root`. An empty list means nothing was
/// attached.
pub fn stop(root: &Path, iface: Option<&str>) -> Result<Vec<Stopped>, StopError> {
    pins::select(root, iface).iter().map(stop_one).collect()
}

fn stop_one(dir: &StateDir) -> Result<Stopped, StopError> {
    let name = dir.path().display().to_string();
    if let Some(info) = dir.daemon()
        && info.pid != std::process::id()
        && proc::is_knock_daemon(info.pid)
    {
        // SAFETY: kill(2) with a pid the pinned state names, checked to be a knock daemon.
        unsafe { libc::kill(info.pid as i32, libc::SIGUSR2) };
        let deadline = Instant::now() + DAEMON_GRACE;
        // The program detaches when the daemon lets go of its links: wait for it to exit.
        while is_alive(info.pid) {
            if Instant::now() > deadline {
                return Err(StopError::Slow {
                    dir: name,
                    pid: info.pid,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A daemon that died on the way leaves its pins; they go anyway.
        dir.remove()?;
        return Ok(Stopped::ByDaemon {
            dir: name,
            pid: info.pid,
        });
    }
    let open = crate::cli::status::snapshot(dir).map_or(0, |s| s.open.len());
    let record = dir.daemon();
    dir.remove()?;
    let mirror = record.and_then(|info| {
        let target = crate::mirror::from_record(&info)?;
        let label = target.to_string();
        if info.netns != proc::current_netns() {
            return Some(Mirrored::ElsewhereLeft { target: label });
        }
        let journal = crate::journal::Journal::stderr_only(false);
        Some(match crate::mirror::clear(&target, &journal) {
            Ok(removed) => Mirrored::Cleared {
                target: label,
                removed,
            },
            Err(error) => Mirrored::Failed {
                target: label,
                error: format!("{error:#}"),
            },
        })
    });
    Ok(Stopped::Unpinned {
        dir: name,
        open,
        mirror,
    })
}
