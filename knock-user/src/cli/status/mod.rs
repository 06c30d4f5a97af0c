//! `knock-user status`: what the kernel is doing, read from the pinned maps, so it works from
//! any shell while the daemon runs, and while it does not.

use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::{HashMap, MapData, PerCpuArray};
use knock_common::ban::Strikes;
use knock_common::gate::Pass;
use knock_common::progress::Progress;
use knock_common::status::DoorName;
use knock_common::{Addr, Door, maps};
use serde::Serialize;

mod report;

pub use report::{prometheus, text};

use crate::kernel::pins::{self, StateDir, StateError};
use crate::kernel::{modes_name, read};
use crate::system::clock;
use crate::system::proc::is_knock_daemon;

/// One state directory's view.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub state_dir: String,
    /// Every guarded interface, attached or not.
    pub interfaces: Vec<String>,
    /// The guarded interfaces the program is not attached to: gone, or not there yet (a
    /// daemon attaches to them as soon as they appear).
    pub missing: Vec<String>,
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
    /// While the daemon runs a trial: when it undoes itself unless confirmed (Unix time, s).
    pub trial_until_unix_s: Option<u64>,
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
        mode: modes_name(info.mode).to_owned(),
        started_unix_s: info.started_unix_s,
        trial_until_unix_s: (info.trial_until_unix_s != 0)
            .then_some(u64::from(info.trial_until_unix_s)),
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

    let mut open = Vec::new();
    let mut gate_entries = [0; 2];
    for (entries, map) in gate_entries
        .iter_mut()
        .zip([maps::GATE, maps::GATE_RESERVE])
    {
        let gate: HashMap<MapData, Addr, Pass> = hash(dir, map)?;
        for (source, pass) in gate.iter().filter_map(Result::ok) {
            *entries += 1;
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
    let interfaces = dir.guarded_interfaces();
    Ok(Snapshot {
        state_dir: dir.path().display().to_string(),
        missing: interfaces
            .iter()
            .filter(|iface| !dir.is_attached(iface))
            .cloned()
            .collect(),
        interfaces,
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
            fill(maps::GATE, gate_entries[0]),
            fill(maps::GATE_RESERVE, gate_entries[1]),
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

/// Which reports `knock-user status` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

/// The report of the state directories under `root` (those guarding `iface`, or all), written
/// to `output` (atomically) or stdout. Fails, after writing the report, when nothing is
/// attached or a guarded interface is missing.
pub fn run(
    root: &Path,
    iface: Option<&str>,
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let snapshots = pins::select(root, iface)
        .iter()
        .map(snapshot)
        .collect::<Result<Vec<_>, _>>()?;
    let report = match format {
        Format::Json => serde_json::to_string_pretty(&snapshots)? + "\n",
        Format::Prometheus => prometheus(&snapshots),
        Format::Text => snapshots.iter().map(text).collect(),
    };
    match output {
        Some(path) => write_atomically(path, &report)?,
        None => print!("{report}"),
    }
    if snapshots.is_empty() {
        anyhow::bail!("{}", nothing_attached(root, iface));
    }
    let missing: Vec<&str> = snapshots
        .iter()
        .flat_map(|s| &s.missing)
        .filter(|m| iface.is_none_or(|i| i == m.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} missing: the program is not attached there (a running daemon attaches as soon \
             as an interface of that name appears)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// What `status` and `stop` say when no daemon's state is found.
pub fn nothing_attached(root: &Path, iface: Option<&str>) -> String {
    format!(
        "nothing is attached{}: no pinned state under {} (a daemon run with --ephemeral, or \
         in another mount namespace, pins nothing there)",
        iface.map_or_else(String::new, |i| format!(" to {i}")),
        root.display()
    )
}

/// Readers (node_exporter) never see half a file.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let temporary = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&temporary, text)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| {
        format!(
            "cannot rename {} to {}",
            temporary.display(),
            path.display()
        )
    })
}
