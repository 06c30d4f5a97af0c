//! What the XDP program and user space share: the map layouts, the limits, the frame classifier
//! and the knock state machine. Everything here is plain data and pure functions, so the host
//! unit tests exercise exactly the code the kernel runs.
#![no_std]

#[cfg(any(test, feature = "craft"))]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod addr;
pub mod ban;
pub mod counter;
#[cfg(any(test, feature = "craft"))]
pub mod craft;
pub mod door;
pub mod event;
pub mod frame;
pub mod gate;
pub mod ports;
pub mod progress;
pub mod recent;
pub mod reply;
pub mod segment;
pub mod settings;
pub mod siphash;
pub mod spa;
pub mod spent;
pub mod status;

pub use addr::Addr;
pub use door::{Door, ProgressRule, ProtoPort};
pub use segment::Segment;

/// The most doors one configuration may hold. Door ids index 64-bit masks.
pub const MAX_DOORS: usize = 64;
/// The longest knock sequence, as in knockd.
pub const MAX_STEPS: usize = 32;
/// The most ports one door may protect.
pub const MAX_GUARDED_PORTS: usize = 8;
/// The most attempts one source can have in progress at once (doors that share a prefix).
pub const ATTEMPTS_PER_SOURCE: usize = 8;

/// Names of the maps, shared so user space finds what the program declares.
pub mod maps {
    pub const DOORS: &str = "DOORS";
    pub const PORTS: &str = "PORTS";
    pub const FIRST_STEPS: &str = "FIRST_STEPS";
    pub const PROGRESS: &str = "PROGRESS";
    pub const GATE: &str = "GATE";
    pub const GUARDS: &str = "GUARDS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const EVENTS: &str = "EVENTS";
    pub const BANS: &str = "BANS";
    pub const KEYS: &str = "KEYS";
    pub const NONCES: &str = "NONCES";
    pub const SPA_DOORS: &str = "SPA_DOORS";
    pub const ALWAYS_ALLOW: &str = "ALWAYS_ALLOW";
    pub const LOCAL_ADDRS: &str = "LOCAL_ADDRS";
    pub const LAYOUT: &str = "LAYOUT";
    pub const NAMES: &str = "NAMES";
    pub const DAEMON: &str = "DAEMON";
    pub const SCRATCH: &str = "SCRATCH";
    pub const LAST_KNOCK: &str = "LAST_KNOCK";
    pub const SPENT: &str = "SPENT";
    pub const GATE_RESERVE: &str = "GATE_RESERVE";
    pub const RESERVE_SEEN: &str = "RESERVE_SEEN";
    pub const PASS_SEEN: &str = "PASS_SEEN";
    pub const BAN_SEEN: &str = "BAN_SEEN";
}

/// The name of the XDP program in the object file: the one for links with Ethernet headers.
pub const PROGRAM: &str = "knock";
/// The same program for links whose frames start at the IP header (tun, WireGuard, PPP, raw
/// IP, IP tunnels). It shares every map with `PROGRAM`.
pub const IP_PROGRAM: &str = "knock_ip";

/// The XDP program that judges frames of a link of the given kind.
pub const fn program_for(link: frame::Link) -> &'static str {
    match link {
        frame::Link::Ethernet => PROGRAM,
        frame::Link::Ip => IP_PROGRAM,
    }
}
/// An XDP program that passes everything: the benchmarks' baseline.
pub const BASELINE_PROGRAM: &str = "knock_baseline";
/// The XDP program that checks single-packet authorization, reached by a tail call.
pub const SPA_PROGRAM: &str = "knock_spa";
/// The name of the program array the main program tail-calls through.
pub const HANDOFF: &str = "HANDOFF";
/// The slot of [`SPA_PROGRAM`] in [`HANDOFF`]: the loader puts it there, the main program
/// tail-calls it.
pub const HANDOFF_SPA: u32 = 0;
/// The XDP program that judges new connections to protected ports (and, in the stealth look,
/// to ports the host does not serve), and answers those it refuses as closed ports do,
/// reached by a tail call.
pub const GATE_PROGRAM: &str = "knock_gate";
/// The slot of [`GATE_PROGRAM`] in [`HANDOFF`].
pub const HANDOFF_GATE: u32 = 1;
/// The XDP program that opens the doors a packet completed and counts a wrong knock towards a
/// ban, reached by a tail call: kept apart so the verifier checks the gate's writes once, not
/// once per path through the state machine.
pub const OPEN_PROGRAM: &str = "knock_open";
/// The slot of [`OPEN_PROGRAM`] in [`HANDOFF`].
pub const HANDOFF_OPEN: u32 = 2;
/// The socket-lookup program attached to the host's network namespace: it refuses sockets to
/// connections and datagrams the gate refuses, so that the host answers them as for a closed
/// port (see `reply`).
pub const GUARD_PROGRAM: &str = "knock_guard";

/// Declares that a type shared through a map has the given size on every target, so a 32-bit
/// loader and the 64-bit BPF program agree on its layout.
#[macro_export]
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr, align = $align:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        const _: () = assert!(core::mem::align_of::<$ty>() == $align);
    };
}

/// Marks map types as plain old data for aya's user-space map API.
#[cfg(feature = "user")]
macro_rules! impl_pod {
    ($($ty:ty),* $(,)?) => {
        $(
            // SAFETY: the type is `#[repr(C)]`, holds only integers and arrays of integers, and has
            // no implicit padding (sizes are asserted next to each definition).
            unsafe impl aya::Pod for $ty {}
        )*
    };
}

#[cfg(feature = "user")]
impl_pod!(
    addr::Addr,
    door::Door,
    door::ProtoPort,
    gate::Pass,
    progress::Progress,
    settings::Settings,
    ports::FirstSteps,
    ban::Strikes,
    settings::SpaKey,
    status::DaemonInfo,
    status::DoorName,
    event::Event,
);
