//! From a configuration to the contents of the kernel's maps: door records, port classes,
//! first-knock masks and guard groups. Pure, so it is tested without a kernel.
//!
//! Door ids are stable across reloads: a door keeps its id as long as its name stays, so
//! attempts and open doors survive a reload; a door whose definition changed gets a new
//! revision, which ends the attempts begun under the old one.

use std::collections::{BTreeMap, BTreeSet};

use knock_common::door::ONCE;
use knock_common::ports::{self, GUARDED, KNOCK, SERVED};
use knock_common::settings::{
    ALWAYS_ALLOWING, EVERY_DOOR, GUARD, HOST_RESETS, IPV4_ONLY, Look, OBSERVING, Settings,
};
use knock_common::{Addr, Door, MAX_DOORS, MAX_GUARDED_PORTS, MAX_STEPS, ProgressRule, ProtoPort};

use crate::config::{Config, DoorConfig};

pub mod desired;
pub mod diff;
pub mod expand;
pub mod record;
pub mod spent;

/// Everything the XDP program needs to know about a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Door records by id; ids without a door hold an empty record.
    pub doors: Vec<Door>,
    /// For each id, the name of its door, if any.
    pub names: Vec<Option<String>>,
    /// The non-zero words of the `PORTS` map, by index.
    pub port_words: BTreeMap<u32, u64>,
    /// For each first knock, the mask of doors it starts.
    pub first_steps: BTreeMap<ProtoPort, u64>,
    /// For each guard group, the mask of doors that open its port; group 0 is unused.
    pub guards: Vec<u64>,
    /// SPA doors by door tag.
    pub spa_doors: BTreeMap<u32, u32>,
    /// SPA client keys by id, with the mask of door ids each opens.
    pub keys: BTreeMap<u32, ([u8; 16], u64)>,
    /// Networks the gate never blocks, as (prefix length over 128 bits, IPv6-mapped address).
    pub always_allow: BTreeSet<(u32, [u8; 16])>,
    /// Where knocks must be sent: the doors' targets, and the host's own addresses, which the
    /// daemon adds with `with_local`.
    pub local: BTreeSet<Addr>,
    pub settings: Settings,
}

/// Program-wide switches from the command line, and what the daemon could set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    /// knockd's `-4`: IPv6 packets are never knocks.
    pub ipv4_only: bool,
    /// `--ports-look`, over the configuration's `Ports_Look`.
    pub look: Option<Look>,
    /// The socket-lookup guard is attached (see `kernel::guard`).
    pub guard: bool,
    /// Refused connection attempts are left to the host's stack and the guard: a guarded
    /// interface is a veth in native mode (see `settings::HOST_RESETS`).
    pub host_resets: bool,
    /// `--observe`: the program judges but drops nothing, and reports what it would drop.
    pub observe: bool,
}

impl Switches {
    /// These switches without the socket-lookup guard: the program drops what it refuses
    /// itself, never leaving it to the host's stack.
    #[must_use]
    pub fn without_guard(self) -> Self {
        Self {
            guard: false,
            host_resets: false,
            ..self
        }
    }

    /// The settings flags that leave refused packets to the host's stack and its guard; none
    /// without a guard, which alone refuses them there.
    fn guard_flags(self) -> u32 {
        match (self.guard, self.host_resets) {
            (false, _) => 0,
            (true, false) => GUARD,
            (true, true) => GUARD | HOST_RESETS,
        }
    }
}

/// What the host's own stack puts into the answers of a closed port, and its ephemeral ports:
/// read from /proc/sys by the daemon (`system::stack`), so the program's resets look like the
/// host's own and the stealth look lets answers to the host's queries in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackFacts {
    pub ttl: u8,
    pub hop_limit: u8,
    pub ephemeral: (u16, u16),
}

impl Default for StackFacts {
    /// Linux's defaults.
    fn default() -> Self {
        Self {
            ttl: 64,
            hop_limit: 64,
            ephemeral: (32768, 60999),
        }
    }
}

/// UDP ports the stealth look always lets in: DHCP's client ports, where the host's leases are
/// renewed (a client may receive there on a raw socket that /proc/net/udp does not list).
pub const STEALTH_ALWAYS_SERVED: [ProtoPort; 2] = [ProtoPort::udp(68), ProtoPort::udp(546)];

impl Plan {
    /// The plan for a first configuration: door ids follow the file's order. `served` are the
    /// ports the host listens on: knocks on them are counted but let through.
    pub fn new(config: &Config, served: &BTreeSet<ProtoPort>, switches: Switches) -> Self {
        let ids: Vec<usize> = (0..config.doors.len()).collect();
        Self::build(config, &ids, &[], served, switches, StackFacts::default())
    }

    /// What an earlier daemon pushed, as far as the next plan needs it: door records and names
    /// by id, read back from the pinned maps. `next` on it keeps each door's id and revision.
    pub fn resumed(kept: &[(Door, Option<String>)]) -> Self {
        Self {
            doors: kept.iter().map(|(door, _)| *door).collect(),
            names: kept.iter().map(|(_, name)| name.clone()).collect(),
            port_words: BTreeMap::new(),
            first_steps: BTreeMap::new(),
            guards: Vec::new(),
            spa_doors: BTreeMap::new(),
            keys: BTreeMap::new(),
            always_allow: BTreeSet::new(),
            local: BTreeSet::new(),
            settings: Settings::default(),
        }
    }

    /// The plan for a configuration that replaces `self`: doors keep their ids by name, and a
    /// door whose record changed gets the next revision.
    pub fn next(&self, config: &Config, served: &BTreeSet<ProtoPort>, switches: Switches) -> Self {
        self.next_on(config, served, switches, StackFacts::default())
    }

    /// [`Self::next`] on a host whose stack answers with `stack`.
    pub fn next_on(
        &self,
        config: &Config,
        served: &BTreeSet<ProtoPort>,
        switches: Switches,
        stack: StackFacts,
    ) -> Self {
        let mut taken: BTreeSet<usize> = BTreeSet::new();
        let mut ids: Vec<Option<usize>> = config
            .doors
            .iter()
            .map(|door| {
                let id = self.id_of(&door.key())?;
                taken.insert(id);
                Some(id)
            })
            .collect();
        // New doors prefer ids nobody used before, so a removed door's id (whose open doors are
        // being closed) is reused last.
        let used_before: BTreeSet<usize> = (0..self.names.len())
            .filter(|id| self.names[*id].is_some())
            .collect();
        let mut fresh = (0..MAX_DOORS).filter(|id| !used_before.contains(id));
        let mut recycled = (0..MAX_DOORS).filter(|id| used_before.contains(id));
        for slot in ids.iter_mut().filter(|slot| slot.is_none()) {
            let id = fresh
                .by_ref()
                .find(|id| !taken.contains(id))
                .or_else(|| recycled.by_ref().find(|id| !taken.contains(id)));
            if let Some(id) = id {
                taken.insert(id);
                *slot = Some(id);
            }
        }
        // The configuration holds at most MAX_DOORS doors, so every door found an id.
        let ids: Vec<usize> = ids.into_iter().flatten().collect();
        Self::build(config, &ids, &self.doors, served, switches, stack)
    }

    fn build(
        config: &Config,
        ids: &[usize],
        previous: &[Door],
        served: &BTreeSet<ProtoPort>,
        switches: Switches,
        stack: StackFacts,
    ) -> Self {
        let len = ids.iter().map(|id| id + 1).max().unwrap_or(0);
        let mut doors = vec![empty_door(); len];
        let mut names = vec![None; len];
        for (door, &id) in config.doors.iter().zip(ids) {
            let mut record = door_record(door);
            record.gate_id = id as u8;
            if let Some(old) = previous.get(id).filter(|old| old.step_count > 0) {
                record.revision = old.revision;
                if !same_definition(old, &record) {
                    record.revision = old.revision.wrapping_add(1);
                }
            }
            doors[id] = record;
            names[id] = Some(door.key());
        }
        // A rotating door's period instances open their door's own entry.
        let mut spa_doors = BTreeMap::new();
        for (door, &id) in config.doors.iter().zip(ids) {
            if door.period.is_some()
                && let Some(canonical) = names.iter().position(|n| n.as_deref() == Some(&door.name))
            {
                doors[id].gate_id = canonical as u8;
            }
            if door.spa && door.period.is_none() {
                spa_doors.insert(knock_common::spa::door_tag(&door.name), id as u32);
            }
        }

        let look = switches.look.unwrap_or(config.options.look);
        let mut classes: BTreeMap<ProtoPort, u8> = BTreeMap::new();
        let mut guarding: BTreeMap<ProtoPort, u64> = BTreeMap::new();
        let mut first_steps: BTreeMap<ProtoPort, u64> = BTreeMap::new();
        let mut strict_doors = 0u64;
        for (id, door) in doors.iter().enumerate().filter(|(_, d)| d.step_count > 0) {
            for step in door.sequence() {
                let class = classes.entry(*step).or_default();
                *class |= KNOCK;
                if served.contains(step) {
                    *class |= SERVED;
                }
            }
            if let Some(first) = door.sequence().first() {
                *first_steps.entry(*first).or_default() |= 1 << id;
            }
            if door.progress_rule() == ProgressRule::Strict {
                strict_doors |= 1 << id;
            }
        }
        // A door whose one-time sequences ran out still guards its ports: nobody can open it.
        for (id, door) in doors.iter().enumerate() {
            if names.get(id).is_some_and(Option::is_some) {
                for port in door.guarded_ports() {
                    *guarding.entry(*port).or_default() |= 1 << id;
                }
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
        // After the groups: a guarded port's group holds the bit, and it counts as a possible
        // first step anyway (see `ports::may_start`).
        for first in first_steps.keys() {
            if let Some(class) = classes.get_mut(first)
                && *class & GUARDED == 0
            {
                *class |= ports::FIRST_STEP;
            }
        }
        let mut port_words: BTreeMap<u32, u64> = BTreeMap::new();
        for (port, class) in &classes {
            let (word, shift) = ports::slot(port.proto, port.port);
            *port_words.entry(word).or_default() |= u64::from(*class) << shift;
        }
        let options = &config.options;
        if look == Look::Stealth {
            stealth_classes(&mut port_words, &classes, served, options, stack.ephemeral);
        }
        let local = config
            .doors
            .iter()
            .filter_map(|d| d.target)
            .map(Addr::from)
            .collect();
        let longest_attempt_s = longest_attempt_s(&doors);
        let longest_open_s = longest_open_s(&doors);
        let keys = config
            .spa_keys
            .iter()
            .map(|key| {
                let doors = if key.doors.is_empty() {
                    EVERY_DOOR
                } else {
                    key.doors
                        .iter()
                        .filter_map(|name| names.iter().position(|n| n.as_deref() == Some(name)))
                        .fold(0, |mask, id| mask | 1 << id)
                };
                (key.id, (key.key, doors))
            })
            .collect();
        Self {
            local,
            doors,
            names,
            port_words,
            first_steps,
            guards,
            spa_doors,
            keys,
            always_allow: options
                .always_allow
                .iter()
                .map(|n| {
                    let mapped = if n.address.is_ipv4() { 96 } else { 0 };
                    (u32::from(n.prefix) + mapped, Addr::from(n.address).octets())
                })
                .collect(),
            settings: Settings {
                strict_doors,
                generation: 0,
                flags: if switches.ipv4_only { IPV4_ONLY } else { 0 }
                    | if switches.observe { OBSERVING } else { 0 }
                    | if options.always_allow.is_empty() {
                        0
                    } else {
                        ALWAYS_ALLOWING
                    }
                    | look.flags()
                    | switches.guard_flags(),
                clock_offset_ns: 0,
                spa_port: options.spa_port.unwrap_or(0),
                ttl: stack.ttl,
                hop_limit: stack.hop_limit,
                spa_window_s: options.spa_window_s,
                ban_limit: options.ban.failures,
                ban_window_s: options.ban.window_s,
                ban_time_s: options.ban.time_s,
                longest_attempt_s,
                recent_tick: 0,
                ephemeral_low: stack.ephemeral.0,
                ephemeral_high: stack.ephemeral.1,
                label_key: 0,
                ban_prefix6: options.ban.prefix6,
                _pad: [0; 3],
                longest_open_s,
                _pad2: 0,
            },
        }
    }

    /// The plan under `switches`' socket-lookup guard: only the settings' guard flags depend
    /// on it.
    #[must_use]
    pub fn with_guard_of(mut self, switches: Switches) -> Self {
        self.settings.flags = self.settings.flags & !(GUARD | HOST_RESETS) | switches.guard_flags();
        self
    }

    /// The plan with the host's own addresses added to where knocks may be sent.
    pub fn with_local(mut self, addresses: &BTreeSet<Addr>) -> Self {
        self.local.extend(addresses.iter().copied());
        self
    }

    /// The id of the door with this name.
    pub fn id_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.as_deref() == Some(name))
    }

    /// The class byte of a port, as the kernel will read it.
    pub fn class_of(&self, port: ProtoPort) -> u8 {
        let (word, shift) = ports::slot(port.proto, port.port);
        self.port_words
            .get(&word)
            .map_or(0, |w| ports::class_in(*w, shift))
    }

    /// The doors of `config` (as expanded for this plan) by kernel id.
    pub fn doors_by_id(&self, config: &Config) -> Vec<Option<DoorConfig>> {
        self.names
            .iter()
            .map(|name| {
                let key = name.as_deref()?;
                config.doors.iter().find(|d| d.key() == key).cloned()
            })
            .collect()
    }

    /// Ids that had a door in `self` and have none in `next`.
    pub fn removed_in(&self, next: &Plan) -> Vec<u8> {
        (0..self.names.len())
            .filter(|&id| {
                self.names[id].is_some() && next.names.get(id).is_none_or(Option::is_none)
            })
            .map(|id| id as u8)
            .collect()
    }
}

/// In the stealth look, every port that is neither served, nor a knock or protected port, nor
/// the SPA port, nor (for UDP) in the host's ephemeral range, gets guard group 0, which opens
/// for no door: new connections and datagrams to it are dropped (see `ports::STEALTHY`).
fn stealth_classes(
    port_words: &mut BTreeMap<u32, u64>,
    classes: &BTreeMap<ProtoPort, u8>,
    served: &BTreeSet<ProtoPort>,
    options: &crate::config::Options,
    ephemeral: (u16, u16),
) {
    let spa = options.spa_port.map(ProtoPort::udp);
    for proto in [
        knock_common::segment::PROTO_TCP,
        knock_common::segment::PROTO_UDP,
    ] {
        for number in 0..=u16::MAX {
            let port = ProtoPort {
                port: number,
                proto,
                _pad: 0,
            };
            let answers_the_host = proto == knock_common::segment::PROTO_UDP
                && (ephemeral.0..=ephemeral.1).contains(&number);
            if classes.contains_key(&port)
                || served.contains(&port)
                || STEALTH_ALWAYS_SERVED.contains(&port)
                || spa == Some(port)
                || answers_the_host
            {
                continue;
            }
            let (word, shift) = ports::slot(proto, number);
            *port_words.entry(word).or_default() |= u64::from(ports::STEALTHY) << shift;
        }
    }
}

/// The longest Seq_Timeout of the doors, in whole seconds rounded up.
fn longest_attempt_s(doors: &[Door]) -> u32 {
    let longest_ns = doors.iter().map(|d| d.seq_timeout_ns).max().unwrap_or(0);
    u32::try_from(longest_ns.div_ceil(1_000_000_000)).unwrap_or(u32::MAX)
}

/// The longest Cmd_Timeout of the doors, in whole seconds rounded up.
fn longest_open_s(doors: &[Door]) -> u32 {
    let longest_ns = doors.iter().map(|d| d.open_ns).max().unwrap_or(0);
    u32::try_from(longest_ns.div_ceil(1_000_000_000)).unwrap_or(u32::MAX)
}

fn empty_door() -> Door {
    Door {
        step_count: 0,
        guarded_count: 0,
        ..Door::new()
    }
}

/// Two records define the same door if everything but the revision matches.
fn same_definition(a: &Door, b: &Door) -> bool {
    Door { revision: 0, ..*a } == Door { revision: 0, ..*b }
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
    if config.one_time_sequences.is_some() || config.period.is_some() {
        door.flags |= ONCE;
        door.spent_tag = spent::tag(config).unwrap_or_default();
    }
    door
}

fn duration_ns(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
