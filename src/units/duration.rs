//! Durations as fwctl takes them. Two kinds, because the kernel limits only
//! one of them: a *timeout* becomes an ipset member's timeout and must fit
//! the kernel's limit; a *window* is a span of time fwctl looks back over
//! and has no such limit.

use super::Invalid;
use std::time::Duration;

/// The largest timeout the kernel's ipset takes, in seconds (about 24.8
/// days). ipset's own parser accepts up to 4294967, but the kernel refuses
/// anything above INT_MAX milliseconds: `ipset add ... timeout 2147484` fails.
pub const MAX_TIMEOUT: u64 = 2_147_483;
/// The longest window fwctl looks back over: ten years (a sanity bound).
pub const MAX_WINDOW: u64 = 10 * 365 * 86_400;

fn parse(s: &str) -> Result<Duration, Invalid> {
    humantime::parse_duration(s).map_err(|e| {
        Invalid(format!(
            "\"{s}\" is not a duration ({e}); write e.g. 90s, 30m, 2h or 1d"
        ))
    })
}

/// A ban's length in whole seconds: 1 s to [`MAX_TIMEOUT`].
pub fn parse_timeout(s: &str) -> Result<u64, Invalid> {
    let d = parse(s)?;
    let secs = d.as_secs();
    if secs == 0 {
        return Err(Invalid(format!("\"{s}\" is zero; give at least 1s")));
    }
    if d > Duration::from_secs(MAX_TIMEOUT) {
        return Err(Invalid(format!(
            "\"{s}\" is longer than the kernel's largest ipset timeout, {MAX_TIMEOUT}s (24d 20h); fix: give at most 24d (a longer ban belongs in the config's [blacklist])"
        )));
    }
    Ok(secs)
}

/// A span to look back over in whole seconds (a scan's --within, a capture
/// window): 1 s to ten years, not capped by ipset.
pub fn parse_window(s: &str) -> Result<u64, Invalid> {
    let d = parse(s)?;
    let secs = d.as_secs();
    if secs == 0 {
        return Err(Invalid(format!("\"{s}\" is zero; give at least 1s")));
    }
    if secs > MAX_WINDOW {
        return Err(Invalid(format!(
            "\"{s}\" is longer than ten years; fix: give a shorter window"
        )));
    }
    Ok(secs)
}

/// `apply --confirm`: 1 s to 1 h.
pub fn parse_confirm(s: &str) -> Result<Duration, Invalid> {
    let d = humantime::parse_duration(s).map_err(|e| {
        Invalid(format!(
            "\"{s}\" is not a duration ({e}); write e.g. 60s or 5m"
        ))
    })?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(Invalid(format!(
            "\"{s}\": the confirmation window must be between 1s and 1h"
        )));
    }
    Ok(d)
}

/// A duration as people read it, in its two largest units: `1d`, `2h 30m`,
/// `59m 59s`, `10s` (exact seconds are in every JSON document).
pub fn human(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    if secs == 0 {
        return "0s".into();
    }
    let mut left = secs;
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        if left >= size {
            parts.push(format!("{}{name}", left / size));
            left %= size;
        } else if !parts.is_empty() {
            // A zero unit between two others ends the reading: `1d 5m` is
            // `1d` (the minutes are noise next to a day).
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

/// `n` and the noun, singular or plural: "1 ban", "2 bans".
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_fit_the_kernels_limit() {
        assert_eq!(parse_timeout("90s"), Ok(90));
        assert_eq!(parse_timeout("1d"), Ok(86_400));
        assert_eq!(parse_timeout("2147483s"), Ok(MAX_TIMEOUT));
        assert_eq!(parse_timeout("24d"), Ok(24 * 86_400));
        // 30 days passed this check once and failed in the kernel.
        let e = parse_timeout("30d").unwrap_err();
        assert!(e.as_str().contains("2147483"), "{e}");
        for bad in ["0s", "2147484s", "4294967s", "25d", "soon", "-5m", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_are_not_timeouts() {
        assert_eq!(parse_window("30d"), Ok(30 * 86_400));
        assert_eq!(parse_window("90d"), Ok(90 * 86_400));
        assert!(parse_window("0s").is_err() && parse_window("11years").is_err());
    }

    #[test]
    fn durations_read_in_their_two_largest_units() {
        for (secs, want) in [
            (0, "0s"),
            (10, "10s"),
            (600, "10m"),
            (3599, "59m 59s"),
            (7200, "2h"),
            (9000, "2h 30m"),
            (86_400, "1d"),
            (86_399, "23h 59m"),
            (172_799, "1d 23h"),
            (86_700, "1d"),
            (604_800, "7d"),
        ] {
            assert_eq!(human(secs), want, "{secs}");
        }
        assert_eq!(count(1u32, "ban", "bans"), "1 ban");
        assert_eq!(count(0u32, "ban", "bans"), "0 bans");
    }

    #[test]
    fn confirm_windows() {
        assert_eq!(parse_confirm("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_confirm("0s").is_err() && parse_confirm("2h").is_err());
    }
}
