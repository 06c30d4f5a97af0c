//! Configuration errors that say where the problem is.

use std::fmt;
use std::path::PathBuf;

/// A configuration mistake: file, line (0 for the whole file), key, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub key: Option<String>,
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error(
        "unknown key (knock reads knockd's keys and its own: {})",
        super::parse::extension_keys().collect::<Vec<_>>().join(", ")
    )]
    UnknownKey,
    #[error("a key outside any [section]")]
    OutsideSection,
    #[error("a line without `=`: only the bare `UseSyslog` needs none")]
    MissingEquals,
    #[error("{0} takes a value")]
    MissingValue(&'static str),
    #[error("UseSyslog takes no value; write the bare word `UseSyslog`")]
    UseSyslogWithValue,
    #[error("this key belongs in a door section, not [options]")]
    DoorKeyInOptions,
    #[error("this key belongs in [options], not a door section")]
    OptionKeyInDoor,
    #[error("set twice in this section (first on line {0})")]
    Duplicate(usize),
    #[error("a section header needs a name between `[` and `]`")]
    BadSection,
    #[error(
        "a door name of {0} bytes; at most {max} fit in the kernel's name table",
        max = super::MAX_NAME_LEN
    )]
    LongName(usize),
    #[error("door `{0}` is defined twice (first on line {1})")]
    DuplicateDoor(String, usize),
    #[error("door `{0}` has no Sequence, One_Time_Sequences or Secret_File, and does not take SPA")]
    NoSequence(String),
    #[error("door `{0}` has {1}; a door takes one of Sequence, One_Time_Sequences and Secret_File")]
    TwoSequences(String, String),
    #[error("{0}")]
    BadValue(String),
    #[error("more than {max} doors; knock holds at most {max}")]
    TooManyDoors { max: usize },
    #[error("no doors: add a section such as [openSSH] with a Sequence")]
    NoDoors,
}
