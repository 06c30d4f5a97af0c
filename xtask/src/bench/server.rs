//! A lab with one of the implementations guarding SSH on the server side: Debian's knockd with an
//! iptables start command over a default DROP, or knock's XDP gate.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_common::settings::Look;
use knock_lab::knockd::{KNOCKD, Knockd};
use knock_lab::{Lab, Netns, SERVER_V4, Scene};

/// The door in every lab part: three TCP knocks in front of SSH.
pub const KNOCKS: [u16; 3] = [7000, 8000, 9000];

/// One implementation as the floods run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub kind: Kind,
    /// knock's `Ports_Look`; knockd ignores it.
    pub look: Look,
    /// See [`Setup::queue_per_core`].
    pub queue_per_core: bool,
}

impl Case {
    const fn new(kind: Kind, look: Look, queue_per_core: bool) -> Self {
        Self {
            kind,
            look,
            queue_per_core,
        }
    }

    pub fn label(self) -> String {
        let mut label = self.kind.label(self.look);
        if self.queue_per_core {
            label.push_str("; one receive queue per core");
        }
        label
    }

    pub fn setup(self, seq_timeout_s: u32, cmd_timeout_s: u32) -> Setup {
        Setup {
            seq_timeout_s,
            cmd_timeout_s,
            knockd_output: Output::Quiet,
            look: self.look,
            queue_per_core: self.queue_per_core,
        }
    }
}

/// The floods' implementations, on the lab's veth as it is made (one receive queue): knockd with
/// its DROP rule; knock in its default look, where the host's stack answers each refused packet
/// as for any closed port (on the lab's veth, a RST from the host); knock in the filtered look,
/// where it drops them in XDP as knockd's DROP rule does. Then both droppers again with one
/// receive queue per core, as on a NIC with receive-side scaling.
pub const SIDE_BY_SIDE: [Case; 5] = [
    Case::new(Kind::Knockd, Look::Closed, false),
    Case::new(Kind::KnockStrict, Look::Closed, false),
    Case::new(Kind::KnockStrict, Look::Filtered, false),
    Case::new(Kind::Knockd, Look::Closed, true),
    Case::new(Kind::KnockStrict, Look::Filtered, true),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Knockd,
    /// knock with `Progress = knockd`.
    KnockLoose,
    /// knock with `Progress = strict`, its default.
    KnockStrict,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Knockd => "knockd 0.8 + iptables",
            Self::KnockLoose => "knock, Progress = knockd",
            Self::KnockStrict => "knock, Progress = strict",
        }
    }

    /// The name with knock's `Ports_Look` (knockd has none: its iptables rules say how the host
    /// answers).
    pub fn label(self, look: Look) -> String {
        match self {
            Self::Knockd => self.name().to_owned(),
            Self::KnockLoose | Self::KnockStrict => {
                format!("{}, Ports_Look = {}", self.name(), look.name())
            }
        }
    }
}

enum Running {
    /// knockd started by the benchmark: quiet, as deployed, so that its CPU time is its work.
    Quiet(Child),
    /// knockd started by the lab with `-v -D`: one line per captured packet, to count them.
    Debug(Knockd),
    /// knock's daemon, which the scene holds.
    Knock,
}

/// The lab's scene (a listener on port 22) with one implementation guarding it.
pub struct Server {
    running: Option<Running>,
    pub scene: Scene,
}

/// How a server is set up.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub seq_timeout_s: u32,
    pub cmd_timeout_s: u32,
    pub knockd_output: Output,
    /// knock's `Ports_Look`; knockd ignores it.
    pub look: Look,
    /// One receive queue per core on the server's veth, as a NIC with receive-side scaling
    /// has, instead of the veth's one: see `Lab::one_queue_per_core`.
    pub queue_per_core: bool,
}

/// What knockd prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Nothing, as deployed: its CPU time is its work.
    Quiet,
    /// `-v`, into a file: stages, openings, and what its commands print.
    Verbose,
    /// `-v -D`, through the lab: also one line per captured packet.
    Debug,
}

impl Server {
    pub fn start(kind: Kind, binary: &Path, setup: Setup) -> Result<Self> {
        let (seq, open) = (setup.seq_timeout_s, setup.cmd_timeout_s);
        let sequence = KNOCKS.map(|p| p.to_string()).join(",");
        let config = match kind {
            Kind::Knockd => {
                let rule = "INPUT -s %IP% -p tcp --dport 22 -j ACCEPT";
                format!(
                    "[options]\n[openSSH]\n    sequence = {sequence}\n    seq_timeout = {seq}\n    \
                     tcpflags = syn\n    start_command = /usr/sbin/iptables -I {rule}\n    \
                     cmd_timeout = {open}\n    stop_command = /usr/sbin/iptables -D {rule}\n"
                )
            }
            Kind::KnockLoose | Kind::KnockStrict => {
                let rule = if kind == Kind::KnockLoose {
                    "knockd"
                } else {
                    "strict"
                };
                let look = setup.look.name();
                format!(
                    "[options]\n    Progress = {rule}\n    Ports_Look = {look}\n[openSSH]\n    \
                     sequence = {sequence}\n    seq_timeout = {seq}\n    cmd_timeout = {open}\n"
                )
            }
        };
        let scene = Scene::build(&config)
            .quiet()
            .stopped()
            .start(binary)
            .context("building the lab (needs root)")?;
        if setup.queue_per_core {
            scene
                .lab
                .one_queue_per_core()
                .context("one receive queue per core on the lab's veth pair")?;
        }
        let mut server = Self {
            running: None,
            scene,
        };
        let config = server.scene.config.clone();
        let running = match kind {
            Kind::Knockd => {
                server.iptables(&[
                    "-A", "INPUT", "-p", "tcp", "--dport", "22", "--syn", "-j", "DROP",
                ])?;
                // The floods come from IPv6 sources: strangers' SYNs to 22 meet the same DROP
                // there (the lab's real clients are IPv4, opened by the start command).
                server.firewall(
                    "ip6tables",
                    &[
                        "-A", "INPUT", "-p", "tcp", "--dport", "22", "--syn", "-j", "DROP",
                    ],
                )?;
                let lab = &server.scene.lab;
                match setup.knockd_output {
                    Output::Debug => Running::Debug(
                        Knockd::start(&lab.server, &lab.server_if, &config, &[])
                            .context("starting knockd")?,
                    ),
                    Output::Verbose => Running::Quiet(quiet_knockd(
                        lab,
                        &config,
                        Some(&server.scene.dir.path("knockd.log")),
                    )?),
                    Output::Quiet => Running::Quiet(quiet_knockd(lab, &config, None)?),
                }
            }
            Kind::KnockLoose | Kind::KnockStrict => {
                server
                    .scene
                    .start_daemon(&[])
                    .context("starting knock-user run")?;
                Running::Knock
            }
        };
        server.running = Some(running);
        Ok(server)
    }

    fn iptables(&self, args: &[&str]) -> Result<()> {
        self.firewall("iptables", args)
    }

    fn firewall(&self, program: &str, args: &[&str]) -> Result<()> {
        let status = self
            .scene
            .lab
            .server
            .command(program)
            .args(args)
            .status()
            .context(program.to_owned())?;
        if !status.success() {
            bail!("{program} {} failed", args.join(" "));
        }
        Ok(())
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        match self.running.as_ref()? {
            Running::Quiet(child) => Some(child.id()),
            Running::Knock => Some(self.scene.daemon().pid()),
            Running::Debug(_) => pid_in(&self.scene.lab, "knockd"),
        }
    }

    /// Every line the daemon printed so far (none for a quiet knockd).
    pub fn log(&self) -> Vec<String> {
        match &self.running {
            Some(Running::Knock) => self.scene.daemon().log(),
            Some(Running::Debug(knockd)) => knockd.log(),
            _ => std::fs::read_to_string(self.scene.dir.path("knockd.log"))
                .map(|text| text.lines().map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    /// Frames the server's interface has received so far.
    pub fn rx_packets(&self) -> Result<u64> {
        Ring::read(&self.scene.lab).map(|ring| ring.received)
    }

    /// Adds client addresses 198.51.100.`first`.. to the client side, `count` of them.
    pub fn add_clients(&self, first: u8, count: u8) -> Result<Vec<IpAddr>> {
        let mut added = Vec::new();
        for n in first..first.saturating_add(count) {
            let address = Ipv4Addr::new(198, 51, 100, n);
            self.scene
                .lab
                .client
                .ip(&[
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    &self.scene.lab.client_if,
                ])
                .context("adding a client address")?;
            added.push(IpAddr::V4(address));
        }
        Ok(added)
    }

    /// Sends the three knocks from `source` back to back, as raw frames. Under a flood the
    /// client's veth can refuse frames (ENOBUFS: the peer's ring is full), as a full queue would
    /// drop them on a real link: then the whole sequence goes again, after a pause, up to ten
    /// times, as a user would knock again.
    pub fn knock(&self, source: IpAddr) -> Result<()> {
        let frames: Vec<Vec<u8>> = KNOCKS
            .iter()
            .map(|port| Craft::tcp(source, SERVER_V4.into(), *port, SYN).build())
            .collect();
        let mut sent = 0;
        for _ in 0..10 {
            let knocks = frames.clone();
            sent = self
                .scene
                .lab
                .burst_from_client(&frames[0], 3, move |i, frame| {
                    if let Some(knock) = knocks.get(i as usize) {
                        // Keep the Ethernet addresses the burst filled in.
                        frame[12..].copy_from_slice(&knock[12..]);
                    }
                })?;
            if sent == 3 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("only {sent} of 3 knocks left, ten times")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self.running.take() {
            Some(Running::Quiet(mut child)) => {
                // SAFETY: kill(2) on the knockd this benchmark started.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(2);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
                // knockd's forked children sleep until their stop command; they die with the
                // namespace's processes below.
                if let Some(pids) = pids_in(&self.scene.lab) {
                    for pid in pids {
                        // SAFETY: a process inside the benchmark's own namespace.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                }
            }
            Some(other) => drop(other),
            None => {}
        }
    }
}

/// Starts knockd without `-D`, and with `-v` into `log` if given, and waits until it holds its
/// capture socket.
fn quiet_knockd(lab: &Lab, config: &Path, log: Option<&Path>) -> Result<Child> {
    let mut command = lab.server.command(KNOCKD);
    command
        .args(["-i", &lab.server_if, "-c", &config.to_string_lossy()])
        .stdin(Stdio::null());
    match log {
        Some(path) => {
            let file = std::fs::File::create(path)?;
            command.arg("-v").stdout(file.try_clone()?).stderr(file);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let mut child = command.spawn().context("starting knockd")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("knockd exited: {status}");
        }
        let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id()));
        let capturing = fds.into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        });
        if capturing {
            // The socket exists before its filter is attached; give it a moment.
            std::thread::sleep(Duration::from_millis(300));
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    bail!("knockd did not open its capture socket within 10 s")
}

fn pids_in(lab: &Lab) -> Option<Vec<u32>> {
    let output = Command::new("ip")
        .args(["netns", "pids", lab.server.name()])
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

fn pid_in(lab: &Lab, name: &str) -> Option<u32> {
    pids_in(lab)?.into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
    })
}

/// User plus system CPU time of a process so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    crate::shell::output(Command::new("getconf").arg("CLK_TCK"))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Softirq time of every CPU so far, in seconds: where XDP and the kernel's receive path run.
pub fn softirq_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(7)?.parse::<f64>().ok())
        .map_or(0.0, |ticks| ticks / ticks_per_second())
}

/// The veth pair's counters: what the server's end received, and what found its ring full
/// (the client's end counts a frame its peer had no room for as a transmit drop, the server's
/// end a frame it could not take as a receive drop).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ring {
    pub received: u64,
    pub dropped: u64,
}

impl Ring {
    pub fn read(lab: &Lab) -> Result<Self> {
        Ok(Self {
            received: interface_stat(&lab.server, &lab.server_if, "rx_packets")?,
            dropped: interface_stat(&lab.server, &lab.server_if, "rx_dropped")?
                + interface_stat(&lab.client, &lab.client_if, "tx_dropped")?,
        })
    }

    /// What happened since `before`.
    pub fn since(self, before: Self) -> Self {
        Self {
            received: self.received.saturating_sub(before.received),
            dropped: self.dropped.saturating_sub(before.dropped),
        }
    }
}

/// One of an interface's counters (/sys/class/net/IF/statistics/NAME), read inside its
/// namespace.
fn interface_stat(netns: &Netns, iface: &str, name: &str) -> Result<u64> {
    let path = format!("/sys/class/net/{iface}/statistics/{name}");
    let output = netns.command("cat").arg(&path).output()?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| format!("reading {path} in {}", netns.name()))
}
