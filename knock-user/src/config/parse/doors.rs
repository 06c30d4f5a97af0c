//! The checks that look at every door at once, once the file is read: what each door protects
//! (given, or read from its start command), SPA's keys and port, and protected ports that are
//! also knocks.

use knock_common::ports::GUARD_GROUPS;

use super::Reader;
use crate::config::{ConfigError, ErrorKind};

impl Reader<'_> {
    /// A protected port cannot also be a knock: the knock would be dropped before the gate saw it.
    /// And the gate tells protected ports apart in a five-bit group number.
    pub(super) fn check_overlaps(&self) -> Result<(), ConfigError> {
        let mut protected = std::collections::BTreeSet::new();
        for door in &self.doors {
            protected.extend(door.protect.iter().copied());
            if protected.len() >= GUARD_GROUPS as usize {
                let message = format!(
                    "more than {} distinct protected ports across all doors",
                    GUARD_GROUPS - 1
                );
                return Err(self.error(door.line, Some("Protect"), ErrorKind::BadValue(message)));
            }
        }
        for door in &self.doors {
            for port in &door.protect {
                if let Some(other) = self.doors.iter().find(|d| d.sequence.contains(port)) {
                    let message = format!(
                        "port {}:{} is protected by door `{}`{} and is also a knock of door `{}`",
                        port.port,
                        port.proto_name(),
                        door.name,
                        if door.protection == crate::config::Protection::Derived {
                            " (read from its start command; Protect says otherwise)"
                        } else {
                            ""
                        },
                        other.name
                    );
                    return Err(self.error(
                        door.line,
                        Some("Protect"),
                        ErrorKind::BadValue(message),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A door without `Protect` protects what its start commands open, nothing when they only
    /// take access away, and knock's default when they say nothing knock can read.
    pub(super) fn derive_protection(&mut self, index: usize) -> Result<(), ConfigError> {
        use crate::config::Protection;
        use crate::config::meaning::{Effect, effect};
        let door = &self.doors[index];
        if door.protection == Protection::Given {
            return Ok(());
        }
        let commands: Vec<&str> = [&door.start_command, &door.start_command_6]
            .into_iter()
            .filter_map(|c| c.as_deref())
            .filter(|c| !c.is_empty())
            .collect();
        if commands.is_empty() {
            return Ok(());
        }
        let mut opened = std::collections::BTreeSet::new();
        let mut removes = 0;
        for command in &commands {
            match effect(command) {
                Effect::Opens(ports) => opened.extend(ports),
                Effect::RemovesOnly => removes += 1,
                Effect::Unclear => {
                    self.doors[index].protection = Protection::Unclear;
                    return Ok(());
                }
            }
        }
        let (protection, protect) = if removes == commands.len() {
            (Protection::RemovesAccess, Vec::new())
        } else if removes == 0 {
            (Protection::Derived, opened.into_iter().collect::<Vec<_>>())
        } else {
            // One family's command opens, the other's removes: not something to guess about.
            self.doors[index].protection = Protection::Unclear;
            return Ok(());
        };
        if protect.len() > knock_common::MAX_GUARDED_PORTS {
            let message = format!(
                "the start command opens {} ports; a door protects at most {}: say which with \
                 Protect",
                protect.len(),
                knock_common::MAX_GUARDED_PORTS
            );
            let line = door.line;
            return Err(self.error(line, Some("Start_Command"), ErrorKind::BadValue(message)));
        }
        let door = &mut self.doors[index];
        door.protection = protection;
        door.protect = protect;
        Ok(())
    }

    /// SPA needs keys, and its port must be neither a knock nor a protected port.
    pub(super) fn check_spa(&mut self) -> Result<(), ConfigError> {
        let Some(door) = self.doors.iter().find(|d| d.spa) else {
            return Ok(());
        };
        if self.options.spa_keys.is_none() {
            let message = format!(
                "door `{}` takes single-packet authorization, but [options] has no SPA_Keys file",
                door.name
            );
            return Err(self.error(door.line, Some("SPA"), ErrorKind::BadValue(message)));
        }
        let port = *self
            .options
            .spa_port
            .get_or_insert(knock_common::spa::DEFAULT_PORT);
        let spa = knock_common::ProtoPort::udp(port);
        if let Some(other) = self
            .doors
            .iter()
            .find(|d| d.sequence.contains(&spa) || d.protect.contains(&spa))
        {
            let message = format!(
                "the SPA port {port}:udp is also a knock or protected port of door `{}`",
                other.name
            );
            return Err(self.error(other.line, Some("SPA_Port"), ErrorKind::BadValue(message)));
        }
        Ok(())
    }
}
