//! The commands besides the daemon: the clients (`knock`, `spa`, `keygen`) and the operator
//! commands (`check`, `status`, `stop`, `generate-manuals`). `main.rs` parses the command line
//! and calls these.

pub mod check;
pub mod interfaces;
pub mod keygen;
pub mod knock;
pub mod manuals;
pub mod spa;
pub mod status;
pub mod stop;
