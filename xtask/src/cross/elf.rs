//! What a built binary must be before it runs anywhere: its ELF header, ARM attributes, static
//! linking, and the BPF object inside it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, ensure};

use super::Target;
use crate::shell::output;

/// The embedded XDP object must be a 64-bit little-endian BPF ELF whatever the loader's CPU:
/// that is what aya-build makes from an arm or aarch64 target, and what every Pi's kernel runs.
pub fn bpf_object(binary: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(binary)?;
    let bpfel = bytes
        .windows(20)
        .skip(1)
        .any(|w| w.starts_with(b"\x7fELF\x02\x01") && w[18..20] == [247, 0]);
    ensure!(
        bpfel,
        "{} embeds no bpfel ELF object (ELF64, little endian, EM_BPF)",
        binary.display()
    );
    Ok(())
}

/// ELF class and machine, static linking, and for ARM the float ABI and architecture level.
pub fn header(target: Target, binary: &Path) -> anyhow::Result<()> {
    let readelf = |flag: &str| {
        output(Command::new("readelf").arg(flag).arg(binary))
            .with_context(|| format!("readelf {flag} {}", binary.display()))
    };
    let header = readelf("-h")?;
    let field = |name: &str| {
        header
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim().to_owned())
            .unwrap_or_default()
    };
    let (class, machine) = match target {
        Target::Aarch64 => ("ELF64", "AArch64"),
        Target::Armv7 | Target::Armv6 => ("ELF32", "ARM"),
        Target::X86_64 => ("ELF64", "Advanced Micro Devices X86-64"),
    };
    ensure!(
        field("Class") == class,
        "class {} is not {class}",
        field("Class")
    );
    ensure!(
        field("Machine") == machine,
        "machine {} is not {machine}",
        field("Machine")
    );
    let segments = readelf("-l")?;
    ensure!(
        !segments.contains("INTERP"),
        "{} asks for a dynamic loader: not static",
        binary.display()
    );
    let mut facts = vec![
        format!("{class} {machine}"),
        "static".to_owned(),
        "embeds bpfel".to_owned(),
    ];
    if matches!(target, Target::Armv7 | Target::Armv6) {
        let flags = field("Flags");
        ensure!(
            flags.contains("Version5 EABI") && flags.contains("hard-float ABI"),
            "ELF flags {flags:?}: not EABI5 hard-float"
        );
        let attributes = readelf("-A")?;
        let tag = |name: &str| {
            attributes
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_owned())
                .unwrap_or_default()
        };
        let arch = if target == Target::Armv6 { "v6" } else { "v7" };
        ensure!(
            tag("Tag_CPU_arch") == arch,
            "Tag_CPU_arch is {:?}, not {arch}",
            tag("Tag_CPU_arch")
        );
        ensure!(
            tag("Tag_ABI_VFP_args") == "VFP registers",
            "Tag_ABI_VFP_args is {:?}: not hard float",
            tag("Tag_ABI_VFP_args")
        );
        facts.push(format!("EABI5 hard-float, Tag_CPU_arch: {arch}"));
        facts.push(format!("FP {}", tag("Tag_FP_arch")));
    }
    eprintln!("  ok   ELF: {}", facts.join(", "));
    Ok(())
}
