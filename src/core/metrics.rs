//! Metrics in the Prometheus text format (pure): capture's live counters as
//! its `/metrics` endpoint serves them, and what cron scans, apply and status
//! leave in node_exporter's textfile directory. The names here are the ones
//! the shipped dashboard and alert rules use (a test checks every one).

use crate::core::capture::events::Event;
use crate::core::state::State;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Ban latency buckets, in seconds (capture bans in about 0.1 ms).
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A text exposition being written: each family once, with HELP and TYPE.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A family of samples (counter or gauge), one per label set.
    pub fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: &[(Vec<(&str, &str)>, f64)],
    ) {
        self.head(name, help, kind);
        for (l, v) in samples {
            let _ = writeln!(self.out, "{name}{} {}", labels(l), number(*v));
        }
    }

    pub fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help, &[(vec![], v)]);
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.head(name, help, "histogram");
        let mut cum = 0;
        for (b, n) in LATENCY_BUCKETS.iter().zip(&h.counts) {
            cum += n;
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.out, "{name}_sum {}", number(h.sum));
        let _ = writeln!(self.out, "{name}_count {}", h.count);
    }

    pub fn text(self) -> String {
        self.out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A latency histogram over [`LATENCY_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); beyond the last: only in count.
    pub counts: [u64; LATENCY_BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// Per notification sink: sent, failed (given up), dropped (queue full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// What capture exports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureMetrics {
    pub frames: u64,
    /// Probes by protocol ("tcp", "udp").
    pub probes: BTreeMap<String, u64>,
    /// Scans detected by type ("SYN", "XMAS", ...).
    pub scans: BTreeMap<String, u64>,
    /// Bans by (set, source).
    pub bans: BTreeMap<(String, String), u64>,
    /// `[geo]`: bans by the `country` label of their address (the
    /// configured countries, "other", "unknown"; empty without `[geo]`).
    pub bans_by_country: BTreeMap<String, u64>,
    pub ban_failures: u64,
    /// Bans not made: forgeable evidence against an admin peer.
    pub spared: u64,
    pub latency: Histogram,
    pub kernel_drops: u64,
    pub tracked: u64,
    pub notify: BTreeMap<String, SinkCounts>,
    /// The kernel's sets: name -> (entries, capacity).
    pub sets: BTreeMap<String, (u64, u64)>,
    /// fwctl's rules changed behind its back, per family ("ipv4", "ipv6").
    pub drift: BTreeMap<String, bool>,
    pub started: i64,
}

impl CaptureMetrics {
    /// Count what an event tells: scans by type, bans by set, latency.
    pub fn observe(&mut self, ev: &Event) {
        match ev {
            Event::ScanDetected(s) => *self.scans.entry(s.scan_type.to_string()).or_default() += 1,
            Event::IpBlocked(b) if b.applied => {
                *self
                    .bans
                    .entry((b.set.clone(), "capture".to_string()))
                    .or_default() += 1;
                if let Some(us) = b.latency_us {
                    self.latency.observe(us as f64 / 1e6);
                }
            }
            _ => {}
        }
    }

    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        e.one(
            "fwctl_frames_total",
            "counter",
            "Frames capture read.",
            self.frames as f64,
        );
        let probes: Vec<_> = self
            .probes
            .iter()
            .map(|(p, n)| (vec![("proto", p.as_str())], *n as f64))
            .collect();
        e.family(
            "fwctl_probes_total",
            "counter",
            "Probes addressed to this host, by protocol.",
            &probes,
        );
        let scans: Vec<_> = self
            .scans
            .iter()
            .map(|(t, n)| (vec![("type", t.as_str())], *n as f64))
            .collect();
        e.family(
            "fwctl_scans_detected_total",
            "counter",
            "Port scans detected, by scan type.",
            &scans,
        );
        let bans: Vec<_> = self
            .bans
            .iter()
            .map(|((set, source), n)| {
                (
                    vec![("set", set.as_str()), ("source", source.as_str())],
                    *n as f64,
                )
            })
            .collect();
        e.family(
            "fwctl_bans_total",
            "counter",
            "Bans made, by set and by what made them.",
            &bans,
        );
        if !self.bans_by_country.is_empty() {
            let by: Vec<_> = self
                .bans_by_country
                .iter()
                .map(|(c, n)| (vec![("country", c.as_str())], *n as f64))
                .collect();
            e.family(
                "fwctl_capture_bans_by_country_total",
                "counter",
                "Bans capture made, by the country of the address ([geo] countries; the rest other, none unknown).",
                &by,
            );
        }
        e.one(
            "fwctl_ban_failures_total",
            "counter",
            "Bans the kernel refused.",
            self.ban_failures as f64,
        );
        e.one(
            "fwctl_capture_spoofable_spared_total",
            "counter",
            "Bans not made: evidence a forger can produce against a peer holding an established connection to an admin port.",
            self.spared as f64,
        );
        e.histogram(
            "fwctl_ban_latency_seconds",
            "From the kernel's receive time of the packet that crossed the threshold to the ipset's acknowledgement.",
            &self.latency,
        );
        e.one(
            "fwctl_kernel_drops_total",
            "counter",
            "Frames the kernel dropped before capture read them.",
            self.kernel_drops as f64,
        );
        e.one(
            "fwctl_tracked_sources",
            "gauge",
            "Sources the detector tracks now.",
            self.tracked as f64,
        );
        for (name, help, f) in [
            (
                "fwctl_notify_sent_total",
                "Notifications delivered, by sink.",
                (|c: &SinkCounts| c.sent) as fn(&SinkCounts) -> u64,
            ),
            (
                "fwctl_notify_failed_total",
                "Notifications given up on (kept in the outbox when retryable), by sink.",
                |c| c.failed,
            ),
            (
                "fwctl_notify_dropped_total",
                "Notifications dropped because the queue was full, by sink.",
                |c| c.dropped,
            ),
        ] {
            let s: Vec<_> = self
                .notify
                .iter()
                .map(|(k, c)| (vec![("sink", k.as_str())], f(c) as f64))
                .collect();
            e.family(name, "counter", help, &s);
        }
        let entries: Vec<_> = self
            .sets
            .iter()
            .map(|(k, (n, _))| (vec![("set", k.as_str())], *n as f64))
            .collect();
        e.family(
            "fwctl_set_entries",
            "gauge",
            "Members of each of fwctl's sets in the kernel.",
            &entries,
        );
        let cap: Vec<_> = self
            .sets
            .iter()
            .map(|(k, (_, c))| (vec![("set", k.as_str())], *c as f64))
            .collect();
        e.family(
            "fwctl_set_capacity",
            "gauge",
            "The most members each of fwctl's sets takes (maxelem).",
            &cap,
        );
        let drift: Vec<_> = self
            .drift
            .iter()
            .map(|(k, d)| (vec![("family", k.as_str())], f64::from(u8::from(*d))))
            .collect();
        e.family(
            "fwctl_rules_drift",
            "gauge",
            "1 while fwctl's rules differ from what the last apply installed.",
            &drift,
        );
        e.one(
            "fwctl_capture_start_time_seconds",
            "gauge",
            "When this capture started (Unix time).",
            self.started as f64,
        );
        e.text()
    }
}

/// What scan, apply and status leave for node_exporter's textfile
/// collector, from the state file (so every rule's last run is there,
/// whichever command wrote last) and the outbox's size.
pub fn textfile(state: &State, outbox: usize) -> String {
    let mut e = Exposition::default();
    let runs: Vec<(Vec<(&str, &str)>, &crate::core::state::ScanRun)> = state
        .scans
        .iter()
        .map(|s| {
            (
                vec![
                    ("rule", s.rule.as_str()),
                    ("type", s.kind.as_str()),
                    ("ipset", s.ipset.as_str()),
                ],
                s,
            )
        })
        .collect();
    type Field = fn(&crate::core::state::ScanRun) -> f64;
    let fields: [(&str, &str, Field); 7] = [
        (
            "fwctl_scan_last_run_timestamp_seconds",
            "When the scan rule last ran (Unix time).",
            |s| s.at as f64,
        ),
        (
            "fwctl_scan_duration_seconds",
            "How long the scan rule's last run took.",
            |s| s.duration_ms as f64 / 1000.0,
        ),
        (
            "fwctl_scan_lines_read",
            "Log lines the last run read.",
            |s| s.lines_read as f64,
        ),
        (
            "fwctl_scan_lines_matched",
            "Lines of the rule and type inside the window, last run.",
            |s| s.lines_matched as f64,
        ),
        (
            "fwctl_scan_lines_malformed",
            "Lines the last run could not read.",
            |s| s.lines_malformed as f64,
        ),
        (
            "fwctl_scan_offenders",
            "Sources over the threshold, last run.",
            |s| s.offenders as f64,
        ),
        ("fwctl_scan_bans", "Bans the last run made.", |s| {
            s.added as f64
        }),
    ];
    for (name, help, f) in fields {
        let samples: Vec<_> = runs.iter().map(|(l, s)| (l.clone(), f(s))).collect();
        e.family(name, "gauge", help, &samples);
    }
    if let Some(a) = &state.applied {
        e.one(
            "fwctl_apply_last_success_timestamp_seconds",
            "gauge",
            "When fwctl apply last installed the ruleset (Unix time).",
            a.at as f64,
        );
        let count = |v: &[String]| v.iter().filter(|l| l.starts_with("-A ")).count() as f64;
        e.family(
            "fwctl_apply_rules",
            "gauge",
            "fwctl's rules the last apply installed, per family.",
            &[
                (vec![("family", "ipv4")], count(&a.v4)),
                (vec![("family", "ipv6")], count(&a.v6)),
            ],
        );
        e.one(
            "fwctl_apply_sets",
            "gauge",
            "fwctl's sets the last apply installed.",
            a.sets as f64,
        );
    }
    if let Some(st) = &state.status {
        e.one(
            "fwctl_status_last_run_timestamp_seconds",
            "gauge",
            "When fwctl status last checked (Unix time).",
            st.at as f64,
        );
        e.one(
            "fwctl_status_problems",
            "gauge",
            "Problems the last check found.",
            st.problems.len() as f64,
        );
        e.family(
            "fwctl_rules_drift",
            "gauge",
            "1 while fwctl's rules differ from what the last apply installed.",
            &[
                (vec![("family", "ipv4")], f64::from(u8::from(st.drift[0]))),
                (vec![("family", "ipv6")], f64::from(u8::from(st.drift[1]))),
            ],
        );
        if !st.sets.is_empty() {
            let entries: Vec<_> = st
                .sets
                .iter()
                .map(|(n, e, _)| (vec![("set", n.as_str())], *e as f64))
                .collect();
            e.family(
                "fwctl_set_entries",
                "gauge",
                "Members of each of fwctl's sets in the kernel, at the last status.",
                &entries,
            );
            let cap: Vec<_> = st
                .sets
                .iter()
                .map(|(n, _, c)| (vec![("set", n.as_str())], *c as f64))
                .collect();
            e.family(
                "fwctl_set_capacity",
                "gauge",
                "The most members each of fwctl's sets takes (maxelem), at the last status.",
                &cap,
            );
        }
    }
    e.one(
        "fwctl_notify_outbox_events",
        "gauge",
        "Notifications waiting in the outbox for a later run.",
        outbox as f64,
    );
    e.text()
}

/// The AbuseIPDB report counters (`[reputation] report`), for the textfile.
pub fn abuse_reports(l: &crate::core::scan::abuse::Ledger, e: &mut Exposition) {
    if *l == crate::core::scan::abuse::Ledger::default() {
        return;
    }
    e.family(
        "fwctl_abuseipdb_reports_total",
        "counter",
        "Bans reported to AbuseIPDB, by result: sent, failed, refused (an address never reported), limited (reported within 15 minutes, or over a run's limit).",
        &[
            (vec![("result", "sent")], l.sent as f64),
            (vec![("result", "failed")], l.failed as f64),
            (vec![("result", "refused")], l.refused as f64),
            (vec![("result", "limited")], l.limited as f64),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_metrics_render_in_the_text_format() {
        let mut m = CaptureMetrics {
            frames: 10,
            spared: 3,
            ..CaptureMetrics::default()
        };
        m.probes.insert("tcp".into(), 7);
        m.bans.insert(("blacklist".into(), "capture".into()), 2);
        m.latency.observe(0.00012);
        m.latency.observe(0.003);
        m.notify.insert(
            "ops".into(),
            SinkCounts {
                sent: 1,
                failed: 0,
                dropped: 0,
            },
        );
        m.sets.insert("blacklist".into(), (5, 65536));
        m.drift.insert("ipv4".into(), true);
        let t = m.render();
        assert!(
            t.contains("# TYPE fwctl_frames_total counter\nfwctl_frames_total 10\n"),
            "{t}"
        );
        assert!(t.contains("fwctl_bans_total{set=\"blacklist\",source=\"capture\"} 2\n"));
        assert!(t.contains("fwctl_ban_latency_seconds_bucket{le=\"0.00025\"} 1\n"));
        assert!(t.contains("fwctl_ban_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(t.contains("fwctl_ban_latency_seconds_count 2\n"));
        assert!(t.contains("fwctl_notify_sent_total{sink=\"ops\"} 1\n"));
        assert!(t.contains("fwctl_set_capacity{set=\"blacklist\"} 65536\n"));
        assert!(t.contains("fwctl_rules_drift{family=\"ipv4\"} 1\n"));
        assert!(
            t.contains("fwctl_capture_spoofable_spared_total 3\n"),
            "{t}"
        );
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), "{a=\"x\\\"y\\\\z\\n\"}");
    }

    #[test]
    fn bans_by_country_are_exported_only_with_geo() {
        let mut m = CaptureMetrics::default();
        assert!(!m.render().contains("by_country"));
        m.bans_by_country.insert("NL".into(), 2);
        m.bans_by_country.insert("other".into(), 0);
        let t = m.render();
        assert!(
            t.contains("fwctl_capture_bans_by_country_total{country=\"NL\"} 2\n")
                && t.contains("fwctl_capture_bans_by_country_total{country=\"other\"} 0\n"),
            "{t}"
        );
    }
    #[test]
    fn the_textfile_has_every_rules_last_run_the_last_apply_and_status() {
        use crate::core::state::{Applied, Checked, ScanRun};
        let mut st = State::default();
        st.note_scan(ScanRun {
            at: 1_796_000_000,
            rule: "blocked".into(),
            kind: "tcp".into(),
            ipset: "throttle-hard".into(),
            lines_matched: 40,
            offenders: 3,
            added: 2,
            lines_read: 100,
            lines_malformed: 1,
            duration_ms: 1250,
        });
        st.applied = Some(Applied {
            at: 1_795_999_000,
            config: "/etc/fwctl/fwctl.toml".into(),
            digest: "d".into(),
            v4: vec![":FWCTL-INPUT".into(), "-A FWCTL-INPUT -j ACCEPT".into()],
            v6: vec![],
            sets: 8,
            form: 1,
        });
        st.status = Some(Checked {
            at: 1_796_000_100,
            problems: vec!["p".into()],
            drift: [false, true],
            notified: None,
            sets: vec![("blacklist".into(), 9, 10)],
        });
        let t = textfile(&st, 4);
        let l = "{rule=\"blocked\",type=\"tcp\",ipset=\"throttle-hard\"}";
        for want in [
            format!("fwctl_scan_last_run_timestamp_seconds{l} 1796000000\n"),
            format!("fwctl_scan_duration_seconds{l} 1.25\n"),
            format!("fwctl_scan_lines_read{l} 100\n"),
            format!("fwctl_scan_lines_matched{l} 40\n"),
            format!("fwctl_scan_lines_malformed{l} 1\n"),
            format!("fwctl_scan_offenders{l} 3\n"),
            format!("fwctl_scan_bans{l} 2\n"),
            "fwctl_apply_last_success_timestamp_seconds 1795999000\n".into(),
            "fwctl_apply_rules{family=\"ipv4\"} 1\n".into(),
            "fwctl_apply_sets 8\n".into(),
            "fwctl_status_problems 1\n".into(),
            "fwctl_rules_drift{family=\"ipv6\"} 1\n".into(),
            "fwctl_set_entries{set=\"blacklist\"} 9\n".into(),
            "fwctl_set_capacity{set=\"blacklist\"} 10\n".into(),
            "fwctl_notify_outbox_events 4\n".into(),
        ] {
            assert!(t.contains(&want), "{want}in:\n{t}");
        }
        // Each family once, with its HELP and TYPE.
        assert_eq!(t.matches("# TYPE fwctl_scan_bans gauge").count(), 1);
        // Nothing but the outbox before any run.
        let empty = textfile(&State::default(), 0);
        assert_eq!(
            empty.lines().filter(|l| !l.starts_with('#')).count(),
            1,
            "{empty}"
        );
    }
}
