//! Part 5: how the per-packet cost grows with the number of doors and with the progress map's
//! occupancy.

use std::fmt::Write as _;

use anyhow::Result;
use knock_common::counter::Counter;

use super::measure::{Around, Check, STATE, Sizes, repeated, single};
use super::packet::syn;
use super::report::Table;
use super::rig::{DROP, PASS, Rig, distinct, host};

/// How the doors of a growing configuration relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every door has its own three ports.
    Distinct,
    /// Every door starts with the same knock: the worst case, one packet starts an attempt at
    /// every door (up to eight per source; the rest are refused as crowded).
    SharedFirst,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Distinct => "own ports",
            Self::SharedFirst => "shared first knock",
        }
    }

    /// Door `i`'s three knocks.
    fn knocks(self, i: u16) -> [u16; 3] {
        match self {
            Self::Distinct => [10000 + 10 * i, 10001 + 10 * i, 10002 + 10 * i],
            Self::SharedFirst => [7000, 20000 + 10 * i, 20001 + 10 * i],
        }
    }
}

fn doors_config(count: u16, shape: Shape) -> String {
    // The filtered look, as in `packet::config`.
    let mut text = String::from("[options]\n    Ports_Look = filtered\n");
    for i in 0..count {
        let [a, b, c] = shape.knocks(i);
        let _ = write!(
            text,
            "[door{i}]\n    sequence = {a},{b},{c}\n    seq_timeout = 25\n    cmd_timeout = 3600\n"
        );
    }
    text
}

/// One point of a growth curve: overheads over the empty program, in ns.
pub struct Point {
    pub series: String,
    pub x: u32,
    pub unrelated: f64,
    pub gate: f64,
    pub first: f64,
    pub step: f64,
    /// Sources in the progress map after the point was measured.
    pub held: Option<usize>,
}

const STRANGER: u8 = 3;
const KNOCKER: u8 = 5;
const PRIMER: u8 = 6;

fn pass() -> Check {
    Check {
        verdict: PASS,
        counter: None,
        still: STATE,
    }
}

fn counted(counter: Counter) -> Check {
    Check {
        verdict: DROP,
        counter: Some(counter),
        still: &[],
    }
}

/// Times the four classes on a loaded rig whose door 0 knocks on `knocks`. `fresh` gives the
/// source of sample `i` of the first-knock class; `keep` leaves its attempt in the map.
fn point(
    rig: &mut Rig,
    sizes: Sizes,
    knocks: [u16; 3],
    fresh: impl Fn(usize) -> std::net::IpAddr,
    keep: bool,
) -> Result<[f64; 4]> {
    let stranger = host(false, STRANGER);
    let knocker = host(false, KNOCKER);
    // An unread event, so that the timed knocks wake no reader: their cost is the program's.
    let primer = syn(host(false, PRIMER), knocks[0]);
    let warmer = syn(stranger, 443);
    let unrelated = repeated(rig, &syn(stranger, 443), sizes, pass())?.overhead();
    let gate = repeated(
        rig,
        &syn(stranger, 22),
        sizes,
        counted(Counter::GateDropped),
    )?
    .overhead();
    let first = single(
        rig,
        sizes,
        counted(Counter::KnockAccepted),
        Around {
            primer: Some(&primer),
            warmer: &warmer,
        },
        |_, i| Ok(syn(fresh(i), knocks[0])),
        |rig, i| {
            if !keep {
                rig.forget(fresh(i));
            }
            rig.forget(host(false, PRIMER));
            Ok(())
        },
    )?
    .overhead();
    let step = single(
        rig,
        sizes,
        counted(Counter::KnockAccepted),
        Around {
            primer: Some(&primer),
            warmer: &warmer,
        },
        |rig, _| {
            rig.feed(&syn(knocker, knocks[0]))?;
            Ok(syn(knocker, knocks[1]))
        },
        |rig, _| {
            rig.forget(knocker);
            rig.forget(host(false, PRIMER));
            Ok(())
        },
    )?
    .overhead();
    Ok([unrelated, gate, first, step])
}

/// Doors from 1 to 64, in both shapes.
pub fn doors(sizes: Sizes, counts: &[u16]) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for shape in [Shape::Distinct, Shape::SharedFirst] {
        for &count in counts {
            let mut rig = Rig::load(&doors_config(count, shape), 16384)?;
            let knocker = host(false, KNOCKER);
            let [unrelated, gate, first, step] =
                point(&mut rig, sizes, shape.knocks(0), |_| knocker, false)?;
            points.push(Point {
                series: format!("doors, {}", shape.name()),
                x: u32::from(count),
                unrelated,
                gate,
                first,
                step,
                held: None,
            });
        }
    }
    Ok(points)
}

/// The progress map from empty to full. Below full, each first knock's attempt is removed after
/// it is timed, so the occupancy holds; at full, every first knock comes from a new source and
/// its insertion evicts the least recently used attempt, as under a flood.
pub fn progress(sizes: Sizes, capacity: u32, percents: &[u32]) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for &percent in percents {
        let mut rig = Rig::load(&super::packet::config("strict"), capacity)?;
        let filled = u32::try_from(u64::from(capacity) * u64::from(percent) / 100)?;
        rig.fill_progress(filled, knock_user::system::clock::monotonic_ns())?;
        let full = percent >= 100;
        let [unrelated, gate, first, step] = point(
            &mut rig,
            sizes,
            super::packet::KNOCKS,
            |i| distinct(true, i as u32),
            full,
        )?;
        let held = rig.sources_in_progress()?;
        points.push(Point {
            series: "progress map occupancy (%)".into(),
            x: percent,
            unrelated,
            gate,
            first,
            step,
            held: Some(held),
        });
    }
    Ok(points)
}

pub fn table(title: &str, x: &str, points: &[Point]) -> Table {
    let mut table = Table::new(
        title,
        &[
            "series",
            x,
            "SYN unrelated",
            "SYN protected, dropped",
            "first knock",
            "knock step",
            "sources held",
        ],
    );
    for p in points {
        table.row(vec![
            p.series.clone(),
            p.x.to_string(),
            format!("{:.0}", p.unrelated),
            format!("{:.0}", p.gate),
            format!("{:.0}", p.first),
            format!("{:.0}", p.step),
            p.held.map_or_else(String::new, |h| h.to_string()),
        ]);
    }
    table
}
