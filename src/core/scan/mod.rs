//! The scan's core (pure): window counting over log lines, who gets banned,
//! and what the run says. The file reading is the system layer's part, the
//! command that ties it to the kernel's sets is `cmd::scan`.

pub mod count;
pub mod decide;
pub mod report;

use crate::core::logline::Parser;
use crate::units::time::Zone;
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
    /// The file got shorter while it was read (rotated with copytruncate):
    /// the part that vanished was not read.
    pub shrank: bool,
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
