//! Running knock like a real daemon: state pinned in bpffs outlives the daemon, a restart
//! takes it over, `status` reads it from another shell, `stop` leaves nothing behind. Each test
//! pins into a bpffs of its own, mounted for the test and unmounted after it.
use crate::common;

use std::io::Write as _;
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BINARY, SHORT, text};
use knock_lab::{CLIENT_V6, Daemon, SERVER_V4, SERVER_V6, Scene};

const DOOR: &str = "[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 8\n\
                    start_command = echo opened %IP%\nstop_command = echo closed %IP%\n";
const WAIT: Duration = Duration::from_secs(10);

/// A scene whose daemon can be stopped and started again over the same pinned state, in a
/// bpffs of the scene's own. It drops in order: the daemon, then the pins (which detaches what
/// they hold), then the namespaces.
struct Site {
    scene: Scene,
    lab_if: String,
}

impl Site {
    fn new(config: &str) -> Self {
        let scene = Scene::build(config)
            .pinned()
            .stopped()
            .start(Path::new(BINARY))
            .expect("the lab builds");
        Self {
            lab_if: scene.lab.server_if.clone(),
            scene,
        }
    }

    fn start_with(&mut self, extra: &[&str]) -> Result<(), String> {
        self.scene.start_daemon(extra).map_err(|e| e.to_string())
    }

    fn start(&mut self) {
        self.start_with(&[]).expect("the daemon starts");
    }

    fn daemon(&self) -> &Daemon {
        self.scene.daemon()
    }

    /// SIGINT, as Ctrl-C or a restart would send; returns the daemon's log.
    fn stop_daemon(&mut self) -> Vec<String> {
        let (log, clean) = self.scene.stop_daemon();
        assert!(clean, "the daemon exits cleanly: {log:#?}");
        log
    }

    fn expect_line(&self, needle: &str) -> String {
        self.daemon().wait_for(needle, WAIT).unwrap_or_else(|| {
            panic!(
                "no line with `{needle}` in:\n{}",
                self.daemon().log().join("\n")
            )
        })
    }

    fn knock(&self, ports: &[&str]) {
        let server = SERVER_V4.to_string();
        let mut args = vec![server.as_str()];
        args.extend_from_slice(ports);
        self.scene.our_knock(&args);
    }

    fn ssh(&self) -> std::io::Result<TcpStream> {
        knock_lab::connects(&self.scene.lab.client, SERVER_V4.into(), 22, SHORT)
    }

    /// From the client's IPv6 address, a source that never knocked.
    fn ssh_unknocked(&self) -> std::io::Result<TcpStream> {
        knock_lab::connects_from(
            &self.scene.lab.client,
            IpAddr::V6(CLIENT_V6),
            SERVER_V6.into(),
            22,
            SHORT,
        )
    }

    /// `knock-user` with `args` and this site's state directory, from the host's shell.
    fn operator(&self, args: &[&str]) -> Output {
        Command::new(BINARY)
            .args(args)
            .arg("--state-dir")
            .arg(self.pins())
            .output()
            .expect("knock-user runs")
    }

    /// `knock-user` inside the server's network namespace, where a daemon would have run.
    fn operator_in_server(&self, args: &[&str]) -> Output {
        self.scene
            .lab
            .server
            .command(BINARY)
            .args(args)
            .arg("--state-dir")
            .arg(self.pins())
            .output()
            .expect("knock-user runs")
    }

    /// The server's KNOCKD chain as `iptables -S` prints it.
    fn knockd_chain(&self) -> String {
        let output = self
            .scene
            .lab
            .server
            .command("iptables")
            .args(["-w", "10", "-S", "KNOCKD"])
            .output()
            .expect("iptables runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn wait_mirrored(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.knockd_chain().contains("198.51.100.2") {
            assert!(Instant::now() < deadline, "the door was never mirrored");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn xdp_attached(&self) -> bool {
        let link = self
            .scene
            .lab
            .server
            .ip(&["link", "show", &self.scene.lab.server_if])
            .expect("ip runs");
        String::from_utf8_lossy(&link.stdout).contains("xdp")
    }

    fn pins(&self) -> &Path {
        self.scene.state_dir().expect("the scene pins")
    }

    fn state_dir(&self) -> PathBuf {
        self.pins().join(&self.scene.lab.server_if)
    }

    /// What knock pinned (bpffs itself may add `*.debug` files at its root).
    fn pinned_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.pins())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.ends_with(".debug"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Whether the peer acknowledged everything sent on `stream`: the connection lives.
fn acknowledged(stream: &mut TcpStream) -> bool {
    use std::os::fd::AsRawFd as _;
    if stream.write_all(b"still here").is_err() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let mut unacked: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int, into a variable we own.
        let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unacked) };
        if result == 0 && unacked == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_stopped_daemon_leaves_the_program_guarding_and_the_open_door_open() {
    let mut site = Site::new(DOOR);
    site.start();
    site.knock(&["4438", "1813", "8235"]);
    site.expect_line("openSSH: OPEN SESAME");
    let log = site.stop_daemon();
    assert!(
        log.iter()
            .any(|l| l.contains("the program stays attached with 1 open door(s)")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("echo closed")),
        "no stop command runs for a door that stays open: {log:#?}"
    );
    assert!(site.xdp_attached(), "the program stays attached");
    assert!(site.ssh().is_ok(), "the open door stays open");
    assert!(
        site.ssh_unknocked().is_err(),
        "a source that never knocked is still dropped"
    );
}

#[test]
fn a_restarted_daemon_keeps_the_open_door_and_the_established_session() {
    let mut site = Site::new(DOOR);
    site.start();
    site.knock(&["4438", "1813", "8235"]);
    site.expect_line("openSSH: OPEN SESAME");
    let mut session = site.ssh().expect("the door is open");
    site.stop_daemon();
    site.start();
    site.expect_line("took over the state pinned in");
    site.expect_line("took over 1 open door(s)");
    assert!(site.ssh().is_ok(), "the door is still open");
    site.expect_line("openSSH: running command: echo closed 198.51.100.2");
    assert!(
        site.ssh().is_err(),
        "the new daemon closed the door on time"
    );
    assert!(acknowledged(&mut session), "the session survived it all");
}

#[test]
fn a_knock_while_no_daemon_runs_opens_the_door_and_the_next_daemon_runs_its_command() {
    let mut site = Site::new(DOOR);
    site.start();
    site.stop_daemon();
    site.knock(&["4438", "1813", "8235"]);
    assert!(site.ssh().is_ok(), "the kernel opened the door on its own");
    site.start();
    site.expect_line("openSSH: OPEN SESAME");
    site.expect_line("openSSH: running command: echo opened 198.51.100.2");
}

#[test]
fn status_shows_attempts_and_open_doors_while_knocking() {
    let mut site = Site::new(DOOR);
    site.start();
    site.knock(&["4438", "1813"]);
    let during = site.operator(&["status"]);
    assert!(during.status.success(), "{}", text(&during));
    let report = text(&during);
    assert!(report.contains("198.51.100.2"), "{report}");
    assert!(report.contains("openSSH"), "{report}");
    assert!(report.contains("stage 2/3"), "{report}");
    assert!(report.contains("native XDP"), "{report}");
    site.knock(&["8235"]);
    site.expect_line("openSSH: OPEN SESAME");
    let json = site.operator(&["status", "--json"]);
    let value: serde_json::Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json)));
    assert_eq!(value[0]["open"][0]["source"], "198.51.100.2");
    assert_eq!(value[0]["open"][0]["door"], "openSSH");
    assert_eq!(value[0]["daemon"]["running"], true);
    assert_eq!(value[0]["counters"]["doors_opened"], 1);
    let prometheus = text(&site.operator(&["status", "--prometheus"]));
    let guard = &site.lab_if;
    assert!(
        prometheus.contains(&format!("knock_doors_open{{guard=\"{guard}\"}} 1")),
        "{prometheus}"
    );
}

#[test]
fn status_says_so_when_nothing_is_attached() {
    let site = Site::new(DOOR);
    let output = site.operator(&["status"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("nothing is attached"),
        "{}",
        text(&output)
    );
}

#[test]
fn stop_has_the_daemon_close_its_doors_and_leaves_nothing_attached_or_pinned() {
    let mut site = Site::new(DOOR);
    site.start();
    site.knock(&["4438", "1813", "8235"]);
    site.expect_line("openSSH: OPEN SESAME");
    let output = site.operator(&["stop", "--interface", &site.lab_if.clone()]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("closed its doors"),
        "{}",
        text(&output)
    );
    site.expect_line("openSSH: running command: echo closed 198.51.100.2");
    let mut daemon = site.scene.take_daemon().expect("the daemon");
    assert!(daemon.exits_within(WAIT), "the daemon exits");
    assert_nothing_left(&site);
}

fn assert_nothing_left(site: &Site) {
    assert!(!site.xdp_attached(), "no program left on the interface");
    assert_eq!(
        site.pinned_entries(),
        Vec::<String>::new(),
        "nothing left pinned"
    );
}

#[test]
fn stop_without_a_daemon_detaches_and_unpins_and_counts_the_doors_it_left_open() {
    let mut site = Site::new(DOOR);
    site.start();
    site.knock(&["4438", "1813", "8235"]);
    site.expect_line("openSSH: OPEN SESAME");
    site.stop_daemon();
    assert!(site.xdp_attached());
    let output = site.operator(&["stop"]);
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("no daemon ran"), "{said}");
    assert!(said.contains("1 door(s) were open"), "{said}");
    assert_nothing_left(&site);
}

#[test]
fn pinned_state_of_an_incompatible_layout_is_replaced_with_a_clear_message() {
    let mut site = Site::new(DOOR);
    site.start();
    site.stop_daemon();
    let layout = site.state_dir().join("LAYOUT");
    let map = aya::maps::MapData::from_pin(&layout)
        .and_then(aya::maps::Map::from_map_data)
        .expect("the pinned layout map");
    let mut array: aya::maps::Array<_, u32> = map.try_into().expect("an array");
    array.set(0, 0x1234_5678, 0).expect("written");
    site.start();
    site.expect_line("left by an incompatible version (layout 12345678");
    site.knock(&["4438", "1813", "8235"]);
    site.expect_line("openSSH: OPEN SESAME");
    assert!(site.ssh().is_ok(), "the fresh state works");
}

#[test]
fn a_second_daemon_for_the_same_interface_is_refused() {
    let mut site = Site::new(DOOR);
    site.start();
    let Err(error) = site.scene.start_another(&[]).map_err(|e| e.to_string()) else {
        panic!("the second daemon must not start");
    };
    assert!(error.contains("belongs to a running daemon"), "{error}");
}

#[test]
fn a_restart_in_another_xdp_mode_attaches_afresh_and_keeps_the_open_door() {
    let mut site = Site::new(DOOR);
    site.start();
    site.knock(&["4438", "1813", "8235"]);
    site.expect_line("openSSH: OPEN SESAME");
    site.stop_daemon();
    site.start_with(&["--xdp-mode", "skb"])
        .expect("the daemon starts");
    site.expect_line("it was attached in native mode");
    assert!(site.ssh().is_ok(), "the door is still open");
    assert!(site.ssh_unknocked().is_err(), "the gate still gates");
}

#[test]
fn stop_without_a_daemon_empties_the_firewall_mirror_of_its_network_namespace() {
    let mut site = Site::new(DOOR);
    site.start_with(&["--mirror", "iptables"])
        .expect("the daemon starts");
    site.knock(&["4438", "1813", "8235"]);
    site.wait_mirrored();
    site.stop_daemon();
    assert!(
        site.knockd_chain().contains("198.51.100.2"),
        "the rule stays while the door does"
    );
    let output = site.operator_in_server(&["stop"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("1 mirrored entries removed from the iptables chain KNOCKD"),
        "{}",
        text(&output)
    );
    assert!(
        !site.knockd_chain().contains("198.51.100.2"),
        "{}",
        site.knockd_chain()
    );
}

#[test]
fn stop_from_another_network_namespace_leaves_the_mirror_and_says_where_it_lives() {
    let mut site = Site::new(DOOR);
    site.start_with(&["--mirror", "iptables"])
        .expect("the daemon starts");
    site.knock(&["4438", "1813", "8235"]);
    site.wait_mirrored();
    site.stop_daemon();
    let output = site.operator(&["stop"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("lives in the daemon's network namespace"),
        "{}",
        text(&output)
    );
    assert!(
        site.knockd_chain().contains("198.51.100.2"),
        "a firewall in another namespace is not touched"
    );
}
