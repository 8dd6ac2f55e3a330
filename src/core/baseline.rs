//! The baseline (pure): hourly counts per rule of what fwctl saw (matching
//! log lines and bans of each scan rule, capture's scans and bans) over
//! the last 30 days, and the decision whether the
//! last complete hour is an anomaly: more than `[baseline] over` of the
//! mean of the same hour of the day over the past days, and at least
//! `[baseline] floor`, once `[baseline] min_days` of history exist.
//!
//! Bounded: at most [`MAX_SERIES`] series of [`HOURS`] counts each (the
//! least recently counted series makes room for a new one). Reading and
//! writing the file (`baseline.json` beside the state file) is the system
//! layer's part.

use crate::core::config::baseline::Baseline as Settings;
use crate::core::metrics::Exposition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::core::config::baseline::DAYS;
/// Hours kept per series: the judged day and the [`DAYS`] before it.
pub const HOURS: usize = (DAYS as usize + 1) * 24;
/// Most series kept (rules × what is counted).
pub const MAX_SERIES: usize = 256;
/// Longest rule or type name kept (longer ones are cut).
pub const MAX_NAME: usize = 64;
/// Most logs a series keeps a mark of its own for (see [`Series::logs`]).
pub const MAX_LOGS: usize = 16;
/// Longest log name kept, in bytes: its end (a file's name and its
/// directory's end tell logs apart).
pub const MAX_LOG: usize = 256;
pub const VERSION: u32 = 1;

/// What a series counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// Log lines of a scan rule (a kernel rule's are blocked packets).
    Lines,
    /// Bans a scan rule (or capture) made.
    Bans,
    /// Port scans capture detected.
    Scans,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::Lines => "lines",
            What::Bans => "bans",
            What::Scans => "scans",
        }
    }
}

/// A series: what it counts, for which scan rule and type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub what: What,
    pub rule: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Key {
    pub fn new(what: What, rule: &str, kind: &str) -> Key {
        let cut = |s: &str| s.chars().take(MAX_NAME).collect::<String>();
        Key {
            what,
            rule: cut(rule),
            kind: cut(kind),
        }
    }
}

/// What the decision found for one series' last complete hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// The hour judged (Unix seconds / 3600).
    pub hour: i64,
    pub count: u64,
    /// Mean of the same hour over the past `days` days.
    pub mean: f64,
    pub days: u32,
    /// count / mean (the mean taken as at least 1).
    pub ratio: f64,
    pub anomaly: bool,
}

/// One series' hourly counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    #[serde(flatten)]
    pub key: Key,
    /// The first hour watched: hours before it are unknown, not zero.
    pub start: i64,
    /// The hour of the last count in `counts`.
    pub end: i64,
    /// Hours `end - counts.len() + 1 ..= end`, at most [`HOURS`].
    pub counts: Vec<u64>,
    /// The latest of the logs' marks: what an fwctl from before the marks
    /// reads as the series' one mark (so that going back to it counts
    /// nothing twice); and in a file it wrote, the floor below.
    #[serde(default)]
    pub counted_until: i64,
    /// Lines before this moment are counted already for a log without a
    /// mark of its own in `logs` (a new log, or one whose mark made room
    /// for others'). None in a file from before the marks: its
    /// `counted_until` is the floor then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<i64>,
    /// Per log counted into this series (its path, or the journal's
    /// matches): lines before this moment are counted already. Cron runs
    /// and watch read overlapping windows of one log; two logs under one
    /// rule and type (two sites' access logs) add up, each counted once
    /// (one mark for both lost the second log's lines of every minute the
    /// first had counted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub logs: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Eval>,
    /// The last hour told as an anomaly (told once, whatever the runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told: Option<i64>,
    /// The hour of the last run that counted into it (0: unknown), so the
    /// series of a rule no longer run is the one that goes.
    #[serde(default)]
    pub counted_at: i64,
}

impl Series {
    fn new(key: Key, hour: i64) -> Series {
        Series {
            key,
            start: hour,
            end: hour,
            counts: vec![0],
            counted_until: 0,
            floor: Some(0),
            logs: BTreeMap::new(),
            last: None,
            told: None,
            counted_at: hour,
        }
    }

    /// Whence `log`'s lines are still to be counted.
    fn counted_from(&self, log: &str) -> i64 {
        let floor = self.floor.unwrap_or(self.counted_until);
        self.logs.get(log).copied().unwrap_or(floor)
    }

    /// Mark `log` counted up to `until`; past [`MAX_LOGS`] the log counted
    /// longest ago gives up its mark, which the floor then covers (its
    /// lines may come back uncounted, never twice).
    fn mark(&mut self, log: String, until: i64) {
        // A file from before the marks: its one mark is the floor.
        let floor = *self.floor.get_or_insert(self.counted_until);
        let m = self.logs.entry(log).or_insert(floor);
        *m = (*m).max(until);
        self.counted_until = self.counted_until.max(until);
        if self.logs.len() > MAX_LOGS {
            let oldest = self
                .logs
                .iter()
                .min_by_key(|(name, &at)| (at, (*name).clone()))
                .map(|(name, &at)| (name.clone(), at));
            if let Some((name, at)) = oldest {
                self.logs.remove(&name);
                self.floor = Some(floor.max(at));
            }
        }
    }

    /// Extend with zero hours up to `hour`, keeping the last [`HOURS`].
    fn advance(&mut self, hour: i64) {
        if hour <= self.end {
            return;
        }
        let gap = (hour - self.end) as usize;
        if gap >= HOURS {
            self.counts.clear();
            self.counts.resize(HOURS, 0);
        } else {
            self.counts.extend(std::iter::repeat_n(0, gap));
            let over = self.counts.len().saturating_sub(HOURS);
            self.counts.drain(..over);
        }
        self.end = hour;
        self.start = self.start.max(self.end - HOURS as i64 + 1);
    }

    /// The count of `hour`, if it is kept and watched.
    pub fn get(&self, hour: i64) -> Option<u64> {
        if hour > self.end || hour < self.start {
            return None;
        }
        let back = (self.end - hour) as usize;
        (back < self.counts.len()).then(|| self.counts[self.counts.len() - 1 - back])
    }

    fn add(&mut self, hour: i64, n: u64) {
        self.advance(hour);
        if hour < self.start && self.end - hour < HOURS as i64 {
            // Older than the series (a first run's window reaching back).
            let more = (self.start - hour) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, more));
            self.start = hour;
        }
        if hour < self.start || hour > self.end {
            return;
        }
        let back = (self.end - hour) as usize;
        if back < self.counts.len() {
            let i = self.counts.len() - 1 - back;
            self.counts[i] = self.counts[i].saturating_add(n);
        }
    }
}

/// Every series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    pub series: Vec<Series>,
}

pub fn hour_of(t: i64) -> i64 {
    t.div_euclid(3600)
}

impl Baseline {
    /// The series of `key`, made (at `now`'s hour) if new; the least
    /// recently counted series goes when [`MAX_SERIES`] are kept.
    fn series(&mut self, key: &Key, now: i64) -> &mut Series {
        if let Some(i) = self.series.iter().position(|s| s.key == *key) {
            return &mut self.series[i];
        }
        if self.series.len() >= MAX_SERIES {
            let oldest = (0..self.series.len())
                .min_by_key(|&i| (self.series[i].counted_at, self.series[i].key.clone()))
                .expect("full");
            self.series.remove(oldest);
        }
        self.series.push(Series::new(key.clone(), hour_of(now)));
        self.series.last_mut().expect("pushed")
    }

    pub fn get(&self, key: &Key) -> Option<&Series> {
        self.series.iter().find(|s| s.key == *key)
    }

    /// Add `n` at `now`'s hour (bans).
    pub fn add(&mut self, key: &Key, now: i64, n: u64) {
        let s = self.series(key, now);
        s.counted_at = s.counted_at.max(hour_of(now));
        s.advance(hour_of(now));
        s.add(hour_of(now), n);
    }

    /// Add a run's per-minute line counts. Only whole minutes are taken
    /// (up to the start of `now`'s minute), and only those not taken by an
    /// earlier run: a cron scan every few minutes reads the same lines
    /// again, and the minute still being written is the next run's. So a
    /// line is counted once, provided the window reaches back to the last
    /// run (a gap between runs longer than the window goes uncounted).
    /// Returns how many were added.
    pub fn add_minutes(
        &mut self,
        key: &Key,
        log: &str,
        minutes: &BTreeMap<i64, u64>,
        now: i64,
    ) -> u64 {
        let until = now.div_euclid(60) * 60;
        let log = log_name(log);
        let s = self.series(key, now);
        s.counted_at = s.counted_at.max(hour_of(now));
        s.advance(hour_of(now));
        let from = s.counted_from(&log);
        let mut added = 0;
        if from >= until {
            // Counted up to here already (or the clock went back).
            return 0;
        }
        for (&m, &n) in minutes.range(from.div_euclid(60)..until.div_euclid(60)) {
            s.add(hour_of(m * 60), n);
            added += n;
        }
        s.mark(log, until);
        added
    }

    /// Judge every series' last complete hour (before `now`'s), keep the
    /// result for the metrics, and return the anomalies not told before
    /// (each is marked told).
    pub fn judge(&mut self, now: i64, cfg: &Settings) -> Vec<(Key, Eval)> {
        // A series nothing counted into for the whole kept window is
        // zeros only: it goes (its rule is no longer run).
        self.series.retain(|s| {
            let at = if s.counted_at == 0 {
                s.end
            } else {
                s.counted_at
            };
            hour_of(now) - at < HOURS as i64
        });
        let mut new = Vec::new();
        for s in &mut self.series {
            s.advance(hour_of(now));
            let e = judge(s, hour_of(now) - 1, cfg);
            if e.anomaly && s.told != Some(e.hour) {
                s.told = Some(e.hour);
                new.push((s.key.clone(), e.clone()));
            }
            s.last = Some(e);
        }
        new
    }
}

/// The decision for `hour` of a series: its count against the mean of the
/// same hour on each of the past [`DAYS`] days that were watched. With
/// fewer than `min_days` of them nothing is an anomaly (still learning);
/// below `floor` nothing is (a quiet host's 3 packets against 1).
pub fn judge(s: &Series, hour: i64, cfg: &Settings) -> Eval {
    let count = s.get(hour).unwrap_or(0);
    let past: Vec<u64> = (1..=i64::from(DAYS))
        .filter_map(|d| s.get(hour - 24 * d))
        .collect();
    let days = past.len() as u32;
    let mean = if days == 0 {
        0.0
    } else {
        past.iter().sum::<u64>() as f64 / f64::from(days)
    };
    let anomaly = days >= cfg.min_days
        && count >= cfg.floor
        && count as f64 * 100.0 > f64::from(cfg.over_percent) * mean;
    Eval {
        hour,
        count,
        mean,
        days,
        ratio: count as f64 / mean.max(1.0),
        anomaly,
    }
}

/// The file's body.
#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    series: Vec<Series>,
}

/// Why a baseline file's text is not a baseline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    #[error("{0}")]
    Json(String),
    #[error("unknown version {0}")]
    Version(u32),
    #[error("{0}")]
    Bounds(String),
}

pub fn parse(text: &[u8]) -> Result<Baseline, Corrupt> {
    let f: File = serde_json::from_slice(text).map_err(|e| Corrupt::Json(e.to_string()))?;
    if f.version != VERSION {
        return Err(Corrupt::Version(f.version));
    }
    if f.series.len() > MAX_SERIES {
        return Err(Corrupt::Bounds(format!(
            "{} series, more than {MAX_SERIES}",
            f.series.len()
        )));
    }
    for s in &f.series {
        let k = &s.key;
        if s.counts.is_empty()
            || s.counts.len() > HOURS
            || s.end.checked_sub(s.start) != Some(s.counts.len() as i64 - 1)
            || k.rule.chars().count() > MAX_NAME
            || k.kind.chars().count() > MAX_NAME
            || s.logs.len() > MAX_LOGS
            || s.logs.keys().any(|l| l.len() > MAX_LOG)
            || s.start > s.end
        {
            return Err(Corrupt::Bounds(format!(
                "series {} {} {} is out of bounds",
                k.what.as_str(),
                k.rule,
                k.kind
            )));
        }
    }
    Ok(Baseline { series: f.series })
}

/// A log's name as a series keeps it: at most [`MAX_LOG`] bytes, its end
/// (from a character's start).
fn log_name(log: &str) -> String {
    let mut from = log.len().saturating_sub(MAX_LOG);
    while !log.is_char_boundary(from) {
        from += 1;
    }
    log[from..].to_string()
}

pub fn to_text(b: &Baseline) -> Vec<u8> {
    let mut t = serde_json::to_vec(&File {
        version: VERSION,
        series: b.series.clone(),
    })
    .expect("a baseline serializes");
    t.push(b'\n');
    t
}

/// The gauges of each series' last judged hour, for the textfile.
pub fn metrics(b: &Baseline, e: &mut Exposition) {
    let judged: Vec<(Vec<(&str, &str)>, &Eval)> = b
        .series
        .iter()
        .filter_map(|s| {
            Some((
                vec![
                    ("what", s.key.what.as_str()),
                    ("rule", s.key.rule.as_str()),
                    ("type", s.key.kind.as_str()),
                ],
                s.last.as_ref()?,
            ))
        })
        .collect();
    if judged.is_empty() {
        return;
    }
    type Field = fn(&Eval) -> f64;
    let fields: [(&str, &str, Field); 5] = [
        (
            "fwctl_baseline_last_hour",
            "The count of the last complete hour (lines or bans of a scan rule).",
            |e| e.count as f64,
        ),
        (
            "fwctl_baseline_mean",
            "Mean count of the same hour over the past days of the baseline.",
            |e| e.mean,
        ),
        (
            "fwctl_baseline_days",
            "Days of history the mean is taken over (at most 30).",
            |e| f64::from(e.days),
        ),
        (
            "fwctl_baseline_ratio",
            "The last complete hour's count over the mean of the same hour (the mean taken as at least 1).",
            |e| e.ratio,
        ),
        (
            "fwctl_anomaly",
            "1 while the last complete hour is over [baseline] over of the usual and at least [baseline] floor.",
            |e| f64::from(u8::from(e.anomaly)),
        ),
    ];
    for (name, help, f) in fields {
        let samples: Vec<_> = judged.iter().map(|(l, ev)| (l.clone(), f(ev))).collect();
        e.family(name, "gauge", help, &samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-01T00:00:00Z, a whole day.
    const DAY0: i64 = 1_793_491_200;

    fn key() -> Key {
        Key::new(What::Lines, "blocked", "tcp")
    }

    fn cfg() -> Settings {
        Settings::default()
    }

    /// A synthetic month: `days` days of a daily shape (quiet nights, busy
    /// afternoons), each hour's count `shape(hour of day) * scale`, then
    /// the hour after them given `last`. Returns the baseline and the
    /// moment just after that hour.
    fn month(days: i64, scale: u64, last: u64) -> (Baseline, i64) {
        let shape = |h: i64| -> u64 {
            match h {
                0..=6 => 10,
                7..=12 => 40,
                13..=18 => 100,
                _ => 30,
            }
        };
        let mut b = Baseline::default();
        let start = DAY0;
        for hour in 0..days * 24 {
            let t = start + hour * 3600 + 1800;
            b.add(&key(), t, shape(hour % 24) * scale);
        }
        let t = start + days * 24 * 3600 + 15 * 3600 + 60; // 15:00 of the next day
        b.add(&key(), t, 0);
        let s = b.series.iter_mut().find(|s| s.key == key()).unwrap();
        s.advance(hour_of(t));
        let h = hour_of(t);
        s.add(h, last);
        (b, t + 3600)
    }

    #[test]
    fn a_synthetic_month_alerts_over_300_percent_and_above_the_floor_only() {
        // The 15:00 hour is 100 each day: over 300 % is more than 300.
        let (mut b, now) = month(30, 1, 301);
        let got = b.judge(now, &cfg());
        assert_eq!(got.len(), 1, "{got:?}");
        let e = &got[0].1;
        assert_eq!((e.count, e.days, e.mean), (301, 30, 100.0));
        assert!(e.anomaly && (e.ratio - 3.01).abs() < 1e-9);
        // Told once: the next run in the same hour tells nothing new.
        assert!(b.judge(now + 60, &cfg()).is_empty());
        assert!(b.series[0].last.as_ref().unwrap().anomaly);

        // Exactly 300 %: not over it.
        let (mut b, now) = month(30, 1, 300);
        assert!(b.judge(now, &cfg()).is_empty());
        assert!(!b.series[0].last.as_ref().unwrap().anomaly);

        // The same hour of a quiet night is 10: 31 would be over 300 %,
        // but a quiet host's 31 packets are below the floor of 100.
        let (b, now) = month(30, 1, 0);
        let s = &b.series[0];
        let night = hour_of(now) - 1 - 12; // 03:00
        let mut s2 = s.clone();
        s2.add(night, 31);
        let e = judge(&s2, night, &cfg());
        assert!(e.count as f64 > 3.0 * e.mean && !e.anomaly, "{e:?}");
        // A host ten times as busy: its night's 310 is an anomaly.
        let (b, now) = month(30, 10, 0);
        let mut s = b.series[0].clone();
        s.add(night, 310 - s.get(night).unwrap());
        let _ = now;
        assert!(judge(&s, night, &cfg()).anomaly);
    }

    #[test]
    fn a_quiet_host_does_not_alert_on_a_few_packets_instead_of_1() {
        let mut b = Baseline::default();
        for hour in 0..30 * 24 {
            b.add(&key(), DAY0 + hour * 3600, 1);
        }
        let now = DAY0 + 30 * 24 * 3600 + 1800;
        // 4 against 1 is over 300 %, but below the floor of 100.
        b.add(&key(), now, 4);
        let e = judge(&b.series[0], hour_of(now), &cfg());
        assert_eq!((e.count, e.mean), (4, 1.0));
        assert!(!e.anomaly);
        // With a floor of 1 it would be one.
        let low = Settings { floor: 1, ..cfg() };
        assert!(judge(&b.series[0], hour_of(now), &low).anomaly);
    }

    #[test]
    fn a_short_history_is_still_learning() {
        // Six days (min_days is 7): 1000 against 100 is no anomaly yet.
        let (mut b, now) = month(6, 1, 1000);
        assert!(b.judge(now, &cfg()).is_empty());
        let e = b.series[0].last.clone().unwrap();
        assert_eq!(e.days, 6);
        assert!(!e.anomaly);
        // Seven days: it is.
        let (mut b, now) = month(7, 1, 1000);
        assert_eq!(b.judge(now, &cfg()).len(), 1);
        // A brand-new series never is, and says its mean is of no day.
        let mut b = Baseline::default();
        b.add(&key(), DAY0, 5000);
        let got = b.judge(DAY0 + 3600, &cfg());
        assert!(got.is_empty());
        assert_eq!(b.series[0].last.as_ref().unwrap().days, 0);
    }

    #[test]
    fn thirty_days_are_kept_and_the_series_are_bounded() {
        let (b, _) = month(45, 1, 0);
        let s = &b.series[0];
        assert_eq!(s.counts.len(), HOURS);
        assert_eq!(s.end - s.start + 1, HOURS as i64);
        let mut b = Baseline::default();
        for i in 0..(MAX_SERIES + 10) {
            b.add(
                &Key::new(What::Bans, &format!("r{i}"), "all"),
                DAY0 + i as i64 * 3600,
                1,
            );
        }
        assert_eq!(b.series.len(), MAX_SERIES);
        // The least recently counted went (judging moves every series'
        // end to now, not its last count).
        let t = MAX_SERIES as i64 + 36;
        b.judge(DAY0 + t * 3600, &cfg());
        assert!(b.get(&Key::new(What::Bans, "r0", "all")).is_none());
        b.add(
            &Key::new(What::Bans, "new", "all"),
            DAY0 + (t + 1) * 3600,
            1,
        );
        assert!(b.get(&Key::new(What::Bans, "r10", "all")).is_none());
        assert!(b.get(&Key::new(What::Bans, "r11", "all")).is_some());
        assert!(b
            .get(&Key::new(
                What::Bans,
                &format!("r{}", MAX_SERIES + 9),
                "all"
            ))
            .is_some());
        // Nothing counted into a series for 31 days: judging drops it.
        b.judge(DAY0 + (t + HOURS as i64) * 3600, &cfg());
        assert_eq!(b.series.len(), 1, "only \"new\" was counted since");
        // A long name is cut.
        let long = "x".repeat(500);
        assert_eq!(Key::new(What::Lines, &long, "t").rule.len(), MAX_NAME);
        // The whole file stays small: MAX_SERIES series of 744 hours.
        let mut b = Baseline::default();
        for i in 0..MAX_SERIES {
            let k = Key::new(What::Lines, &format!("rule-{i}"), "all");
            for h in 0..HOURS as i64 + 5 {
                b.add(&k, DAY0 + h * 3600, 1_000_000);
            }
        }
        let text = to_text(&b);
        assert!(text.len() < MAX_SERIES * 9_400, "{}", text.len());
        assert_eq!(parse(&text).unwrap(), b);
    }

    #[test]
    fn overlapping_cron_windows_count_each_line_once() {
        let k = key();
        let mut b = Baseline::default();
        // Lines at 10:00:30 .. 10:20:30, one a minute; scans every 5
        // minutes, each reading the last 15 minutes.
        let t0 = DAY0 + 10 * 3600;
        let lines: Vec<i64> = (0..=20).map(|i| t0 + i * 60 + 30).collect();
        let mut total = 0;
        for run in 1..=6 {
            let now = t0 + run * 300 + 7;
            let mut minutes = BTreeMap::new();
            for &t in lines.iter().filter(|&&t| t <= now && t > now - 900) {
                *minutes.entry(t.div_euclid(60)).or_insert(0) += 1;
            }
            total += b.add_minutes(&k, LOG, &minutes, now);
        }
        // The last run was at 10:30:07: every minute before 10:30 is in,
        // each line once.
        assert_eq!(total, 21);
        assert_eq!(b.get(&k).unwrap().get(hour_of(t0)), Some(21));
        // A run again at the same moment adds nothing.
        let mut minutes = BTreeMap::new();
        minutes.insert(lines[20].div_euclid(60), 1);
        assert_eq!(b.add_minutes(&k, LOG, &minutes, t0 + 1807), 0);
    }

    const LOG: &str = "/ram/iptables.log";

    /// Lines at `at` (one each) into a minute map.
    fn per_minute(at: &[i64]) -> BTreeMap<i64, u64> {
        let mut m = BTreeMap::new();
        for t in at {
            *m.entry(t.div_euclid(60)).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn two_logs_under_one_rule_add_up_each_counted_once() {
        let k = key();
        let mut b = Baseline::default();
        let t0 = DAY0 + 10 * 3600;
        // Two sites' logs, a line a minute each from 10:00:30; cron scans
        // each every 5 minutes, a few seconds apart, 15-minute windows.
        let lines: Vec<i64> = (0..20).map(|i| t0 + i * 60 + 30).collect();
        let mut total = 0;
        for run in 1..=4 {
            for (log, late) in [("/var/log/nginx/a.log", 3), ("/var/log/nginx/b.log", 9)] {
                let now = t0 + run * 300 + late;
                let seen: Vec<i64> = lines
                    .iter()
                    .copied()
                    .filter(|&t| t <= now && t > now - 900)
                    .collect();
                total += b.add_minutes(&k, log, &per_minute(&seen), now);
            }
        }
        // Up to 10:20, from both: 20 lines each (one mark for both lost
        // the second log's minutes of every run).
        assert_eq!(total, 40);
        assert_eq!(b.get(&k).unwrap().get(hour_of(t0)), Some(40));
        assert!(parse(&to_text(&b)).is_ok());
    }

    #[test]
    fn a_file_from_before_the_marks_counts_nothing_twice() {
        let k = key();
        let t0 = DAY0 + 10 * 3600;
        // Written by a version with one mark a series: counted to 10:10.
        let old = format!(
            r#"{{"version":1,"series":[{{"what":"lines","rule":"blocked","type":"tcp","start":{h},"end":{h},"counts":[10],"counted_until":{u}}}]}}"#,
            h = hour_of(t0),
            u = t0 + 600
        );
        let mut b = parse(old.as_bytes()).unwrap();
        let lines: Vec<i64> = (0..15).map(|i| t0 + i * 60 + 30).collect();
        // Either log's run from 10:00 counts only what follows 10:10.
        assert_eq!(b.add_minutes(&k, LOG, &per_minute(&lines), t0 + 900 + 5), 5);
        assert_eq!(
            b.add_minutes(&k, "/other.log", &per_minute(&lines), t0 + 900 + 9),
            5
        );
        assert_eq!(b.get(&k).unwrap().get(hour_of(t0)), Some(20));
        // Written back, the old single mark is the latest of the logs'
        // (an fwctl from before the marks counts nothing twice), and the
        // floor stays where the old file had it.
        let again = parse(&to_text(&b)).unwrap();
        let s = again.get(&k).unwrap();
        assert_eq!((s.counted_until, s.floor), (t0 + 900, Some(t0 + 600)));
        let third = b.add_minutes(&k, "/third.log", &per_minute(&lines), t0 + 900 + 20);
        assert_eq!(third, 5);
    }

    #[test]
    fn logs_past_the_bound_give_up_the_oldest_mark_to_the_floor() {
        let k = key();
        let mut b = Baseline::default();
        let t0 = DAY0 + 10 * 3600;
        for i in 0..=MAX_LOGS as i64 {
            let now = t0 + (i + 1) * 60 + 1;
            b.add_minutes(&k, &format!("/log/{i}"), &per_minute(&[now - 61]), now);
        }
        let s = b.get(&k).unwrap();
        assert_eq!(s.logs.len(), MAX_LOGS);
        assert!(!s.logs.contains_key("/log/0"));
        // The evicted log's mark is the floor: its lines come back
        // uncounted, never twice.
        assert_eq!(s.floor, Some(t0 + 60));
        assert_eq!(
            b.add_minutes(&k, "/log/0", &per_minute(&[t0 + 30]), t0 + 3000),
            0
        );
        // A name is kept by its end, and the file stays in its bounds.
        let long = format!("/{}/access.log", "d".repeat(400));
        b.add_minutes(&k, &long, &per_minute(&[t0 + 3000]), t0 + 3100);
        let s = b.get(&k).unwrap();
        assert!(s.logs.keys().all(|l| l.len() <= MAX_LOG));
        assert_eq!(log_name("/é/x"), "/é/x");
        let cut = log_name(&format!("/{}", "é".repeat(200)));
        assert!(cut.len() <= MAX_LOG && cut.chars().all(|c| c == 'é'));
        assert!(s.logs.keys().any(|l| l.ends_with("dd/access.log")));
        assert!(parse(&to_text(&b)).is_ok());
        let mut over = b.clone();
        over.series[0].logs.insert("x".repeat(MAX_LOG + 1), 0);
        assert!(matches!(parse(&to_text(&over)), Err(Corrupt::Bounds(_))));
    }

    #[test]
    fn a_first_run_counts_its_whole_window_even_the_hour_before() {
        let k = key();
        let mut b = Baseline::default();
        let now = DAY0 + 10 * 3600 + 5 * 60; // 10:05
        let mut minutes = BTreeMap::new();
        minutes.insert((now - 20 * 60) / 60, 7); // 09:45
        minutes.insert((now - 60) / 60, 2); // 10:04
        assert_eq!(b.add_minutes(&k, LOG, &minutes, now), 9);
        let s = b.get(&k).unwrap();
        assert_eq!(
            (s.get(hour_of(now) - 1), s.get(hour_of(now))),
            (Some(7), Some(2))
        );
        assert_eq!(s.start, hour_of(now) - 1);
        assert!(parse(&to_text(&b)).is_ok());
    }

    #[test]
    fn a_corrupt_file_is_refused_with_the_reason() {
        assert!(matches!(parse(b"{ nope"), Err(Corrupt::Json(_))));
        assert!(matches!(
            parse(br#"{"version":9,"series":[]}"#),
            Err(Corrupt::Version(9))
        ));
        let big = format!(
            r#"{{"version":1,"series":[{{"what":"lines","rule":"a","type":"b","start":1,"end":{},"counts":[{}]}}]}}"#,
            HOURS + 1,
            vec!["0"; HOURS + 1].join(",")
        );
        let e = parse(big.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("out of bounds"), "{e}");
    }

    #[test]
    fn the_gauges_carry_the_last_judgement() {
        let (mut b, now) = month(30, 1, 400);
        b.judge(now, &cfg());
        let mut e = Exposition::default();
        metrics(&b, &mut e);
        let t = e.text();
        let l = "{what=\"lines\",rule=\"blocked\",type=\"tcp\"}";
        for want in [
            format!("fwctl_anomaly{l} 1\n"),
            format!("fwctl_baseline_ratio{l} 4\n"),
            format!("fwctl_baseline_last_hour{l} 400\n"),
            format!("fwctl_baseline_mean{l} 100\n"),
            format!("fwctl_baseline_days{l} 30\n"),
        ] {
            assert!(t.contains(&want), "{want} in {t}");
        }
        let mut e = Exposition::default();
        metrics(&Baseline::default(), &mut e);
        assert!(e.text().is_empty());
    }
}
