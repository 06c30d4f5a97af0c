//! Every map of the program. Sizes here are defaults; user space resizes the progress and gate
//! maps from the configuration before loading.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf};
use knock_common::ban::Strikes;
use knock_common::gate::Pass;
use knock_common::ports::{self, FirstSteps};
use knock_common::progress::Progress;
use knock_common::reply::{Probe, Reset};
use knock_common::settings::{Settings, SpaKey};
use knock_common::status::{DaemonInfo, DoorName};
use knock_common::{Addr, Door, MAX_DOORS, ProtoPort, Segment, counter, recent, spent};

/// Doors by id.
#[map]
pub static DOORS: Array<Door> = Array::with_max_entries(MAX_DOORS as u32, 0);

/// One class byte per (protocol, port): the fast path's only lookup.
#[map]
pub static PORTS: Array<u64> = Array::with_max_entries(ports::WORDS, 0);

/// For each first knock, the doors it starts.
#[map]
pub static FIRST_STEPS: HashMap<ProtoPort, FirstSteps> =
    HashMap::with_max_entries(MAX_DOORS as u32, 0);

/// Knock progress per source. An LRU map: sources are untrusted, so under pressure the least
/// recently seen attempts give way.
#[map]
pub static PROGRESS: LruHashMap<Addr, Progress> = LruHashMap::with_max_entries(16384, 0);

/// When sources last knocked, by hash slot: lets packets of sources that never knocked skip
/// the progress and ban lookups.
#[map]
pub static LAST_KNOCK: Array<u32> = Array::with_max_entries(recent::SLOTS, 0);

/// Doors opened by static sequences, per source (`Gate_Capacity`). Not an LRU: only completed
/// sequences add entries, and a flood must not evict an open door.
#[map]
pub static GATE: HashMap<Addr, Pass> = HashMap::with_max_entries(4096, 0);

/// Doors opened by SPA and by single-use (one-time, rotating) sequences, per source
/// (`Gate_Reserve`): a sniffer can replay none of these, so a flood of spoofed openings
/// through a static sequence fills `GATE` and never this map. Not an LRU either.
#[map]
pub static GATE_RESERVE: HashMap<Addr, Pass> = HashMap::with_max_entries(1024, 0);

/// Until when (on `recent`'s coarse clock) a source hashed to each slot may have a pass in
/// `GATE_RESERVE`: strangers' connection attempts skip that second lookup.
#[map]
pub static RESERVE_SEEN: Array<u32> = Array::with_max_entries(recent::SLOTS, 0);

/// Until when (on `recent`'s coarse clock) a source hashed to each slot may have a pass in
/// either map of the gate: strangers' connection attempts skip the gate's lookups, and in the
/// filtered look the tail call to the gate program too.
#[map]
pub static PASS_SEEN: Array<u32> = Array::with_max_entries(recent::SLOTS, 0);

/// For each guard group (see `ports::guard_group`), the doors that open its port.
#[map]
pub static GUARDS: Array<u64> = Array::with_max_entries(ports::GUARD_GROUPS, 0);

/// Per-CPU working memory for one packet. Values kept in map memory are opaque to the
/// verifier, so keeping loop-carried state here stops its path count from multiplying.
#[repr(C)]
pub struct Scratch {
    /// The classified packet. Passing it through memory makes every path out of the classifier
    /// look alike to the verifier, which then checks the rest of the program once instead of
    /// once per header shape.
    pub segment: Segment,
    /// A new source's progress, built here: too large for the 512-byte BPF stack.
    pub progress: Progress,
    /// Doors to open once the state machine has run.
    pub opens: Opens,
    /// A new source's pass, built here.
    pub pass: Pass,
    /// Set when the packet ended an attempt: a failure that counts toward a ban.
    pub failed: u32,
    /// The verdict decided before the state machine runs.
    pub verdict: u32,
    /// What the packet's port is to the knock state machine: the bits `AT_KNOCK_PORT` and
    /// `FIRST_KNOCK_PORT`.
    pub knock_port: u32,
    /// The packet is addressed to the host (or a door's target).
    pub to_host: u32,
    /// An SPA datagram's payload, copied out of the packet.
    pub spa: [u8; knock_common::spa::PACKET_LEN],
    /// Where the headers of a packet for the gate program lie.
    pub probe: Probe,
    /// The packet is for the gate program, once the open program has done its work.
    pub to_gate: u32,
    pub _pad: u32,
    /// When the packet arrived, for the open program.
    pub now_ns: u64,
    /// The reset the gate program builds: too large for the stack.
    pub reset: Reset,
}

/// In `Scratch::knock_port`: the packet goes to a port of some door's sequence.
pub const AT_KNOCK_PORT: u32 = 1;
/// In `Scratch::knock_port`: a first knock may go to that port (`ports::may_start`). Only ever
/// set with `AT_KNOCK_PORT`.
pub const FIRST_KNOCK_PORT: u32 = 2;

/// The most doors one packet can open: doors whose sequences end alike open together. A power
/// of two, so a mask bounds an index.
pub const OPENS_PER_PACKET: usize = 4;
const _: () = assert!(OPENS_PER_PACKET.is_power_of_two());

/// Doors a packet completed, opened once the state machine has finished with the packet.
#[repr(C)]
pub struct Opens {
    pub door: [u8; OPENS_PER_PACKET],
    pub count: u32,
    /// The next door to open: the open program opens one per round.
    pub next: u32,
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Failures per source. An LRU map: sources are untrusted; a flood can only evict strikes.
#[map]
pub static BANS: LruHashMap<Addr, Strikes> = LruHashMap::with_max_entries(16384, 0);

/// Until when (on `recent`'s coarse clock) a ban key hashed to each slot may be banned: most
/// knocks and connections skip the `BANS` lookup.
#[map]
pub static BAN_SEEN: Array<u32> = Array::with_max_entries(recent::SLOTS, 0);

/// SPA client keys by key id.
#[map]
pub static KEYS: HashMap<u32, SpaKey> = HashMap::with_max_entries(1024, 0);

/// SPA nonces seen within the timestamp window. Only authentic packets add entries.
#[map]
pub static NONCES: LruHashMap<[u8; 16], u8> = LruHashMap::with_max_entries(8192, 0);

/// Doors that SPA may open, by door tag, with their id.
#[map]
pub static SPA_DOORS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_DOORS as u32, 0);

/// Programs the main one hands packets to with a tail call, each with its own 512-byte stack
/// and verified on its own: slot `knock_common::HANDOFF_SPA` checks single-packet
/// authorization, slot `knock_common::HANDOFF_GATE` judges new connections to protected ports
/// and answers those it refuses, slot `knock_common::HANDOFF_OPEN` opens the doors a packet
/// completed.
#[map]
pub static HANDOFF: ProgramArray = ProgramArray::with_max_entries(3, 0);

/// The host's own addresses, and the doors' targets: knocks count only when sent to one.
#[map]
pub static LOCAL_ADDRS: HashMap<Addr, u8> = HashMap::with_max_entries(256, 0);

/// Single-use sequences that have opened their door, by tag (see `knock_common::spent`):
/// claimed with BPF_NOEXIST before a door opens, so each opens once. Not an LRU: only
/// completed single-use sequences add entries, and one evicted could open again.
#[map]
pub static SPENT: HashMap<spent::Tag, u64> = HashMap::with_max_entries(spent::CAPACITY, 0);

/// Networks whose sources the gate never blocks.
#[map]
pub static ALWAYS_ALLOW: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(1024, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Under `--observe`: how many would-be drops this CPU has reported in the current second, and
/// the one the gate noted for the packet at hand.
#[repr(C)]
pub struct ObserveBudget {
    pub window_start_ns: u64,
    pub source: Addr,
    pub reported: u32,
    pub port: u16,
    pub proto: u8,
    pub pending: u8,
}

#[map]
pub static OBSERVED: PerCpuArray<ObserveBudget> = PerCpuArray::with_max_entries(1, 0);

/// Events for user space: stages, openings, resets, timeouts.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

// The program never reads the three maps below. They live in the object so that they are
// pinned with the rest: what a restarted daemon and `knock-user status` read to know which
// layout the pinned maps have, what each door id is called and who runs the daemon.

/// The layout fingerprint of the pinned maps (`knock_common::status::LAYOUT`).
#[map]
pub static LAYOUT: Array<u32> = Array::with_max_entries(1, 0);

/// Door names by id.
#[map]
pub static NAMES: Array<DoorName> = Array::with_max_entries(MAX_DOORS as u32, 0);

/// The daemon's pid, start time and attach mode.
#[map]
pub static DAEMON: Array<DaemonInfo> = Array::with_max_entries(1, 0);

/// Always zero: nothing writes it. It lives in the program's writable global data, so the
/// verifier cannot know its value, and combining a value with it blurs what the verifier knows
/// of that value (see `Unaddressed::blurred`). Reading it is one load, no helper call.
#[unsafe(no_mangle)]
static mut OPAQUE_ZERO: usize = 0;

/// Reads [`OPAQUE_ZERO`].
#[inline(always)]
pub fn opaque_zero() -> usize {
    // SAFETY: a plain aligned read of a global nothing writes.
    unsafe { core::ptr::read_volatile(&raw const OPAQUE_ZERO) }
}
