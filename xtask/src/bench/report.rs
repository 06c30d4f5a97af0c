//! Tables, targets, and the machine the numbers come from.

use std::fmt::Write as _;
use std::process::Command;

use crate::shell::output;

/// A markdown table with a title and an optional note under it.
pub struct Table {
    pub title: String,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: &str, head: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        let _ = writeln!(out, "| {} |", self.head.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            self.head.iter().map(|_| " --- |").collect::<String>()
        );
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        for note in &self.notes {
            let _ = write!(out, "\n{note}\n");
        }
        out
    }
}

/// The targets set for knock on these machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    FastPath,
    /// A stranger's new connection to a protected port, refused.
    Refused,
    /// A new connection to a protected port with the door open (right after knocking too).
    Admitted,
    Knock,
    Spa,
}

impl Goal {
    pub const fn limit_ns(self) -> f64 {
        match self {
            Self::FastPath => 5.0,
            Self::Refused => 20.0,
            Self::Admitted => 50.0,
            Self::Knock => 250.0,
            Self::Spa => 1000.0,
        }
    }

    pub const fn describe(self) -> &'static str {
        match self {
            Self::FastPath => "fast path <= 5",
            Self::Refused => "refused <= 20",
            Self::Admitted => "admitted <= 50",
            Self::Knock => "knock <= 250",
            Self::Spa => "SPA <= 1000",
        }
    }
}

/// The median of a non-empty sample; NaN for an empty one.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The 90th percentile, by nearest rank.
pub fn p90(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (values.len() * 9).div_ceil(10).max(1) - 1;
    values[rank]
}

/// The one-minute load average now.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Kernel, CPU, cores, the BPF switches that change timings, knockd's version and the commit.
pub fn environment() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".into());
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    };
    let run = |program: &str, args: &[&str]| {
        output(Command::new(program).args(args))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let knockd = Command::new("/usr/sbin/knockd")
        .arg("-V")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            // The first line names the version; the copyright below it would break the table.
            text.trim().lines().next().unwrap_or("?").to_owned()
        })
        .unwrap_or_else(|_| "?".into());
    vec![
        ("kernel".into(), run("uname", &["-srm"])),
        ("CPU".into(), cpu),
        ("cores".into(), run("nproc", &[])),
        (
            "virtualization".into(),
            run("systemd-detect-virt", &[]).replace('?', "none known"),
        ),
        (
            "BPF JIT".into(),
            format!(
                "bpf_jit_enable = {}, bpf_stats_enabled = {}",
                read("/proc/sys/net/core/bpf_jit_enable"),
                read("/proc/sys/kernel/bpf_stats_enabled")
            ),
        ),
        ("knockd".into(), knockd),
        (
            "knock commit".into(),
            run(
                "git",
                &[
                    "-C",
                    &crate::shell::root().to_string_lossy(),
                    "rev-parse",
                    "--short",
                    "HEAD",
                ],
            ),
        ),
        ("date".into(), run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
    ]
}
