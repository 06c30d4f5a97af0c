//! Attaching the program to interfaces: pinned links that outlive the daemon and that the next
//! daemon takes over with an atomic swap, or links held for this process's lifetime; one per
//! interface, released when the interface goes and made again when it comes back.
//!
//! The mode: `auto` (the default) attaches in the driver (native XDP) where the driver can, and
//! in the generic path otherwise, saying which and why; `native` and `skb` insist.

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{ProgramError, Xdp, XdpMode as Flags};
use knock_common::frame::Link;
use knock_common::status;

use super::link::XdpMode;
use super::{Knock, LoadError, pins, program_mut};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no network interface named `{0}`")]
    NoSuchInterface(String),
    #[error(
        "cannot attach in native XDP mode to {iface}: its driver refuses native XDP ({why}); \
         run with `--xdp-mode auto` (the default) or `skb` to use generic XDP"
    )]
    Native { iface: String, why: String },
    #[error("cannot attach to {iface} in native XDP ({native}), nor in generic XDP ({generic})")]
    Neither {
        iface: String,
        native: String,
        generic: String,
    },
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

/// An attachment: how it came about, the mode the program runs in, and, when `auto` fell back
/// to generic XDP, why native XDP was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub how: Attached,
    pub mode: XdpMode,
    pub native_refused: Option<String>,
}

/// How the program is asked to attach (`--xdp-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native XDP where the driver has it, else generic XDP, saying which and why.
    #[default]
    Auto,
    /// In the driver, before the kernel allocates anything for the packet; refused where the
    /// driver lacks it.
    Native,
    /// In the generic path, which every driver has.
    Skb,
}

impl AttachMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Skb => "skb",
        }
    }

    /// Whether a link attached in `current` mode serves this request, or why not.
    pub fn accepts(self, current: XdpMode) -> Result<(), String> {
        match (self, current) {
            (Self::Native, XdpMode::Generic) => Err("it was attached in generic mode".to_owned()),
            (Self::Skb, XdpMode::Native) => Err("it was attached in native mode".to_owned()),
            _ => Ok(()),
        }
    }
}

impl XdpMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }

    /// As the `DAEMON` map records one mode.
    pub const fn code(self) -> u32 {
        match self {
            Self::Native => status::NATIVE,
            Self::Generic => status::GENERIC,
        }
    }

    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            status::NATIVE => Some(Self::Native),
            status::GENERIC => Some(Self::Generic),
            _ => None,
        }
    }

    const fn flags(self) -> Flags {
        match self {
            Self::Native => Flags::Driver,
            Self::Generic => Flags::Skb,
        }
    }
}

/// The `DAEMON` map's record of the modes in use: one mode, [`status::MIXED`], or 0 when
/// nothing is attached.
pub fn modes_code(modes: &[XdpMode]) -> u32 {
    match modes.first() {
        None => 0,
        Some(first) if modes.iter().all(|m| m == first) => first.code(),
        Some(_) => status::MIXED,
    }
}

/// The modes a `DAEMON` record names, in words ("none" when nothing is attached).
pub fn modes_name(code: u32) -> &'static str {
    match code {
        status::NATIVE => "native",
        status::GENERIC => "generic",
        status::MIXED => "native and generic",
        _ => "none",
    }
}

/// The modes a `DAEMON` record names, as a phrase: "native XDP", or "not attached".
pub fn modes_phrase(code: u32) -> String {
    match modes_name(code) {
        "none" => "not attached".to_owned(),
        name => format!("{name} XDP"),
    }
}

/// This process's hold on one interface's attachment.
pub(super) enum Hold {
    /// A link whose descriptor this process holds: pinned, or taken over from a pin. Held
    /// only to be dropped: closing the descriptor leaves the pin guarding.
    Link(#[expect(dead_code, reason = "held for its descriptor, never read")] XdpLink),
    /// A link owned by the entry point for `Link`, detached when it is dropped.
    Held(Link, XdpLinkId),
}

impl Knock {
    /// Attaches the entry point for `link` to `iface` (index `index`). With a state
    /// directory, a link pinned there by an earlier daemon is taken over if its mode (`current`,
    /// as the interface reports it, else the earlier daemon's record) serves `requested`,
    /// which swaps the program atomically; otherwise the new link is pinned.
    pub fn attach(
        &mut self,
        iface: &str,
        index: u32,
        link: Link,
        requested: AttachMode,
        current: Option<XdpMode>,
    ) -> Result<Attachment, AttachError> {
        self.release_hold(iface);
        self.load_program(link)
            .map_err(|error| AttachError::Other {
                iface: iface.to_owned(),
                source: match error {
                    LoadError::Program(p) => p,
                    _ => ProgramError::NotLoaded,
                },
            })?;
        let pin = match &self.state {
            Some(dir) if links_outlive_processes() => dir.link_path(iface),
            _ => {
                let (id, mode, native_refused) =
                    self.attach_fresh(iface, index, link, requested)?;
                self.links.push((iface.to_owned(), Hold::Held(link, id)));
                return Ok(Attachment {
                    how: Attached::Held,
                    mode,
                    native_refused,
                });
            }
        };
        let mut why = None;
        if pin.exists() {
            match current.map_or(Ok(()), |mode| requested.accepts(mode)) {
                Err(reason) => why = Some(reason),
                Ok(()) => match self.take_over(iface, &pin, link) {
                    Ok(()) => {
                        return Ok(Attachment {
                            how: Attached::TookOver,
                            mode: current.unwrap_or(match requested {
                                AttachMode::Skb => XdpMode::Generic,
                                _ => XdpMode::Native,
                            }),
                            native_refused: None,
                        });
                    }
                    Err(error) => why = Some(error),
                },
            }
            // Detached now, so the new attachment cannot meet the old one.
            let _ = pins::detach_pinned_link(&pin);
        }
        let (id, mode, native_refused) = self.attach_fresh(iface, index, link, requested)?;
        let program = self.program_for(iface, link)?;
        let taken = program.take_link(id).map_err(|source| AttachError::Other {
            iface: iface.to_owned(),
            source,
        })?;
        let fd_link = FdLink::try_from(taken).map_err(|source| AttachError::Link {
            iface: iface.to_owned(),
            source,
        })?;
        let pinned = fd_link.pin(&pin).map_err(|source| AttachError::Pin {
            iface: iface.to_owned(),
            path: pin.clone(),
            source,
        })?;
        if let Ok(xdp_link) = XdpLink::try_from(FdLink::from(pinned)) {
            self.links.push((iface.to_owned(), Hold::Link(xdp_link)));
        }
        Ok(Attachment {
            how: why.map_or(Attached::Pinned, |why| Attached::Reattached { why }),
            mode,
            native_refused,
        })
    }

    /// Lets go of `iface`: its link is detached and unpinned. For an interface that went away,
    /// this clears what is left of its link, so neither `status` nor the next daemon mistakes
    /// it for a guard.
    pub fn release(&mut self, iface: &str) {
        self.release_hold(iface);
        if let Some(dir) = &self.state {
            let pin = dir.link_path(iface);
            if pin.exists() {
                // Best effort: a link whose interface is gone detaches nothing.
                let _ = pins::detach_pinned_link(&pin);
            }
        }
    }

    /// Moves the attachment of `from` to the name `to` (the interface was renamed): the
    /// program stays where it is, and its pin follows the name.
    pub fn rename(&mut self, from: &str, to: &str) -> std::io::Result<()> {
        for (name, _) in self.links.iter_mut().filter(|(name, _)| name == from) {
            to.clone_into(name);
        }
        match &self.state {
            Some(dir) if dir.link_path(from).exists() => {
                std::fs::rename(dir.link_path(from), dir.link_path(to))
            }
            _ => Ok(()),
        }
    }

    /// Drops this process's hold on `iface`'s link, detaching a held one.
    fn release_hold(&mut self, iface: &str) {
        let holds: Vec<(String, Hold)> = std::mem::take(&mut self.links);
        for (name, hold) in holds {
            if name != iface {
                self.links.push((name, hold));
                continue;
            }
            if let Hold::Held(link, id) = hold
                && let Ok(program) = program_mut(&mut self.ebpf, link)
            {
                // An interface that went away took its attachment with it.
                let _ = program.detach(id);
            }
        }
    }

    /// Attaches afresh in the mode `requested` asks for: `auto` tries native XDP first.
    fn attach_fresh(
        &mut self,
        iface: &str,
        index: u32,
        link: Link,
        requested: AttachMode,
    ) -> Result<(XdpLinkId, XdpMode, Option<String>), AttachError> {
        let program = self.program_for(iface, link)?;
        let first = match requested {
            AttachMode::Skb => XdpMode::Generic,
            AttachMode::Native | AttachMode::Auto => XdpMode::Native,
        };
        let native_error = match try_attach(program, iface, index, first) {
            Ok(id) => return Ok((id, first, None)),
            Err(Refusal::Gone(error)) => return Err(error),
            Err(Refusal::Mode(why)) if requested == AttachMode::Auto => why,
            Err(Refusal::Mode(why)) if first == XdpMode::Native => {
                return Err(AttachError::Native {
                    iface: iface.to_owned(),
                    why,
                });
            }
            Err(Refusal::Mode(why)) => {
                return Err(AttachError::Neither {
                    iface: iface.to_owned(),
                    native: "not tried: --xdp-mode skb".to_owned(),
                    generic: why,
                });
            }
        };
        match try_attach(program, iface, index, XdpMode::Generic) {
            Ok(id) => Ok((id, XdpMode::Generic, Some(native_error))),
            Err(Refusal::Gone(error)) => Err(error),
            Err(Refusal::Mode(generic)) => Err(AttachError::Neither {
                iface: iface.to_owned(),
                native: native_error,
                generic,
            }),
        }
    }

    /// Points the pinned link at this program's entry point for `link`.
    fn take_over(&mut self, iface: &str, pin: &std::path::Path, link: Link) -> Result<(), String> {
        let pinned = PinnedLink::from_pin(pin).map_err(|e| e.to_string())?;
        let xdp_link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| e.to_string())?;
        let program = program_mut(&mut self.ebpf, link).map_err(|e| e.to_string())?;
        let id = program
            .attach_to_link(xdp_link)
            .map_err(|e| with_cause(&e))?;
        let taken = program.take_link(id).map_err(|e| e.to_string())?;
        self.links.push((iface.to_owned(), Hold::Link(taken)));
        Ok(())
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
}

/// Why an attach in one mode failed.
enum Refusal {
    /// The interface is not there (any more).
    Gone(AttachError),
    /// This mode was refused, for this reason.
    Mode(String),
}

fn try_attach(
    program: &mut Xdp,
    iface: &str,
    index: u32,
    mode: XdpMode,
) -> Result<XdpLinkId, Refusal> {
    program
        .attach_to_if_index(index, mode.flags())
        .map_err(|error| match error {
            ProgramError::UnknownInterface { .. } => {
                Refusal::Gone(AttachError::NoSuchInterface(iface.to_owned()))
            }
            error if errno(&error) == Some(libc::ENODEV) => {
                Refusal::Gone(AttachError::NoSuchInterface(iface.to_owned()))
            }
            error => Refusal::Mode(with_cause(&error)),
        })
}

/// An error and the system call's own error beneath it, in one line.
fn with_cause(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// The errno under an attach error, if a system call failed.
fn errno(error: &ProgramError) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = current.source();
    }
    None
}

/// XDP links (Linux 5.9) are what can be pinned; before them aya attaches through netlink, and
/// the attachment cannot outlive the daemon in a way it could take over.
fn links_outlive_processes() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 9, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_over_a_link_in_either_mode_and_the_insistent_modes_only_their_own() {
        for current in [XdpMode::Native, XdpMode::Generic] {
            assert_eq!(AttachMode::Auto.accepts(current), Ok(()));
        }
        assert_eq!(AttachMode::Native.accepts(XdpMode::Native), Ok(()));
        assert_eq!(AttachMode::Skb.accepts(XdpMode::Generic), Ok(()));
        assert_eq!(
            AttachMode::Skb.accepts(XdpMode::Native),
            Err("it was attached in native mode".to_owned())
        );
        assert_eq!(
            AttachMode::Native.accepts(XdpMode::Generic),
            Err("it was attached in generic mode".to_owned())
        );
    }

    #[test]
    fn the_daemon_record_names_one_mode_or_both() {
        use XdpMode::{Generic, Native};
        assert_eq!(modes_code(&[Native, Native]), status::NATIVE);
        assert_eq!(modes_code(&[Generic]), status::GENERIC);
        assert_eq!(modes_code(&[Native, Generic]), status::MIXED);
        assert_eq!(modes_code(&[]), 0);
        for mode in [Native, Generic] {
            assert_eq!(XdpMode::from_code(mode.code()), Some(mode));
            assert_eq!(modes_name(mode.code()), mode.name());
        }
        assert_eq!(modes_name(status::MIXED), "native and generic");
        assert_eq!(modes_phrase(0), "not attached");
        assert_eq!(modes_phrase(status::NATIVE), "native XDP");
    }
}
