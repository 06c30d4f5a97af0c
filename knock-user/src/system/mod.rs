//! Small leaves that talk to the operating system: clocks, randomness, processes (what /proc
//! says, and the one runner of other programs, with a deadline), the host's addresses and served
//! ports, what its stack puts into its answers, waiting on descriptors. They import nothing else of the crate.

pub mod clock;
pub mod cron;
pub mod net;
pub mod netlink;
pub mod notify;
pub mod proc;
pub mod process;
pub mod random;
pub mod routes;
pub mod served;
pub mod stack;
pub mod watch;
