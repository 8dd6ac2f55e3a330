//! Time as the pure core takes it: Unix seconds (and microseconds), civil
//! dates, RFC 3339 stamps in UTC, and the local time zone's offsets as data
//! ([`Zone`]), so no code below the system layer asks the clock or the C
//! library anything.

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
/// Microseconds since the Unix epoch (capture's packet times).
pub type Micros = u64;
pub const SECOND: Micros = 1_000_000;

pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number; inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// RFC 3339 in UTC, whole seconds.
pub fn utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// RFC 3339 UTC time with milliseconds, from Unix microseconds.
pub fn utc_micros(us: u64) -> String {
    let whole = utc((us / 1_000_000) as i64);
    format!("{}.{:03}Z", whole.trim_end_matches('Z'), (us / 1000) % 1000)
}

/// Local time to UTC for traditional timestamps: the UTC offsets in force
/// from given moments on (the system layer asks the system's time zone;
/// tests build their own), so a log that spans a DST change is read right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// (from this UTC second on, local minus UTC in seconds), sorted.
    changes: Vec<(i64, i64)>,
}

impl Zone {
    pub fn fixed(offset: i64) -> Zone {
        Zone {
            changes: vec![(i64::MIN, offset)],
        }
    }

    /// `changes` as (UTC second, offset from then on); sorted here.
    pub fn new(mut changes: Vec<(i64, i64)>) -> Zone {
        changes.sort_unstable();
        match changes.first_mut() {
            Some(first) => first.0 = i64::MIN,
            None => changes.push((i64::MIN, 0)),
        }
        Zone { changes }
    }

    pub fn offset_at(&self, utc: i64) -> i64 {
        let i = self.changes.partition_point(|&(from, _)| from <= utc);
        self.changes[i.max(1) - 1].1
    }

    /// The UTC second of a local wall-clock second. In the repeated hour of
    /// a fall-back change the earlier reading wins; in the skipped hour of a
    /// spring-forward change the offset before the change is used.
    pub fn to_utc(&self, local: i64) -> i64 {
        let first = local - self.offset_at(local);
        let o = self.offset_at(first);
        let t = local - o;
        if self.offset_at(t) == o {
            t
        } else {
            local - self.offset_at(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc(1_795_262_400), "2026-11-21T12:00:00Z");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc_micros(1_763_726_400_123_456),
            "2025-11-21T12:00:00.123Z"
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-800_000, -1, 0, 1, 20_000, 20_413, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2026, 11, 21), 20_778);
    }
}
