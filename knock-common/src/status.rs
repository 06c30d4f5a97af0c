//! What the daemon leaves in pinned maps for operators: who runs, the doors' names, and the
//! layout version of every pinned map, so a new version never reads an old layout.

use crate::{
    Door, MAX_DOORS, MAX_GUARDED_PORTS, MAX_STEPS, ban, counter, event, gate, progress, settings,
    spent,
};

/// The daemon behind a pinned program, the single entry of the `DAEMON` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaemonInfo {
    pub started_unix_s: u64,
    /// Every door whose deadline is at or before this (monotonic clock, ns) has been closed by
    /// the daemon, its Stop_Command run; a successor adopts only doors closing later.
    pub closed_through_ns: u64,
    /// The inode of the daemon's network namespace: a firewall mirror lives there.
    pub netns: u64,
    pub pid: u32,
    /// [`NATIVE`] or [`GENERIC`].
    pub mode: u32,
    /// [`MIRROR_NONE`], [`MIRROR_IPTABLES`] or [`MIRROR_NFTABLES`].
    pub mirror: u32,
    /// While the daemon runs a trial (`run --trial`): when it undoes itself unless `knock-user
    /// confirm` arrives (Unix time, s); zero otherwise. (Padding before, so older records read
    /// as no trial.)
    pub trial_until_unix_s: u32,
    /// The mirror's iptables chain or nftables table, NUL-padded, so that `knock-user stop`
    /// can empty it when no daemon runs.
    pub mirror_name: [u8; 64],
}
crate::assert_layout!(DaemonInfo, size = 104, align = 8);

impl Default for DaemonInfo {
    fn default() -> Self {
        Self {
            started_unix_s: 0,
            closed_through_ns: 0,
            netns: 0,
            pid: 0,
            mode: 0,
            mirror: MIRROR_NONE,
            trial_until_unix_s: 0,
            mirror_name: [0; 64],
        }
    }
}

pub const MIRROR_NONE: u32 = 0;
pub const MIRROR_IPTABLES: u32 = 1;
pub const MIRROR_NFTABLES: u32 = 2;

/// Attach modes as `DaemonInfo::mode` records them.
pub const NATIVE: u32 = 1;
pub const GENERIC: u32 = 2;
/// Some interfaces in native XDP, others in generic XDP (`--xdp-mode auto`).
pub const MIXED: u32 = 3;

/// The longest door name: a name and, for a rotating door's instance, `@` and its period.
pub const NAME_LEN: usize = 128;

/// A door's name, NUL-padded, in the `NAMES` map at the door's id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorName {
    pub bytes: [u8; NAME_LEN],
}
crate::assert_layout!(DoorName, size = 128, align = 1);

impl Default for DoorName {
    fn default() -> Self {
        Self {
            bytes: [0; NAME_LEN],
        }
    }
}

impl DoorName {
    /// The name, or `None` if it does not fit (the configuration parser refuses such names).
    pub fn new(name: &str) -> Option<Self> {
        let mut bytes = [0; NAME_LEN];
        bytes
            .get_mut(..name.len())?
            .copy_from_slice(name.as_bytes());
        Some(Self { bytes })
    }

    /// The name; `None` for an empty slot or bytes that are not a name.
    pub fn as_str(&self) -> Option<&str> {
        let end = self.bytes.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
        match core::str::from_utf8(&self.bytes[..end]) {
            Ok("") | Err(_) => None,
            Ok(name) => Some(name),
        }
    }
}

/// Bumped by hand when a map's meaning changes without its size changing.
const EPOCH: u32 = 3;

/// The layout of every pinned map, as one number: the sizes of their values and the limits that
/// shape them. A pinned map set with another layout is replaced, never reused.
pub const LAYOUT: u32 = {
    let parts: [usize; 17] = [
        size_of::<Door>(),
        size_of::<progress::Progress>(),
        size_of::<gate::Pass>(),
        size_of::<settings::Settings>(),
        size_of::<event::Event>(),
        size_of::<ban::Strikes>(),
        size_of::<settings::SpaKey>(),
        size_of::<DaemonInfo>(),
        size_of::<DoorName>(),
        MAX_DOORS,
        MAX_STEPS,
        MAX_GUARDED_PORTS,
        crate::ATTEMPTS_PER_SOURCE,
        crate::recent::SLOTS as usize,
        counter::COUNT as usize,
        spent::CAPACITY as usize,
        size_of::<spent::Tag>(),
    ];
    // FNV-1a over the parts.
    let mut hash: u32 = 0x811c_9dc5 ^ EPOCH;
    let mut i = 0;
    while i < parts.len() {
        hash ^= parts[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_reads_back() {
        let name = DoorName::new("openSSH@1234").expect("fits");
        assert_eq!(name.as_str(), Some("openSSH@1234"));
        let longest = "x".repeat(NAME_LEN);
        assert_eq!(
            DoorName::new(&longest).and_then(|n| n.as_str().map(str::len)),
            Some(NAME_LEN)
        );
    }

    #[test]
    fn a_name_too_long_is_refused_not_cut() {
        assert_eq!(DoorName::new(&"x".repeat(NAME_LEN + 1)), None);
    }

    #[test]
    fn an_empty_slot_has_no_name() {
        assert_eq!(DoorName::default().as_str(), None);
    }
}
