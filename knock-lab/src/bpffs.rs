//! A private BPF filesystem for tests of pinned state: mounted in a fresh directory, so what a
//! test pins never meets the host's /sys/fs/bpf, and unmounted when dropped, which releases
//! every pin left in it (links detach once no process holds them).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct BpfMount {
    path: PathBuf,
}

impl BpfMount {
    pub fn new(tag: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("knock-bpffs-{tag}-{}", std::process::id()));
        // A mount left by a crashed run of the same name goes first.
        let _ = Command::new("umount").arg("-l").arg(&path).output();
        std::fs::create_dir_all(&path)?;
        let output = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&path)
            .output()?;
        if !output.status.success() {
            return Err(std::io::Error::other(format!(
                "cannot mount a bpffs on {}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BpfMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        let _ = std::fs::remove_dir(&self.path);
    }
}
