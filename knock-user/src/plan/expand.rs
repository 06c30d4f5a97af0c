//! Rotating doors as the kernel sees them: the door's own entry (which holds its protected ports
//! and takes SPA) plus one instance per period in the accepted window, the previous, the current
//! and the next, so a client whose clock is a little off still gets in. Each instance works once:
//! the program empties it when it opens the door, and instances already used stay empty here.

use std::collections::BTreeSet;

use crate::config::{Config, DoorConfig};

/// Periods before and after the current one whose sequences are accepted.
const NEIGHBOURS: u64 = 1;

/// The configuration with every rotating door expanded for Unix time `now_s`.
pub fn expand(config: &Config, now_s: u64, used: &BTreeSet<(String, u64)>) -> Config {
    let mut expanded = config.clone();
    expanded.doors.clear();
    for door in &config.doors {
        let Some(secret) = &door.secret else {
            expanded.doors.push(door.clone());
            continue;
        };
        let current = secret.period_at(now_s);
        expanded.doors.push(door.clone());
        for period in current.saturating_sub(NEIGHBOURS)..=current + NEIGHBOURS {
            let mut instance = DoorConfig {
                period: Some(period),
                protect: Vec::new(),
                spa: false,
                secret_file: None,
                ..door.clone()
            };
            instance.sequence = if used.contains(&(door.name.clone(), period)) {
                Vec::new()
            } else {
                secret.sequence(period)
            };
            expanded.doors.push(instance);
        }
    }
    expanded
}

/// When, in Unix seconds, the window of some rotating door moves next.
pub fn next_change(config: &Config, now_s: u64) -> Option<u64> {
    config
        .doors
        .iter()
        .filter_map(|d| d.secret.as_ref())
        .map(|s| (s.period_at(now_s) + 1) * s.period_s.max(1))
        .min()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::rotate::Secret;

    fn config_with_rotating_door() -> Config {
        let mut config = crate::config::parse(
            Path::new("t"),
            "[openSSH]\nsequence = 1\n[static]\nsequence = 2\n",
        )
        .unwrap();
        config.doors[0].sequence.clear();
        config.doors[0].secret = Some(Secret::new("openSSH", [7; 32], BTreeSet::new()));
        config
    }

    #[test]
    fn a_rotating_door_becomes_its_entry_and_three_periods() {
        let config = config_with_rotating_door();
        let expanded = expand(&config, 3000, &BTreeSet::new());
        let keys: Vec<String> = expanded.doors.iter().map(DoorConfig::key).collect();
        assert_eq!(
            keys,
            [
                "openSSH",
                "openSSH@99",
                "openSSH@100",
                "openSSH@101",
                "static"
            ]
        );
        let secret = config.doors[0].secret.as_ref().unwrap();
        assert_eq!(expanded.doors[2].sequence, secret.sequence(100));
        assert!(
            expanded.doors[2].protect.is_empty(),
            "the entry holds the protected ports"
        );
        assert_eq!(expanded.doors[0].protect, config.doors[0].protect);
    }

    #[test]
    fn a_used_period_stays_empty() {
        let config = config_with_rotating_door();
        let used: BTreeSet<(String, u64)> = [("openSSH".to_owned(), 100)].into();
        let expanded = expand(&config, 3000, &used);
        assert!(expanded.doors[2].sequence.is_empty());
        assert!(!expanded.doors[3].sequence.is_empty());
    }

    #[test]
    fn the_window_moves_at_the_next_period_boundary() {
        let config = config_with_rotating_door();
        assert_eq!(next_change(&config, 3010), Some(3030));
    }
}
