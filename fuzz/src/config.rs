//! Invariants of the knockd.conf parser over arbitrary text.

use std::collections::BTreeSet;
use std::path::Path;

use knock_common::ports::{GUARDED, KNOCK};
use knock_common::segment::{PROTO_TCP, PROTO_UDP};
use knock_common::{MAX_DOORS, MAX_GUARDED_PORTS, MAX_STEPS};
use knock_user::config::{self, ErrorKind};
use knock_user::plan::{Plan, Switches};

const PATH: &str = "/etc/knockd.conf";

/// Parses `data` as a configuration file. Panics, for the fuzzer to report, when the parser
/// panics, when an error names no line of the file, or when an accepted configuration breaks
/// a limit or cannot be planned.
pub fn check_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let parsed = config::parse(Path::new(PATH), &text);
    let config = match parsed {
        Ok(config) => config,
        Err(error) => {
            assert_eq!(error.path, Path::new(PATH), "the error names another file");
            if error.kind == ErrorKind::NoDoors {
                assert_eq!(error.line, 0, "`no doors` is about the whole file");
            } else {
                assert!(
                    (1..=lines).contains(&error.line),
                    "error `{error}` names line {} of a file of {lines} lines",
                    error.line
                );
            }
            assert!(error.to_string().starts_with(PATH));
            return;
        }
    };
    assert!(!config.doors.is_empty() && config.doors.len() <= MAX_DOORS);
    let mut knocks = BTreeSet::new();
    for door in &config.doors {
        assert!(
            (1..=lines).contains(&door.line),
            "door `{}` on line {}",
            door.name,
            door.line
        );
        // Rotating doors get their sequences per period, SPA doors may have none.
        assert!(
            !door.sequence.is_empty()
                || door.one_time_sequences.is_some()
                || door.secret_file.is_some()
                || door.spa,
            "door `{}` can never open",
            door.name
        );
        assert!(door.sequence.len() <= MAX_STEPS && door.protect.len() <= MAX_GUARDED_PORTS);
        assert!(
            door.progress.is_some(),
            "door `{}` has no progress rule",
            door.name
        );
        for port in door.sequence.iter().chain(&door.protect) {
            assert!(port.port != 0 && (port.proto == PROTO_TCP || port.proto == PROTO_UDP));
        }
        knocks.extend(door.sequence.iter().copied());
    }
    for door in &config.doors {
        for port in &door.protect {
            assert!(
                !knocks.contains(port),
                "port {port:?} is protected and a knock"
            );
        }
    }

    let plan = Plan::new(&config, &BTreeSet::new(), Switches::default());
    for (index, door) in config.doors.iter().enumerate() {
        assert_eq!(plan.id_of(&door.name), Some(index), "door `{}`", door.name);
        for step in &door.sequence {
            assert!(
                plan.class_of(*step) & KNOCK != 0,
                "knock {step:?} of `{}`",
                door.name
            );
        }
        for port in &door.protect {
            let class = plan.class_of(*port);
            assert!(
                class & GUARDED != 0,
                "port {port:?} of `{}` unguarded",
                door.name
            );
        }
    }
    // Reloading an unchanged file changes nothing: no door gets a new id or revision.
    assert!(
        plan.next(&config, &BTreeSet::new(), Switches::default()) == plan,
        "reloading the same configuration changed the plan"
    );
}
