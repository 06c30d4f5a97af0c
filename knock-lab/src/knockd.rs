//! Debian's real knockd running inside a namespace, so that tests can hold knock to the
//! reference implementation packet for packet.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::Netns;

/// Where Debian's `knockd` package installs the daemon.
pub const KNOCKD: &str = "/usr/sbin/knockd";

type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A running `knockd` in the foreground, verbose and with debug output (every packet it
/// captures), its output collected; killed with the commands it forked when dropped.
pub struct Knockd {
    child: Child,
    lines: Lines,
}

impl Knockd {
    /// Starts knockd on `iface` of `ns` with `config` and `extra` flags (such as `-4`), and
    /// waits until its capture filter is in place.
    pub fn start(ns: &Netns, iface: &str, config: &Path, extra: &[&str]) -> std::io::Result<Self> {
        let mut child = ns
            .command(KNOCKD)
            .args(["-i", iface, "-c", &config.to_string_lossy(), "-v", "-D"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for stream in streams.into_iter().flatten() {
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let (list, ready) = &*sink;
                    list.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    ready.notify_all();
                }
            });
        }
        let knockd = Self { child, lines };
        // knockd prints this once the pcap filter is set: from then on it sees every knock.
        if knockd
            .wait_for("listening on", Duration::from_secs(10))
            .is_none()
        {
            let log = knockd.log().join("\n");
            return Err(std::io::Error::other(format!(
                "knockd did not start:\n{log}"
            )));
        }
        Ok(knockd)
    }

    /// Every line knockd has printed so far, stdout and stderr interleaved as they arrived.
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

    /// Stops knockd and returns its whole log.
    pub fn stop(mut self) -> Vec<String> {
        self.kill();
        // Give the reader threads a moment to drain the pipes.
        std::thread::sleep(Duration::from_millis(50));
        self.log()
    }

    fn kill(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.child.id();
        // knockd forks a child per opened door that sleeps Cmd_Timeout before the stop command,
        // in its own session; list them while they are still knockd's, to end them too.
        let forked = descendants(pid);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        // On SIGTERM knockd waits for one forked child, which may sleep for Cmd_Timeout.
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in forked {
            // SAFETY: kill(2) on a process knockd forked for this test.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

impl Drop for Knockd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes descended from `pid`, found through the parent links in /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| Some((child, parent_of(child)?)))
        .collect();
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    found.remove(0);
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
