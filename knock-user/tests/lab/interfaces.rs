//! Interfaces that come and go under a running daemon, as a USB Ethernet that resets, PPP that
//! reconnects or `ifdown`/`ifup` make them: the daemon says when a guarded interface goes,
//! `status` shows it missing, and the gate holds again within a second of an interface of that
//! name coming back; one that does not exist yet when the daemon starts is waited for. And the
//! attach mode: `auto` falls back to generic XDP where the driver has no native XDP, and says
//! so.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{BINARY, GUIDE, operator, text};
use knock_lab::{Netns, SERVER_V4, Scene};

const DOOR: &str = "[openSSH]\nsequence = 4438,1813,8235\nseq_timeout = 5\ncmd_timeout = 30\n";
const WAIT: Duration = Duration::from_secs(10);

fn pinned_scene() -> Scene {
    Scene::build(DOOR)
        .pinned()
        .stopped()
        .start(Path::new(BINARY))
        .expect("the lab builds")
}

fn expect_line(scene: &Scene, needle: &str, within: Duration) -> String {
    scene.daemon().wait_for(needle, within).unwrap_or_else(|| {
        panic!(
            "no line with `{needle}` in:\n{}",
            scene.daemon().log().join("\n")
        )
    })
}

/// `knock-user status` with `args`, from the host's shell.
fn status(scene: &Scene, args: &[&str]) -> Output {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    operator(scene, &all)
}

/// What `status` says of a guarded interface that is not there, in every format.
fn assert_status_shows_missing(scene: &Scene) {
    let iface = &scene.lab.server_if;
    let report = status(scene, &[]);
    assert!(!report.status.success(), "status fails: {}", text(&report));
    let said = text(&report);
    assert!(
        said.contains(&format!("  missing: {iface} (not guarded")),
        "{said}"
    );
    let json = status(scene, &["--json"]);
    let value: serde_json::Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json)));
    assert_eq!(value[0]["missing"][0], iface.as_str());
    assert_eq!(value[0]["interfaces"][0], iface.as_str());
    let prometheus = text(&status(scene, &["--prometheus"]));
    assert!(
        prometheus.contains(&format!(
            "knock_interface_attached{{guard=\"{iface}\",interface=\"{iface}\"}} 0"
        )),
        "{prometheus}"
    );
}

fn assert_status_shows_attached(scene: &Scene) {
    let report = status(scene, &[]);
    assert!(report.status.success(), "{}", text(&report));
    assert!(!text(&report).contains("missing"), "{}", text(&report));
}

fn xdp_attached(scene: &Scene) -> bool {
    scene
        .lab
        .server
        .ip(&["-d", "link", "show", &scene.lab.server_if])
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
}

/// A stranger's SYN is dropped, and a knock opens the door.
fn assert_gate_holds_and_a_knock_opens(scene: &Scene, knocks_before: usize) {
    assert!(xdp_attached(scene), "the program is attached");
    assert!(scene.ssh().is_err(), "a SYN without a knock is dropped");
    let server = SERVER_V4.to_string();
    scene.our_knock(&[&server, "4438", "1813", "8235"]);
    let deadline = Instant::now() + WAIT;
    while opened(scene) <= knocks_before {
        assert!(
            Instant::now() < deadline,
            "the knock did not open:\n{}",
            scene.daemon().log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(scene.ssh().is_ok(), "the knock opens port 22");
}

fn opened(scene: &Scene) -> usize {
    scene
        .daemon()
        .log()
        .iter()
        .filter(|l| l.contains("openSSH: OPEN SESAME"))
        .count()
}

#[test]
fn a_veth_deleted_and_made_again_under_a_running_daemon_is_guarded_again_within_a_second() {
    let mut scene = pinned_scene();
    scene.start_daemon(&[]).expect("the daemon starts");
    let iface = scene.lab.server_if.clone();
    assert_gate_holds_and_a_knock_opens(&scene, 0);
    assert_status_shows_attached(&scene);

    scene.lab.unwire().expect("the veth pair goes");
    let lost = expect_line(&scene, &format!("knock: {iface} went away"), WAIT);
    assert!(lost.contains("not guarded until"), "{lost}");
    assert_status_shows_missing(&scene);

    scene.lab.rewire().expect("the veth pair comes back");
    let back = expect_line(
        &scene,
        &format!("knock: {iface} is back"),
        Duration::from_secs(1),
    );
    assert!(back.contains("guarded again, native XDP"), "{back}");
    assert_status_shows_attached(&scene);
    // The door opened before is still open in the kernel; a stranger's SYN is not.
    assert!(
        knock_lab::connects_from(
            &scene.lab.client,
            knock_lab::OTHER_V4.into(),
            SERVER_V4.into(),
            22,
            knock_lab::SHORT
        )
        .is_err(),
        "a stranger's SYN is dropped on the new interface"
    );
    assert!(scene.ssh().is_ok(), "the door opened before is still open");

    // And once more, as a flapping link does, then a fresh knock from another source.
    scene.lab.unwire().expect("the veth pair goes");
    scene.lab.rewire().expect("the veth pair comes back");
    let deadline = Instant::now() + WAIT;
    while scene
        .daemon()
        .log()
        .iter()
        .filter(|l| l.contains("is back (ifindex"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            scene.daemon().log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(xdp_attached(&scene), "attached again");
    let log = scene.stop_daemon().0;
    assert!(
        log.iter()
            .any(|l| l.contains("the program stays attached with 1 open door(s)")),
        "{log:#?}"
    );
}

#[test]
fn an_interface_that_appears_after_start_is_waited_for_and_then_guarded() {
    let mut scene = pinned_scene();
    scene.lab.unwire().expect("the veth pair goes");
    let iface = scene.lab.server_if.clone();
    scene
        .start_daemon(&[])
        .expect("the daemon starts and waits");
    expect_line(
        &scene,
        &format!("knock: {iface} does not exist (yet): waiting for it"),
        WAIT,
    );
    assert_status_shows_missing(&scene);

    scene.lab.rewire().expect("the veth pair appears");
    let appeared = expect_line(
        &scene,
        &format!("knock: {iface} appeared"),
        Duration::from_secs(1),
    );
    assert!(appeared.contains("guarded, native XDP"), "{appeared}");
    assert_status_shows_attached(&scene);
    assert_gate_holds_and_a_knock_opens(&scene, 0);
}

#[test]
fn auto_mode_falls_back_to_generic_xdp_where_the_driver_has_no_native_xdp_and_says_why() {
    let ns = Netns::create(&format!("knock-{}-bridge", std::process::id() % 100_000))
        .expect("a namespace");
    // A bridge has no native XDP.
    ns.ip(&["link", "add", "knbr0", "type", "bridge"]).unwrap();
    ns.ip(&["link", "set", "knbr0", "up"]).unwrap();
    let dir = crate::common::TempDir::new(&format!("bridge-{}", std::process::id()));
    let config = dir.path("knockd.conf");
    std::fs::write(&config, GUIDE).unwrap();
    let run = |extra: &[&str]| {
        let mut command = ns.command(BINARY);
        command
            .args(["run", "--ephemeral", "--config"])
            .arg(&config)
            .args(["--interface", "knbr0"])
            .args(extra);
        command
    };

    let daemon = knock_lab::Daemon::spawn(run(&[])).expect("auto mode attaches");
    let line = daemon
        .wait_for("knock: knbr0: generic XDP (skb)", WAIT)
        .unwrap_or_else(|| panic!("{}", daemon.log().join("\n")));
    assert!(
        line.contains("since the driver refused native XDP")
            && line.contains("Operation not supported"),
        "which mode, and why: {line}"
    );
    let link = ns.ip(&["-d", "link", "show", "knbr0"]).unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdpgeneric"),
        "attached in generic XDP"
    );
    let (log, clean) = daemon.stop();
    assert!(clean, "{log:#?}");

    let native = run(&["--xdp-mode", "native"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&native.stderr);
    assert!(!native.status.success(), "native insists: {stderr}");
    assert!(
        stderr.contains("cannot attach in native XDP mode to knbr0")
            && stderr.contains("--xdp-mode auto"),
        "{stderr}"
    );
    let link = ns.ip(&["-d", "link", "show", "knbr0"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "nothing attached"
    );
}

#[test]
fn a_daemon_that_mounts_its_own_bpffs_in_a_private_mount_namespace_says_its_pins_die_with_it() {
    // `ip netns exec` gives the daemon a mount namespace of its own and a fresh /sys, so with
    // the default state directory it mounts a bpffs that only that namespace sees.
    let config = "[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 30\n\
                  start_command = echo opened %IP%\nstop_command = echo closed %IP%\n";
    let mut scene = Scene::build(config)
        .start(Path::new(BINARY))
        .expect("the daemon starts");
    let warning = expect_line(&scene, "will not outlive this daemon", WAIT);
    for remedy in [
        "mount -t bpf bpf /sys/fs/bpf",
        "bind it into the container",
        "--state-dir",
    ] {
        assert!(warning.contains(remedy), "{remedy}: {warning}");
    }
    let server = SERVER_V4.to_string();
    scene.our_knock(&[&server, "4438", "1813", "8235"]);
    expect_line(&scene, "openSSH: OPEN SESAME", WAIT);
    let (log, clean) = scene.stop_daemon();
    assert!(clean, "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("stays attached")),
        "no claim that the gate stays: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("the program detaches as this daemon exits")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("running command: echo closed 198.51.100.2")),
        "the open door is closed as the gate goes: {log:#?}"
    );
    assert!(!xdp_attached(&scene), "nothing is left attached");
}
