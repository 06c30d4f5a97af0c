//! Rewriting crafted TCP frames in flight (a source address, a port) with a correct checksum,
//! so that every implementation and the host's own stack see well-formed packets.

/// Where the IP header starts in the frames the benchmark crafts (no VLAN tags).
const L3: usize = 14;

/// Recomputes the TCP checksum of an untagged IPv4 or IPv6 frame without options or extension
/// headers, as `Craft` builds them.
pub fn fix_tcp_checksum(frame: &mut [u8]) {
    let v6 = frame.get(12..14) == Some(&[0x86, 0xdd]);
    let (l4, pseudo) = if v6 {
        let l4 = L3 + 40;
        let mut sum = words(&frame[L3 + 8..L3 + 40]);
        sum += (frame.len() - l4) as u32 + 6;
        (l4, sum)
    } else {
        let l4 = L3 + usize::from(frame[L3] & 0x0f) * 4;
        let mut sum = words(&frame[L3 + 12..L3 + 20]);
        sum += (frame.len() - l4) as u32 + 6;
        (l4, sum)
    };
    if frame.len() < l4 + 18 {
        return;
    }
    frame[l4 + 16] = 0;
    frame[l4 + 17] = 0;
    let mut sum = pseudo + words(&frame[l4..]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    frame[l4 + 16..l4 + 18].copy_from_slice(&checksum.to_be_bytes());
}

fn words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum()
}

/// Sets the TCP destination port of an untagged frame.
pub fn set_dport(frame: &mut [u8], port: u16) {
    let v6 = frame.get(12..14) == Some(&[0x86, 0xdd]);
    let l4 = if v6 {
        L3 + 40
    } else {
        L3 + usize::from(frame[L3] & 0x0f) * 4
    };
    frame[l4 + 2..l4 + 4].copy_from_slice(&port.to_be_bytes());
}

/// A random order of every port from 1 to 65535, the same for the same seed (xorshift64 and
/// Fisher-Yates: no dependency for a shuffle).
pub fn shuffled_ports(seed: u64) -> Vec<u16> {
    let mut ports: Vec<u16> = (1..=u16::MAX).collect();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..ports.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        ports.swap(i, j);
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use knock_common::craft::Craft;

    #[test]
    fn a_rewritten_frame_matches_a_freshly_crafted_one() {
        for (src, dst) in [
            ("198.51.100.2", "198.51.100.1"),
            ("2001:db8::2", "2001:db8::1"),
        ] {
            let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
            let mut frame = Craft::tcp(src, dst, 7000, 2).build();
            set_dport(&mut frame, 8000);
            fix_tcp_checksum(&mut frame);
            assert_eq!(frame, Craft::tcp(src, dst, 8000, 2).build());
        }
    }

    #[test]
    fn the_shuffle_holds_every_port_once() {
        let mut ports = shuffled_ports(3);
        assert_ne!(ports[..10], (1..=10).collect::<Vec<u16>>()[..]);
        ports.sort_unstable();
        assert_eq!(ports, (1..=u16::MAX).collect::<Vec<u16>>());
    }
}
