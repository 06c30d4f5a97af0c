//! The program loaded into this process with a configuration and fed crafted frames through
//! BPF_PROG_TEST_RUN, with no interface and no daemon: the rig of the kernel tests and of
//! `cargo xtask bench`. Needs root.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aya::TestRunOptions;
use aya::programs::{ProgramError, TestRun as _, Xdp};
use knock_common::Addr;
use knock_common::counter::Counter;

use super::{Capacities, Knock, LoadError};
use crate::config::Config;
use crate::plan::{Plan, Switches};

/// XDP_PASS, XDP_DROP and XDP_TX, as a test run returns them.
pub const PASS: u32 = 2;
pub const DROP: u32 = 1;
pub const TX: u32 = 3;

/// The server the crafted frames are addressed to, as in the lab: 198.51.100.1 and .4 (a door's
/// `Target`) and 2001:db8::1.
pub fn server_addresses() -> BTreeSet<Addr> {
    [
        Addr::from(Ipv4Addr::new(198, 51, 100, 1)),
        Addr::from(Ipv4Addr::new(198, 51, 100, 4)),
        Addr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    ]
    .into()
}

/// Loads the program with the plan of `config` (as a first start plans it, with no served
/// ports and the server's addresses local), after `adjust` has changed the plan.
pub fn load(
    config: &Config,
    capacities: Capacities,
    adjust: impl FnOnce(&mut Plan),
) -> Result<Knock, LoadError> {
    let mut plan =
        Plan::new(config, &BTreeSet::new(), Switches::default()).with_local(&server_addresses());
    adjust(&mut plan);
    let mut knock = Knock::load(capacities, false, None)?;
    knock.push(&plan)?;
    knock.fill_handoff()?;
    Ok(knock)
}

/// Runs the XDP program `name` of the loaded object `repeat` times on `frame`: its verdict and
/// the kernel's mean time per run.
pub fn test_run(
    knock: &Knock,
    name: &str,
    frame: &[u8],
    repeat: u32,
) -> Result<(u32, Duration), ProgramError> {
    let program: &Xdp = knock
        .ebpf
        .program(name)
        .ok_or(ProgramError::NotLoaded)?
        .try_into()?;
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    })?;
    Ok((result.return_value, result.duration))
}

/// Runs the XDP program `name` once on `frame`: its verdict and the frame as it left it (for
/// XDP_TX, the answer sent back).
pub fn answer(knock: &Knock, name: &str, frame: &[u8]) -> Result<(u32, Vec<u8>), ProgramError> {
    let program: &Xdp = knock
        .ebpf
        .program(name)
        .ok_or(ProgramError::NotLoaded)?
        .try_into()?;
    // Room for a frame that grows (a frame never grows past the headroom the kernel gives).
    let mut out = vec![0u8; frame.len() + 256];
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// The main program's verdict on one frame.
pub fn verdict(knock: &Knock, frame: &[u8]) -> Result<u32, ProgramError> {
    Ok(test_run(knock, knock_common::PROGRAM, frame, 1)?.0)
}

/// One packet counter, summed over CPUs.
pub fn counter(knock: &Knock, which: Counter) -> u64 {
    knock
        .counters()
        .unwrap_or_default()
        .into_iter()
        .find(|(c, _)| *c == which)
        .map_or(0, |(_, v)| v)
}
