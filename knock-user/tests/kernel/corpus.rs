//! The packet corpus (`tests/corpus/`) through the loaded XDP program, with BPF_PROG_TEST_RUN.
//! Each case starts from empty maps and checks the verdict of every frame, every counter, the
//! progress and the open doors it leaves, and then that a plain SYN to SSH from its source
//! passes exactly when its door is open. A failure names the case and shows its frames in hex.
//!
//! Every case plays twice. First in the filtered look, whose verdicts the case states: knock
//! ports and the gate drop what they refuse. Then in the closed look, the default, which must
//! differ from it in exactly this: a frame the filtered look dropped at a knock port passes on
//! to the host (which answers as for any closed port), and one it dropped at the gate is
//! answered with the reset the host would send, byte for byte as `knock_common::reply` builds
//! it, when it is a plain SYN to one of the host's addresses, and dropped otherwise (these
//! programs run without the socket-lookup guard, which would take the rest). Counters, progress
//! and open doors are the same in both looks.
//! Needs root and a kernel with BPF: `cargo xtask test` runs it.
use crate::kernel;

#[path = "corpus/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use cases::{Case, SERVER4, SERVER6, SSH, Setup, Verdict, hex};
use knock_common::counter::Counter;
use knock_common::craft::Craft;
use knock_common::frame::{Frame, Headers, Link, classify_on, headers_on};
use knock_common::reply::{self, Probe, Reset, Stack};
use knock_common::segment::tcp_flags::SYN;
use knock_common::settings::Look;
use knock_common::{Addr, ProtoPort};
use knock_user::config;
use knock_user::kernel::Knock;
use knock_user::plan::{Plan, Switches};

#[test]
fn the_corpus_holds_at_least_150_uniquely_named_cases() {
    let mut names = BTreeSet::new();
    for (_, cases) in cases::categories() {
        for case in cases {
            assert!(
                names.insert(case.name.clone()),
                "two cases are named `{}`",
                case.name
            );
        }
    }
    assert!(names.len() >= 150, "only {} cases", names.len());
}

#[test]
fn basic_knocks_and_the_gate_behave_as_specified() {
    run("basics");
}

#[test]
fn odd_tcp_flag_sets_behave_as_specified() {
    run("tcp_flags");
}

#[test]
fn vlan_tagged_frames_behave_as_specified() {
    run("vlan");
}

#[test]
fn ipv4_options_and_bad_ipv4_headers_behave_as_specified() {
    run("ipv4");
}

#[test]
fn ipv6_extension_headers_and_bad_ipv6_headers_behave_as_specified() {
    run("ipv6");
}

#[test]
fn fragments_behave_as_specified() {
    run("fragments");
}

#[test]
fn truncated_frames_and_bogus_transports_behave_as_specified() {
    run("truncated");
}

#[test]
fn other_protocols_behave_as_specified() {
    run("other_protocols");
}

#[test]
fn broadcast_and_multicast_behave_as_specified() {
    run("multicast");
}

#[test]
fn whole_sequences_in_every_shape_behave_as_specified() {
    run("sequences");
}

#[test]
fn frames_of_links_without_ethernet_headers_behave_as_specified() {
    run("ip_links");
}

/// Runs every case of a category in both looks and fails once, listing every case that went
/// wrong.
fn run(category: &str) {
    let cases = cases::categories()
        .into_iter()
        .find(|(name, _)| *name == category)
        .map(|(_, cases)| cases)
        .expect("a category of the corpus");
    let mut loaded: BTreeMap<(&'static str, bool), Knock> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let filtered = loaded
                .entry((case.setup.name, true))
                .or_insert_with(|| load(case.setup, Look::Filtered));
            let (mut problems, moved) = check(filtered, case, &Expected::Stated);
            let closed = loaded
                .entry((case.setup.name, false))
                .or_insert_with(|| load(case.setup, Look::Closed));
            let expected = Expected::Closed(closed_look(closed, case, &moved));
            let (closed_problems, _) = check(closed, case, &expected);
            problems.extend(
                closed_problems
                    .into_iter()
                    .map(|p| format!("closed look: {p}")),
            );
            problems
        }));
        let problems = outcome.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            vec![format!("panicked: {message}")]
        });
        if !problems.is_empty() {
            failures.push(report(case, &problems));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} `{category}` cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn load(setup: &Setup, look: Look) -> Knock {
    let config = config::parse(Path::new("corpus.conf"), setup.config).expect("a valid setup");
    let served: BTreeSet<ProtoPort> = setup.served.iter().map(|&p| ProtoPort::tcp(p)).collect();
    let switches = Switches {
        ipv4_only: setup.ipv4_only,
        look: Some(look),
        ..Switches::default()
    };
    let mut knock = kernel::load_with(setup.config, |plan| {
        // Keep the host's addresses the helper put in; only the served ports and switches change.
        let local = plan.local.clone();
        *plan = Plan::new(&config, &served, switches).with_local(&local);
    });
    knock
        .load_program(Link::Ip)
        .expect("the entry point for IP links loads");
    knock
}

/// What a case's frames must get.
enum Expected {
    /// What the case states: the filtered look.
    Stated,
    /// In the closed look, frame by frame: the verdict and, for XDP_TX, the answer.
    Closed(Vec<(u32, Option<Vec<u8>>)>),
}

/// What the closed look must do with each frame of a case, from what the filtered look did
/// (`moved`: the counters each frame moved there).
fn closed_look(
    knock: &Knock,
    case: &Case,
    moved: &[BTreeMap<u32, u64>],
) -> Vec<(u32, Option<Vec<u8>>)> {
    let settings = knock.settings().expect("a plan was pushed");
    let stack = Stack {
        ttl: settings.ttl,
        hop_limit: settings.hop_limit,
        label_key: settings.label_key,
    };
    case.steps
        .iter()
        .zip(moved)
        .map(|(step, moved)| {
            let by = |counter: Counter| moved.get(&(counter as u32)).copied().unwrap_or(0);
            if by(Counter::KnockPortDropped) > 0 {
                (kernel::PASS, None)
            } else if by(Counter::GateDropped) > 0 {
                match reset_of(&step.frame, case.link, stack) {
                    Some(answer) => (kernel::TX, Some(answer)),
                    None => (kernel::DROP, None),
                }
            } else {
                (code(step.verdict), None)
            }
        })
        .collect()
}

/// The reset the host would send for `frame`, if it is a plain SYN to the server.
fn reset_of(frame: &[u8], link: Link, stack: Stack) -> Option<Vec<u8>> {
    let Headers::Segment(unaddressed) = headers_on(link, frame) else {
        return None;
    };
    let Frame::Segment(segment) = unaddressed.addressed(frame) else {
        return None;
    };
    if !kernel::rig_server_addresses().contains(&segment.dst) {
        return None;
    }
    let probe = Probe {
        l3: unaddressed.ip_header_at() as u16,
        l4: unaddressed.transport_at() as u16,
        ipv6: u8::from(unaddressed.is_ipv6()),
        tcp: u8::from(segment.is_tcp()),
        ip_link: u8::from(link == Link::Ip),
        class: 0,
    };
    let mut reset = Reset::default();
    if !reply::reset_for(frame, probe, stack, &mut reset) {
        return None;
    }
    let mut answer = frame[..usize::from(probe.l3) + reset.len as usize].to_vec();
    reply::write(answer.as_mut_slice(), probe, &reset)?;
    Some(answer)
}

/// Plays a case from empty maps; returns what differs from its expectations, and the counters
/// each frame moved.
fn check(
    knock: &mut Knock,
    case: &Case,
    expected: &Expected,
) -> (Vec<String>, Vec<BTreeMap<u32, u64>>) {
    forget_every_source(knock);
    let before = counters(knock);
    let mut problems = Vec::new();
    let mut moved = Vec::new();
    let mut sent = 0;
    for (index, step) in case.steps.iter().enumerate() {
        // XDP never sees less than an Ethernet header, and test_run refuses it.
        if step.frame.len() < 14 {
            problems.push(format!("frame {} is shorter than 14 bytes", index + 1));
            moved.push(BTreeMap::new());
            continue;
        }
        let ahead = counters(knock);
        let (got, out) = kernel::answer_on(knock, case.link, &step.frame);
        let after = counters(knock);
        moved.push(
            after
                .iter()
                .map(|(counter, value)| (*counter, value - ahead[counter]))
                .collect(),
        );
        let (want, answer) = match expected {
            Expected::Stated => (code(step.verdict), None),
            Expected::Closed(frames) => frames[index].clone(),
        };
        if got != want {
            problems.push(format!(
                "frame {}: expected {}, got {} (the host's classifier says {:?})\n      {}",
                index + 1,
                verdict_name(want),
                verdict_name(got),
                classify_on(case.link, step.frame.as_slice()),
                hex(&step.frame)
            ));
        } else if let Some(answer) = answer {
            sent += 1;
            if out != answer {
                problems.push(format!(
                    "frame {}: the reset differs from the host's\n      sent     {}\n      expected {}",
                    index + 1,
                    hex(&out),
                    hex(&answer)
                ));
            }
        }
    }
    let after = counters(knock);
    for &counter in Counter::ALL {
        let moved = after[&(counter as u32)] - before[&(counter as u32)];
        let stated = case
            .counters
            .iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |&(_, n)| n);
        let expected = match (expected, counter) {
            (Expected::Stated, _) => stated,
            (Expected::Closed(_), Counter::KnockPortDropped) => 0,
            (Expected::Closed(_), Counter::ResetSent) => sent,
            (Expected::Closed(_), _) => stated,
        };
        if moved != expected {
            problems.push(format!(
                "counter {}: expected +{expected}, moved +{moved}",
                counter.label()
            ));
        }
    }
    let source = Addr::from(case.source);
    let (stage, others) = progress(knock, source);
    if (stage, others) != (case.stage, case.others_in_progress) {
        problems.push(format!(
            "progress: expected stage {} for the source and {} other source(s), found stage {stage} \
             and {others} other source(s)",
            case.stage, case.others_in_progress
        ));
    }
    let (open, others_open) = open_doors(knock, source);
    if (open, others_open) != (case.door_open, 0) {
        problems.push(format!(
            "gate: expected the source's door {} and no other, found it {} and {others_open} other \
             source(s) with an open door",
            open_or_shut(case.door_open),
            open_or_shut(open)
        ));
    }
    let server = if case.source.is_ipv4() {
        SERVER4
    } else {
        SERVER6
    };
    let probe = Craft::tcp(case.source, server, SSH, SYN);
    let probe = match case.link {
        Link::Ethernet => probe.build(),
        Link::Ip => probe.build_ip(),
    };
    let admitted = kernel::verdict_on(knock, case.link, &probe) == kernel::PASS;
    if admitted != case.door_open {
        problems.push(format!(
            "afterwards a plain SYN to SSH from the source was {}, but the door should be {}",
            if admitted { "admitted" } else { "refused" },
            open_or_shut(case.door_open)
        ));
    }
    (problems, moved)
}

fn report(case: &Case, problems: &[String]) -> String {
    let mut text = format!(
        "✗ {}\n    setup `{}`, source {}, {:?} link\n",
        case.name, case.setup.name, case.source, case.link
    );
    if let Some(bug) = case.suspected_bug {
        text.push_str(&format!("    expects the fix of a suspected bug: {bug}\n"));
    }
    for problem in problems {
        text.push_str(&format!("    - {problem}\n"));
    }
    for (index, step) in case.steps.iter().enumerate() {
        text.push_str(&format!(
            "    frame {} (expect {:?}): {}\n",
            index + 1,
            step.verdict,
            hex(&step.frame)
        ));
    }
    text
}

/// Empties the progress and gate maps, so the next case starts as after a fresh load.
fn forget_every_source(knock: &mut Knock) {
    let mut progress = knock.progress().expect("the progress map");
    let sources: Vec<Addr> = progress.keys().map(|k| k.expect("a key")).collect();
    for source in sources {
        progress.remove(&source).expect("a source forgotten");
    }
    let mut gate = knock.gate().expect("the gate map");
    let sources: Vec<Addr> = gate.keys().map(|k| k.expect("a key")).collect();
    for source in sources {
        gate.remove(&source).expect("a source forgotten");
    }
    // Cases that end attempts on purpose would otherwise add up to a ban.
    let mut bans = knock.bans().expect("the ban map");
    let sources: Vec<Addr> = bans.keys().map(|k| k.expect("a key")).collect();
    for source in sources {
        let _ = bans.remove(&source);
    }
}

fn counters(knock: &Knock) -> BTreeMap<u32, u64> {
    let mut all: BTreeMap<u32, u64> = Counter::ALL.iter().map(|&c| (c as u32, 0)).collect();
    for (counter, value) in knock.counters().expect("the counters") {
        all.insert(counter as u32, value);
    }
    all
}

/// The highest stage among `source`'s attempts, and how many other sources have progress.
fn progress(knock: &mut Knock, source: Addr) -> (u8, usize) {
    let map = knock.progress().expect("the progress map");
    let mut stage = 0;
    let mut others = 0;
    for key in map.keys() {
        let key = key.expect("a key");
        if key == source {
            let entry = map.get(&key, 0).expect("the source's progress");
            stage = entry.attempts.iter().map(|a| a.stage).max().unwrap_or(0);
        } else {
            others += 1;
        }
    }
    (stage, others)
}

/// Whether `source` has a door open now, and how many other sources have one.
fn open_doors(knock: &mut Knock, source: Addr) -> (bool, usize) {
    let now = knock_user::system::clock::monotonic_ns();
    let map = knock.gate().expect("the gate map");
    let mut open = false;
    let mut others = 0;
    for key in map.keys() {
        let key = key.expect("a key");
        let pass = map.get(&key, 0).expect("the source's pass");
        let any = pass.open_doors(now).next().is_some();
        if key == source {
            open = any;
        } else if any {
            others += 1;
        }
    }
    (open, others)
}

const fn code(verdict: Verdict) -> u32 {
    match verdict {
        Verdict::Pass => kernel::PASS,
        Verdict::Drop => kernel::DROP,
    }
}

fn verdict_name(code: u32) -> String {
    match code {
        kernel::PASS => "Pass".to_owned(),
        kernel::DROP => "Drop".to_owned(),
        kernel::TX => "Tx (answered)".to_owned(),
        other => format!("XDP action {other}"),
    }
}

fn open_or_shut(open: bool) -> &'static str {
    if open { "open" } else { "shut" }
}
