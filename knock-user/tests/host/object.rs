//! Properties of the compiled XDP object that kernels care about, checked without loading it.

use object::{Object as _, ObjectSection as _};

/// A BPF-to-BPF call: opcode 0x85 with source register 1 (BPF_PSEUDO_CALL).
fn is_subprogram_call(instruction: &[u8]) -> bool {
    instruction[0] == 0x85 && instruction[1] >> 4 == 1
}

/// The 32-bit ARM JIT cannot compile BPF-to-BPF calls, and an interpreted program may not mix
/// them with the tail call to the SPA program: every function must be inlined (the compiler
/// turns large zeroing into calls to `memset` unless told otherwise).
#[test]
fn the_programs_make_no_bpf_to_bpf_calls() {
    assert_no_program_has("BPF-to-BPF calls", is_subprogram_call);
}

/// 64-bit division or modulo (`BPF_ALU64 | BPF_DIV/BPF_MOD`, immediate or register), or an
/// atomic read-modify-write.
fn is_beyond_arm32_jit(instruction: &[u8]) -> bool {
    matches!(instruction[0], 0x37 | 0x3f | 0x97 | 0x9f | 0xc3 | 0xdb)
}

/// Before 6.7 the 32-bit ARM JIT lacks 64-bit division and modulo, and kernels built with
/// `BPF_JIT_ALWAYS_ON` (Debian's armhf) then refuse the whole program with ENOTSUPP.
#[test]
fn the_programs_neither_divide_64_bit_numbers_nor_use_atomics() {
    assert_no_program_has("64-bit divisions or atomic operations", is_beyond_arm32_jit);
}

fn assert_no_program_has(what: &str, found: fn(&[u8]) -> bool) {
    let file = object::File::parse(knock_user::kernel::PROGRAM_OBJECT).expect("an ELF object");
    let mut programs = 0;
    for section in file.sections() {
        let name = section.name().unwrap_or_default();
        if !name.starts_with("xdp") {
            continue;
        }
        programs += 1;
        let code = section.data().expect("the section's bytes");
        let count = code.chunks_exact(8).filter(|i| found(i)).count();
        assert_eq!(count, 0, "section {name} has {count} {what}");
    }
    assert!(programs > 0, "no XDP section found");
}
