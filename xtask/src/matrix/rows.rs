//! The kernels the matrix boots: Debian's own, for the CPUs a Raspberry Pi has (and amd64).

use crate::cross::Target;

use super::vm::Board;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Name {
    #[value(name = "5.10-amd64")]
    Amd64V510,
    #[value(name = "6.1-amd64")]
    Amd64V61,
    #[value(name = "6.12-amd64")]
    Amd64V612,
    #[value(name = "5.10-arm64")]
    Arm64V510,
    #[value(name = "6.1-arm64")]
    Arm64V61,
    #[value(name = "6.12-arm64")]
    Arm64V612,
    #[value(name = "5.10-armhf")]
    ArmhfV510,
    #[value(name = "6.1-armhf")]
    ArmhfV61,
}

/// Where a row's packages come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Release {
    /// The Debian release the host's apt reads (12, bookworm, on the development machines).
    Host,
    /// Debian 11: 5.10, the kernel of Raspberry Pi OS bullseye (which also ran 5.15).
    Bullseye,
}

impl Release {
    /// The apt sources of a release other than the host's: (URI, suite, component).
    pub fn sources(self) -> Option<Vec<(String, String, String)>> {
        let source = |uri: &str, suite: &str| (uri.to_owned(), suite.to_owned(), "main".to_owned());
        match self {
            Self::Host => None,
            Self::Bullseye => Some(vec![
                source("http://deb.debian.org/debian", "bullseye"),
                source("http://deb.debian.org/debian-security", "bullseye-security"),
            ]),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Bullseye => "bullseye",
        }
    }
}

pub struct Row {
    pub id: Name,
    pub name: &'static str,
    /// Debian's architecture name.
    pub arch: &'static str,
    pub release: Release,
    /// The metapackage that names the current kernel of this series.
    pub meta: &'static str,
    pub series: &'static str,
    pub binary: Target,
    pub board: &'static Board,
}

const PC: Board = Board {
    qemu: "qemu-system-x86_64",
    machine: &[],
    console: "ttyS0",
    cpu: "max",
};
const VIRT64: Board = Board {
    qemu: "qemu-system-aarch64",
    machine: &["-machine", "virt"],
    console: "ttyAMA0",
    // A Pi 3's core.
    cpu: "cortex-a53",
};
const VIRT32: Board = Board {
    qemu: "qemu-system-arm",
    machine: &["-machine", "virt"],
    console: "ttyAMA0",
    // A Pi 2's core; Debian's armmp-lpae kernel needs LPAE, which it has.
    cpu: "cortex-a7",
};

const fn row(
    id: Name,
    name: &'static str,
    release: Release,
    meta: &'static str,
    series: &'static str,
) -> Row {
    let (arch, binary, board) = match id {
        Name::Amd64V510 | Name::Amd64V61 | Name::Amd64V612 => ("amd64", Target::X86_64, &PC),
        Name::Arm64V510 | Name::Arm64V61 | Name::Arm64V612 => ("arm64", Target::Aarch64, &VIRT64),
        // The ARMv6 binary: it is the one for every 32-bit Pi, and it runs on this v7 core.
        Name::ArmhfV510 | Name::ArmhfV61 => ("armhf", Target::Armv6, &VIRT32),
    };
    Row {
        id,
        name,
        arch,
        release,
        meta,
        series,
        binary,
        board,
    }
}

pub const ROWS: [Row; 8] = [
    row(
        Name::Amd64V510,
        "5.10-amd64",
        Release::Bullseye,
        "linux-image-amd64",
        "5.10.",
    ),
    row(
        Name::Amd64V61,
        "6.1-amd64",
        Release::Host,
        "linux-image-amd64",
        "6.1.",
    ),
    row(
        Name::Amd64V612,
        "6.12-amd64",
        Release::Host,
        "linux-image-6.12-amd64",
        "6.12.",
    ),
    row(
        Name::Arm64V510,
        "5.10-arm64",
        Release::Bullseye,
        "linux-image-arm64",
        "5.10.",
    ),
    row(
        Name::Arm64V61,
        "6.1-arm64",
        Release::Host,
        "linux-image-arm64",
        "6.1.",
    ),
    row(
        Name::Arm64V612,
        "6.12-arm64",
        Release::Host,
        "linux-image-6.12-arm64",
        "6.12.",
    ),
    row(
        Name::ArmhfV510,
        "5.10-armhf",
        Release::Bullseye,
        "linux-image-armmp-lpae",
        "5.10.",
    ),
    row(
        Name::ArmhfV61,
        "6.1-armhf",
        Release::Host,
        "linux-image-armmp-lpae",
        "6.1.",
    ),
];
