//! `cargo xtask demo`: the guide's setup, in two network namespaces, narrated.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use knock_lab::{
    CLIENT_V4, Daemon, Lab, Listener, OTHER_V4, SERVER_V4, Scene, connects, connects_from,
};

use crate::shell::{self, cargo, run as run_command};

/// The guide's configuration, verbatim.
const GUIDE: &str = "[options]
        UseSyslog

[openSSH]
        sequence    = 4438,1813,8235
        seq_timeout = 5
        command     = /sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT
        tcpflags    = syn
";

pub fn run() -> anyhow::Result<()> {
    anyhow::ensure!(
        shell::is_root(),
        "the demo builds network namespaces: run it as root"
    );
    say("building knock-user");
    run_command(cargo().args(["build", "--quiet", "-p", "knock-user"]))?;
    let binary = shell::target_dir().join("debug/knock-user");

    let mut scene = Scene::build(GUIDE)
        .chain("KNOCKD")
        .quiet()
        .stopped()
        .start(&binary)
        .context("cannot build the network namespaces")?;
    let lab = &scene.lab;
    say(&format!(
        "two network namespaces joined by a veth pair:\n  server {SERVER_V4} on {} (an SSH stand-in listens on port 22)\n  client {CLIENT_V4} and {OTHER_V4} on {}",
        lab.server_if, lab.client_if
    ));
    say("starting knock-user run with the Raspberry Pi guide's knockd.conf, verbatim");
    scene.start_daemon(&[])?;
    let result = story(&scene.lab, scene.daemon(), scene.listener());
    let (log, _) = scene.stop_daemon();
    say("the daemon's log:");
    for line in log {
        println!("    | {line}");
    }
    drop(scene);
    say("cleaning up: the program is detached, the namespaces are gone");
    result
}

fn story(lab: &Lab, daemon: &Daemon, listener: &Listener) -> anyhow::Result<()> {
    let server: IpAddr = SERVER_V4.into();
    let wait = Duration::from_secs(1);
    say("1. the client tries SSH before knocking");
    match connects(&lab.client, server, 22, wait) {
        Ok(_) => anyhow::bail!("port 22 answered before any knock"),
        Err(e) => outcome(&format!("no answer ({e}): port 22 is invisible")),
    }
    say("2. the client knocks with Debian's real knock client: knock 198.51.100.1 4438 1813 8235");
    run_command(
        lab.client
            .command("knock")
            .args(["198.51.100.1", "4438", "1813", "8235"]),
    )?;
    daemon
        .wait_for("OPEN SESAME", Duration::from_secs(5))
        .context("the door did not open")?;
    outcome("the kernel saw three knocks in order and opened the door");
    say("3. the client tries SSH again");
    connects(&lab.client, server, 22, wait).context("port 22 still shut after the knock")?;
    listener.wait_accepted(1, wait);
    outcome(&format!(
        "connected; the listener has accepted {} connection",
        listener.accepted()
    ));
    say(&format!(
        "4. a neighbour at {OTHER_V4} tries SSH without knocking"
    ));
    match connects_from(&lab.client, OTHER_V4.into(), server, 22, wait) {
        Ok(_) => anyhow::bail!("the door opened for more than the knocking client"),
        Err(_) => outcome("no answer: the door opened for 198.51.100.2 alone"),
    }
    say("5. the start command ran with the client's address; the KNOCKD chain now holds:");
    let rules = lab
        .server
        .command("iptables")
        .args(["-S", "KNOCKD"])
        .output()?;
    for line in String::from_utf8_lossy(&rules.stdout)
        .lines()
        .filter(|l| l.starts_with("-A"))
    {
        outcome(line);
    }
    Ok(())
}

fn say(text: &str) {
    println!("\n{text}");
}

fn outcome(text: &str) {
    println!("   -> {text}");
}
