//! What watch adds to the baseline (pure): its entries' matching lines per
//! minute and bans, gathered by series (rule and type) and log. Entries
//! that read the same log under the same rule and type (a soft and a hard
//! threshold) read the same lines: a minute counts once, the largest of
//! theirs. Each log is its own share: the series adds them up, each log
//! counted once beside a cron scan of it (the baseline keeps a mark per log).

use std::collections::BTreeMap;

/// One `[[watch]]` entry's counts since the last time.
pub struct Entry<'a> {
    pub rule: &'a str,
    pub kind: &'a str,
    /// Where it reads: the log's path, or the journal's entries.
    pub from: &'a str,
    pub minutes: BTreeMap<i64, u64>,
    pub bans: u64,
}

/// One series' share from one log: rule, type, log, lines per minute, bans.
#[derive(Debug, PartialEq, Eq)]
pub struct Share {
    pub rule: String,
    pub kind: String,
    pub log: String,
    pub minutes: BTreeMap<i64, u64>,
    pub bans: u64,
}

pub fn gather(entries: &[Entry]) -> Vec<Share> {
    // (rule, kind, from) -> (minute -> count, bans)
    type Counts = (BTreeMap<i64, u64>, u64);
    let mut by_key: BTreeMap<(&str, &str, &str), Counts> = BTreeMap::new();
    for e in entries {
        let (minutes, bans) = by_key.entry((e.rule, e.kind, e.from)).or_default();
        *bans += e.bans;
        for (&m, &n) in &e.minutes {
            let c = minutes.entry(m).or_default();
            *c = (*c).max(n);
        }
    }
    by_key
        .into_iter()
        .map(|((rule, kind, log), (minutes, bans))| Share {
            rule: rule.into(),
            kind: kind.into(),
            log: log.into(),
            minutes,
            bans,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e<'a>(rule: &'a str, from: &'a str, minutes: &[(i64, u64)], bans: u64) -> Entry<'a> {
        Entry {
            rule,
            kind: "ssh",
            from,
            minutes: minutes.iter().copied().collect(),
            bans,
        }
    }

    #[test]
    fn one_log_counts_once_other_logs_and_rules_stay_apart() {
        let got = gather(&[
            // A soft and a hard threshold on one log: the same lines.
            e("sshd", "/var/log/auth.log", &[(10, 5), (11, 2)], 1),
            e("sshd", "/var/log/auth.log", &[(10, 5), (11, 3)], 2),
            // Another host's log, same rule and type: its own share (the
            // series adds them, each with its own mark).
            e("sshd", "/srv/other/auth.log", &[(10, 7)], 0),
            e("dovecot", "/var/log/mail.log", &[(10, 1)], 0),
        ]);
        let share = |rule: &str, log: &str, minutes: &[(i64, u64)], bans| Share {
            rule: rule.into(),
            kind: "ssh".into(),
            log: log.into(),
            minutes: minutes.iter().copied().collect(),
            bans,
        };
        assert_eq!(
            got,
            [
                share("dovecot", "/var/log/mail.log", &[(10, 1)], 0),
                share("sshd", "/srv/other/auth.log", &[(10, 7)], 0),
                share("sshd", "/var/log/auth.log", &[(10, 5), (11, 3)], 3),
            ]
        );
    }
}
