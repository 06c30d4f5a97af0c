//! The XDP program in the kernel: loading it (creating its maps, or taking over the pinned
//! ones), attaching it ([`attach`]), writing plans into its maps ([`write`]), reading them back
//! ([`read`], shared with `status`), the pinned state directory ([`pins`]) and the expiry sweep
//! ([`sweep`]). [`rig`] loads it for tests and benchmarks.

mod attach;
pub mod guard;
pub mod link;
pub mod pins;
pub mod read;
pub mod rig;
pub mod sweep;
mod write;

use aya::maps::{Array, HashMap, MapData, ProgramArray, RingBuf};
use aya::programs::links::FdLink;
use aya::programs::{ProgramError, Xdp};
use aya::{Ebpf, EbpfLoader};
use knock_common::ban::Strikes;
use knock_common::frame::Link;
use knock_common::gate::Pass;
use knock_common::progress::Progress;
use knock_common::status::{self, DaemonInfo};
use knock_common::{
    Addr, Door, GATE_PROGRAM, GUARD_PROGRAM, HANDOFF, HANDOFF_GATE, HANDOFF_OPEN, HANDOFF_SPA,
    IP_PROGRAM, OPEN_PROGRAM, PROGRAM, SPA_PROGRAM, maps, program_for,
};

pub use attach::{
    AttachError, AttachMode, Attached, Attachment, modes_code, modes_name, modes_phrase,
};
pub use link::XdpMode;
pub use read::{MapMemory, ProgramSize};

use crate::plan::diff::Held;
use pins::{PINNED, StateDir};

/// The XDP program, built by build.rs and embedded in this binary.
pub static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/knock"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the kernel refused the knock program's maps or object")]
    Object(#[from] aya::EbpfError),
    #[error("the kernel refused the knock program")]
    Program(#[from] ProgramError),
    #[error("the knock program lacks its map {0}; the binary is broken")]
    MissingMap(&'static str),
    #[error("the object lacks one of its XDP programs; the binary is broken")]
    MissingProgram,
    #[error("the kernel refused an update of map {map}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

/// The program object's fingerprint: the first 32 bits of its SHA-256, in hex.
fn object_fingerprint() -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(PROGRAM_OBJECT);
    digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The programs the main program tail-calls, and their slots in `HANDOFF`.
const HANDED_OFF_TO: [(&str, u32); 3] = [
    (SPA_PROGRAM, HANDOFF_SPA),
    (GATE_PROGRAM, HANDOFF_GATE),
    (OPEN_PROGRAM, HANDOFF_OPEN),
];

/// Capacities of the maps that hold per-source state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub progress: u32,
    /// Sources with doors opened by static sequences.
    pub gate: u32,
    /// Sources with doors opened by SPA and single-use sequences.
    pub reserve: u32,
}

/// The loaded program and its maps.
pub struct Knock {
    ebpf: Ebpf,
    /// The program object's fingerprint, which names its hand-over pins.
    object: String,
    /// What the configuration maps may hold (see `plan::diff::Held`).
    held: Held,
    /// The generation of the last complete push, and the settings it wrote (the clock is
    /// written into them every second).
    generation: u32,
    settings: Option<knock_common::settings::Settings>,
    /// Where the maps and links are pinned; `None` when state dies with the daemon.
    state: Option<StateDir>,
    /// This process's hold on each interface's link: taken over from a pin or pinned by this
    /// daemon (dropping it closes this process's descriptor; the pin keeps the program
    /// attached), or held for this process's lifetime.
    links: Vec<(String, attach::Hold)>,
    /// The socket-lookup guard's link, once attached (see [`guard`]).
    guard: Option<FdLink>,
    /// This load's key for the flow labels of the program's IPv6 resets: random, so nobody can
    /// predict them (see `knock_common::reply::flow_label`).
    label_key: u32,
}

impl Knock {
    /// Loads the program and creates its maps, or takes over the maps pinned in `state`.
    /// `debug` turns on the program's per-packet logs. The main program hands nothing over
    /// until [`Self::fill_handoff`].
    pub fn load(
        capacities: Capacities,
        debug: bool,
        state: Option<&StateDir>,
    ) -> Result<Self, LoadError> {
        Self::load_object(capacities, debug, state, object_fingerprint())
    }

    /// Loads the program as if it were another program object, with fingerprint `object`:
    /// what an upgrade meets, the earlier daemon's object, for the privileged tests. Not in
    /// the daemon's binary.
    #[cfg(feature = "privileged-tests")]
    pub fn load_as_object(
        capacities: Capacities,
        state: Option<&StateDir>,
        object: &str,
    ) -> Result<Self, LoadError> {
        Self::load_object(capacities, false, state, object.to_owned())
    }

    fn load_object(
        capacities: Capacities,
        debug: bool,
        state: Option<&StateDir>,
        object: String,
    ) -> Result<Self, LoadError> {
        // aya-log levels: 0 disables every log statement, 5 enables up to trace.
        let log_level: u8 = if debug { 5 } else { 0 };
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(maps::PROGRESS, capacities.progress)
            .map_max_entries(maps::GATE, capacities.gate)
            .map_max_entries(maps::GATE_RESERVE, capacities.reserve)
            .override_global("AYA_LOG_LEVEL", &log_level, false);
        if let Some(dir) = state {
            for name in PINNED {
                loader.map_pin_path(name, dir.map_path(name));
            }
            // Other objects' pins stay until their main programs are detached everywhere
            // (`release_other_objects`).
            loader.map_pin_path(HANDOFF, dir.handoff_path(&object));
            loader.map_pin_path(maps::SCRATCH, dir.scratch_path(&object));
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
        program_mut(&mut ebpf, Link::Ethernet)?.load()?;
        for name in HANDED_OFF_TO.map(|(name, _)| name) {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(LoadError::MissingProgram)?
                .try_into()?;
            program.load()?;
        }
        let mut knock = Self {
            ebpf,
            object,
            held: Held::Unknown,
            generation: 0,
            settings: None,
            state: state.cloned(),
            links: Vec::new(),
            guard: None,
            label_key: random_key(),
        };
        let mut layout: Array<_, u32> = knock.array(maps::LAYOUT)?;
        layout
            .set(0, status::LAYOUT, 0)
            .map_err(map_error(maps::LAYOUT))?;
        Ok(knock)
    }

    /// Puts this object's SPA, gate and open programs in the slots of `HANDOFF`, where its
    /// main programs tail-call them. Only once a plan is pushed: they judge by its maps, and
    /// on a restart of the same object the earlier main program reaches them at once through
    /// the shared, pinned `HANDOFF`, whose earlier programs judge until then by the earlier
    /// configuration.
    pub fn fill_handoff(&mut self) -> Result<(), LoadError> {
        for (name, slot) in HANDED_OFF_TO {
            let program: &Xdp = self
                .ebpf
                .program(name)
                .ok_or(LoadError::MissingProgram)?
                .try_into()?;
            let fd = program.fd()?.try_clone().map_err(ProgramError::from)?;
            let mut handoff = ProgramArray::try_from(
                self.ebpf
                    .map_mut(HANDOFF)
                    .ok_or(LoadError::MissingMap(HANDOFF))?,
            )
            .map_err(map_error(HANDOFF))?;
            handoff.set(slot, &fd, 0).map_err(map_error(HANDOFF))?;
        }
        Ok(())
    }

    /// Unpins the hand-over maps of other program objects (an earlier version's): only once
    /// every link this daemon guards with runs this object's main program, since another's
    /// tail-calls through its own pinned `HANDOFF`, which the kernel empties with its pin.
    pub fn release_other_objects(&self) {
        if let Some(dir) = &self.state {
            dir.remove_other_objects(&self.object);
        }
    }

    /// Records who runs the program, for `status` and the next daemon.
    pub fn record_daemon(&mut self, info: DaemonInfo) -> Result<(), LoadError> {
        let mut daemon: Array<_, DaemonInfo> = self.array(maps::DAEMON)?;
        daemon.set(0, info, 0).map_err(map_error(maps::DAEMON))
    }

    /// Unpins the links and maps and removes the state directory: the program detaches when
    /// this daemon exits, and nothing is left behind.
    pub fn forget_state(&mut self) -> Result<(), pins::StateError> {
        match self.state.take() {
            Some(dir) => dir.remove(),
            None => Ok(()),
        }
    }

    /// Whether state outlives this daemon.
    pub fn keeps_state(&self) -> bool {
        self.state.is_some()
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn program(&self) -> Result<&Xdp, LoadError> {
        let program = self
            .ebpf
            .program(PROGRAM)
            .ok_or(LoadError::MissingProgram)?;
        Ok(program.try_into()?)
    }

    /// The programs loaded into the kernel: the entry points for the kinds of link in use
    /// (the Ethernet one always), the programs they tail-call, and the socket-lookup guard once
    /// it is loaded.
    pub(crate) fn loaded_programs(&self) -> Vec<&'static str> {
        let mut names = vec![PROGRAM, SPA_PROGRAM, GATE_PROGRAM, OPEN_PROGRAM];
        if self.program_on(Link::Ip).is_ok() {
            names.push(IP_PROGRAM);
        }
        if self
            .ebpf
            .program(GUARD_PROGRAM)
            .is_some_and(|program| program.fd().is_ok())
        {
            names.push(GUARD_PROGRAM);
        }
        names
    }

    /// Loads the entry point for links of kind `link`, if it is not loaded yet. Only the
    /// Ethernet one is loaded with the object: the other costs a verification that a host
    /// without such links need not pay.
    pub fn load_program(&mut self, link: Link) -> Result<(), LoadError> {
        let program = program_mut(&mut self.ebpf, link)?;
        if program.fd().is_err() {
            program.load()?;
        }
        Ok(())
    }

    /// The entry point for links of kind `link`, once loaded.
    pub fn program_on(&self, link: Link) -> Result<&Xdp, LoadError> {
        let program: &Xdp = self
            .ebpf
            .program(program_for(link))
            .ok_or(LoadError::MissingProgram)?
            .try_into()?;
        program.fd()?;
        Ok(program)
    }

    /// The settings last pushed into the kernel.
    pub fn settings(&self) -> Option<knock_common::settings::Settings> {
        self.settings
    }

    /// The door records last pushed into the kernel, if the last push went through.
    pub fn pushed_doors(&self) -> Vec<Door> {
        self.held
            .exactly()
            .map_or_else(Vec::new, |p| p.doors.clone())
    }

    /// The event ring buffer; it can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(maps::EVENTS)
            .ok_or(LoadError::MissingMap(maps::EVENTS))?;
        RingBuf::try_from(map).map_err(map_error(maps::EVENTS))
    }

    pub fn progress(&mut self) -> Result<HashMap<&mut MapData, Addr, Progress>, LoadError> {
        self.hash(maps::PROGRESS)
    }

    /// The doors opened by static sequences.
    pub fn gate(&mut self) -> Result<HashMap<&mut MapData, Addr, Pass>, LoadError> {
        self.hash(maps::GATE)
    }

    /// The doors opened by SPA and single-use sequences: the gate's reserve.
    pub fn reserve(&mut self) -> Result<HashMap<&mut MapData, Addr, Pass>, LoadError> {
        self.hash(maps::GATE_RESERVE)
    }

    /// Both maps of the gate, static first, as the sweep and the daemon walk them.
    pub const GATES: [&'static str; 2] = [maps::GATE, maps::GATE_RESERVE];

    /// Every pass in both maps of the gate, static ones first.
    pub fn passes(&mut self) -> Result<Vec<(Addr, Pass)>, LoadError> {
        let mut passes = Vec::new();
        for name in Self::GATES {
            passes.extend(self.hash::<Addr, Pass>(name)?.iter().filter_map(Result::ok));
        }
        Ok(passes)
    }

    /// Runs `each` on both maps of the gate.
    pub fn each_gate(
        &mut self,
        mut each: impl FnMut(&mut HashMap<&mut MapData, Addr, Pass>),
    ) -> Result<(), LoadError> {
        for name in Self::GATES {
            each(&mut self.hash(name)?);
        }
        Ok(())
    }

    /// One map of the gate by name (one of [`Self::GATES`]).
    pub fn gate_map(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, Addr, Pass>, LoadError> {
        self.hash(name)
    }

    pub fn bans(&mut self) -> Result<HashMap<&mut MapData, Addr, Strikes>, LoadError> {
        self.hash(maps::BANS)
    }

    fn array<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, V>, LoadError> {
        let map = self.ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
        Array::try_from(map).map_err(map_error(name))
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, LoadError> {
        self.ebpf.map(name).ok_or(LoadError::MissingMap(name))
    }

    fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, LoadError> {
        let map = self.ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
        HashMap::try_from(map).map_err(map_error(name))
    }
}

/// A random key; a fixed one when the kernel's random source cannot be read (a flow label
/// that is predictable, no worse).
fn random_key() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = crate::system::random::fill(&mut bytes);
    u32::from_ne_bytes(bytes) | 1
}

fn program_mut(ebpf: &mut Ebpf, link: Link) -> Result<&mut Xdp, LoadError> {
    let program = ebpf
        .program_mut(program_for(link))
        .ok_or(LoadError::MissingProgram)?;
    Ok(program.try_into()?)
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { map, source }
}
