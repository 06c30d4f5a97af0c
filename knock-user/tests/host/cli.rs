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

/// Sends `knock-user spa ARGS 127.0.0.1 openSSH` to a listener on loopback and returns the
/// datagram it got.
fn spa_datagram(key_file: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let key_file = key_file.to_string_lossy();
    let mut all = vec!["spa", "--key-file", &key_file, "--port", &port];
    all.extend(args);
    all.extend(["127.0.0.1", "openSSH"]);
    let output = knock_user(&all);
    assert!(output.status.success(), "{output:?}");
    let mut buf = [0u8; 128];
    let length = listener.recv(&mut buf).unwrap();
    buf[..length].to_vec()
}

#[test]
fn spa_with_a_fixed_time_and_nonce_sends_the_same_packet_every_time() {
    use knock_common::spa;
    let dir = std::env::temp_dir().join(format!("knock-cli-spa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("spa.key");
    std::fs::write(&key_file, "7 000102030405060708090a0b0c0d0e0f test\n").unwrap();
    let fixed = [
        "--at",
        "4102444800",
        "--nonce",
        "6b6e6f636b2d70692d636865636b2121",
    ];
    let first = spa_datagram(&key_file, &fixed);
    let second = spa_datagram(&key_file, &fixed);
    let fresh = spa_datagram(&key_file, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(first, second);
    let packet: [u8; spa::PACKET_LEN] = first.as_slice().try_into().unwrap();
    let request = spa::parse(&packet).unwrap();
    assert_eq!(request.timestamp, 4_102_444_800, "past 2038");
    assert_eq!(&request.nonce, b"knock-pi-check!!");
    let key = *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f";
    let source = knock_common::Addr::from(std::net::Ipv4Addr::LOCALHOST);
    assert!(spa::authentic(&key, &packet, &source));
    assert_ne!(
        fresh[24..40],
        first[24..40],
        "without --nonce the nonce is random"
    );
}

#[test]
fn spa_refuses_a_nonce_that_is_not_32_hex_digits() {
    let output = knock_user(&[
        "spa",
        "--nonce",
        "00ff",
        "--at",
        "1",
        "127.0.0.1",
        "openSSH",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("`00ff` is not 32 hex digits"),
        "{output:?}"
    );
}

#[test]
fn a_rotating_knock_at_a_given_time_knocks_the_sequence_of_that_period() {
    let dir = std::env::temp_dir().join(format!("knock-cli-rotating-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("openSSH.secret");
    let secret = knock_user::cli::keygen::rotating_secret("openSSH", [22].into()).unwrap();
    std::fs::write(&secret_file, secret.to_file()).unwrap();
    let path = secret_file.to_string_lossy();
    let knocked = |at: u64| {
        let at = at.to_string();
        let args = [
            "knock",
            "-v",
            "--secret-file",
            &path,
            "--at",
            &at,
            "127.0.0.1",
        ];
        let output = knock_user(&args);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let expected = |at: u64| -> String {
        secret
            .sequence(secret.period_at(at))
            .iter()
            .map(|p| format!("hitting {} 127.0.0.1:{}\n", p.proto_name(), p.port))
            .collect()
    };
    let at = 4_102_444_800;
    let later = at + 10 * secret.period_s;
    let (first, again, other) = (knocked(at), knocked(at), knocked(later));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(first, expected(at));
    assert_eq!(again, first, "the same period, the same sequence");
    assert_eq!(other, expected(later));
    assert_ne!(other, first);
}

#[test]
fn a_knock_time_needs_a_secret_file() {
    let output = knock_user(&["knock", "--at", "1", "127.0.0.1", "4438"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--secret-file"));
}
