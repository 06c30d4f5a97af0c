//! Firewall mirroring end to end: the daemon guards a veth in a network namespace with
//! `--mirror iptables` or `--mirror nftables`, a client knocks, and the server namespace's own
//! firewall (never the host's) shows exactly one rule or set element per source while the door
//! is open. Needs root: `cargo xtask test` runs it.
//!
//! Debian's `iptables` is the nf_tables variant (iptables 1.8.9 (nf_tables)); the tests use
//! whichever `iptables`, `ip6tables` and `nft` are on the PATH.
use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BINARY, SHORT, Scene, scene_with};
use knock_lab::{Netns, SERVER_V4, connects};
use knock_user::journal::Journal;
use knock_user::mirror::{self, Target};

/// A door that stays open for three seconds.
const DOOR: &str = "[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 3\n";
const KNOCK_V4: [&str; 4] = ["198.51.100.1", "4438", "1813", "8235"];
const KNOCK_V6: [&str; 4] = ["2001:db8::1", "4438", "1813", "8235"];
const RULE_V4: &str = "-A KNOCKD -s 198.51.100.2/32 -p tcp -m tcp --dport 22 -m comment --comment \"knock:openSSH\" -j ACCEPT";
const RULE_V6: &str = "-A KNOCKD -s 2001:db8::2/128 -p tcp -m tcp --dport 22 -m comment --comment \"knock:openSSH\" -j ACCEPT";

fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    assert!(waited(timeout, done), "timed out waiting until {what}");
}

fn waited(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Like `wait_until`, showing the daemon's log when it times out.
fn wait_in(s: &Scene, what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    assert!(
        waited(timeout, done),
        "timed out waiting until {what}: {:#?}",
        s.daemon().log()
    );
}

fn run_in(ns: &Netns, program: &str, args: &[&str]) -> String {
    let output = ns
        .command(program)
        .args(args)
        .output()
        .expect("the command runs");
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Knock's rules (marked `knock:`) in a chain of the server's iptables or ip6tables.
fn knock_rules(s: &Scene, program: &str, chain: &str) -> Vec<String> {
    run_in(&s.lab.server, program, &["-w", "-S", chain])
        .lines()
        .filter(|l| l.contains("--comment \"knock:") || l.contains("--comment knock:"))
        .map(str::to_owned)
        .collect()
}

/// The elements of a set of the server's nftables, each as `key` and its time left.
fn elements(ns: &Netns, table: &str, set: &str) -> Vec<(String, Duration)> {
    let listed = run_in(ns, "nft", &["list", "set", "inet", table, set]);
    let Some((_, rest)) = listed.split_once("elements = {") else {
        return Vec::new();
    };
    let body = rest.split('}').next().unwrap_or("");
    body.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|element| {
            let (key, times) = element.split_once(" timeout ").expect("elements time out");
            let left = times.split_once("expires ").map_or("0s", |(_, e)| e.trim());
            (key.to_owned(), nft_time(left))
        })
        .collect()
}

/// nft's `1m2s876ms`.
fn nft_time(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().unwrap_or(0);
        number.clear();
        total += match c {
            'd' => Duration::from_secs(n * 86_400),
            'h' => Duration::from_secs(n * 3600),
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                Duration::from_millis(n)
            }
            'm' => Duration::from_secs(n * 60),
            's' => Duration::from_secs(n),
            _ => Duration::ZERO,
        };
    }
    total
}

fn opened(s: &Scene) {
    assert!(
        s.opened("OPEN SESAME"),
        "the door opens: {:#?}",
        s.daemon().log()
    );
}

#[test]
fn several_protected_ports_make_one_rule_per_protocol() {
    let s = scene_with(
        "[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 3\nprotect = 22, 2222, 53:udp\n",
        &["--mirror", "iptables"],
    );
    s.our_knock(&KNOCK_V4);
    opened(&s);
    wait_until("both rules are in KNOCKD", Duration::from_secs(5), || {
        knock_rules(&s, "iptables", "KNOCKD").len() == 2
    });
    assert_eq!(
        knock_rules(&s, "iptables", "KNOCKD"),
        [
            "-A KNOCKD -s 198.51.100.2/32 -p tcp -m multiport --dports 22,2222 -m comment --comment \"knock:openSSH\" -j ACCEPT",
            "-A KNOCKD -s 198.51.100.2/32 -p udp -m udp --dport 53 -m comment --comment \"knock:openSSH\" -j ACCEPT",
        ]
    );
    wait_until("the rules are gone", Duration::from_secs(8), || {
        knock_rules(&s, "iptables", "KNOCKD").is_empty()
    });
}

#[test]
fn a_missing_chain_is_made_and_the_log_says_to_jump_to_it() {
    let s = scene_with(DOOR, &["--mirror", "iptables", "--mirror-chain", "KNOCK2"]);
    let log = s.daemon().log();
    for program in ["iptables", "ip6tables"] {
        let made = format!("knock: mirror: created the {program} chain KNOCK2");
        assert!(log.iter().any(|l| l.starts_with(&made)), "{log:#?}");
        assert!(
            log.iter()
                .any(|l| l.contains(&format!("{program} -I INPUT -j KNOCK2"))),
            "{log:#?}"
        );
        run_in(&s.lab.server, program, &["-w", "-S", "KNOCK2"]);
    }
    s.our_knock(&KNOCK_V4);
    opened(&s);
    wait_until("the rule is in KNOCK2", Duration::from_secs(5), || {
        knock_rules(&s, "iptables", "KNOCK2").len() == 1
    });
}

/// Where a backend mirrors a source of one family, as the server's firewall lists it.
fn mirrored(s: &Scene, backend: &str, table: &str, v6: bool) -> Vec<String> {
    match (backend, v6) {
        ("iptables", false) => knock_rules(s, "iptables", "KNOCKD"),
        ("iptables", true) => knock_rules(s, "ip6tables", "KNOCKD"),
        (_, v6) => elements(&s.lab.server, table, if v6 { "knock6" } else { "knock4" })
            .into_iter()
            .map(|(key, _)| key)
            .collect(),
    }
}

/// One row of the backend x family table: what the firewall holds while the door is open, and
/// what else the row checks meanwhile and after the door has closed.
struct Mirroring {
    backend: &'static str,
    v6: bool,
    entry: &'static str,
    while_open: fn(&Scene),
    after: fn(&Scene),
}

#[test]
fn each_backend_mirrors_each_family_exactly_while_the_door_is_open() {
    let nothing = |_: &Scene| {};
    for row in [
        Mirroring {
            backend: "iptables",
            v6: false,
            entry: RULE_V4,
            while_open: iptables_v4_while_open,
            after: iptables_v4_after,
        },
        Mirroring {
            backend: "iptables",
            v6: true,
            entry: RULE_V6,
            while_open: nothing,
            after: nothing,
        },
        Mirroring {
            backend: "nftables",
            v6: false,
            entry: "198.51.100.2 . tcp . 22",
            while_open: nftables_v4_while_open,
            after: nftables_v4_after,
        },
        Mirroring {
            backend: "nftables",
            v6: true,
            entry: "2001:db8::2 . tcp . 22",
            while_open: nothing,
            after: nothing,
        },
    ] {
        let (backend, v6) = (row.backend, row.v6);
        let s = scene_with(DOOR, &["--mirror", backend]);
        s.our_knock(if v6 { &KNOCK_V6 } else { &KNOCK_V4 });
        opened(&s);
        wait_in(&s, "the source is mirrored", Duration::from_secs(5), || {
            !mirrored(&s, backend, "knock", v6).is_empty()
        });
        assert_eq!(
            mirrored(&s, backend, "knock", v6),
            [row.entry],
            "{backend}, IPv6 {v6}"
        );
        assert!(
            mirrored(&s, backend, "knock", !v6).is_empty(),
            "{backend}: nothing in the other family's"
        );
        (row.while_open)(&s);
        wait_in(
            &s,
            "the door's entry is gone",
            Duration::from_secs(8),
            || mirrored(&s, backend, "knock", v6).is_empty(),
        );
        (row.after)(&s);
    }
}

/// The same source knocking again while the door is open (knockd issues #14 and #70).
fn iptables_v4_while_open(s: &Scene) {
    s.our_knock(&KNOCK_V4);
    assert!(s.opened("already open"), "{:#?}", s.daemon().log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(knock_rules(s, "iptables", "KNOCKD"), [RULE_V4]);
}

fn iptables_v4_after(s: &Scene) {
    // The line follows the command, so it may arrive a moment after the rule went.
    assert!(
        s.daemon()
            .wait_for(
                "knock: mirror: iptables -w 10 -D KNOCKD -s 198.51.100.2/32",
                Duration::from_secs(2)
            )
            .is_some(),
        "{:#?}",
        s.daemon().log()
    );
    assert!(
        !s.daemon().log().iter().any(|l| l.contains("failed")),
        "{:#?}",
        s.daemon().log()
    );
}

/// The element times out with the door, and moves when the door stays open longer.
fn nftables_v4_while_open(s: &Scene) {
    assert!(
        s.daemon()
            .log()
            .iter()
            .any(|l| l.contains("sets knock4 and knock6 of table inet knock")),
        "{:#?}",
        s.daemon().log()
    );
    let first = elements(&s.lab.server, "knock", "knock4");
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].1 > Duration::from_millis(1500) && first[0].1 <= Duration::from_secs(3),
        "{first:?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Knocking again keeps the door open longer: the element's time moves with it.
    s.our_knock(&KNOCK_V4);
    assert!(s.opened("already open"), "{:#?}", s.daemon().log());
    wait_until("the element's time moves", Duration::from_secs(3), || {
        elements(&s.lab.server, "knock", "knock4")
            .first()
            .is_some_and(|(_, left)| *left > Duration::from_millis(2000))
    });
    assert_eq!(elements(&s.lab.server, "knock", "knock4").len(), 1);
    assert!(elements(&s.lab.server, "knock", "knock6").is_empty());
}

fn nftables_v4_after(s: &Scene) {
    s.daemon()
        .wait_for("delete element inet knock knock4", Duration::from_secs(3))
        .expect("the daemon removes the element when the door closes");
    assert!(
        !s.daemon().log().iter().any(|l| l.contains("failed")),
        "{:#?}",
        s.daemon().log()
    );
}

/// The operator's own ruleset: default drop, sets declared as knock declares them, and a rule
/// that admits their members. Sets are visible only inside their table, hence
/// `--mirror-table filter`.
const OPERATOR_NFT: &str = "table inet filter {
    set knock4 { type ipv4_addr . inet_proto . inet_service; flags timeout; }
    set knock6 { type ipv6_addr . inet_proto . inet_service; flags timeout; }
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif lo accept
        ip saddr . meta l4proto . th dport @knock4 accept
        ip6 saddr . meta l4proto . th dport @knock6 accept
    }
}
";

fn operator_iptables(s: &Scene) {
    for rule in [
        &[
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ][..],
        &["-A", "INPUT", "-j", "KNOCKD"],
        &["-P", "INPUT", "DROP"],
    ] {
        run_in(&s.lab.server, "iptables", rule);
    }
}

fn operator_nftables(s: &Scene) {
    let mut load = s.lab.server.command("nft");
    load.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = load.spawn().expect("nft runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), OPERATOR_NFT.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_default_drop_input_lets_the_knocker_in_through_each_backend() {
    for (args, table, operator) in [
        (
            &["--mirror", "iptables"][..],
            "knock",
            operator_iptables as fn(&Scene),
        ),
        (
            &["--mirror", "nftables", "--mirror-table", "filter"],
            "filter",
            operator_nftables,
        ),
    ] {
        let backend = args[1];
        let s = scene_with(DOOR, args);
        operator(&s);
        s.our_knock(&KNOCK_V4);
        opened(&s);
        wait_until("the source is mirrored", Duration::from_secs(5), || {
            !mirrored(&s, backend, table, false).is_empty()
        });
        connects(&s.lab.client, SERVER_V4.into(), 22, SHORT).unwrap_or_else(|e| {
            panic!(
                "{backend}: port 22 accepts: the gate and the firewall both let the source in: {e}"
            )
        });
        wait_until("the door closes", Duration::from_secs(8), || {
            mirrored(&s, backend, table, false).is_empty()
        });
        assert!(s.ssh().is_err(), "{backend}");
    }
}

/// Stops the scene's daemon with SIGINT and starts another on its interface, as a restart
/// would, with `extra` after the scene's arguments.
fn restart(s: &mut Scene, extra: &[&str]) {
    // Reaped by `stop_daemon`, so the next daemon does not take a zombie for a running daemon.
    let (log, _) = s.stop_daemon();
    s.start_daemon(extra)
        .unwrap_or_else(|e| panic!("the daemon starts again: {e}\n{log:#?}"));
}

fn add_rule(ns: &Netns, source: &str, comment: Option<&str>) {
    let mut args = vec![
        "-w", "-A", "KNOCKD", "-s", source, "-p", "tcp", "--dport", "22",
    ];
    if let Some(comment) = comment {
        args.extend(["-m", "comment", "--comment", comment]);
    }
    args.extend(["-j", "ACCEPT"]);
    run_in(ns, "iptables", &args);
}

#[test]
fn a_starting_daemon_removes_knocks_rules_that_no_open_door_holds() {
    let mut s = scene_with(DOOR, &[]);
    // Left by a daemon killed while a door was open, and the operator's own rule.
    add_rule(&s.lab.server, "198.51.100.9", Some("knock:openSSH"));
    add_rule(&s.lab.server, "198.51.100.7", None);
    restart(&mut s, &["--mirror", "iptables"]);
    wait_until("the stale rule is gone", Duration::from_secs(5), || {
        knock_rules(&s, "iptables", "KNOCKD").is_empty()
    });
    assert!(
        run_in(&s.lab.server, "iptables", &["-w", "-S", "KNOCKD"])
            .contains("-A KNOCKD -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -j ACCEPT")
    );
    assert!(
        s.daemon()
            .wait_for(
                "knock: mirror: iptables -w 10 -D KNOCKD 1 (was: -A KNOCKD -s 198.51.100.9/32",
                Duration::from_secs(2)
            )
            .is_some(),
        "{:#?}",
        s.daemon().log()
    );
}

#[test]
fn a_restarted_daemon_keeps_the_rule_of_a_door_it_takes_over() {
    // The state is pinned in a bpffs of the scene's own, which every namespace sees.
    let mut s = Scene::build("[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 6\n")
        .chain("KNOCKD")
        .pinned()
        .args(&["--mirror", "iptables"])
        .start(std::path::Path::new(BINARY))
        .expect("the daemon starts");
    s.our_knock(&KNOCK_V4);
    opened(&s);
    wait_until("the rule is in KNOCKD", Duration::from_secs(5), || {
        !knock_rules(&s, "iptables", "KNOCKD").is_empty()
    });
    add_rule(&s.lab.server, "198.51.100.9", Some("knock:openSSH"));
    // SIGINT leaves the door open for the next daemon, which adopts it.
    restart(&mut s, &[]);
    wait_in(&s, "the stale rule is gone", Duration::from_secs(5), || {
        knock_rules(&s, "iptables", "KNOCKD").len() == 1
    });
    assert_eq!(
        knock_rules(&s, "iptables", "KNOCKD"),
        [RULE_V4],
        "{:#?}",
        s.daemon().log()
    );
    wait_in(
        &s,
        "the adopted door's rule goes when it closes",
        Duration::from_secs(10),
        || knock_rules(&s, "iptables", "KNOCKD").is_empty(),
    );
}

#[test]
fn knock_user_stop_takes_the_rules_and_elements_of_open_doors_away() {
    for (backend, gone) in [
        (
            "iptables",
            (|s: &Scene| knock_rules(s, "iptables", "KNOCKD").is_empty()) as fn(&Scene) -> bool,
        ),
        ("nftables", |s: &Scene| {
            elements(&s.lab.server, "knock", "knock4").is_empty()
        }),
    ] {
        let s = Scene::build("[openSSH]\nsequence = 4438,1813,8235\ncmd_timeout = 60\n")
            .chain("KNOCKD")
            .pinned()
            .args(&["--mirror", backend])
            .start(std::path::Path::new(BINARY))
            .expect("the daemon starts");
        let state = s
            .state_dir()
            .expect("pinned")
            .to_string_lossy()
            .into_owned();
        s.our_knock(&KNOCK_V4);
        opened(&s);
        wait_in(&s, "the door is mirrored", Duration::from_secs(5), || {
            !gone(&s)
        });
        let output = std::process::Command::new(BINARY)
            .args([
                "stop",
                "--state-dir",
                &state,
                "--interface",
                &s.lab.server_if,
            ])
            .output()
            .expect("knock-user stop runs");
        assert!(output.status.success(), "{output:?}");
        wait_in(&s, "the mirror is emptied", Duration::from_secs(5), || {
            gone(&s)
        });
    }
}

#[test]
fn clear_removes_what_knock_added_and_nothing_else() {
    let ns = Netns::create(&format!("knock-mirror-{}", std::process::id())).unwrap();
    let journal = Arc::new(Journal::stderr_only(false));
    let iptables = Target::Iptables {
        chain: "KNOCKD".into(),
    };
    let nftables = Target::Nftables {
        table: "knock".into(),
    };
    // Nothing there yet: clearing finds nothing and makes nothing.
    let (ipt, nft, j) = (iptables.clone(), nftables.clone(), Arc::clone(&journal));
    let cleared = ns
        .enter(move || {
            (
                mirror::clear(&ipt, &j).unwrap(),
                mirror::clear(&nft, &j).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(cleared, (0, 0));
    let (ipt, nft, j) = (iptables.clone(), nftables.clone(), Arc::clone(&journal));
    ns.enter(move || {
        ipt.set_up(&j).unwrap();
        nft.set_up(&j).unwrap();
    })
    .unwrap();
    let add = |program: &str, source: &str, comment: Option<&str>| {
        let mut args = vec![
            "-w", "-A", "KNOCKD", "-s", source, "-p", "tcp", "--dport", "22",
        ];
        if let Some(comment) = comment {
            args.extend(["-m", "comment", "--comment", comment]);
        }
        args.extend(["-j", "ACCEPT"]);
        run_in(&ns, program, &args);
    };
    add("iptables", "198.51.100.2", Some("knock:openSSH"));
    add("iptables", "198.51.100.7", None);
    add("iptables", "198.51.100.3", Some("knock:open SSH"));
    add("iptables", "198.51.100.8", Some("operator's own"));
    add("ip6tables", "2001:db8::2", Some("knock:openSSH"));
    run_in(
        &ns,
        "nft",
        &[
            "add element inet knock knock4 { 198.51.100.2 . tcp . 22 timeout 1h }; \
           add element inet knock knock6 { 2001:db8::2 . tcp . 22 timeout 1h, 2001:db8::2 . udp . 53 timeout 1h }",
        ],
    );
    let (ipt, nft, j) = (iptables.clone(), nftables.clone(), Arc::clone(&journal));
    let cleared = ns
        .enter(move || {
            (
                mirror::clear(&ipt, &j).unwrap(),
                mirror::clear(&nft, &j).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(cleared, (3, 3));
    assert_eq!(
        run_in(&ns, "iptables", &["-w", "-S", "KNOCKD"]),
        "-N KNOCKD\n\
         -A KNOCKD -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -j ACCEPT\n\
         -A KNOCKD -s 198.51.100.8/32 -p tcp -m tcp --dport 22 -m comment --comment \"operator\\'s own\" -j ACCEPT\n"
    );
    assert_eq!(
        run_in(&ns, "ip6tables", &["-w", "-S", "KNOCKD"]),
        "-N KNOCKD\n"
    );
    assert!(elements(&ns, "knock", "knock4").is_empty());
    assert!(elements(&ns, "knock", "knock6").is_empty());
}
