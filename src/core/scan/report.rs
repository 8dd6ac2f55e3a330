//! What a scan run says (pure): one structure, printed as a human summary or
//! as one JSON document for scripts.

use super::count::Tally;
use super::decide::{ActionKind, Decision};
use super::FileRead;
use crate::core::config::pattern::Pattern;
use crate::core::logline::Malformed;
use crate::units::duration::human;
use crate::units::time::utc;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct Report {
    /// kernel, nginx, apache, sshd or a regex source's name.
    pub source: String,
    #[serde(skip)]
    pub top_label: &'static str,
    pub rule: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub howmany: u64,
    pub within_secs: u64,
    pub removeafter_secs: u64,
    pub window_start: String,
    pub window_end: String,
    pub dryrun: bool,
    /// The log files read, or "-" for stdin.
    pub files: Vec<FileRead>,
    pub lines_read: u64,
    pub lines_matched: u64,
    pub lines_outside_window: u64,
    pub lines_other_type: u64,
    pub lines_malformed: u64,
    pub malformed: Vec<MalformedKind>,
    pub offenders: Vec<Offender>,
    /// [reputation]: lookups made, cached, failed, and bans for a score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reputation: Option<super::reputation::Summary>,
    /// Matching lines per minute (for the baseline; not printed).
    #[serde(skip)]
    pub minutes: std::collections::BTreeMap<i64, u64>,
    pub added: u64,
    /// How long the one `ipset restore` that added them took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_ms: Option<u64>,
    /// The whole run: checks, read, decisions and the restore.
    pub duration_ms: u64,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct MalformedKind {
    pub reason: &'static str,
    pub count: u64,
    pub example: String,
}

#[derive(Debug, Serialize)]
pub struct Offender {
    pub address: String,
    pub family: &'static str,
    pub hits: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// Destination ports (kernel), statuses (web) or kinds of failure
    /// (sshd), most hit first.
    pub top_ports: Vec<PortHits>,
    /// Counted in bounded space: counts are lower bounds.
    pub ports_estimated: bool,
    /// sshd: the kinds of failure, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Web logs with --match: the patterns its requests matched, and the
    /// highest severity among them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    /// Its AbuseIPDB score, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<u8>,
    /// Why it is an offender at or below --howmany: the rule that made it one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banned_for: Option<String>,
    pub set: String,
    pub action: ActionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For "already blocked": the blacklist member that covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
}

impl Offender {
    /// Whether this run put it in its set.
    pub fn added(&self) -> bool {
        self.action == ActionKind::Added
    }
}

#[derive(Debug, Serialize)]
pub struct PortHits {
    pub port: u16,
    pub hits: u64,
}

/// The counts and examples of malformed lines, by reason.
pub fn malformed(t: &Tally) -> Vec<MalformedKind> {
    Malformed::ALL
        .iter()
        .filter(|m| t.malformed[m.index()] > 0)
        .map(|m| MalformedKind {
            reason: m.as_str(),
            count: t.malformed[m.index()],
            example: t.examples[m.index()].clone().unwrap_or_default(),
        })
        .collect()
}

pub fn offenders(
    decisions: &[Decision],
    kinds: &[String],
    patterns: &[Pattern],
    scores: &std::collections::BTreeMap<std::net::IpAddr, (u8, bool)>,
    min_score: Option<u8>,
) -> Vec<Offender> {
    decisions
        .iter()
        .map(|d| {
            let (names, severity) = crate::core::patterns::marked(patterns, d.source.marks);
            let top = d.source.ports.top(3);
            Offender {
                address: crate::units::addr::member(&d.net),
                family: if d.addr.is_ipv6() { "ipv6" } else { "ipv4" },
                hits: d.source.hits,
                first_seen: utc(d.source.first),
                last_seen: utc(d.source.last),
                top_ports: d
                    .source
                    .ports
                    .top(3)
                    .into_iter()
                    .map(|(port, hits)| PortHits { port, hits })
                    .collect(),
                ports_estimated: d.source.ports.estimated,
                // sshd's and the regex sources' kinds by name.
                kinds: top
                    .iter()
                    .filter_map(|(k, _)| kinds.get(usize::from(*k)).cloned())
                    .collect(),
                patterns: names,
                severity: severity.map(|s| s.as_str()),
                score: scores.get(&d.addr).map(|s| s.0),
                banned_for: scores.get(&d.addr).filter(|s| s.1).map(|s| {
                    format!(
                        "AbuseIPDB score {} >= min_score {} (below --howmany)",
                        s.0,
                        min_score.unwrap_or(0)
                    )
                }),
                set: d.set.clone(),
                action: d.action.kind(),
                reason: d.action.reason().map(str::to_string),
                blocked_by: d.action.blocked_by().map(str::to_string),
            }
        })
        .collect()
}

fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data") + "\n"
    }

    pub fn human(&self) -> String {
        let mut o = String::new();
        let what = if self.source == "kernel" {
            format!("rule {}, type {}", self.rule, self.kind)
        } else {
            format!("source {}, counting {}", self.source, self.kind)
        };
        let _ = writeln!(
            o,
            "fwctl scan{}: {what}, more than {} hits within {} ({} .. {})",
            if self.dryrun { " --dryrun" } else { "" },
            self.howmany,
            human(self.within_secs),
            self.window_start,
            self.window_end
        );
        for f in &self.files {
            let part = if f.path.as_os_str() == "-" || f.path.starts_with("journal (") {
                String::new()
            } else if f.from == 0 && f.to == f.size {
                format!(": all {}", size(f.size))
            } else {
                format!(
                    ": {} from offset {} of {} (the rest is outside the window)",
                    size(f.to - f.from),
                    size(f.from),
                    size(f.size)
                )
            };
            let _ = writeln!(o, "read {}{part}", f.path.display());
            if let Some(n) = &f.note {
                let _ = writeln!(o, "  note: {n}");
            }
        }
        let _ = writeln!(
            o,
            "lines: {} read, {} matched, {} outside the window, {} {}, {} malformed",
            self.lines_read,
            self.lines_matched,
            self.lines_outside_window,
            self.lines_other_type,
            match self.source.as_str() {
                "kernel" => "of other protocols",
                "nginx" | "apache" => "of other statuses or requests",
                _ => "of other kinds",
            },
            self.lines_malformed
        );
        for m in &self.malformed {
            let _ = writeln!(
                o,
                "  malformed ({}): {}, e.g. {}",
                m.reason, m.count, m.example
            );
        }
        if self.offenders.is_empty() {
            let _ = writeln!(o, "offenders: none");
        } else {
            let _ = writeln!(o, "offenders: {}", self.offenders.len());
            let _ = writeln!(
                o,
                "  {:<39} {:>8}  {:<20}  {:<20}  {:<26}  ACTION",
                "ADDRESS", "HITS", "FIRST SEEN", "LAST SEEN", self.top_label
            );
            for f in &self.offenders {
                // A source that hit many ports is counted in bounded space:
                // its counts are lower bounds, shown as "10+".
                let ports: Vec<String> = f
                    .top_ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        // sshd's kinds by name; ports and statuses by number.
                        let key = f
                            .kinds
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| p.port.to_string());
                        format!(
                            "{key}:{}{}",
                            p.hits,
                            if f.ports_estimated { "+" } else { "" }
                        )
                    })
                    .collect();
                let ports = if ports.is_empty() {
                    "-".to_string()
                } else {
                    ports.join(" ")
                };
                let action = match (&f.reason, &f.blocked_by, f.action) {
                    (Some(r), _, _) => format!("skipped: {r}"),
                    (None, Some(b), _) => format!("already blocked by {b}"),
                    (None, None, ActionKind::Added) => {
                        format!("added to {} (timeout {}s)", f.set, self.removeafter_secs)
                    }
                    (None, None, ActionKind::WouldAdd) => format!(
                        "would add to {} (timeout {}s)",
                        f.set, self.removeafter_secs
                    ),
                    (None, None, a) => format!("{a} in {}", f.set),
                };
                let action = match (&f.banned_for, f.score) {
                    (Some(b), _) => format!("{action}; {b}"),
                    (None, Some(s)) => format!("{action}; AbuseIPDB score {s}"),
                    _ => action,
                };
                let action = if f.patterns.is_empty() {
                    action
                } else {
                    format!(
                        "{action}; matched {} ({})",
                        f.patterns.join(", "),
                        f.severity.unwrap_or("low")
                    )
                };
                let _ = writeln!(
                    o,
                    "  {:<39} {:>8}  {:<20}  {:<20}  {:<26}  {action}",
                    f.address, f.hits, f.first_seen, f.last_seen, ports
                );
            }
            if self.offenders.iter().any(|f| f.ports_estimated) {
                let _ = writeln!(
                    o,
                    "  (TOP PORTS 443:10+ means at least 10 hits on port 443: a source that hit more than 8 ports is counted in bounded space)"
                );
            }
        }
        if let Some(r) = &self.reputation {
            let _ = writeln!(
                o,
                "reputation: {} asked, {} known from the cache, {} failed, {} banned for their score",
                r.asked, r.cached, r.failed, r.by_score
            );
        }
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        if !self.dryrun {
            let _ = match self.restore_ms {
                Some(ms) => writeln!(
                    o,
                    "added: {} (one batch into the kernel's sets, {ms} ms)",
                    self.added
                ),
                None => writeln!(o, "added: {}", self.added),
            };
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 << 20), "3.0 MiB");
        assert_eq!(size(1 << 30), "1.00 GiB");
    }
}
