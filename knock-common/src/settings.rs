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
    /// Wall-clock time minus the monotonic clock, in ns, kept current by user space, so the
    /// program can judge SPA timestamps.
    pub clock_offset_ns: u64,
    /// The UDP port of single-packet authorization; zero when SPA is off.
    pub spa_port: u16,
    pub _pad: u16,
    /// How far an SPA timestamp may be from the host's clock, in seconds.
    pub spa_window_s: u32,
    /// Failures in `ban_window_s` that ban a source for `ban_time_s`; zero turns bans off.
    pub ban_limit: u32,
    pub ban_window_s: u32,
    pub ban_time_s: u32,
    /// The longest Seq_Timeout of any door, in seconds rounded up: how long a source's last
    /// knock can matter (see `recent`).
    pub longest_attempt_s: u32,
    /// The monotonic clock on `recent`'s coarse scale, as of user space's last update (every
    /// second while a daemon runs). It lags, never leads, so it can only make the program look
    /// up more; reading it costs the program nothing, unlike the clock itself.
    pub recent_tick: u32,
    pub _pad2: u32,
}

/// IPv6 packets are never knocks (knockd's `-4`); the gate still guards IPv6.
pub const IPV4_ONLY: u32 = 1;
/// Some network is always allowed: only then is the gate's trie worth a lookup.
pub const ALWAYS_ALLOWING: u32 = 2;
/// `--observe`: judge every frame, drop none, report what the gate would have dropped.
pub const OBSERVING: u32 = 4;

impl Settings {
    pub const fn ipv4_only(&self) -> bool {
        self.flags & IPV4_ONLY != 0
    }

    pub const fn always_allowing(&self) -> bool {
        self.flags & ALWAYS_ALLOWING != 0
    }

    pub const fn observing(&self) -> bool {
        self.flags & OBSERVING != 0
    }
}
crate::assert_layout!(Settings, size = 56, align = 8);

impl Settings {
    pub const fn ban_policy(&self) -> crate::ban::Policy {
        crate::ban::Policy {
            limit: self.ban_limit,
            window_ns: self.ban_window_s as u64 * 1_000_000_000,
            ban_ns: self.ban_time_s as u64 * 1_000_000_000,
        }
    }
}

/// A client's SPA key, the value of the `KEYS` hash map keyed by key id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaKey {
    pub key: [u8; 16],
}
crate::assert_layout!(SpaKey, size = 16, align = 1);
