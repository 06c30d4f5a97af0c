//! SPA key files: one client per line, `id key [doors=NAME,...] comment...`, where the id is a
//! decimal number and the key 32 hex digits (128 bits). With `doors=`, the key opens only the
//! doors named (as fwknop's access stanzas limit a key); without, every SPA door. `#` starts a
//! comment line. The same format serves the daemon (every client) and a client (its own line).

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{ConfigError, ErrorKind};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientKey {
    pub id: u32,
    pub key: [u8; 16],
    /// The doors this key opens; empty for every SPA door.
    pub doors: Vec<String>,
    pub comment: String,
    /// The line of the key file it came from (1-based), for messages; 0 for a new key.
    pub line: usize,
}

/// What a key line's third field starts with when it names the doors the key opens.
pub const DOORS_FIELD: &str = "doors=";

impl ClientKey {
    /// The key file line for this key.
    pub fn line(&self) -> String {
        let mut line = format!("{} {}", self.id, hex(&self.key));
        if !self.doors.is_empty() {
            let _ = write!(line, " {DOORS_FIELD}{}", self.doors.join(","));
        }
        if !self.comment.is_empty() {
            let _ = write!(line, " {}", self.comment);
        }
        line
    }
}

pub fn load(path: &Path) -> Result<Vec<ClientKey>, ConfigError> {
    parse(path, &crate::config::read(path)?)
}

pub fn parse(path: &Path, text: &str) -> Result<Vec<ClientKey>, ConfigError> {
    let mut keys: Vec<ClientKey> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |message: String| ConfigError {
            path: path.to_owned(),
            line: index + 1,
            key: None,
            kind: ErrorKind::BadValue(message),
        };
        let mut fields = line.splitn(3, char::is_whitespace);
        let id_text = fields.next().unwrap_or_default();
        let id: u32 = id_text
            .parse()
            .map_err(|_| error(format!("`{id_text}` is not a key id (a whole number)")))?;
        let key_text = fields.next().unwrap_or_default().trim();
        let key = unhex::<16>(key_text)
            .ok_or_else(|| error(format!("`{key_text}` is not a key (32 hex digits)")))?;
        if keys.iter().any(|k| k.id == id) {
            return Err(error(format!("key id {id} is listed twice")));
        }
        let mut rest = fields.next().unwrap_or_default().trim();
        let mut doors = Vec::new();
        if let Some(list) = rest.strip_prefix(DOORS_FIELD) {
            let (list, comment) = list.split_once(char::is_whitespace).unwrap_or((list, ""));
            for name in list.split(',') {
                if name.is_empty() {
                    return Err(error(format!(
                        "`{DOORS_FIELD}{list}` names an empty door; list door names with commas"
                    )));
                }
                doors.push(name.to_owned());
            }
            rest = comment.trim();
        }
        keys.push(ClientKey {
            id,
            key,
            doors,
            comment: rest.to_owned(),
            line: index + 1,
        });
    }
    Ok(keys)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_line_reads_back_as_written() {
        let key = ClientKey {
            id: 42,
            key: *b"0123456789abcdef",
            comment: "alice's laptop".into(),
            line: 2,
            ..ClientKey::default()
        };
        let parsed = parse(Path::new("k"), &format!("# clients\n{}\n", key.line())).unwrap();
        assert_eq!(parsed, [key]);
    }

    #[test]
    fn a_key_line_may_name_the_doors_the_key_opens() {
        let text = "1 00112233445566778899aabbccddeeff doors=openSSH,backup bob's phone\n\
                    2 00112233445566778899aabbccddeeff alice\n\
                    3 00112233445566778899aabbccddeeff doors=web\n";
        let keys = parse(Path::new("k"), text).unwrap();
        assert_eq!(keys[0].doors, ["openSSH", "backup"]);
        assert_eq!(keys[0].comment, "bob's phone");
        assert!(
            keys[1].doors.is_empty(),
            "the old format opens every SPA door"
        );
        assert_eq!(keys[1].comment, "alice");
        assert_eq!(keys[2].doors, ["web"]);
        assert_eq!(keys[2].comment, "");
        for key in &keys {
            let again = parse(Path::new("k"), &key.line()).unwrap().remove(0);
            assert_eq!(
                (again.doors, again.comment),
                (key.doors.clone(), key.comment.clone())
            );
        }
    }

    #[test]
    fn bad_lines_name_the_line() {
        for (text, needle) in [
            ("x 00112233445566778899aabbccddeeff\n", "not a key id"),
            ("1 0011\n", "not a key (32 hex digits)"),
            ("1 00112233445566778899aabbccddeefg\n", "not a key"),
            (
                "1 00112233445566778899aabbccddeeff\n1 00112233445566778899aabbccddeeff\n",
                "listed twice",
            ),
            (
                "1 00112233445566778899aabbccddeeff doors=a,,b\n",
                "names an empty door",
            ),
        ] {
            let error = parse(Path::new("keys"), text).unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
            assert!(error.line >= 1);
        }
    }
}
