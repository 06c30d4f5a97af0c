//! The interfaces the daemon guards, each attached, missing or refused, kept in step with
//! rtnetlink's link notifications: an interface that goes away (a USB Ethernet that resets, PPP
//! that reconnects, `ifdown` of a VLAN or WireGuard device) takes its XDP link with it, so the
//! daemon says so, releases what is left of the link, and attaches again, and pins the new
//! link, as soon as an interface of that name is back; `run -i X` for an X that does not exist
//! yet waits for it the same way. What to do about a change is decided here as data
//! ([`on_change`]); the daemon does it ([`Daemon::follow`]).

use crate::kernel::link::{self, Change, LinkInfo, XdpMode};
use crate::kernel::{AttachError, Attachment};

use super::Daemon;

/// One guarded interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Guard {
    pub name: String,
    pub state: State,
    /// Named by the operator (or chosen from the default routes). A guard that follows an
    /// attached interface renamed away is not, and ends when that interface goes.
    pub requested: bool,
    /// Whether this daemon has had it attached: the next attachment is a return.
    pub seen: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// The program runs on the interface with this index, in this mode.
    Attached { index: u32, mode: XdpMode },
    /// No interface of this name: it went away, or has not appeared yet.
    Missing,
    /// The interface with this index has the name but cannot be guarded (its type, or no
    /// mode would attach): said when it appeared.
    Refused { index: u32 },
}

impl Guard {
    pub fn attached(name: &str, index: u32, mode: XdpMode) -> Self {
        Self {
            name: name.to_owned(),
            state: State::Attached { index, mode },
            requested: true,
            seen: true,
        }
    }

    pub fn missing(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: State::Missing,
            requested: true,
            seen: false,
        }
    }

    pub fn mode(&self) -> Option<XdpMode> {
        match self.state {
            State::Attached { mode, .. } => Some(mode),
            _ => None,
        }
    }

    fn index(&self) -> Option<u32> {
        match self.state {
            State::Attached { index, .. } | State::Refused { index } => Some(index),
            State::Missing => None,
        }
    }
}

/// What a change of links asks of the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Attach to this interface, which has a guarded name and is new.
    Attach(LinkInfo),
    /// The guarded interface `name`, with this index, went away.
    Lost { name: String, index: u32 },
    /// The attached interface `from` is now called `to`.
    Renamed { from: String, to: String },
    /// Addresses changed: the host's facts are read again.
    Addresses,
}

/// What `change` asks of the daemon guarding `guards`.
pub(super) fn on_change(guards: &[Guard], change: &Change) -> Vec<Action> {
    let mut actions = Vec::new();
    match change {
        Change::Addresses => actions.push(Action::Addresses),
        Change::Gone(info) => {
            for guard in guards.iter().filter(|g| g.index() == Some(info.index)) {
                actions.push(Action::Lost {
                    name: guard.name.clone(),
                    index: info.index,
                });
            }
        }
        Change::Link(info) => {
            for guard in guards {
                match guard.state {
                    State::Attached { index, .. } if index == info.index => {
                        if guard.name != info.name {
                            actions.push(Action::Renamed {
                                from: guard.name.clone(),
                                to: info.name.clone(),
                            });
                        }
                    }
                    _ if guard.name != info.name => {}
                    State::Missing => actions.push(Action::Attach(info.clone())),
                    State::Attached { index, .. } => {
                        // The old one is gone, whether or not its notification came.
                        actions.push(Action::Lost {
                            name: guard.name.clone(),
                            index,
                        });
                        actions.push(Action::Attach(info.clone()));
                    }
                    State::Refused { index } if index != info.index => {
                        actions.push(Action::Attach(info.clone()));
                    }
                    State::Refused { .. } => {}
                }
            }
        }
    }
    actions
}

/// What the daemon learned from its socket: datagrams, and whether notifications were lost
/// (the socket's buffer overflowed).
pub(super) struct Received {
    pub datagrams: Vec<Vec<u8>>,
    pub overflowed: bool,
}

impl Daemon {
    /// The names of the guarded interfaces.
    pub(super) fn interfaces(&self) -> Vec<String> {
        self.guards.iter().map(|g| g.name.clone()).collect()
    }

    /// The modes in use, as the daemon record keeps them.
    pub(super) fn modes_code(&self) -> u32 {
        let modes: Vec<XdpMode> = self.guards.iter().filter_map(Guard::mode).collect();
        crate::kernel::modes_code(&modes)
    }

    /// Guarded interfaces with the program on them, and those without.
    pub(super) fn attached_and_missing(&self) -> (Vec<String>, Vec<String>) {
        let (on, off): (Vec<&Guard>, Vec<&Guard>) =
            self.guards.iter().partition(|g| g.mode().is_some());
        let names = |list: Vec<&Guard>| list.iter().map(|g| g.name.clone()).collect();
        (names(on), names(off))
    }

    /// Whether every interface the operator named is attached.
    pub(super) fn all_attached(&self) -> bool {
        self.guards
            .iter()
            .filter(|g| g.requested)
            .all(|g| g.mode().is_some())
    }

    /// Acts on what the link socket said.
    pub(super) fn follow(&mut self, received: Received) {
        let mut changes: Vec<Change> = received
            .datagrams
            .iter()
            .flat_map(|d| link::changes(d))
            .collect();
        if received.overflowed {
            changes.extend(self.look_again());
        }
        let mut addresses = false;
        let mut moved = false;
        for change in changes {
            for action in on_change(&self.guards, &change) {
                match action {
                    Action::Addresses => addresses = true,
                    action => {
                        self.act(action);
                        moved = true;
                    }
                }
            }
        }
        if addresses || moved {
            self.check_served();
        }
        // The daemon record (the modes in use) follows at the next tick.
        if moved {
            if !self.ready && self.all_attached() {
                self.tell_systemd("READY=1");
                self.ready = true;
            } else {
                self.tell_systemd("");
            }
        }
    }

    /// After lost notifications: each guarded interface as it is now.
    fn look_again(&mut self) -> Vec<Change> {
        self.journal.line(
            "knock: link notifications were lost; every guarded interface is looked at again",
        );
        let mut changes = vec![Change::Addresses];
        for guard in &self.guards {
            match link::query(&guard.name) {
                Ok(info) => changes.push(Change::Link(info)),
                Err(_) => {
                    if let Some(index) = guard.index() {
                        changes.push(Change::Gone(LinkInfo {
                            index,
                            name: guard.name.clone(),
                            ..LinkInfo::default()
                        }));
                    }
                }
            }
        }
        changes
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Attach(info) => self.attach_again(&info),
            Action::Lost { name, index } => {
                self.knock.release(&name);
                let Some(at) = self.guards.iter().position(|g| g.name == name) else {
                    return;
                };
                if self.guards[at].requested {
                    self.guards[at].state = State::Missing;
                    self.journal.line(&format!(
                        "knock: {name} went away (ifindex {index}): it is not guarded until an \
                         interface of that name comes back, and then it is at once"
                    ));
                } else {
                    self.guards.remove(at);
                    self.journal.line(&format!(
                        "knock: {name} went away (ifindex {index}); it is not guarded any more"
                    ));
                }
            }
            Action::Renamed { from, to } => self.follow_rename(&from, &to),
            Action::Addresses => {}
        }
    }

    /// An interface with a guarded name appeared: judged, attached, its link pinned.
    fn attach_again(&mut self, info: &LinkInfo) {
        let Some(at) = self.guards.iter().position(|g| g.name == info.name) else {
            return;
        };
        let verb = if self.guards[at].seen {
            "is back"
        } else {
            "appeared"
        };
        let name = info.name.clone();
        let attached = link::judge(&name, info, link::tunnels_start_at_ip())
            .map_err(|e| e.to_string())
            .and_then(|kind| {
                self.knock
                    .attach(&name, info.index, kind, self.options.mode, info.xdp_mode())
                    .map_err(|e| match e {
                        AttachError::NoSuchInterface(_) => String::new(),
                        e => format!("{:#}", anyhow::Error::from(e)),
                    })
            });
        let guard = &mut self.guards[at];
        match attached {
            Ok(Attachment {
                mode,
                native_refused,
                ..
            }) => {
                guard.state = State::Attached {
                    index: info.index,
                    mode,
                };
                guard.seen = true;
                self.journal.line(&format!(
                    "knock: {name} {verb} (ifindex {}): guarded{}, {}",
                    info.index,
                    if verb == "is back" { " again" } else { "" },
                    mode_words(mode, native_refused.as_deref())
                ));
            }
            // Gone again before it could be attached: the next notification says so.
            Err(why) if why.is_empty() => {}
            Err(why) => {
                guard.state = State::Refused { index: info.index };
                self.journal.line(&format!(
                    "knock: {name} {verb} (ifindex {}) but cannot be guarded: {why}",
                    info.index
                ));
            }
        }
    }

    /// The attached interface `from` was renamed `to`: the program stays on it (the gate holds)
    /// and it is guarded under its new name until it goes; `from` waits for a new interface.
    fn follow_rename(&mut self, from: &str, to: &str) {
        let Some(at) = self.guards.iter().position(|g| g.name == from) else {
            return;
        };
        let old = self.guards[at].clone();
        if let Err(error) = self.knock.rename(from, to) {
            self.journal.line(&format!(
                "knock: cannot move the pinned link of {from} to {to}: {error}"
            ));
        }
        if old.requested {
            self.guards[at].state = State::Missing;
        } else {
            self.guards.remove(at);
        }
        match self.guards.iter_mut().find(|g| g.name == to) {
            Some(existing) => {
                existing.state = old.state;
                existing.seen = true;
            }
            None => self.guards.push(Guard {
                name: to.to_owned(),
                requested: false,
                ..old
            }),
        }
        self.journal.line(&format!(
            "knock: {from} is now called {to}: the program stays on it, guarding it as {to} \
             until it goes; {from} is guarded again when an interface of that name appears"
        ));
    }
}

/// The mode an attachment runs in, and why, in words.
pub(super) fn mode_words(mode: XdpMode, native_refused: Option<&str>) -> String {
    match (mode, native_refused) {
        (XdpMode::Native, _) => "native XDP (in the driver)".to_owned(),
        (XdpMode::Generic, Some(why)) => {
            format!("generic XDP (skb), since the driver refused native XDP: {why}")
        }
        (XdpMode::Generic, None) => "generic XDP (skb)".to_owned(),
    }
}

#[cfg(test)]
mod tests;
