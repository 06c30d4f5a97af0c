//! Processes and namespaces, as /proc shows them.

/// Whether a process with this pid runs (a zombie, exited but not yet reaped, does not).
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Whether `pid` is a running knock daemon (and not a process that reused a dead one's pid).
pub fn is_knock_daemon(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.starts_with("knock"))
}

/// The inode of this process's network namespace, which tells namespaces apart.
pub fn current_netns() -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino())
}

/// Whether this process lives in the initial PID namespace, where PID 1 is the host's init
/// and not a container's. The kernel gives that namespace a fixed inode number.
pub fn in_initial_pid_namespace() -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").map(|m| m.ino() == PROC_PID_INIT_INO)
}
