//! The socket-lookup guard (knock-ebpf's `guard`), attached to the daemon's network namespace:
//! the gate again where the host's stack looks for a socket, so that a refused packet the
//! program lets go on to the host is answered as at a closed port. Its link is pinned with the
//! state, like the interfaces' links, and a new daemon's guard is attached before the earlier
//! one is detached: the namespace is never without one while the settings count on one. A
//! daemon whose guard cannot attach detaches the earlier one once its settings count on none.

use std::fs::File;

use aya::programs::links::FdLink;
use aya::programs::{ProgramError, SkLookup};
use knock_common::GUARD_PROGRAM;

use super::{Knock, pins};

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("the kernel refused the socket-lookup program (Linux 5.9 or later is needed)")]
    Load(#[source] ProgramError),
    #[error("cannot open this process's network namespace")]
    Namespace(#[source] std::io::Error),
    #[error("cannot attach the socket-lookup program to the network namespace")]
    Attach(#[source] ProgramError),
    #[error("cannot pin the socket-lookup program's link at {path}")]
    Pin {
        path: std::path::PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("cannot move the socket-lookup program's pinned link into place")]
    Rename(#[source] std::io::Error),
}

/// What attaching the guard did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardAttached {
    /// Attached and pinned, and an earlier daemon's guard detached if there was one.
    Pinned { replaced: bool },
    /// Attached for this process's lifetime.
    Held,
}

impl Knock {
    /// Loads the guard into the kernel, without attaching it (once; again does nothing).
    pub fn load_guard(&mut self) -> Result<&mut SkLookup, GuardError> {
        let program: &mut SkLookup = self
            .ebpf
            .program_mut(GUARD_PROGRAM)
            .ok_or(GuardError::Load(ProgramError::NotLoaded))?
            .try_into()
            .map_err(GuardError::Load)?;
        if program.fd().is_err() {
            program.load().map_err(GuardError::Load)?;
        }
        Ok(program)
    }

    /// Attaches the guard to this process's network namespace.
    pub fn attach_guard(&mut self) -> Result<GuardAttached, GuardError> {
        let program = self.load_guard()?;
        let namespace = File::open("/proc/self/ns/net").map_err(GuardError::Namespace)?;
        let id = program.attach(&namespace).map_err(GuardError::Attach)?;
        let link = FdLink::from(program.take_link(id).map_err(GuardError::Attach)?);
        let Some(dir) = self.state.clone() else {
            self.guard = Some(link);
            return Ok(GuardAttached::Held);
        };
        // Pinned aside first: until the new guard is pinned, the earlier one stays, because the
        // earlier program (still attached to the interfaces) may count on a guard.
        let path = dir.lookup_guard_path();
        let aside = path.with_file_name(format!("{GUARD_PROGRAM}-new"));
        let _ = std::fs::remove_file(&aside);
        let pinned = link.pin(&aside).map_err(|source| GuardError::Pin {
            path: aside.clone(),
            source,
        })?;
        let replaced = path.exists() && pins::detach_pinned_link(&path).is_ok();
        std::fs::rename(&aside, &path).map_err(GuardError::Rename)?;
        self.guard = Some(FdLink::from(pinned));
        Ok(GuardAttached::Pinned { replaced })
    }

    /// Detaches the guard an earlier daemon pinned, when this one attached none of its own.
    /// That guard judges by the maps of the earlier program, which nobody updates any more (a
    /// network now always allowed, a port no longer protected), and a plan without guard flags
    /// leaves it nothing to do. Returns whether there was one.
    pub fn release_earlier_guard(&self) -> std::io::Result<bool> {
        let Some(dir) = self.state.as_ref().filter(|_| self.guard.is_none()) else {
            return Ok(false);
        };
        let path = dir.lookup_guard_path();
        if !path.exists() {
            return Ok(false);
        }
        pins::detach_pinned_link(&path).map(|()| true)
    }

    /// Whether the guard is attached by this daemon.
    pub fn guarded(&self) -> bool {
        self.guard.is_some()
    }
}
