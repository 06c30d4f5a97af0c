//! Conformance with knockd. One script plays every scenario of `conformance/scenarios.txt`
//! against Debian's real knockd and against `knock-user run` with `Progress = knockd`, each in
//! its own pair of network namespaces, with start commands that record `%IP%`. The doors opened
//! must be the same, except for the deliberate differences the table marks, each explained in
//! docs/migrating-from-knockd.md, and knock must log knockd's lines for the same knocks (`Stage
//! N` for every knock, the last included, then `OPEN SESAME`). Then the same table runs in strict
//! mode, knock's default, against its own expected outcomes. Debian's own knockd.conf is played
//! apart (`conformance/debian.rs`): its doors must mean what their commands meant.
//!
//! Needs root, a BPF kernel and Debian's knockd: `cargo xtask test` runs it. To play only some
//! scenarios: `KNOCK_CONFORMANCE=name,name`; `KNOCK_CONFORMANCE_JOBS` sets how many labs run
//! at once.
#[path = "conformance/debian.rs"]
mod debian;
#[path = "conformance/play.rs"]
mod play;
#[path = "conformance/table.rs"]
mod table;

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use play::{Implementation, Run};
use table::{Outcome, Scenario};

const TABLE: &str = include_str!("conformance/scenarios.txt");
const TABLE_PATH: &str = "knock-user/tests/conformance/scenarios.txt";
const MIGRATING: &str = include_str!("../../../docs/migrating-from-knockd.md");

/// Labs at once. Most of a scenario is waiting on the network and on timeouts, so this beats
/// the core count; each lab's timing margins are wide enough for the contention.
const DEFAULT_JOBS: usize = 6;

fn scenarios() -> Vec<Scenario> {
    let all = table::parse(TABLE).unwrap_or_else(|e| panic!("{TABLE_PATH}: {e}"));
    let Ok(wanted) = std::env::var("KNOCK_CONFORMANCE") else {
        return all;
    };
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    for name in &wanted {
        assert!(
            all.iter().any(|s| s.name == *name),
            "KNOCK_CONFORMANCE names `{name}`, which is not in the table"
        );
    }
    all.into_iter()
        .filter(|s| wanted.contains(&s.name.as_str()))
        .collect()
}

/// Runs `job` over `items` on a few threads; results keep the order of `items`.
fn in_parallel<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let jobs = std::env::var("KNOCK_CONFORMANCE_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(DEFAULT_JOBS)
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = job(item);
                    results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// One implementation's part of a scenario: what it should do and what it did.
struct Verdict<'a> {
    which: Implementation,
    expected: &'a Outcome,
    run: Result<Run, String>,
}

impl Verdict<'_> {
    fn passed(&self) -> bool {
        self.run.as_ref().is_ok_and(|r| &r.outcome == self.expected)
    }

    fn mark(&self) -> &'static str {
        if self.passed() { "ok" } else { "FAIL" }
    }

    fn describe(&self, out: &mut String) {
        let _ = match &self.run {
            Ok(run) => writeln!(
                out,
                "  {}:\n    expected {}\n    got      {}",
                self.which, self.expected, run.outcome
            ),
            Err(e) => writeln!(out, "  {}: the run broke: {e}", self.which),
        };
    }

    fn log(&self, out: &mut String) {
        if let Ok(run) = &self.run {
            let _ = writeln!(out, "  --- log of {} ---", self.which);
            for line in &run.log {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
}

/// Prints a summary of the whole table, and fails with every scenario that went wrong: the
/// scenario, what each implementation should have done and did, what that means, and the logs.
fn judge(title: &str, scenarios: &[Scenario], verdicts: &[Vec<Verdict<'_>>]) {
    let mut summary = format!("{title}\n");
    let mut details = String::new();
    let mut failed = 0;
    for (scenario, row) in scenarios.iter().zip(verdicts) {
        let marks: Vec<String> = row
            .iter()
            .map(|v| format!("{}: {:4}", v.which, v.mark()))
            .collect();
        let _ = writeln!(summary, "  {:70} {}", scenario.name, marks.join("  "));
        if row.iter().all(Verdict::passed) {
            continue;
        }
        failed += 1;
        let _ = writeln!(
            details,
            "\n=== {} ({TABLE_PATH}, line {})\n{}\n",
            scenario.name, scenario.line, scenario.text
        );
        if let Some((_, reason)) = &scenario.deliberate {
            let _ = writeln!(
                details,
                "  (a deliberate difference: `{reason}` in docs/migrating-from-knockd.md)"
            );
        }
        for verdict in row {
            verdict.describe(&mut details);
        }
        let knockd_wrong = row
            .iter()
            .any(|v| v.which == Implementation::Knockd && !v.passed());
        let hint = if knockd_wrong {
            "real knockd did not do what the table says: the table is wrong, or this is not knockd 0.8"
        } else if scenario.deliberate.is_none() && row.len() > 1 {
            "knock differs from real knockd: a bug in knock, or a difference to mark and document"
        } else {
            "knock did not do what the table expects"
        };
        let _ = writeln!(details, "  => {hint}");
        for verdict in row {
            verdict.log(&mut details);
        }
    }
    // The summary goes to the test's output (shown on failure, or with --nocapture), the
    // details to the failure message.
    eprintln!("{summary}");
    assert!(
        failed == 0,
        "{failed} of {} scenarios failed{details}",
        scenarios.len()
    );
}

#[test]
fn knock_in_knockd_mode_opens_the_doors_real_knockd_opens() {
    let scenarios = scenarios();
    let jobs: Vec<(usize, Implementation)> = (0..scenarios.len())
        .flat_map(|i| {
            [
                (i, Implementation::Knockd),
                (i, Implementation::KnockInKnockdMode),
            ]
        })
        .collect();
    let mut runs = in_parallel(&jobs, |(i, which)| play::run(&scenarios[*i], *which)).into_iter();
    let verdicts: Vec<Vec<Verdict<'_>>> = scenarios
        .iter()
        .map(|scenario| {
            let mut next = |which, expected| Verdict {
                which,
                expected,
                run: runs.next().expect("a run per job"),
            };
            vec![
                next(Implementation::Knockd, &scenario.knockd),
                next(Implementation::KnockInKnockdMode, scenario.knock_expected()),
            ]
        })
        .collect();
    let unequal_lines = compare_lines(&scenarios, &verdicts);
    judge(
        "real knockd against the table, and knock in knockd mode against real knockd:",
        &scenarios,
        &verdicts,
    );
    assert!(
        unequal_lines.is_empty(),
        "knock's log lines differ from real knockd's:{}",
        unequal_lines.concat()
    );
}

/// knockd's lines for knocks, in order: `SOURCE: DOOR: Stage N`, for the last knock too, and
/// `SOURCE: DOOR: OPEN SESAME`. Log watchers count and match these.
fn knock_lines(log: &[String]) -> Vec<String> {
    log.iter()
        .map(|line| line.trim())
        .filter(|line| {
            line.rsplit_once(": ").is_some_and(|(_, what)| {
                what == "OPEN SESAME"
                    || what
                        .strip_prefix("Stage ")
                        .is_some_and(|n| n.parse::<u8>().is_ok())
            })
        })
        .map(str::to_owned)
        .collect()
}

/// For every scenario where knock in knockd mode must do what knockd does, whether it also
/// logs the same lines for the knocks; a description of each that does not.
fn compare_lines(scenarios: &[Scenario], verdicts: &[Vec<Verdict<'_>>]) -> Vec<String> {
    let mut unequal = Vec::new();
    for (scenario, row) in scenarios.iter().zip(verdicts) {
        let [knockd, knock] = row.as_slice() else {
            continue;
        };
        let (Ok(knockd_run), Ok(knock_run)) = (&knockd.run, &knock.run) else {
            continue;
        };
        if scenario.deliberate.is_some() || scenario.lines_unchecked.is_some() {
            continue;
        }
        let (expected, got) = (knock_lines(&knockd_run.log), knock_lines(&knock_run.log));
        if expected != got {
            unequal.push(format!(
                "\n=== {} ({TABLE_PATH}, line {})\n  real knockd:\n    {}\n  knock:\n    {}\n",
                scenario.name,
                scenario.line,
                expected.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    unequal
}

#[test]
fn strict_mode_opens_the_doors_the_table_expects() {
    let scenarios = scenarios();
    let runs = in_parallel(&scenarios, |s| play::run(s, Implementation::KnockStrict));
    let verdicts: Vec<Vec<Verdict<'_>>> = scenarios
        .iter()
        .zip(runs)
        .map(|(scenario, run)| {
            vec![Verdict {
                which: Implementation::KnockStrict,
                expected: &scenario.strict,
                run,
            }]
        })
        .collect();
    judge(
        "knock in strict mode against the table:",
        &scenarios,
        &verdicts,
    );
}

#[test]
fn the_table_covers_every_aspect_of_knocking_and_explains_every_difference() {
    let all = table::parse(TABLE).unwrap_or_else(|e| panic!("{TABLE_PATH}: {e}"));
    assert!(all.len() >= 30, "only {} scenarios", all.len());
    let uses = |what: &str, test: &dyn Fn(&Scenario) -> bool| {
        assert!(all.iter().any(test), "no scenario covers {what}");
    };
    let config_has =
        |key: &'static str| move |s: &Scenario| s.config.to_ascii_lowercase().contains(key);
    let play_has = |word: &'static str| {
        move |s: &Scenario| {
            s.text
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == word))
        }
    };
    uses("UDP knocks", &config_has(":udp"));
    uses("sequence timeouts", &config_has("seq_timeout"));
    uses("TCP flags with negation", &config_has("!"));
    uses("a Target", &config_has("target"));
    uses("one-time sequences", &config_has("one_time_sequences"));
    uses("IPv6 knocks", &|s| s.text.contains("server6"));
    uses("several doors", &|s| s.config.matches('[').count() >= 2);
    uses("another source", &play_has("other"));
    uses("waiting", &play_has("wait"));
    uses("crafted packets", &play_has("send"));
    uses("connections to unrelated ports", &play_has("connect"));
    uses("a repeated knock", &|s| {
        s.deliberate
            .as_ref()
            .is_some_and(|(_, r)| r == "repeat-tolerance")
    });
    for scenario in &all {
        if let Some((outcome, reason)) = &scenario.deliberate {
            assert_ne!(
                outcome, &scenario.knockd,
                "{}: a deliberate difference that does not differ",
                scenario.name
            );
            assert!(
                MIGRATING.contains(&format!("`{reason}`")),
                "{}: the reason `{reason}` is not explained in docs/migrating-from-knockd.md",
                scenario.name
            );
        }
    }
}
