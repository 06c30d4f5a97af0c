//! Part 2: knock, then connect at once, side by side with knockd.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use knock_common::settings::Look;
use knock_lab::{SERVER_V4, connects_from};

use super::report::{Table, median, p90};
use super::server::{Kind, Output, Server, Setup};

/// How long a connection may take: the first SYN, and its retransmission a second later.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// A connection faster than this was answered at the first SYN, not its retransmission.
const FIRST_SYN: Duration = Duration::from_millis(900);
/// How long a door stays open. Longer than TCP's first retransmission (one second): with a
/// shorter door, knockd's stop command can remove the rule just as the retransmitted SYN
/// arrives, and a slow opening would look like a failed one.
pub const OPEN_S: u32 = 5;
/// A source is reused only this long after its last run: its door has closed and knockd's stop
/// command has removed its rule.
const REUSE_AFTER: Duration = Duration::from_millis(OPEN_S as u64 * 1000 + 1500);

pub struct Row {
    pub kind: Kind,
    pub delay_ms: u64,
    pub runs: usize,
    pub connected: usize,
    pub first_syn: usize,
    /// Openings the daemon logged (`OPEN SESAME`) during the runs.
    pub opened: usize,
    /// From the last knock to the established connection, successful runs only.
    pub median_ms: f64,
    pub p90_ms: f64,
}

/// One source's knock and connection; the time from the last knock, if it connected.
pub fn attempt(server: &Server, source: IpAddr, delay: Duration) -> Result<Option<Duration>> {
    server.knock(source)?;
    let knocked = Instant::now();
    std::thread::sleep(delay);
    let connected = connects_from(
        &server.scene.lab.client,
        source,
        SERVER_V4.into(),
        22,
        CONNECT_TIMEOUT,
    )
    .is_ok();
    Ok(connected.then(|| knocked.elapsed()))
}

/// Round-robin over client addresses, never reusing one before its door has closed.
pub struct Sources {
    all: Vec<IpAddr>,
    next: usize,
    used: HashMap<IpAddr, Instant>,
}

impl Sources {
    pub fn new(all: Vec<IpAddr>) -> Self {
        Self {
            all,
            next: 0,
            used: HashMap::new(),
        }
    }

    pub fn take(&mut self) -> IpAddr {
        let source = self.all[self.next % self.all.len()];
        self.next += 1;
        if let Some(last) = self.used.get(&source)
            && let Some(left) = REUSE_AFTER.checked_sub(last.elapsed())
        {
            std::thread::sleep(left);
        }
        source
    }

    pub fn done(&mut self, source: IpAddr) {
        self.used.insert(source, Instant::now());
    }
}

pub fn measure(binary: &Path, delays: &[u64], runs: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for kind in [Kind::Knockd, Kind::KnockStrict] {
        let server = Server::start(
            kind,
            binary,
            Setup {
                seq_timeout_s: 5,
                cmd_timeout_s: OPEN_S,
                knockd_output: Output::Verbose,
                look: Look::Closed,
                queue_per_core: false,
            },
        )?;
        let mut sources = Sources::new(server.add_clients(10, 200)?);
        for &delay_ms in delays {
            let logged = server.log().len();
            let mut times = Vec::new();
            for _ in 0..runs {
                let source = sources.take();
                let took = attempt(&server, source, Duration::from_millis(delay_ms))?;
                sources.done(source);
                times.extend(took);
            }
            let first_syn = times
                .iter()
                .filter(|t| t.saturating_sub(Duration::from_millis(delay_ms)) < FIRST_SYN)
                .count();
            let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
            // Stop commands of the last runs may still be due; they do not open anything.
            std::thread::sleep(Duration::from_millis(200));
            let opened = server
                .log()
                .iter()
                .skip(logged)
                .filter(|l| l.contains("OPEN SESAME"))
                .count();
            rows.push(Row {
                kind,
                delay_ms,
                runs,
                connected: times.len(),
                first_syn,
                opened,
                median_ms: median(&mut ms),
                p90_ms: p90(&mut ms),
            });
        }
    }
    Ok(rows)
}

pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(
        "Knock, then connect (raw SYN knocks, then connect() from the same source)",
        &[
            "implementation",
            "wait after last knock",
            "runs",
            "opened (daemon log)",
            "connected",
            "at the first SYN",
            "median ms to established",
            "p90 ms",
        ],
    );
    for row in rows {
        let pct = |n: usize| format!("{:.0} %", 100.0 * n as f64 / row.runs.max(1) as f64);
        table.row(vec![
            row.kind.name().to_owned(),
            format!("{} ms", row.delay_ms),
            row.runs.to_string(),
            pct(row.opened),
            pct(row.connected),
            pct(row.first_syn),
            format!("{:.1}", row.median_ms),
            format!("{:.1}", row.p90_ms),
        ]);
    }
    table
}
