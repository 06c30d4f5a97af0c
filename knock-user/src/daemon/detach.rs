//! knockd's `-d`: detach from the terminal and write a pid file, removed on exit.

use std::path::PathBuf;

use crate::journal::Journal;

/// Forks into the background, as daemon(3) does: new session, `/` as working directory, the
/// standard streams on /dev/null. Must run before any thread starts.
pub fn detach() -> std::io::Result<()> {
    // SAFETY: called while the process is single-threaded (before the runtime starts).
    if unsafe { libc::daemon(0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The pid file, removed when dropped.
pub struct PidFile {
    path: PathBuf,
    written: bool,
}

impl PidFile {
    /// Writes our pid. A failure is logged, as knockd does, and the daemon goes on.
    pub fn write(path: PathBuf, journal: &Journal) -> Self {
        let written = match std::fs::write(&path, format!("{}\n", std::process::id())) {
            Ok(()) => true,
            Err(error) => {
                journal.line(&format!(
                    "could not create pid file {}: {error}",
                    path.display()
                ));
                false
            }
        };
        Self { path, written }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
