//! The record of used single-use sequences on disk, as text: the tags the kernel claimed in its
//! `SPENT` map (see `plan::spent`) and when. `SPENT` lives in bpffs, which a reboot empties;
//! the daemon writes this record whenever the claims change and loads it back into `SPENT` at
//! start, so a one-time line whose file could not be marked stays used across a reboot too.
//! Pure: the daemon reads and writes the file.

use std::collections::BTreeMap;

use knock_common::spent::Tag;

const HEADER: &str = "# knock: single-use sequences the kernel claimed, kept so that a reboot \
                      cannot revive one.\n# One per line: the tag (hex) and when it was \
                      claimed (Unix seconds). Written by knock-user run; delete a line to let \
                      its sequence open once more.\n";

/// The record's text for `claims` (tag, Unix time of the claim).
pub fn format(claims: &BTreeMap<Tag, u64>) -> String {
    let mut text = HEADER.to_owned();
    for (tag, at) in claims {
        text.push_str(&format!("{tag:016x} {at}\n"));
    }
    text
}

/// The claims a record's text holds, and a message for each line that is not one.
pub fn parse(text: &str) -> (BTreeMap<Tag, u64>, Vec<String>) {
    let mut claims = BTreeMap::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let claim = match (words.next(), words.next(), words.next()) {
            (Some(tag), Some(at), None) => Tag::from_str_radix(tag, 16)
                .ok()
                .zip(at.parse::<u64>().ok()),
            _ => None,
        };
        match claim {
            Some((tag, at)) => {
                claims.insert(tag, at);
            }
            None => errors.push(format!(
                "line {}: `{line}` is not a tag and a time",
                index + 1
            )),
        }
    }
    (claims, errors)
}

/// When a claim made at `claimed_ns` on the monotonic clock happened, in Unix seconds.
pub fn to_unix_s(claimed_ns: u64, now_ns: u64, now_unix_s: u64) -> u64 {
    now_unix_s.saturating_sub(now_ns.saturating_sub(claimed_ns) / 1_000_000_000)
}

/// The monotonic time (ns) of a claim made at `at_unix_s`: in the past of this boot's clock,
/// never before its start.
pub fn to_monotonic_ns(at_unix_s: u64, now_ns: u64, now_unix_s: u64) -> u64 {
    now_ns.saturating_sub(
        now_unix_s
            .saturating_sub(at_unix_s)
            .saturating_mul(1_000_000_000),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let claims: BTreeMap<Tag, u64> = [(0x0123_4567_89ab_cdef, 1_733_500_000), (u64::MAX, 7)]
            .into_iter()
            .collect();
        let text = format(&claims);
        assert!(text.starts_with("# knock: "), "{text}");
        assert_eq!(parse(&text), (claims, Vec::new()));
    }

    #[test]
    fn a_line_that_is_not_a_claim_is_named_and_the_rest_kept() {
        let (claims, errors) = parse("# a comment\n\n00ff 12\nnonsense\n00aa 1 2\n00bb x\n");
        assert_eq!(claims, [(0xff, 12)].into_iter().collect());
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 4: `nonsense`"), "{errors:?}");
    }

    #[test]
    fn claim_times_move_between_the_clocks_and_never_before_boot() {
        let (now_ns, now_s) = (50_000_000_000, 1_000_000);
        assert_eq!(to_unix_s(40_000_000_000, now_ns, now_s), 999_990);
        assert_eq!(to_monotonic_ns(999_990, now_ns, now_s), 40_000_000_000);
        assert_eq!(
            to_monotonic_ns(1, now_ns, now_s),
            0,
            "a claim from before this boot"
        );
    }
}
