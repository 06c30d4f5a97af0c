//! The socket-lookup guard: the gate again, where the host's stack looks for a socket. When
//! the program lets a refused packet go on to the host (a datagram to a protected port, a SYN
//! whose reset only the stack can build exactly), this refuses it the socket it would find, so
//! the stack answers as it does for a closed port: a reset, an ICMP port unreachable with the
//! stack's own rate limits, identification numbers and flow labels. It judges every new
//! connection and datagram to a protected port, so it also stands behind the XDP gate.

use aya_ebpf::bindings::sk_action::{SK_DROP, SK_PASS};
use aya_ebpf::macros::sk_lookup;
use aya_ebpf::programs::SkLookupContext;
use knock_common::Addr;
use knock_common::counter::Counter;
use knock_common::ports::{self, GUARDED};
use knock_common::segment::{PROTO_TCP, PROTO_UDP};

use crate::gate;
use crate::maps::{PORTS, SETTINGS};
use crate::report::count;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sk_lookup]
#[inline(always)]
pub fn knock_guard(ctx: SkLookupContext) -> u32 {
    if admits(&ctx) { SK_PASS } else { SK_DROP }
}

#[inline(always)]
fn admits(ctx: &SkLookupContext) -> bool {
    let lookup = ctx.lookup;
    // Every field read up front, each with a load of its own size at a constant offset from
    // the context pointer: the verifier refuses a load through a context pointer the compiler
    // moved, as it may when the reads are spread over branches.
    // SAFETY: the context the kernel hands the program.
    let (family, protocol, local_port, remote4, remote6) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*lookup).family),
            core::ptr::read_volatile(&raw const (*lookup).protocol),
            core::ptr::read_volatile(&raw const (*lookup).local_port),
            core::ptr::read_volatile(&raw const (*lookup).remote_ip4),
            [
                core::ptr::read_volatile(&raw const (*lookup).remote_ip6[0]),
                core::ptr::read_volatile(&raw const (*lookup).remote_ip6[1]),
                core::ptr::read_volatile(&raw const (*lookup).remote_ip6[2]),
                core::ptr::read_volatile(&raw const (*lookup).remote_ip6[3]),
            ],
        )
    };
    let proto = match protocol {
        6 => PROTO_TCP,
        17 => PROTO_UDP,
        _ => return true,
    };
    let (word, shift) = ports::slot(proto, local_port as u16);
    let Some(word) = PORTS.get(word) else {
        return true;
    };
    let class = ports::class_in(*word, shift);
    // Guard group 0 is the stealth look's unserved ports: the XDP program's alone, so that a
    // service starting there is not refused by both until user space notices it.
    if class & GUARDED == 0 || ports::guard_group(class) == 0 {
        return true;
    }
    let Some(settings) = SETTINGS.get(0) else {
        return false;
    };
    let source = match family {
        // Both in network order, as words read in the machine's order: as `Addr` holds them.
        AF_INET => Addr::from_ipv4_word(remote4),
        AF_INET6 => Addr::from_words(remote6),
        _ => return true,
    };
    if gate::admits(source, class, settings, 0)
        || (settings.always_allowing() && gate::always_allowed(source))
    {
        return true;
    }
    count(Counter::GuardRefused);
    // Under `--observe` nothing is refused (admitted): the XDP gate has reported what it
    // would have done.
    settings.observing()
}
