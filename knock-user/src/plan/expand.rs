//! Rotating doors as the kernel sees them: the door's own entry (which holds its protected ports
//! and takes SPA) plus one instance per period in the accepted window, the previous, the current
//! and the next, so a client whose clock is a little off still gets in. Each instance works once:
//! the program empties it when it opens the door, and instances already used stay empty here.
//! A period whose sequence would knock on a protected port, the SPA port or a port the host
//! serves stays empty too: a knock there would be a connection or a datagram to a real
//! service (or the gate), and replies to the host's own traffic could complete it.

use std::collections::BTreeSet;

use knock_common::ProtoPort;

use crate::config::{Config, DoorConfig};

/// Periods before and after the current one whose sequences are accepted.
const NEIGHBOURS: u64 = 1;

/// The ports no single-use sequence may knock on: every door's protected ports, the SPA port
/// and the ports the host serves.
pub fn forbidden_knocks(config: &Config, served: &BTreeSet<ProtoPort>) -> BTreeSet<ProtoPort> {
    let mut forbidden = served.clone();
    for door in &config.doors {
        forbidden.extend(door.protect.iter().copied());
    }
    if let Some(port) = config.options.spa_port {
        forbidden.insert(ProtoPort::udp(port));
    }
    forbidden
}

/// The configuration with every rotating door expanded for Unix time `now_s`; `served` are the
/// ports the host serves.
pub fn expand(
    config: &Config,
    now_s: u64,
    used: &BTreeSet<(String, u64)>,
    served: &BTreeSet<ProtoPort>,
) -> Config {
    let forbidden = forbidden_knocks(config, served);
    let mut expanded = config.clone();
    expanded.doors.clear();
    for door in &config.doors {
        let Some(secret) = &door.secret else {
            let mut door = door.clone();
            // A one-time line that knocks on a port the host has come to serve stays shut.
            if door.one_time_sequences.is_some()
                && door.sequence.iter().any(|step| forbidden.contains(step))
            {
                door.sequence.clear();
            }
            expanded.doors.push(door);
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
            let sequence = secret.sequence(period);
            instance.sequence = if used.contains(&(door.name.clone(), period))
                || sequence.iter().any(|step| forbidden.contains(step))
            {
                Vec::new()
            } else {
                sequence
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
        let expanded = expand(&config, 3000, &BTreeSet::new(), &BTreeSet::new());
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
    fn a_period_whose_sequence_knocks_on_a_served_protected_or_spa_port_stays_empty() {
        let config = config_with_rotating_door();
        let secret = config.doors[0].secret.clone().unwrap();
        let hit = secret.sequence(100)[1];
        let expanded = expand(&config, 3000, &BTreeSet::new(), &[hit].into());
        assert!(
            expanded.doors[2].sequence.is_empty(),
            "period 100 knocks on {hit:?}"
        );
        assert!(!expanded.doors[3].sequence.is_empty());
        let mut protecting = config.clone();
        protecting.doors[1].protect.push(hit);
        let expanded = expand(&protecting, 3000, &BTreeSet::new(), &BTreeSet::new());
        assert!(expanded.doors[2].sequence.is_empty());
        let mut spa = config.clone();
        spa.options.spa_port = Some(62201);
        assert!(forbidden_knocks(&spa, &BTreeSet::new()).contains(&ProtoPort::udp(62201)));
    }

    #[test]
    fn a_one_time_line_that_knocks_on_a_served_port_leaves_its_door_shut() {
        let mut config = config_with_rotating_door();
        config.doors[1].one_time_sequences = Some("once".into());
        let step = config.doors[1].sequence[0];
        let expanded = expand(&config, 3000, &BTreeSet::new(), &[step].into());
        let door = expanded.doors.iter().find(|d| d.name == "static").unwrap();
        assert!(door.sequence.is_empty());
    }

    #[test]
    fn the_default_rotating_range_avoids_the_ephemeral_ports() {
        let (low, high) = crate::config::rotate::DEFAULT_RANGE;
        assert!(high < 32_768, "Linux's ephemeral ports start at 32768");
        assert!(low >= 1_024);
    }

    #[test]
    fn a_used_period_stays_empty() {
        let config = config_with_rotating_door();
        let used: BTreeSet<(String, u64)> = [("openSSH".to_owned(), 100)].into();
        let expanded = expand(&config, 3000, &used, &BTreeSet::new());
        assert!(expanded.doors[2].sequence.is_empty());
        assert!(!expanded.doors[3].sequence.is_empty());
    }

    #[test]
    fn the_window_moves_at_the_next_period_boundary() {
        let config = config_with_rotating_door();
        assert_eq!(next_change(&config, 3010), Some(3030));
    }
}
