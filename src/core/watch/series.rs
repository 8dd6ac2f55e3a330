//! What watch adds to the baseline (pure): its entries' matching lines per
//! minute and bans, gathered by series (rule and type). Entries that read
//! the same log under the same rule and type (a soft and a hard threshold)
//! read the same lines: a minute counts once, the largest of theirs.
//! Entries of other logs under the same rule and type add up.

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

/// One series' share: rule, type, lines per minute, bans.
#[derive(Debug, PartialEq, Eq)]
pub struct Share {
    pub rule: String,
    pub kind: String,
    pub minutes: BTreeMap<i64, u64>,
    pub bans: u64,
}

pub fn gather(entries: &[Entry]) -> Vec<Share> {
    // (rule, kind) -> from -> minute -> count
    type Logs<'a> = BTreeMap<&'a str, BTreeMap<i64, u64>>;
    let mut by_key: BTreeMap<(&str, &str), (Logs, u64)> = BTreeMap::new();
    for e in entries {
        let (logs, bans) = by_key.entry((e.rule, e.kind)).or_default();
        *bans += e.bans;
        let log = logs.entry(e.from).or_default();
        for (&m, &n) in &e.minutes {
            let c = log.entry(m).or_default();
            *c = (*c).max(n);
        }
    }
    by_key
        .into_iter()
        .map(|((rule, kind), (logs, bans))| {
            let mut minutes = BTreeMap::new();
            for counts in logs.values() {
                for (&m, &n) in counts {
                    *minutes.entry(m).or_default() += n;
                }
            }
            Share {
                rule: rule.into(),
                kind: kind.into(),
                minutes,
                bans,
            }
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
    fn one_log_counts_once_other_logs_add_up_other_rules_stay_apart() {
        let got = gather(&[
            // A soft and a hard threshold on one log: the same lines.
            e("sshd", "/var/log/auth.log", &[(10, 5), (11, 2)], 1),
            e("sshd", "/var/log/auth.log", &[(10, 5), (11, 3)], 2),
            // Another host's log, same rule and type: more lines.
            e("sshd", "/srv/other/auth.log", &[(10, 7)], 0),
            e("dovecot", "/var/log/mail.log", &[(10, 1)], 0),
        ]);
        assert_eq!(
            got,
            [
                Share {
                    rule: "dovecot".into(),
                    kind: "ssh".into(),
                    minutes: [(10, 1)].into_iter().collect(),
                    bans: 0,
                },
                Share {
                    rule: "sshd".into(),
                    kind: "ssh".into(),
                    minutes: [(10, 12), (11, 3)].into_iter().collect(),
                    bans: 3,
                },
            ]
        );
    }
}
