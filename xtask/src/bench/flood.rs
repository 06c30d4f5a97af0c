//! Part 3: a flood of spoofed first knocks while a real client knocks and connects once a
//! second, side by side with knockd.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_lab::SERVER_V6;

use super::connect::{Sources, attempt};
use super::frames::{fix_tcp_checksum, set_v6_source_low};
use super::report::{Table, median};
use super::server::{KNOCKS, Kind, Output, Server, Setup, cpu_seconds, softirq_seconds};

/// Frames per call of the lab's burst helper; each call looks up the pair's MAC addresses once.
const CHUNK: u64 = 100_000;

pub struct Row {
    pub kind: Kind,
    pub packets: u64,
    /// Frames the server's interface received during the flood.
    pub delivered: u64,
    pub seconds: f64,
    pub attempts: usize,
    pub connected: usize,
    pub median_ms: f64,
    pub daemon_cpu_s: f64,
    pub softirq_s: f64,
}

/// Floods for `duration` (at most `max_packets`) from 2001:db8:f100::/96, each frame from a
/// new source, at whatever rate one sending thread reaches over the veth pair.
pub fn measure(binary: &Path, duration: Duration, max_packets: u64) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
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
        let mut sources = Sources::new(server.add_clients(10, 60)?);
        let pid = server.pid().context("the daemon's process id")?;
        let spoofed: IpAddr = "2001:db8:f100::".parse()?;
        let template = Craft::tcp(spoofed, SERVER_V6.into(), KNOCKS[0], SYN).build();
        let received = server.rx_packets()?;
        let cpu_before = cpu_seconds(pid).context("the daemon's CPU time")?;
        let softirq_before = softirq_seconds();
        let started = Instant::now();
        let flooding = AtomicBool::new(true);
        let (sent, times, attempts) = std::thread::scope(|scope| -> Result<_> {
            let flood = scope.spawn(|| -> Result<u64> {
                let mut sent = 0u64;
                while sent < max_packets && started.elapsed() < duration {
                    let offset = sent;
                    let count = CHUNK.min(max_packets - sent);
                    sent += server
                        .scene
                        .lab
                        .burst_from_client(&template, count, move |i, frame| {
                            // Truncating to 32 bits still gives four billion sources.
                            set_v6_source_low(frame, (offset + i) as u32);
                            fix_tcp_checksum(frame);
                        })
                        .context("the flood")?;
                }
                flooding.store(false, Ordering::Relaxed);
                Ok(sent)
            });
            let (mut times, mut attempts) = (Vec::new(), 0);
            let mut tick = Instant::now();
            while flooding.load(Ordering::Relaxed) {
                let source = sources.take();
                attempts += 1;
                times.extend(attempt(&server, source, Duration::ZERO)?);
                sources.done(source);
                tick += Duration::from_secs(1);
                if let Some(left) = tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(left);
                }
            }
            let sent = flood
                .join()
                .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
            Ok((sent, times, attempts))
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let daemon_cpu_s = cpu_seconds(pid).context("the daemon's CPU time")? - cpu_before;
        let softirq_s = softirq_seconds() - softirq_before;
        let delivered = server.rx_packets()? - received;
        let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
        rows.push(Row {
            kind,
            packets: sent,
            delivered,
            seconds,
            attempts,
            connected: times.len(),
            median_ms: median(&mut ms),
            daemon_cpu_s,
            softirq_s,
        });
    }
    Ok(rows)
}

pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(
        "Flood of spoofed first knocks, a real client knocking and connecting once a second",
        &[
            "implementation",
            "flood packets sent",
            "delivered",
            "rate sent (packets/s)",
            "client connected",
            "median ms to established",
            "daemon CPU s per million",
            "softirq s per million (all CPUs)",
        ],
    );
    for row in rows {
        let per_million = |s: f64| s * 1e6 / row.packets.max(1) as f64;
        table.row(vec![
            row.kind.name().to_owned(),
            row.packets.to_string(),
            row.delivered.to_string(),
            format!("{:.0}", row.packets as f64 / row.seconds.max(1e-9)),
            format!("{} of {}", row.connected, row.attempts),
            format!("{:.1}", row.median_ms),
            format!("{:.2}", per_million(row.daemon_cpu_s)),
            format!("{:.2}", per_million(row.softirq_s)),
        ]);
    }
    table
}
