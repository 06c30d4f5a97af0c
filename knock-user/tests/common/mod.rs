//! A running scene for end-to-end tests: a lab, the daemon on the server side with a given
//! configuration, and a listener on port 22.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the scene"
)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use knock_lab::{Daemon, Lab, Listener, SERVER_V4, connects};

pub const BINARY: &str = env!("CARGO_BIN_EXE_knock-user");
pub const SHORT: Duration = Duration::from_millis(700);

/// The guide's configuration, verbatim.
pub const GUIDE: &str = "[options]\n        UseSyslog\n\n[openSSH]\n        sequence    = 4438,1813,8235\n        seq_timeout = 5\n        command     = /sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT\n        tcpflags    = syn\n";

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("knock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Scene {
    pub daemon: Daemon,
    pub listener: Listener,
    pub lab: Lab,
    pub dir: TempDir,
    pub config: PathBuf,
}

/// A scene running `config`, where `$DIR` stands for the scene's temporary directory.
pub fn scene(config: &str) -> Scene {
    scene_with(config, &[])
}

/// Like `scene`, with extra arguments for `knock-user run`.
pub fn scene_with(config: &str, extra: &[&str]) -> Scene {
    scene_full(config, extra, &[])
}

/// Like `scene`, with files written into the scene's directory before the daemon starts.
pub fn scene_files(config: &str, files: &[(&str, &str)]) -> Scene {
    scene_full(config, &[], files)
}

fn scene_full(config: &str, extra: &[&str], files: &[(&str, &str)]) -> Scene {
    let lab = Lab::new().expect("the lab builds");
    // The guide's start command appends to a KNOCKD chain; give the server one.
    lab.server
        .command("iptables")
        .args(["-N", "KNOCKD"])
        .output()
        .expect("iptables runs");
    let dir = TempDir::new(&lab.server_if);
    let path = dir.path("knockd.conf");
    std::fs::write(&path, config.replace("$DIR", &dir.0.to_string_lossy())).unwrap();
    for (name, content) in files {
        std::fs::write(dir.path(name), content).unwrap();
    }
    let listener = Listener::start(&lab.server, 22).expect("a listener on port 22");
    let mut args = vec![
        "--config".to_owned(),
        path.to_string_lossy().into_owned(),
        "--interface".to_owned(),
        lab.server_if.clone(),
        "-v".to_owned(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(&lab.server, Path::new(BINARY), &args).expect("the daemon starts");
    Scene {
        daemon,
        listener,
        lab,
        dir,
        config: path,
    }
}

impl Scene {
    pub fn ssh(&self) -> std::io::Result<std::net::TcpStream> {
        connects(&self.lab.client, SERVER_V4.into(), 22, SHORT)
    }

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

    pub fn our_knock(&self, args: &[&str]) -> Output {
        let output = self
            .lab
            .client
            .command(BINARY)
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
        // SAFETY: kill(2) on the daemon's pid.
        unsafe { libc::kill(self.daemon.pid() as i32, signal) };
    }

    pub fn opened(&self, needle: &str) -> bool {
        self.daemon
            .wait_for(needle, Duration::from_secs(5))
            .is_some()
    }
}
