//! `fwctl why ADDRESS` (pure): everything fwctl knows and would do about
//! one address or network, from facts the command gathers (the sets'
//! members, the state file's history, the never-ban policy, the cached
//! reputation score).

use crate::core::history::{Record, Why};
use crate::core::policy::{Policy, Refusal};
use crate::core::sets::Member;
use crate::units::addr::member;
use crate::units::duration::human;
use crate::units::time::utc;
use ipnet::IpNet;
use serde::Serialize;
use std::fmt::Write as _;

/// What the command read.
pub struct Facts<'a> {
    pub query: IpNet,
    pub now: i64,
    /// (set, its members), for every fwctl set in the kernel (None: the
    /// sets could not be read, e.g. not root).
    pub sets: Option<Vec<(String, Vec<Member>)>>,
    pub history: Vec<&'a Record>,
    pub policy: &'a Policy,
    /// The config's [blacklist] entries.
    pub blacklist: &'a [IpNet],
    /// The cached AbuseIPDB score and when it was asked.
    pub score: Option<(u8, i64)>,
    /// What the `[geo]` databases say of the query's address.
    pub geo: Option<crate::core::geo::Info>,
    /// Each `[[feed]]`'s last good list (name, entries).
    pub feeds: Vec<(String, Vec<IpNet>)>,
}

/// A feed entry that holds (or lies inside) the query.
#[derive(Debug, Serialize)]
pub struct FeedHit {
    pub feed: String,
    pub entry: String,
}

#[derive(Debug, Serialize)]
pub struct InSet {
    pub set: String,
    /// The member that holds the query (itself, or a network around it).
    pub member: String,
    /// Seconds left (None: permanent).
    pub left_s: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Ban {
    pub address: String,
    pub set: String,
    pub offences: u32,
    pub since: String,
    pub until: String,
    pub running: bool,
    /// The fleet host whose ban it is, if it came through `fwctl sync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Why>,
    /// An aggregate ban's members: the bans it replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub query: String,
    /// None: the kernel's sets were not read.
    pub sets: Option<Vec<InSet>>,
    pub bans: Vec<Ban>,
    /// "would be banned", or why it never is.
    pub verdict: String,
    pub never_ban: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blacklisted_by_config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reputation: Option<Score>,
    /// Country and AS (when `[geo]` is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<crate::core::geo::Info>,
    /// The feeds whose last good list holds it (at most 20 entries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<FeedHit>,
}

#[derive(Debug, Serialize)]
pub struct Score {
    pub score: u8,
    pub asked: String,
}

/// Whether two networks share an address.
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

pub fn report(f: &Facts) -> Report {
    let sets = f.sets.as_ref().map(|sets| {
        sets.iter()
            .flat_map(|(name, members)| {
                members
                    .iter()
                    .filter(|m| overlaps(&m.net, &f.query))
                    .map(move |m| InSet {
                        set: name.clone(),
                        member: m.net.to_string(),
                        left_s: m.left,
                    })
            })
            .collect()
    });
    let mut history: Vec<&Record> = f
        .history
        .iter()
        .copied()
        .filter(|r| overlaps(&r.addr, &f.query))
        .collect();
    history.sort_by_key(|r| std::cmp::Reverse(r.since));
    let bans = history
        .into_iter()
        .map(|r| Ban {
            address: r.addr.to_string(),
            set: r.set.clone(),
            offences: r.offences,
            since: utc(r.since),
            until: utc(r.until),
            running: r.until > f.now,
            from: r.from.clone(),
            why: r.why.clone(),
            members: r.members.iter().map(member).collect(),
        })
        .collect();
    let refusal: Option<Refusal> = f.policy.check(&f.query);
    let verdict = match &refusal {
        Some(r) => format!("never banned: {r}"),
        None => {
            "would be banned by a scan, watch or capture that counts it over a threshold".into()
        }
    };
    Report {
        query: f.query.to_string(),
        sets,
        bans,
        verdict,
        never_ban: refusal.is_some(),
        blacklisted_by_config: f
            .blacklist
            .iter()
            .find(|n| overlaps(n, &f.query))
            .map(|n| n.to_string()),
        reputation: f.score.map(|(score, at)| Score {
            score,
            asked: utc(at),
        }),
        geo: f.geo.clone(),
        feeds: f
            .feeds
            .iter()
            .flat_map(|(name, nets)| {
                nets.iter()
                    .filter(|n| overlaps(n, &f.query))
                    .map(move |n| FeedHit {
                        feed: name.clone(),
                        entry: n.to_string(),
                    })
            })
            .take(20)
            .collect(),
    }
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable") + "\n"
    }

    pub fn human(&self) -> String {
        let mut s = format!("{}\n", self.query);
        if let Some(g) = &self.geo {
            let _ = writeln!(s, "  country: {g}");
        }
        match &self.sets {
            None => s.push_str("  sets: not read (not root): run as root to see them\n"),
            Some(v) if v.is_empty() => s.push_str("  sets: in none of fwctl's sets\n"),
            Some(v) => {
                for m in v {
                    let left = m.left_s.map_or("permanent".to_string(), |l| {
                        format!("{} left", human(u64::from(l)))
                    });
                    let _ = writeln!(s, "  in {} as {} ({left})", m.set, m.member);
                }
            }
        }
        if let Some(b) = &self.blacklisted_by_config {
            let _ = writeln!(s, "  the config's [blacklist] holds {b}");
        }
        for f in &self.feeds {
            let _ = writeln!(s, "  feed {} lists {}", f.feed, f.entry);
        }
        if self.bans.is_empty() {
            s.push_str("  history: no ban recorded\n");
        }
        for b in &self.bans {
            let _ = writeln!(
                s,
                "  ban of {} into {}: offence {}, {} .. {}{}{}",
                b.address,
                b.set,
                b.offences,
                b.since,
                b.until,
                if b.running { " (running)" } else { "" },
                b.from
                    .as_ref()
                    .map(|h| format!(", from fleet host {h}"))
                    .unwrap_or_default()
            );
            if let Some(w) = &b.why {
                let _ = if w.hits == 0 {
                    // A ban by hand or from the fleet: nothing counted here.
                    writeln!(s, "    by {}: {} ({})", w.origin, w.rule, utc(w.first))
                } else {
                    writeln!(
                        s,
                        "    by {}: {}, {} hits within {} ({} .. {})",
                        w.origin,
                        w.rule,
                        w.hits,
                        human(w.window_s),
                        utc(w.first),
                        utc(w.last)
                    )
                };
                for e in &w.evidence {
                    let _ = writeln!(s, "    | {e}");
                }
            }
            if !b.members.is_empty() {
                let _ = writeln!(s, "    members: {}", b.members.join(", "));
            }
        }
        let _ = writeln!(s, "  verdict: {}", self.verdict);
        if let Some(r) = &self.reputation {
            let _ = writeln!(
                s,
                "  reputation: AbuseIPDB score {} (asked {})",
                r.score, r.asked
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::history::History;

    fn net(s: &str) -> IpNet {
        crate::units::addr::parse_addr(s).unwrap()
    }

    #[test]
    fn an_aggregate_ban_lists_its_members_and_their_evidence() {
        let mut h = History::default();
        let members: Vec<IpNet> = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
            .iter()
            .map(|a| net(a))
            .collect();
        for m in &members {
            h.record(*m, "blacklist", 1, 1000, 600);
            h.explain(
                m,
                Why {
                    origin: "scan".into(),
                    rule: "kernel blocked (tcp)".into(),
                    hits: 7,
                    window_s: 1800,
                    first: 900,
                    last: 990,
                    evidence: vec![format!("ports: 22 (7) from {m}")],
                },
                5,
            );
        }
        h.gather(
            net("203.0.113.0/24"),
            "blacklist",
            1600,
            &members,
            Why {
                origin: "aggregate".into(),
                rule: "3 bans within 1h in one /24".into(),
                hits: 21,
                window_s: 3600,
                first: 900,
                last: 990,
                evidence: vec!["member 203.0.113.1: kernel blocked (tcp)".into()],
            },
            1010,
        );
        // The members' bans ended; the prefix runs for the longest left.
        assert!(h.banned(&members[0], 1010).is_none());
        assert_eq!(h.banned(&net("203.0.113.0/24"), 1010).unwrap().until, 1600);
        let recs = h.records();
        let refs: Vec<&Record> = recs.iter().collect();
        let r = report(&Facts {
            geo: None,
            query: net("203.0.113.0/24"),
            now: 1010,
            sets: None,
            history: refs,
            policy: &Policy::default(),
            blacklist: &[],
            score: None,
            feeds: vec![],
        });
        let text = r.human();
        assert!(
            text.contains("ban of 203.0.113.0/24 into blacklist: offence 1")
                && text.contains("(running)"),
            "{text}"
        );
        assert!(
            text.contains("by aggregate: 3 bans within 1h in one /24"),
            "{text}"
        );
        assert!(
            text.contains("members: 203.0.113.1, 203.0.113.2, 203.0.113.3"),
            "{text}"
        );
        // Each member's own ban, with its evidence.
        assert!(
            text.contains("| ports: 22 (7) from 203.0.113.2/32"),
            "{text}"
        );
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let agg = j["bans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["why"]["origin"] == "aggregate")
            .unwrap();
        assert_eq!(agg["members"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn one_address_its_sets_bans_evidence_and_verdict() {
        let mut h = History::default();
        h.record(net("203.0.113.5"), "blacklist", 2, 1000, 600);
        h.explain(
            &net("203.0.113.5"),
            Why {
                origin: "watch".into(),
                rule: "sshd (sshd ssh)".into(),
                hits: 6,
                window_s: 600,
                first: 900,
                last: 1000,
                evidence: vec!["Failed password for root from 203.0.113.5".into()],
            },
            5,
        );
        h.record(net("198.51.100.9"), "blacklist", 1, 1000, 600);
        let policy = Policy {
            trusted: vec![net("192.0.2.0/24")],
            ..Policy::default()
        };
        let recs = h.records();
        let refs: Vec<&Record> = recs.iter().collect();
        let sets = vec![(
            "blacklist".to_string(),
            vec![
                Member {
                    net: net("203.0.113.5"),
                    left: Some(300),
                },
                Member {
                    net: net("203.0.113.0/28"),
                    left: None,
                },
                Member {
                    net: net("198.51.100.9"),
                    left: Some(9),
                },
            ],
        )];
        let r = report(&Facts {
            geo: None,
            query: net("203.0.113.5"),
            now: 1300,
            sets: Some(sets),
            history: refs.clone(),
            policy: &policy,
            blacklist: &[net("203.0.113.0/24")],
            score: Some((97, 990)),
            feeds: vec![("spamhaus".into(), vec![net("203.0.113.0/26")])],
        });
        let text = r.human();
        assert!(
            text.contains("in blacklist as 203.0.113.5/32 (5m left)"),
            "{text}"
        );
        assert!(
            text.contains("in blacklist as 203.0.113.0/28 (permanent)"),
            "{text}"
        );
        assert!(!text.contains("198.51.100.9"), "{text}");
        assert!(
            text.contains("offence 2") && text.contains("(running)"),
            "{text}"
        );
        assert!(
            text.contains("by watch: sshd (sshd ssh), 6 hits within 10m"),
            "{text}"
        );
        assert!(
            text.contains("| Failed password for root from 203.0.113.5"),
            "{text}"
        );
        assert!(text.contains("verdict: would be banned"), "{text}");
        assert!(text.contains("AbuseIPDB score 97"), "{text}");
        assert_eq!(r.blacklisted_by_config.as_deref(), Some("203.0.113.0/24"));
        assert!(
            text.contains("feed spamhaus lists 203.0.113.0/26"),
            "{text}"
        );
        // A trusted address: the verdict says which rule protects it.
        let r = report(&Facts {
            geo: None,
            query: net("192.0.2.7"),
            now: 1300,
            sets: None,
            history: refs,
            policy: &policy,
            blacklist: &[],
            score: None,
            feeds: Vec::new(),
        });
        assert!(
            r.never_ban && r.verdict.contains("trusted network 192.0.2.0/24"),
            "{}",
            r.verdict
        );
        assert!(r.human().contains("sets: not read"));
        assert!(r.json().contains("\"never_ban\": true"));
    }
}
