//! knock as a drop-in for knockd: its flags, its signals, its one-time sequences, its Target,
//! and serving a knock port. Needs root: `cargo xtask test` runs it.
use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{BINARY, GUIDE, Scene, TempDir, scene, scene_with};
use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_lab::{Listener, OTHER_V4, SERVER_ALT_V4, SERVER_V4, connects};

const WAIT: Duration = Duration::from_secs(5);

/// A SYN from the lab's second client address, sent as a raw frame.
fn syn_from_other(s: &common::Scene, port: u16) {
    let frame = Craft::tcp(OTHER_V4.into(), SERVER_V4.into(), port, SYN).build();
    s.lab.send_from_client(&frame).expect("the frame leaves");
}

#[test]
fn sighup_reloads_and_keeps_open_doors_and_attempts_of_unchanged_doors() {
    let s = scene(
        "[openSSH]\nsequence = 4438,1813,8235\n[other]\nsequence = 7000,7001\nprotect = 2222\n",
    );
    s.our_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    assert!(s.opened("198.51.100.2: openSSH: OPEN SESAME"));
    syn_from_other(&s, 4438);
    assert!(s.opened("198.51.100.3: openSSH: Stage 1"));
    // `other` changes; openSSH does not.
    std::fs::write(
        &s.config,
        "[openSSH]\nsequence = 4438,1813,8235\n[other]\nsequence = 7000,7002\nprotect = 2222\n",
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    s.daemon()
        .wait_for("configuration reloaded: 2 door(s)", WAIT)
        .expect("the reload is logged");
    s.ssh().expect("the open door stays open across the reload");
    syn_from_other(&s, 1813);
    syn_from_other(&s, 8235);
    assert!(
        s.opened("198.51.100.3: openSSH: OPEN SESAME"),
        "the attempt in progress survived: {:#?}",
        s.daemon().log()
    );
}

#[test]
fn sighup_ends_attempts_at_a_door_whose_sequence_changed() {
    let s = scene("[door]\nsequence = 7000,7001,7002\n");
    s.our_knock(&["198.51.100.1", "7000"]);
    std::fs::write(&s.config, "[door]\nsequence = 7000,7001,7003\n").unwrap();
    s.signal(libc::SIGHUP);
    s.daemon()
        .wait_for("configuration reloaded", WAIT)
        .expect("reloaded");
    s.our_knock(&["198.51.100.1", "7001", "7003"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.ssh().is_err(),
        "an attempt begun under the old sequence does not finish the new one"
    );
    s.our_knock(&["198.51.100.1", "7000", "7001", "7003"]);
    assert!(s.opened("door: OPEN SESAME"));
}

#[test]
fn a_broken_file_on_reload_keeps_the_running_configuration() {
    let s = scene(GUIDE);
    std::fs::write(&s.config, "[openSSH]\nsequence = 4438,0\n").unwrap();
    s.signal(libc::SIGHUP);
    let line = s
        .daemon()
        .wait_for("the running one stays", WAIT)
        .expect("the broken file is reported");
    assert!(
        line.contains(":2: sequence: port 0 is out of range"),
        "{line}"
    );
    s.real_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    assert!(s.opened("OPEN SESAME"), "the old sequence still opens");
}

#[test]
fn a_one_time_sequence_opens_once_and_its_line_is_marked_used() {
    let dir = TempDir::new("onetime");
    let file = dir.path("sequences");
    std::fs::write(&file, "5001,5002,5003\n6001,6002,6003\n").unwrap();
    let mut s = scene(&format!(
        "[once]\none_time_sequences = {}\n",
        file.display()
    ));
    s.our_knock(&["198.51.100.1", "5001", "5002", "5003"]);
    assert!(s.opened("once: OPEN SESAME"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "#001,5002,5003\n6001,6002,6003\n"
    );
    let (log, _) = s.stop_daemon();
    assert_eq!(
        log.iter().filter(|l| l.contains("OPEN SESAME")).count(),
        1,
        "{log:#?}"
    );
}

#[test]
fn a_used_one_time_sequence_no_longer_opens_but_the_next_one_does_over_ipv6_too() {
    let dir = TempDir::new("onetime6");
    let file = dir.path("sequences");
    std::fs::write(&file, "5001,5002\n6001,6002\n").unwrap();
    let s = scene(&format!(
        "[once]\none_time_sequences = {}\ncmd_timeout = 1\n",
        file.display()
    ));
    s.our_knock(&["2001:db8::1", "5001", "5002"]);
    assert!(s.opened("2001:db8::2: once: OPEN SESAME"));
    std::thread::sleep(Duration::from_millis(1500));
    s.our_knock(&["198.51.100.1", "5001", "5002"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.ssh().is_err(), "a used sequence is worthless");
    s.our_knock(&["198.51.100.1", "6001", "6002"]);
    assert!(s.opened("198.51.100.2: once: OPEN SESAME"));
    assert!(
        s.daemon()
            .wait_for("no one-time sequence left", WAIT)
            .is_some(),
        "the door closes when the file runs out"
    );
}

#[test]
fn a_door_with_a_target_counts_only_knocks_sent_to_that_address() {
    let s = scene(&format!(
        "[targeted]\nsequence = 4438,1813\ntarget = {SERVER_ALT_V4}\n"
    ));
    s.our_knock(&["198.51.100.1", "4438", "1813"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.ssh().is_err());
    s.our_knock(&[&SERVER_ALT_V4.to_string(), "4438", "1813"]);
    assert!(s.opened("targeted: OPEN SESAME"), "{:#?}", s.daemon().log());
    s.ssh().expect("the door opened");
}

#[test]
fn only_ip_v4_ignores_ipv6_knocks() {
    let s = scene_with(GUIDE, &["-4"]);
    s.our_knock(&["2001:db8::1", "4438", "1813", "8235"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !s.daemon().log().iter().any(|l| l.contains("Stage")),
        "{:#?}",
        s.daemon().log()
    );
    s.our_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    assert!(s.opened("198.51.100.2: openSSH: OPEN SESAME"));
}

#[test]
fn a_knock_port_the_host_serves_keeps_serving_and_still_counts() {
    let lab_free = "[web]\nsequence = 8080,1813\n";
    let s = scene(lab_free);
    let web = Listener::start(&s.lab.server, 8080).expect("a listener on 8080");
    // The daemon looks for served ports every few seconds.
    std::thread::sleep(Duration::from_secs(6));
    connects(
        &s.lab.client,
        SERVER_V4.into(),
        8080,
        Duration::from_secs(1),
    )
    .expect("the service on a knock port answers");
    s.our_knock(&["198.51.100.1", "8080", "1813"]);
    assert!(
        s.opened("web: OPEN SESAME"),
        "the knock on the served port counted"
    );
    assert!(web.wait_accepted(2, Duration::from_secs(2)) >= 1);
}

#[test]
fn a_log_file_from_the_command_line_gets_knockds_lines() {
    let dir = TempDir::new("logfile");
    let log = dir.path("knockd.log");
    let s = scene_with(GUIDE, &["-g", &log.to_string_lossy()]);
    s.real_knock(&["198.51.100.1", "4438", "1813", "8235"]);
    assert!(s.opened("OPEN SESAME"));
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.ends_with("198.51.100.2: openSSH: OPEN SESAME"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("[20") && line.as_bytes()[17] == b']',
        "{line}"
    );
}

#[test]
fn daemon_mode_detaches_writes_its_pid_file_and_removes_it_on_sigterm() {
    let scene = Scene::build(GUIDE)
        .stopped()
        .start(Path::new(BINARY))
        .unwrap();
    let (lab, dir, config) = (&scene.lab, &scene.dir, &scene.config);
    let pid_file = dir.path("knockd.pid");
    let log = dir.path("knockd.log");
    let status = lab
        .server
        .command(BINARY)
        .args([
            "run",
            "-d",
            "-c",
            &config.to_string_lossy(),
            "-i",
            &lab.server_if,
        ])
        .args([
            "-p",
            &pid_file.to_string_lossy(),
            "-g",
            &log.to_string_lossy(),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "the foreground process returns at once");
    let deadline = std::time::Instant::now() + WAIT;
    while !pid_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + WAIT;
    while pid_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists(), "the pid file is removed on exit");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("starting up, listening on"), "{text}");
    assert!(text.contains("shutting down"), "{text}");
}

#[test]
fn use_syslog_sends_knockds_lines_to_syslog_as_knockd() {
    let scene = Scene::build(GUIDE)
        .stopped()
        .start(Path::new(BINARY))
        .unwrap();
    let (lab, dir, config) = (&scene.lab, &scene.dir, &scene.config);
    let socket_path = dir.path("log.sock");
    let syslog = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    syslog.set_read_timeout(Some(WAIT)).unwrap();
    for sub in ["upper", "work"] {
        std::fs::create_dir_all(dir.path(sub)).unwrap();
    }
    // A private view of /dev whose /dev/log is our socket; the host's /dev is untouched.
    let script = format!(
        "mount -t overlay overlay -o lowerdir=/dev,upperdir={up},workdir={work} /dev && ln -s {sock} /dev/log && exec ip netns exec {ns} {bin} run -c {conf} -i {iface}",
        up = dir.path("upper").display(),
        work = dir.path("work").display(),
        sock = socket_path.display(),
        ns = lab.server.name(),
        bin = BINARY,
        conf = config.display(),
        iface = lab.server_if,
    );
    let mut command = std::process::Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let daemon = knock_lab::Daemon::spawn(command).expect("the daemon starts");
    let output = lab
        .client
        .command("knock")
        .args(["198.51.100.1", "4438", "1813", "8235"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(daemon.wait_for("OPEN SESAME", WAIT).is_some());
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while !seen.iter().any(|l: &String| l.contains("OPEN SESAME")) {
        let n = syslog.recv(&mut buf).expect("a syslog record arrives");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // <13> is facility user (1) with level notice (5): 1 * 8 + 5.
    let record = seen.iter().find(|l| l.contains("OPEN SESAME")).unwrap();
    assert!(record.starts_with("<13>"), "{record}");
    assert!(
        record.contains("knockd: 198.51.100.2: openSSH: OPEN SESAME"),
        "{record}"
    );
    drop(daemon);
}
