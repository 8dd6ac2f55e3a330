//! What `fwctl watch` says: one event per source that crossed (banned,
//! or why not), a stats line per entry now and then, and the metrics text
//! its endpoint serves (pure).

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Banned now.
    #[serde(rename = "watch_ban")]
    Ban,
    /// `--dryrun`: would have been banned.
    #[serde(rename = "watch_would_ban")]
    WouldBan,
    /// In the set already (a cron scan, or capture, was first).
    #[serde(rename = "watch_already_listed")]
    AlreadyListed,
    /// Inside the config's blacklist: dropped already.
    #[serde(rename = "watch_already_blocked")]
    AlreadyBlocked,
    /// Never banned (trusted, whitelisted, this host, special).
    #[serde(rename = "watch_skipped")]
    Skipped,
    /// The kernel refused the ban.
    #[serde(rename = "watch_ban_failed")]
    Failed,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Ban => "banned",
            Kind::WouldBan => "would ban",
            Kind::AlreadyListed => "already listed",
            Kind::AlreadyBlocked => "already blocked",
            Kind::Skipped => "skipped",
            Kind::Failed => "ban failed",
        }
    }
}

/// A source crossed an entry's threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub event: Kind,
    pub time: String,
    pub watch: String,
    pub address: String,
    pub set: String,
    pub hits: u64,
    pub within_s: u64,
    /// The window's first and last hit of this source (the lines' times).
    pub first: String,
    pub last: String,
    pub removeafter_s: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix microseconds just after the kernel took the ban.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_us: Option<u64>,
}

impl Event {
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }

    pub fn human(&self) -> String {
        let mut s = format!(
            "{} watch {}: {} {} ({} hits within {}, {} .. {})",
            self.time,
            self.watch,
            self.event.word(),
            self.address,
            self.hits,
            crate::units::duration::human(self.within_s),
            self.first,
            self.last
        );
        if matches!(self.event, Kind::Ban | Kind::WouldBan) {
            let _ = write!(
                s,
                " into {} for {}",
                self.set,
                crate::units::duration::human(self.removeafter_s)
            );
        }
        if let Some(r) = &self.reason {
            let _ = write!(s, ": {r}");
        }
        s
    }
}

/// One entry's counts since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub lines: u64,
    pub hits: u64,
    pub malformed: u64,
    pub refused: u64,
    pub failed: u64,
    /// Bans made, per set.
    pub bans: BTreeMap<String, u64>,
}

/// The `watch_stats` line of one entry.
pub fn stats_line(
    watch: &str,
    s: &Stats,
    tracked: u64,
    evicted: u64,
    time: &str,
    json: bool,
) -> String {
    if json {
        #[derive(Serialize)]
        struct Line<'a> {
            event: &'static str,
            time: &'a str,
            watch: &'a str,
            #[serde(flatten)]
            stats: &'a Stats,
            tracked: u64,
            evicted: u64,
        }
        return serde_json::to_string(&Line {
            event: "watch_stats",
            time,
            watch,
            stats: s,
            tracked,
            evicted,
        })
        .expect("serializable");
    }
    format!(
        "{time} watch_stats {watch} lines {} hits {} malformed {} bans {} refused {} failed {} tracked {tracked} evicted {evicted}",
        s.lines,
        s.hits,
        s.malformed,
        s.bans.values().sum::<u64>(),
        s.refused,
        s.failed
    )
}

/// One entry, for the metrics.
pub struct Row {
    pub watch: String,
    pub stats: Stats,
    pub tracked: u64,
    pub evicted: u64,
    pub rotations: u64,
    pub truncations: u64,
}

/// The Prometheus text of watch's endpoint. Labels are the entries' names
/// (at most 64, from the config) and the sets banned into.
pub fn render(rows: &[Row], started: i64) -> String {
    let mut s = String::new();
    let mut family = |name: &str, kind: &str, help: &str, vals: Vec<(String, u64)>| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in vals {
            let _ = writeln!(s, "{name}{{{labels}}} {v}");
        }
    };
    let per = |f: &dyn Fn(&Row) -> u64| -> Vec<(String, u64)> {
        rows.iter()
            .map(|r| (format!("watch=\"{}\"", r.watch), f(r)))
            .collect()
    };
    family(
        "fwctl_watch_lines_total",
        "counter",
        "Log lines read.",
        per(&|r| r.stats.lines),
    );
    family(
        "fwctl_watch_hits_total",
        "counter",
        "Lines that counted against a source.",
        per(&|r| r.stats.hits),
    );
    family(
        "fwctl_watch_malformed_total",
        "counter",
        "Lines of the source that could not be read.",
        per(&|r| r.stats.malformed),
    );
    family(
        "fwctl_watch_refused_total",
        "counter",
        "Crossings of a never-ban address.",
        per(&|r| r.stats.refused),
    );
    family(
        "fwctl_watch_ban_failures_total",
        "counter",
        "Bans the kernel refused.",
        per(&|r| r.stats.failed),
    );
    family(
        "fwctl_watch_tracked_sources",
        "gauge",
        "Sources with hits inside the window.",
        per(&|r| r.tracked),
    );
    family(
        "fwctl_watch_evicted_total",
        "counter",
        "Sources dropped to keep the table bounded.",
        per(&|r| r.evicted),
    );
    family(
        "fwctl_watch_rotations_total",
        "counter",
        "Times the log was replaced (rotated, recreated).",
        per(&|r| r.rotations),
    );
    family(
        "fwctl_watch_truncations_total",
        "counter",
        "Times the log shrank (copytruncate).",
        per(&|r| r.truncations),
    );
    let bans = rows
        .iter()
        .flat_map(|r| {
            r.stats
                .bans
                .iter()
                .map(|(set, n)| (format!("watch=\"{}\",set=\"{set}\"", r.watch), *n))
        })
        .collect();
    family("fwctl_watch_bans_total", "counter", "Bans made.", bans);
    let _ = writeln!(
        s,
        "# HELP fwctl_watch_start_time_seconds When watch started.\n# TYPE fwctl_watch_start_time_seconds gauge\nfwctl_watch_start_time_seconds {started}"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_metrics_read_as_documented() {
        let ev = Event {
            event: Kind::Ban,
            time: "2026-12-07T10:00:00Z".into(),
            watch: "sshd".into(),
            address: "203.0.113.5".into(),
            set: "blacklist".into(),
            hits: 6,
            within_s: 600,
            first: "2026-12-07T09:59:00Z".into(),
            last: "2026-12-07T10:00:00Z".into(),
            removeafter_s: 86_400,
            reason: None,
            at_us: Some(1),
        };
        assert!(
            ev.json().starts_with("{\"event\":\"watch_ban\""),
            "{}",
            ev.json()
        );
        assert_eq!(
            ev.human(),
            "2026-12-07T10:00:00Z watch sshd: banned 203.0.113.5 (6 hits within 10m, 2026-12-07T09:59:00Z .. 2026-12-07T10:00:00Z) into blacklist for 1d"
        );
        let mut st = Stats::default();
        st.bans.insert("blacklist".into(), 2);
        let m = render(
            &[Row {
                watch: "sshd".into(),
                stats: st.clone(),
                tracked: 3,
                evicted: 0,
                rotations: 1,
                truncations: 0,
            }],
            5,
        );
        assert!(
            m.contains("fwctl_watch_bans_total{watch=\"sshd\",set=\"blacklist\"} 2\n"),
            "{m}"
        );
        assert!(m.contains("fwctl_watch_tracked_sources{watch=\"sshd\"} 3\n"));
        assert!(stats_line("sshd", &st, 3, 0, "t", true).contains("\"event\":\"watch_stats\""));
    }
}
