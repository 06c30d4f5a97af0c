//! Loading the XDP program into the kernel, attaching it to an interface, and writing a plan
//! into its maps.

use std::collections::BTreeSet;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use knock_common::ban::Strikes;
use knock_common::counter::Counter;
use knock_common::gate::Pass;
use knock_common::ports::FirstSteps;
use knock_common::progress::Progress;
use knock_common::settings::{Settings, SpaKey};
use knock_common::status::{self, DaemonInfo, DoorName};
use knock_common::{
    Addr, Door, HANDOFF, HANDOFF_SPA, MAX_DOORS, PROGRAM, ProtoPort, SPA_PROGRAM, maps,
};

use crate::plan::Plan;
use crate::state::{PINNED, StateDir};

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
    #[error("the object holds no XDP program named `knock`; the binary is broken")]
    MissingProgram,
    #[error("the kernel refused an update of map {map}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no network interface named `{0}`")]
    NoSuchInterface(String),
    #[error(
        "cannot attach in native XDP mode to {iface} (its driver may lack native XDP; \
         run again with `--xdp-mode skb` to use generic XDP)"
    )]
    Native { iface: String, source: ProgramError },
    #[error("cannot attach to {iface}")]
    Other { iface: String, source: ProgramError },
    #[error("the kernel attached to {iface} without a BPF link, which cannot be pinned")]
    Link {
        iface: String,
        source: aya::programs::links::LinkError,
    },
    #[error("cannot pin the link of {iface} at {path}")]
    Pin {
        iface: String,
        path: std::path::PathBuf,
        source: aya::pin::PinError,
    },
}

/// What attaching to an interface found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attached {
    /// Attached afresh, the link pinned so the program outlives the daemon.
    Pinned,
    /// The pinned link of an earlier daemon now runs this program: the interface was never
    /// unguarded.
    TookOver,
    /// The earlier daemon's link could not take this program (`why`); it was detached and
    /// the program attached afresh.
    Reattached { why: String },
    /// Attached for this process only: it detaches when the daemon exits.
    Held,
}

/// How the program attaches to an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// In the driver, before the kernel allocates anything for the packet.
    #[default]
    Native,
    /// In the generic path, for drivers without native XDP.
    Skb,
}

impl AttachMode {
    fn xdp(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Skb => XdpMode::Skb,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Skb => "skb",
        }
    }

    /// As the `DAEMON` map records it.
    pub const fn code(self) -> u32 {
        match self {
            Self::Native => status::NATIVE,
            Self::Skb => status::GENERIC,
        }
    }

    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            status::NATIVE => Some(Self::Native),
            status::GENERIC => Some(Self::Skb),
            _ => None,
        }
    }
}

/// Capacities of the maps that hold per-source state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub progress: u32,
    pub gate: u32,
}

/// The loaded program and its maps.
pub struct Knock {
    ebpf: Ebpf,
    pushed: Option<Plan>,
    /// Where the maps and links are pinned; `None` when state dies with the daemon.
    state: Option<StateDir>,
    /// Links taken over from pinned ones or pinned by this daemon. Dropping them closes this
    /// process's descriptors; the pins keep the program attached.
    links: Vec<XdpLink>,
}

impl Knock {
    /// Loads the program and creates its maps, or takes over the maps pinned in `state`.
    /// `debug` turns on the program's per-packet logs.
    pub fn load(
        capacities: Capacities,
        debug: bool,
        state: Option<&StateDir>,
    ) -> Result<Self, LoadError> {
        // aya-log levels: 0 disables every log statement, 5 enables up to trace.
        let log_level: u8 = if debug { 5 } else { 0 };
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(maps::PROGRESS, capacities.progress)
            .map_max_entries(maps::GATE, capacities.gate)
            .override_global("AYA_LOG_LEVEL", &log_level, false);
        if let Some(dir) = state {
            for name in PINNED {
                loader.map_pin_path(name, dir.map_path(name));
            }
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
        program_mut(&mut ebpf)?.load()?;
        let spa: &mut Xdp = ebpf
            .program_mut(SPA_PROGRAM)
            .ok_or(LoadError::MissingProgram)?
            .try_into()?;
        spa.load()?;
        let spa_fd = spa.fd()?.try_clone().map_err(ProgramError::from)?;
        let mut handoff = ProgramArray::try_from(
            ebpf.map_mut(HANDOFF)
                .ok_or(LoadError::MissingMap(HANDOFF))?,
        )
        .map_err(map_error(HANDOFF))?;
        handoff
            .set(HANDOFF_SPA, &spa_fd, 0)
            .map_err(map_error(HANDOFF))?;
        let mut knock = Self {
            ebpf,
            pushed: None,
            state: state.cloned(),
            links: Vec::new(),
        };
        let mut layout: Array<_, u32> = knock.array(maps::LAYOUT)?;
        layout
            .set(0, status::LAYOUT, 0)
            .map_err(map_error(maps::LAYOUT))?;
        Ok(knock)
    }

    /// The door records and names as the pinned maps hold them, by id: what an earlier daemon
    /// pushed, so a new one keeps each door's id.
    pub fn kept_doors(&mut self) -> Result<Vec<(Door, Option<String>)>, LoadError> {
        let doors: Array<_, Door> = self.array(maps::DOORS)?;
        let records: Vec<Door> = (0..MAX_DOORS as u32)
            .map(|id| doors.get(&id, 0).unwrap_or_else(|_| Door::new()))
            .collect();
        let names: Array<_, DoorName> = self.array(maps::NAMES)?;
        Ok(records
            .into_iter()
            .enumerate()
            .map(|(id, door)| {
                let name = names
                    .get(&(id as u32), 0)
                    .ok()
                    .and_then(|n| n.as_str().map(str::to_owned));
                (door, name)
            })
            .collect())
    }

    /// Records who runs the program, for `status` and the next daemon.
    pub fn record_daemon(&mut self, info: DaemonInfo) -> Result<(), LoadError> {
        let mut daemon: Array<_, DaemonInfo> = self.array(maps::DAEMON)?;
        daemon.set(0, info, 0).map_err(map_error(maps::DAEMON))
    }

    /// The daemon record as the pinned maps hold it.
    pub fn daemon_record(&mut self) -> Option<DaemonInfo> {
        let daemon: Array<_, DaemonInfo> = self.array(maps::DAEMON).ok()?;
        daemon.get(&0, 0).ok()
    }

    /// What a map was created with; a pinned map keeps the capacity it was first made with.
    pub fn capacity(&self, name: &str) -> Option<u32> {
        let map = self.ebpf.map(name)?;
        let data = match map {
            aya::maps::Map::HashMap(data) | aya::maps::Map::LruHashMap(data) => data,
            _ => return None,
        };
        data.info().ok().map(|info| info.max_entries())
    }

    /// Unpins the links and maps and removes the state directory: the program detaches when
    /// this daemon exits, and nothing is left behind.
    pub fn forget_state(&mut self) -> Result<(), crate::state::StateError> {
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

    /// Instructions of the program as loaded, and how many the verifier walked to accept it.
    /// Summed over the main program and the SPA program.
    pub fn instruction_count(&self) -> Option<(u32, u32)> {
        let mut total = (0, 0);
        for name in [PROGRAM, SPA_PROGRAM] {
            let info = self.ebpf.program(name)?.info().ok()?;
            total.0 += info.size_translated()? / 8;
            total.1 += info.verified_instruction_count()?;
        }
        Some(total)
    }

    /// Attaches to `iface`. With a state directory, a link pinned there by an earlier daemon
    /// (in the same mode) is taken over, which swaps the program atomically; otherwise the new
    /// link is pinned. `previous_mode` is the mode the earlier daemon recorded.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: AttachMode,
        previous_mode: Option<AttachMode>,
    ) -> Result<Attached, AttachError> {
        let Some(dir) = self.state.clone() else {
            self.attach_held(iface, mode)?;
            return Ok(Attached::Held);
        };
        if !links_outlive_processes() {
            self.attach_held(iface, mode)?;
            return Ok(Attached::Held);
        }
        let pin = dir.link_path(iface);
        let mut why = None;
        if pin.exists() {
            if previous_mode.is_some_and(|m| m != mode) {
                why = Some(format!(
                    "it was attached in {} mode",
                    previous_mode.map_or("another", AttachMode::name)
                ));
            } else {
                match self.take_over(&pin) {
                    Ok(()) => return Ok(Attached::TookOver),
                    Err(error) => why = Some(error),
                }
            }
            // Detached now, so the new attachment cannot meet the old one.
            let _ = crate::state::detach_pinned_link(&pin);
        }
        let program = self.program_for(iface)?;
        let id = program
            .attach(iface, mode.xdp())
            .map_err(|source| attach_error(iface, mode, source))?;
        let link = program.take_link(id).map_err(|source| AttachError::Other {
            iface: iface.to_owned(),
            source,
        })?;
        let fd_link = FdLink::try_from(link).map_err(|source| AttachError::Link {
            iface: iface.to_owned(),
            source,
        })?;
        let pinned = fd_link.pin(&pin).map_err(|source| AttachError::Pin {
            iface: iface.to_owned(),
            path: pin.clone(),
            source,
        })?;
        self.keep(FdLink::from(pinned));
        Ok(match why {
            Some(why) => Attached::Reattached { why },
            None => Attached::Pinned,
        })
    }

    /// Points the pinned link at this program.
    fn take_over(&mut self, pin: &std::path::Path) -> Result<(), String> {
        let pinned = PinnedLink::from_pin(pin).map_err(|e| e.to_string())?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| e.to_string())?;
        let program = program_mut(&mut self.ebpf).map_err(|e| e.to_string())?;
        let id = program.attach_to_link(link).map_err(|e| {
            // The syscall's own error (ENOLINK for a link whose interface went away) is the
            // source; say it.
            match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }
        })?;
        let link = program.take_link(id).map_err(|e| e.to_string())?;
        self.links.push(link);
        Ok(())
    }

    fn keep(&mut self, link: FdLink) {
        if let Ok(link) = XdpLink::try_from(link) {
            self.links.push(link);
        }
    }

    fn program_for(&mut self, iface: &str) -> Result<&mut Xdp, AttachError> {
        program_mut(&mut self.ebpf).map_err(|e| AttachError::Other {
            iface: iface.to_owned(),
            source: match e {
                LoadError::Program(p) => p,
                _ => ProgramError::NotLoaded,
            },
        })
    }

    /// Attaches for this process's lifetime: the program owns the link and detaches it when
    /// dropped.
    fn attach_held(&mut self, iface: &str, mode: AttachMode) -> Result<(), AttachError> {
        let program = self.program_for(iface)?;
        program
            .attach(iface, mode.xdp())
            .map(drop)
            .map_err(|source| attach_error(iface, mode, source))
    }

    /// Writes a plan into the maps, clearing whatever the previous plan set and this one does not.
    pub fn push(&mut self, plan: &Plan) -> Result<(), LoadError> {
        let previous = self.pushed.take();
        let mut doors: Array<_, Door> = self.array(maps::DOORS)?;
        for id in 0..MAX_DOORS {
            let door = plan.doors.get(id).copied().unwrap_or(Door {
                step_count: 0,
                ..Door::new()
            });
            doors
                .set(id as u32, door, 0)
                .map_err(map_error(maps::DOORS))?;
        }
        let mut names: Array<_, DoorName> = self.array(maps::NAMES)?;
        for id in 0..MAX_DOORS {
            let name = plan
                .names
                .get(id)
                .and_then(|n| n.as_deref())
                .and_then(DoorName::new)
                .unwrap_or_default();
            names
                .set(id as u32, name, 0)
                .map_err(map_error(maps::NAMES))?;
        }
        let mut first: HashMap<_, ProtoPort, FirstSteps> = self.hash(maps::FIRST_STEPS)?;
        if let Some(previous) = &previous {
            for port in previous.first_steps.keys() {
                if !plan.first_steps.contains_key(port) {
                    let _ = first.remove(port);
                }
            }
        }
        for (port, doors) in &plan.first_steps {
            first
                .insert(port, FirstSteps { doors: *doors }, 0)
                .map_err(map_error(maps::FIRST_STEPS))?;
        }
        let mut words: Array<_, u64> = self.array(maps::PORTS)?;
        let stale: BTreeSet<u32> = previous
            .iter()
            .flat_map(|p| p.port_words.keys().copied())
            .filter(|w| !plan.port_words.contains_key(w))
            .collect();
        for word in stale {
            words.set(word, 0, 0).map_err(map_error(maps::PORTS))?;
        }
        for (word, value) in &plan.port_words {
            words
                .set(*word, *value, 0)
                .map_err(map_error(maps::PORTS))?;
        }
        let mut guards: Array<_, u64> = self.array(maps::GUARDS)?;
        for (group, doors) in plan.guards.iter().enumerate() {
            guards
                .set(group as u32, *doors, 0)
                .map_err(map_error(maps::GUARDS))?;
        }
        self.push_spa(plan, previous.as_ref())?;
        let generation = previous.as_ref().map_or(1, |p| p.settings.generation + 1);
        let mut pushed = plan.clone();
        pushed.settings.generation = generation;
        self.pushed = Some(pushed);
        self.sync_clock()
    }

    /// Keys, SPA doors and always-allowed networks: what the previous plan had and this one
    /// does not is removed.
    fn push_spa(&mut self, plan: &Plan, previous: Option<&Plan>) -> Result<(), LoadError> {
        let mut keys: HashMap<_, u32, SpaKey> = self.hash(maps::KEYS)?;
        for id in previous.iter().flat_map(|p| p.keys.keys()) {
            if !plan.keys.contains_key(id) {
                let _ = keys.remove(id);
            }
        }
        for (id, key) in &plan.keys {
            keys.insert(id, SpaKey { key: *key }, 0)
                .map_err(map_error(maps::KEYS))?;
        }
        let mut spa_doors: HashMap<_, u32, u32> = self.hash(maps::SPA_DOORS)?;
        for tag in previous.iter().flat_map(|p| p.spa_doors.keys()) {
            if !plan.spa_doors.contains_key(tag) {
                let _ = spa_doors.remove(tag);
            }
        }
        for (tag, id) in &plan.spa_doors {
            spa_doors
                .insert(tag, id, 0)
                .map_err(map_error(maps::SPA_DOORS))?;
        }
        let mut local: HashMap<_, Addr, u8> = self.hash(maps::LOCAL_ADDRS)?;
        for address in previous.iter().flat_map(|p| p.local.iter()) {
            if !plan.local.contains(address) {
                let _ = local.remove(address);
            }
        }
        for address in &plan.local {
            local
                .insert(address, 1, 0)
                .map_err(map_error(maps::LOCAL_ADDRS))?;
        }
        let map = self
            .ebpf
            .map_mut(maps::ALWAYS_ALLOW)
            .ok_or(LoadError::MissingMap(maps::ALWAYS_ALLOW))?;
        let mut allow: LpmTrie<_, [u8; 16], u8> =
            LpmTrie::try_from(map).map_err(map_error(maps::ALWAYS_ALLOW))?;
        for (prefix, address) in previous.iter().flat_map(|p| p.always_allow.iter()) {
            if !plan.always_allow.contains(&(*prefix, *address)) {
                let _ = allow.remove(&LpmKey::new(*prefix, *address));
            }
        }
        for (prefix, address) in &plan.always_allow {
            allow
                .insert(&LpmKey::new(*prefix, *address), 1, 0)
                .map_err(map_error(maps::ALWAYS_ALLOW))?;
        }
        Ok(())
    }

    /// Writes the settings with the current offset of the wall clock from the monotonic one,
    /// which the program needs to judge SPA timestamps, and the coarse time of recent knocks.
    /// The daemon calls this every second.
    pub fn sync_clock(&mut self) -> Result<(), LoadError> {
        let Some(pushed) = self.pushed.as_mut() else {
            return Ok(());
        };
        pushed.settings.clock_offset_ns = crate::clock::wall_offset_ns();
        pushed.settings.recent_tick = knock_common::recent::tick(crate::clock::monotonic_ns());
        let value = pushed.settings;
        let mut settings: Array<_, Settings> = self.array(maps::SETTINGS)?;
        settings.set(0, value, 0).map_err(map_error(maps::SETTINGS))
    }

    /// What each of the program's maps holds at most, and the memory the kernel charges for it.
    /// Read through this process's own map descriptors: looking maps up by id would need
    /// CAP_SYS_ADMIN, which knock.service does not grant. Call it before `take_events`, or the
    /// ring is missing from the list.
    pub fn map_memory(&self) -> Vec<MapMemory> {
        let mut maps: Vec<MapMemory> = self
            .ebpf
            .maps()
            .filter_map(|(name, map)| {
                let data = map_data(map)?;
                let info = data.info().ok()?;
                Some(MapMemory {
                    name: name.to_owned(),
                    entries: info.max_entries(),
                    bytes: memlock(data.fd()),
                })
            })
            .collect();
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        maps
    }

    /// A door record as the kernel holds it now (the program empties used one-time sequences).
    pub fn door_record(&mut self, id: usize) -> Option<Door> {
        let doors: Array<_, Door> = self.array(maps::DOORS).ok()?;
        doors.get(&(id as u32), 0).ok()
    }

    /// The door records last pushed into the kernel.
    pub fn pushed_doors(&self) -> Vec<Door> {
        self.pushed
            .as_ref()
            .map_or_else(Vec::new, |p| p.doors.clone())
    }

    /// The packet counters, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, LoadError> {
        let map = self
            .ebpf
            .map(maps::COUNTERS)
            .ok_or(LoadError::MissingMap(maps::COUNTERS))?;
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(map_error(maps::COUNTERS))?;
        Counter::ALL
            .iter()
            .map(|counter| {
                let values = counters
                    .get(&(*counter as u32), 0)
                    .map_err(map_error(maps::COUNTERS))?;
                Ok((*counter, values.iter().sum()))
            })
            .collect()
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

    pub fn gate(&mut self) -> Result<HashMap<&mut MapData, Addr, Pass>, LoadError> {
        self.hash(maps::GATE)
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

    fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, LoadError> {
        let map = self.ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
        HashMap::try_from(map).map_err(map_error(name))
    }
}

/// The kernel object behind a map of one of the kinds the program uses.
fn map_data(map: &aya::maps::Map) -> Option<&MapData> {
    use aya::maps::Map;
    match map {
        Map::Array(data)
        | Map::HashMap(data)
        | Map::LruHashMap(data)
        | Map::LpmTrie(data)
        | Map::PerCpuArray(data)
        | Map::PerCpuHashMap(data)
        | Map::PerCpuLruHashMap(data)
        | Map::ProgramArray(data)
        | Map::RingBuf(data)
        | Map::PerfEventArray(data) => Some(data),
        _ => None,
    }
}

/// One map's capacity and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMemory {
    pub name: String,
    pub entries: u32,
    /// As /proc reports it for the map's descriptor; `None` when the kernel does not say.
    pub bytes: Option<u64>,
}

/// The `memlock` line of a BPF map descriptor's fdinfo: the memory the map uses.
fn memlock(fd: &impl std::os::fd::AsFd) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    let raw = fd.as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
}

/// XDP links (Linux 5.9) are what can be pinned; before them aya attaches through netlink, and
/// the attachment cannot outlive the daemon in a way it could take over.
fn links_outlive_processes() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 9, 0))
}

fn attach_error(iface: &str, mode: AttachMode, source: ProgramError) -> AttachError {
    match source {
        ProgramError::UnknownInterface { name } => AttachError::NoSuchInterface(name),
        source if mode == AttachMode::Native => AttachError::Native {
            iface: iface.to_owned(),
            source,
        },
        source => AttachError::Other {
            iface: iface.to_owned(),
            source,
        },
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    let program = ebpf.program_mut(PROGRAM).ok_or(LoadError::MissingProgram)?;
    Ok(program.try_into()?)
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { map, source }
}
