//! What a real scan run does once its bans are in and recorded: count its
//! lines and bans into the baseline (and tell an anomaly), and report its
//! bans to AbuseIPDB when `[reputation] report = true`. Neither can fail
//! the run: a problem is a warning, and the reports are bounded in number
//! and time. Also what live capture adds to the baseline (its scans and
//! bans, gathered in memory and written once a minute).

use super::notify::Notifier;
use crate::core::baseline::{self, Key, What};
use crate::core::config::Config;
use crate::core::notify::Notice;
use crate::core::scan::abuse::{self, Ban, Ledger, Summary};
use crate::core::scan::report::Report;
use crate::sys::{sidefile, statefile};
use crate::units::time::utc;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The baseline's file, beside the state file.
pub fn baseline_path(state_file: &Path) -> PathBuf {
    statefile::beside(state_file, "baseline.json")
}

/// The AbuseIPDB report ledger's file, beside the state file.
pub fn ledger_path(state_file: &Path) -> PathBuf {
    statefile::beside(state_file, "abuseipdb-reports.json")
}

/// Most time a run spends reporting, whatever the timeouts add up to.
const REPORT_BUDGET: Duration = Duration::from_secs(15);

/// Count the run into the baseline, judge the last complete hour of every
/// series, and tell the anomalies not told before.
pub fn count(
    cfg: &Config,
    state_file: &Path,
    report: &Report,
    log: &str,
    now: i64,
    n: Option<&Notifier>,
) {
    let run = Counted {
        rule: &report.rule,
        kind: &report.kind,
        log,
        minutes: &report.minutes,
        lines_until: now,
        bans: report.added,
    };
    count_series(cfg, state_file, &[run], now, n);
}

/// What a scan run, or watch over its last minute, adds to one rule's
/// series: matching lines per minute of their time, and bans made.
pub struct Counted<'a> {
    pub rule: &'a str,
    pub kind: &'a str,
    /// The log read (its path, or the journal's matches): each log's lines
    /// are counted once into the rule's series.
    pub log: &'a str,
    pub minutes: &'a std::collections::BTreeMap<i64, u64>,
    /// Only whole minutes before this time's are counted.
    pub lines_until: i64,
    pub bans: u64,
}

/// [`count`] for any counter of lines: the minutes before `now`'s not
/// counted before (a cron scan and watch on the same rule and log share
/// the series' mark for that log, and each minute is taken once, by
/// whichever comes first). Every run in one write of the file, judged
/// once (watch's logs and rules of a minute).
pub fn count_series(
    cfg: &Config,
    state_file: &Path,
    runs: &[Counted],
    now: i64,
    n: Option<&Notifier>,
) {
    let r = sidefile::update(
        &baseline_path(state_file),
        now,
        baseline::parse,
        baseline::to_text,
        |b| {
            for run in runs {
                let lines = Key::new(What::Lines, run.rule, run.kind);
                let bans = Key::new(What::Bans, run.rule, run.kind);
                b.add_minutes(&lines, run.log, run.minutes, run.lines_until);
                b.add(&bans, now, run.bans);
            }
            b.judge(now, &cfg.baseline)
        },
    );
    match r {
        Ok((anomalies, warning)) => {
            if let Some(w) = warning {
                super::say!("fwctl: warning: baseline: {w}");
            }
            let Some(n) = n else { return };
            let notices: Vec<Notice> = anomalies
                .into_iter()
                .map(|(k, e)| Notice::Anomaly {
                    what: k.what.as_str().into(),
                    rule: k.rule,
                    kind: k.kind,
                    hour: utc(e.hour * 3600),
                    count: e.count,
                    mean: e.mean,
                    days: e.days,
                    ratio: e.ratio,
                    over_percent: cfg.baseline.over_percent,
                })
                .collect();
            if !notices.is_empty() {
                n.send_all(notices);
            }
        }
        Err(e) => super::say!("fwctl: warning: the baseline was not counted ({e})"),
    }
}

/// A post's outcome: done, or the error and whether to stop the run's reports.
pub type Posted = Result<(), (String, bool)>;

/// Report the run's bans to AbuseIPDB (`post` posts one; the real one is
/// `sys::http::AbuseIpdb::report`). Returns what happened, for the report.
pub fn report_bans(
    cfg: &Config,
    state_file: &Path,
    report: &Report,
    now: i64,
    post: &mut dyn FnMut(&abuse::Report) -> Posted,
) -> Summary {
    let within = crate::units::duration::human(report.within_secs);
    let bans: Vec<Ban> = report
        .offenders
        .iter()
        .filter(|o| o.added())
        .filter_map(|o| {
            Some(Ban {
                ip: o.address.parse().ok()?,
                categories: abuse::categories(&report.source, &report.rule, &o.patterns),
                comment: abuse::comment(&report.rule, &report.kind, o.hits, &within),
            })
        })
        .collect();
    report_list(cfg, state_file, bans, now, post)
}

/// Report `bans` (scan's, or watch's from its reporter thread): chosen
/// under the ledger's lock (never a private, documentation or trusted
/// address, once per address per 15 minutes, at most
/// [`abuse::MAX_PER_RUN`]), posted within [`REPORT_BUDGET`], counted.
pub fn report_list(
    cfg: &Config,
    state_file: &Path,
    bans: Vec<Ban>,
    now: i64,
    post: &mut dyn FnMut(&abuse::Report) -> Posted,
) -> Summary {
    let mut s = Summary::default();
    if bans.is_empty() {
        return s;
    }
    let path = ledger_path(state_file);
    // Chosen and marked under the lock, posted after it: another run at
    // the same moment does not report them again.
    let chosen = sidefile::update(
        &path,
        now,
        abuse::parse,
        abuse::to_text,
        |l: &mut Ledger| l.choose(bans, &cfg.trusted, now, &mut s),
    );
    let chosen = match chosen {
        Ok((c, warning)) => {
            if let Some(w) = warning {
                super::say!("fwctl: warning: AbuseIPDB reports: {w}");
            }
            c
        }
        Err(e) => {
            s.error = Some(format!("the report ledger: {e}"));
            return s;
        }
    };
    let started = Instant::now();
    for r in &chosen {
        if started.elapsed() > REPORT_BUDGET {
            s.failed += 1;
            s.error.get_or_insert_with(|| "out of time".into());
            continue;
        }
        match post(r) {
            Ok(()) => s.sent += 1,
            Err((e, stop)) => {
                s.failed += 1;
                s.error.get_or_insert(e);
                if stop {
                    s.stopped = true;
                    // The rest would fail the same way: counted, not tried.
                    s.failed += (chosen.len() as u32).saturating_sub(s.sent + s.failed);
                    break;
                }
            }
        }
    }
    let (sent, failed) = (u64::from(s.sent), u64::from(s.failed));
    if sent + failed == 0 {
        return s;
    }
    if let Err(e) = sidefile::update(
        &path,
        now,
        abuse::parse,
        abuse::to_text,
        |l: &mut Ledger| {
            l.sent += sent;
            l.failed += failed;
        },
    ) {
        super::say!("fwctl: warning: AbuseIPDB reports: the counts were not kept ({e})");
    }
    s
}

/// Capture's scans and bans per hour, not yet in the baseline's file
/// (series rule `capture`, type `all`; the scan runs judge them).
#[derive(Default)]
pub struct Pending {
    counts: std::collections::BTreeMap<(What, i64), u64>,
}

impl Pending {
    pub fn note(&mut self, ev: &crate::core::capture::events::Event, now: i64) {
        use crate::core::capture::events::Event;
        let what = match ev {
            Event::ScanDetected(_) => What::Scans,
            Event::IpBlocked(b) if b.applied => What::Bans,
            _ => return,
        };
        *self
            .counts
            .entry((what, baseline::hour_of(now)))
            .or_default() += 1;
    }

    /// Add what was gathered to the file; kept for the next try when the
    /// file cannot be written (bounded: one entry per hour and kind).
    pub fn flush(&mut self, state_file: &Path, now: i64) {
        if self.counts.is_empty() {
            return;
        }
        self.counts
            .retain(|(_, h), _| now / 3600 - h < baseline::HOURS as i64);
        let counts = &self.counts;
        let r = sidefile::update(
            &baseline_path(state_file),
            now,
            baseline::parse,
            baseline::to_text,
            |b| {
                for (&(what, hour), &n) in counts {
                    b.add(&Key::new(what, "capture", "all"), hour * 3600, n);
                }
            },
        );
        match r {
            Ok((_, warning)) => {
                if let Some(w) = warning {
                    super::say!("fwctl: warning: baseline: {w}");
                }
                self.counts.clear();
            }
            Err(e) => super::say!("fwctl: warning: the baseline was not counted ({e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scan::decide::ActionKind;
    use crate::core::scan::report::Offender;

    fn offender(a: &str, action: ActionKind) -> Offender {
        Offender {
            address: a.into(),
            family: "ipv4",
            hits: 600,
            first_seen: String::new(),
            last_seen: String::new(),
            top_ports: vec![],
            ports_estimated: false,
            kinds: vec![],
            patterns: vec![],
            severity: None,
            score: None,
            banned_for: None,
            set: "blacklist".into(),
            action,
            reason: None,
            blocked_by: None,
        }
    }

    fn report(offenders: Vec<Offender>) -> Report {
        Report {
            source: "kernel".into(),
            top_label: "Ports",
            rule: "blocked".into(),
            kind: "tcp".into(),
            howmany: 500,
            within_secs: 1800,
            removeafter_secs: 3600,
            window_start: String::new(),
            window_end: String::new(),
            dryrun: false,
            files: vec![],
            lines_read: 0,
            lines_matched: 0,
            lines_outside_window: 0,
            lines_other_type: 0,
            lines_malformed: 0,
            malformed: vec![],
            offenders,
            reputation: None,
            minutes: Default::default(),
            added: 0,
            restore_ms: None,
            duration_ms: 0,
            notes: vec![],
        }
    }

    /// The decision end to end with the ledger file: documentation and
    /// trusted addresses never reach `post`, a failure is counted and
    /// stops nothing else, and the 15 minutes hold across runs. (The
    /// reportable addresses are only strings handed to a closure here.)
    #[test]
    fn reports_are_chosen_counted_and_kept_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let mut cfg = Config::builtin();
        cfg.trusted.push("8.8.4.0/24".parse().unwrap());
        let r = report(vec![
            offender("203.0.113.5", ActionKind::Added),
            offender("8.8.4.4", ActionKind::Added),
            offender("8.8.8.8", ActionKind::Added),
            offender("9.9.9.9", ActionKind::Added),
            offender("1.1.1.1", ActionKind::AlreadyListed),
        ]);
        let mut posted = Vec::new();
        let s = report_bans(&cfg, &state, &r, 10_000, &mut |rep| {
            posted.push(rep.clone());
            if rep.ip.to_string() == "9.9.9.9" {
                Err(("HTTP 422".into(), false))
            } else {
                Ok(())
            }
        });
        let ips: Vec<String> = posted.iter().map(|r| r.ip.to_string()).collect();
        assert_eq!(ips, ["8.8.8.8", "9.9.9.9"]);
        assert_eq!(posted[0].categories, [14]);
        assert_eq!(
            posted[0].comment,
            "fwctl scan rule blocked (tcp): 600 matching log lines within 30m"
        );
        assert_eq!((s.sent, s.failed, s.refused, s.limited), (1, 1, 2, 0));
        // Ten minutes later, the same bans: nothing is posted.
        let mut again = 0;
        let s = report_bans(&cfg, &state, &r, 10_600, &mut |_| {
            again += 1;
            Ok(())
        });
        assert_eq!((again, s.limited), (0, 2));
        let (l, _) = sidefile::read(&ledger_path(&state), abuse::parse).unwrap();
        assert_eq!((l.sent, l.failed, l.refused, l.limited), (1, 1, 4, 2));
        // The service down: one try, the rest counted as failed.
        let s = report_bans(&cfg, &state, &r, 20_000, &mut |_| {
            Err(("connection refused".into(), true))
        });
        assert_eq!((s.sent, s.failed), (0, 2));
        assert_eq!(s.error.as_deref(), Some("connection refused"));
    }

    /// Capture's scans and bans go into series of their own, once.
    #[test]
    fn capture_counts_reach_the_file_once() {
        use crate::core::capture::events::Event;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let mut p = Pending::default();
        let scan = Event::ScanDetected(crate::core::capture::events::ScanDetected {
            time: String::new(),
            src: "192.0.2.1".into(),
            scan_type: "SYN",
            nmap: "-sS".into(),
            reason: String::new(),
            ports: vec![],
            port_count: 0,
            service_ports: vec![],
            probes: 0,
            first_seen: String::new(),
            duration_s: 0,
            profile: String::new(),
            action: String::new(),
            same_ports_as: vec![],
            note: None,
        });
        let now = 1_796_000_000;
        p.note(&scan, now);
        p.note(&scan, now);
        p.flush(&state, now);
        p.flush(&state, now + 60);
        let (b, _) = sidefile::read(&baseline_path(&state), baseline::parse).unwrap();
        let s = b.get(&Key::new(What::Scans, "capture", "all")).unwrap();
        assert_eq!(s.get(baseline::hour_of(now)), Some(2));
    }
}
