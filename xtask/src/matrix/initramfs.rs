//! A cpio archive in the kernel's initramfs format ("newc"), written directly so that the host
//! needs no cpio tool.

const FILE: u32 = 0o100_000;
const DIR: u32 = 0o040_000;
const SYMLINK: u32 = 0o120_000;
const CHAR: u32 = 0o020_000;

#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    inode: u32,
}

impl Cpio {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, DIR | 0o755, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, FILE | mode, 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, SYMLINK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, CHAR | 0o600, 1, (major, minor), &[]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }

    fn entry(&mut self, path: &str, mode: u32, links: u32, rdev: (u32, u32), data: &[u8]) {
        self.inode += 1;
        let name = path.trim_start_matches('/');
        // The format has 32-bit sizes; nothing that goes into a test initramfs comes near that.
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            self.inode, mode, 0, 0, links, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_end_with_the_trailer() {
        let mut cpio = Cpio::default();
        cpio.dir("/bin");
        cpio.file("/init", 0o755, b"#!/bin/sh\n");
        cpio.symlink("/bin/sh", "busybox");
        let bytes = cpio.finish();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        // mode of the file entry, after magic, inode: 0o100755
        let second = bytes
            .windows(6)
            .enumerate()
            .filter(|(_, w)| w == b"070701")
            .nth(1)
            .map(|(i, _)| i);
        let second = second.expect("a second header");
        assert_eq!(&bytes[second + 14..second + 22], b"000081ed");
        let tail = b"TRAILER!!!\0";
        assert!(bytes.windows(tail.len()).any(|w| w == tail));
    }
}
