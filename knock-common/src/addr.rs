//! The 16-byte address used as a map key for both IP families.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address. IPv4 is stored mapped into IPv6 (`::ffff:a.b.c.d`) so that one map
/// keyed by `Addr` serves both families.
///
/// The sixteen bytes in network order, held as four words in the machine's byte order (each
/// word is the four bytes as they lie in memory). The kernel then moves, compares and hashes an
/// address with four 32-bit operations: as sixteen bytes the compiler carried it in sixteen
/// registers and put the words together again at every use.
#[repr(C, align(4))]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Addr {
    words: [u32; 4],
}
crate::assert_layout!(Addr, size = 16, align = 4);

/// The third word of an IPv4-mapped address: the bytes `0xff, 0xff` after two zero bytes.
const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

impl Addr {
    pub const UNSPECIFIED: Self = Self { words: [0; 4] };

    #[inline(always)]
    pub const fn from_ipv4(v4: [u8; 4]) -> Self {
        Self::from_ipv4_word(u32::from_ne_bytes(v4))
    }

    /// An IPv4 address from its four bytes as they lie in memory, read as one word.
    #[inline(always)]
    pub const fn from_ipv4_word(v4: u32) -> Self {
        Self {
            words: [0, 0, MAPPED, v4],
        }
    }

    #[inline(always)]
    pub const fn from_ipv6(octets: [u8; 16]) -> Self {
        let o = octets;
        Self::from_words([
            u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
            u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
            u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
            u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
        ])
    }

    /// An address from its sixteen bytes read as four words in the machine's byte order, as
    /// packet loads and the kernel's socket addresses give them.
    #[inline(always)]
    pub const fn from_words(words: [u32; 4]) -> Self {
        Self { words }
    }

    /// The four words: the address's bytes in network order, each word read in the machine's
    /// byte order (`u32::from_be` gives a word's numeric value).
    #[inline(always)]
    pub const fn words(&self) -> [u32; 4] {
        self.words
    }

    /// The sixteen bytes in network order.
    #[inline(always)]
    pub const fn octets(&self) -> [u8; 16] {
        let w = &self.words;
        let (a, b, c, d) = (
            w[0].to_ne_bytes(),
            w[1].to_ne_bytes(),
            w[2].to_ne_bytes(),
            w[3].to_ne_bytes(),
        );
        [
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1],
            d[2], d[3],
        ]
    }

    /// Equality word by word: cheap in the kernel and free of `memcmp`, which BPF lacks.
    #[inline(always)]
    pub fn same_as(&self, other: &Self) -> bool {
        let (a, b) = (&self.words, &other.words);
        (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
    }

    /// True for IPv4 addresses (stored IPv4-mapped).
    #[inline(always)]
    pub fn is_ipv4(&self) -> bool {
        let w = &self.words;
        // One comparison, no branch: each branch would be a path for the kernel's verifier.
        (w[0] | w[1] | (w[2] ^ MAPPED)) == 0
    }

    pub fn ip(&self) -> IpAddr {
        Ipv6Addr::from(self.octets()).to_canonical()
    }
}

/// Addresses order as their bytes do, in network order, whatever the machine's byte order.
impl Ord for Addr {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.octets().cmp(&other.octets())
    }
}

impl PartialOrd for Addr {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({})", Ipv6Addr::from(self.octets()))
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::from(v4),
            IpAddr::V6(v6) => Self::from(v6),
        }
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(v4: Ipv4Addr) -> Self {
        Self::from_ipv4(v4.octets())
    }
}

impl From<Ipv6Addr> for Addr {
    fn from(v6: Ipv6Addr) -> Self {
        Self::from_ipv6(v6.octets())
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn ipv4_is_stored_mapped_and_printed_plain() {
        let addr = Addr::from(Ipv4Addr::new(198, 51, 100, 2));
        assert!(addr.is_ipv4());
        assert_eq!(addr.to_string(), "198.51.100.2");
    }

    #[test]
    fn the_words_hold_the_bytes_in_network_order() {
        let addr = Addr::from(Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(
            addr.octets(),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2]
        );
        assert_eq!(u32::from_be(addr.words()[3]), 0xc633_6402);
        assert_eq!(
            addr,
            Addr::from_ipv4_word(u32::from_ne_bytes([198, 51, 100, 2]))
        );
        let v6 = Addr::from_ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
        assert_eq!(v6, Addr::from_words(v6.words()));
        assert_eq!(u32::from_be(v6.words()[0]), 0x2001_0db8);
    }

    #[test]
    fn addresses_order_as_their_bytes_do() {
        let low = Addr::from(Ipv4Addr::new(198, 51, 100, 2));
        let high = Addr::from(Ipv4Addr::new(203, 0, 113, 1));
        assert!(low < high);
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(low < Addr::from(v6));
    }

    #[test]
    fn equality_word_by_word_agrees_with_eq() {
        let a = Addr::from(Ipv4Addr::new(198, 51, 100, 2));
        let b = Addr::from(Ipv4Addr::new(198, 51, 100, 3));
        assert!(a.same_as(&a) && !a.same_as(&b));
        assert!(!a.same_as(&Addr::UNSPECIFIED));
    }

    #[test]
    fn ipv6_round_trips() {
        let ip: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let addr = Addr::from(ip);
        assert!(!addr.is_ipv4());
        assert_eq!(addr.ip(), IpAddr::V6(ip));
        assert_eq!(addr.to_string(), "2001:db8::2");
    }
}
