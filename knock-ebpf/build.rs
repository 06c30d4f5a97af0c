//! Rebuilds the program when bpf-linker changes: cargo cannot see that undeclared dependency.
use which::which;

fn main() {
    match which("bpf-linker") {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        Err(err) => {
            println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask bootstrap`")
        }
    }
}
