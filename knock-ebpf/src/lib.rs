//! The XDP program is the `knock` binary of this crate; this empty library only lets
//! `knock-user` declare a build dependency on it, so cargo rebuilds the program when it changes.
#![no_std]
