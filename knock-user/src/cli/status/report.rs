//! The reports of `knock-user status`: text for people, node_exporter's textfile format for
//! Prometheus (JSON comes from serde).

use std::fmt::Write as _;

use super::Snapshot;
use crate::system::clock;

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
    if !s.missing.is_empty() {
        let _ = writeln!(
            out,
            "  missing: {} (not guarded: the interface went away or has not appeared; a running \
             daemon attaches to it as soon as it is there)",
            s.missing.join(", ")
        );
    }
    match &s.daemon {
        Some(d) if d.running => {
            let up = clock::unix_s().saturating_sub(d.started_unix_s);
            let _ = writeln!(
                out,
                "  daemon: pid {}, {}, up {}",
                d.pid,
                phrase(&d.mode),
                duration(up)
            );
            if let Some(until) = d.trial_until_unix_s {
                let _ = writeln!(
                    out,
                    "  trial: undoes itself in {} unless `knock-user confirm` arrives",
                    duration(until.saturating_sub(clock::unix_s()))
                );
            }
        }
        Some(d) => {
            let _ = writeln!(
                out,
                "  daemon: not running (last pid {}); the kernel guards alone ({}): log \
                 lines and commands wait for the next daemon",
                d.pid,
                phrase(&d.mode)
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

/// The record's modes as a phrase: "native XDP", or "not attached".
fn phrase(mode: &str) -> String {
    match mode {
        "none" => "not attached".to_owned(),
        mode => format!("{mode} XDP"),
    }
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
    let series: [(&str, &str, &str); 7] = [
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
        (
            "knock_interface_attached",
            "gauge",
            "1 if the program is attached to the guarded interface, 0 if it is missing.",
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
                "knock_interface_attached" => {
                    for interface in &s.interfaces {
                        let up = !s.missing.contains(interface);
                        let _ = writeln!(
                            out,
                            "{name}{{guard=\"{guard}\",interface=\"{}\"}} {}",
                            escape(interface),
                            u8::from(up)
                        );
                    }
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
    use crate::cli::status::{AttemptView, DaemonView, DoorView, MapFill, OpenView};

    fn snapshot() -> Snapshot {
        Snapshot {
            state_dir: "/sys/fs/bpf/knock/eth0".into(),
            interfaces: vec!["eth0".into(), "ppp0".into()],
            missing: vec!["ppp0".into()],
            daemon: Some(DaemonView {
                pid: 42,
                running: false,
                mode: "native".into(),
                started_unix_s: 0,
                trial_until_unix_s: None,
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
        assert!(text.starts_with("eth0, ppp0 (state in"), "{text}");
        assert!(text.contains("  missing: ppp0 (not guarded"), "{text}");
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
            text.contains("knock_packets_total{guard=\"eth0,ppp0\",outcome=\"doors_opened\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("knock_daemon_running{guard=\"eth0,ppp0\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("knock_interface_attached{guard=\"eth0,ppp0\",interface=\"eth0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("knock_interface_attached{guard=\"eth0,ppp0\",interface=\"ppp0\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("knock_doors_open{guard=\"eth0,ppp0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("knock_map_capacity{guard=\"eth0,ppp0\",map=\"GATE\"} 4096"),
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
        assert_eq!(value[0]["missing"][0], "ppp0");
    }
}
