//! The two ways a class of packets is timed through BPF_PROG_TEST_RUN, against the empty
//! program under the same method.

use anyhow::{Result, ensure};
use knock_common::counter::Counter;

use super::report::median;
use super::rig::{Prog, Rig};

/// How much of each method a run does.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Runs per BPF_PROG_TEST_RUN call for stateless classes.
    pub repeat: u32,
    /// Calls per program for stateless classes; the median is kept.
    pub rounds: usize,
    /// Single runs per program for stateful classes; the median is kept.
    pub samples: usize,
}

/// One measured class: medians of both programs under one method.
#[derive(Clone, Debug)]
pub struct Timing {
    pub baseline_ns: f64,
    pub knock_ns: f64,
    pub method: String,
    /// IRQ-work interrupts (/proc/interrupts IWI) per timed knock run: the ring buffer's
    /// wakeups of an idle reader, which cost far more than the program in a VM.
    pub irq_work: Option<f64>,
}

impl Timing {
    pub fn overhead(&self) -> f64 {
        self.knock_ns - self.baseline_ns
    }
}

/// What must hold after a measurement for its runs to have been the class they claim.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub verdict: u32,
    /// This counter must advance once for every knock run...
    pub counter: Option<Counter>,
    /// ...and these must not move at all.
    pub still: &'static [Counter],
}

/// Counters that move when a packet changes knock state; a stateless class moves none of them.
pub const STATE: &[Counter] = &[
    Counter::KnockAccepted,
    Counter::DoorOpened,
    Counter::DoorRefreshed,
    Counter::AttemptReset,
    Counter::SpaAccepted,
    Counter::SpaBadMac,
    Counter::SpaReplayed,
    Counter::BannedIgnored,
];

fn snapshot(rig: &Rig, counters: &[Counter]) -> Result<Vec<u64>> {
    counters.iter().map(|c| rig.counter(*c)).collect()
}

fn verify(rig: &Rig, check: &Check, before: &[u64], runs: u64, verdicts: &[u32]) -> Result<()> {
    let mut watched: Vec<Counter> = check.counter.into_iter().collect();
    watched.extend_from_slice(check.still);
    let after = snapshot(rig, &watched)?;
    for (i, counter) in watched.iter().enumerate() {
        let moved = after[i] - before[i];
        let counted = Some(*counter) == check.counter;
        let expected = if counted { runs } else { 0 };
        // A packet may move its counter more than once (a first knock shared by several doors).
        ensure!(
            moved == expected || (counted && moved >= expected),
            "counter {} moved by {moved}, expected {expected}: the runs were not all the class \
             they stand for",
            counter.label()
        );
    }
    ensure!(
        verdicts.iter().all(|v| *v == check.verdict),
        "verdicts {verdicts:?}, expected {}",
        check.verdict
    );
    Ok(())
}

fn watched(check: &Check) -> Vec<Counter> {
    let mut all: Vec<Counter> = check.counter.into_iter().collect();
    all.extend_from_slice(check.still);
    all
}

/// A stateless class: the same frame `repeat` times per call, `rounds` calls per program,
/// alternating the programs so that both see the same background load.
pub fn repeated(rig: &mut Rig, frame: &[u8], sizes: Sizes, check: Check) -> Result<Timing> {
    let before = snapshot(rig, &watched(&check))?;
    let (mut base, mut ours, mut verdicts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.rounds {
        base.push(rig.run(Prog::Baseline, frame, sizes.repeat)?.1 as f64);
        let (verdict, ns) = rig.run(Prog::Knock, frame, sizes.repeat)?;
        ours.push(ns as f64);
        verdicts.push(verdict);
    }
    let runs = u64::from(sizes.repeat) * sizes.rounds as u64;
    verify(rig, &check, &before, runs, &verdicts)?;
    Ok(Timing {
        baseline_ns: median(&mut base),
        knock_ns: median(&mut ours),
        method: format!("repeat {} x {}", sizes.repeat, sizes.rounds),
        irq_work: None,
    })
}

/// Frames fed around each timed single run.
#[derive(Clone, Copy, Debug)]
pub struct Around<'a> {
    /// Fed after the ring buffer is emptied, so that an event waits unread ("daemon busy").
    pub primer: Option<&'a [u8]>,
    /// A stateless frame run a few times just before timing, so that the program's code and
    /// maps are back in the caches after the system calls that prepared the sample.
    pub warmer: &'a [u8],
}

/// Single runs before each timed one: enough to refill the caches, each a run of its own
/// (a repeated run would also re-patch the kernel's XDP dispatcher, which disturbs all CPUs).
const WARM_RUNS: usize = 3;

/// A stateful class: each sample prepares the state (`prepare` returns the frame to time, after
/// feeding whatever must come before it), times one run of each program, and `clean` undoes
/// what the run changed, so that every timed run meets the same state.
///
/// Before the timed runs, `frames.warmer` runs a few times, so that they meet warm caches; what
/// is left of the cost of coming out of a system call shows in the calibration row.
///
/// The event ring buffer is emptied before each timed run, as an idle daemon keeps it, so an
/// event wakes the reader; with a `primer` frame, fed after emptying, one event waits unread,
/// as when the daemon is busy, and the timed run's event wakes nobody.
pub fn single(
    rig: &mut Rig,
    sizes: Sizes,
    check: Check,
    frames: Around<'_>,
    mut prepare: impl FnMut(&mut Rig, usize) -> Result<Vec<u8>>,
    mut clean: impl FnMut(&mut Rig, usize) -> Result<()>,
) -> Result<Timing> {
    let (mut base, mut ours, mut verdicts) = (Vec::new(), Vec::new(), Vec::new());
    let mut moved = 0;
    for i in 0..sizes.samples {
        let frame = prepare(rig, i)?;
        rig.drain();
        if let Some(primer) = frames.primer {
            rig.feed(primer)?;
        }
        // Counted around the timed run alone: `prepare` may move the same counters.
        let before = snapshot(rig, &watched(&check))?;
        for _ in 0..WARM_RUNS {
            rig.feed(frames.warmer)?;
        }
        rig.run(Prog::Baseline, &frame, 1)?;
        base.push(rig.run(Prog::Baseline, &frame, 1)?.1 as f64);
        let (verdict, ns) = rig.run(Prog::Knock, &frame, 1)?;
        ours.push(ns as f64);
        verdicts.push(verdict);
        let after = snapshot(rig, &watched(&check))?;
        let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        if check.counter.is_none() || delta.first().is_some_and(|d| *d >= 1) {
            moved += 1;
        }
        let still_start = usize::from(check.counter.is_some());
        ensure!(
            delta[still_start..].iter().all(|d| *d == 0),
            "a timed run moved a counter it should not have ({delta:?} for {:?})",
            watched(&check)
        );
        rig.drain();
        clean(rig, i)?;
    }
    // Reading /proc/interrupts costs far more than a run and empties the caches, so the
    // wakeups are counted in a pass of their own, untimed.
    let passes = sizes.samples.min(200);
    let mut wakeups = 0;
    for pass in 0..passes {
        // Sample numbers past the timed ones: fresh nonces and sources for the classes that
        // need them.
        let i = sizes.samples + pass;
        let frame = prepare(rig, i)?;
        rig.drain();
        if let Some(primer) = frames.primer {
            rig.feed(primer)?;
        }
        let interrupts = irq_work();
        rig.run(Prog::Knock, &frame, 1)?;
        wakeups += irq_work() - interrupts;
        rig.drain();
        clean(rig, i)?;
    }
    let irq_work = wakeups as f64 / passes.max(1) as f64;
    ensure!(
        moved == sizes.samples,
        "only {moved} of {} timed runs moved {:?}: they were not all the class they stand for",
        sizes.samples,
        check.counter.map(Counter::label)
    );
    ensure!(
        verdicts.iter().all(|v| *v == check.verdict),
        "verdicts other than {} among {:?}",
        check.verdict,
        &verdicts[..verdicts.len().min(10)]
    );
    Ok(Timing {
        baseline_ns: median(&mut base),
        knock_ns: median(&mut ours),
        method: format!("single x {}", sizes.samples),
        irq_work: Some(irq_work),
    })
}

/// IRQ-work interrupts so far, summed over CPUs.
fn irq_work() -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("IWI:"))
        .map_or(0, |rest| {
            rest.split_whitespace()
                .map_while(|w| w.parse::<u64>().ok())
                .sum()
        })
}
