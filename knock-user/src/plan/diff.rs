//! The plan-to-map diff, as data: what pushing a plan writes into the kernel's maps and what it
//! removes from them, map by map. Computed here, without a kernel, and tested as data;
//! `kernel::Knock::push` applies it with one generic writer.
//!
//! The diff is taken against what the maps may hold ([`Held`]): exactly the last plan pushed,
//! nothing known (a fresh load), or, after a push that failed halfway, any mix of the plans
//! pushed or tried since the last complete one. Then every entry the next plan wants is written
//! and every entry any of those plans had, and the next one has not, is removed: a revoked SPA
//! key or a removed network never stays in the kernel because a push broke off before it.

use std::collections::{BTreeMap, BTreeSet};

use knock_common::ports::FirstSteps;
use knock_common::settings::SpaKey;
use knock_common::status::DoorName;
use knock_common::{Addr, Door, MAX_DOORS, ProtoPort};

use super::Plan;

/// Changes to one map: entries to put (insert or overwrite) and keys to remove. Arrays cannot
/// lose an entry, so theirs are puts of the empty value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<K, V> {
    pub put: Vec<(K, V)>,
    pub remove: Vec<K>,
}

impl<K, V> Default for Changes<K, V> {
    fn default() -> Self {
        Self {
            put: Vec::new(),
            remove: Vec::new(),
        }
    }
}

impl<K, V> Changes<K, V> {
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.remove.is_empty()
    }

    /// How many entries change.
    pub fn len(&self) -> usize {
        self.put.len() + self.remove.len()
    }
}

/// Every map a push writes, in the order the writer applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapDiff {
    /// `DOORS`, by id.
    pub doors: Changes<u32, Door>,
    /// `NAMES`, by id.
    pub names: Changes<u32, DoorName>,
    pub first_steps: Changes<ProtoPort, FirstSteps>,
    /// `PORTS`, by word.
    pub ports: Changes<u32, u64>,
    /// `GUARDS`, by group.
    pub guards: Changes<u32, u64>,
    pub keys: Changes<u32, SpaKey>,
    /// `SPA_DOORS`: door ids by door tag.
    pub spa_doors: Changes<u32, u32>,
    pub local: Changes<Addr, u8>,
    /// `ALWAYS_ALLOW`: (prefix length over 128 bits, IPv6-mapped address).
    pub always_allow: Changes<(u32, [u8; 16]), u8>,
}

impl MapDiff {
    /// How many entries change, in all maps.
    pub fn len(&self) -> usize {
        self.doors.len()
            + self.names.len()
            + self.first_steps.len()
            + self.ports.len()
            + self.guards.len()
            + self.keys.len()
            + self.spa_doors.len()
            + self.local.len()
            + self.always_allow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the configuration maps may hold, as far as the pusher knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Held {
    /// Nothing known: maps just created (the configuration maps are never pinned), door
    /// records and names pinned by an earlier daemon.
    #[default]
    Unknown,
    /// Exactly what this plan wrote: the last push went through.
    Exactly(Plan),
    /// A push failed halfway: each map may hold entries of any plan pushed or tried since the
    /// last complete push. The plan holds every such key (their values do not matter: all of
    /// the next plan's entries are written).
    Uncertain(Plan),
}

impl Held {
    /// What the maps may hold after a push of `tried` failed halfway through.
    #[must_use]
    pub fn after_failed_push(self, tried: &Plan) -> Self {
        match self {
            Self::Unknown => Self::Uncertain(tried.clone()),
            Self::Exactly(before) | Self::Uncertain(before) => {
                Self::Uncertain(before.with_keys_of(tried))
            }
        }
    }

    /// The plan that was pushed completely last, if the maps hold exactly it.
    pub fn exactly(&self) -> Option<&Plan> {
        match self {
            Self::Exactly(plan) => Some(plan),
            _ => None,
        }
    }
}

impl Plan {
    /// What pushing `self` changes in maps that may hold `held`.
    pub fn diff_from_held(&self, held: &Held) -> MapDiff {
        match held {
            Held::Unknown => self.diff_from(None),
            Held::Exactly(before) => self.diff_from(Some(before)),
            Held::Uncertain(maybe) => {
                // Everything of this plan is written, as into maps of unknown contents; and
                // whatever the maps may still hold that this plan has not goes.
                let mut diff = self.diff_from(None);
                let stale = self.diff_from(Some(maybe));
                diff.first_steps.remove = stale.first_steps.remove;
                diff.keys.remove = stale.keys.remove;
                diff.spa_doors.remove = stale.spa_doors.remove;
                diff.local.remove = stale.local.remove;
                diff.always_allow.remove = stale.always_allow.remove;
                // Words of the port array this plan leaves empty are written empty.
                diff.ports.put.extend(
                    stale
                        .ports
                        .put
                        .into_iter()
                        .filter(|(word, _)| !self.port_words.contains_key(word)),
                );
                // Guard groups past this plan's are emptied.
                let groups = self.guards.len() as u32;
                diff.guards
                    .put
                    .extend((groups..maybe.guards.len() as u32).map(|group| (group, 0)));
                diff
            }
        }
    }

    /// This plan with every key of `other`'s maps added (values from `self` where both have
    /// one): the keys either of them may have left in the kernel.
    fn with_keys_of(mut self, other: &Plan) -> Self {
        for (word, value) in &other.port_words {
            self.port_words.entry(*word).or_insert(*value);
        }
        for (step, doors) in &other.first_steps {
            self.first_steps.entry(*step).or_insert(*doors);
        }
        for (tag, id) in &other.spa_doors {
            self.spa_doors.entry(*tag).or_insert(*id);
        }
        for (id, key) in &other.keys {
            self.keys.entry(*id).or_insert(*key);
        }
        self.always_allow.extend(other.always_allow.iter().copied());
        self.local.extend(other.local.iter().copied());
        if other.guards.len() > self.guards.len() {
            self.guards.resize(other.guards.len(), 0);
        }
        self
    }

    /// What pushing `self` changes in maps that hold `before`. `None` means their contents are
    /// unknown (a fresh load, or maps an earlier daemon pinned): every door and name slot is
    /// written, and every entry of this plan.
    pub fn diff_from(&self, before: Option<&Plan>) -> MapDiff {
        let slots = |plan: Option<&Plan>| -> Vec<(Door, DoorName)> {
            (0..MAX_DOORS)
                .map(|id| {
                    let door = plan
                        .and_then(|p| p.doors.get(id).copied())
                        .unwrap_or_default();
                    let name = plan
                        .and_then(|p| p.names.get(id))
                        .and_then(|n| n.as_deref())
                        .and_then(DoorName::new)
                        .unwrap_or_default();
                    (door, name)
                })
                .collect()
        };
        let now = slots(Some(self));
        let was = before.map(|b| slots(Some(b)));
        let mut diff = MapDiff::default();
        for (id, (door, name)) in now.into_iter().enumerate() {
            let old = was.as_ref().map(|w| w[id]);
            if old.is_none_or(|(d, _)| d != door) {
                diff.doors.put.push((id as u32, door));
            }
            if old.is_none_or(|(_, n)| n != name) {
                diff.names.put.push((id as u32, name));
            }
        }
        diff.first_steps =
            map_changes(before.map(|b| &b.first_steps), &self.first_steps, |doors| {
                FirstSteps { doors: *doors }
            });
        diff.ports = map_changes(before.map(|b| &b.port_words), &self.port_words, |w| *w);
        // Stale words are emptied: the array keeps its slots.
        diff.ports
            .put
            .extend(diff.ports.remove.drain(..).map(|word| (word, 0)));
        let groups = |plan: &Plan| -> BTreeMap<u32, u64> {
            (0..)
                .zip(plan.guards.iter().copied())
                .collect::<BTreeMap<u32, u64>>()
        };
        let guards_before = before.map(groups);
        diff.guards.put = groups(self)
            .into_iter()
            .filter(|(group, doors)| {
                guards_before
                    .as_ref()
                    .is_none_or(|b| b.get(group) != Some(doors))
            })
            .collect();
        diff.keys = map_changes(before.map(|b| &b.keys), &self.keys, |(key, doors)| SpaKey {
            key: *key,
            doors: *doors,
        });
        diff.spa_doors = map_changes(before.map(|b| &b.spa_doors), &self.spa_doors, |id| *id);
        diff.local = set_changes(before.map(|b| &b.local), &self.local);
        diff.always_allow = set_changes(before.map(|b| &b.always_allow), &self.always_allow);
        diff
    }
}

/// Keys that went, and entries that are new or changed.
fn map_changes<K: Ord + Copy, T: PartialEq, V>(
    before: Option<&BTreeMap<K, T>>,
    now: &BTreeMap<K, T>,
    value: impl Fn(&T) -> V,
) -> Changes<K, V> {
    Changes {
        remove: before
            .into_iter()
            .flat_map(|b| b.keys())
            .filter(|key| !now.contains_key(key))
            .copied()
            .collect(),
        put: now
            .iter()
            .filter(|(key, v)| before.is_none_or(|b| b.get(key) != Some(v)))
            .map(|(key, v)| (*key, value(v)))
            .collect(),
    }
}

/// Members that went, and members that are new; each present member maps to 1.
fn set_changes<K: Ord + Copy>(before: Option<&BTreeSet<K>>, now: &BTreeSet<K>) -> Changes<K, u8> {
    Changes {
        remove: before
            .into_iter()
            .flat_map(|b| b.difference(now))
            .copied()
            .collect(),
        put: now
            .iter()
            .filter(|key| before.is_none_or(|b| !b.contains(key)))
            .map(|key| (*key, 1))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use knock_common::ports;

    use super::*;
    use crate::config::parse;
    use crate::plan::Switches;

    /// A configuration whose key file holds one client key.
    fn config(text: &str) -> crate::config::Config {
        let mut config = parse(Path::new("test.conf"), text).unwrap();
        config.spa_keys = vec![crate::config::keys::ClientKey {
            id: 7,
            key: [1; 16],
            ..Default::default()
        }];
        config
    }

    fn plan_of(text: &str) -> Plan {
        Plan::new(&config(text), &BTreeSet::new(), Switches::default())
    }

    fn next_of(before: &Plan, text: &str) -> Plan {
        before.next(&config(text), &BTreeSet::new(), Switches::default())
    }

    const TWO_DOORS: &str = "[options]\nSPA_Keys = keys\nAlways_Allow = 203.0.113.0/24\n\
        [a]\nsequence = 1000,2000\n[b]\nsequence = 3000\nprotect = 2222\nSPA = yes\n";

    #[test]
    fn a_first_push_writes_every_door_slot_and_every_entry() {
        let plan = plan_of(TWO_DOORS).with_local(&[Addr::from_ipv4([198, 51, 100, 1])].into());
        let diff = plan.diff_from(None);
        assert_eq!(
            diff.doors.put.len(),
            MAX_DOORS,
            "the pinned slots are unknown"
        );
        assert_eq!(diff.names.put.len(), MAX_DOORS);
        assert_eq!(diff.doors.put[1], (1, plan.doors[1]));
        assert_eq!(
            diff.doors.put[2],
            (2, Door::new()),
            "an unused slot is emptied"
        );
        assert_eq!(diff.first_steps.put.len(), 2);
        assert_eq!(
            diff.ports.put,
            plan.port_words
                .iter()
                .map(|(w, v)| (*w, *v))
                .collect::<Vec<_>>()
        );
        assert_eq!(diff.guards.put.len(), plan.guards.len());
        assert_eq!(diff.spa_doors.put, [(door_tag("b"), 1)]);
        assert_eq!(
            diff.keys.put,
            [(
                7,
                SpaKey {
                    key: [1; 16],
                    doors: knock_common::settings::EVERY_DOOR
                }
            )]
        );
        assert_eq!(
            diff.local.put,
            [(Addr::from_ipv4([198, 51, 100, 1]), 1)],
            "no door has a Target, so only the host's address"
        );
        assert_eq!(diff.always_allow.put.len(), 1);
        for removed in [
            diff.first_steps.remove.len(),
            diff.keys.remove.len(),
            diff.spa_doors.remove.len(),
            diff.local.remove.len(),
            diff.always_allow.remove.len(),
        ] {
            assert_eq!(removed, 0, "nothing to remove from fresh maps");
        }
    }

    #[test]
    fn pushing_the_same_plan_again_changes_nothing() {
        let plan = plan_of(TWO_DOORS);
        assert!(plan.diff_from(Some(&plan)).is_empty());
        let again = next_of(&plan, TWO_DOORS);
        assert_eq!(again.diff_from(Some(&plan)), MapDiff::default());
    }

    #[test]
    fn a_removed_door_empties_its_slot_and_takes_its_entries_away() {
        let before = plan_of(TWO_DOORS);
        let after = next_of(
            &before,
            "[options]\nSPA_Keys = keys\n[b]\nsequence = 3000\nprotect = 2222\nSPA = yes\n",
        );
        let diff = after.diff_from(Some(&before));
        assert_eq!(
            diff.doors.put,
            [(0, Door::new())],
            "a's slot, and nothing else"
        );
        assert_eq!(diff.names.put, [(0, DoorName::default())]);
        assert_eq!(
            diff.first_steps.remove,
            [ProtoPort::tcp(1000)],
            "a's first knock starts nothing any more"
        );
        assert!(diff.first_steps.put.is_empty());
        // a's knock ports lose their class: their words are written as `after` holds them.
        for port in [1000, 2000] {
            let (word, _) = ports::slot(knock_common::segment::PROTO_TCP, port);
            let written = after.port_words.get(&word).copied().unwrap_or(0);
            assert!(
                diff.ports.put.contains(&(word, written)),
                "port {port}: {:?}",
                diff.ports.put
            );
            assert_eq!(after.class_of(ProtoPort::tcp(port)), 0);
        }
        assert_eq!(
            diff.always_allow.remove.len(),
            1,
            "Always_Allow is gone from [options]"
        );
        assert!(diff.spa_doors.is_empty(), "b keeps its id and its tag");
    }

    #[test]
    fn a_changed_door_is_rewritten_under_its_id_with_the_next_revision() {
        let before = plan_of(TWO_DOORS);
        let after = next_of(&before, &TWO_DOORS.replace("3000", "4000"));
        let diff = after.diff_from(Some(&before));
        assert_eq!(diff.doors.put.len(), 1);
        let (id, door) = diff.doors.put[0];
        assert_eq!(id, 1);
        assert_eq!(door.revision, before.doors[1].revision + 1);
        assert!(diff.names.is_empty(), "the name stays");
        assert_eq!(diff.first_steps.remove, [ProtoPort::tcp(3000)]);
        assert_eq!(
            diff.first_steps.put,
            [(ProtoPort::tcp(4000), FirstSteps { doors: 0b10 })]
        );
    }

    #[test]
    fn host_addresses_that_go_are_removed_and_new_ones_put() {
        let old = Addr::from_ipv4([198, 51, 100, 1]);
        let new = Addr::from_ipv4([198, 51, 100, 9]);
        let before = plan_of(TWO_DOORS).with_local(&[old].into());
        let after = next_of(&before, TWO_DOORS).with_local(&[new].into());
        let diff = after.diff_from(Some(&before));
        assert_eq!(diff.local.remove, [old]);
        assert_eq!(diff.local.put, [(new, 1)]);
        assert_eq!(diff.len(), 2);
    }

    /// The two-door plan with a second client key, 8, besides the file's 7.
    fn with_two_keys() -> Plan {
        let mut plan = plan_of(TWO_DOORS);
        plan.keys
            .insert(8, ([2; 16], knock_common::settings::EVERY_DOOR));
        plan
    }

    /// TWO_DOORS without its Always_Allow network (and so, pushed, without key 8).
    const REVOKED: &str = "[options]\nSPA_Keys = keys\n\
        [a]\nsequence = 1000,2000\n[b]\nsequence = 3000\nprotect = 2222\nSPA = yes\n";

    #[test]
    fn after_a_push_that_failed_halfway_the_next_one_removes_a_revoked_key_and_a_removed_network() {
        let before = with_two_keys();
        let tried = next_of(&before, REVOKED);
        // The push of `tried` broke off: the maps may hold key 8 and the network, or not.
        let held = Held::Exactly(before.clone()).after_failed_push(&tried);
        let diff = tried.diff_from_held(&held);
        assert_eq!(diff.keys.remove, [8], "the revoked key goes");
        assert_eq!(
            diff.always_allow.remove.len(),
            1,
            "the removed network goes"
        );
        assert_eq!(
            diff.keys.put,
            [(
                7,
                SpaKey {
                    key: [1; 16],
                    doors: knock_common::settings::EVERY_DOOR
                }
            )],
            "what stays is written again, whatever the maps hold now"
        );
        assert_eq!(
            diff.doors.put.len(),
            MAX_DOORS,
            "every door slot is written"
        );
        assert_eq!(diff.names.put.len(), MAX_DOORS);
        assert_eq!(diff.first_steps.put.len(), tried.first_steps.len());
        // Once that push goes through, the maps hold exactly `tried` again.
        assert!(
            tried
                .diff_from_held(&Held::Exactly(tried.clone()))
                .is_empty()
        );
    }

    #[test]
    fn failed_pushes_add_up_until_one_goes_through() {
        let first = with_two_keys();
        let mut second = next_of(&first, TWO_DOORS);
        second
            .keys
            .insert(9, ([3; 16], knock_common::settings::EVERY_DOOR));
        second.local.insert(Addr::from_ipv4([198, 51, 100, 9]));
        let third = next_of(&second, REVOKED);
        let held = Held::Exactly(first)
            .after_failed_push(&second)
            .after_failed_push(&third);
        let diff = third.diff_from_held(&held);
        assert_eq!(
            diff.keys.remove,
            [8, 9],
            "keys of every plan since the last complete push"
        );
        assert_eq!(diff.local.remove, [Addr::from_ipv4([198, 51, 100, 9])]);
        assert_eq!(diff.always_allow.remove.len(), 1);
    }

    #[test]
    fn a_first_push_that_failed_leaves_its_own_entries_to_remove() {
        let tried = with_two_keys();
        let held = Held::Unknown.after_failed_push(&tried);
        let next = next_of(&tried, REVOKED);
        let diff = next.diff_from_held(&held);
        assert_eq!(diff.keys.remove, [8]);
        assert_eq!(diff.always_allow.remove.len(), 1);
        assert_eq!(held.exactly(), None, "nothing is known exactly");
    }

    #[test]
    fn port_words_and_guard_groups_a_failed_push_may_have_left_are_emptied() {
        let big = plan_of(TWO_DOORS);
        let small = next_of(&big, "[b]\nsequence = 3000\nprotect = 2222\n");
        let held = Held::Exactly(small.clone()).after_failed_push(&big);
        let diff = small.diff_from_held(&held);
        for (word, _) in big
            .port_words
            .iter()
            .filter(|(w, _)| !small.port_words.contains_key(w))
        {
            assert!(
                diff.ports.put.contains(&(*word, 0)),
                "word {word}: {:?}",
                diff.ports.put
            );
        }
        for (word, value) in &small.port_words {
            assert!(diff.ports.put.contains(&(*word, *value)));
        }
    }

    fn door_tag(name: &str) -> u32 {
        knock_common::spa::door_tag(name)
    }
}
