//! An XDP program that passes every frame and does nothing else: the baseline benchmarks measure
//! knock's cost against, loaded from the same object under the same conditions.

use aya_ebpf::bindings::xdp_action::XDP_PASS;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;

#[xdp]
pub fn knock_baseline(_ctx: XdpContext) -> u32 {
    XDP_PASS
}
