//! Durations as fwctl takes them. Two kinds, because the kernel limits only
//! one of them: a *timeout* becomes an ipset member's timeout and must fit
//! the kernel's limit; a *window* is a span of time fwctl looks back over
//! and has no such limit.

use super::Invalid;
use std::time::Duration;

/// The largest timeout an ipset member takes, in seconds.
pub const MAX_TIMEOUT: u64 = 4_294_967;

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
            "\"{s}\" is longer than ipset's maximum timeout of {MAX_TIMEOUT}s (about 49 days)"
        )));
    }
    Ok(secs)
}

/// A span to look back over in whole seconds (a scan's --within, a capture
/// window).
pub fn parse_window(s: &str) -> Result<u64, Invalid> {
    parse_timeout(s)
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

/// A duration as people read it: `1h 59m 59s`.
pub fn human(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("90s"), Ok(90));
        assert_eq!(parse_timeout("1d"), Ok(86_400));
        assert_eq!(parse_timeout("4294967s"), Ok(MAX_TIMEOUT));
        for bad in ["0s", "4294968s", "50d", "soon", "-5m", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn confirm_windows() {
        assert_eq!(parse_confirm("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_confirm("0s").is_err() && parse_confirm("2h").is_err());
        assert_eq!(human(7200), "2h");
    }
}
