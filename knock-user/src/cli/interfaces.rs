//! What `knock-user check` says of the interfaces `run` would guard (the same options choose
//! them: `-i`, `Interface` lines, the default routes): a link type knock cannot judge is an
//! error, so knock.service's `ExecStartPre` fails the start with the reason; an interface that
//! does not exist yet is only a note, since the daemon waits for it; interfaces that are up,
//! reachable and left unguarded are warnings.

use crate::config::Config;
use crate::kernel::link::{self, LinkError};
use crate::system::{net, routes};

/// What check says of the interfaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Interfaces knock cannot guard: `run` would refuse to start.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Judges the interfaces `run` would guard with these `-i` options and this configuration.
pub fn judge(cli: &[String], config: &Config) -> Verdict {
    let mut verdict = Verdict::default();
    let interfaces = match crate::daemon::interfaces_to_guard(cli, config) {
        Ok(interfaces) => interfaces,
        Err(error) => {
            verdict.warnings.push(format!("{error:#}"));
            return verdict;
        }
    };
    for iface in &interfaces {
        match link::judge_interface(iface) {
            Ok(_) => {}
            Err(LinkError::NoSuchInterface(_)) => verdict.warnings.push(format!(
                "{iface} does not exist (yet): the daemon waits for it, and guards it once it \
                 appears"
            )),
            // Not knowing is no refusal: the daemon says what it finds.
            Err(error @ LinkError::Netlink { .. }) => verdict
                .warnings
                .push(format!("{:#}", anyhow::Error::from(error))),
            Err(error) => verdict.errors.push(error.to_string()),
        }
    }
    for (iface, addresses) in routes::unguarded(&net::addresses(), &interfaces) {
        let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        verdict.warnings.push(format!(
            "{iface} ({}) is up and not guarded: protected ports answer there without a knock; \
             guard it too (-i, or Interface lines) unless only trusted networks reach it",
            addresses.join(", ")
        ));
    }
    verdict
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        crate::config::parse(Path::new("t"), "[d]\nsequence = 1\n").unwrap()
    }

    #[test]
    fn the_loopback_interface_is_an_error_and_a_missing_one_a_note() {
        let verdict = judge(&["lo".to_owned(), "knock-none0".to_owned()], &config());
        assert_eq!(verdict.errors.len(), 1, "{verdict:?}");
        assert!(
            verdict.errors[0].contains("knock cannot guard lo: it is the loopback interface"),
            "{verdict:?}"
        );
        assert!(
            verdict
                .warnings
                .iter()
                .any(|w| w.starts_with("knock-none0 does not exist (yet): the daemon waits")),
            "{verdict:?}"
        );
    }
}
