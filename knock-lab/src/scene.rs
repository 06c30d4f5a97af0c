//! The one scene of knock's tests, demo and benchmarks: a lab (two namespaces and their
//! addresses), listeners on the server side, a configuration in a directory of the scene's own,
//! optionally a private bpffs for pinned state, and `knock-user run` guarding the server's veth.
//! Everything goes on drop, in order: the daemon, the listeners, the pins, the namespaces, the
//! directory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::{BpfMount, Daemon, Lab, Listener, SERVER_V4, TempDir, connects};

/// How long a connection attempt that should fail is given.
pub const SHORT: Duration = Duration::from_millis(700);

/// How a scene is set up; `Scene::build(config)` starts from the defaults: a listener on port
/// 22, the daemon started with `-v`, state pinned where the daemon pins it by default.
#[must_use]
pub struct SceneBuilder {
    config: String,
    files: Vec<(String, String)>,
    args: Vec<String>,
    ports: Vec<u16>,
    chains: Vec<String>,
    env: Vec<(String, Option<String>)>,
    verbose: bool,
    pinned: bool,
    ephemeral: bool,
    start: bool,
}

pub struct Scene {
    /// The running daemon; `None` when the scene was built stopped or the daemon was stopped.
    daemon: Option<Daemon>,
    /// The listeners, by port.
    pub listeners: Vec<(u16, Listener)>,
    pins: Option<BpfMount>,
    pub lab: Lab,
    pub dir: TempDir,
    /// The configuration file the daemon reads.
    pub config: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
}

impl Scene {
    /// A scene running `config`, where `$DIR` stands for the scene's directory.
    pub fn build(config: &str) -> SceneBuilder {
        SceneBuilder {
            config: config.to_owned(),
            files: Vec::new(),
            args: Vec::new(),
            ports: vec![22],
            chains: Vec::new(),
            env: Vec::new(),
            verbose: true,
            pinned: false,
            ephemeral: false,
            start: true,
        }
    }

    /// The running daemon.
    ///
    /// # Panics
    /// When no daemon runs.
    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("a daemon runs")
    }

    /// The listener on port 22.
    ///
    /// # Panics
    /// When the scene listens elsewhere only.
    pub fn listener(&self) -> &Listener {
        self.listeners
            .iter()
            .find(|(port, _)| *port == 22)
            .map(|(_, listener)| listener)
            .expect("a listener on port 22")
    }

    pub fn is_running(&self) -> bool {
        self.daemon.is_some()
    }

    /// Where the daemon pins its state, when the scene has a bpffs of its own.
    pub fn state_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(BpfMount::path)
    }

    /// Starts the daemon with the scene's arguments and `extra`.
    ///
    /// # Panics
    /// When a daemon runs already.
    pub fn start_daemon(&mut self, extra: &[&str]) -> std::io::Result<()> {
        assert!(self.daemon.is_none(), "one daemon at a time");
        self.daemon = Some(self.start_another(extra)?);
        Ok(())
    }

    /// Starts another daemon with the scene's arguments and `extra`, beside the scene's own,
    /// and hands it to the caller.
    pub fn start_another(&self, extra: &[&str]) -> std::io::Result<Daemon> {
        let mut command = self.lab.server.command(&self.binary.to_string_lossy());
        command.arg("run").args(&self.args).args(extra);
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        Daemon::spawn(command)
    }

    /// Stops the daemon with SIGINT; returns its log and whether it exited cleanly.
    ///
    /// # Panics
    /// When no daemon runs.
    pub fn stop_daemon(&mut self) -> (Vec<String>, bool) {
        self.daemon.take().expect("a daemon runs").stop()
    }

    /// Takes the daemon out of the scene, to stop or drop it apart.
    pub fn take_daemon(&mut self) -> Option<Daemon> {
        self.daemon.take()
    }
}

/// What the client does and what the server shows.
impl Scene {
    /// SSH from the client to the server's IPv4 address.
    pub fn ssh(&self) -> std::io::Result<TcpStream> {
        connects(&self.lab.client, SERVER_V4.into(), 22, SHORT)
    }

    /// Debian's `knock` from the client.
    ///
    /// # Panics
    /// When it fails.
    pub fn real_knock(&self, args: &[&str]) -> Output {
        let output = self
            .lab
            .client
            .command("knock")
            .args(args)
            .output()
            .expect("knock runs");
        assert!(output.status.success(), "knock failed: {output:?}");
        output
    }

    /// `knock-user knock` from the client.
    ///
    /// # Panics
    /// When it fails.
    pub fn our_knock(&self, args: &[&str]) -> Output {
        let output = self
            .lab
            .client
            .command(&self.binary.to_string_lossy())
            .arg("knock")
            .args(args)
            .output()
            .expect("knock-user runs");
        assert!(
            output.status.success(),
            "knock-user knock failed: {output:?}"
        );
        output
    }

    /// The server's `KNOCKD` chain, as `iptables -S` shows it.
    pub fn knockd_rules(&self) -> String {
        let output = self
            .lab
            .server
            .command("iptables")
            .args(["-S", "KNOCKD"])
            .output()
            .expect("iptables runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the daemon's pid, our child.
        unsafe { libc::kill(self.daemon().pid() as i32, signal) };
    }

    /// Whether the daemon logs a line with `needle` within five seconds.
    pub fn opened(&self, needle: &str) -> bool {
        self.daemon()
            .wait_for(needle, Duration::from_secs(5))
            .is_some()
    }
}

impl SceneBuilder {
    /// A file written into the scene's directory before the daemon starts.
    pub fn file(mut self, name: &str, content: &str) -> Self {
        self.files.push((name.to_owned(), content.to_owned()));
        self
    }

    /// Arguments for `knock-user run` after the scene's own.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Listeners on these ports too.
    pub fn listen(mut self, ports: &[u16]) -> Self {
        self.ports.extend_from_slice(ports);
        self
    }

    /// Listeners on these ports only (none on 22 unless it is one of them).
    pub fn listen_only(mut self, ports: &[u16]) -> Self {
        self.ports = ports.to_vec();
        self
    }

    /// An iptables chain made in the server namespace first (the guide's start command appends
    /// to `KNOCKD`).
    pub fn chain(mut self, name: &str) -> Self {
        self.chains.push(name.to_owned());
        self
    }

    /// An environment variable for the daemon (`RUST_LOG`, say).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), Some(value.to_owned())));
        self
    }

    /// Without this environment variable, whatever the test's own environment holds.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.to_owned(), None));
        self
    }

    /// Without `-v`.
    pub fn quiet(mut self) -> Self {
        self.verbose = false;
        self
    }

    /// State pinned in a bpffs of the scene's own (`--state-dir`), which every namespace sees
    /// and which goes with the scene.
    pub fn pinned(mut self) -> Self {
        self.pinned = true;
        self
    }

    /// With `--ephemeral`: nothing pinned.
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    /// Without the daemon: `Scene::start_daemon` starts it.
    pub fn stopped(mut self) -> Self {
        self.start = false;
        self
    }

    /// Builds the scene, and starts `binary run` unless asked not to.
    pub fn start(self, binary: &Path) -> std::io::Result<Scene> {
        let lab = Lab::new()?;
        for chain in &self.chains {
            lab.server
                .command("iptables")
                .args(["-N", chain])
                .output()?;
        }
        let pins = if self.pinned {
            Some(BpfMount::new(&lab.server_if)?)
        } else {
            None
        };
        let dir = TempDir::new(&lab.server_if);
        let config = dir.path("knockd.conf");
        std::fs::write(
            &config,
            self.config.replace("$DIR", &dir.0.to_string_lossy()),
        )?;
        for (name, content) in &self.files {
            std::fs::write(dir.path(name), content)?;
        }
        let listeners = self
            .ports
            .iter()
            .map(|port| Ok((*port, Listener::start(&lab.server, *port)?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut args = vec![
            "--config".to_owned(),
            config.to_string_lossy().into_owned(),
            "--interface".to_owned(),
            lab.server_if.clone(),
            // Used sequences are recorded in the scene's directory, not the host's.
            "--record-dir".to_owned(),
            dir.path("record").to_string_lossy().into_owned(),
        ];
        if self.verbose {
            args.push("-v".to_owned());
        }
        if let Some(pins) = &pins {
            args.extend([
                "--state-dir".to_owned(),
                pins.path().to_string_lossy().into_owned(),
            ]);
        }
        if self.ephemeral {
            args.push("--ephemeral".to_owned());
        }
        args.extend(self.args);
        let mut scene = Scene {
            daemon: None,
            listeners,
            pins,
            lab,
            dir,
            config,
            binary: binary.to_owned(),
            args,
            env: self.env,
        };
        if self.start {
            scene.start_daemon(&[])?;
        }
        Ok(scene)
    }
}
