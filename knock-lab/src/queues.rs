//! Receive queues for the floods: a veth is made with one queue pair in use (of as many as the
//! machine has possible CPUs), so every frame the client sends lands in one ring on the server's
//! end, drained by one NAPI instance, on one core at a time, whichever cores send. A NIC with
//! receive-side scaling spreads flows over one queue per core instead; this gives the lab's veth
//! pair the same shape.

use std::ffi::CString;
use std::io;

use crate::Lab;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

/// `struct ethtool_channels`: cmd, then max rx, tx, other, combined, then the counts in use.
const MAX_RX: usize = 1;
const MAX_TX: usize = 2;
const RX_COUNT: usize = 5;
const TX_COUNT: usize = 6;

impl Lab {
    /// Puts one queue per core in use on both ends of the veth pair (as many as the veth allows),
    /// and steers each core's transmissions on the client's end to its own queue (XPS), which
    /// the veth delivers to the server's receive queue of the same number: a sender on core N
    /// fills ring N, and the NAPI poll it schedules drains ring N on core N. Returns the number
    /// of queues. Call it before attaching an XDP program: with one attached the veth refuses
    /// some orders of changes.
    pub fn one_queue_per_core(&self) -> io::Result<u32> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mut queues = cores;
        for (netns, iface) in [
            (&self.server, &self.server_if),
            (&self.client, &self.client_if),
        ] {
            let iface = iface.clone();
            queues = netns.enter(move || -> io::Result<u32> {
                let mut channels = [0u32; 9];
                channels[0] = ETHTOOL_GCHANNELS;
                ethtool(&iface, &mut channels)?;
                let count = cores.min(channels[MAX_RX]).min(channels[MAX_TX]).max(1);
                channels[0] = ETHTOOL_SCHANNELS;
                channels[RX_COUNT] = count;
                channels[TX_COUNT] = count;
                ethtool(&iface, &mut channels)?;
                Ok(count)
            })??;
        }
        for queue in 0..queues {
            // `ip netns exec` mounts the namespace's own /sys for the command.
            let path = format!(
                "/sys/class/net/{}/queues/tx-{queue}/xps_cpus",
                self.client_if
            );
            let output = self
                .client
                .command("sh")
                .args(["-c", &format!("echo {} > {path}", cpu_mask(queue))])
                .output()?;
            if !output.status.success() {
                return Err(io::Error::other(format!(
                    "writing {path}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
        }
        Ok(queues)
    }
}

/// One SIOCETHTOOL request on `iface` in the calling thread's namespace; `data` starts with the
/// command and is read back as the kernel filled it.
pub(crate) fn ethtool(iface: &str, data: &mut [u32]) -> io::Result<()> {
    let name = CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: an all-zero ifreq is valid; the name fits (interface names are under 16 bytes).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
        *slot = *byte as libc::c_char;
    }
    request.ifr_ifru.ifru_data = data.as_mut_ptr().cast();
    // SAFETY: plain socket(2), closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCETHTOOL with an ifreq pointing at a request buffer that outlives the call and
    // is as large as the command's struct.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &raw mut request) };
    let error = io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 { Err(error) } else { Ok(()) }
}

/// The CPU mask holding only `cpu`, as sysfs reads one: 32-bit hex words, most significant
/// first, separated by commas.
fn cpu_mask(cpu: u32) -> String {
    let mut mask = format!("{:x}", 1u32 << (cpu % 32));
    for _ in 0..cpu / 32 {
        mask.push_str(",00000000");
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::cpu_mask;

    #[test]
    fn a_cpu_mask_names_one_cpu_in_sysfs_words() {
        assert_eq!(cpu_mask(0), "1");
        assert_eq!(cpu_mask(1), "2");
        assert_eq!(cpu_mask(31), "80000000");
        assert_eq!(cpu_mask(32), "1,00000000");
        assert_eq!(cpu_mask(65), "2,00000000,00000000");
    }
}
