//! Floods for the benchmarks: one frame, sent as fast as a sender can (or at a set rate), each
//! copy from a fresh IPv6 source address, bounded by time and by packet count.
//!
//! The source is the template's with its low 64 bits replaced by a counter `n` and its
//! complement `!n` (2001:db8:f100::/48 gives 2001:db8:f100:0:n:!n). The ones' complement sum of
//! `n` and `!n` is the same for every `n`, so the template's TCP checksum stays valid and no
//! sender has to recompute it: four billion distinct, well-formed sources.

use std::ffi::CString;
use std::io;
use std::time::{Duration, Instant};

use crate::Lab;
use crate::clone::CloneRedirect;
use crate::live::{DropAll, LiveFrames};
use crate::raw::Capture;
use crate::txring::TxRing;

/// Where the stamp starts in an untagged IPv6 frame: byte 8 of the source address.
const STAMP: usize = 14 + 8 + 8;

/// Frames per call of a sender between looks at the clock: 20 to 200 ms at the rates seen here.
const CHUNK: u64 = 65_536;

/// Clones per run of the clone-redirect sender: enough that the run's own cost (the test
/// run's loop, turning bottom halves back on) is spread thin, few enough for one NAPI poll.
pub const CLONES_PER_RUN: u32 = 16;

/// How a flood leaves the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// One sendto(2) per frame on an AF_PACKET socket, through the qdisc: the lab's old way.
    Sendto,
    /// An AF_PACKET TX ring (TPACKET_V2) with PACKET_QDISC_BYPASS: one send(2) per 1024 frames.
    TxRing,
    /// BPF_PROG_TEST_RUN in live-frames mode: an XDP program stamps and transmits copies of the
    /// frame in the kernel, `XDP_TX` into the veth's `ndo_xdp_xmit`.
    LiveFrames,
    /// BPF_PROG_TEST_RUN of a tc program: each run stamps the run's skb and hands `clones`
    /// clones of it to `bpf_clone_redirect`, out of the client's veth (see [`crate::clone`]).
    CloneRedirect { clones: u32 },
}

impl Sender {
    pub const ALL: [Self; 4] = [
        Self::Sendto,
        Self::TxRing,
        Self::LiveFrames,
        Self::CloneRedirect {
            clones: CLONES_PER_RUN,
        },
    ];

    pub fn name(self) -> String {
        match self {
            Self::Sendto => "AF_PACKET, sendto(2) per frame".to_owned(),
            Self::TxRing => "AF_PACKET TX ring, PACKET_QDISC_BYPASS".to_owned(),
            Self::LiveFrames => "BPF_PROG_TEST_RUN live frames, XDP_TX".to_owned(),
            Self::CloneRedirect { clones } => {
                format!("BPF_PROG_TEST_RUN of a tc program, bpf_clone_redirect x {clones} per run")
            }
        }
    }
}

/// What to send.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    pub sender: Sender,
    /// Packets per second offered; `None` for as fast as the sender goes.
    pub rate: Option<u64>,
    pub duration: Duration,
    pub max_packets: u64,
    /// Sending threads, each with its own socket (or program) and its own range of sources;
    /// the rate and the bound are shared out between them.
    pub threads: u32,
}

/// What a flood did: packets the sender handed to the interface (for live frames, to the
/// driver: the kernel does not say how many it took; for clone redirect, to
/// `bpf_clone_redirect`, which a full receiving ring refuses), and over how long.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flooded {
    pub offered: u64,
    pub seconds: f64,
}

/// Stamps source number `n` into an untagged IPv6 frame.
pub fn stamp(frame: &mut [u8], n: u32) {
    if let Some(bytes) = frame.get_mut(STAMP..STAMP + 8) {
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        bytes[4..].copy_from_slice(&(!n).to_be_bytes());
    }
}

impl Lab {
    /// Floods the server from the client's veth with copies of `template`, an untagged IPv6
    /// frame whose source address has zero low 64 bits, each from a fresh source (see the
    /// module). The Ethernet addresses are set to the pair's.
    pub fn flood_from_client(&self, template: &[u8], flood: Flood) -> io::Result<Flooded> {
        let v6 = template.get(12..14) == Some(&[0x86, 0xdd]);
        if !v6 || template.get(STAMP..STAMP + 8) != Some(&[0; 8]) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a flood template must be IPv6 with a source address whose low 64 bits are zero",
            ));
        }
        let mut frame = template.to_vec();
        frame[..6].copy_from_slice(&Self::mac(&self.server, &self.server_if)?);
        frame[6..12].copy_from_slice(&Self::mac(&self.client, &self.client_if)?);
        let threads = flood.threads.max(1);
        let share = Flood {
            rate: flood.rate.map(|rate| rate / u64::from(threads)),
            max_packets: flood.max_packets / u64::from(threads),
            ..flood
        };
        let senders: Vec<_> = (0..threads)
            .map(|thread| {
                let (iface, frame) = (self.client_if.clone(), frame.clone());
                let path = format!("/run/netns/{}", self.client.name());
                std::thread::spawn(move || -> io::Result<Flooded> {
                    let file = std::fs::File::open(&path)?;
                    // SAFETY: setns on a namespace file we hold open; it changes only this
                    // thread.
                    if unsafe {
                        libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                    } != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    // Each thread's sources start at its own quarter (or less) of the space.
                    run(&iface, &frame, share, thread << 28)
                })
            })
            .collect();
        let mut total = Flooded::default();
        for sender in senders {
            let done = sender
                .join()
                .map_err(|_| io::Error::other("a sending thread panicked"))??;
            total.offered += done.offered;
            total.seconds = total.seconds.max(done.seconds);
        }
        Ok(total)
    }

    /// Turns GRO on for the server's veth, so that it receives through NAPI even without an XDP
    /// program: a veth only accepts frames from `ndo_xdp_xmit` (the live-frames sender) when its
    /// peer polls with NAPI. knock's XDP program does the same for its side.
    pub fn server_napi(&self) -> io::Result<()> {
        let iface = self.server_if.clone();
        self.server.enter(move || set_gro(&iface))?
    }

    /// A capture on the server's veth, from inside the server's namespace, that holds `bytes`
    /// of frames not yet read (see [`Capture::hold`]): a burst read after it ends loses nothing.
    pub fn server_capture(&self, bytes: usize) -> io::Result<Capture> {
        let iface = self.server_if.clone();
        self.server.enter(move || {
            let capture = Capture::open(&iface)?;
            capture.hold(bytes)?;
            Ok(capture)
        })?
    }
}

impl Lab {
    /// Attaches an XDP program that drops every frame to the server's veth, until the returned
    /// value is dropped: the floor under any XDP gate.
    pub fn server_drop_all(&self) -> io::Result<DropAll> {
        let iface = self.server_if.clone();
        self.server.enter(move || {
            let name = CString::new(iface).map_err(io::Error::other)?;
            // SAFETY: if_nametoindex reads a valid C string.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                return Err(io::Error::last_os_error());
            }
            DropAll::attach(index)
        })?
    }
}

fn set_gro(iface: &str) -> io::Result<()> {
    const ETHTOOL_SGRO: u32 = 0x2c;
    // struct ethtool_value: cmd, data.
    crate::queues::ethtool(iface, &mut [ETHTOOL_SGRO, 1])
}

/// The sending loop, on a thread inside the client's namespace.
fn run(iface: &str, frame: &[u8], flood: Flood, first: u32) -> io::Result<Flooded> {
    let name = CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: if_nametoindex reads a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut sender = Open::new(flood.sender, iface, index, first)?;
    let started = Instant::now();
    let mut offered = 0u64;
    // Paced floods send what is due one millisecond ahead, then sleep; others go flat out in
    // chunks small enough to check the time often.
    while offered < flood.max_packets && started.elapsed() < flood.duration {
        let chunk = match flood.rate {
            Some(rate) => {
                let due = (rate as f64 * (started.elapsed().as_secs_f64() + 1e-3)) as u64;
                if due <= offered {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                due - offered
            }
            None => CHUNK,
        };
        // A sender that lags behind its rate catches up in chunks, checking the time between.
        let chunk = chunk.min(CHUNK);
        let chunk = chunk.min(flood.max_packets - offered);
        offered += sender.send(index, frame, chunk)?;
    }
    Ok(Flooded {
        offered,
        seconds: started.elapsed().as_secs_f64(),
    })
}

enum Open {
    Sendto { fd: i32, next: u32 },
    TxRing { ring: TxRing, next: u32 },
    Live(LiveFrames),
    Clone { sender: CloneRedirect, next: u32 },
}

impl Open {
    fn new(sender: Sender, iface: &str, index: u32, first: u32) -> io::Result<Self> {
        Ok(match sender {
            Sender::Sendto => {
                // SAFETY: plain socket(2), closed on drop.
                let fd = unsafe {
                    libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                Self::Sendto { fd, next: first }
            }
            Sender::TxRing => Self::TxRing {
                ring: TxRing::open(iface)?,
                next: first,
            },
            Sender::LiveFrames => Self::Live(LiveFrames::load(first)?),
            Sender::CloneRedirect { clones } => Self::Clone {
                sender: CloneRedirect::load(index, clones)?,
                next: first,
            },
        })
    }

    fn send(&mut self, index: u32, frame: &[u8], count: u64) -> io::Result<u64> {
        match self {
            Self::Sendto { fd, next } => {
                // SAFETY: an all-zero sockaddr_ll is valid; the fields set address the interface.
                let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                address.sll_family = libc::AF_PACKET as u16;
                address.sll_ifindex = index as i32;
                address.sll_halen = 6;
                let mut copy = frame.to_vec();
                let mut sent = 0;
                for _ in 0..count {
                    *next = next.wrapping_add(1);
                    stamp(&mut copy, *next);
                    // SAFETY: the buffer and address are valid for the stated lengths.
                    let rc = unsafe {
                        libc::sendto(
                            *fd,
                            copy.as_ptr().cast(),
                            copy.len(),
                            0,
                            (&raw const address).cast(),
                            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                        )
                    };
                    if rc >= 0 {
                        sent += 1;
                    }
                }
                Ok(sent)
            }
            Self::TxRing { ring, next } => {
                // Counts what the kernel sent; frames still in the ring when the flood ends
                // (at most one ring, 1024) are sent then and not counted.
                let mut sent = 0;
                let mut queued = 0;
                let mut progress = Instant::now();
                while sent < count {
                    let now = ring.send(frame, count - queued.min(count), &mut |data| {
                        queued += 1;
                        *next = next.wrapping_add(1);
                        stamp(data, *next);
                    })?;
                    if now > 0 {
                        progress = Instant::now();
                    } else if progress.elapsed() > Duration::from_secs(10) {
                        return Err(io::Error::other("the TX ring sent nothing for ten seconds"));
                    }
                    sent += now;
                }
                Ok(sent)
            }
            Self::Live(live) => {
                let count = u32::try_from(count).unwrap_or(u32::MAX);
                live.send(index, frame, count)?;
                Ok(u64::from(count))
            }
            Self::Clone { sender, next } => {
                // Whole runs only: a chunk smaller than one run still makes one, so a flood
                // may end up to a run's clones past its bound.
                let clones = u64::from(sender.clones());
                let runs = u32::try_from((count / clones).max(1)).unwrap_or(u32::MAX);
                let mut copy = frame.to_vec();
                stamp(&mut copy, *next);
                sender.send(&copy, runs)?;
                // Offered is what the program handed to bpf_clone_redirect; a veth whose
                // peer's ring is full refuses some, which shows as delivered < offered. None
                // taken ever (the first run always finds room) is a broken sender.
                if sender.taken()? == 0 {
                    return Err(io::Error::other(
                        "bpf_clone_redirect took none of the clones: the target refuses them",
                    ));
                }
                let sent = u64::from(runs) * clones;
                *next = next.wrapping_add(sent as u32);
                Ok(sent)
            }
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Self::Sendto { fd, .. } = self {
            // SAFETY: the socket opened in `new`.
            unsafe { libc::close(*fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stamp;

    fn sum(bytes: &[u8]) -> u32 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum
    }

    #[test]
    fn a_stamp_leaves_the_ones_complement_sum_alone_and_makes_a_new_source() {
        let mut frame = vec![0u8; 80];
        frame[22..26].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        frame[40] = 0x12;
        let before = sum(&frame);
        let mut sources = std::collections::HashSet::new();
        for n in [1, 2, 0xffff, 0x1_0000, 0xdead_beef, u32::MAX - 1] {
            stamp(&mut frame, n);
            // 0xffff and 0 are the same number in ones' complement.
            assert_eq!(sum(&frame) % 0xffff, before % 0xffff, "n = {n:#x}");
            assert!(sources.insert(frame[22..38].to_vec()));
            assert_eq!(
                &frame[22..26],
                &[0x20, 0x01, 0x0d, 0xb8],
                "stays in 2001:db8::/32"
            );
        }
    }
}
