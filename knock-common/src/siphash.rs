//! SipHash-2-4 with a 128-bit output (Aumasson and Bernstein), the MAC of single-packet
//! authorization. Only additions, rotations and xors on 64-bit words: it fits the BPF
//! verifier without loops or tables, and the kernel runs exactly this code.

#[derive(Clone, Copy)]
struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    #[inline(always)]
    const fn new(k0: u64, k1: u64) -> Self {
        Self {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            // The 128-bit variant marks its initial state.
            v1: k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn absorb(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    #[inline(always)]
    fn finish(mut self) -> [u64; 2] {
        self.v2 ^= 0xee;
        for _ in 0..4 {
            self.round();
        }
        let first = self.v0 ^ self.v1 ^ self.v2 ^ self.v3;
        self.v1 ^= 0xdd;
        for _ in 0..4 {
            self.round();
        }
        [first, self.v0 ^ self.v1 ^ self.v2 ^ self.v3]
    }
}

/// The key as SipHash reads it: two little-endian words.
#[inline(always)]
pub const fn key_words(key: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_le_bytes([
            key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
        ]),
        u64::from_le_bytes([
            key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
        ]),
    )
}

/// SipHash-2-4-128 of a message of any length.
pub fn siphash128(key: &[u8; 16], message: &[u8]) -> [u8; 16] {
    let (k0, k1) = key_words(key);
    let mut state = State::new(k0, k1);
    let mut chunks = message.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state.absorb(u64::from_le_bytes(word));
    }
    let mut last = [0u8; 8];
    let tail = chunks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = message.len() as u8;
    state.absorb(u64::from_le_bytes(last));
    words_to_bytes(state.finish())
}

/// SipHash-2-4-128 of a message of exactly `N` little-endian words, unrolled for the kernel.
#[inline(always)]
pub fn siphash128_words<const N: usize>(k0: u64, k1: u64, words: &[u64; N]) -> [u64; 2] {
    let mut state = State::new(k0, k1);
    for word in words {
        state.absorb(*word);
    }
    // A message of whole words ends with a block holding only its length.
    state.absorb(((N * 8) as u64 & 0xff) << 56);
    state.finish()
}

pub fn words_to_bytes(words: [u64; 2]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&words[0].to_le_bytes());
    out[8..].copy_from_slice(&words[1].to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the reference implementation's test vectors: bytes 0 to 15.
    fn reference_key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    fn hex(bytes: &[u8]) -> std::string::String {
        use core::fmt::Write as _;
        bytes.iter().fold(std::string::String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// From vectors.h of the SipHash reference implementation (vectors_sip128): messages are
    /// bytes 0..n for n = 0, 1, 15 and 63.
    #[test]
    fn matches_the_reference_implementations_published_vectors() {
        let key = reference_key();
        let message: std::vec::Vec<u8> = (0..64).collect();
        for (len, expected) in [
            (0, "a3817f04ba25a8e66df67214c7550293"),
            (1, "da87c1d86b99af44347659119b22fc45"),
            (15, "5493e99933b0a8117e08ec0f97cfc3d9"),
            (63, "5150d1772f50834a503e069a973fbd7c"),
        ] {
            assert_eq!(
                hex(&siphash128(&key, &message[..len])),
                expected,
                "length {len}"
            );
        }
    }

    #[test]
    fn the_unrolled_word_form_agrees_with_the_byte_form() {
        let key = reference_key();
        let message: std::vec::Vec<u8> = (0..56).map(|i| (i * 7 + 3) as u8).collect();
        let mut words = [0u64; 7];
        for (word, chunk) in words.iter_mut().zip(message.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().unwrap());
        }
        let (k0, k1) = key_words(&key);
        assert_eq!(
            words_to_bytes(siphash128_words(k0, k1, &words)),
            siphash128(&key, &message)
        );
    }
}
