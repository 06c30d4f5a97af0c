//! Single-use sequences in the plan: the tag each one-time line and rotating period is claimed
//! under in the kernel's `SPENT` map (see `knock_common::spent`), and, from the tags the kernel
//! holds (`kernel::Knock::spent`), which one-time line comes next and which rotating periods
//! are used. A restart, a lost OPENED event or a one-time file that cannot be marked changes
//! nothing: what the kernel claimed stays claimed, and the plan never pushes it as new.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use knock_common::ProtoPort;
use knock_common::spent::{ROTATING, Tag, is_rotating};
use sha2::{Digest as _, Sha256};

use crate::config::onetime::Current;
use crate::config::{Config, ConfigError, DoorConfig, ErrorKind, value};

/// The tag a single-use door instance is claimed under, or `None` for a door whose sequence
/// works again and again. A one-time line's tag covers the door's name and the line's ports,
/// not the line's number, so editing the file cannot revive a used sequence; a rotating
/// period's tag covers the door's name, its secret and the period.
pub fn tag(door: &DoorConfig) -> Option<Tag> {
    if let (Some(period), Some(secret)) = (door.period, door.secret.as_ref()) {
        let mut hash = Sha256::new();
        hash.update(b"knock rotating period v1\0");
        hash.update(door.name.as_bytes());
        hash.update(b"\0");
        hash.update(secret.key);
        hash.update(period.to_be_bytes());
        return Some(truncate(&hash.finalize()) | ROTATING);
    }
    door.one_time_sequences
        .as_ref()
        .map(|_| one_time_tag(&door.name, &door.sequence))
}

/// The tag of a one-time sequence of door `name`.
pub fn one_time_tag(name: &str, sequence: &[ProtoPort]) -> Tag {
    let mut hash = Sha256::new();
    hash.update(b"knock one-time sequence v1\0");
    hash.update(name.as_bytes());
    hash.update(b"\0");
    for step in sequence {
        hash.update(step.port.to_be_bytes());
        hash.update([step.proto]);
    }
    truncate(&hash.finalize()) & !ROTATING
}

fn truncate(digest: &[u8]) -> Tag {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The first sequence of a one-time file's text that is neither marked used (`#`, as knockd
/// marks lines) nor claimed in `spent`: the line door `name` waits for next, or `None` when
/// every line is used. A line whose sequence a used line already had is used too.
pub fn next_line(
    path: &Path,
    text: &str,
    name: &str,
    spent: &BTreeSet<Tag>,
) -> Result<Option<Current>, ConfigError> {
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sequence = value::sequence(line).map_err(|message| ConfigError {
            path: path.to_owned(),
            line: index + 1,
            key: None,
            kind: ErrorKind::BadValue(message),
        })?;
        if spent.contains(&one_time_tag(name, &sequence)) {
            continue;
        }
        return Ok(Some(Current {
            line: index + 1,
            sequence,
        }));
    }
    Ok(None)
}

/// The lines of a one-time file's text whose sequence the kernel claimed but that are not
/// marked used: the marks the daemon owes the file.
pub fn unmarked_spent(text: &str, name: &str, spent: &BTreeSet<Tag>) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, raw)| {
            let line = raw.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .filter_map(|(index, raw)| {
            let sequence = value::sequence(raw.trim()).ok()?;
            spent
                .contains(&one_time_tag(name, &sequence))
                .then_some(index + 1)
        })
        .collect()
}

/// The periods of rotating doors, around Unix time `now_s`, whose sequence has been claimed:
/// they must not be pushed again.
pub fn used_periods(config: &Config, now_s: u64, spent: &BTreeSet<Tag>) -> BTreeSet<(String, u64)> {
    let mut used = BTreeSet::new();
    for door in &config.doors {
        let Some(secret) = &door.secret else {
            continue;
        };
        let current = secret.period_at(now_s);
        // The window the daemon pushes (one period either side), and one more back.
        for period in current.saturating_sub(2)..=current + 1 {
            let instance = DoorConfig {
                period: Some(period),
                ..door.clone()
            };
            if tag(&instance).is_some_and(|t| spent.contains(&t)) {
                used.insert((door.name.clone(), period));
            }
        }
    }
    used
}

/// How long a rotating tag is kept after it was claimed: long enough that its period has left
/// every window, even a day-long period's, before the tag is forgotten.
pub fn keep_rotating_ns(config: &Config) -> u64 {
    const DAY_S: u64 = 24 * 3600;
    let longest = config
        .doors
        .iter()
        .filter_map(|d| d.secret.as_ref())
        .map(|s| s.period_s)
        .max()
        .unwrap_or(0);
    DAY_S.max(4 * longest).saturating_mul(1_000_000_000)
}

/// Rotating tags claimed more than `keep_ns` before `now_ns` (monotonic clock): their periods
/// can never be pushed again, so the room they take may go. One-time tags are never stale.
pub fn stale(spent: &BTreeMap<Tag, u64>, now_ns: u64, keep_ns: u64) -> Vec<Tag> {
    spent
        .iter()
        .filter(|(tag, at)| is_rotating(**tag) && now_ns.saturating_sub(**at) > keep_ns)
        .map(|(tag, _)| *tag)
        .collect()
}

#[cfg(test)]
mod tests;
