//! The knock daemon running inside a namespace, with its log lines collected for assertions.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::Netns;

/// A running `knock-user run`; stopped with SIGINT when dropped.
pub struct Daemon {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Daemon {
    /// Starts `binary run` inside `ns` with `args`, and waits until it reports that it listens.
    pub fn start(ns: &Netns, binary: &Path, args: &[&str]) -> std::io::Result<Self> {
        let mut command = ns.command(&binary.to_string_lossy());
        command.arg("run").args(args);
        Self::spawn(command)
    }

    /// Starts a daemon from a prepared command (for wrappers around `knock-user run`).
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let (list, ready) = &*sink;
                    list.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    ready.notify_all();
                }
            });
        }
        let mut daemon = Self { child, lines };
        if daemon.wait_for_start(Duration::from_secs(60)).is_none() {
            let log = daemon.log().join("\n");
            let _ = daemon.child.kill();
            return Err(std::io::Error::other(format!(
                "the daemon did not start:\n{log}"
            )));
        }
        Ok(daemon)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the daemon to exit on its own; returns whether it did.
    pub fn exits_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the daemon's first line, giving up early when it has exited.
    fn wait_for_start(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self.wait_for("starting up", Duration::from_millis(100)) {
                return Some(line);
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // Let the readers take the last lines, which say why.
                std::thread::sleep(Duration::from_millis(50));
                return None;
            }
        }
        None
    }

    /// Every line the daemon has printed so far.
    pub fn log(&self) -> Vec<String> {
        self.lines
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until a line containing `needle` appears; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (list, ready) = &*self.lines;
        let mut lines = list.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = ready
                .wait_timeout(lines, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops the daemon with SIGINT and returns its whole log and whether it exited cleanly.
    pub fn stop(mut self) -> (Vec<String>, bool) {
        let clean = self.interrupt();
        // Give the reader threads a moment to drain the pipes.
        std::thread::sleep(Duration::from_millis(50));
        (self.log(), clean)
    }

    fn interrupt(&mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.interrupt();
        }
    }
}
