//! What the daemon leaves in pinned maps for operators: who runs, the doors' names, and the
//! layout version of every pinned map, so a new version never reads an old layout.

use crate::{Door, MAX_DOORS, MAX_GUARDED_PORTS, MAX_STEPS, ban, event, gate, progress, settings};

/// The daemon behind a pinned program, the single entry of the `DAEMON` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonInfo {
    pub started_unix_s: u64,
    pub pid: u32,
    /// 1 native, 2 generic (skb).
    pub mode: u32,
}
crate::assert_layout!(DaemonInfo, size = 16, align = 8);

/// A door's name, NUL-padded, in the `NAMES` map at the door's id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorName {
    pub bytes: [u8; 64],
}
crate::assert_layout!(DoorName, size = 64, align = 1);

impl Default for DoorName {
    fn default() -> Self {
        Self { bytes: [0; 64] }
    }
}

impl DoorName {
    pub fn new(name: &str) -> Self {
        let mut bytes = [0; 64];
        let len = name.len().min(64);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self { bytes }
    }

    pub fn as_str(&self) -> &str {
        let end = self.bytes.iter().position(|b| *b == 0).unwrap_or(64);
        core::str::from_utf8(&self.bytes[..end]).unwrap_or("?")
    }
}

/// Bumped by hand when a map's meaning changes without its size changing.
const EPOCH: u32 = 1;

/// The layout of every pinned map, as one number: the sizes of their values and the limits that
/// shape them. A pinned map set with another layout is replaced, never reused.
pub const LAYOUT: u32 = {
    let parts: [usize; 12] = [
        size_of::<Door>(),
        size_of::<progress::Progress>(),
        size_of::<gate::Pass>(),
        size_of::<settings::Settings>(),
        size_of::<event::Event>(),
        size_of::<ban::Strikes>(),
        size_of::<settings::SpaKey>(),
        size_of::<DaemonInfo>(),
        MAX_DOORS,
        MAX_STEPS,
        MAX_GUARDED_PORTS,
        crate::ATTEMPTS_PER_SOURCE,
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
    fn a_name_reads_back_and_a_long_one_is_cut() {
        assert_eq!(DoorName::new("openSSH").as_str(), "openSSH");
        let long = "x".repeat(80);
        assert_eq!(DoorName::new(&long).as_str().len(), 64);
    }
}
