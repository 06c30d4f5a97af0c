//! What the end-to-end tests share: the binary under test, the guide's configuration, and the
//! scene (`knock_lab::Scene`) with a configuration, the `KNOCKD` chain the guide's command
//! appends to, a listener on port 22 and the daemon guarding the server's veth.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses a different part of the scene"
)]

use std::path::Path;

pub use knock_lab::{SHORT, Scene, TempDir};

pub const BINARY: &str = env!("CARGO_BIN_EXE_knock-user");

/// The guide's configuration, verbatim.
pub const GUIDE: &str = "[options]\n        UseSyslog\n\n[openSSH]\n        sequence    = 4438,1813,8235\n        seq_timeout = 5\n        command     = /sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT\n        tcpflags    = syn\n";

/// A scene running `config`, where `$DIR` stands for the scene's temporary directory.
pub fn scene(config: &str) -> Scene {
    scene_full(config, &[], &[])
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
    let mut build = Scene::build(config).chain("KNOCKD").args(extra);
    for (name, content) in files {
        build = build.file(name, content);
    }
    build.start(Path::new(BINARY)).expect("the daemon starts")
}

/// What a command printed, stdout then stderr, for assertions and their messages.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `knock-user ARGS --state-dir PINS` from the host's shell, as an operator would.
pub fn operator(scene: &Scene, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BINARY)
        .args(args)
        .arg("--state-dir")
        .arg(scene.state_dir().expect("the scene pins"))
        .output()
        .expect("knock-user runs")
}
