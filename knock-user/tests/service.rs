//! knock.service (packaging/knock.service) holds what it promises: the daemon guards a lab and
//! opens a door with exactly the unit's capabilities, read from the unit file so the two cannot
//! drift apart; each of those capabilities is needed; every system call the daemon and its
//! commands make passes the unit's filter; and systemd accepts the unit. Needs root: `cargo
//! xtask test` runs it.
#![cfg(feature = "privileged-tests")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BINARY, SHORT, TempDir};
use knock_lab::{Daemon, Lab, Listener, SERVER_V4, connects};

const UNIT: &str = include_str!("../../packaging/knock.service");
const WAIT: Duration = Duration::from_secs(5);

/// Every value of `key` in the unit, in order (a key may be given more than once).
fn values(key: &str) -> Vec<String> {
    UNIT.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_owned())
        .collect()
}

fn words(key: &str) -> Vec<String> {
    values(key)
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// The capabilities knock.service leaves the daemon.
fn unit_capabilities() -> Vec<String> {
    let bounding = words("CapabilityBoundingSet");
    assert!(
        !bounding.is_empty(),
        "the unit sets no CapabilityBoundingSet"
    );
    bounding
}

/// A capability's number, for reading /proc/PID/status (linux/capability.h).
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("{other}: add its number to cap_number"),
    }
}

/// `-all,+bpf,+net_admin`: setpriv's spelling of a capability set.
fn setpriv_set(caps: &[String]) -> String {
    let mut set = "-all".to_owned();
    for cap in caps {
        set.push_str(",+");
        set.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    set
}

/// `setpriv` arguments that leave exactly `caps`, as systemd does for root with
/// CapabilityBoundingSet= and AmbientCapabilities=, and NoNewPrivileges=.
fn setpriv_args(caps: &[String]) -> Vec<String> {
    let set = setpriv_set(caps);
    let mut args = vec![
        format!("--bounding-set={set}"),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
    ];
    if values("NoNewPrivileges").iter().any(|v| v == "yes") {
        args.insert(0, "--no-new-privs".to_owned());
    }
    args
}

/// A bpffs of the test's own, mounted as systemd mounts /sys/fs/bpf at boot: `ip netns exec`
/// remounts /sys, and the unit gives no CAP_SYS_ADMIN to mount one.
struct BpfFs(PathBuf);

impl BpfFs {
    fn mount(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("knock-service-bpffs-{tag}-{}", std::process::id()));
        let _ = Command::new("umount").arg("-l").arg(&path).output();
        std::fs::create_dir_all(&path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "mount -t bpf: {output:?}");
        Self(path)
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Whether `knock-user run` pins its state (and so takes --state-dir).
fn pins_state() -> bool {
    let help = Command::new(BINARY)
        .args(["run", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&help.stdout).contains("--state-dir")
}

/// A lab whose server runs `knock-user run` under `wrapper` (setpriv, strace), with a door whose
/// Start_Command is `command`.
struct Scene {
    daemon: Option<Daemon>,
    listener: Listener,
    lab: Lab,
    dir: TempDir,
    bpffs: Option<BpfFs>,
}

const SEQUENCE: [&str; 4] = ["198.51.100.1", "4438", "1813", "8235"];

fn config(command: &str) -> String {
    format!("[openSSH]\nsequence = 4438,1813,8235\nseq_timeout = 5\ncommand = {command}\n")
}

impl Scene {
    fn new(tag: &str) -> Self {
        let lab = Lab::new().expect("the lab builds");
        for iptables in ["iptables", "iptables-legacy"] {
            let _ = lab.server.command(iptables).args(["-N", "KNOCKD"]).output();
        }
        let listener = Listener::start(&lab.server, 22).expect("a listener on port 22");
        let dir = TempDir::new(&format!("service-{tag}-{}", lab.server_if));
        let bpffs = pins_state().then(|| BpfFs::mount(&lab.server_if));
        Self {
            daemon: None,
            listener,
            lab,
            dir,
            bpffs,
        }
    }

    /// `knock-user run` for this lab, after `wrapper`.
    fn command(&self, wrapper: &[String], command: &str) -> Command {
        let path = self.dir.path("knockd.conf");
        std::fs::write(&path, config(command)).unwrap();
        let mut run = self.lab.server.command(&wrapper[0]);
        run.args(&wrapper[1..]).arg(BINARY).arg("run");
        run.arg("--config").arg(&path);
        run.args(["--interface", &self.lab.server_if, "-v"]);
        if let Some(bpffs) = &self.bpffs {
            run.arg("--state-dir").arg(bpffs.0.join("knock"));
        }
        run
    }

    fn start(&mut self, wrapper: &[String], command: &str) -> std::io::Result<()> {
        self.daemon = Some(Daemon::spawn(self.command(wrapper, command))?);
        Ok(())
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("a daemon runs")
    }

    fn knock(&self) {
        let output = self
            .lab
            .client
            .command(BINARY)
            .arg("knock")
            .args(SEQUENCE)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }

    fn ssh(&self) -> std::io::Result<std::net::TcpStream> {
        connects(&self.lab.client, SERVER_V4.into(), 22, SHORT)
    }

    fn rules(&self, iptables: &str) -> String {
        let output = self
            .lab
            .server
            .command(iptables)
            .args(["-S", "KNOCKD"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

const RULE: &str = "-A KNOCKD -s 198.51.100.2/32 -p tcp -m tcp --dport 22 -j ACCEPT";

fn iptables_command(iptables: &str) -> String {
    format!("/usr/sbin/{iptables} -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT")
}

fn has_legacy_iptables() -> bool {
    Path::new("/usr/sbin/iptables-legacy").exists()
}

/// The effective capabilities of a process, as a bit mask.
fn effective(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn the_unit_grants_what_it_bounds_and_hides_nothing_of_the_hosts_bpffs() {
    let mut bounding = unit_capabilities();
    let mut ambient = words("AmbientCapabilities");
    bounding.sort();
    ambient.sort();
    assert_eq!(bounding, ambient);
    assert!(!bounding.iter().any(|c| c == "CAP_SYS_ADMIN"));
    assert_eq!(values("NoNewPrivileges"), ["yes"]);
    assert!(values("User").is_empty(), "the daemon runs as root");
    for hiding in [
        "PrivateMounts",
        "PrivateBPF",
        "PrivateNetwork",
        "ProcSubset",
    ] {
        assert!(
            values(hiding).is_empty(),
            "{hiding}= would hide the host's pins, interfaces or /proc/net"
        );
    }
    // Seen under Debian 12's systemd 252 (cargo xtask system): ProtectKernelTunables=yes makes
    // /sys/fs/bpf read-only and wins over ReadWritePaths=/sys/fs/bpf, so the daemon could pin
    // nothing. The unit spells out what ProtectKernelTunables= does instead, with the pins
    // writable.
    assert!(
        !values("ProtectKernelTunables").iter().any(|v| v == "yes"),
        "ProtectKernelTunables=yes makes /sys/fs/bpf read-only whatever ReadWritePaths= says"
    );
    assert!(
        words("ReadWritePaths").iter().any(|p| p == "/sys/fs/bpf"),
        "the pins need /sys/fs/bpf writable"
    );
    let read_only = words("ReadOnlyPaths");
    // Not /sys itself: under Debian 13's systemd 257 that entry is dropped and /sys stays
    // writable (cargo xtask system --debian 13 showed it); the directories under it hold.
    assert!(
        !read_only.iter().any(|p| p == "/sys"),
        "ReadOnlyPaths=/sys is dropped by systemd 257: name the directories under /sys"
    );
    for tunables in [
        "/sys/kernel",
        "/sys/module",
        "/sys/devices",
        "/sys/fs",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        assert!(
            read_only.iter().any(|p| p == tunables),
            "{tunables} stays read-only, as ProtectKernelTunables=yes kept it"
        );
    }
    assert_eq!(
        words("InaccessiblePaths"),
        ["-/proc/kallsyms", "-/proc/kcore"]
    );
}

#[test]
fn the_unit_reports_readiness_checks_the_file_and_retries_a_failed_start() {
    // Type=notify: `systemctl start` returns at READY=1, sent once the program is attached,
    // and fails when the daemon exits first (with Type=exec it returned at exec).
    assert_eq!(values("Type"), ["notify"]);
    assert_eq!(values("NotifyAccess"), ["main"]);
    // check takes run's options, so it judges the interfaces the daemon will guard.
    let check = "/usr/sbin/knock-user check --quiet --config /etc/knockd.conf $KNOCK_OPTS";
    assert_eq!(values("ExecStartPre"), [check]);
    // A broken file fails `systemctl reload` with the checker's message; the daemon is not
    // signalled and keeps its configuration.
    // /bin/kill belongs to procps, which a minimal Debian (the guest of cargo xtask system)
    // lacks: the reload failed there with 203/EXEC. The shell's kill is always there.
    assert_eq!(
        values("ExecReload"),
        [check, "/bin/sh -c 'kill -HUP \"$MAINPID\"'"]
    );
    // Seen under systemd 252: with Type=notify the start job fails at the first failure while
    // Restart= tries again ("activating (auto-restart)"), so a missing interface at boot is
    // retried without a start limit that would end the retries.
    assert_eq!(values("Restart"), ["on-failure"]);
    assert_eq!(values("RestartSec"), ["10s"]);
    let unit_section = UNIT.split("[Service]").next().unwrap_or_default();
    assert!(
        unit_section.contains("\nStartLimitIntervalSec=0\n"),
        "StartLimitIntervalSec=0 belongs to [Unit]"
    );
}

#[test]
fn with_exactly_the_units_capabilities_the_daemon_guards_and_opens_a_door() {
    let caps = unit_capabilities();
    let mut s = Scene::new("caps");
    let mut wrapper = vec!["setpriv".to_owned()];
    wrapper.extend(setpriv_args(&caps));
    s.start(&wrapper, &iptables_command("iptables"))
        .expect("the daemon starts with the unit's capabilities");
    let expected = caps.iter().fold(0u64, |m, c| m | 1 << cap_number(c));
    assert_eq!(
        effective(s.daemon().pid()),
        expected,
        "the daemon runs with exactly {caps:?}"
    );
    // Without CAP_SYS_ADMIN maps cannot be looked up by id; -v reads their sizes through the
    // daemon's own descriptors (under the unit it once said "maps use 0 KiB" and listed none).
    let maps = s
        .daemon()
        .wait_for("maps use", WAIT)
        .expect("-v logs the maps' memory");
    let kib: u64 = maps
        .split("maps use ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(kib > 0 && maps.contains("GATE "), "{maps}");
    assert!(s.ssh().is_err(), "port 22 is shut before the knock");
    s.knock();
    s.daemon()
        .wait_for("OPEN SESAME", WAIT)
        .expect("the door opens");
    s.ssh().expect("port 22 accepts after the knock");
    assert_eq!(s.listener.wait_accepted(1, Duration::from_secs(2)), 1);
    let deadline = Instant::now() + WAIT;
    while !s.rules("iptables").contains(RULE) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        s.rules("iptables").contains(RULE),
        "the start command changed the firewall: {}\n{:#?}",
        s.rules("iptables"),
        s.daemon().log()
    );
    if s.bpffs.is_none() {
        return;
    }
    // A restart under the unit (SIGTERM, then a new daemon) finds the pinned state: the open
    // door stays open.
    let daemon = s.daemon.take().unwrap();
    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGTERM) };
    drop(daemon);
    s.start(&wrapper, &iptables_command("iptables"))
        .expect("the daemon restarts with the unit's capabilities");
    s.ssh()
        .expect("the door opened before the restart is still open");
}

#[test]
fn each_of_the_units_capabilities_is_needed() {
    let caps = unit_capabilities();
    // iptables-legacy is the one command that needs CAP_NET_RAW; with iptables-nft as the
    // command, CAP_NET_RAW would look unneeded.
    let legacy = has_legacy_iptables();
    let command = if legacy {
        iptables_command("iptables-legacy")
    } else {
        iptables_command("iptables")
    };
    let run = |caps: &[String]| -> (Scene, std::io::Result<()>) {
        let mut s = Scene::new(&format!("need{}", caps.len()));
        let mut wrapper = vec!["setpriv".to_owned()];
        wrapper.extend(setpriv_args(caps));
        let started = s.start(&wrapper, &command);
        (s, started)
    };
    let (all, started) = run(&caps);
    started.expect("the daemon starts with all of the unit's capabilities");
    all.knock();
    assert!(all.daemon().wait_for("OPEN SESAME", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(500));
    let iptables = if legacy {
        "iptables-legacy"
    } else {
        "iptables"
    };
    assert!(
        all.rules(iptables).contains(RULE),
        "{:#?}",
        all.daemon().log()
    );
    drop(all);

    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let (s, started) = run(&fewer);
        match missing.as_str() {
            // Maps, programs, pins; attaching XDP; the verifier's pointer arithmetic.
            "CAP_BPF" | "CAP_NET_ADMIN" | "CAP_PERFMON" => {
                let error = started.expect_err(&format!("the daemon starts without {missing}"));
                eprintln!(
                    "without {missing}: {}",
                    error.to_string().lines().last().unwrap_or("")
                );
            }
            "CAP_NET_RAW" if legacy => {
                started.expect("the daemon itself needs no CAP_NET_RAW");
                s.knock();
                assert!(s.daemon().wait_for("OPEN SESAME", WAIT).is_some());
                std::thread::sleep(Duration::from_millis(500));
                assert!(
                    !s.rules("iptables-legacy").contains(RULE),
                    "iptables-legacy worked without CAP_NET_RAW"
                );
                eprintln!("without {missing}: iptables-legacy fails");
            }
            "CAP_NET_RAW" => eprintln!("without {missing}: not checked, no iptables-legacy here"),
            other => panic!("{other} is in the unit: say here what fails without it"),
        }
    }
}

/// The system calls a group of `systemd-analyze syscall-filter` stands for, groups expanded.
fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, into: &mut BTreeSet<String>) {
    match groups.get(name) {
        Some(members) => {
            for member in members {
                expand(member, groups, into);
            }
        }
        None if name.starts_with('@') => panic!("unknown system call group {name}"),
        None => {
            into.insert(name.to_owned());
        }
    }
}

/// The system calls the unit's SystemCallFilter= allows.
fn allowed_system_calls() -> BTreeSet<String> {
    let listing = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_owned());
            groups.entry(line.trim().to_owned()).or_default();
        } else if let Some(group) = &current {
            let entry = line.trim();
            if !entry.is_empty() && !entry.starts_with('#') {
                groups.get_mut(group).unwrap().push(entry.to_owned());
            }
        }
    }
    let mut allowed = BTreeSet::new();
    for value in values("SystemCallFilter") {
        let (deny, list) = match value.strip_prefix('~') {
            Some(list) => (true, list),
            None => (false, value.as_str()),
        };
        let mut set = BTreeSet::new();
        for name in list.split_whitespace() {
            expand(name, &groups, &mut set);
        }
        if deny {
            allowed.retain(|c| !set.contains(c));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The pid of a process's child named `comm`.
fn child_named(parent: u32, comm: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if name.trim() == comm {
                return Some(pid);
            }
        }
    }
    None
}

/// Whether a process has exited (gone, or a zombie).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
    })
}

/// The system calls in an strace log, name and arguments, from the exec of knock-user on
/// (setpriv's own calls before it are systemd's, under the unit).
fn system_calls(trace: &str) -> Vec<(String, String)> {
    let from = trace
        .lines()
        .position(|l| l.contains(&format!("execve(\"{BINARY}\"")))
        .expect("the trace shows knock-user's exec");
    let mut calls = Vec::new();
    for line in trace.lines().skip(from) {
        let rest = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .trim_start();
        if rest.starts_with("<...") || rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if let Some(arguments) = rest[name.len()..].strip_prefix('(')
            && !name.is_empty()
        {
            calls.push((name, arguments.to_owned()));
        }
    }
    calls
}

/// The first quoted argument: the path of openat, mkdir, unlink...
fn quoted(arguments: &str) -> Option<&str> {
    let (_, rest) = arguments.split_once('"')?;
    Some(rest.split_once('"')?.0)
}

/// What the unit's sandbox refuses among `calls`, besides the filter: socket families outside
/// RestrictAddressFamilies=, writes outside the writable paths (ProtectSystem=strict), memory
/// both writable and executable (MemoryDenyWriteExecute=).
fn sandbox_refusals(calls: &[(String, String)]) -> Vec<String> {
    let families = words("RestrictAddressFamilies");
    let mut writable: Vec<String> = words("ReadWritePaths")
        .iter()
        .map(|p| p.trim_start_matches('-').to_owned())
        .collect();
    if values("PrivateTmp").iter().any(|v| v == "yes") {
        writable.extend(["/tmp".to_owned(), "/var/tmp".to_owned()]);
    }
    for dir in words("StateDirectory") {
        writable.push(format!("/var/lib/{dir}"));
    }
    // A private /dev (PrivateDevices=), and the process's own /proc entries.
    writable.extend([
        "/dev".to_owned(),
        "/proc/self".to_owned(),
        "/proc/thread-self".to_owned(),
    ]);
    let is_writable = |path: &str| {
        writable
            .iter()
            .any(|w| path == w || path.starts_with(&format!("{w}/")))
    };
    let mut refused = Vec::new();
    for (name, arguments) in calls {
        let flags = arguments.split(", ").collect::<Vec<_>>();
        match name.as_str() {
            "socket" | "socketpair"
                if !families.iter().any(|f| flags.first() == Some(&f.as_str())) =>
            {
                refused.push(format!("{name}({arguments}"));
            }
            "openat" | "open" | "creat" | "mkdir" | "mkdirat" | "unlink" | "unlinkat"
            | "rename" | "renameat" | "renameat2" | "symlink" | "symlinkat" | "link" | "linkat"
            | "chmod" | "fchmodat" | "truncate" => {
                let writes = !name.starts_with("open")
                    || ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                        .iter()
                        .any(|f| arguments.contains(f));
                if let Some(path) = quoted(arguments)
                    && writes
                    && path.starts_with('/')
                    && !is_writable(path)
                {
                    refused.push(format!("{name}({arguments}"));
                }
            }
            "mmap" | "mmap2"
                if arguments.contains("PROT_WRITE") && arguments.contains("PROT_EXEC") =>
            {
                refused.push(format!("{name}({arguments}"));
            }
            "mprotect" | "pkey_mprotect" if arguments.contains("PROT_EXEC") => {
                refused.push(format!("{name}({arguments}"));
            }
            _ => {}
        }
    }
    refused
}

#[test]
fn every_system_call_of_the_daemon_and_its_commands_passes_the_units_filter_and_sandbox() {
    for needed in ["strace", "systemd-analyze"] {
        assert!(
            tool(needed),
            "{needed} is not installed: `cargo xtask bootstrap` installs it (Debian's strace and \
             systemd packages)"
        );
    }
    let allowed = allowed_system_calls();
    assert!(
        allowed.contains("read"),
        "cannot read systemd-analyze syscall-filter"
    );
    let mut s = Scene::new("seccomp");
    let trace_path = s.dir.path("strace.log");
    let mut wrapper = vec![
        "strace".to_owned(),
        "-f".to_owned(),
        "-qq".to_owned(),
        "-o".to_owned(),
        trace_path.to_string_lossy().into_owned(),
        "setpriv".to_owned(),
    ];
    wrapper.extend(setpriv_args(&unit_capabilities()));
    s.start(&wrapper, &iptables_command("iptables"))
        .expect("the daemon starts under strace");
    s.knock();
    s.daemon()
        .wait_for("running command", WAIT)
        .expect("the start command runs");
    std::thread::sleep(Duration::from_millis(500));
    let strace = s.daemon().pid();
    let daemon = child_named(strace, "knock-user").expect("knock-user runs under strace");
    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(daemon as i32, libc::SIGHUP) };
    s.daemon()
        .wait_for("reloaded", WAIT)
        .expect("SIGHUP reloads");
    // SAFETY: as above.
    unsafe { libc::kill(daemon as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exited(strace) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(exited(strace), "the daemon stops on SIGTERM");
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let calls = system_calls(&trace);
    let names: BTreeSet<&String> = calls.iter().map(|(name, _)| name).collect();
    let denied: Vec<&&String> = names.iter().filter(|c| !allowed.contains(**c)).collect();
    eprintln!(
        "{} system calls ({} distinct), all checked",
        calls.len(),
        names.len()
    );
    assert!(
        denied.is_empty(),
        "SystemCallFilter={:?} refuses {denied:?}, which the daemon or its command called",
        values("SystemCallFilter")
    );
    let refused = sandbox_refusals(&calls);
    assert!(
        refused.is_empty(),
        "the unit's sandbox refuses what the daemon or its command did:\n{}",
        refused.join("\n")
    );
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(output.status.success(), "{command:?}: {output:?}");
    output
}

#[test]
fn systemd_analyze_verifies_the_unit_and_rates_its_exposure_ok() {
    assert!(
        tool("systemd-analyze"),
        "systemd-analyze is not installed: `cargo xtask bootstrap` installs it (Debian's systemd \
         package)"
    );
    // The unit's binary, man pages and /bin/kill must exist for verify: lay the package's files
    // over /usr in a private mount namespace.
    let dir = TempDir::new("service-verify");
    let layer = dir.path("usr");
    let sbin = layer.join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    std::fs::copy(BINARY, sbin.join("knock-user")).unwrap();
    let generated = dir.path("generated");
    run(Command::new(BINARY).arg("generate-manuals").arg(&generated));
    let man1 = layer.join("share/man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    for page in std::fs::read_dir(generated.join("man")).unwrap() {
        let page = page.unwrap();
        std::fs::copy(page.path(), man1.join(page.file_name())).unwrap();
    }
    let unit = dir.path("knock.service");
    std::fs::write(&unit, UNIT).unwrap();
    let script = format!(
        "mount -t overlay knock-usr -o lowerdir={}:/usr /usr && systemd-analyze verify {}",
        layer.display(),
        unit.display()
    );
    let verify = run(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for knock.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(
        exposure <= 3.0,
        "the unit's exposure rose to {exposure} (2.6 since ProtectKernelTunables= is spelled \
         out): {text}"
    );
}

/// A datagram socket standing in for systemd's notification socket (a path: the daemon runs in
/// the lab's network namespace, where the test's abstract sockets are not seen).
fn notify_socket(dir: &TempDir) -> (std::os::unix::net::UnixDatagram, PathBuf) {
    let path = dir.path("notify");
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    (socket, path)
}

fn xdp_attached(s: &Scene) -> bool {
    let output = Command::new("ip")
        .args([
            "-d",
            "-n",
            s.lab.server.name(),
            "link",
            "show",
            "dev",
            &s.lab.server_if,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).contains("prog/xdp")
}

#[test]
fn ready_is_sent_once_the_gate_is_up_and_a_failed_start_sends_none_and_pins_nothing() {
    let mut s = Scene::new("notify");
    let (socket, path) = notify_socket(&s.dir);
    let mut run = s.command(&["env".to_owned()], &iptables_command("iptables"));
    run.env("NOTIFY_SOCKET", &path);
    s.daemon = Some(Daemon::spawn(run).expect("the daemon starts"));
    let mut message = [0u8; 512];
    let length = socket.recv(&mut message).expect("READY=1 arrives");
    let ready = String::from_utf8_lossy(&message[..length]).into_owned();
    assert!(xdp_attached(&s), "READY=1 before the program was attached");
    assert!(s.ssh().is_err(), "port 22 is shut when READY=1 arrives");
    assert_eq!(
        ready,
        format!(
            "READY=1\nSTATUS=guarding {} (native XDP): 1 door(s), 0 open",
            s.lab.server_if
        )
    );

    // A start that cannot guard (an interface knock cannot judge) exits with its reason, says
    // nothing to systemd, and leaves no pinned state for `status` to report or the next start
    // to call incompatible.
    let Some(bpffs) = &s.bpffs else { return };
    let root = bpffs.0.join("knock");
    let mut failing = s.lab.server.command(BINARY);
    failing
        .arg("run")
        .arg("--config")
        .arg(s.dir.path("knockd.conf"))
        .args(["--interface", "lo", "--state-dir"])
        .arg(&root)
        .env("NOTIFY_SOCKET", &path);
    let output = failing.output().unwrap();
    assert!(!output.status.success(), "{output:?}");
    socket.set_nonblocking(true).expect("a non-blocking socket");
    assert!(
        socket.recv(&mut message).is_err(),
        "a failed start sent {:?}",
        String::from_utf8_lossy(&message)
    );
    assert!(
        !root.join("lo").exists(),
        "the failed start left its pinned state"
    );
    let status = Command::new(BINARY)
        .args(["status", "--interface", "lo", "--state-dir"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!status.status.success(), "status: {status:?}");
}

#[test]
fn ready_waits_for_an_interface_that_is_not_there_yet_and_comes_once_it_is_guarded() {
    let s = Scene::new("wait");
    let (socket, path) = notify_socket(&s.dir);
    let iface = format!("{}w", s.lab.server_if);
    let mut run = s.lab.server.command(BINARY);
    run.arg("run")
        .arg("--config")
        .arg(s.dir.path("knockd.conf"))
        .args(["--interface", &iface]);
    std::fs::write(s.dir.path("knockd.conf"), config("true")).unwrap();
    if let Some(bpffs) = &s.bpffs {
        run.arg("--state-dir").arg(bpffs.0.join("knock"));
    }
    run.env("NOTIFY_SOCKET", &path);
    let daemon = Daemon::spawn(run).expect("the daemon starts and waits");
    let mut message = [0u8; 512];
    let length = socket.recv(&mut message).expect("a status arrives");
    assert_eq!(
        String::from_utf8_lossy(&message[..length]),
        format!("STATUS=waiting for {iface} (not guarded): 1 door(s), 0 open"),
        "no READY=1 while the interface is missing"
    );
    s.lab
        .server
        .ip(&[
            "link",
            "add",
            &iface,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{iface}p"),
        ])
        .expect("the interface appears");
    let length = socket.recv(&mut message).expect("READY=1 arrives");
    assert_eq!(
        String::from_utf8_lossy(&message[..length]),
        format!("READY=1\nSTATUS=guarding {iface} (native XDP): 1 door(s), 0 open")
    );
    assert!(
        daemon
            .log()
            .iter()
            .any(|l| l.contains(&format!("{iface} appeared"))),
        "{:#?}",
        daemon.log()
    );
}
