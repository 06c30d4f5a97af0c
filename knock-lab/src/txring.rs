//! An AF_PACKET socket with a TPACKET_V2 transmit ring and PACKET_QDISC_BYPASS: frames are
//! written into shared memory and one send(2) hands the kernel a whole ring of them, straight to
//! the driver without the qdisc.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

const TPACKET_V2: i32 = 1;
const PACKET_VERSION: i32 = 10;
const PACKET_TX_RING: i32 = 13;
const PACKET_QDISC_BYPASS: i32 = 20;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
/// Frame slots: 2 KiB each, 1024 of them.
const FRAME: usize = 2048;
const FRAMES: usize = 1024;
/// Where a frame's data starts in its slot: after the aligned struct tpacket2_hdr.
const DATA: usize = 32;

pub struct TxRing {
    fd: OwnedFd,
    ring: *mut u8,
    /// The next slot to fill.
    next: usize,
    /// Frames handed to the kernel and not yet seen sent, oldest at `next - pending`.
    pending: usize,
}

// SAFETY: the ring is this value's own mapping; nothing else holds the pointer.
unsafe impl Send for TxRing {}

fn check(rc: i32) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl TxRing {
    /// Opens the ring on `iface` of the calling thread's namespace.
    pub fn open(iface: &str) -> io::Result<Self> {
        let name = CString::new(iface).map_err(io::Error::other)?;
        // SAFETY: if_nametoindex reads a valid C string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket(2), owned right below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        check(raw)?;
        // SAFETY: a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let set = |option: i32, value: *const libc::c_void, len: usize| {
            // SAFETY: the value is valid for `len` bytes during the call.
            check(unsafe {
                libc::setsockopt(raw, libc::SOL_PACKET, option, value, len as libc::socklen_t)
            })
        };
        let version = TPACKET_V2;
        set(PACKET_VERSION, (&raw const version).cast(), 4)?;
        let bypass = 1i32;
        set(PACKET_QDISC_BYPASS, (&raw const bypass).cast(), 4)?;
        // struct tpacket_req: block size, blocks, frame size, frames.
        let request: [u32; 4] = [
            (FRAME * 32) as u32,
            (FRAMES / 32) as u32,
            FRAME as u32,
            FRAMES as u32,
        ];
        set(PACKET_TX_RING, request.as_ptr().cast(), 16)?;
        // SAFETY: maps the ring the kernel just made for this socket; unmapped on drop.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FRAME * FRAMES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring = Self {
            fd,
            ring: ring.cast(),
            next: 0,
            pending: 0,
        };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set select the interface.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = index as i32;
        // SAFETY: a valid sockaddr_ll of the stated size.
        check(unsafe {
            libc::bind(
                raw,
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(ring)
    }

    /// Queues up to `count` frames (at most the ring's free slots), each `frame` rewritten by
    /// `shape`, has the kernel send what the ring holds, and returns how many frames it sent
    /// since the last call. A frame the receiver had no room for (ENOBUFS: a veth's ring is
    /// full) stays in the ring, and the next call sends it.
    pub fn send(
        &mut self,
        frame: &[u8],
        count: u64,
        shape: &mut impl FnMut(&mut [u8]),
    ) -> io::Result<u64> {
        if frame.len() > FRAME - DATA {
            return Err(io::Error::other("frame larger than a ring slot"));
        }
        let mut queued = 0u64;
        while queued < count && self.pending < FRAMES {
            let slot = self.slot(self.next);
            // SAFETY: `slot` is a frame slot of the mapping, free (pending < FRAMES), and
            // the kernel's tpacket2_hdr heads it: status at 0, length at 4; the status is
            // written last, after a fence, as the kernel reads it first.
            unsafe {
                let data = std::slice::from_raw_parts_mut(slot.add(DATA), frame.len());
                data.copy_from_slice(frame);
                shape(data);
                slot.add(4).cast::<u32>().write_volatile(frame.len() as u32);
                std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
                slot.cast::<u32>().write_volatile(TP_STATUS_SEND_REQUEST);
            }
            self.next = (self.next + 1) % FRAMES;
            self.pending += 1;
            queued += 1;
        }
        // SAFETY: send(2) with no buffer: the kernel takes the ring's requested frames.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, 0) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(error);
            }
            std::thread::yield_now();
        }
        Ok(self.reap())
    }

    /// Counts the oldest pending frames the kernel has sent (their slots are free again).
    fn reap(&mut self) -> u64 {
        let mut sent = 0;
        while self.pending > 0 {
            let oldest = (self.next + FRAMES - self.pending) % FRAMES;
            // SAFETY: the status word heads a slot of the mapping; the kernel writes it.
            let status = unsafe { self.slot(oldest).cast::<u32>().read_volatile() };
            if status != TP_STATUS_AVAILABLE {
                break;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            self.pending -= 1;
            sent += 1;
        }
        sent
    }

    fn slot(&self, index: usize) -> *mut u8 {
        // SAFETY: index < FRAMES, so the slot lies inside the mapping.
        unsafe { self.ring.add(index * FRAME) }
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in open, of the same length.
        unsafe { libc::munmap(self.ring.cast(), FRAME * FRAMES) };
    }
}
