//! Part 3, line rate: what each sender really delivers over the lab's veth pair, and how many
//! strangers' SYNs to SSH the server drops, per CPU second of softirq, under knock and under
//! knockd + iptables at the same offered load.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_lab::{CLONES_PER_RUN, Capture, Flood, Lab, SERVER_V6, Sender};

use super::frames::fix_tcp_checksum;
use super::report::Table;
use super::server::{Kind, Output, Server, Setup, cpu_seconds, softirq_seconds};

/// The flood's sources: 2001:db8:f100:0:n:!n (see `knock_lab::stamp`).
pub const SPOOFED: &str = "2001:db8:f100::";

/// The sender the floods use: the one that delivered most in this run's senders table.
#[derive(Clone, Copy, Debug)]
pub struct Best {
    pub sender: Sender,
    pub threads: u32,
}

impl Best {
    /// The sender of `rows` that delivered the most packets per second, with the most threads
    /// it was measured with; or the TX ring with one thread per core of this two-core machine
    /// when none sent anything. Each sending thread also runs the receiver's work (the veth's
    /// NAPI poll, the XDP program, the stack) on its own core, so a receiver costlier than the
    /// senders table's needs every core sending, even where one thread kept up with that table.
    pub fn of(rows: &[SenderRow]) -> Self {
        let sent = |row: &&SenderRow| row.error.is_none() && row.seconds > 0.0;
        let best = rows.iter().filter(sent).max_by(|a, b| {
            let rate = |row: &SenderRow| row.delivered as f64 / row.seconds;
            rate(a).total_cmp(&rate(b))
        });
        best.map_or(
            Self {
                sender: Sender::TxRing,
                threads: 2,
            },
            |best| Self {
                sender: best.sender,
                threads: rows
                    .iter()
                    .filter(sent)
                    .filter(|row| row.sender == best.sender)
                    .map(|row| row.threads)
                    .max()
                    .unwrap_or(best.threads),
            },
        )
    }

    pub fn flood(self, rate: Option<u64>, duration: Duration, max_packets: u64) -> Flood {
        Flood {
            sender: self.sender,
            rate,
            duration,
            max_packets,
            threads: self.threads,
        }
    }

    pub fn describe(self) -> String {
        format!(
            "Sent with {}, {} thread{}: the sender that delivered most in the senders table, \
             with the most threads it was measured with.",
            self.sender.name(),
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        )
    }
}

/// A SYN from the spoofed range to `port` on the server's IPv6 address.
pub fn syn_template(port: u16) -> Result<Vec<u8>> {
    Ok(Craft::tcp(SPOOFED.parse()?, SERVER_V6.into(), port, SYN).build())
}

pub struct SenderRow {
    pub sender: Sender,
    pub threads: u32,
    pub offered: u64,
    pub delivered: u64,
    pub seconds: f64,
    /// Why the sender could not send, if it could not.
    pub error: Option<String>,
}

/// Each sender, flat out for `duration`, into a bare lab (no daemon; the server's veth polls
/// with NAPI, as it does under knock's XDP program). SYNs to a closed port, so the server's
/// stack answers each with a RST, as a host with nothing on 7000 does.
pub fn senders(duration: Duration, max_packets: u64) -> Result<Vec<SenderRow>> {
    let lab = Lab::new().context("building the lab (needs root)")?;
    lab.server_napi()
        .context("turning GRO on for the server's veth")?;
    let template = syn_template(7000)?;
    let mut rows = Vec::new();
    let mut checked = Vec::new();
    let clone_redirect = Sender::CloneRedirect {
        clones: CLONES_PER_RUN,
    };
    let runs = [
        (Sender::Sendto, 1),
        (Sender::TxRing, 1),
        (Sender::Sendto, 2),
        (Sender::TxRing, 2),
        (Sender::LiveFrames, 1),
        // One clone per run shows what the run's own cost takes; more threads than the two
        // cores would only take turns.
        (Sender::CloneRedirect { clones: 1 }, 1),
        (clone_redirect, 1),
        (clone_redirect, 2),
    ];
    for (sender, threads) in runs {
        let before = rx_packets(&lab)?;
        let flood = Flood {
            sender,
            rate: None,
            duration,
            max_packets,
            threads,
        };
        let result = lab.flood_from_client(&template, flood);
        std::thread::sleep(Duration::from_millis(100));
        let delivered = rx_packets(&lab)? - before;
        let (offered, seconds, error) = match result {
            Ok(done) => (done.offered, done.seconds, None),
            Err(error) => (0, 0.0, Some(error.to_string())),
        };
        if error.is_none() && !checked.contains(&sender) {
            check_on_the_wire(&lab, &template, sender)?;
            checked.push(sender);
        }
        rows.push(SenderRow {
            sender,
            threads,
            offered,
            delivered,
            seconds,
            error,
        });
    }
    Ok(rows)
}

pub fn senders_table(rows: &[SenderRow]) -> Table {
    let mut table = Table::new(
        "Senders: what each one delivers over the lab's veth pair (SYNs, a fresh source each)",
        &[
            "sender",
            "threads",
            "offered (packets/s)",
            "delivered (packets/s)",
            "delivered / offered",
        ],
    );
    for row in rows {
        let rate = |n: u64| format!("{:.0}", n as f64 / row.seconds.max(1e-9));
        match &row.error {
            Some(error) => table.row(vec![
                row.sender.name(),
                row.threads.to_string(),
                format!("none: {error}"),
                String::new(),
                String::new(),
            ]),
            None => table.row(vec![
                row.sender.name(),
                row.threads.to_string(),
                rate(row.offered),
                rate(row.delivered),
                format!("{:.3}", row.delivered as f64 / row.offered.max(1) as f64),
            ]),
        }
    }
    table
}

/// Frames of a short flood, seen on the server's veth: what a sender puts on the wire must be
/// the template from a new source each time, with a valid TCP checksum. A separate run, so
/// that the capture does not slow the measured one.
fn check_on_the_wire(lab: &Lab, template: &[u8], sender: Sender) -> Result<()> {
    const FRAMES: u64 = 2000;
    let iface = lab.server_if.clone();
    let capture = lab.server.enter(move || Capture::open(&iface))??;
    lab.flood_from_client(
        template,
        Flood {
            sender,
            rate: None,
            duration: Duration::from_secs(10),
            max_packets: FRAMES,
            threads: 1,
        },
    )?;
    let seen: Vec<Vec<u8>> = capture
        .frames_for(Duration::from_millis(200))
        .into_iter()
        .filter(|frame| frame.get(22..28) == template.get(22..28))
        .collect();
    let mut sources = std::collections::HashSet::new();
    for frame in &seen {
        let mut fixed = frame.clone();
        fix_tcp_checksum(&mut fixed);
        if fixed != *frame || frame[54..] != template[54..] {
            bail!(
                "{}: a frame on the wire is not the template with a valid checksum",
                sender.name()
            );
        }
        if !sources.insert(frame[22..38].to_vec()) {
            bail!("{}: a source address came twice", sender.name());
        }
    }
    // The capture may lose frames to its own buffer, never gain any.
    if seen.is_empty() || seen.len() as u64 > FRAMES {
        bail!(
            "{}: the server saw {} of {FRAMES} frames",
            sender.name(),
            seen.len()
        );
    }
    eprintln!(
        "bench: {}: {} frames captured on the server, each from a new source, checksums valid",
        sender.name(),
        seen.len()
    );
    Ok(())
}

fn rx_packets(lab: &Lab) -> Result<u64> {
    let path = format!("/sys/class/net/{}/statistics/rx_packets", lab.server_if);
    let output = lab.server.command("cat").arg(&path).output()?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| format!("reading {path} in the server namespace"))
}

pub struct StrangerRow {
    pub name: String,
    pub offered: u64,
    pub delivered: u64,
    pub seconds: f64,
    pub daemon_cpu_s: f64,
    pub softirq_s: f64,
}

/// Strangers' SYNs to 22, each from a new source, flat out from the flood sender, for
/// `duration`: first into an XDP program that drops everything (the floor: the veth and the way
/// into XDP), then knockd's iptables DROP rule, then knock's XDP gate.
pub fn strangers(
    binary: &Path,
    best: Best,
    duration: Duration,
    max_packets: u64,
) -> Result<Vec<StrangerRow>> {
    let template = syn_template(22)?;
    let flood = best.flood(None, duration, max_packets);
    let mut rows = Vec::new();
    {
        let lab = Lab::new().context("building the lab (needs root)")?;
        let _drop = lab
            .server_drop_all()
            .context("attaching the drop-all program")?;
        let received = rx_packets(&lab)?;
        let softirq_before = softirq_seconds();
        let done = lab.flood_from_client(&template, flood)?;
        std::thread::sleep(Duration::from_millis(100));
        rows.push(StrangerRow {
            name: "floor: an XDP program that only drops".to_owned(),
            offered: done.offered,
            delivered: rx_packets(&lab)? - received,
            seconds: done.seconds,
            daemon_cpu_s: 0.0,
            softirq_s: softirq_seconds() - softirq_before,
        });
    }
    for kind in [Kind::Knockd, Kind::KnockStrict] {
        let server = Server::start(
            kind,
            binary,
            Setup {
                seq_timeout_s: 5,
                cmd_timeout_s: super::connect::OPEN_S,
                knockd_output: Output::Quiet,
            },
        )?;
        let pid = server.pid().context("the daemon's process id")?;
        let received = server.rx_packets()?;
        let cpu_before = cpu_seconds(pid).context("the daemon's CPU time")?;
        let softirq_before = softirq_seconds();
        let done = server.scene.lab.flood_from_client(&template, flood)?;
        std::thread::sleep(Duration::from_millis(100));
        rows.push(StrangerRow {
            name: kind.name().to_owned(),
            offered: done.offered,
            delivered: server.rx_packets()? - received,
            seconds: done.seconds,
            daemon_cpu_s: cpu_seconds(pid).context("the daemon's CPU time")? - cpu_before,
            softirq_s: softirq_seconds() - softirq_before,
        });
    }
    Ok(rows)
}

pub fn strangers_table(rows: &[StrangerRow]) -> Table {
    let mut table = Table::new(
        "Strangers' SYNs to SSH, each from a new IPv6 source, dropped by the server",
        &[
            "implementation",
            "offered (packets/s)",
            "delivered (packets/s)",
            "dropped per softirq CPU second",
            "daemon CPU s per million",
            "softirq s per million (all CPUs)",
        ],
    );
    for row in rows {
        let per_million = |s: f64| s * 1e6 / row.delivered.max(1) as f64;
        let rate = |n: u64| format!("{:.0}", n as f64 / row.seconds.max(1e-9));
        table.row(vec![
            row.name.clone(),
            rate(row.offered),
            rate(row.delivered),
            format!("{:.0}", row.delivered as f64 / row.softirq_s.max(1e-3)),
            format!("{:.2}", per_million(row.daemon_cpu_s)),
            format!("{:.2}", per_million(row.softirq_s)),
        ]);
    }
    table
}
