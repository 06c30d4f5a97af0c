//! Packet memory behind the classifier's one bounds-checked accessor.

use aya_ebpf::programs::XdpContext;
use knock_common::frame::FrameBytes;
use knock_common::reply::FrameWrite;

pub struct XdpFrame<'a> {
    ctx: &'a XdpContext,
}

impl<'a> XdpFrame<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a XdpContext) -> Self {
        Self { ctx }
    }
}

impl FrameBytes for XdpFrame<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.ctx.data();
        let end = self.ctx.data_end();
        if start + offset + N > end {
            return None;
        }
        // SAFETY: the N bytes at `offset` lie inside the packet, checked just above in the form
        // the verifier tracks.
        Some(unsafe { ((start + offset) as *const [u8; N]).read_unaligned() })
    }

    #[inline(always)]
    fn word(&self, offset: usize) -> Option<u32> {
        let start = self.ctx.data();
        if start + offset + 4 > self.ctx.data_end() {
            return None;
        }
        // SAFETY: the four bytes at `offset` lie inside the packet, checked just above; the
        // object is built for misaligned loads.
        Some(unsafe { ((start + offset) as *const u32).read_unaligned() })
    }

    #[inline(always)]
    fn length(&self) -> usize {
        self.ctx.data_end() - self.ctx.data()
    }

    /// Adds the zero rather than OR-ing it: `(value | zero) & mask` is what LLVM rewrites as
    /// `value | (zero & mask)` where it knows `value` fits the mask, and kernels before 6.x then
    /// lose the bound ("math between pkt pointer and register with unbounded min value", seen
    /// on 6.1 and 5.10); a sum with an unknown it cannot take apart.
    #[inline(always)]
    fn opaque(&self, value: usize) -> usize {
        value.wrapping_add(crate::maps::opaque_zero())
    }
}

impl FrameWrite for XdpFrame<'_> {
    #[inline(always)]
    fn put<const N: usize>(&mut self, offset: usize, bytes: [u8; N]) -> Option<()> {
        let start = self.ctx.data();
        let end = self.ctx.data_end();
        if start + offset + N > end {
            return None;
        }
        // SAFETY: the N bytes at `offset` lie inside the packet, checked just above in the form
        // the verifier tracks; XDP programs may write packet memory.
        unsafe { ((start + offset) as *mut [u8; N]).write_unaligned(bytes) };
        Some(())
    }
}
