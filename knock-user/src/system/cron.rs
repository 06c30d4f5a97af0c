//! cron's files, read so that `check` can find what flushes a firewall chain now and then (the
//! guide's `/etc/cron.daily/clear_knockd_iptables`). What they mean is `config::advice`'s.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Where cron keeps scripts and crontabs on Debian.
const DIRECTORIES: [&str; 6] = [
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/cron.d",
    "/var/spool/cron/crontabs",
];
const CRONTAB: &str = "/etc/crontab";
/// More than any crontab or cleanup script holds; a larger file is not one.
const MOST: u64 = 64 * 1024;

/// The text of every cron file this process can read, by path. Files that cannot be read
/// (another user's crontab, a binary) are left out: they are only hints.
pub fn files() -> Vec<(PathBuf, String)> {
    files_under(Path::new("/"))
}

/// As [`files`], under another root (for tests).
pub fn files_under(root: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    let mut paths = vec![under(CRONTAB)];
    for dir in DIRECTORIES {
        if let Ok(entries) = std::fs::read_dir(under(dir)) {
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            paths.extend(names);
        }
    }
    for path in paths {
        if let Some(text) = read_small(&path) {
            let shown = Path::new("/").join(path.strip_prefix(root).unwrap_or(&path));
            found.push((shown, text));
        }
    }
    found
}

fn read_small(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MOST).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_crontabs_are_read_by_their_path() {
        let root = std::env::temp_dir().join(format!("knock-cron-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc/cron.daily")).unwrap();
        std::fs::write(
            root.join("etc/cron.daily/clear_knockd_iptables"),
            "/sbin/iptables -F KNOCKD\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/crontab"), "# nothing\n").unwrap();
        let files = files_under(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            files,
            [
                (PathBuf::from("/etc/crontab"), "# nothing\n".to_owned()),
                (
                    PathBuf::from("/etc/cron.daily/clear_knockd_iptables"),
                    "/sbin/iptables -F KNOCKD\n".to_owned()
                )
            ]
        );
    }
}
