//! `fwctl watch`'s core (pure): a sliding window per source over the hits
//! a follower reads, and the moment a source crosses `howmany`.
//!
//! Exact to the second: each source keeps its hits as (second, count)
//! runs, and a source that crosses is banned and starts over, so it never
//! holds more than `howmany` runs. Memory is bounded whatever the traffic:
//! the sources live in capture's segmented-LRU table (a flood of one-line
//! sources churns its probation segment; a source with a second hit is
//! protected), and all sources together hold at most `budget` runs. Past
//! the budget, a source adding a run first folds its two oldest runs into
//! one stamped with the newer second: its count stays whole and its oldest
//! hits leave the window a little late, an error only ever towards
//! banning, and only for a source with hits in more distinct seconds than
//! the budget leaves it.

pub mod events;
pub mod journal;
pub mod pacing;
pub mod positions;
pub mod series;

use crate::core::capture::table::Table;
use std::collections::VecDeque;
use std::net::IpAddr;

/// One source's hits inside the window: (second, hits) runs, oldest first.
#[derive(Debug, Default)]
pub struct Window {
    runs: VecDeque<(i64, u32)>,
    hits: u64,
    /// The last lines of a source near the threshold (evidence for `why`).
    lines: VecDeque<Box<[u8]>>,
}

/// A source that crossed the threshold with this hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossed {
    pub addr: IpAddr,
    /// Hits inside the window, the crossing one included.
    pub hits: u64,
    /// The oldest and newest hit's second.
    pub first: i64,
    pub last: i64,
    /// Up to `keep` of its last lines, the crossing one last.
    pub lines: Vec<Box<[u8]>>,
}

/// The windows of one `[[watch]]` entry.
pub struct Counter {
    howmany: u64,
    within: i64,
    table: Table<Window>,
    runs: usize,
    budget: usize,
    /// Runs folded because the budget was reached (for the metrics).
    pub folded: u64,
    /// Lines kept per source as evidence, and their bytes over all sources.
    keep: usize,
    kept_bytes: usize,
}

/// Bytes of evidence lines one entry keeps at most, over all its sources
/// (a line is kept cut to [`LINE_KEPT`]).
pub const EVIDENCE_BYTES: usize = 16 << 20;
pub const LINE_KEPT: usize = 1024;

/// Runs all sources of one entry may hold together: 16 bytes each, so
/// 16 MiB at most, besides the table's own slots.
pub const BUDGET: usize = 1 << 20;

fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Counter {
    /// `capacity` sources at most (the least recently seen go first).
    pub fn new(howmany: u64, within: u64, capacity: usize, budget: usize) -> Counter {
        Counter {
            howmany,
            within: within as i64,
            table: Table::new(capacity),
            runs: 0,
            budget: budget.max(2),
            folded: 0,
            keep: 0,
            kept_bytes: 0,
        }
    }

    /// Keep the last `n` lines of a source near its crossing (0: none).
    pub fn keep_lines(mut self, n: usize) -> Counter {
        self.keep = n;
        self
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Sources evicted to make room, since the start.
    pub fn evicted(&self) -> u64 {
        self.table.evicted()
    }

    /// Runs held by all sources now.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// `n` hits of `addr` at second `time`, read at `now`: the crossing,
    /// if the source's hits within (now - within, now] now exceed
    /// `howmany` (the window includes its first second, as scan's). A hit
    /// older than the window does not count.
    pub fn hit(&mut self, addr: IpAddr, time: i64, n: u32, now: i64) -> Option<Crossed> {
        self.hit_line(addr, time, n, now, &[])
    }

    /// `hit`, with the line it came from (kept as evidence once the source
    /// is within `keep` hits of crossing).
    pub fn hit_line(
        &mut self,
        addr: IpAddr,
        time: i64,
        n: u32,
        now: i64,
        line: &[u8],
    ) -> Option<Crossed> {
        let start = now - self.within;
        if time < start || n == 0 {
            return None;
        }
        let k = key(addr);
        let (i, new, evicted) = self.table.touch_evicting(k, Window::default);
        if let Some(old) = evicted {
            self.runs -= old.runs.len();
            self.kept_bytes -= old.lines.iter().map(|l| l.len()).sum::<usize>();
        }
        if !new {
            // A second hit: worth keeping through a flood of one-line sources.
            self.table.promote(k);
        }
        let w = self.table.at_mut(i);
        // Expire what left the window.
        while let Some(&(t, c)) = w.runs.front() {
            if t >= start {
                break;
            }
            w.runs.pop_front();
            w.hits -= u64::from(c);
            self.runs -= 1;
        }
        // Add the hit: nearly always at the back (lines come in order).
        match w.runs.iter().rposition(|&(t, _)| t <= time) {
            Some(i) if w.runs[i].0 == time => w.runs[i].1 = w.runs[i].1.saturating_add(n),
            at => {
                let i = at.map_or(0, |i| i + 1);
                if self.runs >= self.budget && w.runs.len() >= 2 {
                    // Fold the two oldest: their hits stay, stamped later.
                    let (_, c0) = w.runs.pop_front().expect("two runs");
                    w.runs[0].1 = w.runs[0].1.saturating_add(c0);
                    self.runs -= 1;
                    self.folded += 1;
                    w.runs.insert(i.saturating_sub(1), (time, n));
                } else {
                    w.runs.insert(i, (time, n));
                }
                self.runs += 1;
            }
        }
        w.hits += u64::from(n);
        if self.keep > 0 && w.hits + self.keep as u64 > self.howmany {
            let cut = &line[..line.len().min(LINE_KEPT)];
            if self.kept_bytes + cut.len() <= EVIDENCE_BYTES {
                w.lines.push_back(cut.into());
                self.kept_bytes += cut.len();
            }
            while w.lines.len() > self.keep {
                let old = w.lines.pop_front().expect("more than keep");
                self.kept_bytes -= old.len();
            }
        }
        if w.hits <= self.howmany {
            return None;
        }
        let lines: Vec<Box<[u8]>> = w.lines.drain(..).collect();
        self.kept_bytes -= lines.iter().map(|l| l.len()).sum::<usize>();
        let crossed = Crossed {
            addr,
            hits: w.hits,
            first: w.runs.front().map_or(time, |r| r.0),
            last: w.runs.back().map_or(time, |r| r.0),
            lines,
        };
        // Banned now: it starts over (a ban that did not take, or a
        // detect-only run, reports it again after another `howmany`).
        self.runs -= w.runs.len();
        *w = Window::default();
        Some(crossed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_000_000;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exactly_howmany_within_the_window_is_not_a_crossing_one_more_is() {
        let mut c = Counter::new(5, 60, 100, BUDGET);
        for i in 0..5 {
            assert_eq!(c.hit(a("203.0.113.5"), T + i, 1, T + i), None);
        }
        let x = c.hit(a("203.0.113.5"), T + 5, 1, T + 5).unwrap();
        assert_eq!((x.hits, x.first, x.last), (6, T, T + 5));
        // It starts over.
        assert_eq!(c.hit(a("203.0.113.5"), T + 6, 1, T + 6), None);
        assert_eq!(c.runs(), 1);
    }

    #[test]
    fn hits_leave_the_window_exactly_on_time() {
        // A decoy just under the threshold for an hour: 5 hits in any 60 s.
        let mut c = Counter::new(5, 60, 100, BUDGET);
        let mut crossings = Vec::new();
        for i in 0..36 {
            // 12 s apart: a hit exactly 60 s old is still inside (the window
            // includes its first second), so every sixth hit makes six.
            let t = T + i * 12;
            if let Some(x) = c.hit(a("198.51.100.7"), t, 1, t) {
                assert_eq!(x.hits, 6);
                crossings.push(i);
            }
        }
        assert_eq!(crossings, [5, 11, 17, 23, 29, 35]);
        let mut c = Counter::new(5, 60, 100, BUDGET);
        for i in 0..360 {
            let t = T + i * 13; // 13 s apart: at most 5 in any window of 61 seconds
            assert_eq!(c.hit(a("198.51.100.7"), t, 1, t), None, "at hit {i}");
        }
        assert!(c.runs() <= 5);
    }

    #[test]
    fn old_and_out_of_order_lines() {
        let mut c = Counter::new(3, 60, 100, BUDGET);
        assert_eq!(c.hit(a("192.0.2.1"), T - 61, 1, T), None);
        assert_eq!(c.runs(), 0, "older than the window: not kept");
        for t in [T - 5, T - 50, T - 20] {
            assert_eq!(c.hit(a("192.0.2.1"), t, 1, T), None);
        }
        let x = c.hit(a("192.0.2.1"), T - 30, 1, T).unwrap();
        assert_eq!((x.hits, x.first, x.last), (4, T - 50, T - 5));
        // "message repeated 4 times" counts four.
        let x = c.hit(a("2001:db8::1"), T, 4, T).unwrap();
        assert_eq!(x.hits, 4);
    }

    #[test]
    fn many_sources_stay_within_the_table_and_the_budget() {
        let mut c = Counter::new(1000, 3600, 1000, 5000);
        for i in 0..20_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xCB00_7100 + (i % 3000)));
            c.hit(ip, T + i64::from(i), 1, T + i64::from(i));
            assert!(c.tracked() <= 1000);
        }
        assert!(c.evicted() > 0);
        // One heavy source keeps its count whole past the budget.
        let mut c = Counter::new(100, 3600, 10, 50);
        let mut crossed = None;
        for i in 0..101 {
            crossed = crossed.or(c.hit(a("203.0.113.9"), T + i, 1, T + i));
            assert!(c.runs() <= 50, "{}", c.runs());
        }
        assert_eq!(crossed.unwrap().hits, 101);
        assert!(c.folded > 0);
    }

    #[test]
    fn the_last_lines_before_the_crossing_are_kept_as_evidence() {
        let mut c = Counter::new(5, 60, 100, BUDGET).keep_lines(3);
        let mut got = None;
        for i in 0..6 {
            let line = format!("line {i}");
            got = got.or(c.hit_line(a("203.0.113.5"), T + i, 1, T + i, line.as_bytes()));
        }
        let x = got.unwrap();
        let lines: Vec<&[u8]> = x.lines.iter().map(|l| &l[..]).collect();
        assert_eq!(lines, [&b"line 3"[..], b"line 4", b"line 5"]);
        assert_eq!(c.kept_bytes, 0);
        // Far from its threshold a source keeps none.
        c.hit_line(a("203.0.113.6"), T, 1, T, b"x");
        assert_eq!(c.kept_bytes, 0);
    }
}
