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
    let file = object::File::parse(knock_user::loader::PROGRAM_OBJECT).expect("an ELF object");
    let mut programs = 0;
    for section in file.sections() {
        let name = section.name().unwrap_or_default();
        if !name.starts_with("xdp") {
            continue;
        }
        programs += 1;
        let code = section.data().expect("the section's bytes");
        let calls = code.chunks_exact(8).filter(|i| is_subprogram_call(i)).count();
        assert_eq!(calls, 0, "section {name} makes {calls} BPF-to-BPF calls");
    }
    assert!(programs > 0, "no XDP section found");
}
