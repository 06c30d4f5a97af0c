//! knockd-style log lines: to stderr, to syslog (ident `knockd`, facility user, level notice,
//! as knockd logs, so existing log watchers keep matching), and to a LogFile as
//! `[YYYY-MM-DD HH:MM] message`.
//!
//! Under systemd, stderr is the journal too ($JOURNAL_STREAM names it): with UseSyslog each
//! line would be there twice, once as `knock-user` and once as `knockd`. Then the syslog copy
//! stays (watchers written for knockd match its ident) and the stderr copy goes.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Journal {
    stderr: AtomicBool,
    /// Whether stderr is connected to systemd's journal.
    stderr_is_journal: bool,
    syslog: AtomicBool,
    verbose: bool,
    log_file: Mutex<Option<File>>,
}

/// The syslog identity. knockd's, so that filters written for knockd keep working.
const IDENT: &std::ffi::CStr = c"knockd";

impl Journal {
    /// A journal that only writes to stderr; for the client and the operator commands.
    pub fn stderr_only(verbose: bool) -> Self {
        Self {
            stderr: true.into(),
            stderr_is_journal: false,
            syslog: false.into(),
            verbose,
            log_file: Mutex::new(None),
        }
    }

    pub fn new(use_syslog: bool, log_file: Option<&Path>, verbose: bool) -> std::io::Result<Self> {
        let journal = Self {
            stderr: true.into(),
            stderr_is_journal: stderr_is_journal(),
            syslog: false.into(),
            verbose,
            log_file: Mutex::new(None),
        };
        journal.reopen(use_syslog, log_file)?;
        Ok(journal)
    }

    /// Switches syslog on or off and (re)opens the log file, as knockd does on SIGHUP.
    pub fn reopen(&self, use_syslog: bool, log_file: Option<&Path>) -> std::io::Result<()> {
        let file = match log_file {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("LogFile {}: {e}", path.display()))
                    })?,
            ),
            None => None,
        };
        if use_syslog {
            // SAFETY: IDENT is a 'static C string, as openlog requires.
            unsafe { libc::openlog(IDENT.as_ptr(), 0, libc::LOG_USER) };
        }
        self.syslog.store(use_syslog, Ordering::Relaxed);
        self.stderr
            .store(!(use_syslog && self.stderr_is_journal), Ordering::Relaxed);
        *self.log_file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        Ok(())
    }

    pub fn is_verbose(&self) -> bool {
        self.verbose
    }

    /// A line knockd would log: it goes everywhere.
    pub fn line(&self, message: &str) {
        if self.stderr.load(Ordering::Relaxed) {
            // Not eprintln!, which panics when the write fails: a daemon started from an SSH
            // session must outlive its terminal (a trial most of all), whose writes then fail.
            let _ = writeln!(std::io::stderr(), "{message}");
        }
        if self.syslog.load(Ordering::Relaxed)
            && let Ok(text) = CString::new(message.replace('\0', " "))
        {
            // SAFETY: "%s" with one valid C string argument.
            unsafe { libc::syslog(libc::LOG_NOTICE, c"%s".as_ptr(), text.as_ptr()) };
        }
        let mut file = self
            .log_file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = file.as_mut() {
            // A failing log file must not stop the daemon; stderr still has the line.
            let _ = writeln!(file, "[{}] {message}", local_minute());
        }
    }

    /// A line only shown with `-v`.
    pub fn detail(&self, message: &str) {
        if self.verbose {
            self.line(message);
        }
    }
}

/// Whether stderr is the journal's stream: systemd sets $JOURNAL_STREAM to its `device:inode`.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = device_and_inode(std::io::stderr().as_fd()) else {
        return false;
    };
    names_stream(&stream.to_string_lossy(), stat)
}

/// fstat(2) of a descriptor: its device and inode.
fn device_and_inode(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<(u64, u64)> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: fstat fills the zeroed struct we own; the descriptor is borrowed and open.
    let stat = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut stat) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat
    };
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

/// Whether $JOURNAL_STREAM (`device:inode`, in decimal) names this (device, inode).
fn names_stream(variable: &str, (device, inode): (u64, u64)) -> bool {
    variable
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((device, inode))
}

/// The local time as knockd's LogFile shows it: `YYYY-MM-DD HH:MM`.
fn local_minute() -> String {
    // SAFETY: time(NULL) and localtime_r into a zeroed tm we own.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_device_and_inode_in_decimal() {
        assert!(names_stream("25:4242", (25, 4242)));
        assert!(!names_stream("25:4242", (25, 4243)));
        assert!(!names_stream("", (0, 0)));
        assert!(!names_stream("x:y", (0, 0)));
    }

    #[test]
    fn log_file_lines_carry_knockds_timestamp_format() {
        let dir = std::env::temp_dir().join(format!("knock-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("knockd.log");
        let journal = Journal::new(false, Some(&path), false).unwrap();
        journal.line("198.51.100.2: openSSH: Stage 1");
        journal.detail("hidden without -v");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let line = text.lines().next().unwrap();
        let (stamp, message) = line.split_once("] ").unwrap();
        assert_eq!(message, "198.51.100.2: openSSH: Stage 1");
        assert_eq!(stamp.len(), "[2026-11-28 17:54".len(), "{stamp}");
        assert!(stamp.starts_with("[20"));
        assert_eq!(text.lines().count(), 1);
    }
}
