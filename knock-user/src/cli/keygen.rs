//! `knock-user keygen`: a fresh SPA client key (a key file line), or a rotating-sequence secret
//! (a secret file), drawn from the kernel's random source.

use std::collections::BTreeSet;

use crate::config::keys::ClientKey;
use crate::config::rotate::{self, Secret};
use crate::system::random;

/// A fresh SPA client key; the id is random unless given.
pub fn client_key(id: Option<u32>, comment: &str) -> std::io::Result<ClientKey> {
    let mut bytes = [0u8; 20];
    random::fill(&mut bytes)?;
    let mut key = [0u8; 16];
    key.copy_from_slice(&bytes[..16]);
    let random_id = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    Ok(ClientKey {
        id: id.unwrap_or(random_id),
        key,
        comment: comment.to_owned(),
        ..ClientKey::default()
    })
}

/// A fresh rotating-sequence secret for `door`, whose sequences avoid the ports in `exclude`.
pub fn rotating_secret(door: &str, exclude: BTreeSet<u16>) -> std::io::Result<Secret> {
    let mut key = [0u8; 32];
    random::fill(&mut key)?;
    Ok(Secret::new(door, key, exclude))
}

/// The secret file text for `door`: sequences of `length` knocks in the port range `ports`
/// (`LOW-HIGH`), a new one every `period_s` seconds, avoiding the ports this host serves.
pub fn rotating_file(
    door: &str,
    period_s: u64,
    ports: &str,
    length: usize,
    served: BTreeSet<u16>,
) -> anyhow::Result<String> {
    let mut secret = rotating_secret(door, served)?;
    secret.period_s = period_s;
    secret.length = length;
    (secret.low, secret.high) =
        rotate::port_range(ports).map_err(|m| anyhow::anyhow!("--ports: {m}"))?;
    Ok(secret.to_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ() {
        let a = client_key(None, "").unwrap();
        let b = client_key(None, "").unwrap();
        assert_ne!(a.key, b.key);
    }
}
