//! Attaching the program to interfaces: pinned links that outlive the daemon and that the next
//! daemon takes over with an atomic swap, or links held for this process's lifetime.

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{ProgramError, Xdp, XdpMode};
use knock_common::frame::Link;
use knock_common::status;

use super::{Knock, LoadError, pins, program_mut};

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
    pub(super) fn xdp(self) -> XdpMode {
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

impl Knock {
    /// Attaches the entry point for `link` to `iface`. With a state directory, a link pinned
    /// there by an earlier daemon (in the same mode) is taken over, which swaps the program
    /// atomically; otherwise the new link is pinned. `previous_mode` is the mode the earlier
    /// daemon recorded.
    pub fn attach(
        &mut self,
        iface: &str,
        link: Link,
        mode: AttachMode,
        previous_mode: Option<AttachMode>,
    ) -> Result<Attached, AttachError> {
        self.load_program(link)
            .map_err(|error| AttachError::Other {
                iface: iface.to_owned(),
                source: match error {
                    LoadError::Program(p) => p,
                    _ => ProgramError::NotLoaded,
                },
            })?;
        let Some(dir) = self.state.clone() else {
            self.attach_held(iface, link, mode)?;
            return Ok(Attached::Held);
        };
        if !links_outlive_processes() {
            self.attach_held(iface, link, mode)?;
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
                match self.take_over(&pin, link) {
                    Ok(()) => return Ok(Attached::TookOver),
                    Err(error) => why = Some(error),
                }
            }
            // Detached now, so the new attachment cannot meet the old one.
            let _ = pins::detach_pinned_link(&pin);
        }
        let program = self.program_for(iface, link)?;
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

    /// Points the pinned link at this program's entry point for `link`.
    fn take_over(&mut self, pin: &std::path::Path, link: Link) -> Result<(), String> {
        let pinned = PinnedLink::from_pin(pin).map_err(|e| e.to_string())?;
        let xdp_link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| e.to_string())?;
        let program = program_mut(&mut self.ebpf, link).map_err(|e| e.to_string())?;
        let id = program.attach_to_link(xdp_link).map_err(|e| {
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

    fn program_for(&mut self, iface: &str, link: Link) -> Result<&mut Xdp, AttachError> {
        program_mut(&mut self.ebpf, link).map_err(|e| AttachError::Other {
            iface: iface.to_owned(),
            source: match e {
                LoadError::Program(p) => p,
                _ => ProgramError::NotLoaded,
            },
        })
    }

    /// Attaches for this process's lifetime: the program owns the link and detaches it when
    /// dropped.
    fn attach_held(
        &mut self,
        iface: &str,
        link: Link,
        mode: AttachMode,
    ) -> Result<(), AttachError> {
        let program = self.program_for(iface, link)?;
        program
            .attach(iface, mode.xdp())
            .map(drop)
            .map_err(|source| attach_error(iface, mode, source))
    }
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
