//! Saved hosts: what `knock-user spa NAME` needs to know about a server, kept in
//! `~/.config/knock/hosts` (`$XDG_CONFIG_HOME/knock/hosts` when set), one section per host, in
//! knockd.conf's syntax:
//!
//! ```text
//! [myserver]
//! host     = server.example.org   # a name or an address (required)
//! door     = openSSH              # the door to open (required)
//! key_file = myserver.key         # relative to this file's directory; default spa.key
//! key_id   = 1234                 # which key of the file; default its first
//! source   = auto                 # auto (ask a STUN server), an address, or none (the local one)
//! stun     = stun.example.org:3478
//! port     = 62202                # the server's SPA port
//! family   = 4                    # 4 or 6, for a host name with both
//! ```
//!
//! Keys are case-insensitive; `#` starts a comment. Mistakes name the file and the line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::cli::knock::Family;

/// Where the address signed for comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Ask a STUN server (behind NAT).
    Auto,
    Address(IpAddr),
}

impl Source {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        text.parse()
            .map(Self::Address)
            .map_err(|_| format!("`{text}` is neither `auto` nor an address"))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Address(ip) => ip.fmt(f),
        }
    }
}

/// One saved host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedHost {
    pub name: String,
    pub host: String,
    pub door: String,
    /// Resolved against the hosts file's directory.
    pub key_file: Option<PathBuf>,
    pub key_id: Option<u32>,
    pub source: Option<Source>,
    pub stun: Option<String>,
    pub port: Option<u16>,
    pub family: Option<Family>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
pub struct HostsError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

/// The directory of knock's client files: `$XDG_CONFIG_HOME/knock`, else `~/.config/knock`.
pub fn dir() -> Option<PathBuf> {
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(config).join("knock"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config/knock"))
}

/// The saved hosts file.
pub fn file() -> Option<PathBuf> {
    dir().map(|dir| dir.join("hosts"))
}

/// Reads the saved hosts; a missing file holds none.
pub fn load(path: &Path) -> Result<Vec<SavedHost>, HostsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(HostsError {
            path: path.to_owned(),
            line: 0,
            message: format!("cannot read the file: {error}"),
        }),
    }
}

/// Reads the text of a hosts file; `path` names it in errors and anchors relative key files.
pub fn parse(path: &Path, text: &str) -> Result<Vec<SavedHost>, HostsError> {
    let error = |line: usize, message: String| HostsError {
        path: path.to_owned(),
        line,
        message,
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut hosts: Vec<(usize, SavedHost)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = strip_comment(raw);
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .map(str::trim)
                .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
                .ok_or_else(|| error(number, "a section header is `[name]`".into()))?;
            if let Some((first, _)) = hosts.iter().find(|(_, h)| h.name == name) {
                return Err(error(
                    number,
                    format!("host `{name}` is saved twice (first on line {first})"),
                ));
            }
            hosts.push((
                number,
                SavedHost {
                    name: name.to_owned(),
                    ..SavedHost::default()
                },
            ));
            seen.clear();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
            .ok_or_else(|| error(number, "expected `key = value` or `[name]`".into()))?;
        let Some((_, host)) = hosts.last_mut() else {
            return Err(error(number, format!("`{key}` outside any [host] section")));
        };
        if value.is_empty() {
            return Err(error(number, format!("{key}: takes a value")));
        }
        if seen.contains(&key) {
            return Err(error(number, format!("{key}: set twice for this host")));
        }
        seen.push(key.clone());
        let bad = |message: String| error(number, format!("{key}: {message}"));
        match key.as_str() {
            "host" => host.host = value.to_owned(),
            "door" => host.door = value.to_owned(),
            "key_file" => host.key_file = Some(resolve(base, value)),
            "key_id" => {
                host.key_id = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("`{value}` is not a key id (a whole number)")))?,
                );
            }
            "source" => host.source = Some(Source::parse(value).map_err(bad)?),
            "stun" => host.stun = Some(value.to_owned()),
            "port" => {
                host.port = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| bad(format!("`{value}` is not a port")))?,
                );
            }
            "family" => {
                host.family = Some(match value {
                    "4" => Family::V4,
                    "6" => Family::V6,
                    _ => return Err(bad(format!("`{value}` is not 4 or 6"))),
                });
            }
            _ => {
                return Err(error(
                    number,
                    format!(
                        "unknown key `{key}` (a host takes host, door, key_file, key_id, source, \
                         stun, port and family)"
                    ),
                ));
            }
        }
    }
    hosts
        .into_iter()
        .map(|(line, host)| {
            for (missing, what) in [
                (host.host.is_empty(), "host"),
                (host.door.is_empty(), "door"),
            ] {
                if missing {
                    return Err(error(
                        line,
                        format!("host `{}` has no `{what} =`", host.name),
                    ));
                }
            }
            Ok(host)
        })
        .collect()
}

/// `~/` means the home directory; a relative path is relative to `base`.
fn resolve(base: &Path, value: &str) -> PathBuf {
    if let (Some(rest), Some(home)) = (value.strip_prefix("~/"), std::env::var_os("HOME")) {
        return PathBuf::from(home).join(rest);
    }
    base.join(value)
}

fn strip_comment(raw: &str) -> &str {
    let line = raw.trim();
    if line.starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(at) => line[..at].trim(),
        None => line,
    }
}

/// A host's section, as `keygen --save-host` appends it.
pub fn section(host: &SavedHost, key_file: &str) -> String {
    let mut text = format!(
        "[{}]\nhost     = {}\ndoor     = {}\nkey_file = {key_file}\n",
        host.name, host.host, host.door
    );
    if let Some(source) = host.source {
        let _ = writeln!(text, "source   = {source}");
    }
    if let Some(stun) = &host.stun {
        let _ = writeln!(text, "stun     = {stun}");
    }
    if let Some(port) = host.port {
        let _ = writeln!(text, "port     = {port}");
    }
    text
}

/// Creates `path` with mode 0600 and `text`, refusing to replace a file that is there.
pub fn write_new_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| with_path(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| with_path(path, e))
}

/// Appends `text` to `path`, creating it with mode 0600 (and its directory with 0700).
pub fn append_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| with_path(parent, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| with_path(path, e))?;
    let separator = if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        "\n"
    } else {
        ""
    };
    file.write_all(format!("{separator}{text}").as_bytes())
        .map_err(|e| with_path(path, e))
}

fn with_path(path: &Path, error: std::io::Error) -> std::io::Error {
    let hint = if error.kind() == std::io::ErrorKind::AlreadyExists {
        " (it is there already; knock does not overwrite keys)"
    } else {
        ""
    };
    std::io::Error::new(error.kind(), format!("{}: {error}{hint}", path.display()))
}

#[cfg(test)]
mod tests;
