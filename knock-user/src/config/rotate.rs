//! Rotating sequences: each period's sequence derives from a shared 256-bit secret with
//! HMAC-SHA256, so a sniffed sequence is worthless once its period is over (and, in the kernel,
//! once it has been used).
//!
//! Secret files are `key = value` lines, written by `knock-user keygen --rotating DOOR` on the
//! server and copied to the client:
//!
//! ```text
//! door    = openSSH
//! key     = <64 hex digits>
//! period  = 30
//! ports   = 10000-32767
//! length  = 3
//! exclude = 22, 80, 443
//! ```
//!
//! Derivation, for period number `n = floor(unix time / period)`: the blocks
//! HMAC-SHA256(key, "knock rotating sequence v1" 0x00 door 0x00 n(8 bytes, big-endian)
//! counter(4 bytes, big-endian)) for counter = 0, 1, ... give 32-bit big-endian numbers `x`;
//! with `span = high - low + 1`, numbers at or above `span * floor(2^32 / span)` are skipped (no
//! modulo bias), and `low + x mod span` is the next port unless excluded or already taken.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use hmac::{Hmac, Mac as _};
use knock_common::ProtoPort;
use sha2::Sha256;

use crate::config::keys::{hex, unhex};
use crate::config::{ConfigError, ErrorKind, value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    pub door: String,
    pub key: [u8; 32],
    pub period_s: u64,
    pub low: u16,
    pub high: u16,
    pub length: usize,
    pub exclude: BTreeSet<u16>,
    pub udp: bool,
}

pub const DEFAULT_PERIOD_S: u64 = 30;
/// Below Linux's ephemeral ports (`net.ipv4.ip_local_port_range`, 32768-60999 by default), so
/// that replies to the host's own connections and queries are never taken for knocks.
pub const DEFAULT_RANGE: (u16, u16) = (10_000, 32_767);
pub const DEFAULT_LENGTH: usize = 3;

impl Secret {
    /// A secret with the default period, range and length (`knock-user keygen --rotating`
    /// draws the key).
    pub fn new(door: &str, key: [u8; 32], exclude: BTreeSet<u16>) -> Self {
        Self {
            door: door.to_owned(),
            key,
            period_s: DEFAULT_PERIOD_S,
            low: DEFAULT_RANGE.0,
            high: DEFAULT_RANGE.1,
            length: DEFAULT_LENGTH,
            exclude,
            udp: false,
        }
    }

    /// The period number at a Unix time.
    pub fn period_at(&self, unix_s: u64) -> u64 {
        unix_s / self.period_s.max(1)
    }

    /// The sequence of period `n`.
    pub fn sequence(&self, n: u64) -> Vec<ProtoPort> {
        let span = u32::from(self.high - self.low) + 1;
        let limit = (u64::from(u32::MAX) + 1) / u64::from(span) * u64::from(span);
        let mut ports: Vec<u16> = Vec::with_capacity(self.length);
        let mut counter = 0u32;
        while ports.len() < self.length {
            for chunk in self.block(n, counter).chunks_exact(4) {
                let x = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                if u64::from(x) >= limit {
                    continue;
                }
                let port = self.low + (x % span) as u16;
                if !self.exclude.contains(&port)
                    && !ports.contains(&port)
                    && ports.len() < self.length
                {
                    ports.push(port);
                }
            }
            counter += 1;
        }
        ports
            .into_iter()
            .map(|p| {
                if self.udp {
                    ProtoPort::udp(p)
                } else {
                    ProtoPort::tcp(p)
                }
            })
            .collect()
    }

    fn block(&self, n: u64, counter: u32) -> [u8; 32] {
        // A 32-byte key is always a valid HMAC key.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"knock rotating sequence v1\0");
        mac.update(self.door.as_bytes());
        mac.update(b"\0");
        mac.update(&n.to_be_bytes());
        mac.update(&counter.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The file text for this secret.
    pub fn to_file(&self) -> String {
        let mut text = format!(
            "# knock rotating-sequence secret: copy to the client, keep private\ndoor = {}\nkey = {}\nperiod = {}\nports = {}-{}\nlength = {}\n",
            self.door,
            hex(&self.key),
            self.period_s,
            self.low,
            self.high,
            self.length
        );
        if !self.exclude.is_empty() {
            let list: Vec<String> = self.exclude.iter().map(u16::to_string).collect();
            let _ = writeln!(text, "exclude = {}", list.join(", "));
        }
        if self.udp {
            text.push_str("protocol = udp\n");
        }
        text
    }
}

/// A port range `LOW-HIGH`.
pub fn port_range(value: &str) -> Result<(u16, u16), String> {
    value
        .split_once('-')
        .and_then(|(l, h)| Some((l.trim().parse::<u16>().ok()?, h.trim().parse::<u16>().ok()?)))
        .filter(|(l, h)| *l >= 1 && l < h)
        .ok_or_else(|| format!("`{value}` is not a port range LOW-HIGH"))
}

pub fn load(path: &Path) -> Result<Secret, ConfigError> {
    parse(path, &crate::config::read(path)?)
}

pub fn parse(path: &Path, text: &str) -> Result<Secret, ConfigError> {
    let error = |line: usize, key: Option<&str>, message: String| ConfigError {
        path: path.to_owned(),
        line,
        key: key.map(str::to_owned),
        kind: ErrorKind::BadValue(message),
    };
    let (mut door, mut key) = (None, None);
    let mut secret = Secret {
        door: String::new(),
        key: [0; 32],
        period_s: DEFAULT_PERIOD_S,
        low: DEFAULT_RANGE.0,
        high: DEFAULT_RANGE.1,
        length: DEFAULT_LENGTH,
        exclude: BTreeSet::new(),
        udp: false,
    };
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(error(number, None, "a line without `=`".into()));
        };
        let (name, value) = (name.trim(), value.trim());
        let bad = |m: String| error(number, Some(name), m);
        match name.to_ascii_lowercase().as_str() {
            "door" => door = Some(value.to_owned()),
            "key" => key = Some(unhex::<32>(value).ok_or_else(|| bad("not 64 hex digits".into()))?),
            "period" => secret.period_s = value::seconds(value).map_err(bad)?.as_secs(),
            "ports" => (secret.low, secret.high) = port_range(value).map_err(bad)?,
            "length" => {
                secret.length = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=knock_common::MAX_STEPS).contains(n))
                    .ok_or_else(|| bad(format!("`{value}` is not a length from 1 to 32")))?;
            }
            "exclude" => {
                for item in value.split(',') {
                    secret
                        .exclude
                        .insert(value::proto_port(item).map_err(&bad)?.port);
                }
            }
            "protocol" => match value.to_ascii_lowercase().as_str() {
                "tcp" => secret.udp = false,
                "udp" => secret.udp = true,
                other => return Err(bad(format!("`{other}` is not tcp or udp"))),
            },
            other => return Err(error(number, Some(other), "unknown key".into())),
        }
    }
    secret.door = door.ok_or_else(|| error(0, Some("door"), "missing".into()))?;
    secret.key = key.ok_or_else(|| error(0, Some("key"), "missing".into()))?;
    let span = usize::from(secret.high - secret.low) + 1;
    let excluded = secret
        .exclude
        .iter()
        .filter(|p| (secret.low..=secret.high).contains(p))
        .count();
    if span - excluded < secret.length * 4 {
        return Err(error(
            0,
            Some("ports"),
            "the range leaves too few ports for the length".into(),
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests;
