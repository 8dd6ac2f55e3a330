//! Ban history (pure): repeat-offender counts, progressive durations and the
//! bans still running, as kept in the state file. Times are Unix seconds.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An offender is forgotten this long after its last ban ended: a source
/// that behaves for a month starts again at the first step.
pub const FORGET_AFTER: i64 = 30 * 86400;
/// Most offenders remembered; past it the forgotten ones go, then the
/// [`EVICT`] ending soonest (ties by address: every process that applies
/// the same bans drops the same records).
pub const MAX_RECORDS: usize = 100_000;
/// Dropped at once when full, so that a full history costs one pass over
/// it per EVICT new offenders, not per new offender (a reader replaying
/// watch's journal applies each ban again).
pub const EVICT: usize = MAX_RECORDS / 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The banned address or network.
    pub addr: IpNet,
    /// The set it went into.
    pub set: String,
    /// How many times it was banned.
    pub offences: u32,
    /// When its last ban started and when it ends.
    pub since: i64,
    pub until: i64,
    /// When this record last changed (a ban, or an unban ending it early).
    /// Writers that hold the history in memory (capture) merge by it, so a
    /// `fwctl ban`/`unban` made meanwhile is not overwritten. Files written
    /// before it existed read as 0, meaning `since`.
    #[serde(default)]
    pub updated: i64,
    /// The fleet host whose ban this is, when `fwctl sync` applied it
    /// (None: this host's own ban).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Why it was banned, for `fwctl why` (None: a ban from before this
    /// was kept, or one made without a reason to keep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<Why>,
    /// An aggregate ban's members: the bans it replaced (their records are
    /// ended, and keep their evidence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<IpNet>,
}

/// What made a ban: the rule, the window's count, and a few pieces of
/// evidence (log lines, or a summary of what was counted). Evidence is
/// attacker-written text: kept cut to [`EVIDENCE_LINE`] bytes, at most
/// [`MAX_EVIDENCE`] a ban, and, over the whole history, [`EVIDENCE_BUDGET`]
/// bytes (the newest bans keep theirs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Why {
    /// scan, watch, capture, manual.
    pub origin: String,
    /// The rule and type (scan, watch) or what was detected.
    pub rule: String,
    pub hits: u64,
    pub window_s: u64,
    /// The first and last hit counted (Unix seconds).
    pub first: i64,
    pub last: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

pub const EVIDENCE_LINE: usize = 512;
pub const MAX_EVIDENCE: usize = 20;
pub const EVIDENCE_BUDGET: usize = 4 << 20;

/// A piece of evidence as kept: valid UTF-8, control characters shown
/// escaped (a line from a log must not act on a terminal), cut.
pub fn evidence_text(raw: &[u8]) -> String {
    let mut s = String::new();
    for c in String::from_utf8_lossy(&raw[..raw.len().min(EVIDENCE_LINE * 2)]).chars() {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
        if s.len() >= EVIDENCE_LINE {
            let mut cut = EVIDENCE_LINE;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            break;
        }
    }
    s
}

impl Record {
    fn stamp(&self) -> i64 {
        self.updated.max(self.since)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    records: HashMap<IpNet, Record>,
}

impl History {
    pub fn from_records(records: Vec<Record>) -> History {
        History {
            records: records.into_iter().map(|r| (r.addr, r)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, addr: &IpNet) -> Option<&Record> {
        self.records.get(addr)
    }

    /// Every record, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// The offence number and ban length (seconds) the next ban of `addr`
    /// would get at `now`, given the profile's steps.
    pub fn next_ban(&self, addr: &IpNet, now: i64, steps: &[u64]) -> (u32, u64) {
        let before = match self.records.get(addr) {
            Some(r) if now <= r.until + FORGET_AFTER => r.offences,
            _ => 0,
        };
        let n = before + 1;
        let idx = (n as usize - 1).min(steps.len().saturating_sub(1));
        (n, steps.get(idx).copied().unwrap_or(600))
    }

    /// Record a ban that was made here.
    pub fn record(&mut self, addr: IpNet, set: &str, offence: u32, now: i64, secs: u64) {
        self.record_from(addr, set, offence, now, secs, None);
    }

    /// Record a ban, with the fleet host it came from (None: made here).
    pub fn record_from(
        &mut self,
        addr: IpNet,
        set: &str,
        offence: u32,
        now: i64,
        secs: u64,
        from: Option<&str>,
    ) {
        if !self.records.contains_key(&addr) && self.records.len() >= MAX_RECORDS {
            self.prune(now);
            let over = (self.records.len() + EVICT).saturating_sub(MAX_RECORDS);
            if over > 0 {
                let mut ends: Vec<(i64, IpNet)> =
                    self.records.values().map(|r| (r.until, r.addr)).collect();
                ends.select_nth_unstable(over - 1);
                for (_, a) in &ends[..over] {
                    self.records.remove(a);
                }
            }
        }
        self.records.insert(
            addr,
            Record {
                addr,
                set: set.to_string(),
                offences: offence,
                since: now,
                until: now + secs as i64,
                updated: now,
                from: from.map(str::to_string),
                why: None,
                members: Vec::new(),
            },
        );
    }

    /// Keep why `addr`'s ban was made (its record must exist: after
    /// `record`). Evidence beyond `keep` pieces is dropped.
    pub fn explain(&mut self, addr: &IpNet, mut why: Why, keep: usize) {
        why.evidence.truncate(keep.min(MAX_EVIDENCE));
        for e in &mut why.evidence {
            if e.len() > EVIDENCE_LINE || e.chars().any(char::is_control) {
                *e = evidence_text(e.as_bytes());
            }
        }
        if let Some(r) = self.records.get_mut(addr) {
            r.why = Some(why);
        }
    }

    /// Record an aggregate ban: `prefix` until `until`, replacing `members`
    /// (their bans end now; their records stay, with their evidence).
    pub fn gather(
        &mut self,
        prefix: IpNet,
        set: &str,
        until: i64,
        members: &[IpNet],
        why: Why,
        now: i64,
    ) {
        let (n, _) = self.next_ban(&prefix, now, &[0]);
        self.record(prefix, set, n, now, (until - now).max(1) as u64);
        self.explain(&prefix, why, MAX_EVIDENCE);
        if let Some(r) = self.records.get_mut(&prefix) {
            r.members = members.to_vec();
        }
        for m in members {
            self.end(m, now);
        }
    }

    /// End the ban of `addr` at `now` (an unban), keeping its offence count.
    /// Returns whether a ban was running.
    pub fn end(&mut self, addr: &IpNet, now: i64) -> bool {
        match self.records.get_mut(addr) {
            Some(r) if r.until > now => {
                r.until = now;
                r.updated = now;
                true
            }
            _ => false,
        }
    }

    /// Take from `other` every record that changed after ours (or that we
    /// lack): the union of two writers' histories, newest change winning.
    pub fn merge(&mut self, other: &History) {
        for (addr, theirs) in &other.records {
            match self.records.get(addr) {
                Some(ours) if ours.stamp() >= theirs.stamp() => {}
                _ => {
                    self.records.insert(*addr, theirs.clone());
                }
            }
        }
    }

    /// Whether `addr` is under a ban at `now`.
    pub fn banned(&self, addr: &IpNet, now: i64) -> Option<&Record> {
        self.records.get(addr).filter(|r| r.until > now)
    }

    /// Drop offenders not seen for FORGET_AFTER.
    pub fn prune(&mut self, now: i64) {
        self.records.retain(|_, r| r.until + FORGET_AFTER >= now);
    }

    /// Bans still running at `now`, soonest end first.
    pub fn active(&self, now: i64) -> Vec<&Record> {
        let mut v: Vec<&Record> = self.records.values().filter(|r| r.until > now).collect();
        v.sort_by_key(|r| (r.until, r.addr));
        v
    }

    /// Every record, soonest end first (the state file's order), with the
    /// evidence of the oldest bans dropped past [`EVIDENCE_BUDGET`].
    pub fn records(&self) -> Vec<Record> {
        let mut bans: Vec<Record> = self.records.values().cloned().collect();
        if over_budget(bans.iter()) {
            trim(bans.iter_mut());
        }
        bans.sort_by_key(|r| (r.until, r.addr));
        bans
    }

    /// Drop the evidence of the oldest bans past [`EVIDENCE_BUDGET`] here,
    /// as [`History::records`] does in what it writes: a writer that keeps
    /// the history in memory (watch, capture) stays as small as the file.
    pub fn trim_evidence(&mut self) {
        if over_budget(self.records.values()) {
            trim(self.records.values_mut());
        }
    }
}

/// Whether the evidence is over [`EVIDENCE_BUDGET`]: one pass, no sort
/// (the common case, and a writer trims after each second's bans, over up
/// to MAX_RECORDS records).
fn over_budget<'a>(records: impl Iterator<Item = &'a Record>) -> bool {
    let total: usize = records
        .filter_map(|r| r.why.as_ref())
        .map(|w| w.evidence.iter().map(String::len).sum::<usize>())
        .sum();
    total > EVIDENCE_BUDGET
}

/// The budget over `records`: the newest bans keep their evidence.
fn trim<'a>(records: impl Iterator<Item = &'a mut Record>) {
    let mut bans: Vec<&mut Record> = records.collect();
    bans.sort_by_key(|r| std::cmp::Reverse((r.since, r.addr)));
    let mut used = 0usize;
    for r in bans {
        if let Some(w) = &mut r.why {
            let size: usize = w.evidence.iter().map(String::len).sum();
            if used + size > EVIDENCE_BUDGET {
                w.evidence.clear();
            } else {
                used += size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [u64; 4] = [600, 7200, 86400, 604800];

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// The `i`-th address of 2001:db8::/32.
    fn doc6(i: u128) -> IpNet {
        IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::from(
            0x2001_0db8_u128 << 96 | i,
        )))
    }

    #[test]
    fn a_full_history_drops_the_bans_ending_soonest_a_hundredth_at_once() {
        let mut h = History::default();
        for i in 0..MAX_RECORDS as u32 {
            // Two bans end at each second: ties are broken by address.
            let a = doc6(u128::from(i));
            h.record(a, "blacklist", 1, 1000, 3600 + u64::from(i / 2));
        }
        assert_eq!(h.len(), MAX_RECORDS);
        let newest = net("203.0.113.1/32");
        h.record(newest, "blacklist", 1, 1000, 60_000);
        assert_eq!(h.len(), MAX_RECORDS - EVICT + 1);
        // The first EVICT in (until, address) order went, the rest stayed.
        let first_kept = doc6(EVICT as u128);
        assert!(h.get(&first_kept).is_some());
        let last_gone = doc6(EVICT as u128 - 1);
        assert!(h.get(&last_gone).is_none());
        // The next EVICT - 1 new offenders fit without another pass.
        for i in 0..EVICT as u32 - 1 {
            let a = doc6((1 << 64) | u128::from(i));
            h.record(a, "blacklist", 1, 1000, 60_000);
        }
        assert_eq!(h.len(), MAX_RECORDS);
    }

    #[test]
    fn durations_progress_and_stay_at_the_last_step() {
        let mut h = History::default();
        let a = net("203.0.113.5/32");
        let mut now = 1_000_000;
        let mut got = Vec::new();
        for _ in 0..6 {
            let (n, secs) = h.next_ban(&a, now, &STEPS);
            h.record(a, "blacklist", n, now, secs);
            got.push((n, secs));
            now += secs as i64 + 60;
        }
        assert_eq!(
            got,
            vec![
                (1, 600),
                (2, 7200),
                (3, 86400),
                (4, 604800),
                (5, 604800),
                (6, 604800)
            ]
        );
    }

    #[test]
    fn a_month_of_good_behaviour_starts_over() {
        let mut h = History::default();
        let a = net("2001:db8::1/128");
        h.record(a, "blacklist_v6", 3, 0, 600);
        assert_eq!(h.next_ban(&a, 600 + FORGET_AFTER, &STEPS), (4, 604800));
        assert_eq!(h.next_ban(&a, 601 + FORGET_AFTER, &STEPS), (1, 600));
        h.prune(601 + FORGET_AFTER);
        assert!(h.is_empty());
    }

    #[test]
    fn active_bans_round_trip_through_the_state_file() {
        let mut h = History::default();
        h.record(net("203.0.113.7/32"), "blacklist", 1, 100, 600);
        h.record(net("2001:db8:1::/64"), "blacklist_v6", 2, 100, 7200);
        assert_eq!(
            h.banned(&net("203.0.113.7/32"), 699).map(|r| r.offences),
            Some(1)
        );
        assert!(h.banned(&net("203.0.113.7/32"), 700).is_none());
        let text = serde_json::to_string(&h.records()).unwrap();
        let back: Vec<Record> = serde_json::from_str(&text).unwrap();
        assert_eq!(History::from_records(back), h);
        assert_eq!(h.active(700).len(), 1);
        // A file from before `updated` existed still reads.
        let old =
            r#"[{"addr":"203.0.113.7/32","set":"blacklist","offences":1,"since":5,"until":9}]"#;
        let old: Vec<Record> = serde_json::from_str(old).unwrap();
        assert_eq!(old[0].updated, 0);
    }

    #[test]
    fn merge_keeps_the_newest_change_of_each_address() {
        let a = net("203.0.113.7/32");
        let b = net("203.0.113.8/32");
        // Capture's memory: a banned at 100.
        let mut mem = History::default();
        mem.record(a, "blacklist", 1, 100, 600);
        // The file: meanwhile an admin unbanned a (at 150) and banned b.
        let mut file = mem.clone();
        assert!(file.end(&a, 150));
        assert!(!file.end(&a, 160), "already ended");
        file.record(b, "blacklist", 1, 155, 3600);
        mem.merge(&file);
        assert!(mem.banned(&a, 151).is_none(), "the unban wins");
        assert_eq!(mem.get(&a).unwrap().offences, 1, "history kept");
        assert!(mem.banned(&b, 200).is_some());
        // A newer ban in memory wins over the older file record.
        mem.record(a, "blacklist", 2, 300, 7200);
        mem.merge(&file);
        assert_eq!(mem.banned(&a, 301).unwrap().offences, 2);
    }

    #[test]
    fn why_is_kept_bounded_and_escaped() {
        let mut h = History::default();
        let a: IpNet = "203.0.113.5/32".parse().unwrap();
        h.record(a, "blacklist", 1, 100, 600);
        let why = Why {
            origin: "watch".into(),
            rule: "sshd".into(),
            hits: 6,
            window_s: 600,
            first: 90,
            last: 100,
            evidence: vec![
                "ok".into(),
                "bell\u{7} and \x1b[31mred".into(),
                "x".repeat(5000),
                "4".into(),
            ],
        };
        h.explain(&a, why, 3);
        let w = h.get(&a).unwrap().why.clone().unwrap();
        assert_eq!(w.evidence.len(), 3);
        assert_eq!(w.evidence[1], "bell\\u{7} and \\u{1b}[31mred");
        assert_eq!(w.evidence[2].len(), EVIDENCE_LINE);
        // Over the budget, the oldest bans lose their evidence first.
        let mut h = History::default();
        for i in 0..3000u32 {
            let n: IpNet = std::net::IpAddr::from(std::net::Ipv4Addr::from(0xC633_6400 + i)).into();
            h.record(n, "blacklist", 1, i64::from(i), 600);
            h.explain(
                &n,
                Why {
                    evidence: vec!["e".repeat(EVIDENCE_LINE); 5],
                    ..Why::default()
                },
                5,
            );
        }
        let recs = h.records();
        let kept: usize = recs
            .iter()
            .filter_map(|r| r.why.as_ref())
            .map(|w| w.evidence.len())
            .sum();
        assert!(kept * EVIDENCE_LINE <= EVIDENCE_BUDGET && kept > 0);
        let newest = recs.iter().max_by_key(|r| r.since).unwrap();
        let oldest = recs.iter().min_by_key(|r| r.since).unwrap();
        assert_eq!(newest.why.as_ref().unwrap().evidence.len(), 5);
        assert!(oldest.why.as_ref().unwrap().evidence.is_empty());
        // Trimmed in place, the history in memory is what was written.
        h.trim_evidence();
        let mut mem: Vec<Record> = h.iter().cloned().collect();
        mem.sort_by_key(|r| (r.until, r.addr));
        assert_eq!(mem, recs);
    }
}
