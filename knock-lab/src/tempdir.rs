//! A directory of a test's own under the system's temporary directory, removed on drop.

use std::path::PathBuf;

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `knock-TAG-PID`, emptied if a crashed run of the same name left it.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("knock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
