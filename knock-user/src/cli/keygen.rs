//! `knock-user keygen`: a fresh SPA client key (a key file line), or a rotating-sequence secret
//! (a secret file), drawn from the kernel's random source; written to a new file of mode 0600
//! (`-o`), and for a client in one step with the saved host that uses it (`--save-host`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::hosts::{self, SavedHost};

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

/// Prints a key or secret, or writes it to `output`: a new file of mode 0600, never one that is
/// there already.
pub fn emit(text: &str, output: Option<&Path>) -> anyhow::Result<()> {
    match output {
        Some(path) => Ok(hosts::write_new_private(path, text)?),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Saves `key` for the client of `host` in one step: the key file (`output`, else `NAME.key`
/// beside the hosts file), mode 0600, and the host's section in the hosts file (`hosts_file`,
/// else `~/.config/knock/hosts`). Returns the key file's path.
pub fn save_host(
    key: &ClientKey,
    host: &SavedHost,
    output: Option<&Path>,
    hosts_file: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let hosts_file = hosts_file
        .or_else(hosts::file)
        .context("HOME is not set: give --hosts FILE")?;
    if hosts::load(&hosts_file)?
        .iter()
        .any(|h| h.name == host.name)
    {
        anyhow::bail!(
            "{}: host `{}` is saved already; choose another name, or remove its section first",
            hosts_file.display(),
            host.name
        );
    }
    let dir = hosts_file.parent().unwrap_or(Path::new("."));
    let key_file = output.map_or_else(|| dir.join(format!("{}.key", host.name)), Path::to_path_buf);
    if let Some(parent) = key_file.parent() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot make {}", parent.display()))?;
    }
    hosts::write_new_private(&key_file, &format!("{}\n", key.line()))?;
    // Beside the hosts file, the section names the key file by its name alone.
    let named = match key_file.strip_prefix(dir) {
        Ok(relative) if key_file.parent() == Some(dir) => relative.display().to_string(),
        _ => std::path::absolute(&key_file)
            .unwrap_or_else(|_| key_file.clone())
            .display()
            .to_string(),
    };
    hosts::append_private(&hosts_file, &hosts::section(host, &named))?;
    Ok(key_file)
}

/// What `keygen --save-host` says on stderr before the key line it prints.
pub fn saved_note(key_file: &Path, name: &str) -> String {
    format!(
        "wrote {} (mode 0600) and [{name}] in the saved hosts: `knock-user spa {name}` opens the \
         door once the server has this line in its SPA_Keys file:",
        key_file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_host_is_ready_for_spa_in_one_step() {
        let dir = std::env::temp_dir().join(format!("knock-keygen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hosts_file = dir.join("knock/hosts");
        let key = client_key(Some(7), "laptop").unwrap();
        let host = SavedHost {
            name: "myserver".into(),
            host: "198.51.100.1".into(),
            door: "openSSH".into(),
            source: Some(hosts::Source::Auto),
            ..SavedHost::default()
        };
        let key_file = save_host(&key, &host, None, Some(hosts_file.clone())).unwrap();
        let again = save_host(&key, &host, None, Some(hosts_file.clone())).unwrap_err();
        let saved = hosts::load(&hosts_file).unwrap();
        let keys = crate::config::keys::load(&key_file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(key_file, dir.join("knock/myserver.key"));
        assert_eq!(
            keys.iter().map(|k| (k.id, k.key)).collect::<Vec<_>>(),
            [(key.id, key.key)]
        );
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].key_file.as_deref(), Some(key_file.as_path()));
        assert_eq!(saved[0].source, Some(hosts::Source::Auto));
        assert!(
            again
                .to_string()
                .contains("host `myserver` is saved already"),
            "{again}"
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = client_key(None, "").unwrap();
        let b = client_key(None, "").unwrap();
        assert_ne!(a.key, b.key);
    }
}
