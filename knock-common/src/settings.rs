//! Program-wide settings, the single entry of the `SETTINGS` array map.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Bit `d` is set when door `d` follows the strict progress rule. When none does, new
    /// connections to unrelated ports skip the progress lookup entirely.
    pub strict_doors: u64,
    /// Bumped by user space on every configuration push.
    pub generation: u32,
    pub _pad: u32,
}
crate::assert_layout!(Settings, size = 16, align = 8);
