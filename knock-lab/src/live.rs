//! The in-kernel sender: BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES),
//! as xdp-trafficgen does. The kernel runs a tiny XDP program of ours on copies of one frame,
//! from a page pool, and every `XDP_TX` verdict transmits the frame out of the interface named
//! as the run's ingress, through the driver's `ndo_xdp_xmit`: no socket, no skb, no qdisc.
//!
//! The program is written here as BPF instructions (eleven lines of assembly do not deserve a
//! second eBPF crate and toolchain): it stamps a counter into the frame's IPv6 source address
//! (see [`crate::generator`]) and returns `XDP_TX`.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// BPF_PROG_TEST_RUN's flag for live frames (include/uapi/linux/bpf.h).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// The most frames the kernel takes per batch (TEST_XDP_MAX_BATCH).
const BATCH: u32 = 256;
const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
pub(crate) const BPF_PROG_TEST_RUN: i64 = 10;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// Where the counter goes: bytes 8..12 of the IPv6 source address (the frame's 30..34), and its
/// complement right after (34..38).
const STAMP: i16 = 14 + 8 + 8;

/// A loaded stamping program (which holds its counter map).
pub struct LiveFrames {
    program: OwnedFd,
}

/// One BPF instruction: opcode, registers, offset, immediate.
pub(crate) const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | (((dst | (src << 4)) as u64) << 8)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}

pub(crate) fn bpf(command: i64, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: bpf(2) with an attribute block of the stated size that outlives the call; every
    // pointer in it points at memory the caller keeps alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), size_of_val(attr)) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub(crate) fn fd(rc: i64) -> OwnedFd {
    // SAFETY: a descriptor bpf(2) just returned to us, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

/// Loads an XDP program given as instructions, with the verifier's log in the error.
fn load_xdp(program: &[u64], what: &str) -> io::Result<OwnedFd> {
    load(BPF_PROG_TYPE_XDP, program, what)
}

/// Loads a program of type `kind` given as instructions, with the verifier's log in the error.
/// The first attempt asks for no log: a verbose log of a long program fills any small buffer
/// (ENOSPC) even when the program is fine; only a refused program is loaded again for its log.
pub(crate) fn load(kind: u32, program: &[u64], what: &str) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = [0u64; 16];
    attr[0] = u64::from(kind) | ((program.len() as u64) << 32);
    attr[1] = program.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    let refused = match bpf(BPF_PROG_LOAD, &mut attr.clone()) {
        Ok(rc) => return Ok(fd(rc)),
        Err(error) => error,
    };
    let mut log = vec![0u8; 1 << 20];
    // log_level, log_size; log_buf.
    attr[3] = 1 | ((log.len() as u64) << 32);
    attr[4] = log.as_mut_ptr() as u64;
    let error = match bpf(BPF_PROG_LOAD, &mut attr) {
        // Loaded with a log after all: the first refusal was not the program's fault.
        Ok(rc) => return Ok(fd(rc)),
        Err(error) => error,
    };
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    // The verifier's last lines say why.
    let text = String::from_utf8_lossy(&log[..end]);
    let tail: Vec<&str> = text.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(io::Error::new(
        refused.kind(),
        format!("loading {what}: {error}: {}", tail.join("\n").trim()),
    ))
}

/// An XDP program that drops every frame, attached to an interface through a BPF link: the
/// floor under any XDP gate, what the driver and the way into XDP cost alone. Detached when
/// dropped (the link is this value's descriptor).
pub struct DropAll {
    _link: OwnedFd,
}

impl DropAll {
    /// Attaches to `ifindex` of the calling thread's namespace.
    pub fn attach(ifindex: u32) -> io::Result<Self> {
        const BPF_LINK_CREATE: i64 = 28;
        const BPF_XDP: u32 = 37;
        let program = load_xdp(
            &[insn(0xb7, 0, 0, 0, 1), insn(0x95, 0, 0, 0, 0)], // XDP_DROP; exit
            "the drop-all program",
        )?;
        let mut attr = [0u64; 16];
        // prog_fd, target_ifindex; attach_type, flags.
        attr[0] = program.as_raw_fd() as u64 | (u64::from(ifindex) << 32);
        attr[1] = u64::from(BPF_XDP);
        let link = bpf(BPF_LINK_CREATE, &mut attr).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("attaching the drop-all program: {error}"),
            )
        })?;
        Ok(Self { _link: fd(link) })
    }
}

impl LiveFrames {
    /// Loads the program; its counter starts at `first`.
    pub fn load(first: u32) -> io::Result<Self> {
        let mut attr = [0u64; 16];
        // map_type, key_size; value_size, max_entries.
        attr[0] = u64::from(BPF_MAP_TYPE_ARRAY) | (4 << 32);
        attr[1] = 4 | (1 << 32);
        let counter = fd(bpf(BPF_MAP_CREATE, &mut attr)?);
        let (key, value) = (0u32, first);
        let mut attr = [0u64; 16];
        attr[0] = counter.as_raw_fd() as u64;
        attr[1] = (&raw const key) as u64;
        attr[2] = (&raw const value) as u64;
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)?;

        let map = counter.as_raw_fd();
        let program: [u64; 23] = [
            insn(0xbf, 6, 1, 0, 0),         // r6 = ctx
            insn(0x61, 7, 6, 0, 0),         // r7 = ctx->data
            insn(0x61, 8, 6, 4, 0),         // r8 = ctx->data_end
            insn(0xbf, 1, 7, 0, 0),         // r1 = data
            insn(0x07, 1, 0, 0, 38),        // r1 += 38 (through the source address)
            insn(0x2d, 1, 8, 15, 0),        // if r1 > data_end: pass
            insn(0x62, 10, 0, -4, 0),       // key = 0
            insn(0x18, 1, 1, 0, map),       // r1 = &counter (BPF_PSEUDO_MAP_FD)
            insn(0, 0, 0, 0, 0),            //   (second half of the 64-bit load)
            insn(0xbf, 2, 10, 0, 0),        // r2 = fp
            insn(0x07, 2, 0, 0, -4),        // r2 = &key
            insn(0x85, 0, 0, 0, 1),         // call bpf_map_lookup_elem
            insn(0x15, 0, 0, 8, 0),         // if !r0: pass
            insn(0x61, 1, 0, 0, 0),         // r1 = *counter
            insn(0x07, 1, 0, 0, 1),         // r1 += 1
            insn(0x63, 0, 1, 0, 0),         // *counter = r1
            insn(0x63, 7, 1, STAMP, 0),     // source[8..12] = n
            insn(0xa4, 1, 0, 0, -1),        // r1 = !n (32 bits)
            insn(0x63, 7, 1, STAMP + 4, 0), // source[12..16] = !n
            insn(0xb7, 0, 0, 0, 3),         // XDP_TX
            insn(0x95, 0, 0, 0, 0),         // exit
            insn(0xb7, 0, 0, 0, 2),         // pass: XDP_PASS
            insn(0x95, 0, 0, 0, 0),         // exit
        ];
        let program = load_xdp(&program, "the live-frames sender")?;
        // The program holds the map now; its descriptor may go.
        drop(counter);
        Ok(Self { program })
    }

    /// Transmits `count` stamped copies of `frame` out of `ifindex` (of the calling thread's
    /// namespace). The kernel does not say how many the driver took; the receiver counts.
    pub fn send(&self, ifindex: u32, frame: &[u8], count: u32) -> io::Result<()> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
        let context: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let mut attr = [0u64; 16];
        // prog_fd, retval; data_size_in, data_size_out; data_in; data_out; repeat, duration;
        // ctx_size_in, ctx_size_out; ctx_in; ctx_out; flags, cpu; batch_size.
        attr[0] = self.program.as_raw_fd() as u64;
        attr[1] = frame.len() as u64;
        attr[2] = frame.as_ptr() as u64;
        attr[4] = u64::from(count);
        attr[5] = size_of_val(&context) as u64;
        attr[6] = context.as_ptr() as u64;
        attr[8] = u64::from(BPF_F_TEST_XDP_LIVE_FRAMES);
        attr[9] = u64::from(BATCH);
        bpf(BPF_PROG_TEST_RUN, &mut attr)
            .map(drop)
            .map_err(|error| io::Error::new(error.kind(), format!("live frames: {error}")))
    }
}
