//! What the host's own network stack puts into its answers and which ports it uses for its
//! own connections, as /proc/sys says (in the calling process's network namespace).

/// The values, or Linux's defaults for any that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// `net.ipv4.ip_default_ttl`.
    pub ttl: u8,
    /// `net.ipv6.conf.IFACE.hop_limit` of the interface asked about.
    pub hop_limit: u8,
    /// `net.ipv4.ip_local_port_range`, which IPv6 shares.
    pub ephemeral: (u16, u16),
}

/// Reads the values, the hop limit of `iface`.
pub fn read(iface: &str) -> Reading {
    let number = |path: &str, default: u8| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<u8>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| port_range(&text))
        .unwrap_or((32768, 60999));
    Reading {
        ttl: number("/proc/sys/net/ipv4/ip_default_ttl", 64),
        hop_limit: number(&format!("/proc/sys/net/ipv6/conf/{iface}/hop_limit"), 64),
        ephemeral,
    }
}

/// `ip_local_port_range`'s two numbers.
pub fn port_range(text: &str) -> Option<(u16, u16)> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let low = numbers.next()?.ok()?;
    let high = numbers.next()?.ok()?;
    (low <= high).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ephemeral_range_is_two_numbers() {
        assert_eq!(port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(port_range("60999 32768"), None);
        assert_eq!(port_range("x"), None);
    }

    #[test]
    fn this_host_has_values() {
        let reading = read("lo");
        assert!(reading.ttl > 0 && reading.hop_limit > 0);
        assert!(reading.ephemeral.0 <= reading.ephemeral.1);
    }
}
