//! Program-wide settings, the single entry of the `SETTINGS` array map.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Bit `d` is set when door `d` follows the strict progress rule. When none does, new
    /// connections to unrelated ports skip the progress lookup entirely.
    pub strict_doors: u64,
    /// Bumped by user space on every configuration push.
    pub generation: u32,
    /// `IPV4_ONLY`, `ALWAYS_ALLOWING`, the look (`FILTERED`, `STEALTH`) and `GUARD`.
    pub flags: u32,
    /// Wall-clock time minus the monotonic clock, in ns, kept current by user space, so the
    /// program can judge SPA timestamps.
    pub clock_offset_ns: u64,
    /// The UDP port of single-packet authorization; zero when SPA is off.
    pub spa_port: u16,
    /// What the host's own resets carry: its default TTL (`net.ipv4.ip_default_ttl`) and the
    /// IPv6 hop limit of the guarded interface (`net.ipv6.conf.IFACE.hop_limit`).
    pub ttl: u8,
    pub hop_limit: u8,
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
    /// The host's ephemeral port range (`net.ipv4.ip_local_port_range`): in the stealth look,
    /// UDP datagrams to it pass, so that answers to the host's own queries arrive.
    pub ephemeral_low: u16,
    pub ephemeral_high: u16,
    /// A random key of this load for the flow labels of IPv6 resets (see `reply::flow_label`).
    pub label_key: u32,
    /// IPv6 sources are banned by this prefix (see `ban::key`).
    pub ban_prefix6: u8,
    pub _pad: [u8; 3],
    /// The longest Cmd_Timeout of any door, in seconds rounded up: how long a pass in the
    /// gate's reserve can stay open after its last opening (see `RESERVE_SEEN`).
    pub longest_open_s: u32,
    pub _pad2: u32,
}

/// IPv6 packets are never knocks (knockd's `-4`); the gate still guards IPv6.
pub const IPV4_ONLY: u32 = 1;
/// Some network is always allowed: only then is the gate's trie worth a lookup.
pub const ALWAYS_ALLOWING: u32 = 2;
/// Knock ports and protected ports drop what they refuse, silently (the `filtered` look).
pub const FILTERED: u32 = 4;
/// New connections and datagrams to ports the host does not serve are dropped too (the
/// `stealth` look); set together with `FILTERED`.
pub const STEALTH: u32 = 8;
/// The socket-lookup guard is attached to the host's network namespace: a refused datagram
/// (or a connection attempt the program cannot answer itself) may go up the host's stack,
/// where the guard refuses it a socket and the host answers as for a closed port.
pub const GUARD: u32 = 16;
/// Refused connection attempts go on to the host's stack (and its socket-lookup guard) instead
/// of being answered with a reset built in XDP: set while a guarded interface is a veth in
/// native mode, which delivers XDP_TX frames only to a peer that runs XDP itself.
pub const HOST_RESETS: u32 = 32;
/// `--observe`: judge every frame, drop none, report what the gate would have dropped.
pub const OBSERVING: u32 = 64;

/// How the host looks to a scanner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Look {
    /// Knock ports and protected ports answer as closed ports do (the default).
    #[default]
    Closed,
    /// Knock ports and protected ports drop what they refuse: safe only on a host whose
    /// closed ports are all filtered.
    Filtered,
    /// Every port the host does not serve drops new connections and datagrams.
    Stealth,
}

impl Look {
    /// The settings flags of this look.
    pub const fn flags(self) -> u32 {
        match self {
            Self::Closed => 0,
            Self::Filtered => FILTERED,
            Self::Stealth => FILTERED | STEALTH,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Filtered => "filtered",
            Self::Stealth => "stealth",
        }
    }
}

impl Settings {
    /// Whether a datagram of protocol `proto` to `port` is for the SPA verifier.
    #[inline(always)]
    pub const fn is_spa(&self, proto: u8, port: u16) -> bool {
        proto == crate::segment::PROTO_UDP && self.spa_port != 0 && port == self.spa_port
    }

    pub const fn ipv4_only(&self) -> bool {
        self.flags & IPV4_ONLY != 0
    }

    pub const fn always_allowing(&self) -> bool {
        self.flags & ALWAYS_ALLOWING != 0
    }

    /// Whether refusals are silent: the filtered and stealth looks.
    pub const fn filtered(&self) -> bool {
        self.flags & FILTERED != 0
    }

    pub const fn stealth(&self) -> bool {
        self.flags & STEALTH != 0
    }

    pub const fn guarded(&self) -> bool {
        self.flags & GUARD != 0
    }

    /// Whether refused connection attempts are left to the host's stack (see `HOST_RESETS`).
    pub const fn host_resets(&self) -> bool {
        self.flags & (GUARD | HOST_RESETS) == GUARD | HOST_RESETS
    }

    /// Whether `port` lies in the host's ephemeral port range.
    #[inline(always)]
    pub const fn ephemeral(&self, port: u16) -> bool {
        port >= self.ephemeral_low && port <= self.ephemeral_high
    }

    pub const fn observing(&self) -> bool {
        self.flags & OBSERVING != 0
    }
}
crate::assert_layout!(Settings, size = 72, align = 8);

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
    /// The door ids this key opens, one bit each; every bit set for a key that names none.
    pub doors: u64,
}
crate::assert_layout!(SpaKey, size = 24, align = 8);

/// The doors of a key line that names none: every SPA door.
pub const EVERY_DOOR: u64 = u64::MAX;
