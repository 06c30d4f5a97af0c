//! SPA key files: one client per line, `id key comment...`, where the id is a decimal number
//! and the key 32 hex digits (128 bits). `#` starts a comment line. The same format serves the
//! daemon (every client) and a client (its own line).

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{ConfigError, ErrorKind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKey {
    pub id: u32,
    pub key: [u8; 16],
    pub comment: String,
}

impl ClientKey {
    /// The key file line for this key.
    pub fn line(&self) -> String {
        let mut line = format!("{} {}", self.id, hex(&self.key));
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
        keys.push(ClientKey {
            id,
            key,
            comment: fields.next().unwrap_or_default().trim().to_owned(),
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
        };
        let parsed = parse(Path::new("k"), &format!("# clients\n{}\n", key.line())).unwrap();
        assert_eq!(parsed, [key]);
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
        ] {
            let error = parse(Path::new("keys"), text).unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
            assert!(error.line >= 1);
        }
    }
}
