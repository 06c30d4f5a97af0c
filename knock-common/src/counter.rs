//! Per-outcome packet counters, the entries of the `COUNTERS` per-CPU array.

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident = $index:literal, $label:literal; )*) => {
        /// One counter of the `COUNTERS` map.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Counter {
            $( $(#[$doc])* $name = $index, )*
        }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name),*];

            /// The name used in logs and status output.
            pub const fn label(self) -> &'static str {
                match self {
                    $( Counter::$name => $label, )*
                }
            }
        }
    };
}

counters! {
    /// A knock advanced an attempt.
    KnockAccepted = 0, "knocks_accepted";
    /// A packet to a knock port was dropped (the filtered and stealth looks); in the closed
    /// look knocks go on to the host, which answers as for any closed port.
    KnockPortDropped = 1, "knock_port_dropped";
    /// A sequence completed and its door opened.
    DoorOpened = 2, "doors_opened";
    /// A sequence completed for a door that was already open.
    DoorRefreshed = 3, "doors_refreshed";
    /// An attempt was reset by a wrong packet.
    AttemptReset = 4, "attempts_reset";
    /// An attempt timed out.
    AttemptTimedOut = 5, "attempts_timed_out";
    /// A first knock found no free attempt slot.
    AttemptCrowded = 6, "attempts_crowded";
    /// A new connection to a protected port passed through an open door.
    GateAllowed = 7, "gate_allowed";
    /// A new connection (or datagram) to a protected port was refused: dropped, answered
    /// with a reset, or handed to the socket-lookup guard, as the look says.
    GateDropped = 8, "gate_dropped";
    /// A frame with headers knock cannot trust was dropped.
    Malformed = 9, "malformed_dropped";
    /// A door could not open because the gate map is full.
    GateFull = 10, "gate_full";
    /// A first knock could not be stored because the progress map refused the insert.
    ProgressFull = 11, "progress_insert_failed";
    /// An event was lost because the ring buffer was full.
    EventsLost = 12, "events_lost";
    /// A single-packet authorization opened a door.
    SpaAccepted = 13, "spa_accepted";
    /// An SPA datagram of the wrong size, magic or version.
    SpaMalformed = 14, "spa_malformed";
    /// An SPA datagram naming a key id that is not loaded.
    SpaUnknownKey = 15, "spa_unknown_key";
    /// An SPA datagram whose MAC is wrong: forged, altered, or sent from another address.
    SpaBadMac = 16, "spa_bad_mac";
    /// An SPA datagram whose timestamp is outside the window.
    SpaStale = 17, "spa_stale";
    /// An SPA datagram whose nonce was seen before.
    SpaReplayed = 18, "spa_replayed";
    /// An SPA datagram for a door that takes no SPA.
    SpaUnknownDoor = 19, "spa_unknown_door";
    /// A source earned a ban.
    SourceBanned = 20, "sources_banned";
    /// A knock or SPA datagram from a banned source was ignored.
    BannedIgnored = 21, "banned_ignored";
    /// A new connection to a protected port passed because its source is always allowed.
    AlwaysAllowed = 22, "always_allowed";
    /// A single-use sequence completed after it had been used: the door stayed shut.
    SingleUseRefused = 23, "single_use_refused";
    /// A single-use sequence completed but the record of used ones was full: the door stayed
    /// shut (failing closed).
    SpentFull = 24, "single_use_record_full";
    /// A refused connection attempt was answered with a reset built in the program, as the
    /// host answers one to a closed port.
    ResetSent = 25, "gate_resets_sent";
    /// A refused connection attempt or datagram went on to the host's stack, whose
    /// socket-lookup guard refused it a socket, so the host answered as for a closed port.
    HandedToGuard = 26, "gate_handed_to_guard";
    /// The socket-lookup guard refused a connection or datagram to a protected port.
    GuardRefused = 27, "guard_refused";
    /// A new connection or datagram to a port the host does not serve was dropped (the
    /// stealth look).
    StealthDropped = 28, "stealth_dropped";
    /// A static sequence completed but the gate's room for doors opened by static sequences
    /// was full (`Gate_Capacity`): the door stayed shut.
    GateStaticFull = 29, "gate_static_full";
    /// An authentic SPA datagram asked for a door its key does not open.
    SpaDoorRefused = 30, "spa_door_not_allowed";
    /// Under `--observe`: a frame the program would have dropped, passed (the other counters
    /// say why it would have: `gate_dropped`, `knock_port_dropped`, `malformed_dropped`, SPA).
    ObservePassed = 31, "observe_passed";
}

/// Number of counters, the size of the `COUNTERS` map.
pub const COUNT: u32 = 32;
const _: () = assert!(Counter::ALL.len() == COUNT as usize);
