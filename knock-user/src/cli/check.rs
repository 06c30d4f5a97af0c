//! `knock-user check`: validate a configuration and show what knock will do with it.

use std::fmt::Write as _;

use knock_common::ProgressRule;

use crate::config::{Config, Protection, advice};

/// `knock-user check`: validates the file at `path`, prints the effective doors (unless
/// `quiet`), then warns on stderr about what deserves a second look, where knock will behave
/// otherwise than knockd did with this file (`ipv4_only`: as with `run -4`), and an SSH session
/// that would not get back in.
pub fn run(
    path: &std::path::Path,
    quiet: bool,
    ipv4_only: bool,
    interfaces: &[String],
) -> anyhow::Result<()> {
    let config = crate::config::load(path)?;
    if !quiet {
        print!("{}", describe(&config));
    }
    let facts = advice::Facts {
        flushes: advice::flushes(&crate::system::cron::files()),
        ipv4_only,
    };
    let mut said = warnings(&config, &crate::system::served::ports());
    said.extend(unmarkable(&config));
    said.extend(advice::differences(&config, &facts));
    said.extend(
        std::env::var("SSH_CONNECTION")
            .ok()
            .and_then(|session| advice::lockout(&config, &session)),
    );
    let judged = crate::cli::interfaces::judge(interfaces, &config);
    said.extend(judged.warnings);
    for warning in said {
        eprintln!("warning: {warning}");
    }
    if !judged.errors.is_empty() {
        anyhow::bail!("{}", judged.errors.join("; "));
    }
    Ok(())
}

/// A human-readable summary of the effective doors.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} door(s)",
        config.path.display(),
        config.doors.len()
    );
    let options = &config.options;
    let _ = writeln!(
        out,
        "  options: syslog {}, log file {}, interface {}, progress for {} sources, gate for {} entries",
        if options.use_syslog { "on" } else { "off" },
        options
            .log_file
            .as_ref()
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
        if options.interfaces.is_empty() {
            "from the default route".to_owned()
        } else {
            options.interfaces.join(", ")
        },
        options.progress_capacity,
        options.gate_capacity,
    );
    if let Ok(Some(target)) = crate::mirror::choose(&Default::default(), options) {
        let _ = writeln!(
            out,
            "  mirror:  open doors are mirrored into the {target} (see docs/firewall-mirroring.md)"
        );
    }
    for door in &config.doors {
        let _ = writeln!(out, "[{}] (line {})", door.name, door.line);
        let steps: Vec<String> = door
            .sequence
            .iter()
            .map(|s| format!("{}:{}", s.port, s.proto_name()))
            .collect();
        if let Some(file) = &door.one_time_sequences {
            let _ = writeln!(out, "  one-time sequences: {}", file.display());
        }
        if let Some(secret) = &door.secret {
            let _ = writeln!(
                out,
                "  rotating:      {} knocks every {} s in {}-{} ({})",
                secret.length,
                secret.period_s,
                secret.low,
                secret.high,
                door.secret_file
                    .as_ref()
                    .map_or_else(String::new, |f| f.display().to_string())
            );
        }
        if door.spa {
            let _ = writeln!(
                out,
                "  SPA:           yes, on udp port {}, {}",
                config
                    .options
                    .spa_port
                    .unwrap_or(knock_common::spa::DEFAULT_PORT),
                spa_keys_of(config, &door.name)
            );
        }
        if !steps.is_empty() {
            let _ = writeln!(out, "  sequence:      {}", steps.join(", "));
        }
        let _ = writeln!(out, "  tcp flags:     {}", door.tcp_flags);
        let _ = writeln!(out, "  seq timeout:   {} s", door.seq_timeout.as_secs());
        let protect: Vec<String> = door
            .protect
            .iter()
            .map(|p| format!("{}:{}", p.port, p.proto_name()))
            .collect();
        let why = match door.protection {
            Protection::Given => "as Protect says",
            Protection::Derived => "read from the start command",
            Protection::Default => "knock's default (no Protect, no start command)",
            Protection::Unclear => {
                "knock's default: it cannot tell what the start command opens (set Protect)"
            }
            Protection::RemovesAccess => "",
        };
        let _ = if protect.is_empty() {
            writeln!(
                out,
                "  opens:         nothing ({})",
                if door.protection == Protection::RemovesAccess {
                    "the start command only takes access away, so under knockd this door \
                     opened nothing either"
                } else {
                    "Protect = none"
                }
            )
        } else {
            writeln!(
                out,
                "  opens:         {} for {} s (Cmd_Timeout), {why}",
                protect.join(", "),
                door.cmd_timeout.as_secs()
            )
        };
        let _ = writeln!(
            out,
            "  progress:      {}",
            match door.progress_rule() {
                ProgressRule::Strict => "strict (any other new connection or datagram resets)",
                ProgressRule::Knockd => "knockd (only ports of some sequence reset)",
            }
        );
        if let Some(target) = door.target {
            let _ = writeln!(out, "  target:        {target}");
        }
        for (label, command) in [
            ("start", &door.start_command),
            ("start (IPv6)", &door.start_command_6),
            ("stop", &door.stop_command),
            ("stop (IPv6)", &door.stop_command_6),
        ] {
            match command.as_deref() {
                Some("") => {
                    let _ = writeln!(out, "  {:<14} none (empty, as knockd)", format!("{label}:"));
                }
                Some(command) => {
                    let _ = writeln!(out, "  {:<14} {command}", format!("{label}:"));
                }
                None => {}
            }
        }
    }
    out
}

/// One-time files that cannot be written: their used lines stay unmarked. knock refuses them
/// anyway while its pinned state lasts, but a reboot or `knock-user stop` forgets that.
pub fn unmarkable(config: &Config) -> Vec<String> {
    config
        .doors
        .iter()
        .filter_map(|door| {
            let file = door.one_time_sequences.as_ref()?;
            let error = crate::config::onetime::writable(file).err()?;
            Some(format!(
                "[{}]: {} cannot be marked ({error}): a used line stays unmarked, and after a \
                 reboot or `knock-user stop` it would open again; make the file writable",
                door.name,
                file.display()
            ))
        })
        .collect()
}

/// Things that work but deserve a second look: a knock port that the host serves keeps serving,
/// so a port scan sees it open, and knocks on it only count; a one-time door with no sequence
/// left cannot open.
pub fn warnings(
    config: &Config,
    served: &std::collections::BTreeSet<knock_common::ProtoPort>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for door in &config.doors {
        for step in door.sequence.iter().filter(|s| served.contains(s)) {
            warnings.push(format!(
                "[{}]: knock port {}:{} is also a port this host serves; knocks on it count but pass through to the service",
                door.name,
                step.port,
                step.proto_name()
            ));
        }
        if let Some(secret) = &door.secret {
            for port in door.protect.iter().filter(|p| {
                (secret.low..=secret.high).contains(&p.port) && !secret.exclude.contains(&p.port)
            }) {
                warnings.push(format!(
                    "[{}]: the rotating range {}-{} includes protected port {} and does not exclude it",
                    door.name, secret.low, secret.high, port.port
                ));
            }
        }
        for (label, command, command_6) in [
            ("start", &door.start_command, &door.start_command_6),
            ("stop", &door.stop_command, &door.stop_command_6),
        ] {
            if let (Some(command), None) = (command, command_6)
                && ipv4_only_command(command)
            {
                warnings.push(format!(
                    "[{}]: the {label} command also runs for IPv6 knocks (there is no \
                     {}_Command_6, as in knockd), and `{command}` cannot take an IPv6 %IP%: \
                     add {}_Command_6 (ip6tables), or an empty `{}_Command_6 =` when knock's \
                     gate alone lets IPv6 knockers in",
                    door.name,
                    capitalized(label),
                    capitalized(label),
                    capitalized(label)
                ));
            }
        }
        if door.one_time_sequences.is_some() && door.sequence.is_empty() {
            warnings.push(format!(
                "[{}]: every one-time sequence is used; the door cannot open",
                door.name
            ));
        }
    }
    warnings
}

/// Whether a command with %IP% runs iptables (or iptables-legacy, -nft), which takes IPv4
/// addresses only.
fn ipv4_only_command(command: &str) -> bool {
    command.contains("%IP%")
        && command.split_whitespace().any(|word| {
            let program = word.rsplit('/').next().unwrap_or(word);
            program == "iptables" || program.starts_with("iptables-")
        })
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Which SPA keys open door `name`: a key line without a door list opens every SPA door.
fn spa_keys_of(config: &Config, name: &str) -> String {
    let opening: Vec<String> = config
        .spa_keys
        .iter()
        .filter(|k| k.doors.is_empty() || k.doors.iter().any(|d| d == name))
        .map(|k| {
            if k.doors.is_empty() {
                format!("{} (every SPA door)", k.id)
            } else {
                format!("{} (named)", k.id)
            }
        })
        .collect();
    let others = config.spa_keys.len() - opening.len();
    let mut said = if opening.is_empty() {
        "no key opens it".to_owned()
    } else {
        format!("keys {}", opening.join(", "))
    };
    if others > 0 {
        said.push_str(&format!("; {others} key(s) name other doors only"));
    }
    said
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::config::rotate::Secret;

    #[test]
    fn a_one_time_file_that_cannot_be_written_is_a_warning() {
        let mut config = crate::config::parse(Path::new("t"), "[d]\nsequence = 1\n").unwrap();
        // A directory opens for reading, never for writing, whoever asks.
        let dir = std::env::temp_dir();
        config.doors[0].one_time_sequences = Some(dir.clone());
        let warnings = unmarkable(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let expected = format!("{} cannot be marked", dir.display());
        assert!(warnings[0].contains(&expected), "{warnings:?}");
    }

    #[test]
    fn a_rotating_range_over_a_protected_port_is_a_warning() {
        let mut config =
            crate::config::parse(Path::new("t"), "[d]\nsequence = 1\nprotect = 20022\n").unwrap();
        let mut secret = Secret::new("d", [7; 32], BTreeSet::new());
        secret.low = 20_000;
        secret.high = 30_000;
        config.doors[0].secret = Some(secret);
        let warnings = warnings(&config, &BTreeSet::new());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("includes protected port 20022"));
    }

    #[test]
    fn an_iptables_command_without_an_ipv6_twin_is_a_warning() {
        let guide = "[openSSH]\nsequence = 7000,8000,9000\n\
            start_command = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n";
        let config = crate::config::parse(Path::new("t"), guide).unwrap();
        let said = warnings(&config, &BTreeSet::new());
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("[openSSH]: the start command also runs for IPv6 knocks"),
            "{}",
            said[0]
        );
        assert!(said[0].contains("add Start_Command_6 (ip6tables)"));

        let with_twin = format!(
            "{guide}start_command_6 = /sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n"
        );
        let config = crate::config::parse(Path::new("t"), &with_twin).unwrap();
        assert!(warnings(&config, &BTreeSet::new()).is_empty());
        for fine in [
            "ufw allow from %IP% to any port 22",
            "/usr/sbin/iptables -F KNOCKD",
            "/usr/sbin/ip6tables -A KNOCKD -s %IP% -j ACCEPT",
        ] {
            assert!(!ipv4_only_command(fine), "{fine}");
        }
        assert!(ipv4_only_command(
            "iptables-legacy -I INPUT -s %IP% -j ACCEPT"
        ));
    }

    #[test]
    fn a_configured_mirror_is_described() {
        let text = "[options]\nMirror = nftables\n[d]\nsequence = 1\n";
        let config = crate::config::parse(Path::new("t"), text).unwrap();
        assert!(
            describe(&config)
                .contains("  mirror:  open doors are mirrored into the nftables table inet knock"),
            "{}",
            describe(&config)
        );
        let plain = crate::config::parse(Path::new("t"), "[d]\nsequence = 1\n").unwrap();
        assert!(!describe(&plain).contains("mirror"));
    }

    #[test]
    fn check_says_which_keys_open_each_spa_door() {
        let dir = std::env::temp_dir().join(format!("knock-check-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = "00112233445566778899aabbccddeeff";
        std::fs::write(
            dir.join("keys"),
            format!("7 {key} laptop\n9 {key} doors=web phone\n"),
        )
        .unwrap();
        let file = dir.join("knockd.conf");
        std::fs::write(
            &file,
            "[options]\nSPA_Keys = keys\n[ssh]\nSPA = yes\n[web]\nSPA = yes\nProtect = 443\n",
        )
        .unwrap();
        let config = crate::config::load(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let text = describe(&config);
        assert!(
            text.contains("keys 7 (every SPA door); 1 key(s) name other doors only"),
            "{text}"
        );
        assert!(
            text.contains("keys 7 (every SPA door), 9 (named)"),
            "{text}"
        );
    }
}
