//! The daemon's desired state, kept apart from the kernel and the event loop so each step is a
//! pure function: the configuration as read, the periods of rotating doors whose sequence has
//! been used, the ports this host serves, the guarded interfaces' addresses and the switches
//! from the command line; and the plan they make. The daemon feeds it what it observes (a
//! reload, a used sequence, a service starting, the clock) and pushes the plans it returns.

use std::collections::BTreeSet;

use knock_common::{Addr, Door, ProtoPort};

use super::expand;
use super::{Plan, StackFacts, Switches};
use crate::config::{Config, DoorConfig};

/// What the plan derives from besides the configuration: facts about the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// Ports the host serves: knocks on them are counted but let through.
    pub served: BTreeSet<ProtoPort>,
    /// The guarded interfaces' addresses: knocks count only when sent to one.
    pub local: BTreeSet<Addr>,
    /// What the host's stack puts into its answers, and its ephemeral ports.
    pub stack: StackFacts,
}

/// A rotating door's period whose sequence has opened the door once and must not again.
pub type UsedPeriod = (String, u64);

#[derive(Clone, Debug)]
pub struct Desired {
    /// The configuration as read; rotating doors are expanded from it for every plan.
    config: Config,
    used: BTreeSet<UsedPeriod>,
    host: Host,
    switches: Switches,
    /// The switches with the socket-lookup guard the start was given, until the daemon says
    /// whether it attached it (`guard_attached`): until then plans leave refusals in XDP.
    awaiting_guard: Option<Switches>,
    /// The plan last committed, and the configuration expanded for it.
    plan: Plan,
    expanded: Config,
}

/// A plan ready to push, and what it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Next {
    pub plan: Plan,
    /// The configuration with rotating doors expanded, as the plan holds them.
    pub expanded: Config,
    /// Door ids that had a door before and have none in `plan`.
    pub removed: Vec<u8>,
    /// The used periods still inside some rotating door's window.
    pub used: BTreeSet<UsedPeriod>,
}

impl Desired {
    /// Whether the socket-lookup guard the start was given is attached to the namespace.
    /// Returns the plan to push when that changes the plan: attached, it may now leave refused
    /// packets to the host's stack. Not attached, plans keep the program dropping them itself.
    pub fn guard_attached(&mut self, attached: bool) -> Option<Plan> {
        let switches = self.awaiting_guard.take().filter(|_| attached)?;
        self.switches = switches;
        let plan = self.plan.clone().with_guard_of(switches);
        if plan == self.plan {
            return None;
        }
        self.plan = plan;
        Some(self.plan.clone())
    }

    /// The first plan of a daemon at Unix time `now_s`. `kept` are the door records and names an
    /// earlier daemon left in the pinned maps (empty on a fresh start): doors keep their ids, and
    /// the periods whose sequences the kernel emptied stay used, as do the `claimed` ones (see
    /// `plan::spent::used_periods`).
    ///
    /// The first plan leaves nothing to the socket-lookup guard, even when `switches` has one:
    /// on a restart the earlier daemon's program reads its settings at once, and a refused
    /// packet it left to the host's stack would find a socket if no guard stood there. The
    /// guard's flags follow once the daemon has attached it (`guard_attached`).
    pub fn start(
        config: Config,
        kept: &[(Door, Option<String>)],
        claimed: BTreeSet<UsedPeriod>,
        host: Host,
        switches: Switches,
        now_s: u64,
    ) -> (Self, Next) {
        let mut used = used_periods(kept);
        used.extend(claimed);
        let previous = Plan::resumed(kept);
        let mut desired = Self {
            expanded: config.clone(),
            config,
            used,
            host,
            switches: switches.without_guard(),
            awaiting_guard: switches.guard.then_some(switches),
            plan: previous,
        };
        let next = desired.next(&desired.config, now_s);
        desired.expanded = next.expanded.clone();
        desired.plan = next.plan.clone();
        desired.used = next.used.clone();
        (desired, next)
    }

    /// The plan for `config` at Unix time `now_s`: doors keep their ids by name, used periods
    /// that have left every window are forgotten, the rest stay empty.
    pub fn next(&self, config: &Config, now_s: u64) -> Next {
        let used: BTreeSet<UsedPeriod> = self
            .used
            .iter()
            .filter(|(name, period)| {
                config
                    .doors
                    .iter()
                    .filter(|d| &d.name == name)
                    .filter_map(|d| d.secret.as_ref())
                    .any(|s| s.period_at(now_s) <= period + 1)
            })
            .cloned()
            .collect();
        let expanded = expand::expand(config, now_s, &used, &self.host.served);
        let plan = self
            .plan
            .next_on(&expanded, &self.host.served, self.switches, self.host.stack)
            .with_local(&self.host.local);
        Next {
            removed: self.plan.removed_in(&plan),
            plan,
            expanded,
            used,
        }
    }

    /// Makes `next` (pushed into the kernel) the current state, with the configuration it
    /// was made from.
    pub fn commit(&mut self, config: Config, next: Next) {
        self.config = config;
        self.plan = next.plan;
        self.expanded = next.expanded;
        self.used = next.used;
    }

    /// Remembers that the kernel emptied the rotating instance with door id `id` (its sequence
    /// opened the door), so pushing the window again does not bring the sequence back. Returns
    /// whether `id` is such an instance, pushed with a sequence.
    pub fn note_emptied(&mut self, id: usize) -> bool {
        let Some((name, period)) = self.rotating_instance(id) else {
            return false;
        };
        self.used.insert((name, period));
        true
    }

    /// Ids of the rotating instances pushed with a sequence: the ones the kernel may empty.
    pub fn rotating_instances(&self) -> Vec<usize> {
        (0..self.plan.names.len())
            .filter(|id| self.rotating_instance(*id).is_some())
            .collect()
    }

    fn rotating_instance(&self, id: usize) -> Option<UsedPeriod> {
        let key = self.plan.names.get(id)?.as_deref()?;
        let (name, period) = key.rsplit_once('@')?;
        let period = period.parse::<u64>().ok()?;
        (self.plan.doors.get(id)?.step_count > 0).then(|| (name.to_owned(), period))
    }

    /// Takes new facts about the host; returns whether they changed.
    pub fn observe(&mut self, host: Host) -> bool {
        if host == self.host {
            return false;
        }
        self.host = host;
        true
    }

    /// The one-time door with id `id`, as configured, if `id` is one.
    pub fn one_time_door(&self, id: u8) -> Option<&DoorConfig> {
        let name = self.plan.names.get(usize::from(id))?.as_deref()?;
        self.config
            .doors
            .iter()
            .find(|d| d.name == name)
            .filter(|d| d.one_time_sequences.is_some())
    }

    /// When, in Unix seconds, the window of some rotating door moves next.
    pub fn next_change(&self, now_s: u64) -> Option<u64> {
        expand::next_change(&self.config, now_s)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The doors of the current plan by kernel id.
    pub fn doors_by_id(&self) -> Vec<Option<DoorConfig>> {
        self.plan.doors_by_id(&self.expanded)
    }

    pub fn used(&self) -> &BTreeSet<UsedPeriod> {
        &self.used
    }
}

/// Periods of rotating doors whose sequence the kernel has emptied (used): they must not be
/// pushed again, or a restart would make a used sequence work a second time.
fn used_periods(kept: &[(Door, Option<String>)]) -> BTreeSet<UsedPeriod> {
    kept.iter()
        .filter(|(door, _)| door.flags & knock_common::door::ONCE != 0 && door.step_count == 0)
        .filter_map(|(_, name)| {
            let (door, period) = name.as_deref()?.rsplit_once('@')?;
            Some((door.to_owned(), period.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use knock_common::ports::SERVED;
    use knock_common::settings::{GUARD, HOST_RESETS};

    use super::*;
    use crate::config::parse;
    use crate::config::rotate::Secret;

    /// `openSSH` rotates every 30 s; `static` does not; `once` takes one-time sequences.
    fn config() -> Config {
        let mut config = parse(
            Path::new("t"),
            "[openSSH]\nsequence = 1\n[static]\nsequence = 2000\n\
             [once]\none_time_sequences = once.txt\n",
        )
        .unwrap();
        config.doors[0].sequence.clear();
        config.doors[0].secret = Some(Secret::new("openSSH", [7; 32], BTreeSet::new()));
        config.doors[2].sequence = vec![ProtoPort::tcp(3000)];
        config.doors[2].one_time_line = Some(1);
        config
    }

    const NOW: u64 = 3000;

    fn keys(plan: &Plan) -> Vec<&str> {
        plan.names.iter().flatten().map(String::as_str).collect()
    }

    fn started() -> (Desired, Next) {
        Desired::start(
            config(),
            &[],
            BTreeSet::new(),
            Host::default(),
            Switches::default(),
            NOW,
        )
    }

    /// A guard loaded, on a veth in native mode: refused SYNs may go to the host's stack.
    const GUARDED: Switches = Switches {
        guard: true,
        host_resets: true,
        ipv4_only: false,
        look: None,
        observe: false,
    };

    fn started_with(switches: Switches) -> (Desired, Next) {
        Desired::start(
            config(),
            &[],
            BTreeSet::new(),
            Host::default(),
            switches,
            NOW,
        )
    }

    /// The settings flags that leave refusals to the host's stack.
    fn to_the_host(plan: &Plan) -> u32 {
        plan.settings.flags & (GUARD | HOST_RESETS)
    }

    #[test]
    fn the_first_plan_leaves_nothing_to_a_guard_not_attached_yet() {
        let (desired, first) = started_with(GUARDED);
        assert_eq!(to_the_host(&first.plan), 0);
        assert_eq!(to_the_host(&desired.next(desired.config(), NOW).plan), 0);
    }

    #[test]
    fn once_the_guard_is_attached_refusals_go_to_the_host_from_the_plan_it_returns_on() {
        let (mut desired, first) = started_with(GUARDED);
        let plan = desired
            .guard_attached(true)
            .expect("the guard changes the plan");
        assert_eq!(to_the_host(&plan), GUARD | HOST_RESETS);
        assert_eq!(
            plan.clone().with_guard_of(Switches::default()),
            first.plan,
            "only the guard's flags change"
        );
        assert_eq!(desired.plan(), &plan, "committed");
        let next = desired.next(desired.config(), NOW + 30);
        assert_eq!(to_the_host(&next.plan), GUARD | HOST_RESETS);
        assert_eq!(desired.guard_attached(true), None, "said once");
    }

    #[test]
    fn a_guard_that_cannot_attach_leaves_every_refusal_to_the_program_from_then_on() {
        let (mut desired, first) = started_with(GUARDED);
        assert_eq!(
            desired.guard_attached(false),
            None,
            "nothing to push: the first plan already leaves nothing to a guard"
        );
        assert_eq!(desired.plan(), &first.plan);
        let next = desired.next(desired.config(), NOW + 30);
        assert_eq!(to_the_host(&next.plan), 0);
    }

    #[test]
    fn a_guard_off_a_veth_leaves_refused_datagrams_to_the_host_and_resets_to_the_program() {
        let (mut desired, _) = started_with(Switches {
            host_resets: false,
            ..GUARDED
        });
        let plan = desired.guard_attached(true).expect("the guard's flag");
        assert_eq!(to_the_host(&plan), GUARD);
    }

    #[test]
    fn without_a_guard_a_veth_leaves_nothing_to_the_host() {
        let (mut desired, first) = started_with(Switches {
            guard: false,
            ..GUARDED
        });
        assert_eq!(to_the_host(&first.plan), 0);
        assert_eq!(desired.guard_attached(true), None, "no guard was loaded");
        assert_eq!(to_the_host(&desired.next(desired.config(), NOW).plan), 0);
    }

    #[test]
    fn a_plan_made_with_the_guard_is_the_plan_made_without_it_under_the_guard() {
        let served = [ProtoPort::tcp(2000)].into();
        let with = Plan::new(&config(), &served, GUARDED);
        let without = Plan::new(&config(), &served, Switches::default());
        assert_ne!(with, without);
        assert_eq!(without.with_guard_of(GUARDED), with);
    }

    #[test]
    fn the_first_plan_holds_each_door_and_the_rotating_window() {
        let (desired, first) = started();
        assert_eq!(
            keys(&first.plan),
            [
                "openSSH",
                "openSSH@99",
                "openSSH@100",
                "openSSH@101",
                "static",
                "once"
            ]
        );
        assert!(first.removed.is_empty());
        assert_eq!(desired.plan(), &first.plan);
        assert_eq!(desired.rotating_instances(), [1, 2, 3]);
    }

    #[test]
    fn a_restart_keeps_door_ids_and_the_periods_the_kernel_emptied() {
        let (_, before) = started();
        // What the pinned maps hold after the kernel opened the door with period 100's sequence.
        let mut kept: Vec<(Door, Option<String>)> = before
            .plan
            .doors
            .iter()
            .copied()
            .zip(before.plan.names.iter().cloned())
            .collect();
        kept[2].0.step_count = 0;
        kept.swap(4, 5);
        let (desired, first) = Desired::start(
            config(),
            &kept,
            BTreeSet::new(),
            Host::default(),
            Switches::default(),
            NOW,
        );
        assert_eq!(
            first.plan.id_of("static"),
            Some(5),
            "ids follow the pinned names"
        );
        assert_eq!(first.plan.id_of("once"), Some(4));
        assert_eq!(
            first.plan.doors[2].step_count, 0,
            "a used sequence stays used"
        );
        assert!(desired.used().contains(&("openSSH".to_owned(), 100)));
        assert!(first.plan.doors[3].step_count > 0);
    }

    #[test]
    fn a_used_period_stays_empty_until_it_leaves_the_window() {
        let (mut desired, _) = started();
        assert!(
            desired.note_emptied(2),
            "openSSH@100 is a rotating instance"
        );
        assert!(!desired.note_emptied(4), "static is not");
        let next = desired.next(&config(), NOW);
        assert_eq!(next.plan.doors[2].step_count, 0);
        assert!(next.plan.doors[3].step_count > 0);
        assert!(next.removed.is_empty());
        let config = desired.config().clone();
        desired.commit(config, next);
        // Three periods on, period 100 has left the window and is forgotten.
        let later = desired.next(&self::config(), NOW + 90);
        assert!(later.used.is_empty(), "{:?}", later.used);
        for period in ["openSSH@102", "openSSH@103", "openSSH@104"] {
            assert!(later.plan.id_of(period).is_some(), "{period}");
        }
        assert_eq!(later.plan.id_of("openSSH@100"), None);
        assert_eq!(later.removed, [1, 2, 3], "the old periods' ids");
    }

    #[test]
    fn served_ports_and_local_addresses_reach_the_next_plan() {
        let (mut desired, _) = started();
        let local = Addr::from_ipv4([198, 51, 100, 1]);
        let host = Host {
            served: [ProtoPort::tcp(2000)].into(),
            local: [local].into(),
            stack: StackFacts {
                ttl: 99,
                ..StackFacts::default()
            },
        };
        assert!(desired.observe(host.clone()));
        assert!(!desired.observe(host), "the same facts change nothing");
        let next = desired.next(desired.config(), NOW);
        assert_eq!(next.plan.class_of(ProtoPort::tcp(2000)) & SERVED, SERVED);
        assert!(next.plan.local.contains(&local));
        assert_eq!(
            next.plan.settings.ttl, 99,
            "the host's TTL, for the program's resets"
        );
    }

    #[test]
    fn a_door_taken_out_of_the_configuration_is_removed_and_its_id_named() {
        let (desired, _) = started();
        let mut smaller = config();
        smaller.doors.retain(|d| d.name != "static");
        let next = desired.next(&smaller, NOW);
        assert_eq!(next.removed, [4]);
        assert_eq!(
            next.plan.id_of("once"),
            Some(5),
            "the others keep their ids"
        );
        assert_eq!(next.plan.doors_by_id(&next.expanded)[4], None);
    }

    #[test]
    fn a_one_time_door_is_found_by_its_kernel_id() {
        let (desired, _) = started();
        assert_eq!(
            desired.one_time_door(5).map(|d| d.name.as_str()),
            Some("once")
        );
        assert!(
            desired.one_time_door(4).is_none(),
            "static has no one-time file"
        );
        assert!(desired.one_time_door(63).is_none());
    }
}
