//! The in-kernel sender that needs no live frames: a tc (BPF_PROG_TYPE_SCHED_CLS) program run
//! by BPF_PROG_TEST_RUN with a large `repeat`, which stamps the run's skb and hands clones of it
//! to `bpf_clone_redirect`, egress of the client's veth: `dev_queue_xmit`, the veth's
//! `ndo_start_xmit`, and the server's XDP program in the peer's NAPI poll, as from a real sender.
//!
//! How the kernel builds the run's skb (net/bpf/test_run.c, `bpf_prog_test_run_skb`): the frame
//! is copied into a fresh skb whose device is the loopback of the caller's network namespace
//! (no `ctx_in`), `eth_type_trans` sets the protocol and the mac header, and for a tc program
//! the Ethernet header is pushed back, so the program sees the whole frame. The same skb is
//! used for every repetition, and each repetition runs between `local_bh_disable` and
//! `local_bh_enable`: the veth's NAPI poll, scheduled by the clones, runs on this CPU right
//! after each repetition, so the sender's thread pays the receiving side too.
//! `bpf_clone_redirect` (net/core/filter.c) looks the target up in the skb's device's namespace,
//! checks that a link-layer header is carried (`__bpf_redirect_common`), and without
//! `BPF_F_INGRESS` transmits with `dev_queue_xmit`: the caller must be in the client's namespace.
//!
//! The counter lives in the frame itself (the skb outlives the repetitions): each clone's
//! source is the previous one's plus one, stamped as [`crate::stamp`] does. A clone shares its
//! data with the skb until the receiver lets it go, so the program writes with
//! `bpf_skb_store_bytes`, which copies the data first when it is still shared (direct writes
//! would change frames already handed over).

use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};

use crate::live::{BPF_PROG_TEST_RUN, bpf, fd, insn, load};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// Helper numbers (include/uapi/linux/bpf.h).
const MAP_LOOKUP_ELEM: i32 = 1;
const SKB_STORE_BYTES: i32 = 9;
const CLONE_REDIRECT: i32 = 13;
const SKB_LOAD_BYTES: i32 = 26;
/// Where the stamp goes: bytes 8..16 of the IPv6 source address.
const STAMP: i32 = 14 + 8 + 8;
/// The most clones one repetition makes: the veth's ring holds 256 frames between two NAPI
/// polls, and the verifier walks every clone.
pub const MAX_CLONES: u32 = 64;

/// A loaded cloning program, bound to one interface of the namespace it is run in.
pub struct CloneRedirect {
    program: OwnedFd,
    /// One u64: the clones `bpf_clone_redirect` took (answered 0 for), over every run.
    taken: OwnedFd,
    clones: u32,
}

impl CloneRedirect {
    /// Loads the program: each repetition makes `clones` (1 to [`MAX_CLONES`]) clones, each
    /// from the next source, out of `ifindex`. Out, not in: `BPF_F_INGRESS` would hand the
    /// clones to the client veth's own receive path, and the server would see none.
    pub fn load(ifindex: u32, clones: u32) -> io::Result<Self> {
        if !(1..=MAX_CLONES).contains(&clones) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("clones per run must be 1 to {MAX_CLONES}, not {clones}"),
            ));
        }
        let mut attr = [0u64; 16];
        // map_type, key_size; value_size, max_entries.
        attr[0] = u64::from(BPF_MAP_TYPE_ARRAY) | (4 << 32);
        attr[1] = 8 | (1 << 32);
        let taken = fd(bpf(BPF_MAP_CREATE, &mut attr)?);
        let program = load(
            BPF_PROG_TYPE_SCHED_CLS,
            &instructions(ifindex as i32, clones, taken.as_raw_fd()),
            "the clone-redirect sender",
        )?;
        Ok(Self {
            program,
            taken,
            clones,
        })
    }

    /// The clones the kernel took so far: `bpf_clone_redirect` answered 0 (a veth whose peer's
    /// ring is full answers an error and frees the clone).
    pub fn taken(&self) -> io::Result<u64> {
        let (key, mut value) = (0u32, 0u64);
        let mut attr = [0u64; 16];
        attr[0] = self.taken.as_raw_fd() as u64;
        attr[1] = (&raw const key) as u64;
        attr[2] = (&raw mut value) as u64;
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
        Ok(value)
    }

    pub const fn clones(&self) -> u32 {
        self.clones
    }

    /// Runs the program `runs` times on `frame` (an untagged IPv6 frame, stamped with the source
    /// before the first clone's): `runs * clones` clones, numbered on from that stamp. The
    /// receiver counts what arrived; [`Self::taken`] what the kernel took.
    pub fn send(&self, frame: &[u8], runs: u32) -> io::Result<()> {
        let mut attr = [0u64; 16];
        // prog_fd, retval; data_size_in, data_size_out; data_in; data_out; repeat, duration.
        // No ctx_in: the skb's device is the namespace's loopback, which only says where the
        // target's index is looked up.
        attr[0] = self.program.as_raw_fd() as u64;
        attr[1] = frame.len() as u64;
        attr[2] = frame.as_ptr() as u64;
        attr[4] = u64::from(runs.max(1));
        bpf(BPF_PROG_TEST_RUN, &mut attr)
            .map(drop)
            .map_err(|error| io::Error::new(error.kind(), format!("clone redirect: {error}")))
    }
}

/// The program. r6 holds the skb, r7 the source number, r8 the clones taken in this run (added
/// to the map `taken` at the end, and the run's return value), fp-8..fp the stamp being
/// written, fp-12 the map's key.
fn instructions(ifindex: i32, clones: u32, taken: i32) -> Vec<u64> {
    let mut program = vec![
        insn(0xbf, 6, 1, 0, 0),     // r6 = skb
        insn(0xb7, 8, 0, 0, 0),     // r8 = 0
        insn(0xbf, 1, 6, 0, 0),     // r1 = skb
        insn(0xb7, 2, 0, 0, STAMP), // r2 = offset of the stamp
        insn(0xbf, 3, 10, 0, 0),    // r3 = fp
        insn(0x07, 3, 0, 0, -8),    // r3 = fp - 8
        insn(0xb7, 4, 0, 0, 4),     // r4 = 4 bytes
        insn(0x85, 0, 0, 0, SKB_LOAD_BYTES),
        insn(0x55, 0, 0, 0, 0),   // if r0 != 0: out (patched below)
        insn(0x61, 7, 10, -8, 0), // r7 = the stamp's first word, as on the wire
        insn(0xdc, 7, 0, 0, 32),  // r7 = be32(r7): the number
    ];
    let mut to_out = vec![program.len() - 3];
    for _ in 0..clones {
        program.extend([
            insn(0x04, 7, 0, 0, 1),     // w7 += 1
            insn(0xbf, 1, 7, 0, 0),     // r1 = n
            insn(0xdc, 1, 0, 0, 32),    // r1 = be32(n)
            insn(0x63, 10, 1, -8, 0),   // stamp[0..4] = n
            insn(0xa4, 1, 0, 0, -1),    // w1 = !n (bytewise, so order does not matter)
            insn(0x63, 10, 1, -4, 0),   // stamp[4..8] = !n
            insn(0xbf, 1, 6, 0, 0),     // r1 = skb
            insn(0xb7, 2, 0, 0, STAMP), // r2 = offset
            insn(0xbf, 3, 10, 0, 0),    // r3 = fp
            insn(0x07, 3, 0, 0, -8),    // r3 = fp - 8
            insn(0xb7, 4, 0, 0, 8),     // r4 = 8 bytes
            insn(0xb7, 5, 0, 0, 0),     // r5 = no flags
            insn(0x85, 0, 0, 0, SKB_STORE_BYTES),
            insn(0x55, 0, 0, 0, 0),       // if r0 != 0: out (patched below)
            insn(0xbf, 1, 6, 0, 0),       // r1 = skb
            insn(0xb7, 2, 0, 0, ifindex), // r2 = target
            insn(0xb7, 3, 0, 0, 0),       // r3 = no flags: egress
            insn(0x85, 0, 0, 0, CLONE_REDIRECT),
            insn(0x55, 0, 0, 1, 0), // if r0 != 0: skip the count
            insn(0x07, 8, 0, 0, 1), // r8 += 1
        ]);
        to_out.push(program.len() - 7);
    }
    let out = program.len();
    program.extend([
        insn(0x62, 10, 0, -12, 0),            // key = 0
        insn(0x18, 1, 1, 0, taken),           // r1 = &taken (BPF_PSEUDO_MAP_FD)
        insn(0, 0, 0, 0, 0),                  //   (second half of the 64-bit load)
        insn(0xbf, 2, 10, 0, 0),              // r2 = fp
        insn(0x07, 2, 0, 0, -12),             // r2 = &key
        insn(0x85, 0, 0, 0, MAP_LOOKUP_ELEM), // r0 = &taken[0]
        insn(0x15, 0, 0, 1, 0),               // if !r0: skip the add
        insn(0xdb, 0, 8, 0, 0),               // lock *(u64 *)r0 += r8 (BPF_ATOMIC, BPF_ADD)
        insn(0xbf, 0, 8, 0, 0),               // r0 = clones taken
        insn(0x95, 0, 0, 0, 0),               // exit
    ]);
    for at in to_out {
        // A jump's offset counts from the next instruction; the offset field is bits 16..32.
        let offset = (out - at - 1) as u64;
        program[at] |= (offset & 0xffff) << 16;
    }
    program
}

#[cfg(test)]
mod tests {
    use super::{MAX_CLONES, instructions};

    #[test]
    fn every_early_exit_jumps_to_the_end_and_the_program_fits_the_verifier() {
        let program = instructions(7, MAX_CLONES, 3);
        let exit = program.len() - 10;
        let mut exits = 0;
        for (at, insn) in program.iter().enumerate() {
            // jne with an immediate of 0 and a non-zero offset past the last clone: an exit.
            if insn & 0xff == 0x55 && (insn >> 16) & 0xffff > 1 {
                assert_eq!(at + 1 + ((insn >> 16) & 0xffff) as usize, exit);
                exits += 1;
            }
        }
        assert_eq!(exits, 1 + MAX_CLONES as usize);
        assert!(program.len() < 4096);
    }
}
