//! From a configuration to the contents of the kernel's maps: door records, port classes and
//! first-knock masks. Pure, so it is tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};

use knock_common::ports::{self, KNOCK, SERVED};
use knock_common::settings::Settings;
use knock_common::{Addr, Door, MAX_GUARDED_PORTS, MAX_STEPS, ProgressRule, ProtoPort};

use crate::config::{Config, DoorConfig};

/// Everything the XDP program needs to know about a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Door records; the index is the door id.
    pub doors: Vec<Door>,
    /// The non-zero words of the `PORTS` map, by index.
    pub port_words: BTreeMap<u32, u64>,
    /// For each first knock, the mask of doors it starts.
    pub first_steps: BTreeMap<ProtoPort, u64>,
    /// For each guard group, the mask of doors that open its port; group 0 is unused.
    pub guards: Vec<u64>,
    pub settings: Settings,
}

impl Plan {
    /// Builds the plan for `config`. `served` are the ports the host listens on: knocks on them
    /// are counted but let through, so the service keeps working.
    pub fn new(config: &Config, served: &BTreeSet<ProtoPort>) -> Self {
        let doors: Vec<Door> = config.doors.iter().map(door_record).collect();
        let mut classes: BTreeMap<ProtoPort, u8> = BTreeMap::new();
        let mut guarding: BTreeMap<ProtoPort, u64> = BTreeMap::new();
        let mut first_steps: BTreeMap<ProtoPort, u64> = BTreeMap::new();
        let mut strict_doors = 0u64;
        for (id, door) in doors.iter().enumerate() {
            for step in door.sequence() {
                let class = classes.entry(*step).or_default();
                *class |= KNOCK;
                if served.contains(step) {
                    *class |= SERVED;
                }
            }
            for port in door.guarded_ports() {
                *guarding.entry(*port).or_default() |= 1 << id;
            }
            if let Some(first) = door.sequence().first() {
                *first_steps.entry(*first).or_default() |= 1 << id;
            }
            if door.progress_rule() == ProgressRule::Strict {
                strict_doors |= 1 << id;
            }
        }
        // Guard groups in port order; the configuration allows at most GUARD_GROUPS - 1 ports.
        let mut guards = vec![0u64; ports::GUARD_GROUPS as usize];
        for (index, (port, doors)) in guarding.iter().enumerate() {
            let group = index + 1;
            if group >= guards.len() {
                break;
            }
            guards[group] = *doors;
            let class = classes.entry(*port).or_default();
            *class = ports::guarded_class(group as u8, *class);
        }
        let mut port_words: BTreeMap<u32, u64> = BTreeMap::new();
        for (port, class) in classes {
            let (word, shift) = ports::slot(port.proto, port.port);
            *port_words.entry(word).or_default() |= u64::from(class) << shift;
        }
        Self {
            doors,
            port_words,
            first_steps,
            guards,
            settings: Settings {
                strict_doors,
                generation: 0,
                _pad: 0,
            },
        }
    }

    /// The class byte of a port, as the kernel will read it.
    pub fn class_of(&self, port: ProtoPort) -> u8 {
        let (word, shift) = ports::slot(port.proto, port.port);
        self.port_words
            .get(&word)
            .map_or(0, |w| ports::class_in(*w, shift))
    }
}

fn door_record(config: &DoorConfig) -> Door {
    let mut door = Door::new();
    for (slot, step) in door
        .steps
        .iter_mut()
        .zip(config.sequence.iter().take(MAX_STEPS))
    {
        *slot = *step;
    }
    door.step_count = config.sequence.len().min(MAX_STEPS) as u8;
    for (slot, port) in door
        .guarded
        .iter_mut()
        .zip(config.protect.iter().take(MAX_GUARDED_PORTS))
    {
        *slot = *port;
    }
    door.guarded_count = config.protect.len().min(MAX_GUARDED_PORTS) as u8;
    if let Some(target) = config.target {
        door.target = Addr::from(target);
        door.has_target = 1;
    }
    door.seq_timeout_ns = duration_ns(config.seq_timeout);
    door.open_ns = duration_ns(config.cmd_timeout);
    door.flags_set = config.tcp_flags.set;
    door.flags_clear = config.tcp_flags.clear;
    door.rule = config.progress_rule() as u8;
    door
}

fn duration_ns(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use knock_common::ports::GUARDED;
    use knock_common::segment::tcp_flags::SYN;

    use super::*;
    use crate::config::parse;

    fn plan_of(text: &str, served: &[ProtoPort]) -> Plan {
        let config = parse(Path::new("test.conf"), text).unwrap();
        Plan::new(&config, &served.iter().copied().collect())
    }

    #[test]
    fn the_guide_door_becomes_one_record_with_its_steps_and_timeouts() {
        let plan = plan_of(
            "[openSSH]\nsequence = 4438,1813,8235\nseq_timeout = 5\ntcpflags = syn\n",
            &[],
        );
        let door = &plan.doors[0];
        assert_eq!(
            door.sequence(),
            [
                ProtoPort::tcp(4438),
                ProtoPort::tcp(1813),
                ProtoPort::tcp(8235)
            ]
        );
        assert_eq!(door.seq_timeout_ns, 5_000_000_000);
        assert_eq!(door.open_ns, 10_000_000_000);
        assert_eq!((door.flags_set, door.flags_clear), (SYN, 0));
        assert_eq!(door.guarded_ports(), [ProtoPort::tcp(22)]);
    }

    #[test]
    fn knock_ports_and_protected_ports_get_their_classes() {
        let plan = plan_of("[d]\nsequence = 7000:udp,8000\n", &[]);
        assert_eq!(plan.class_of(ProtoPort::udp(7000)), KNOCK);
        assert_eq!(plan.class_of(ProtoPort::tcp(7000)), 0);
        assert_eq!(plan.class_of(ProtoPort::tcp(8000)), KNOCK);
        assert_eq!(plan.class_of(ProtoPort::tcp(22)) & GUARDED, GUARDED);
        assert_eq!(plan.class_of(ProtoPort::tcp(80)), 0);
    }

    #[test]
    fn a_served_knock_port_is_marked_to_pass() {
        let plan = plan_of("[d]\nsequence = 80,8000\n", &[ProtoPort::tcp(80)]);
        assert_eq!(plan.class_of(ProtoPort::tcp(80)), KNOCK | SERVED);
        assert_eq!(plan.class_of(ProtoPort::tcp(8000)), KNOCK);
    }

    #[test]
    fn doors_sharing_a_first_knock_share_its_mask() {
        let plan = plan_of(
            "[a]\nsequence = 1,2\n[b]\nsequence = 1,3\n[c]\nsequence = 4\n",
            &[],
        );
        assert_eq!(plan.first_steps[&ProtoPort::tcp(1)], 0b011);
        assert_eq!(plan.first_steps[&ProtoPort::tcp(4)], 0b100);
        assert!(!plan.first_steps.contains_key(&ProtoPort::tcp(2)));
    }

    #[test]
    fn each_protected_port_gets_a_guard_group_naming_its_doors() {
        let plan = plan_of(
            "[a]\nsequence = 1\n[b]\nsequence = 2\nprotect = 22, 443\n[c]\nsequence = 3\nprotect = none\n",
            &[],
        );
        let group = |port| ports::guard_group(plan.class_of(port)) as usize;
        assert_eq!(plan.guards[group(ProtoPort::tcp(22))], 0b011);
        assert_eq!(plan.guards[group(ProtoPort::tcp(443))], 0b010);
        assert_ne!(group(ProtoPort::tcp(22)), group(ProtoPort::tcp(443)));
        assert_eq!(plan.guards[0], 0, "group 0 means unguarded");
    }

    #[test]
    fn only_strict_doors_are_in_the_strict_mask() {
        let plan = plan_of(
            "[a]\nsequence = 1\n[b]\nsequence = 2\nprogress = knockd\n",
            &[],
        );
        assert_eq!(plan.settings.strict_doors, 0b01);
    }
}
