use std::path::Path;

use super::*;
use crate::config::tests::{DEBIAN, GUIDE};

fn config(text: &str) -> Config {
    crate::config::parse(Path::new("/etc/knockd.conf"), text).expect("a valid configuration")
}

fn guide_cron() -> Vec<(PathBuf, String)> {
    vec![(
        PathBuf::from("/etc/cron.daily/clear_knockd_iptables"),
        "/sbin/iptables -F KNOCKD\n".to_owned(),
    )]
}

#[test]
fn the_guides_daily_flush_is_found_in_cron() {
    assert_eq!(
        flushes(&guide_cron()),
        [Flush {
            file: PathBuf::from("/etc/cron.daily/clear_knockd_iptables"),
            chain: "KNOCKD".to_owned(),
            every_s: Some(DAY),
        }]
    );
}

#[test]
fn crontab_lines_give_their_period_and_skip_other_commands() {
    let files = vec![
        (
            PathBuf::from("/etc/crontab"),
            "# m h dom mon dow user command\n\
             17 * * * * root cd / && run-parts --report /etc/cron.hourly\n\
             30 4 * * * root /usr/sbin/iptables -F KNOCKD >/dev/null\n"
                .to_owned(),
        ),
        (
            PathBuf::from("/etc/cron.d/knock"),
            "@hourly root ip6tables --flush KNOCK6\n*/5 * * * * root iptables -F FAST\n".to_owned(),
        ),
    ];
    let found: Vec<(String, Option<u64>)> = flushes(&files)
        .into_iter()
        .map(|f| (f.chain, f.every_s))
        .collect();
    assert_eq!(
        found,
        [
            ("KNOCKD".to_owned(), Some(DAY)),
            ("KNOCK6".to_owned(), Some(HOUR)),
            ("FAST".to_owned(), None),
        ]
    );
}

#[test]
fn the_guides_door_is_told_the_cmd_timeout_that_matches_its_flush() {
    let facts = Facts {
        flushes: flushes(&guide_cron()),
        ipv4_only: false,
    };
    let said = differences(&config(GUIDE), &facts);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(
        said[0].starts_with("[openSSH]: the start command has no Stop_Command."),
        "{}",
        said[0]
    );
    assert!(
        said[0].contains(
            "knock's gate shuts 22:tcp to new connections from them after Cmd_Timeout (10 s)"
        ),
        "{}",
        said[0]
    );
    assert!(
        said[0].ends_with(
            "/etc/cron.daily/clear_knockd_iptables flushes KNOCKD every day: Cmd_Timeout = \
             86400 keeps the door open as long as the rule"
        ),
        "{}",
        said[0]
    );
    let without_cron = differences(&config(GUIDE), &Facts::default());
    assert!(
        without_cron[0].contains("86400 for a day), or add a Stop_Command"),
        "{}",
        without_cron[0]
    );
    let with_stop = format!(
        "{GUIDE}        cmd_timeout = 60\n        stop_command = /sbin/iptables -D KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT\n"
    );
    assert!(differences(&config(&with_stop), &facts).is_empty());
}

#[test]
fn debians_open_door_is_told_that_knocking_close_does_not_shut_the_gate() {
    let said = differences(&config(DEBIAN), &Facts::default());
    let open: Vec<&String> = said.iter().filter(|l| l.starts_with("[openSSH]")).collect();
    assert_eq!(open.len(), 1, "{said:#?}");
    assert!(
        open[0].contains("Knocking [closeSSH] removes the rule but does not shut the gate"),
        "{}",
        open[0]
    );
    assert!(
        !said.iter().any(|l| l.starts_with("[closeSSH]")),
        "a door that only removes access needs no stop command: {said:#?}"
    );
    assert!(
        said.iter()
            .any(|l| l.starts_with("[openHTTPS]: the start command has no Stop_Command")),
        "{said:#?}"
    );
}

#[test]
fn a_protected_udp_service_is_cut_at_cmd_timeout_and_check_says_so() {
    let said = differences(
        &config("[wireguard]\nsequence = 7000,8000\nprotect = 51820:udp\ncmd_timeout = 30\n"),
        &Facts::default(),
    );
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(
        said[0].starts_with("[wireguard]: protects 51820:udp: UDP has no connections"),
        "{}",
        said[0]
    );
    assert!(said[0].contains("Cmd_Timeout (30 s) after the knock"));
}

#[test]
fn an_unclear_start_command_is_named_with_the_default_it_gets() {
    let said = differences(
        &config("[d]\nsequence = 7000\ncommand = /usr/local/bin/let-in %IP%\n"),
        &Facts::default(),
    );
    assert_eq!(
        said,
        [
            "[d]: knock cannot tell which ports the start command opens (`/usr/local/bin/let-in \
          %IP%`), so the door opens knock's default, 22:tcp; say which with Protect = \
          PORT[:udp],... (or `none`)"
        ]
    );
}

#[test]
fn minus_four_is_a_difference_when_doors_protect_something() {
    let facts = Facts {
        flushes: Vec::new(),
        ipv4_only: true,
    };
    let said = differences(&config("[d]\nsequence = 7000\n"), &facts);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(
        said[0].starts_with("-4: no IPv6 knock counts, but the gate still guards IPv6: new IPv6 connections to 22:tcp are dropped"),
        "{}",
        said[0]
    );
    assert!(differences(&config("[d]\nsequence = 7000\nprotect = none\n"), &facts).is_empty());
}

#[test]
fn an_ssh_session_from_outside_always_allow_is_warned_about() {
    let plain = config("[openSSH]\nsequence = 7000,8000\n");
    let warning = lockout(&plain, "203.0.113.7 51234 198.51.100.1 22").expect("a warning");
    assert!(
        warning.starts_with(
            "this SSH session comes from 203.0.113.7 to port 22, which door(s) [openSSH] guard"
        ),
        "{warning}"
    );
    assert!(warning.contains("Always_Allow = 203.0.113.7"), "{warning}");
    assert!(warning.contains("knock-user run --trial"), "{warning}");
    let allowed = config(
        "[options]\nAlways_Allow = 203.0.113.0/24, 2001:db8::/32\n[openSSH]\nsequence = 7000,8000\n",
    );
    assert_eq!(lockout(&allowed, "203.0.113.7 51234 198.51.100.1 22"), None);
    assert_eq!(lockout(&allowed, "2001:db8::7 51234 2001:db8::1 22"), None);
    assert!(lockout(&allowed, "198.51.100.9 51234 198.51.100.1 22").is_some());
    // A session to a port no door protects is not cut.
    assert_eq!(lockout(&plain, "203.0.113.7 51234 198.51.100.1 2222"), None);
    assert_eq!(lockout(&plain, "garbage"), None);
}
