//! The record of used single-use sequences on disk (`plan::record`): loaded into the kernel's
//! `SPENT` map at start, so a reboot, which empties bpffs, revives no used sequence; written
//! again, atomically, whenever the kernel's claims change. One file per daemon, named after its
//! first interface, in `--record-dir` (/var/lib/knock, knock.service's StateDirectory). Nothing
//! is written before a single-use sequence is used.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use knock_common::spent::Tag;

use super::Daemon;
use crate::journal::Journal;
use crate::kernel::Knock;
use crate::plan::record;
use crate::system::clock;

/// Where the record is kept unless `--record-dir` says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/knock";

pub(super) struct Record {
    path: PathBuf,
    /// The tags the file holds, once read or written.
    written: Option<BTreeSet<Tag>>,
    /// The last failure to write it, said once.
    failed: Option<String>,
}

impl Record {
    /// The record of a daemon guarding `interfaces`, in `dir`.
    pub fn new(dir: &Path, interfaces: &[String]) -> Self {
        let first = interfaces.first().map_or("none", String::as_str);
        Self {
            path: dir.join(format!("{first}.used")),
            written: None,
            failed: None,
        }
    }

    /// Loads the record into the kernel's `SPENT` map, saying what it restored and what it
    /// could not read.
    pub fn restore(&mut self, knock: &mut Knock, journal: &Journal) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => {
                journal.line(&format!(
                    "knock: cannot read the record of used sequences {}: {error}; used one-time \
                     lines the file does not mark could open once more",
                    self.path.display()
                ));
                return;
            }
        };
        let (claims, errors) = record::parse(&text);
        for error in errors {
            journal.line(&format!("knock: {}: {error}; ignored", self.path.display()));
        }
        let (now_ns, now_s) = (clock::monotonic_ns(), clock::unix_s());
        let claims: Vec<(Tag, u64)> = claims
            .iter()
            .map(|(tag, at)| (*tag, record::to_monotonic_ns(*at, now_ns, now_s)))
            .collect();
        match knock.restore_spent(&claims) {
            Ok(0) => {}
            Ok(restored) => journal.line(&format!(
                "knock: {restored} used single-use sequence(s) restored from {}: they stay used",
                self.path.display()
            )),
            Err(error) => journal.line(&format!(
                "knock: cannot restore the used sequences of {}: {error:#}",
                self.path.display()
            )),
        }
        self.written = Some(claims.iter().map(|(tag, _)| *tag).collect());
    }

    /// Writes the record if the kernel's claims differ from what it holds.
    fn keep(&mut self, claimed: &BTreeMap<Tag, u64>, journal: &Journal) {
        let tags: BTreeSet<Tag> = claimed.keys().copied().collect();
        if self.written.as_ref() == Some(&tags) {
            return;
        }
        if tags.is_empty() && !self.path.exists() {
            self.written = Some(tags);
            return;
        }
        let (now_ns, now_s) = (clock::monotonic_ns(), clock::unix_s());
        let claims: BTreeMap<Tag, u64> = claimed
            .iter()
            .map(|(tag, at)| (*tag, record::to_unix_s(*at, now_ns, now_s)))
            .collect();
        match replace(&self.path, &record::format(&claims)) {
            Ok(()) => {
                self.written = Some(tags);
                self.failed = None;
            }
            Err(error) => {
                let said = error.to_string();
                if self.failed.as_ref() != Some(&said) {
                    journal.line(&format!(
                        "knock: cannot record the used sequences in {}: {said}; they stay \
                         used until a reboot, after which a one-time line its file does not \
                         mark would open once more",
                        self.path.display()
                    ));
                    self.failed = Some(said);
                }
            }
        }
    }
}

impl Daemon {
    /// Each tick: the record follows the kernel's claims.
    pub(super) fn keep_record(&mut self) {
        if let Ok(claimed) = self.knock.spent() {
            self.record.keep(&claimed, &self.journal);
        }
    }
}

/// Replaces `path` with `text` atomically and durably: a crash leaves the old record or the
/// new one, never half of one.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}
