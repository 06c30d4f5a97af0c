use std::path::Path;
use std::time::Duration;

use knock_common::segment::tcp_flags::{ACK, SYN};
use knock_common::{ProgressRule, ProtoPort};

use super::*;

/// The configuration of the Raspberry Pi guide, byte for byte.
pub const GUIDE: &str = "[options]
        UseSyslog

[openSSH]
        sequence    = 4438,1813,8235
        seq_timeout = 5
        command     = /sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT
        tcpflags    = syn
";

/// Debian's /etc/knockd.conf as the knockd package (0.8-2) installs it, copied verbatim into
/// the conformance suite's fixtures.
pub const DEBIAN: &str = include_str!("../../tests/lab/conformance/debian-knockd.conf");

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("/etc/knockd.conf"), text)
}

fn error_of(text: &str) -> ConfigError {
    parse_str(text).expect_err("the configuration should be rejected")
}

#[test]
fn the_guide_configuration_reads_verbatim() {
    let config = parse_str(GUIDE).unwrap();
    assert!(config.options.use_syslog);
    let [door] = config.doors.as_slice() else {
        panic!("one door expected");
    };
    assert_eq!(door.name, "openSSH");
    assert_eq!(
        door.sequence,
        [
            ProtoPort::tcp(4438),
            ProtoPort::tcp(1813),
            ProtoPort::tcp(8235)
        ]
    );
    assert_eq!(door.seq_timeout, Duration::from_secs(5));
    assert_eq!(
        door.start_command.as_deref(),
        Some("/sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT")
    );
    assert_eq!(door.tcp_flags, TcpFlags { set: SYN, clear: 0 });
    assert_eq!(door.cmd_timeout, DEFAULT_CMD_TIMEOUT);
    assert_eq!(door.protect, [ProtoPort::tcp(22)]);
    assert_eq!(door.progress, Some(ProgressRule::Strict));
}

#[test]
fn debians_default_configuration_reads_verbatim() {
    let config = parse_str(DEBIAN).unwrap();
    let names: Vec<&str> = config.doors.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["openSSH", "closeSSH", "openHTTPS"]);
    assert_eq!(config.doors[2].sequence.len(), 4);
}

#[test]
fn debians_doors_protect_what_their_commands_opened_under_knockd() {
    let config = parse_str(DEBIAN).unwrap();
    let [open_ssh, close_ssh, open_https] = config.doors.as_slice() else {
        panic!("three doors expected");
    };
    assert_eq!(
        (&open_ssh.protect[..], open_ssh.protection),
        (&[ProtoPort::tcp(22)][..], Protection::Derived)
    );
    assert_eq!(
        (&close_ssh.protect[..], close_ssh.protection),
        (&[][..], Protection::RemovesAccess),
        "knocking the close sequence opens nothing"
    );
    assert_eq!(
        (&open_https.protect[..], open_https.protection),
        (&[ProtoPort::tcp(443)][..], Protection::Derived)
    );
}

#[test]
fn protect_wins_over_the_start_command_and_unclear_commands_keep_the_default() {
    let given = parse_str(
        "[d]\nsequence = 1\nprotect = 2222\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    )
    .unwrap();
    assert_eq!(given.doors[0].protect, [ProtoPort::tcp(2222)]);
    assert_eq!(given.doors[0].protection, Protection::Given);
    let unclear = parse_str("[d]\nsequence = 1\ncommand = /usr/local/bin/let-in %IP%\n").unwrap();
    assert_eq!(unclear.doors[0].protect, [DEFAULT_PROTECTED_PORT]);
    assert_eq!(unclear.doors[0].protection, Protection::Unclear);
    let bare = parse_str("[d]\nsequence = 1\n").unwrap();
    assert_eq!(bare.doors[0].protection, Protection::Default);
}

#[test]
fn the_ipv6_command_adds_to_what_the_door_protects() {
    let config = parse_str(
        "[d]\nsequence = 1\n\
         start_command = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\
         start_command_6 = ip6tables -A INPUT -s %IP% -p udp --dport 51820 -j ACCEPT\n",
    )
    .unwrap();
    assert_eq!(
        config.doors[0].protect,
        [ProtoPort::tcp(22), ProtoPort::udp(51820)]
    );
    let mixed = parse_str(
        "[d]\nsequence = 1\n\
         start_command = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\
         start_command_6 = ip6tables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    )
    .unwrap();
    assert_eq!(mixed.doors[0].protection, Protection::Unclear);
}

#[test]
fn a_port_read_from_the_command_that_is_also_a_knock_says_where_it_came_from() {
    let error = error_of(
        "[d]\nsequence = 22,23\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    );
    assert!(
        error
            .to_string()
            .contains("(read from its start command; Protect says otherwise)"),
        "{error}"
    );
}

#[test]
fn an_empty_ipv6_command_means_none_as_in_knockd() {
    for key in ["Start_Command_6", "Command_6"] {
        let config = parse_str(&format!(
            "[d]\nsequence = 1\ncommand = up %IP%\n{key} =\nstop_command = down %IP%\nstop_command_6 =   \n"
        ))
        .unwrap();
        let door = &config.doors[0];
        let (v4, v6) = (
            "198.51.100.2".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        assert_eq!(door.start_command_for(v4), Some("up %IP%"), "{key}");
        assert_eq!(door.start_command_for(v6), None, "{key}");
        assert_eq!(door.stop_command_for(v6), None, "{key}");
    }
    // The IPv4 keys still need a value.
    let error = error_of("[d]\nsequence = 1\nstart_command =\n");
    assert_eq!(error.kind, ErrorKind::MissingValue("this key"));
}

#[test]
fn the_unknown_key_error_lists_every_key_of_knocks_own() {
    let message = error_of("[d]\nsequence = 1\nfoo = 1\n").to_string();
    let extensions: Vec<&str> = parse::extension_keys().collect();
    assert_eq!(extensions.len(), 19, "{extensions:?}");
    for key in extensions {
        assert!(message.contains(key), "{key} missing from: {message}");
        let text = format!("[options]\n{key} = x\n[d]\nsequence = 1\n");
        assert_ne!(
            parse_str(&text).map_err(|e| e.kind),
            Err(ErrorKind::UnknownKey),
            "{key} is listed but not read"
        );
    }
}

#[test]
fn two_sequence_sources_are_named_as_they_are() {
    for (keys, named) in [
        (
            "sequence = 1\none_time_sequences = f\n",
            "both Sequence and One_Time_Sequences",
        ),
        (
            "sequence = 1\nsecret_file = s\n",
            "both Sequence and Secret_File",
        ),
        (
            "sequence = 1\none_time_sequences = f\nsecret_file = s\n",
            "Sequence, One_Time_Sequences and Secret_File",
        ),
    ] {
        let message = error_of(&format!("[d]\n{keys}")).to_string();
        assert!(
            message.contains(&format!("door `d` has {named};")),
            "{message}"
        );
    }
}

#[test]
fn keys_are_case_insensitive_and_aliases_work() {
    let config = parse_str(
        "[Door]\nSEQUENCE = 1,2\nTimeout = 7\nCOMMAND = a %IP%\nCommand_6 = b %IP%\nCmd_Timeout = 3\n",
    )
    .unwrap();
    let door = &config.doors[0];
    assert_eq!(door.seq_timeout, Duration::from_secs(7));
    assert_eq!(door.cmd_timeout, Duration::from_secs(3));
    assert_eq!(door.start_command.as_deref(), Some("a %IP%"));
    assert_eq!(door.start_command_6.as_deref(), Some("b %IP%"));
}

#[test]
fn steps_carry_their_protocol() {
    let config = parse_str("[d]\nsequence = 7000:udp, 8000:TCP ,9000\n").unwrap();
    assert_eq!(
        config.doors[0].sequence,
        [
            ProtoPort::udp(7000),
            ProtoPort::tcp(8000),
            ProtoPort::tcp(9000)
        ]
    );
}

#[test]
fn tcp_flags_take_negations() {
    let config = parse_str("[d]\nsequence = 1\ntcpflags = fin, !syn,!ack\n").unwrap();
    assert_eq!(
        config.doors[0].tcp_flags,
        TcpFlags {
            set: 0x01,
            clear: SYN | ACK
        }
    );
}

#[test]
fn ipv6_commands_fall_back_to_the_ipv4_ones() {
    let config =
        parse_str("[d]\nsequence = 1\ncommand = up %IP%\nstop_command = down %IP%\n").unwrap();
    let door = &config.doors[0];
    let v6 = "2001:db8::2".parse().unwrap();
    assert_eq!(door.start_command_for(v6), Some("up %IP%"));
    assert_eq!(door.stop_command_for(v6), Some("down %IP%"));
}

#[test]
fn an_inline_comment_is_cut_from_values_but_not_from_commands() {
    let config =
        parse_str("[d]\nsequence = 1,2 # two knocks\ncommand = echo %IP% # note\n").unwrap();
    assert_eq!(config.doors[0].sequence.len(), 2);
    assert_eq!(
        config.doors[0].start_command.as_deref(),
        Some("echo %IP% # note")
    );
}

#[test]
fn extension_keys_set_protected_ports_and_the_progress_rule() {
    let config =
        parse_str("[d]\nsequence = 1\nprotect = 2222, 51820:udp\nprogress = knockd\n").unwrap();
    assert_eq!(
        config.doors[0].protect,
        [ProtoPort::tcp(2222), ProtoPort::udp(51820)]
    );
    assert_eq!(config.doors[0].progress, Some(ProgressRule::Knockd));
    let none = parse_str("[d]\nsequence = 1\nprotect = none\n").unwrap();
    assert!(none.doors[0].protect.is_empty());
}

#[test]
fn an_unknown_key_names_file_line_and_key() {
    let error = error_of("[options]\n  UseSyslog\n[d]\n  sequence = 1\n  sequense = 2\n");
    assert_eq!(error.line, 5);
    assert_eq!(error.key.as_deref(), Some("sequense"));
    assert_eq!(error.kind, ErrorKind::UnknownKey);
    assert!(
        error
            .to_string()
            .starts_with("/etc/knockd.conf:5: sequense: unknown key")
    );
}

#[test]
fn port_zero_and_ports_above_65535_are_rejected() {
    for bad in ["0", "65536", "70000", "abc", "22:sctp"] {
        let error = error_of(&format!("[d]\nsequence = 1,{bad}\n"));
        assert_eq!(
            (error.line, error.key.as_deref()),
            (2, Some("sequence")),
            "{bad}"
        );
    }
}

#[test]
fn a_sequence_holds_at_most_thirty_two_knocks() {
    let ports: Vec<String> = (1001..=1033).map(|p| p.to_string()).collect();
    let error = error_of(&format!("[d]\nsequence = {}\n", ports.join(",")));
    assert!(error.to_string().contains("at most 32"), "{error}");
    let ok: Vec<String> = (1001..=1032).map(|p| p.to_string()).collect();
    assert!(parse_str(&format!("[d]\nsequence = {}\n", ok.join(","))).is_ok());
}

#[test]
fn bad_values_are_errors_not_zero() {
    for (line, text) in [
        ("seq_timeout = five", "not a whole number"),
        ("seq_timeout = 0", "at least 1"),
        ("cmd_timeout = -1", "not a whole number"),
        ("tcpflags = syn,bogus", "not a TCP flag"),
        ("tcpflags = syn,!syn", "twice"),
        ("target = 300.1.1.1", "not an IPv4 or IPv6 address"),
        ("progress = lenient", "not a progress rule"),
    ] {
        let error = error_of(&format!("[d]\nsequence = 1\n{line}\n"));
        assert_eq!(error.line, 3, "{line}");
        assert!(error.to_string().contains(text), "{line}: {error}");
    }
}

#[test]
fn use_syslog_with_a_value_is_rejected_as_knockd_does() {
    let error = error_of("[options]\nUseSyslog = yes\n[d]\nsequence = 1\n");
    assert_eq!(error.kind, ErrorKind::UseSyslogWithValue);
}

#[test]
fn a_line_without_equals_is_rejected() {
    let error = error_of("[d]\nsequence 1,2,3\n");
    assert_eq!((error.line, error.kind), (2, ErrorKind::MissingEquals));
}

#[test]
fn a_key_set_twice_names_both_lines() {
    let error = error_of("[d]\nsequence = 1\nsequence = 2\n");
    assert_eq!((error.line, error.kind), (3, ErrorKind::Duplicate(2)));
}

#[test]
fn keys_must_sit_in_the_right_section() {
    assert_eq!(error_of("sequence = 1\n").kind, ErrorKind::OutsideSection);
    assert_eq!(
        error_of("[options]\nsequence = 1\n").kind,
        ErrorKind::DoorKeyInOptions
    );
    assert_eq!(
        error_of("[d]\nsequence = 1\nlogfile = /tmp/x\n").kind,
        ErrorKind::OptionKeyInDoor
    );
}

#[test]
fn a_door_needs_a_sequence() {
    let error = error_of("[options]\nUseSyslog\n[d]\ncommand = true\n");
    assert_eq!(
        (error.line, error.kind),
        (3, ErrorKind::NoSequence("d".into()))
    );
}

#[test]
fn a_door_name_is_used_once() {
    let error = error_of("[d]\nsequence = 1\n[d]\nsequence = 2\n");
    assert_eq!(error.kind, ErrorKind::DuplicateDoor("d".into(), 1));
}

#[test]
fn a_door_name_too_long_for_the_kernel_name_table_is_refused_on_its_line() {
    let long = "d".repeat(MAX_NAME_LEN + 1);
    let error = error_of(&format!("[options]\nUseSyslog\n[{long}]\nsequence = 1\n"));
    assert_eq!(
        (error.line, error.kind),
        (3, ErrorKind::LongName(MAX_NAME_LEN + 1))
    );
    let longest = "d".repeat(MAX_NAME_LEN);
    assert!(parse_str(&format!("[{longest}]\nsequence = 1\n")).is_ok());
}

#[test]
fn a_configuration_without_doors_is_rejected() {
    assert_eq!(error_of("[options]\nUseSyslog\n").kind, ErrorKind::NoDoors);
}

#[test]
fn sixty_four_doors_fit_and_sixty_five_do_not() {
    let doors = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[door{i}]\nsequence = {}\n", 1000 + i))
            .collect()
    };
    assert_eq!(parse_str(&doors(64)).unwrap().doors.len(), 64);
    let error = error_of(&doors(65));
    assert_eq!(error.kind, ErrorKind::TooManyDoors { max: 64 });
}

#[test]
fn a_protected_port_cannot_be_a_knock() {
    let error = error_of("[d]\nsequence = 22,23\n");
    assert_eq!(error.key.as_deref(), Some("Protect"));
    assert!(
        error.to_string().contains("port 22:tcp is protected"),
        "{error}"
    );
}

#[test]
fn an_unreadable_file_names_the_path() {
    let error = load(Path::new("/nonexistent/knockd.conf")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/knockd.conf: cannot read")
    );
}

#[test]
fn progress_in_options_is_the_default_for_doors_without_their_own() {
    let config = parse_str(
        "[options]\nprogress = knockd\n[a]\nsequence = 1\n[b]\nsequence = 2\nprogress = strict\n",
    )
    .unwrap();
    assert_eq!(config.doors[0].progress_rule(), ProgressRule::Knockd);
    assert_eq!(config.doors[1].progress_rule(), ProgressRule::Strict);
}

#[test]
fn mirror_keys_name_the_firewall_and_where_in_it() {
    use crate::config::mirror::Backend;
    let config =
        parse_str("[options]\nMirror = iptables\nMirror_Chain = KNOCK-SSH\n[a]\nsequence = 1\n")
            .unwrap();
    assert_eq!(config.options.mirror, Some(Backend::Iptables));
    assert_eq!(config.options.mirror_chain.as_deref(), Some("KNOCK-SSH"));
    let config =
        parse_str("[options]\nmirror = nftables\nmirror_table = filter\n[a]\nsequence = 1\n")
            .unwrap();
    assert_eq!(config.options.mirror, Some(Backend::Nftables));
    assert_eq!(config.options.mirror_table.as_deref(), Some("filter"));
    assert!(
        parse_str("[options]\n[a]\nsequence = 1\n")
            .unwrap()
            .options
            .mirror
            .is_none()
    );
}

#[test]
fn mirror_keys_that_cannot_work_are_refused_on_their_line() {
    for (text, line) in [
        ("[options]\nMirror = ipfw\n[a]\nsequence = 1\n", 2),
        ("[options]\nMirror_Chain = INPUT\n[a]\nsequence = 1\n", 2),
        ("[options]\nMirror_Table = a;b\n[a]\nsequence = 1\n", 2),
        (
            "[options]\nMirror = nftables\nMirror_Chain = K\n[a]\nsequence = 1\n",
            3,
        ),
        (
            "[options]\nMirror_Table = t\nMirror = iptables\n[a]\nsequence = 1\n",
            3,
        ),
        ("[a]\nsequence = 1\nMirror = iptables\n", 3),
    ] {
        assert_eq!(error_of(text).line, line, "{text}");
    }
}

#[test]
fn a_missing_default_file_points_at_the_packaged_example() {
    let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
    let error = unreadable(Path::new(DEFAULT_PATH), &missing).to_string();
    assert!(
        error.ends_with("start from /usr/share/doc/knock/examples/knockd.conf"),
        "{error}"
    );
    let elsewhere = unreadable(Path::new("/srv/knockd.conf"), &missing).to_string();
    assert!(!elsewhere.contains("examples"), "{elsewhere}");
}

#[test]
fn a_one_time_line_that_knocks_on_a_protected_port_or_the_spa_port_is_refused() {
    let dir = std::env::temp_dir().join(format!("knock-once-ports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (line, needle) in [
        ("1000,22,3000", "a port door `door` protects"),
        ("1000,62201:udp,3000", "the SPA port"),
    ] {
        std::fs::write(dir.join("once"), format!("{line}\n")).unwrap();
        std::fs::write(dir.join("keys"), "").unwrap();
        let config = dir.join("knockd.conf");
        std::fs::write(
            &config,
            "[options]\nSPA_Port = 62201\nSPA_Keys = keys\n[door]\none_time_sequences = once\nSPA = yes\n",
        )
        .unwrap();
        let error = load(&config).unwrap_err().to_string();
        assert!(error.contains(needle), "{line}: {error}");
        assert!(error.contains("once"), "the file is named: {error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_docs_name_every_key_of_knocks_own() {
    let migrating = include_str!("../../../docs/migrating-from-knockd.md");
    let readme = include_str!("../../../README.md");
    let listed = migrating
        .split("knock adds keys knockd does not know:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the migration guide lists knock's keys");
    for key in parse::extension_keys() {
        assert!(
            listed.contains(&format!("`{key}`")),
            "docs/migrating-from-knockd.md does not list `{key}`"
        );
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not describe `{key}`"
        );
    }
}
