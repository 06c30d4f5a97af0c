//! `knock-user status`: what the kernel is doing, read from the pinned maps, so it works from
//! any shell while the daemon runs, and while it does not.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aya::maps::{HashMap, MapData, PerCpuArray};
use knock_common::ban::Strikes;
use knock_common::gate::Pass;
use knock_common::progress::Progress;
use knock_common::status::DoorName;
use knock_common::{Addr, Door, maps};
use serde::Serialize;

use crate::kernel::pins::{StateDir, StateError, is_knock_daemon};
use crate::kernel::{AttachMode, read};
use crate::system::clock;

/// One state directory's view.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub state_dir: String,
    pub interfaces: Vec<String>,
    pub daemon: Option<DaemonView>,
    pub doors: Vec<DoorView>,
    pub in_progress: Vec<AttemptView>,
    pub open: Vec<OpenView>,
    pub banned: Vec<BanView>,
    pub counters: BTreeMap<String, u64>,
    pub maps: Vec<MapFill>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DaemonView {
    pub pid: u32,
    /// Whether that process still runs; when not, the kernel guards alone.
    pub running: bool,
    pub mode: String,
    pub started_unix_s: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DoorView {
    pub id: u8,
    pub name: String,
    pub steps: u8,
    pub seq_timeout_s: f64,
    pub open_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttemptView {
    pub source: String,
    pub door: String,
    pub stage: u8,
    pub steps: u8,
    pub age_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpenView {
    pub source: String,
    pub door: String,
    pub left_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BanView {
    pub source: String,
    pub left_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MapFill {
    pub map: String,
    pub entries: u32,
    pub capacity: u32,
}

/// Reads a state directory.
pub fn snapshot(dir: &StateDir) -> Result<Snapshot, StateError> {
    let now = clock::monotonic_ns();
    let doors = doors(dir)?;
    let name_of = |id: u8| {
        doors
            .get(usize::from(id))
            .and_then(|(_, name)| name.clone())
            .unwrap_or_else(|| format!("door#{id}"))
    };
    let daemon = dir.daemon().map(|info| DaemonView {
        pid: info.pid,
        running: is_knock_daemon(info.pid),
        mode: AttachMode::from_code(info.mode)
            .map_or("?", AttachMode::name)
            .to_owned(),
        started_unix_s: info.started_unix_s,
    });

    let progress: HashMap<MapData, Addr, Progress> = hash(dir, maps::PROGRESS)?;
    let mut in_progress = Vec::new();
    let mut progress_entries = 0;
    for (source, value) in progress.iter().filter_map(Result::ok) {
        progress_entries += 1;
        for attempt in value.attempts.iter().filter(|a| !a.is_free()) {
            let Some((door, _)) = doors.get(usize::from(attempt.door)) else {
                continue;
            };
            let age = now.saturating_sub(attempt.started_ns);
            if age > door.seq_timeout_ns || attempt.revision != door.revision {
                continue;
            }
            in_progress.push(AttemptView {
                source: source.ip().to_string(),
                door: name_of(attempt.door),
                stage: attempt.stage,
                steps: door.step_count,
                age_s: seconds(age),
            });
        }
    }

    let gate: HashMap<MapData, Addr, Pass> = hash(dir, maps::GATE)?;
    let mut open = Vec::new();
    let mut gate_entries = 0;
    for (source, pass) in gate.iter().filter_map(Result::ok) {
        gate_entries += 1;
        for (door, expires) in pass.door.iter().zip(pass.expires_ns) {
            if expires > now {
                open.push(OpenView {
                    source: source.ip().to_string(),
                    door: name_of(*door),
                    left_s: seconds(expires - now),
                });
            }
        }
    }

    let bans: HashMap<MapData, Addr, Strikes> = hash(dir, maps::BANS)?;
    let mut banned = Vec::new();
    let mut ban_entries = 0;
    for (source, strikes) in bans.iter().filter_map(Result::ok) {
        ban_entries += 1;
        if strikes.is_banned_at(now) {
            banned.push(BanView {
                source: source.ip().to_string(),
                left_s: seconds(strikes.banned_until_ns - now),
            });
        }
    }
    let nonces: HashMap<MapData, [u8; 16], u8> = hash(dir, maps::NONCES)?;
    let nonce_entries = nonces.keys().filter(Result::is_ok).count();

    let fill = |map: &str, entries: usize| MapFill {
        map: map.to_owned(),
        entries: u32::try_from(entries).unwrap_or(u32::MAX),
        capacity: dir.capacity(map).unwrap_or(0),
    };
    Ok(Snapshot {
        state_dir: dir.path().display().to_string(),
        interfaces: dir.linked_interfaces(),
        daemon,
        doors: doors
            .iter()
            .enumerate()
            .filter_map(|(id, (door, name))| {
                Some(DoorView {
                    id: id as u8,
                    name: name.clone()?,
                    steps: door.step_count,
                    seq_timeout_s: seconds(door.seq_timeout_ns),
                    open_s: seconds(door.open_ns),
                })
            })
            .collect(),
        in_progress,
        open,
        banned,
        counters: counters(dir)?,
        maps: vec![
            fill(maps::PROGRESS, progress_entries),
            fill(maps::GATE, gate_entries),
            fill(maps::BANS, ban_entries),
            fill(maps::NONCES, nonce_entries),
        ],
    })
}

fn doors(dir: &StateDir) -> Result<Vec<(Door, Option<String>)>, StateError> {
    Ok(read::doors(
        &dir.array::<Door>(maps::DOORS)?,
        &dir.array::<DoorName>(maps::NAMES)?,
    ))
}

fn counters(dir: &StateDir) -> Result<BTreeMap<String, u64>, StateError> {
    let path = dir.map_path(maps::COUNTERS);
    let map = dir.map(maps::COUNTERS)?;
    let counters: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(map).map_err(|source| StateError::Map { path, source })?;
    Ok(read::counters(&counters)
        .into_iter()
        .map(|(counter, value)| (counter.label().to_owned(), value))
        .collect())
}

fn hash<K: aya::Pod, V: aya::Pod>(
    dir: &StateDir,
    name: &str,
) -> Result<HashMap<MapData, K, V>, StateError> {
    let path = dir.map_path(name);
    let map = dir.map(name)?;
    HashMap::try_from(map).map_err(|source| StateError::Map { path, source })
}

fn seconds(ns: u64) -> f64 {
    // Tenths of a second are all a reader needs.
    (ns / 100_000_000) as f64 / 10.0
}

/// The human-readable report.
pub fn text(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let s = snapshot;
    let _ = writeln!(
        out,
        "{} (state in {})",
        if s.interfaces.is_empty() {
            "no interface".to_owned()
        } else {
            s.interfaces.join(", ")
        },
        s.state_dir
    );
    match &s.daemon {
        Some(d) if d.running => {
            let up = clock::unix_s().saturating_sub(d.started_unix_s);
            let _ = writeln!(
                out,
                "  daemon: pid {}, {} XDP, up {}",
                d.pid,
                d.mode,
                duration(up)
            );
        }
        Some(d) => {
            let _ = writeln!(
                out,
                "  daemon: not running (last pid {}); the kernel guards alone, in {} XDP: \
                 log lines and commands wait for the next daemon",
                d.pid, d.mode
            );
        }
        None => {
            let _ = writeln!(out, "  daemon: never recorded");
        }
    }
    let _ = writeln!(out, "  doors: {}", s.doors.len());
    for door in &s.doors {
        let _ = writeln!(
            out,
            "    {:<20} {} step(s), sequence timeout {} s, open {} s",
            door.name, door.steps, door.seq_timeout_s, door.open_s
        );
    }
    let _ = writeln!(out, "  in progress: {}", s.in_progress.len());
    for a in &s.in_progress {
        let _ = writeln!(
            out,
            "    {:<40} {:<20} stage {}/{}, {} s ago",
            a.source, a.door, a.stage, a.steps, a.age_s
        );
    }
    let _ = writeln!(out, "  open: {}", s.open.len());
    for o in &s.open {
        let _ = writeln!(
            out,
            "    {:<40} {:<20} {} s left",
            o.source, o.door, o.left_s
        );
    }
    if !s.banned.is_empty() {
        let _ = writeln!(out, "  banned: {}", s.banned.len());
        for b in &s.banned {
            let _ = writeln!(out, "    {:<40} {} s left", b.source, b.left_s);
        }
    }
    let moved: Vec<String> = s
        .counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        out,
        "  counters: {}",
        if moved.is_empty() {
            "all zero".to_owned()
        } else {
            moved.join(", ")
        }
    );
    let fill: Vec<String> = s
        .maps
        .iter()
        .map(|m| format!("{} {}/{}", m.map, m.entries, m.capacity))
        .collect();
    let _ = writeln!(out, "  maps: {}", fill.join(", "));
    out
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// node_exporter's textfile format: counters and gauges labelled by the guarded interface(s).
pub fn prometheus(snapshots: &[Snapshot]) -> String {
    let mut out = String::new();
    let series: [(&str, &str, &str); 6] = [
        (
            "knock_packets_total",
            "counter",
            "Packets by outcome, since the program was loaded.",
        ),
        (
            "knock_daemon_running",
            "gauge",
            "1 if the daemon behind the program runs.",
        ),
        ("knock_doors_open", "gauge", "Open (source, door) pairs."),
        (
            "knock_attempts_in_progress",
            "gauge",
            "Knock attempts under way.",
        ),
        (
            "knock_sources_banned",
            "gauge",
            "Sources ignored for failing too often.",
        ),
        (
            "knock_map_entries",
            "gauge",
            "Entries in each state map; see knock_map_capacity.",
        ),
    ];
    for (name, kind, help) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in snapshots {
            let guard = escape(&s.interfaces.join(","));
            match name {
                "knock_packets_total" => {
                    for (outcome, value) in &s.counters {
                        let _ = writeln!(
                            out,
                            "{name}{{guard=\"{guard}\",outcome=\"{outcome}\"}} {value}"
                        );
                    }
                }
                "knock_daemon_running" => {
                    let up = s.daemon.as_ref().is_some_and(|d| d.running);
                    let _ = writeln!(out, "{name}{{guard=\"{guard}\"}} {}", u8::from(up));
                }
                "knock_doors_open" => {
                    let _ = writeln!(out, "{name}{{guard=\"{guard}\"}} {}", s.open.len());
                }
                "knock_attempts_in_progress" => {
                    let _ = writeln!(out, "{name}{{guard=\"{guard}\"}} {}", s.in_progress.len());
                }
                "knock_sources_banned" => {
                    let _ = writeln!(out, "{name}{{guard=\"{guard}\"}} {}", s.banned.len());
                }
                _ => {
                    for m in &s.maps {
                        let _ = writeln!(
                            out,
                            "{name}{{guard=\"{guard}\",map=\"{}\"}} {}",
                            m.map, m.entries
                        );
                    }
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP knock_map_capacity Entries each state map can hold.\n# TYPE knock_map_capacity gauge"
    );
    for s in snapshots {
        let guard = escape(&s.interfaces.join(","));
        for m in &s.maps {
            let _ = writeln!(
                out,
                "knock_map_capacity{{guard=\"{guard}\",map=\"{}\"}} {}",
                m.map, m.capacity
            );
        }
    }
    out
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            state_dir: "/sys/fs/bpf/knock/eth0".into(),
            interfaces: vec!["eth0".into()],
            daemon: Some(DaemonView {
                pid: 42,
                running: false,
                mode: "native".into(),
                started_unix_s: 0,
            }),
            doors: vec![DoorView {
                id: 0,
                name: "openSSH".into(),
                steps: 3,
                seq_timeout_s: 5.0,
                open_s: 10.0,
            }],
            in_progress: vec![AttemptView {
                source: "198.51.100.2".into(),
                door: "openSSH".into(),
                stage: 2,
                steps: 3,
                age_s: 1.5,
            }],
            open: vec![OpenView {
                source: "2001:db8::2".into(),
                door: "openSSH".into(),
                left_s: 7.2,
            }],
            banned: Vec::new(),
            counters: [
                ("doors_opened".to_owned(), 4),
                ("gate_dropped".to_owned(), 0),
            ]
            .into_iter()
            .collect(),
            maps: vec![MapFill {
                map: "GATE".into(),
                entries: 1,
                capacity: 4096,
            }],
        }
    }

    #[test]
    fn the_text_report_names_sources_doors_stages_and_time_left() {
        let text = text(&snapshot());
        assert!(text.contains("daemon: not running (last pid 42)"), "{text}");
        assert!(text.contains("198.51.100.2"), "{text}");
        assert!(text.contains("stage 2/3, 1.5 s ago"), "{text}");
        assert!(text.contains("7.2 s left"), "{text}");
        assert!(text.contains("counters: doors_opened 4\n"), "{text}");
        assert!(text.contains("maps: GATE 1/4096"), "{text}");
    }

    #[test]
    fn the_prometheus_report_has_one_sample_per_counter_and_typed_series() {
        let text = prometheus(&[snapshot()]);
        assert!(
            text.contains("# TYPE knock_packets_total counter"),
            "{text}"
        );
        assert!(
            text.contains("knock_packets_total{guard=\"eth0\",outcome=\"doors_opened\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("knock_daemon_running{guard=\"eth0\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("knock_doors_open{guard=\"eth0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("knock_map_capacity{guard=\"eth0\",map=\"GATE\"} 4096"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(series.starts_with("knock_"), "{line}");
        }
    }

    #[test]
    fn the_json_report_parses_back() {
        let json = serde_json::to_string(&[snapshot()]).expect("serialises");
        let value: serde_json::Value = serde_json::from_str(&json).expect("parses");
        assert_eq!(value[0]["open"][0]["source"], "2001:db8::2");
        assert_eq!(value[0]["daemon"]["running"], false);
    }
}
