//! A `[[source]]`'s `time_format`: chrono's strftime syntax
//! (`%d/%b/%Y:%H:%M:%S %z`, `%Y-%m-%d %H:%M:%S`, ...), read into seconds
//! since the epoch. Without a zone (`%z`) the time is local (the host's
//! zone); without a year it is the year that puts the line at or before now
//! (a day of clock skew allowed), as for syslog's `Nov 21 10:00:01`. A
//! trailing `Z` (MySQL 8's `...T08:50:04.634875Z`) means UTC.

use crate::units::time::Zone;
use crate::units::Invalid;
use chrono::format::{parse, Item, Parsed, StrftimeItems};

#[derive(Clone, Debug)]
pub struct TimeFormat {
    items: Vec<Item<'static>>,
    /// As written, for messages.
    pub text: String,
}

impl TimeFormat {
    /// The format, or why it is not one (an unknown `%` sequence, or no
    /// hour: a log's time has one).
    pub fn new(fmt: &str) -> Result<TimeFormat, Invalid> {
        let items = StrftimeItems::new(fmt)
            .parse_to_owned()
            .map_err(|_| Invalid(format!("time_format \"{fmt}\" has an unknown % sequence")))?;
        if !(fmt.contains("%H") || fmt.contains("%T") || fmt.contains("%s") || fmt.contains("%I")) {
            return Err(Invalid(format!(
                "time_format \"{fmt}\" has no hour (%H, %I, %T) nor %s"
            )));
        }
        Ok(TimeFormat {
            items,
            text: fmt.to_string(),
        })
    }

    /// The UTC second `text` names, or None when it does not fit.
    pub fn read(&self, text: &str, zone: &Zone, now: i64) -> Option<i64> {
        let (text, utc) = match text.strip_suffix('Z') {
            Some(t) if !self.text.ends_with('Z') => (t, true),
            _ => (text, false),
        };
        let mut p = Parsed::new();
        parse(&mut p, text, self.items.iter()).ok()?;
        if let Some(t) = p.timestamp() {
            return Some(t);
        }
        let local = |p: &Parsed| -> Option<i64> {
            let d = p.to_naive_date().ok()?;
            let t = p.to_naive_time().ok()?;
            Some(d.and_time(t).and_utc().timestamp())
        };
        let absolute = |p: &Parsed, local: i64| match (p.offset(), utc) {
            (Some(o), _) => local - i64::from(o),
            (None, true) => local,
            (None, false) => zone.to_utc(local),
        };
        if p.year().is_some() || p.year_mod_100().is_some() || p.isoyear().is_some() {
            let l = local(&p)?;
            return Some(absolute(&p, l));
        }
        // No year: this year's reading, or the next's or the last's, the
        // latest one not after now (with a day of skew).
        let this = chrono::DateTime::from_timestamp(now, 0)?.naive_utc();
        let year = chrono::Datelike::year(&this) as i64;
        [year + 1, year, year - 1].into_iter().find_map(|y| {
            let mut q = p.clone();
            q.set_year(y).ok()?;
            let t = absolute(&q, local(&q)?);
            (t <= now + 86_400).then_some(t)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-21T10:00:01Z
    const T: i64 = 1_795_255_201;

    fn read(fmt: &str, text: &str) -> Option<i64> {
        TimeFormat::new(fmt)
            .unwrap()
            .read(text, &Zone::fixed(3600), T + 60)
    }

    #[test]
    fn zones_years_and_padding() {
        assert_eq!(
            read("%d/%b/%Y:%H:%M:%S %z", "21/Nov/2026:10:00:01 +0000"),
            Some(T)
        );
        assert_eq!(
            read("%d/%b/%Y:%H:%M:%S %z", "21/Nov/2026:12:00:01 +0200"),
            Some(T)
        );
        // Local time (the zone is UTC+1 here).
        assert_eq!(read("%Y/%m/%d %H:%M:%S", "2026/11/21 11:00:01"), Some(T));
        assert_eq!(read("%Y-%m-%d %H:%M:%S", "2026-11-21 11:00:01"), Some(T));
        // MariaDB's padded hour, MySQL 5's two-digit year, MySQL 8's Z.
        assert_eq!(
            read("%Y-%m-%d %H:%M:%S", "2026-11-21  9:00:01").map(|t| t - T),
            Some(-7200)
        );
        assert_eq!(read("%y%m%d %H:%M:%S", "261121 11:00:01"), Some(T));
        assert_eq!(
            read("%Y-%m-%dT%H:%M:%S%.f", "2026-11-21T10:00:01.634875Z"),
            Some(T)
        );
        // No year: this year's, or last year's when that would be the future.
        assert_eq!(read("%b %d %H:%M:%S", "Nov 21 11:00:01"), Some(T));
        assert_eq!(
            read("%b %d %H:%M:%S", "Dec 21 11:00:01").map(|t| t < T - 300 * 86_400),
            Some(true)
        );
        assert_eq!(
            read("%a %b %e %H:%M:%S %Y", "Sat Nov 21 11:00:01 2026"),
            Some(T)
        );
        assert_eq!(read("%s", "1795255201"), Some(T));
        assert_eq!(read("%Y-%m-%d %H:%M:%S", "2026-13-21 11:00:01"), None);
        assert_eq!(read("%Y-%m-%d %H:%M:%S", "yesterday"), None);
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(TimeFormat::new("%Y-%m-%d %Q").is_err());
        assert!(TimeFormat::new("%Y-%m-%d").is_err());
    }
}
