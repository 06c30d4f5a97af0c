//! `knock-user confirm`: keeps what `knock-user run --trial` started. It finds the daemon in its
//! pinned record, sends it SIGUSR1, and waits until the record says the trial is over.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::kernel::pins;
use crate::system::proc::is_knock_daemon;

/// How long a daemon gets to take the confirmation.
const ANSWER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error(
        "no trial runs under {root}: nothing is attached (a trial nobody confirmed in time has \
         undone itself; `knock-user status` shows what runs)"
    )]
    NothingAttached { root: String },
    #[error("no trial runs under {root}: knock guards, but not on trial (nothing to confirm)")]
    NoTrial { root: String },
    #[error("{dir}: daemon {pid} did not take the confirmation within {} s", ANSWER.as_secs())]
    Unanswered { dir: String, pid: u32 },
}

/// Confirms the trials under `root` (or the one guarding `iface`); returns a line per daemon
/// that took it.
pub fn confirm(root: &Path, iface: Option<&str>) -> Result<Vec<String>, ConfirmError> {
    let dirs = pins::select(root, iface);
    let root_name = root.display().to_string();
    if dirs.is_empty() {
        return Err(ConfirmError::NothingAttached { root: root_name });
    }
    let mut confirmed = Vec::new();
    for dir in dirs {
        let Some(info) = dir.daemon() else { continue };
        if info.trial_until_unix_s == 0 || !is_knock_daemon(info.pid) {
            continue;
        }
        // SAFETY: kill(2) with a pid the pinned record names, checked to be a knock daemon.
        unsafe { libc::kill(info.pid as i32, libc::SIGUSR1) };
        let deadline = Instant::now() + ANSWER;
        loop {
            match dir.daemon() {
                Some(now) if now.pid == info.pid && now.trial_until_unix_s == 0 => break,
                Some(now) if now.pid == info.pid && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // The record went: the trial ran out just before the confirmation came.
                None => return Err(ConfirmError::NothingAttached { root: root_name }),
                _ => {
                    return Err(ConfirmError::Unanswered {
                        dir: dir.path().display().to_string(),
                        pid: info.pid,
                    });
                }
            }
        }
        confirmed.push(format!(
            "{}: daemon {} confirmed the trial: knock keeps guarding",
            dir.path().display(),
            info.pid
        ));
    }
    if confirmed.is_empty() {
        return Err(ConfirmError::NoTrial { root: root_name });
    }
    Ok(confirmed)
}
