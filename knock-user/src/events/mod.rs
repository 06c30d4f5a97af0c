//! From ring events to what the operator sees and what the host does: knockd's log lines, the
//! start and stop commands, and (through the keeper) the firewall mirror. Decoding the ring's
//! records is knock-common's ([`DoorEvent::decode`]), next to their encoding.

pub mod commands;
pub mod keeper;
pub mod names;

pub use knock_common::event::DoorEvent;
