//! Moving from knockd as an operator meets it on the command line, no root needed: `check` on
//! Debian's own knockd.conf and the guide's, the warnings about where knock differs and about
//! the SSH session it runs in, and the client's saved hosts and key files.

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use knock_common::Addr;
use knock_common::spa;

const BINARY: &str = env!("CARGO_BIN_EXE_knock-user");
const DEBIAN: &str = include_str!("../lab/conformance/debian-knockd.conf");

/// A directory of the test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("knock-host-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory");
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("a file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn knock_user(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_remove("SSH_CONNECTION")
        .env_remove("XDG_CONFIG_HOME");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("knock-user runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_on_debians_knockd_conf_says_what_each_door_opens_and_why() {
    let dir = Scratch::new("debian");
    let config = dir.file("knockd.conf", DEBIAN);
    let output = knock_user(&["check", "-c", &config.to_string_lossy()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stdout(&output);
    let door = |name: &str| {
        let start = said.find(&format!("[{name}]")).expect("the door is shown");
        let rest = &said[start..];
        let end = rest[1..].find("\n[").map_or(rest.len(), |e| e + 1);
        rest[..end].to_owned()
    };
    assert!(
        door("openSSH")
            .contains("opens:         22:tcp for 10 s (Cmd_Timeout), read from the start command"),
        "{said}"
    );
    assert!(
        door("closeSSH")
            .contains("opens:         nothing (the start command only takes access away"),
        "{said}"
    );
    assert!(
        door("openHTTPS")
            .contains("opens:         443:tcp for 10 s (Cmd_Timeout), read from the start command"),
        "{said}"
    );
    let warnings = stderr(&output);
    assert!(
        warnings.contains("warning: [openSSH]: the start command has no Stop_Command.")
            && warnings.contains("Knocking [closeSSH] removes the rule but does not shut the gate"),
        "{warnings}"
    );
}

#[test]
fn check_warns_when_the_ssh_session_it_runs_in_would_not_get_back_in() {
    let dir = Scratch::new("lockout");
    let config = dir.file("knockd.conf", "[openSSH]\nsequence = 7000,8000,9000\n");
    let mut command = Command::new(BINARY);
    let output = command
        .args(["check", "-q", "-c", &config.to_string_lossy()])
        .env("SSH_CONNECTION", "203.0.113.7 51234 198.51.100.1 22")
        .output()
        .expect("knock-user runs");
    assert!(output.status.success());
    assert!(
        stderr(&output).contains(
            "warning: this SSH session comes from 203.0.113.7 to port 22, which door(s) \
             [openSSH] guard; 203.0.113.7 is not in Always_Allow"
        ),
        "{}",
        stderr(&output)
    );
    let allowed = dir.file(
        "allowed.conf",
        "[options]\nAlways_Allow = 203.0.113.0/24\n[openSSH]\nsequence = 7000,8000,9000\n",
    );
    let output = Command::new(BINARY)
        .args(["check", "-q", "-c", &allowed.to_string_lossy()])
        .env("SSH_CONNECTION", "203.0.113.7 51234 198.51.100.1 22")
        .output()
        .expect("knock-user runs");
    assert!(
        !stderr(&output).contains("SSH session"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_minus_four_says_ipv6_stays_guarded() {
    let dir = Scratch::new("minus4");
    let config = dir.file("knockd.conf", "[openSSH]\nsequence = 7000,8000,9000\n");
    let output = knock_user(&["check", "-q", "-4", "-c", &config.to_string_lossy()], &[]);
    assert!(
        stderr(&output)
            .contains("warning: -4: no IPv6 knock counts, but the gate still guards IPv6"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn keygen_writes_a_private_file_and_never_overwrites_one() {
    let dir = Scratch::new("keygen");
    let path = dir.0.join("client.key");
    let made = knock_user(&["keygen", "-o", &path.to_string_lossy()], &[]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(stdout(&made).is_empty(), "the key goes to the file only");
    let mode = std::fs::metadata(&path)
        .expect("the key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read_to_string(&path).expect("the key");
    let again = knock_user(&["keygen", "-o", &path.to_string_lossy()], &[]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("knock does not overwrite keys"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&path).expect("the key"), first);
    let secret = dir.0.join("rotating.secret");
    let made = knock_user(
        &[
            "keygen",
            "--rotating",
            "openSSH",
            "-o",
            &secret.to_string_lossy(),
        ],
        &[],
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let mode = std::fs::metadata(&secret)
        .expect("the secret")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_saved_host_is_enough_to_send_spa() {
    let dir = Scratch::new("saved");
    let server = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    let port = server.local_addr().expect("bound").port();
    let made = knock_user(
        &[
            "keygen",
            "--save-host",
            "myserver",
            "--host",
            "127.0.0.1",
            "--door",
            "openSSH",
        ],
        &[("HOME", &dir.0)],
    );
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(
        stderr(&made).contains("`knock-user spa myserver` opens the door"),
        "{}",
        stderr(&made)
    );
    let hosts = dir.0.join(".config/knock/hosts");
    std::fs::write(
        &hosts,
        std::fs::read_to_string(&hosts).expect("the hosts file") + &format!("port     = {port}\n"),
    )
    .expect("the port");
    let sent = knock_user(&["spa", "myserver"], &[("HOME", &dir.0)]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let mut packet = [0u8; 128];
    let len = server.recv(&mut packet).expect("the SPA packet arrives");
    let packet: [u8; spa::PACKET_LEN] = packet[..len].try_into().expect("an SPA packet");
    let key = stdout(&made);
    let key = key.split_whitespace().nth(1).expect("a key");
    let key: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&key[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let key: [u8; 16] = key.try_into().expect("16 bytes");
    let source = Addr::from(std::net::IpAddr::from([127, 0, 0, 1]));
    assert!(
        spa::authentic(&key, &packet, &source),
        "signed with the saved key"
    );
    assert_eq!(
        spa::parse(&packet).expect("parses").door_tag,
        spa::door_tag("openSSH")
    );
}

#[test]
fn a_mistake_in_the_hosts_file_names_file_and_line() {
    let dir = Scratch::new("badhosts");
    std::fs::create_dir_all(dir.0.join(".config/knock")).expect("a directory");
    std::fs::write(
        dir.0.join(".config/knock/hosts"),
        "[myserver]\nhost = 127.0.0.1\ndoor = openSSH\nsauce = auto\n",
    )
    .expect("a hosts file");
    let output = knock_user(&["spa", "myserver"], &[("HOME", &dir.0)]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "{}:4: unknown key `sauce`",
            dir.0.join(".config/knock/hosts").display()
        )),
        "{}",
        stderr(&output)
    );
    std::fs::write(
        dir.0.join(".config/knock/hosts"),
        "[myserver]\nhost = 127.0.0.1\ndoor = openSSH\n",
    )
    .expect("a hosts file");
    let unknown = knock_user(&["spa", "elsewhere"], &[("HOME", &dir.0)]);
    assert!(
        stderr(&unknown).contains("`elsewhere` is no saved host"),
        "{}",
        stderr(&unknown)
    );
}
