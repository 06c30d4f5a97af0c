//! The commands besides the daemon: the clients (`knock`, `spa`, `keygen`, with saved hosts and
//! STUN) and the operator commands (`check`, `status`, `stop`, `confirm`, `unban`,
//! `generate-manuals`). `main.rs` parses the command line and calls these.

pub mod check;
pub mod confirm;
pub mod hosts;
pub mod interfaces;
pub mod keygen;
pub mod knock;
pub mod manuals;
pub mod spa;
pub mod status;
pub mod stop;
pub mod stun;
pub mod unban;

use std::time::Duration;

/// A duration on the command line: seconds, or a number with `s`, `m` or `h` (`90s`, `10m`).
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (such as 90s, 10m or 1h)"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        _ => {
            return Err(format!(
                "`{text}` is not a duration (such as 90s, 10m or 1h)"
            ));
        }
    };
    if seconds == 0 {
        return Err("a duration of zero".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "m", "10x", "-5", "0", "1.5m"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
