//! Small leaves that talk to the operating system: clocks, randomness, the host's addresses
//! and served ports, waiting on descriptors.

pub mod clock;
pub mod net;
pub mod proc;
pub mod process;
pub mod random;
pub mod served;
pub mod watch;
