//! The 16-byte address used as a map key for both IP families.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address. IPv4 is stored mapped into IPv6 (`::ffff:a.b.c.d`) so that one map
/// keyed by `Addr` serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub octets: [u8; 16],
}
crate::assert_layout!(Addr, size = 16, align = 1);

impl Addr {
    pub const UNSPECIFIED: Self = Self { octets: [0; 16] };

    #[inline(always)]
    pub const fn from_ipv4(v4: [u8; 4]) -> Self {
        Self {
            octets: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
            ],
        }
    }

    #[inline(always)]
    pub const fn from_ipv6(octets: [u8; 16]) -> Self {
        Self { octets }
    }

    /// Equality as two 64-bit words: cheap in the kernel and free of `memcmp`, which BPF lacks.
    #[inline(always)]
    pub fn same_as(&self, other: &Self) -> bool {
        let (a, b) = (self.halves(), other.halves());
        a.0 == b.0 && a.1 == b.1
    }

    #[inline(always)]
    fn halves(&self) -> (u64, u64) {
        let o = &self.octets;
        (
            u64::from_ne_bytes([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]),
            u64::from_ne_bytes([o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15]]),
        )
    }

    /// True for IPv4 addresses (stored IPv4-mapped).
    #[inline(always)]
    pub fn is_ipv4(&self) -> bool {
        let o = &self.octets;
        self.halves().0 == 0 && o[8] == 0 && o[9] == 0 && o[10] == 0xff && o[11] == 0xff
    }

    pub fn ip(&self) -> IpAddr {
        Ipv6Addr::from(self.octets).to_canonical()
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
    fn ipv6_round_trips() {
        let ip: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let addr = Addr::from(ip);
        assert!(!addr.is_ipv4());
        assert_eq!(addr.ip(), IpAddr::V6(ip));
        assert_eq!(addr.to_string(), "2001:db8::2");
    }
}
