//! Prefix aggregation (pure): when `min_offenders` of this host's bans fall
//! into one `v4_prefix`/`v6_prefix` network within `within`, that network
//! is banned instead, for the longest time any of them has left, and they
//! are taken out. Never over a never-ban address (the members then stay
//! banned one by one), never for bans another host made (the fleet's) or
//! made by hand (the admin chose their width), and only into sets that hold
//! networks. The prefix lengths were bounded by the fleet's and feeds'
//! minimums when the config was read.

use crate::core::config::aggregate::Aggregate;
use crate::core::history::{Record, Why};
use crate::core::policy::{Policy, Refusal};
use crate::core::sets::SetOp;
use crate::units::addr::member;
use ipnet::IpNet;
use std::collections::BTreeMap;

/// The origins whose bans are gathered: what fwctl counted itself.
pub const ORIGINS: [&str; 3] = ["scan", "watch", "capture"];
/// The origin an aggregate ban is recorded with.
pub const ORIGIN: &str = "aggregate";

/// One prefix ban to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gather {
    pub prefix: IpNet,
    pub set: String,
    /// When it ends: the latest end of its members.
    pub until: i64,
    /// The bans it replaces, in order.
    pub members: Vec<IpNet>,
}

impl Gather {
    /// Seconds left at `now` (at least 1).
    pub fn secs(&self, now: i64) -> u64 {
        (self.until - now).max(1) as u64
    }

    /// The set changes: the members out, the prefix in, in one batch.
    pub fn ops(&self, now: i64) -> Vec<SetOp> {
        let mut ops: Vec<SetOp> = self
            .members
            .iter()
            .map(|m| SetOp::Del {
                set: self.set.clone(),
                net: *m,
            })
            .collect();
        ops.push(SetOp::Add {
            set: self.set.clone(),
            net: self.prefix,
            timeout: Some(u32::try_from(self.secs(now)).unwrap_or(u32::MAX)),
        });
        ops
    }

    /// Why, for `fwctl why`: the members (their own records keep their
    /// evidence) and the rule that gathered them.
    pub fn why(&self, cfg: &Aggregate, records: &[&Record]) -> Why {
        let of = |m: &IpNet| records.iter().find(|r| r.addr == *m);
        let hits = self
            .members
            .iter()
            .filter_map(|m| of(m)?.why.as_ref().map(|w| w.hits))
            .sum();
        let times: Vec<(i64, i64)> = self
            .members
            .iter()
            .filter_map(|m| of(m)?.why.as_ref().map(|w| (w.first, w.last)))
            .collect();
        Why {
            origin: ORIGIN.into(),
            rule: format!(
                "{} bans within {} in one /{}",
                self.members.len(),
                crate::units::duration::human(cfg.within),
                self.prefix.prefix_len()
            ),
            hits,
            window_s: cfg.within,
            first: times.iter().map(|t| t.0).min().unwrap_or(0),
            last: times.iter().map(|t| t.1).max().unwrap_or(0),
            evidence: self
                .members
                .iter()
                .map(|m| {
                    let rule = of(m)
                        .and_then(|r| r.why.as_ref())
                        .map(|w| format!(": {} ({}, {} hits)", w.rule, w.origin, w.hits))
                        .unwrap_or_default();
                    format!("member {}{rule}", member(m))
                })
                .collect(),
        }
    }
}

/// A prefix that had enough bans but may not be banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub prefix: IpNet,
    pub members: Vec<IpNet>,
    pub refusal: Refusal,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub gather: Vec<Gather>,
    pub kept: Vec<Kept>,
}

/// Whether a record is one of the bans gathered: running at `now`,
/// started within `within`, this host's own, counted by fwctl.
fn counts(r: &Record, cfg: &Aggregate, now: i64) -> bool {
    r.until > now
        && r.since >= now - cfg.within as i64
        && r.from.is_none()
        && r.why
            .as_ref()
            .is_some_and(|w| ORIGINS.contains(&w.origin.as_str()))
}

/// What to aggregate at `now`, given the state's records, the never-ban
/// policy, and which sets hold networks (a hash:ip set cannot take one).
pub fn plan(
    records: &[&Record],
    cfg: &Aggregate,
    policy: &Policy,
    holds_networks: &dyn Fn(&str) -> bool,
    now: i64,
) -> Outcome {
    let mut out = Outcome::default();
    if !cfg.enabled {
        return out;
    }
    // (set, prefix) -> its members and their latest end; ordered, so the
    // outcome does not depend on the history's order.
    let mut groups: BTreeMap<(&str, IpNet), (Vec<IpNet>, i64)> = BTreeMap::new();
    for r in records.iter().filter(|r| counts(r, cfg, now)) {
        let len = cfg.prefix(matches!(r.addr, IpNet::V6(_)));
        // Only what is narrower than the prefix: an aggregate ban (or a
        // wider ban) is no member of one.
        if r.addr.prefix_len() <= len {
            continue;
        }
        let prefix = IpNet::new(r.addr.addr(), len).expect("prefix fits").trunc();
        let g = groups.entry((r.set.as_str(), prefix)).or_default();
        g.0.push(r.addr);
        g.1 = g.1.max(r.until);
    }
    for ((set, prefix), (mut members, until)) in groups {
        if members.len() < cfg.min_offenders || !holds_networks(set) {
            continue;
        }
        members.sort();
        match policy.check(&prefix) {
            Some(refusal) => out.kept.push(Kept {
                prefix,
                members,
                refusal,
            }),
            None => out.gather.push(Gather {
                prefix,
                set: set.to_string(),
                until,
                members,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_262_400;

    fn cfg() -> Aggregate {
        Aggregate {
            enabled: true,
            ..Aggregate::default()
        }
    }

    fn rec(addr: &str, set: &str, ago: i64, left: i64, origin: &str) -> Record {
        Record {
            addr: crate::units::addr::parse_addr(addr).unwrap(),
            set: set.into(),
            offences: 1,
            since: NOW - ago,
            until: NOW + left,
            updated: NOW - ago,
            from: None,
            why: Some(Why {
                origin: origin.into(),
                rule: "blocked (tcp)".into(),
                hits: 10,
                window_s: 1800,
                first: NOW - ago - 60,
                last: NOW - ago,
                evidence: vec![],
            }),
            members: vec![],
        }
    }

    fn three(prefix: &str) -> Vec<Record> {
        (1..=3)
            .map(|i| {
                rec(
                    &format!("{prefix}{i}"),
                    "blacklist",
                    60 * i,
                    600 * i,
                    "scan",
                )
            })
            .collect()
    }

    fn run(recs: &[Record], cfg: &Aggregate, policy: &Policy) -> Outcome {
        let refs: Vec<&Record> = recs.iter().collect();
        plan(&refs, cfg, policy, &|s| !s.starts_with("throttle"), NOW)
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn three_v4_offenders_become_their_slash_24_for_the_longest_time_left() {
        let recs = three("203.0.113.");
        let o = run(&recs, &cfg(), &Policy::default());
        assert_eq!(
            o.gather,
            [Gather {
                prefix: net("203.0.113.0/24"),
                set: "blacklist".into(),
                until: NOW + 1800,
                members: ["203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32"]
                    .map(net)
                    .to_vec(),
            }]
        );
        let g = &o.gather[0];
        assert_eq!(g.secs(NOW), 1800);
        let ops = g.ops(NOW);
        assert_eq!(ops.len(), 4);
        assert_eq!(
            ops[3],
            SetOp::Add {
                set: "blacklist".into(),
                net: net("203.0.113.0/24"),
                timeout: Some(1800)
            }
        );
        assert!(matches!(&ops[0], SetOp::Del { net: n, .. } if *n == net("203.0.113.1/32")));
        let refs: Vec<&Record> = recs.iter().collect();
        let why = g.why(&cfg(), &refs);
        assert_eq!(why.origin, "aggregate");
        assert_eq!(why.hits, 30);
        assert_eq!(why.evidence.len(), 3);
        assert!(
            why.evidence[0].starts_with("member 203.0.113.1: blocked (tcp) (scan"),
            "{:?}",
            why.evidence
        );
    }

    #[test]
    fn fewer_than_min_offenders_or_too_old_or_expired_do_not_gather() {
        let mut recs = three("203.0.113.");
        recs.pop();
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        // The third started before `within`.
        recs.push(rec("203.0.113.3", "blacklist", 3601, 600, "scan"));
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        // ... or has ended.
        recs.pop();
        recs.push(rec("203.0.113.3", "blacklist", 60, 0, "scan"));
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        // Exactly at `within` still counts.
        recs.pop();
        recs.push(rec("203.0.113.3", "blacklist", 3600, 5, "scan"));
        assert_eq!(run(&recs, &cfg(), &Policy::default()).gather.len(), 1);
        // A higher threshold.
        let c = Aggregate {
            min_offenders: 4,
            ..cfg()
        };
        assert!(run(&recs, &c, &Policy::default()).gather.is_empty());
    }

    #[test]
    fn a_prefix_over_a_never_ban_address_keeps_its_members() {
        let recs = three("203.0.113.");
        for policy in [
            Policy {
                trusted: vec![net("203.0.113.200/32")],
                ..Policy::default()
            },
            Policy {
                whitelist: [net("203.0.113.128/25")].into_iter().collect(),
                whitelist_name: "whitelist".into(),
                ..Policy::default()
            },
            Policy {
                own: vec!["203.0.113.254".parse().unwrap()],
                ..Policy::default()
            },
        ] {
            let o = run(&recs, &cfg(), &policy);
            assert!(o.gather.is_empty(), "{policy:?}");
            assert_eq!(o.kept.len(), 1);
            assert_eq!(o.kept[0].prefix, net("203.0.113.0/24"));
            assert_eq!(o.kept[0].members.len(), 3);
        }
    }

    #[test]
    fn ipv6_members_are_count_prefixes_gathered_into_the_v6_prefix() {
        let recs: Vec<Record> = ["2001:db8:1:1::/64", "2001:db8:1:2::/64", "2001:db8:1:ff::5"]
            .iter()
            .map(|a| rec(a, "blacklist_v6", 60, 600, "capture"))
            .collect();
        let o = run(&recs, &cfg(), &Policy::default());
        assert_eq!(o.gather.len(), 1);
        assert_eq!(o.gather[0].prefix, net("2001:db8:1::/48"));
        assert_eq!(o.gather[0].set, "blacklist_v6");
        // Different /48s, or families, do not mix.
        let recs: Vec<Record> = ["2001:db8:1::/64", "2001:db8:2::/64", "203.0.113.1"]
            .iter()
            .map(|a| rec(a, "blacklist_v6", 60, 600, "watch"))
            .collect();
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
    }

    #[test]
    fn only_own_counted_bans_in_network_sets_of_the_same_set_gather() {
        let mut recs = three("203.0.113.");
        // Made by hand, from the fleet, or an aggregate already.
        recs[0].why.as_mut().unwrap().origin = "manual".into();
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        let mut recs = three("203.0.113.");
        recs[1].from = Some("web-2".into());
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        let mut recs = three("203.0.113.");
        recs[2].why = None;
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        let mut recs = three("203.0.113.");
        recs[2].set = "other".into();
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        // A hash:ip set takes no network.
        let recs: Vec<Record> = (1..=3)
            .map(|i| rec(&format!("203.0.113.{i}"), "throttle-hard", 60, 60, "scan"))
            .collect();
        assert!(run(&recs, &cfg(), &Policy::default()).gather.is_empty());
        // A /24 ban is no member of a /24.
        let recs: Vec<Record> = ["203.0.113.0/24", "203.0.113.0/25", "203.0.113.128/25"]
            .iter()
            .map(|a| rec(a, "blacklist", 60, 60, "scan"))
            .collect();
        let o = run(&recs, &cfg(), &Policy::default());
        assert!(o.gather.is_empty());
        // Without an [aggregate] section nothing is gathered.
        let off = Aggregate {
            enabled: false,
            ..cfg()
        };
        assert!(run(&three("203.0.113."), &off, &Policy::default())
            .gather
            .is_empty());
    }

    #[test]
    fn a_wider_configured_prefix_gathers_wider_and_never_wider_than_it() {
        let c = Aggregate {
            v4_prefix: 28,
            ..cfg()
        };
        // .1, .2, .3 in 203.0.113.0/28; .17, .18 in .16/28: one gathers.
        let mut recs = three("203.0.113.");
        recs.push(rec("203.0.113.17", "blacklist", 60, 60, "scan"));
        recs.push(rec("203.0.113.18", "blacklist", 60, 60, "scan"));
        let o = run(&recs, &c, &Policy::default());
        assert_eq!(o.gather.len(), 1);
        assert_eq!(o.gather[0].prefix, net("203.0.113.0/28"));
        assert!(o
            .gather
            .iter()
            .all(|g| g.prefix.prefix_len() >= c.v4_prefix));
    }
}
