//! Network namespaces made with iproute2, entered per thread with setns(2).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::process::{Command, Output};

/// A named network namespace, deleted on drop with everything inside it.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> std::io::Result<Self> {
        // A namespace left by a crashed run of the same name would make `add` fail.
        let _ = Command::new("ip").args(["netns", "delete", name]).output();
        ip(&["netns", "add", name])?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> std::io::Result<Output> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `f` on a new thread that has joined the namespace, so sockets it opens live there.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let handle = std::thread::spawn(move || -> std::io::Result<T> {
            let file = File::open(&path)?;
            // SAFETY: setns on a namespace file we hold open; it changes only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| std::io::Error::other("a thread inside the namespace panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// Runs `ip` and turns a failure into an error carrying its stderr.
pub fn ip(args: &[&str]) -> std::io::Result<Output> {
    let output = Command::new("ip").args(args).output()?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
