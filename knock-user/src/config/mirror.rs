//! The syntax of the `Mirror`, `Mirror_Chain` and `Mirror_Table` keys: which firewall open
//! doors are mirrored into, and the names knock may own in it. What mirroring does is the
//! `mirror` stage's.

/// Which firewall the open doors are mirrored into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// ACCEPT rules in an iptables chain (ip6tables for IPv6 sources).
    Iptables,
    /// Elements with timeouts in the nftables sets `knock4` and `knock6`.
    Nftables,
    /// No mirroring (overrides `Mirror` in the configuration).
    None,
}

impl Backend {
    /// The value of the `Mirror` key.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "iptables" => Ok(Self::Iptables),
            "nftables" | "nft" => Ok(Self::Nftables),
            "none" | "no" | "off" => Ok(Self::None),
            _ => Err(format!(
                "`{value}` is not a firewall to mirror into; use iptables, nftables or none"
            )),
        }
    }
}

/// An iptables chain knock may own: a user chain, not a built-in one or a target.
pub fn check_chain(name: &str) -> Result<(), String> {
    const RESERVED: [&str; 9] = [
        "INPUT",
        "OUTPUT",
        "FORWARD",
        "PREROUTING",
        "POSTROUTING",
        "ACCEPT",
        "DROP",
        "RETURN",
        "QUEUE",
    ];
    if name.is_empty() || name.len() > 28 {
        return Err(format!("`{name}`: a chain name has 1 to 28 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "`{name}`: a chain name starts with a letter or digit and has only letters, digits, `_`, `-` and `.`"
        ));
    }
    if RESERVED.contains(&name.to_ascii_uppercase().as_str()) {
        return Err(format!(
            "`{name}` is built in; knock adds its rules to a chain of its own, which INPUT jumps to"
        ));
    }
    Ok(())
}

/// An nftables inet table name.
pub fn check_table(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "`{name}`: a table name starts with a letter and has only letters, digits and `_` (at most 64)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_and_table_names_are_checked() {
        assert!(check_chain("KNOCKD").is_ok());
        assert!(check_chain("knock-ssh.v2").is_ok());
        for bad in ["", "INPUT", "accept", "-A", "a b", "x".repeat(29).as_str()] {
            assert!(check_chain(bad).is_err(), "{bad}");
        }
        assert!(check_table("knock").is_ok());
        assert!(check_table("filter").is_ok());
        for bad in ["", "1t", "a b", "a;b", "a-b"] {
            assert!(check_table(bad).is_err(), "{bad}");
        }
    }
}
