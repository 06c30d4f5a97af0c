//! Builds the XDP program with aya-build (nightly, bpfel) and leaves it in OUT_DIR, where
//! `loader.rs` embeds it with `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let root = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&root)
        .parent()
        .ok_or_else(|| anyhow!("knock-user has no parent directory"))?
        .join("knock-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    println!("cargo:rerun-if-changed={root}/../knock-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "knock-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
