//! The command line as an operator meets it: `check`, errors, and the client's refusals. No root
//! needed.

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_knock-user");

fn knock_user(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("knock-user runs")
}

fn with_config(text: &str, f: impl FnOnce(&str)) {
    let dir = std::env::temp_dir().join(format!("knock-cli-{}-{}", std::process::id(), text.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("knockd.conf");
    std::fs::write(&path, text).unwrap();
    f(&path.to_string_lossy());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_prints_the_effective_doors_of_the_guide_configuration() {
    with_config(
        "[options]\n        UseSyslog\n\n[openSSH]\n        sequence    = 4438,1813,8235\n        seq_timeout = 5\n        command     = /sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT\n        tcpflags    = syn\n",
        |path| {
            let output = knock_user(&["check", "--config", path]);
            assert!(output.status.success());
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(text.contains("[openSSH]"), "{text}");
            assert!(
                text.contains("sequence:      4438:tcp, 1813:tcp, 8235:tcp"),
                "{text}"
            );
            assert!(text.contains("opens:         22:tcp for 10 s"), "{text}");
            assert!(text.contains("progress:      strict"), "{text}");
        },
    );
}

#[test]
fn a_bad_configuration_fails_with_file_line_and_key() {
    with_config("[openSSH]\nsequence = 4438,0,8235\n", |path| {
        for command in ["check", "run"] {
            let output = knock_user(&[command, "--config", path]);
            assert_eq!(output.status.code(), Some(1), "{command}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains(&format!("{path}:2: sequence: port 0 is out of range")),
                "{command}: {stderr}"
            );
        }
    });
}

#[test]
fn a_missing_configuration_is_named() {
    let output = knock_user(&["check", "--config", "/nonexistent/knockd.conf"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("/nonexistent/knockd.conf: cannot read")
    );
}

#[test]
fn the_client_refuses_a_bad_port_before_sending_anything() {
    let output = knock_user(&["knock", "198.51.100.1", "4438", "99999"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`99999` is not a port"));
}

#[test]
fn the_client_names_a_host_it_cannot_resolve() {
    let output = knock_user(&["knock", "no-such-host.invalid", "4438"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot resolve `no-such-host.invalid`")
    );
}

#[test]
fn the_client_refuses_a_family_the_address_lacks() {
    let output = knock_user(&["knock", "-6", "198.51.100.1", "4438"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no IPv6 address"));
}

#[test]
fn verbose_knocks_print_each_knock_as_knock_does() {
    let output = knock_user(&["knock", "-v", "127.0.0.1", "4438", "1813:udp"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hitting tcp 127.0.0.1:4438\nhitting udp 127.0.0.1:1813\n"
    );
}

#[test]
fn invoked_as_knockd_it_takes_knockds_command_line() {
    let dir = std::env::temp_dir().join(format!("knock-argv0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let knockd = dir.join("knockd");
    let _ = std::fs::remove_file(&knockd);
    std::os::unix::fs::symlink(BINARY, &knockd).unwrap();
    let version = Command::new(&knockd).arg("-V").output().unwrap();
    let help = Command::new(&knockd).arg("--help").output().unwrap();
    let missing = Command::new(&knockd)
        .args(["-d", "-i", "eth9", "-c", "/nonexistent/knockd.conf"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("knockd "));
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--interface",
        "--config",
        "--daemon",
        "--debug",
        "--lookup",
        "--only-ip-v4",
        "--verbose",
        "--pidfile",
        "--logfile",
        "--version",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/knockd.conf: cannot read")
    );
}

#[test]
fn check_warns_about_a_knock_port_the_host_serves() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    with_config(&format!("[web]\nsequence = {port},1813\n"), |path| {
        let output = knock_user(&["check", "--config", path]);
        assert!(output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "knock port {port}:tcp is also a port this host serves"
            )),
            "{stderr}"
        );
    });
}
