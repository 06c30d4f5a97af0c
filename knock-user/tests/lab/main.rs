//! knock in a lab: the daemon guards a veth in a network namespace, real clients (Debian's
//! `knock` and `knock-user`) knock from another, real sockets connect, and the server's own
//! firewall and bpffs show what the daemon did. Needs root: `cargo xtask test` runs it, one test
//! at a time.
#![cfg(feature = "privileged-tests")]

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/kernel.rs"]
mod kernel;

mod conformance;
mod end_to_end;
mod hostile;
mod interfaces;
mod knockd_dropin;
mod l3_links;
mod mirror;
mod nat;
mod one_time;
mod operations;
mod replay;
mod restart_under_fire;
mod safety_net;
mod scanner;
mod senders;
