//! knockd's `-l`: host names for source addresses in log lines. Lookups run on a fixed pool of
//! threads and never hold up the daemon; a line shows the name once it is known. Sources are
//! the attacker's to choose (spoofed first knocks from a million addresses), so everything is
//! bounded: [`WORKERS`] threads, a queue of [`QUEUED`] lookups waiting (an address that finds
//! it full is simply not looked up now, and its line shows the bare address), and a cache of
//! [`CACHED`] addresses, emptied when full. Each lookup may block on the resolver; none of
//! this ever blocks the caller.

use std::collections::HashMap;
use std::ffi::CStr;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// Threads that look names up.
pub const WORKERS: usize = 4;
/// Lookups that may wait for a thread.
pub const QUEUED: usize = 256;
/// Addresses whose names (or lack of one) are remembered.
pub const CACHED: usize = 4096;

/// Host names by address; `None` while a lookup runs or when there is no name.
type Cache = Arc<Mutex<HashMap<IpAddr, Option<String>>>>;

/// How an address is turned into a name: the system resolver, or a test's stand-in.
type Resolve = fn(IpAddr) -> Option<String>;

#[derive(Clone, Default)]
pub struct Names {
    /// `None` when lookups are off.
    pool: Option<Pool>,
}

#[derive(Clone)]
struct Pool {
    cache: Cache,
    queue: SyncSender<IpAddr>,
}

impl Names {
    pub fn new(enabled: bool) -> Self {
        Self::with_resolver(enabled, reverse)
    }

    fn with_resolver(enabled: bool, resolve: Resolve) -> Self {
        if !enabled {
            return Self { pool: None };
        }
        let cache: Cache = Arc::default();
        let (queue, waiting) = sync_channel(QUEUED);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WORKERS {
            let cache = Arc::clone(&cache);
            let waiting = Arc::clone(&waiting);
            // A pool that cannot start a thread has fewer; with none, lookups wait forever and
            // every line shows the bare address.
            let _ = std::thread::Builder::new()
                .name("knock-names".into())
                .spawn(move || work(&waiting, &cache, resolve));
        }
        Self {
            pool: Some(Pool { cache, queue }),
        }
    }

    /// `198.51.100.2 (host.example)` once the name is known, else the address alone.
    pub fn label(&self, ip: IpAddr) -> String {
        let Some(pool) = &self.pool else {
            return ip.to_string();
        };
        let mut known = pool.cache.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(&ip) {
            Some(Some(name)) => format!("{ip} ({name})"),
            Some(None) => ip.to_string(),
            None => {
                match pool.queue.try_send(ip) {
                    Ok(()) => {
                        if known.len() >= CACHED {
                            known.clear();
                        }
                        // Remember the lookup is queued, so a burst of knocks queues only one.
                        known.insert(ip, None);
                    }
                    // Full: not looked up now; a later line may try again.
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
                }
                ip.to_string()
            }
        }
    }

    /// How many addresses the cache holds.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.pool.as_ref().map_or(0, |pool| {
            pool.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
        })
    }
}

/// A worker: takes queued addresses one at a time until the daemon ends.
fn work(waiting: &Mutex<Receiver<IpAddr>>, cache: &Cache, resolve: Resolve) {
    loop {
        let next = waiting.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(ip) = next else {
            return;
        };
        if let Some(name) = resolve(ip) {
            let mut known = cache.lock().unwrap_or_else(|p| p.into_inner());
            // Only where the entry still waits: a cache emptied meanwhile stays within bounds.
            if let Some(entry) = known.get_mut(&ip) {
                *entry = Some(name);
            }
        }
    }
}

/// The PTR name of an address, through the system resolver.
fn reverse(ip: IpAddr) -> Option<String> {
    let address = std::net::SocketAddr::new(ip, 0);
    let (storage, len) = crate::system::net::sockaddr_of(address);
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: a valid sockaddr of `len` bytes and a host buffer of the stated size.
    let rc = unsafe {
        libc::getnameinfo(
            (&raw const storage).cast(),
            len,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_lookups_a_label_is_the_bare_address() {
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(Names::new(false).label(ip), "198.51.100.2");
    }

    #[test]
    fn with_lookups_a_known_name_follows_the_address() {
        let names = Names::new(true);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(names.label(ip), "127.0.0.1", "the first line does not wait");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while names.label(ip) == "127.0.0.1" && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(names.label(ip), "127.0.0.1 (localhost)");
    }

    /// This process's thread count, from /proc.
    fn threads() -> usize {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A resolver as slow as one whose server does not answer.
    fn slow(_: IpAddr) -> Option<String> {
        std::thread::sleep(std::time::Duration::from_millis(200));
        Some("slow.example".into())
    }

    #[test]
    fn a_flood_of_new_sources_keeps_threads_and_cache_bounded_and_never_blocks() {
        let before = threads();
        let names = Names::with_resolver(true, slow);
        let started = std::time::Instant::now();
        for n in 0..100_000u32 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, (n >> 16) as u16, n as u16]);
            assert_eq!(names.label(ip), ip.to_string());
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "labels never wait for the resolver: {:?}",
            started.elapsed()
        );
        // Other tests run threads of their own at the same time: the pool adds WORKERS at most.
        assert!(
            threads() <= before + WORKERS + 8,
            "{} threads, {before} before",
            threads()
        );
        assert!(names.cached() <= CACHED, "{} cached", names.cached());
        assert!(
            names.cached() <= QUEUED + WORKERS,
            "only queued lookups are remembered: {}",
            names.cached()
        );
    }
}
