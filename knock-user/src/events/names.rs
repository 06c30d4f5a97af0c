//! knockd's `-l`: host names for source addresses in log lines. Lookups run on their own
//! threads and never hold up the daemon; a line shows the name once it is known.

use std::collections::HashMap;
use std::ffi::CStr;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Host names by address; `None` while a lookup runs or when there is no name.
type Cache = Arc<Mutex<HashMap<IpAddr, Option<String>>>>;

#[derive(Clone, Default)]
pub struct Names {
    /// `None` when lookups are off.
    cache: Option<Cache>,
}

impl Names {
    pub fn new(enabled: bool) -> Self {
        Self {
            cache: enabled.then(Default::default),
        }
    }

    /// `198.51.100.2 (host.example)` once the name is known, else the address alone.
    pub fn label(&self, ip: IpAddr) -> String {
        let Some(cache) = &self.cache else {
            return ip.to_string();
        };
        let mut known = cache.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(&ip) {
            Some(Some(name)) => format!("{ip} ({name})"),
            Some(None) => ip.to_string(),
            None => {
                // Remember the lookup is running, so a burst of knocks starts only one.
                known.insert(ip, None);
                let cache = Arc::clone(cache);
                std::thread::spawn(move || {
                    if let Some(name) = reverse(ip) {
                        cache
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(ip, Some(name));
                    }
                });
                ip.to_string()
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
}
