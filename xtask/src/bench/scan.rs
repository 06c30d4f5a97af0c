//! Part 4: full port scans against a three-knock door: how often a scan opens it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use knock_common::craft::Craft;
use knock_common::segment::tcp_flags::SYN;
use knock_common::settings::Look;
use knock_lab::SERVER_V4;

use super::frames::{fix_tcp_checksum, set_dport, shuffled_ports};
use super::report::Table;
use super::server::{Kind, Output, Server, Setup};

/// Frames per burst; the sender sleeps between bursts to hold the rate.
const CHUNK: usize = 2_000;

pub struct Row {
    pub kind: Kind,
    pub scans: usize,
    pub opened: usize,
    /// For knockd: packets of the scans it captured (its capture filter passes only the knock
    /// ports), from its debug output.
    pub captured: Option<u64>,
    pub sent: u64,
    /// Frames the server's interface received while the scans ran.
    pub delivered: u64,
    pub rate: u64,
}

/// Scans from 203.0.113.(1 + scan); each scan's random order is the same for every
/// implementation.
pub fn measure(binary: &Path, scans: usize, rate: u64) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for kind in [Kind::Knockd, Kind::KnockLoose, Kind::KnockStrict] {
        let server = Server::start(
            kind,
            binary,
            Setup {
                seq_timeout_s: 25,
                cmd_timeout_s: 1,
                knockd_output: Output::Debug,
                look: Look::Closed,
                queue_per_core: false,
            },
        )?;
        let (mut opened, mut captured, mut sent) = (0, 0u64, 0u64);
        let received = server.rx_packets()?;
        for scan in 0..scans {
            let scanner = IpAddr::V4(Ipv4Addr::new(203, 0, 113, (1 + scan % 250) as u8));
            let before = server.log().len();
            sent += send_scan(&server, scanner, scan as u64, rate)?;
            std::thread::sleep(Duration::from_millis(700));
            let log = server.log();
            let lines = &log[before.min(log.len())..];
            let tag = format!("{scanner}: openSSH: OPEN SESAME");
            if lines.iter().any(|l| l.contains(&tag)) {
                opened += 1;
            }
            if kind == Kind::Knockd {
                captured += lines.iter().filter(|l| is_capture(l, scanner)).count() as u64;
            }
        }
        rows.push(Row {
            kind,
            scans,
            opened,
            captured: (kind == Kind::Knockd).then_some(captured),
            sent,
            delivered: server.rx_packets()? - received,
            rate,
        });
    }
    Ok(rows)
}

/// A line of knockd's debug output for one captured packet from `scanner`
/// (`2026-01-01 12:00:00: tcp: 203.0.113.1:40000 -> 198.51.100.1:7000 54 bytes`).
fn is_capture(line: &str, scanner: IpAddr) -> bool {
    line.contains(&format!("tcp: {scanner}:"))
}

/// Sends SYNs to every port in a random order at `rate` packets a second.
fn send_scan(server: &Server, scanner: IpAddr, seed: u64, rate: u64) -> Result<u64> {
    let ports = shuffled_ports(seed + 1);
    let template = Craft::tcp(scanner, SERVER_V4.into(), 1, SYN).build();
    let started = Instant::now();
    let mut sent = 0u64;
    for chunk in ports.chunks(CHUNK) {
        let chunk = chunk.to_vec();
        let count = chunk.len() as u64;
        let left = server
            .scene
            .lab
            .burst_from_client(&template, count, move |i, frame| {
                set_dport(frame, chunk[i as usize]);
                fix_tcp_checksum(frame);
            })?;
        if left != count {
            bail!("only {left} of {count} scan frames left");
        }
        sent += left;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(sent)
}

pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(
        "Full port scans (65535 TCP SYNs in random order) against the door 7000,8000,9000",
        &[
            "implementation",
            "scans",
            "door opened",
            "scan rate (packets/s)",
            "delivered / sent",
            "knockd captured / knock-port packets sent",
        ],
    );
    for row in rows {
        table.row(vec![
            row.kind.name().to_owned(),
            row.scans.to_string(),
            format!(
                "{} ({:.0} %)",
                row.opened,
                100.0 * row.opened as f64 / row.scans.max(1) as f64
            ),
            row.rate.to_string(),
            format!("{} / {}", row.delivered, row.sent),
            row.captured.map_or_else(String::new, |c| {
                format!("{c} / {}", row.scans * super::server::KNOCKS.len())
            }),
        ]);
    }
    table
}
