//! Every part in order, the tables printed as they come, then the record: markdown and chart.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::measure::Sizes;
use super::report::{self, Table};
use super::{chart, connect, flood, growth, linerate, packet, scan, server};
use crate::shell;

/// How much each part does, full or quick.
pub struct Plan {
    pub quick: bool,
    pub sizes: Sizes,
    pub door_counts: Vec<u16>,
    pub fills: Vec<u32>,
    pub delays: Vec<u64>,
    pub connects: usize,
    pub flood: Duration,
    pub flood_max: u64,
    /// How long each sender and each strangers' flood runs.
    pub burst: Duration,
    pub scans: usize,
    pub scan_rate: u64,
}

impl Plan {
    /// The implementations a flood part runs: all of them in a full run. A quick one, to stay
    /// short, runs each kind of row once across the two parts: knock's closed look in the
    /// first-knock flood (`first_knocks`), its filtered look on the veth's one queue in the
    /// strangers' flood, and with one queue per core in the first-knock flood; knockd in both.
    fn cases(&self, first_knocks: bool) -> Vec<server::Case> {
        use knock_common::settings::Look;
        server::SIDE_BY_SIDE
            .into_iter()
            .filter(|case| {
                let knock = case.kind != server::Kind::Knockd;
                !self.quick
                    || match (first_knocks, knock) {
                        (_, false) => !case.queue_per_core,
                        (true, true) => case.look == Look::Closed || case.queue_per_core,
                        (false, true) => case.look == Look::Filtered && !case.queue_per_core,
                    }
            })
            .collect()
    }

    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                sizes: Sizes {
                    repeat: 20_000,
                    rounds: 3,
                    samples: 200,
                },
                door_counts: vec![1, 64],
                fills: vec![0, 100],
                delays: vec![0, 100],
                connects: 3,
                flood: Duration::from_secs(2),
                flood_max: 3_000_000,
                burst: Duration::from_millis(500),
                scans: 1,
                scan_rate: 20_000,
            }
        } else {
            Self {
                quick,
                sizes: Sizes {
                    repeat: 1_000_000,
                    rounds: 9,
                    samples: 4000,
                },
                door_counts: vec![1, 2, 4, 8, 16, 32, 64],
                fills: vec![0, 25, 50, 75, 90, 100],
                delays: vec![0, 1, 10, 100],
                connects: 100,
                flood: Duration::from_secs(30),
                flood_max: 40_000_000,
                burst: Duration::from_secs(5),
                scans: 30,
                scan_rate: 50_000,
            }
        }
    }
}

pub fn run(quick: bool, packets_only: bool) -> anyhow::Result<()> {
    if !shell::is_root() {
        bail!("the benchmarks load XDP programs and build network namespaces: run as root");
    }
    let started = Instant::now();
    let plan = Plan::new(quick);
    let mut tables: Vec<Table> = Vec::new();
    let mut data = String::new();
    let environment = report::environment();
    for (key, value) in &environment {
        eprintln!("{key}: {value}");
    }

    part("1. per-packet cost");
    let load = report::load();
    let rows = packet::measure(plan.sizes)?;
    let mut table = packet::table(&rows);
    table.note(format!(
        "Load average (1 min) before and after: {load}, {}.",
        report::load()
    ));
    show(&table);
    if packets_only {
        return Ok(());
    }
    tables.push(table);
    for row in &rows {
        let _ = writeln!(
            data,
            "packet\t{}{}\t{}\t{:.1}\t{:.1}",
            row.class,
            if row.mode.is_empty() {
                String::new()
            } else {
                format!(", {}", row.mode)
            },
            if row.v6 { "v6" } else { "v4" },
            row.timing.baseline_ns,
            row.timing.knock_ns
        );
    }

    let binary = knock_user_binary(quick)?;
    part("2. knock, then connect");
    let load = report::load();
    let rows = connect::measure(&binary, &plan.delays, plan.connects)?;
    let mut table = connect::table(&rows);
    table.note(loads(&load));
    show(&table);
    tables.push(table);

    part("3. line rate: senders");
    let load = report::load();
    let rows = linerate::senders(plan.burst, plan.flood_max)?;
    let best = linerate::Best::of(&rows);
    let mut table = linerate::senders_table(&rows);
    table.note(loads(&load));
    show(&table);
    tables.push(table);

    part("3. line rate: strangers' SYNs to SSH");
    let load = report::load();
    let rows = linerate::strangers(
        &binary,
        best,
        &plan.cases(false),
        plan.burst * 2,
        plan.flood_max,
    )?;
    let mut table = linerate::strangers_table(&rows);
    table.note(best.describe());
    table.note(loads(&load));
    show(&table);
    tables.push(table);

    part("3. flood of first knocks");
    let load = report::load();
    let rows = flood::measure(&binary, best, &plan.cases(true), plan.flood, plan.flood_max)?;
    let mut table = flood::table(&rows);
    table.note(best.describe());
    table.note(loads(&load));
    show(&table);
    tables.push(table);

    part("4. port scans");
    let load = report::load();
    let rows = scan::measure(&binary, plan.scans, plan.scan_rate)?;
    let mut table = scan::table(&rows);
    table.note(loads(&load));
    show(&table);
    tables.push(table);

    part("5. cost growth");
    let load = report::load();
    let doors = growth::doors(plan.sizes, &plan.door_counts)?;
    let mut table = growth::table(
        "Cost growth with the number of doors (IPv4, overhead over the empty program, ns)",
        "doors",
        &doors,
    );
    table.note(format!(
        "Load average (1 min) before and after: {load}, {}.",
        report::load()
    ));
    show(&table);
    tables.push(table);
    let load = report::load();
    let fills = growth::progress(plan.sizes, 16384, &plan.fills)?;
    let mut table = growth::table(
        "Cost growth with the progress map's occupancy (16384 entries; overhead, ns)",
        "occupancy %",
        &fills,
    );
    table.note(format!(
        "Load average (1 min) before and after: {load}, {}.",
        report::load()
    ));
    show(&table);
    tables.push(table);
    for p in doors.iter().chain(&fills) {
        let _ = writeln!(
            data,
            "growth\t{}\t{}\t{:.1}\t{:.1}\t{:.1}\t{:.1}",
            p.series, p.x, p.unrelated, p.gate, p.first, p.step
        );
    }

    let elapsed = started.elapsed();
    record(&plan, &environment, &tables, &data, elapsed)
}

/// The daemon for the lab parts: a release build for the record, the debug build (which the
/// tests have already built) for a quick run.
fn knock_user_binary(quick: bool) -> anyhow::Result<PathBuf> {
    let mut command = shell::cargo();
    command.args(["build", "--quiet", "-p", "knock-user"]);
    if !quick {
        command.arg("--release");
    }
    shell::run(&mut command)?;
    let path = shell::target_dir()
        .join(if quick { "debug" } else { "release" })
        .join("knock-user");
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

fn loads(before: &str) -> String {
    format!(
        "Load average (1 min) before and after: {before}, {}.",
        report::load()
    )
}

fn part(name: &str) {
    eprintln!("\n== bench: {name}");
}

fn show(table: &Table) {
    println!("\n{}", table.markdown());
}

/// Writes the markdown and the chart: into docs/ for a full run, target/bench/ for a quick one.
fn record(
    plan: &Plan,
    environment: &[(String, String)],
    tables: &[Table],
    data: &str,
    elapsed: std::time::Duration,
) -> anyhow::Result<()> {
    let scratch = shell::target_dir().join("bench");
    std::fs::create_dir_all(&scratch)?;
    let out: PathBuf = if plan.quick {
        scratch.clone()
    } else {
        shell::root().join("docs")
    };
    let data_path = scratch.join(if plan.quick {
        "data-quick.tsv"
    } else {
        "data.tsv"
    });
    std::fs::write(&data_path, data)?;
    let png = out.join("bench.png");
    let environment_line = environment
        .iter()
        .filter(|(k, _)| k == "kernel" || k == "CPU")
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    chart::draw(&data_path, &png, &environment_line).context("drawing the chart")?;
    let mut text = String::from(
        "# Benchmarks\n\n<!-- Written by `cargo xtask bench`; edit xtask/bench/methods.md and \
         xtask/src/bench/ instead. -->\n\n",
    );
    let _ = writeln!(
        text,
        "Measured {} in {:.0} s{}.\n",
        environment
            .iter()
            .find(|(k, _)| k == "date")
            .map_or("?", |(_, v)| v.as_str()),
        elapsed.as_secs_f64(),
        if plan.quick {
            " (quick mode: small samples, not for quoting)"
        } else {
            ""
        }
    );
    text.push_str("| | |\n| --- | --- |\n");
    for (key, value) in environment {
        let _ = writeln!(text, "| {key} | {value} |");
    }
    text.push_str("\n![per-packet cost and growth](bench.png)\n\n");
    for table in tables {
        text.push_str(&table.markdown());
        text.push('\n');
    }
    text.push_str(include_str!("../../bench/methods.md"));
    let md = out.join("bench.md");
    std::fs::write(&md, text)?;
    eprintln!(
        "\nbench: wrote {} and {} in {:.0} s",
        md.display(),
        png.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
