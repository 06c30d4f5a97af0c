//! knock end to end: the daemon guards a veth in a network namespace, real clients knock from
//! another namespace, and real sockets connect. Needs root: `cargo xtask test` runs it.
use crate::common;

use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::{BINARY, GUIDE, SHORT, Scene, scene};
use knock_lab::{Lab, SERVER_V4, connects};

#[test]
fn the_guide_configuration_keeps_ssh_shut_until_the_real_knock_client_knocks() {
    let s = scene(GUIDE);
    assert!(
        s.ssh().is_err(),
        "port 22 must be invisible before the knock"
    );
    assert_eq!(s.listener().accepted(), 0);
    s.real_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    s.daemon()
        .wait_for("OPEN SESAME", Duration::from_secs(5))
        .expect("the door opens");
    s.ssh().expect("port 22 accepts after the knock");
    assert_eq!(s.listener().wait_accepted(1, Duration::from_secs(2)), 1);
}

#[test]
fn the_start_command_runs_with_the_clients_address() {
    let s = scene(GUIDE);
    s.real_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    let line = s
        .daemon()
        .wait_for("running command", Duration::from_secs(5))
        .expect("the command runs");
    assert_eq!(
        line,
        "openSSH: running command: /sbin/iptables -A KNOCKD -s 198.51.100.2 -p tcp --dport 22 -j ACCEPT"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.knockd_rules()
            .contains("-A KNOCKD -s 198.51.100.2/32 -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{}",
        s.knockd_rules()
    );
}

#[test]
fn the_daemon_logs_knockds_lines_for_each_stage() {
    let s = scene(GUIDE);
    s.real_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    s.daemon()
        .wait_for("OPEN SESAME", Duration::from_secs(5))
        .expect("the door opens");
    let log = s.daemon().log();
    let knocks: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("198.51.100.2: openSSH: "))
        .collect();
    // Every knock has its stage line, the last one too, as knockd logs them.
    assert_eq!(
        knocks,
        [
            "198.51.100.2: openSSH: Stage 1",
            "198.51.100.2: openSSH: Stage 2",
            "198.51.100.2: openSSH: Stage 3",
            "198.51.100.2: openSSH: OPEN SESAME",
        ],
        "{log:#?}"
    );
}

#[test]
fn knock_users_own_client_opens_the_door() {
    let s = scene(GUIDE);
    s.our_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    s.daemon()
        .wait_for("OPEN SESAME", Duration::from_secs(5))
        .expect("the door opens");
    s.ssh().expect("port 22 accepts after the knock");
}

#[test]
fn knocks_in_the_wrong_order_keep_the_door_shut() {
    let s = scene(GUIDE);
    s.real_knock(&["198.51.100.1", "4438", "8235", "1813"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.ssh().is_err());
    assert!(!s.daemon().log().iter().any(|l| l.contains("OPEN SESAME")));
}

#[test]
fn a_connection_to_another_port_between_knocks_keeps_the_door_shut() {
    let s = scene(GUIDE);
    s.real_knock(&["198.51.100.1", "4438", "1813"]);
    let _ = connects(
        &s.lab.client,
        SERVER_V4.into(),
        80,
        Duration::from_millis(200),
    );
    s.real_knock(&["198.51.100.1", "8235"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.ssh().is_err());
    assert!(
        s.daemon()
            .wait_for("sequence reset", Duration::from_secs(2))
            .is_some()
    );
}

#[test]
fn a_sequence_slower_than_its_timeout_keeps_the_door_shut() {
    let s = scene(&GUIDE.replace("seq_timeout = 5", "seq_timeout = 1"));
    s.real_knock(&["-d", "600", "198.51.100.1", "4438", "1813", "8235"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.ssh().is_err());
    s.daemon()
        .wait_for("sequence timeout (stage 2)", Duration::from_secs(3))
        .expect("the timeout is logged");
}

#[test]
fn an_established_connection_outlives_its_door() {
    let s = scene(
        "[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 1\nstop_command = echo closing %IP%\n",
    );
    s.our_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    let mut session = s.ssh().expect("port 22 accepts after the knock");
    s.daemon()
        .wait_for(
            "openSSH: running command: echo closing 198.51.100.2",
            Duration::from_secs(5),
        )
        .expect("the door closes and its stop command runs");
    assert!(s.ssh().is_err(), "new connections are dropped again");
    // The listener keeps accepted streams open; writing and reading proves the session lives.
    session
        .write_all(b"still here")
        .expect("the session still sends");
    session
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    match session.read(&mut buf) {
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("the session should be open and quiet, got {other:?}"),
    }
}

#[test]
fn a_failing_command_is_logged_with_its_status_and_the_daemon_goes_on() {
    let mut s = scene("[openSSH]\nsequence = 4438,1813,8235\ncommand = exit 7\n");
    s.our_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    s.daemon()
        .wait_for(
            "openSSH: command returned non-zero status code (7)",
            Duration::from_secs(5),
        )
        .expect("the failure is logged");
    s.ssh().expect("the door opened anyway");
    let (_, clean) = s.stop_daemon();
    assert!(clean, "the daemon exits cleanly on SIGINT");
}

#[test]
fn an_ephemeral_daemon_detaches_when_it_stops() {
    let mut s = common::scene_with(GUIDE, &["--ephemeral"]);
    assert!(s.ssh().is_err());
    let (log, clean) = s.stop_daemon();
    assert!(clean, "{log:#?}");
    assert!(log.iter().any(|l| l == "shutting down"));
    let link = s
        .lab
        .server
        .ip(&["link", "show", &s.lab.server_if])
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "no XDP program left"
    );
    s_connects_freely(&s.lab);
}

fn s_connects_freely(lab: &Lab) {
    let ip: IpAddr = SERVER_V4.into();
    connects(&lab.client, ip, 22, SHORT).expect("without knock, port 22 is plain open");
}

#[test]
fn a_lone_knock_times_out_in_the_log_without_further_packets() {
    let s = scene(&GUIDE.replace("seq_timeout = 5", "seq_timeout = 1"));
    s.real_knock(&["198.51.100.1", "4438"]);
    s.daemon()
        .wait_for(
            "198.51.100.2: openSSH: sequence timeout (stage 1)",
            Duration::from_secs(4),
        )
        .expect("the sweeper notices the stale attempt by itself");
}

#[test]
fn mixed_udp_and_tcp_knocks_from_both_clients_open_the_door() {
    let s = scene("[mixed]\nsequence = 7000:udp,8000,9000:udp\n");
    s.real_knock(&["198.51.100.1", "7000:udp", "8000:tcp", "9000:udp"]);
    s.daemon()
        .wait_for("mixed: OPEN SESAME", Duration::from_secs(5))
        .expect("knock opens");
    s.ssh().expect("port 22 accepts");
    let s = scene("[mixed]\nsequence = 7000:udp,8000,9000:udp\n");
    s.our_knock(&["-u", "198.51.100.1", "7000", "8000:tcp", "9000"]);
    s.daemon()
        .wait_for("mixed: OPEN SESAME", Duration::from_secs(5))
        .expect("knock-user knock opens");
    s.ssh().expect("port 22 accepts");
}

#[test]
fn debians_default_configuration_runs_unchanged() {
    let debian = std::fs::read_to_string("/etc/knockd.conf")
        .expect("Debian's knockd package installs /etc/knockd.conf");
    let s = scene(&debian);
    s.real_knock(&["198.51.100.1", "7000", "8000", "9000"]);
    s.daemon()
        .wait_for("198.51.100.2: openSSH: OPEN SESAME", Duration::from_secs(5))
        .expect("Debian's openSSH door opens");
    s.ssh().expect("port 22 accepts after the knock");
    s.real_knock(&["198.51.100.1", "12345", "54321", "24680", "13579"]);
    s.daemon()
        .wait_for(
            "openHTTPS: command returned non-zero status code",
            Duration::from_secs(5),
        )
        .expect("the missing knock_add helper is reported, and the daemon goes on");
}

/// `-D` shows the XDP program's debug records and the daemon's own debug lines through the `log`
/// facade (and not the debug chatter of the libraries beneath); `RUST_LOG` filters them, as in
/// any program that logs with env_logger.
#[test]
fn debug_output_follows_rust_log() {
    let gate_record = "gate: refused a new connection to a protected port";
    let push_line = "push 1:";
    let debug = Scene::build(GUIDE)
        .args(&["-D"])
        .env_remove("RUST_LOG")
        .start(Path::new(BINARY))
        .expect("the daemon starts");
    assert!(debug.ssh().is_err());
    assert!(
        debug
            .daemon()
            .wait_for(gate_record, Duration::from_secs(5))
            .is_some(),
        "{:#?}",
        debug.daemon().log()
    );
    assert!(debug.daemon().log().iter().any(|l| l.contains(push_line)));
    assert!(
        !debug
            .daemon()
            .log()
            .iter()
            .any(|l| l.contains("[DEBUG aya")),
        "aya's own debug output stays out unless RUST_LOG asks for it"
    );
    drop(debug);
    let filtered = Scene::build(GUIDE)
        .args(&["-D"])
        .env("RUST_LOG", "warn")
        .start(Path::new(BINARY))
        .expect("the daemon starts");
    assert!(filtered.ssh().is_err());
    std::thread::sleep(Duration::from_millis(500));
    let log = filtered.daemon().log();
    assert!(
        !log.iter()
            .any(|l| l.contains(gate_record) || l.contains(push_line)),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l.starts_with("starting up")), "{log:#?}");
}
