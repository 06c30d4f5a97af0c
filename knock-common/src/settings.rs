//! Program-wide settings, the single entry of the `SETTINGS` array map.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Bit `d` is set when door `d` follows the strict progress rule. When none does, new
    /// connections to unrelated ports skip the progress lookup entirely.
    pub strict_doors: u64,
    /// Bumped by user space on every configuration push.
    pub generation: u32,
    /// `IPV4_ONLY` and future switches.
    pub flags: u32,
}

/// IPv6 packets are never knocks (knockd's `-4`); the gate still guards IPv6.
pub const IPV4_ONLY: u32 = 1;

impl Settings {
    pub const fn ipv4_only(&self) -> bool {
        self.flags & IPV4_ONLY != 0
    }
}
crate::assert_layout!(Settings, size = 16, align = 8);
