//! Randomness for keys and nonces, from the kernel.

use std::io::Read as _;

pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
