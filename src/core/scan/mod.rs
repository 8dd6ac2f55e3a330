//! The scan's core (pure): window counting over log lines, who gets banned,
//! and what the run says. The file reading is the system layer's part, the
//! command that ties it to the kernel's sets is `cmd::scan`.

pub mod abuse;
pub mod count;
pub mod decide;
pub mod report;
pub mod reputation;
pub mod sources;
mod table;

use crate::core::logline::Parser;
use crate::units::time::{utc, Zone};
use crate::units::Invalid;
use std::path::PathBuf;

/// What was read of one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileRead {
    pub path: PathBuf,
    /// The file's size when the run started.
    pub size: u64,
    /// The byte range read (the rest lies outside the window).
    pub from: u64,
    pub to: u64,
    /// The file changed under the reader (rotated with copytruncate): what
    /// was left of the window was read from the copy, if there was one.
    pub shrank: bool,
    /// When nothing of the file lies in the window: its first and last
    /// line's times (to say how far the window misses it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<i64>,
    /// What happened to it while it was read (a rotation), for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// "11 days", "5 hours", "20 minutes": how far apart two times are, rounded.
fn apart(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    let (n, one, many) = match secs {
        s if s >= 86_400 => ((s + 43_200) / 86_400, "day", "days"),
        s if s >= 3600 => ((s + 1800) / 3600, "hour", "hours"),
        s if s >= 60 => ((s + 30) / 60, "minute", "minutes"),
        s => (s, "second", "seconds"),
    };
    crate::units::duration::count(n, one, many)
}

/// What to say when the window misses the log altogether: it lies after the
/// log's last line (an old log read without --now) or before its first.
pub fn window_notes(files: &[FileRead], window: (i64, i64)) -> Vec<String> {
    if files.iter().any(|f| f.to > f.from) {
        return Vec::new();
    }
    let last = files.iter().filter_map(|f| f.last_time).max();
    let first = files.iter().filter_map(|f| f.first_time).min();
    let mut notes = Vec::new();
    match (first, last) {
        (_, Some(last)) if last < window.0 => notes.push(format!(
            "the log ends at {}, {} before the window; to audit an old log add --now {}",
            utc(last),
            apart(window.0 - last),
            utc(last)
        )),
        (Some(first), _) if first > window.1 => notes.push(format!(
            "the log starts at {}, {} after the window ends ({}); is --now too early?",
            utc(first),
            apart(first - window.1),
            utc(window.1)
        )),
        _ => {}
    }
    notes
}

/// `--now`: RFC 3339, or local wall-clock time without a zone.
pub fn parse_now(s: &str, zone: &Zone) -> Result<i64, Invalid> {
    let bad = || {
        Invalid(format!("--now \"{s}\" is not a timestamp; write e.g. 2026-11-21T10:30:00Z or \"2026-11-21 10:30:00\" (local time)"))
    };
    let mut p = Parser::new(&[], zone.clone(), 0, (0, 0));
    let t = s.trim();
    let b = t.as_bytes();
    let local = b.len() == 19 || b.len() == 16;
    if local && b.get(4) == Some(&b'-') && matches!(b.get(10), Some(b' ' | b'T')) {
        // Local time: read it as UTC, then shift by the zone's offset.
        let full = if b.len() == 16 {
            format!("{}:00", &t)
        } else {
            t.to_string()
        };
        let utc = p
            .timestamp(format!("{}T{}Z", &full[..10], &full[11..]).as_bytes())
            .ok_or_else(bad)?;
        return Ok(zone.to_utc(utc));
    }
    if b.len() >= 20 && b.get(10) == Some(&b'T') {
        return p.timestamp(b).ok_or_else(bad);
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_past_the_log_says_how_far_and_how_to_audit_it() {
        let f = |first, last| FileRead {
            path: "/ram/iptables.log".into(),
            size: 100,
            from: 100,
            to: 100,
            shrank: false,
            first_time: Some(first),
            last_time: Some(last),
            note: None,
        };
        let end = 1_795_262_400; // 2026-11-21T12:00:00Z
                                 // Today's 30-minute window, 2026-12-02T02:30Z to 03:00Z.
        let now = end + 10 * 86_400 + 15 * 3600;
        let n = window_notes(&[f(end - 3600, end)], (now - 1800, now));
        assert_eq!(
            n,
            ["the log ends at 2026-11-21T12:00:00Z, 11 days before the window; to audit an old log add --now 2026-11-21T12:00:00Z"]
        );
        let n = window_notes(&[f(end - 3600, end)], (end - 9000, end - 7200));
        assert!(
            n[0].starts_with("the log starts at 2026-11-21T11:00:00Z, 1 hour after"),
            "{n:?}"
        );
        // Anything read at all: nothing to say.
        let mut read = f(end - 3600, end);
        read.from = 0;
        assert!(window_notes(&[read], (now - 1800, now)).is_empty());
        assert_eq!(apart(59), "59 seconds");
        assert_eq!(apart(86_400), "1 day");
    }

    #[test]
    fn now_timestamps() {
        let z = Zone::fixed(3600);
        assert_eq!(parse_now("2026-11-21T12:00:00Z", &z), Ok(1_795_262_400));
        assert_eq!(
            parse_now("2026-11-21T13:00:00+01:00", &z),
            Ok(1_795_262_400)
        );
        assert_eq!(parse_now("2026-11-21T12:00:00.5Z", &z), Ok(1_795_262_400));
        assert_eq!(parse_now("2026-11-21 13:00:00", &z), Ok(1_795_262_400));
        assert_eq!(parse_now("2026-11-21 13:00", &z), Ok(1_795_262_400));
        for bad in [
            "yesterday",
            "2026-11-21",
            "2026-13-21T12:00:00Z",
            "21/11/2026 10:00",
        ] {
            assert!(parse_now(bad, &z).is_err(), "{bad}");
        }
    }
}
