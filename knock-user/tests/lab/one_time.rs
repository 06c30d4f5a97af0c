//! One-time sequences that fail closed: a line that opened the door never opens it again, even
//! when the file cannot be marked (immutable, or on a read-only mount, as /etc is under the
//! packaged unit) and even after the daemon restarts; the daemon moves on to the next line, and
//! it and `check` say that the file cannot be marked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{BINARY, SHORT, TempDir};
use knock_lab::{BpfMount, CLIENT_V6, Daemon, Lab, Listener, SERVER_V4, SERVER_V6, connects};

const WAIT: Duration = Duration::from_secs(5);
const LINES: &str = "5001,5002\n6001,6002\n7001,7002\n";

/// A lab whose daemon guards a one-time door and can be restarted over the same pinned state.
struct Site {
    daemon: Option<Daemon>,
    _listener: Listener,
    _pins: BpfMount,
    pins: PathBuf,
    lab: Lab,
    config: PathBuf,
    file: PathBuf,
    dir: TempDir,
}

impl Site {
    /// `protect` makes the one-time file unwritable before the daemon starts.
    fn new(tag: &str, protect: impl FnOnce(&Path, &Path) -> Protection) -> (Self, Protection) {
        let lab = Lab::new().expect("the lab builds");
        let pins = BpfMount::new(&lab.server_if).expect("a bpffs for the test");
        let dir = TempDir::new(&format!("{tag}-{}", lab.server_if));
        let files = dir.path("files");
        std::fs::create_dir_all(&files).unwrap();
        let file = files.join("once");
        std::fs::write(&file, LINES).unwrap();
        let config = dir.path("knockd.conf");
        std::fs::write(
            &config,
            format!(
                "[once]\none_time_sequences = {}\ncmd_timeout = 1\n",
                file.display()
            ),
        )
        .unwrap();
        let protection = protect(&files, &file);
        let listener = Listener::start(&lab.server, 22).expect("a listener on port 22");
        let site = Self {
            daemon: None,
            _listener: listener,
            pins: pins.path().to_owned(),
            _pins: pins,
            lab,
            config,
            file,
            dir,
        };
        (site, protection)
    }

    fn start(&mut self) {
        let config = self.config.to_string_lossy().into_owned();
        let state = self.pins.to_string_lossy().into_owned();
        let record = self.record().to_string_lossy().into_owned();
        let args = [
            "--config",
            &config,
            "--interface",
            &self.lab.server_if,
            "-v",
            "--state-dir",
            &state,
            "--record-dir",
            &record,
        ];
        let daemon =
            Daemon::start(&self.lab.server, Path::new(BINARY), &args).expect("the daemon starts");
        self.daemon = Some(daemon);
    }

    fn restart(&mut self) {
        let (log, clean) = self.daemon.take().expect("a daemon runs").stop();
        assert!(clean, "the daemon stops cleanly: {log:#?}");
        self.start();
    }

    /// Where the daemon records used sequences on disk.
    fn record(&self) -> PathBuf {
        self.dir.path("record")
    }

    /// What a reboot does: the daemon stops, bpffs comes back empty (`knock-user stop`
    /// removes every pin, the kernel's record of used sequences with them), the daemon starts.
    fn reboot(&mut self) {
        let (log, clean) = self.daemon.take().expect("a daemon runs").stop();
        assert!(clean, "the daemon stops cleanly: {log:#?}");
        let output = Command::new(BINARY)
            .args(["stop", "--state-dir"])
            .arg(&self.pins)
            .output()
            .expect("knock-user runs");
        assert!(output.status.success(), "{output:?}");
        self.start();
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("a daemon runs")
    }

    fn expect_line(&self, needle: &str) {
        assert!(
            self.daemon().wait_for(needle, WAIT).is_some(),
            "no line with `{needle}` in:\n{}",
            self.daemon().log().join("\n")
        );
    }

    fn lines_with(&self, needle: &str) -> usize {
        self.daemon()
            .log()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Runs `act`, then waits for one more line with `needle` than there was before.
    fn expect_another(&self, needle: &str, act: impl FnOnce()) {
        let before = self.lines_with(needle);
        act();
        let deadline = std::time::Instant::now() + WAIT;
        while self.lines_with(needle) <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no new line with `{needle}` in:\n{}",
                self.daemon().log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Knocks `ports` at the server's IPv4 address (from the client's IPv4 address) or its
    /// IPv6 one (from the client's IPv6 address: another source).
    fn knock(&self, v6: bool, ports: &[&str]) {
        let server = if v6 {
            SERVER_V6.to_string()
        } else {
            SERVER_V4.to_string()
        };
        let output = self
            .lab
            .client
            .command(BINARY)
            .args(["knock", &server])
            .args(ports)
            .output()
            .expect("knock-user runs");
        assert!(output.status.success(), "{output:?}");
    }

    fn ssh(&self, v6: bool) -> bool {
        let server = if v6 {
            SERVER_V6.into()
        } else {
            SERVER_V4.into()
        };
        connects(&self.lab.client, server, 22, SHORT).is_ok()
    }

    fn opens(&self, v6: bool, ports: &[&str], needle: &str) {
        self.expect_another(needle, || self.knock(v6, ports));
        assert!(self.ssh(v6), "the door opened for the knocking source");
    }

    /// A used line opens nothing: the daemon no longer loads it, and were it loaded (a lost
    /// event, a race), the kernel would refuse it.
    fn refused(&self, v6: bool, ports: &[&str]) {
        self.knock(v6, ports);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!self.ssh(v6), "a used line opens nothing");
    }

    /// `knock-user check` on the site's configuration.
    fn check(&self) -> String {
        let output = Command::new(BINARY)
            .args(["check", "--config"])
            .arg(&self.config)
            .output()
            .expect("knock-user runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

/// What keeps the one-time file from being written, undone when dropped.
enum Protection {
    Immutable(PathBuf),
    ReadOnlyMount(PathBuf),
}

impl Drop for Protection {
    fn drop(&mut self) {
        let _ = match self {
            Self::Immutable(file) => Command::new("chattr").arg("-i").arg(file).output(),
            Self::ReadOnlyMount(dir) => Command::new("umount").arg(dir).output(),
        };
    }
}

fn immutable(_dir: &Path, file: &Path) -> Protection {
    let output = Command::new("chattr")
        .arg("+i")
        .arg(file)
        .output()
        .expect("chattr runs");
    assert!(output.status.success(), "chattr +i: {output:?}");
    Protection::Immutable(file.to_owned())
}

fn read_only_mount(dir: &Path, _file: &Path) -> Protection {
    for args in [
        vec![
            "--bind".to_owned(),
            dir.display().to_string(),
            dir.display().to_string(),
        ],
        vec![
            "-o".to_owned(),
            "remount,bind,ro".to_owned(),
            dir.display().to_string(),
        ],
    ] {
        let output = Command::new("mount")
            .args(&args)
            .output()
            .expect("mount runs");
        assert!(output.status.success(), "mount {args:?}: {output:?}");
    }
    Protection::ReadOnlyMount(dir.to_owned())
}

/// The line that opened the door is refused for another source and after a restart, and the
/// daemon moves on to the next line, though the file keeps every line unmarked.
fn used_lines_stay_used(tag: &str, protect: fn(&Path, &Path) -> Protection, why: &str) {
    let (mut site, _protection) = Site::new(tag, protect);
    assert!(
        site.check().contains("cannot be marked"),
        "check warns: {}",
        site.check()
    );
    site.start();
    site.expect_line("cannot be marked");

    site.opens(false, &["5001", "5002"], "198.51.100.2: once: OPEN SESAME");
    site.expect_line(why);
    site.refused(true, &["5001", "5002"]);
    site.opens(
        true,
        &["6001", "6002"],
        &format!("{CLIENT_V6}: once: OPEN SESAME"),
    );

    std::thread::sleep(Duration::from_millis(1500));
    site.restart();
    site.refused(false, &["5001", "5002"]);
    site.refused(false, &["6001", "6002"]);
    site.opens(false, &["7001", "7002"], "198.51.100.2: once: OPEN SESAME");
    assert_eq!(
        std::fs::read_to_string(&site.file).unwrap(),
        LINES,
        "the file was never written"
    );
}

#[test]
fn a_used_line_of_an_immutable_one_time_file_is_refused_also_after_a_restart() {
    used_lines_stay_used("immutable", immutable, "Operation not permitted");
}

#[test]
fn a_used_line_of_a_one_time_file_on_a_read_only_mount_is_refused_also_after_a_restart() {
    used_lines_stay_used("readonly", read_only_mount, "Read-only file system");
}

#[test]
fn a_used_line_that_could_not_be_marked_stays_used_after_a_reboot_empties_the_kernels_record() {
    let (mut site, _protection) = Site::new("reboot", immutable);
    site.start();
    site.opens(false, &["5001", "5002"], "198.51.100.2: once: OPEN SESAME");
    let record = site.record().join(format!("{}.used", site.lab.server_if));
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&record)
        .is_ok_and(|text| text.lines().any(|l| !l.starts_with('#')))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no record in {}",
            record.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    site.reboot();
    site.expect_line("1 used single-use sequence(s) restored from");
    site.refused(true, &["5001", "5002"]);
    site.opens(
        true,
        &["6001", "6002"],
        &format!("{CLIENT_V6}: once: OPEN SESAME"),
    );
    assert_eq!(
        std::fs::read_to_string(&site.file).unwrap(),
        LINES,
        "the file was never written"
    );
}
