//! The XDP program loaded in this process, fed crafted frames through BPF_PROG_TEST_RUN: the
//! kernel rig (`knock_user::kernel::rig`) with a test's configuration.
#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]

use std::collections::BTreeSet;
use std::path::Path;

use knock_common::counter::Counter;
use knock_common::frame::Link;
use knock_user::config;
use knock_user::kernel::{Capacities, Knock, rig};
use knock_user::plan::{Plan, Switches};

pub use rig::PASS;
/// XDP_DROP.
pub const DROP: u32 = rig::DROP;
/// XDP_TX: the program answered the frame itself.
pub const TX: u32 = rig::TX;

/// The program loaded with a configuration, after `adjust` has changed the plan.
pub fn load_with(text: &str, adjust: impl FnOnce(&mut Plan)) -> Knock {
    load_sized(text, 1024, adjust)
}

/// Like `load_with`, with a chosen capacity of the progress map.
pub fn load_sized(text: &str, progress: u32, adjust: impl FnOnce(&mut Plan)) -> Knock {
    let config = config::parse(Path::new("test.conf"), text).expect("a valid configuration");
    rig::load(
        &config,
        Capacities {
            progress,
            gate: 256,
            reserve: 64,
        },
        adjust,
    )
    .expect("the program loads and takes the plan")
}

/// The plan `load_with` pushes for a configuration, after `adjust` has changed it.
pub fn plan_for(text: &str, adjust: impl FnOnce(&mut Plan)) -> Plan {
    let config = config::parse(Path::new("test.conf"), text).expect("a valid configuration");
    let mut plan = Plan::new(&config, &BTreeSet::new(), Switches::default())
        .with_local(&rig::server_addresses());
    adjust(&mut plan);
    plan
}

/// The program's verdict on one frame.
pub fn verdict(knock: &Knock, frame: &[u8]) -> u32 {
    verdict_on(knock, Link::Ethernet, frame)
}

/// The verdict of the entry point for links of kind `link` (loaded with
/// `Knock::load_program`) on one frame.
pub fn verdict_on(knock: &Knock, link: Link, frame: &[u8]) -> u32 {
    rig::test_run(knock, knock_common::program_for(link), frame, 1)
        .expect("test_run runs")
        .0
}

/// The verdict of the entry point for links of kind `link` on one frame, and the frame as the
/// program left it (for XDP_TX, the answer).
pub fn answer_on(knock: &Knock, link: Link, frame: &[u8]) -> (u32, Vec<u8>) {
    rig::answer(knock, knock_common::program_for(link), frame).expect("test_run runs")
}

/// Runs an already loaded program once on `frame`, from any thread.
pub fn run_once(program: &aya::programs::Xdp, frame: &[u8]) -> u32 {
    use aya::programs::TestRun as _;
    program
        .test_run(aya::TestRunOptions {
            data_in: Some(frame),
            ..aya::TestRunOptions::default()
        })
        .expect("test_run runs")
        .return_value
}

pub fn counter(knock: &Knock, which: Counter) -> u64 {
    rig::counter(knock, which)
}

pub fn sources_in_progress(knock: &mut Knock) -> usize {
    knock.progress().expect("the progress map").keys().count()
}

pub fn sources_with_open_doors(knock: &mut Knock) -> usize {
    knock.gate().expect("the gate map").keys().count()
}

/// The server's addresses the loaded programs take as the host's own.
pub fn rig_server_addresses() -> BTreeSet<knock_common::Addr> {
    rig::server_addresses()
}
