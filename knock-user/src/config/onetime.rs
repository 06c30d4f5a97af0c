//! One_Time_Sequences files, as knockd reads and writes them: one sequence per line; a used line
//! gets its first character overwritten with `#`; when no line is left the door closes.

use std::fs::OpenOptions;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use knock_common::ProtoPort;

use crate::config::{ConfigError, ErrorKind, value};

/// The sequence a one-time door currently waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    /// The line of the file it comes from (1-based).
    pub line: usize,
    pub sequence: Vec<ProtoPort>,
}

/// The first unused sequence of the file, or `None` when all are used.
pub fn current(path: &Path) -> Result<Option<Current>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| error(path, 0, format!("cannot read: {e}")))?;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sequence = value::sequence(line).map_err(|m| error(path, index + 1, m))?;
        return Ok(Some(Current {
            line: index + 1,
            sequence,
        }));
    }
    Ok(None)
}

/// Marks `line` used by overwriting its first character with `#`, as knockd does.
pub fn mark_used(path: &Path, line: usize) -> std::io::Result<()> {
    let text = std::fs::read(path)?;
    let mut offset = 0usize;
    for (index, chunk) in text.split(|b| *b == b'\n').enumerate() {
        if index + 1 == line {
            if chunk.is_empty() {
                return Ok(());
            }
            let mut file = OpenOptions::new().write(true).open(path)?;
            file.seek(SeekFrom::Start(offset as u64))?;
            file.write_all(b"#")?;
            return file.sync_data();
        }
        offset += chunk.len() + 1;
    }
    Err(std::io::Error::other(format!(
        "{} has no line {line}",
        path.display()
    )))
}

/// Whether used lines of the file can be marked: it opens for writing (an immutable file, a
/// read-only mount or missing permissions say no, with the reason).
pub fn writable(path: &Path) -> std::io::Result<()> {
    OpenOptions::new().write(true).open(path).map(drop)
}

/// A relative path in the configuration is taken relative to the configuration's directory.
pub fn resolve(config_path: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_owned()
    } else {
        config_path
            .parent()
            .map_or_else(|| file.to_owned(), |dir| dir.join(file))
    }
}

fn error(path: &Path, line: usize, message: String) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        line,
        key: None,
        kind: ErrorKind::BadValue(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("knock-ots-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sequences");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_first_unused_line_is_the_current_sequence() {
        let path = file_with("first", "# used\n#1,2,3\n\n4000,5000:udp\n6000\n");
        let current = current(&path).unwrap().unwrap();
        assert_eq!(current.line, 4);
        assert_eq!(
            current.sequence,
            [ProtoPort::tcp(4000), ProtoPort::udp(5000)]
        );
    }

    #[test]
    fn a_used_line_gets_a_hash_and_the_next_one_takes_over() {
        let path = file_with("mark", "1000,2000\n3000,4000\n");
        mark_used(&path, 1).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#000,2000\n3000,4000\n"
        );
        assert_eq!(current(&path).unwrap().unwrap().line, 2);
        mark_used(&path, 2).unwrap();
        assert_eq!(current(&path).unwrap(), None, "no sequence left");
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let path = file_with("bad", "1000,abc\n");
        let error = current(&path).unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.to_string().contains("`abc` is not a port"), "{error}");
    }
}
