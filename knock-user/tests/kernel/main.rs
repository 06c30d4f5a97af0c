//! The XDP program alone: loaded in this process and fed crafted frames through
//! BPF_PROG_TEST_RUN, for exact verdicts, counters and map contents. Needs root: `cargo xtask
//! test` runs it, one test at a time.
#![cfg(feature = "privileged-tests")]

#[path = "../common/kernel.rs"]
mod kernel;

mod aimed;
mod corpus;
mod observe;
mod push;
mod upgrade;
mod verdicts;
mod verifier;
