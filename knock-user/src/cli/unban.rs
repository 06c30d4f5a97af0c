//! `knock-user unban ADDR`: forgets a source's failures and lifts its ban, in the pinned `BANS`
//! map, so it works whether a daemon runs or not.

use std::net::IpAddr;
use std::path::Path;

use aya::maps::{Array, HashMap, MapData};
use knock_common::ban::{self, Strikes};
use knock_common::settings::Settings;
use knock_common::{Addr, maps};

use crate::kernel::pins::{self, StateDir, StateError};
use crate::system::clock;

/// What unbanning did in one state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unbanned {
    /// The source was banned for this many more seconds; it no longer is.
    Lifted { dir: String, left_s: u64 },
    /// The source was not banned, but had failures counted against it; they are forgotten.
    Forgiven { dir: String, failures: u32 },
    /// Nothing was held against the source.
    Clean { dir: String },
}

impl std::fmt::Display for Unbanned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lifted { dir, left_s } => {
                write!(f, "{dir}: ban lifted ({left_s} s were left)")
            }
            Self::Forgiven { dir, failures } => write!(
                f,
                "{dir}: not banned; {failures} failure(s) counted against it are forgotten"
            ),
            Self::Clean { dir } => write!(f, "{dir}: not banned, no failures counted"),
        }
    }
}

/// Unbans `source` in what guards `iface`, or everywhere under `root`. An empty list means
/// nothing was attached.
pub fn unban(
    root: &Path,
    iface: Option<&str>,
    source: IpAddr,
) -> Result<Vec<Unbanned>, StateError> {
    pins::select(root, iface)
        .iter()
        .map(|dir| unban_in(dir, source))
        .collect()
}

fn unban_in(dir: &StateDir, source: IpAddr) -> Result<Unbanned, StateError> {
    let path = dir.map_path(maps::BANS);
    let name = dir.path().display().to_string();
    let mut bans: HashMap<MapData, Addr, Strikes> = HashMap::try_from(dir.map(maps::BANS)?)
        .map_err(|source| StateError::Map {
            path: path.clone(),
            source,
        })?;
    // IPv6 sources are banned by prefix: the one the running configuration pushed.
    let settings_path = dir.map_path(maps::SETTINGS);
    let settings: Array<MapData, Settings> =
        Array::try_from(dir.map(maps::SETTINGS)?).map_err(|source| StateError::Map {
            path: settings_path.clone(),
            source,
        })?;
    let prefix6 = settings
        .get(&0, 0)
        .map_err(|source| StateError::Map {
            path: settings_path,
            source,
        })?
        .ban_prefix6;
    let key = ban::key(Addr::from(source), prefix6);
    let Ok(strikes) = bans.get(&key, 0) else {
        return Ok(Unbanned::Clean { dir: name });
    };
    match bans.remove(&key) {
        // Gone meanwhile (it expired from the LRU): nothing is held against it either way.
        Err(aya::maps::MapError::KeyNotFound) => return Ok(Unbanned::Clean { dir: name }),
        Err(source) => return Err(StateError::Map { path, source }),
        Ok(()) => {}
    }
    let now = clock::monotonic_ns();
    Ok(if strikes.is_banned_at(now) {
        Unbanned::Lifted {
            dir: name,
            left_s: (strikes.banned_until_ns - now).div_ceil(1_000_000_000),
        }
    } else if strikes.count > 0 {
        Unbanned::Forgiven {
            dir: name,
            failures: strikes.count,
        }
    } else {
        Unbanned::Clean { dir: name }
    })
}
