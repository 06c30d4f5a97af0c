//! The safety net of a first start: `run --trial` undoes itself unless `knock-user confirm`
//! arrives, `--observe` drops nothing and says what it would have dropped, `unban` lets a
//! banned source knock again with or without a daemon, and `run` warns when the SSH session it
//! was started from would not get back in. State is pinned in a bpffs of each test's own.
use crate::common;

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{BINARY, SHORT, operator, text};
use knock_lab::{SERVER_V4, Scene};

const DOOR: &str = "[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 30\n\
                    start_command = echo opened %IP%\nstop_command = echo closed %IP%\n";
const WAIT: Duration = Duration::from_secs(10);

fn site(config: &str) -> Scene {
    Scene::build(config)
        .pinned()
        .stopped()
        .start(Path::new(BINARY))
        .expect("the lab builds")
}

fn expect_line(scene: &Scene, needle: &str) -> String {
    scene.daemon().wait_for(needle, WAIT).unwrap_or_else(|| {
        panic!(
            "no line with `{needle}` in:\n{}",
            scene.daemon().log().join("\n")
        )
    })
}

fn knock(scene: &Scene, ports: &[&str]) {
    let server = SERVER_V4.to_string();
    let mut args = vec![server.as_str()];
    args.extend_from_slice(ports);
    scene.our_knock(&args);
}

fn ssh(scene: &Scene) -> std::io::Result<TcpStream> {
    knock_lab::connects(&scene.lab.client, SERVER_V4.into(), 22, SHORT)
}

fn xdp_attached(scene: &Scene) -> bool {
    let link = scene
        .lab
        .server
        .ip(&["link", "show", &scene.lab.server_if])
        .expect("ip runs");
    String::from_utf8_lossy(&link.stdout).contains("xdp")
}

fn pinned(scene: &Scene) -> Vec<String> {
    std::fs::read_dir(scene.state_dir().expect("the scene pins"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.ends_with(".debug"))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_undone(scene: &mut Scene) {
    let mut daemon = scene.take_daemon().expect("the daemon");
    assert!(daemon.exits_within(WAIT), "the daemon exits");
    assert!(!xdp_attached(scene), "no program left on the interface");
    assert_eq!(pinned(scene), Vec::<String>::new(), "nothing left pinned");
    assert!(ssh(scene).is_ok(), "SSH is reachable again without a knock");
}

#[test]
fn a_trial_nobody_confirms_undoes_itself_closing_its_doors() {
    let mut scene = site(DOOR);
    scene
        .start_daemon(&["--trial", "4s"])
        .expect("the daemon starts");
    expect_line(
        &scene,
        "knock: trial: unless `knock-user confirm` arrives within 4 s",
    );
    assert!(ssh(&scene).is_err(), "the gate guards during the trial");
    let status = operator(&scene, &["status"]);
    assert!(
        text(&status).contains("trial: undoes itself in"),
        "{}",
        text(&status)
    );
    knock(&scene, &["4438", "1813", "8235"]);
    expect_line(&scene, "openSSH: OPEN SESAME");
    expect_line(
        &scene,
        "the trial ran out without `knock-user confirm`: undoing it",
    );
    expect_line(&scene, "openSSH: running command: echo closed 198.51.100.2");
    assert_undone(&mut scene);
}

#[test]
fn confirm_keeps_what_the_trial_started() {
    let mut scene = site(DOOR);
    scene
        .start_daemon(&["--trial", "3s"])
        .expect("the daemon starts");
    expect_line(&scene, "knock: trial:");
    let confirmed = operator(&scene, &["confirm"]);
    assert!(confirmed.status.success(), "{}", text(&confirmed));
    assert!(
        text(&confirmed).contains("confirmed the trial: knock keeps guarding"),
        "{}",
        text(&confirmed)
    );
    expect_line(&scene, "knock: trial confirmed");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !scene
            .daemon()
            .log()
            .iter()
            .any(|l| l.contains("trial ran out")),
        "{:#?}",
        scene.daemon().log()
    );
    assert!(xdp_attached(&scene), "still guarding after the trial's end");
    assert!(ssh(&scene).is_err(), "the gate still guards");
    let again = operator(&scene, &["confirm"]);
    assert!(!again.status.success(), "nothing left to confirm");
    assert!(
        text(&again).contains("knock guards, but not on trial"),
        "{}",
        text(&again)
    );
    // Confirmed, a stop leaves the kernel guarding as always.
    let (log, clean) = scene.stop_daemon();
    assert!(clean, "{log:#?}");
    assert!(xdp_attached(&scene));
}

#[test]
fn a_trial_stopped_before_it_is_confirmed_undoes_itself() {
    let mut scene = site(DOOR);
    scene
        .start_daemon(&["--trial", "10m"])
        .expect("the daemon starts");
    expect_line(&scene, "knock: trial:");
    scene.signal(libc::SIGTERM);
    expect_line(
        &scene,
        "stopped during a trial nobody confirmed: undoing it",
    );
    assert_undone(&mut scene);
}

#[test]
fn confirm_with_nothing_attached_says_a_trial_may_have_undone_itself() {
    let scene = site(DOOR);
    let output = operator(&scene, &["confirm"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("a trial nobody confirmed in time has undone itself"),
        "{}",
        text(&output)
    );
}

/// A daemon that goes with the test, also when the test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_trial_daemon_outlives_the_terminal_it_was_started_from() {
    let scene = site(DOOR);
    let pins = scene.state_dir().expect("pins").to_owned();
    let child = scene
        .lab
        .server
        .command(BINARY)
        .args(["run", "--config"])
        .arg(&scene.config)
        .args(["--interface", &scene.lab.server_if, "-v", "--trial", "10m"])
        .arg("--state-dir")
        .arg(&pins)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the daemon runs");
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    while !line.contains("knock: trial:") {
        line.clear();
        assert!(Instant::now() < deadline, "the daemon did not start");
        assert!(stderr.read_line(&mut line).expect("stderr reads") > 0);
    }
    // The terminal goes away: every line the daemon writes now fails.
    drop(stderr);
    knock(&scene, &["4438", "1813", "8235"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("waits").is_none(),
        "the daemon died with its terminal"
    );
    assert!(ssh(&scene).is_ok(), "the door opened");
    let confirmed = operator(&scene, &["confirm"]);
    assert!(confirmed.status.success(), "{}", text(&confirmed));
    let stopped = operator(&scene, &["stop"]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("waits").is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn observing_drops_nothing_and_logs_what_the_gate_would_have_dropped() {
    let mut scene = site(DOOR);
    scene
        .start_daemon(&["--observe"])
        .expect("the daemon starts");
    expect_line(
        &scene,
        "knock: observing: every packet is judged and none dropped",
    );
    assert!(ssh(&scene).is_ok(), "observing, the gate drops nothing");
    let line = expect_line(&scene, "would have been dropped");
    assert_eq!(
        line,
        "knock: observing: 198.51.100.2 would have been dropped: a new connection to 22:tcp \
         without an open door (passed)"
    );
    let status = operator(&scene, &["status", "--json"]);
    let said = text(&status);
    assert!(said.contains("\"observe_passed\""), "{said}");
    // Knocks still count and still open the door.
    knock(&scene, &["4438", "1813", "8235"]);
    expect_line(&scene, "198.51.100.2: openSSH: Stage 3");
    expect_line(&scene, "198.51.100.2: openSSH: OPEN SESAME");
    // Stopped, an observing program leaves nothing that would pass for a guard.
    scene.signal(libc::SIGINT);
    expect_line(&scene, "stopped while observing: the program detaches");
    let mut daemon = scene.take_daemon().expect("the daemon");
    assert!(daemon.exits_within(WAIT), "the daemon exits");
    assert!(!xdp_attached(&scene), "no program left on the interface");
    assert_eq!(pinned(&scene), Vec::<String>::new(), "nothing left pinned");
}

#[test]
fn unban_lets_a_banned_source_knock_again_with_and_without_a_daemon() {
    let config = format!("[options]\nBan_Failures = 2\n{DOOR}");
    let mut scene = site(&config);
    scene.start_daemon(&[]).expect("the daemon starts");
    let get_banned = |scene: &Scene| {
        // A wrong knock on a knock port ends an attempt: a failure.
        for _ in 0..2 {
            knock(scene, &["4438", "8235"]);
        }
    };
    get_banned(&scene);
    expect_line(
        &scene,
        "198.51.100.2: failed too often; its knocks are ignored for",
    );
    knock(&scene, &["4438", "1813", "8235"]);
    assert!(ssh(&scene).is_err(), "a banned source's knocks are ignored");
    let unbanned = operator(&scene, &["unban", "198.51.100.2"]);
    assert!(unbanned.status.success(), "{}", text(&unbanned));
    assert!(
        text(&unbanned).contains("ban lifted"),
        "{}",
        text(&unbanned)
    );
    knock(&scene, &["4438", "1813", "8235"]);
    expect_line(&scene, "198.51.100.2: openSSH: OPEN SESAME");
    assert!(ssh(&scene).is_ok(), "unbanned, the knock opens the door");

    // No daemon: the kernel bans alone, and unban works on the pinned map alone.
    let (_, clean) = scene.stop_daemon();
    assert!(clean);
    get_banned(&scene);
    let unbanned = operator(&scene, &["unban", "198.51.100.2"]);
    assert!(
        text(&unbanned).contains("ban lifted"),
        "{}",
        text(&unbanned)
    );
    let clean_source = operator(&scene, &["unban", "198.51.100.9"]);
    assert!(
        text(&clean_source).contains("not banned, no failures counted"),
        "{}",
        text(&clean_source)
    );
}

#[test]
fn run_warns_when_the_ssh_session_it_runs_in_would_not_get_back_in() {
    let mut scene = Scene::build(DOOR)
        .pinned()
        .stopped()
        .env("SSH_CONNECTION", "203.0.113.7 51234 198.51.100.1 22")
        .start(Path::new(BINARY))
        .expect("the lab builds");
    scene.start_daemon(&[]).expect("the daemon starts");
    let line = expect_line(
        &scene,
        "knock: warning: this SSH session comes from 203.0.113.7",
    );
    assert!(line.contains("not in Always_Allow"), "{line}");
    let (_, clean) = scene.stop_daemon();
    assert!(clean);
}
