//! The one way knock runs another program: with a deadline, after which the program is killed,
//! and a failure that says why. The start and stop commands (through `/bin/sh -c`) and the
//! firewall mirror's iptables and nft calls go through here. Blocking: the daemon calls it off
//! its event loop.

use std::fmt;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program and its arguments, shown as a shell would take them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub program: String,
    pub args: Vec<String>,
}

/// Why a program did not succeed.
#[derive(Debug)]
pub enum Failure {
    NotStarted(std::io::Error),
    /// It exited with a status other than zero.
    Exited {
        code: i32,
        stderr: String,
    },
    /// A signal ended it.
    Killed {
        signal: i32,
        stderr: String,
    },
    /// It still ran at its deadline, and was killed.
    TimedOut(Duration),
}

impl Run {
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// `/bin/sh -c command`.
    pub fn shell(command: &str) -> Self {
        Self::new("/bin/sh", ["-c", command])
    }

    /// Runs the program with its output captured; returns its stdout.
    pub fn output(&self, deadline: Duration) -> Result<String, Failure> {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Failure::NotStarted)?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let ended = wait(&mut child, deadline);
        // Once the program has ended its pipes close; a killed one's readers are left behind,
        // as a child it started may still hold them.
        let stderr = || stderr.join().unwrap_or_default();
        match ended? {
            (Some(0), _) => Ok(stdout.join().unwrap_or_default()),
            (Some(code), _) => Err(Failure::Exited {
                code,
                stderr: stderr(),
            }),
            (None, signal) => Err(Failure::Killed {
                signal: signal.unwrap_or(0),
                stderr: stderr(),
            }),
        }
    }

    /// Runs the program with the caller's stdout and stderr.
    pub fn status(&self, deadline: Duration) -> Result<(), Failure> {
        let mut child = self.command().spawn().map_err(Failure::NotStarted)?;
        match wait(&mut child, deadline)? {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(Failure::Exited {
                code,
                stderr: String::new(),
            }),
            (None, signal) => Err(Failure::Killed {
                signal: signal.unwrap_or(0),
                stderr: String::new(),
            }),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null());
        command
    }
}

/// Waits for the child until `deadline` has passed, then kills it. Returns its exit code, or the
/// signal that ended it.
fn wait(child: &mut Child, deadline: Duration) -> Result<(Option<i32>, Option<i32>), Failure> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((status.code(), status.signal())),
            Ok(None) => {}
            Err(error) => return Err(Failure::NotStarted(error)),
        }
        let Some(left) = deadline.checked_sub(start.elapsed()) else {
            // Not yet waited for, so the pid is still this child's.
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::TimedOut(deadline));
        };
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Reads a pipe to its end on a thread of its own, so that a chatty program never blocks on a
/// full pipe while it is waited for.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            f.write_str(" ")?;
            f.write_str(&shell_quote(arg))?;
        }
        Ok(())
    }
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:,=@%+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stderr = match self {
            Self::NotStarted(error) => return write!(f, "could not start: {error}"),
            Self::TimedOut(deadline) => {
                return write!(f, "still running after {} s; killed", deadline.as_secs());
            }
            Self::Exited { code, stderr } => {
                write!(f, "exit status {code}")?;
                stderr
            }
            Self::Killed { stderr, .. } => {
                f.write_str("killed by a signal")?;
                stderr
            }
        };
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            write!(f, ": {}", stderr.replace('\n', " / "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(20);

    #[test]
    fn commands_are_shown_as_a_shell_would_take_them() {
        let run = Run::new(
            "iptables",
            ["-w", "10", "-A", "KNOCKD", "--comment", "knock:open SSH"],
        );
        assert_eq!(
            run.to_string(),
            "iptables -w 10 -A KNOCKD --comment 'knock:open SSH'"
        );
        let nft = Run::new("nft", ["add element inet knock knock4 { 1 }; it's"]);
        assert_eq!(
            nft.to_string(),
            r"nft 'add element inet knock knock4 { 1 }; it'\''s'"
        );
    }

    #[test]
    fn a_missing_program_and_a_failing_one_say_why() {
        let missing = Run::new("/nonexistent/iptables", ["-S"]);
        assert!(matches!(missing.output(LONG), Err(Failure::NotStarted(_))));
        let failing = Run::new("sh", ["-c", "echo nope >&2; exit 3"]);
        let failure = failing.output(LONG).unwrap_err();
        assert_eq!(failure.to_string(), "exit status 3: nope");
        assert_eq!(Run::new("echo", ["hi"]).output(LONG).unwrap(), "hi\n");
    }

    #[test]
    fn a_program_past_its_deadline_is_killed() {
        let started = Instant::now();
        let failure = Run::shell("sleep 5")
            .status(Duration::from_millis(100))
            .unwrap_err();
        assert!(matches!(failure, Failure::TimedOut(_)), "{failure}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            Run::shell("kill -9 $$")
                .status(LONG)
                .unwrap_err()
                .to_string(),
            "killed by a signal"
        );
    }
}
