//! How often watch reads a busy log: the latency it adds against the
//! wake-ups it saves.

use std::time::Duration;

/// How long lines of a busy log wait to be read together: the latency
/// added under load (a ban comes at most this much later), for one wake-up
/// per COALESCE instead of one per write. A wake-up costs 40 to 110 us on
/// the 2-core benchmark VM whatever it reads, a line a fraction of a
/// microsecond: below FAST_RATE the wake-ups are most of watch's CPU, and
/// 45 ms keeps the p99 under the 50 ms the issue asks (see docs/watch.md).
pub const COALESCE: Duration = Duration::from_millis(45);

/// Above this many lines a second the lines, not the wake-ups, are the
/// CPU, and a 45 ms batch holds thousands of lines (up to a millisecond to
/// count on a loaded VM): busy logs are read every COALESCE_FAST, so the
/// p99 stays well under 50 ms there.
pub const FAST_RATE: f64 = 20_000.0;
pub const COALESCE_FAST: Duration = Duration::from_millis(30);

/// The wait before the next reading of busy logs, after one that found
/// `got` lines `since` the reading before that found any.
pub fn pace(got: u64, since: Option<Duration>) -> Duration {
    let since = since.unwrap_or(COALESCE);
    let rate = got as f64 / since.as_secs_f64().max(1e-3);
    if rate >= FAST_RATE {
        COALESCE_FAST
    } else {
        COALESCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_logs_are_read_more_often_only_when_the_lines_are_the_cost() {
        let ms = Duration::from_millis;
        // 1 000 and 10 000 lines a second: 45 lines and 450 in 45 ms.
        assert_eq!(pace(45, Some(ms(45))), COALESCE);
        assert_eq!(pace(450, Some(ms(45))), COALESCE);
        // 100 000 a second, and a first busy reading with no gap known.
        assert_eq!(pace(4_500, Some(ms(45))), COALESCE_FAST);
        assert_eq!(pace(3_000, Some(ms(30))), COALESCE_FAST);
        assert_eq!(pace(10, None), COALESCE);
        // A zero gap (two readings in the same instant) divides by 1 ms.
        assert_eq!(pace(19, Some(ms(0))), COALESCE);
        assert_eq!(pace(20, Some(ms(0))), COALESCE_FAST);
        // Both keep the p99 under the 50 ms with room for a batch.
        assert!(COALESCE < ms(50) && COALESCE_FAST < COALESCE);
    }
}
