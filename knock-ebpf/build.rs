//! Rebuilds the program when bpf-linker changes: cargo cannot see that undeclared dependency.
use which::which;

fn main() {
    // Loads of two, four and eight bytes from any address, where LLVM would otherwise read
    // packet fields one byte at a time. The kernels knock runs on allow misaligned packet and
    // map accesses (HAVE_EFFICIENT_UNALIGNED_ACCESS: x86-64, arm64, and 32-bit ARM from ARMv6),
    // and the verifier still refuses misaligned stack accesses, which LLVM never emits.
    println!("cargo:rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
    match which("bpf-linker") {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        Err(err) => {
            println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask bootstrap`")
        }
    }
}
