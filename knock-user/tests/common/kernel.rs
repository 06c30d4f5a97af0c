//! The XDP program loaded in this process, fed crafted frames through BPF_PROG_TEST_RUN.
#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]

use std::collections::BTreeSet;
use std::path::Path;

use aya::TestRunOptions;
use aya::programs::TestRun as _;
use knock_common::Addr;
use knock_common::counter::Counter;
use knock_user::config;
use knock_user::kernel::{Capacities, Knock};
use knock_user::plan::{Plan, Switches};

pub const PASS: u32 = 2;
pub const DROP: u32 = 1;

/// The program loaded with a configuration, after `adjust` has changed the plan.
pub fn load_with(text: &str, adjust: impl FnOnce(&mut Plan)) -> Knock {
    load_sized(text, 1024, adjust)
}

/// Like `load_with`, with a chosen capacity of the progress map.
pub fn load_sized(text: &str, progress: u32, adjust: impl FnOnce(&mut Plan)) -> Knock {
    let config = config::parse(Path::new("test.conf"), text).expect("a valid configuration");
    // The server of the crafted frames: 198.51.100.1 and .4, and 2001:db8::1, as in the lab.
    let host: BTreeSet<Addr> = [
        Addr::from_ipv4([198, 51, 100, 1]),
        Addr::from_ipv4([198, 51, 100, 4]),
        Addr::from(
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .expect("an address"),
        ),
    ]
    .into();
    let mut plan = Plan::new(&config, &BTreeSet::new(), Switches::default()).with_local(&host);
    adjust(&mut plan);
    let mut knock = Knock::load(
        Capacities {
            progress,
            gate: 256,
        },
        false,
        None,
    )
    .expect("the program loads");
    knock.push(&plan).expect("the plan is written");
    knock
}

/// The program's verdict on one frame.
pub fn verdict(knock: &Knock, frame: &[u8]) -> u32 {
    let program = knock.program().expect("the program is loaded");
    program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        })
        .expect("test_run runs")
        .return_value
}

pub fn counter(knock: &Knock, which: Counter) -> u64 {
    knock
        .counters()
        .expect("counters")
        .into_iter()
        .find(|(c, _)| *c == which)
        .map_or(0, |(_, v)| v)
}

pub fn sources_in_progress(knock: &mut Knock) -> usize {
    knock.progress().expect("the progress map").keys().count()
}

pub fn sources_with_open_doors(knock: &mut Knock) -> usize {
    knock.gate().expect("the gate map").keys().count()
}
