//! The verifier's walk: every program loaded into this kernel, and how far its verifier walked
//! to accept it, held under a ceiling.

use knock_common::frame::Link;
use knock_user::kernel::{Capacities, Knock};

/// How many instructions the verifier of this machine's kernel may walk to accept each program
/// (the kernel's limit is 1,000,000). Older kernels walk more: Debian 12's 6.1 walked 601,861
/// for the main program when this kernel walked 240,088, so a walk that creeps up here is a
/// program that stops loading there. Raise a ceiling only with the reason in docs/kernels.md.
const CEILINGS: [(&str, u32); 6] = [
    (knock_common::PROGRAM, 115_000),
    (knock_common::IP_PROGRAM, 100_000),
    (knock_common::SPA_PROGRAM, 2_400),
    (knock_common::GATE_PROGRAM, 7_000),
    (knock_common::OPEN_PROGRAM, 2_500),
    (knock_common::GUARD_PROGRAM, 1_700),
];

/// Loads every program into this kernel and reads back how far its verifier walked.
#[test]
fn the_verifier_walks_each_program_within_its_ceiling() {
    let mut knock = Knock::load(
        Capacities {
            progress: 1024,
            gate: 256,
            reserve: 64,
        },
        false,
        None,
    )
    .expect("the programs load");
    knock
        .load_program(Link::Ip)
        .expect("the entry point for IP links loads");
    knock.load_guard().expect("the socket-lookup guard loads");
    let mut over = Vec::new();
    for (name, ceiling) in CEILINGS {
        let walked = knock
            .ebpf_mut()
            .program(name)
            .expect("the program")
            .info()
            .expect("its info")
            .verified_instruction_count()
            .expect("this kernel reports the verifier's walk (Linux 5.16 and later)");
        eprintln!("{name}: the verifier walked {walked} instructions (ceiling {ceiling})");
        if walked > ceiling {
            over.push(format!(
                "{name} walked {walked}, over its ceiling of {ceiling}"
            ));
        }
    }
    assert!(over.is_empty(), "{}", over.join("; "));
}
