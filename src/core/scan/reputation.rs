//! Reputation (pure): which sources a run asks AbuseIPDB about (only those
//! near or over the threshold, most hits first, not while a fresh score is
//! cached, at most `max_lookups`), and which sources below the threshold a
//! high score bans. The asking is the system layer's part; a failure or a
//! timeout is counted and never stops the scan.

use super::count::{Source, Tally};
use crate::core::config::intel::Reputation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// "Near": at least this share of --howmany (in percent).
pub const NEAR_PERCENT: u64 = 50;
/// Most scores the state file keeps (oldest dropped first).
pub const MAX_CACHED: usize = 100_000;

/// A score and when it was had (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub score: u8,
    pub at: i64,
}

/// The scores kept in the state file, by address.
pub type Cache = BTreeMap<IpAddr, Score>;

/// Whom to ask: sources with hits >= howmany * NEAR_PERCENT / 100 (and at
/// least one), without a score fresher than the cache's age.
pub fn candidates(
    t: &Tally,
    howmany: u64,
    rep: &Reputation,
    cache: &Cache,
    now: i64,
) -> Vec<IpAddr> {
    let near = (howmany * NEAR_PERCENT / 100).max(1);
    let mut v: Vec<(IpAddr, u64)> = t
        .sources
        .iter()
        .filter_map(|(k, s)| {
            let a = super::count::addr(*k);
            // A folded IPv6 network is no address to ask about.
            if t.net_of(a).prefix_len() != t.net_of(a).max_prefix_len() {
                return None;
            }
            (s.hits >= near).then_some((a, s.hits))
        })
        .filter(|(a, _)| cache.get(a).is_none_or(|s| now - s.at >= rep.cache as i64))
        .collect();
    v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    v.truncate(rep.max_lookups as usize);
    v.into_iter().map(|(a, _)| a).collect()
}

/// The score of `a` if known and fresh.
pub fn fresh(cache: &Cache, a: &IpAddr, rep: &Reputation, now: i64) -> Option<u8> {
    cache
        .get(a)
        .filter(|s| now - s.at < rep.cache as i64)
        .map(|s| s.score)
}

/// Sources at or below the threshold whose fresh score reaches min_score:
/// offenders too.
pub fn below_threshold(
    t: &Tally,
    howmany: u64,
    rep: &Reputation,
    cache: &Cache,
    now: i64,
) -> Vec<(IpAddr, Source)> {
    let mut v: Vec<(IpAddr, Source)> = cache
        .iter()
        .filter(|(_, s)| s.score >= rep.min_score && now - s.at < rep.cache as i64)
        .filter_map(|(a, _)| {
            if t.net_of(*a).prefix_len() != t.net_of(*a).max_prefix_len() {
                return None;
            }
            let s = t.get(a)?;
            (s.hits <= howmany).then(|| (*a, s.clone()))
        })
        .collect();
    v.sort_by(|x, y| y.1.hits.cmp(&x.1.hits).then(x.0.cmp(&y.0)));
    v
}

/// Keep the cache bounded: expired scores go, then the oldest.
pub fn prune(cache: &mut Cache, rep_age: u64, now: i64) {
    cache.retain(|_, s| now - s.at < rep_age as i64);
    if cache.len() > MAX_CACHED {
        let mut ages: Vec<(i64, IpAddr)> = cache.iter().map(|(a, s)| (s.at, *a)).collect();
        ages.sort();
        for (_, a) in ages.iter().take(cache.len() - MAX_CACHED) {
            cache.remove(a);
        }
    }
}

/// Why AbuseIPDB's answer gives no score.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// serde_json's reason, as it words it.
    #[error("not JSON ({0})")]
    NotJson(String),
    #[error("no data.abuseConfidenceScore in the answer")]
    NoScore,
}

/// AbuseIPDB v2 `check`'s answer: `{"data": {"abuseConfidenceScore": N, ...}}`
/// (a score over 100 counts as 100).
pub fn parse_check(body: &[u8]) -> Result<u8, CheckError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| CheckError::NotJson(e.to_string()))?;
    let n = v["data"]["abuseConfidenceScore"]
        .as_u64()
        .ok_or(CheckError::NoScore)?;
    Ok(n.min(100) as u8)
}

/// What the run did with reputation, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub asked: u32,
    pub cached: u32,
    pub failed: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Offenders below --howmany banned for their score.
    pub by_score: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::logsource::LineParser;
    use crate::core::scan::count::TypeFilter;
    use crate::units::time::Zone;

    fn rep() -> Reputation {
        toml::from_str::<crate::core::config::intel::RawReputation>(
            "abuseipdb_key_file = \"/k\"\nmax_lookups = 2\nmin_score = 80\ncache = \"1h\"",
        )
        .unwrap()
        .validate()
        .unwrap()
    }

    /// A tally with sources of these hit counts (203.0.113.1, .2, ...).
    fn tally(hits: &[u32]) -> Tally {
        let now = 1_795_262_400;
        let mut p = LineParser::Ssh(crate::core::ssh_log::SshParser::new(
            Zone::fixed(0),
            now,
            (now - 600, now),
        ));
        let mut t = Tally::new(TypeFilter::All);
        for (i, n) in hits.iter().enumerate() {
            for _ in 0..*n {
                let line = format!(
                    "2026-11-21T11:59:00+00:00 h sshd[1]: Invalid user x from 203.0.113.{} port 1",
                    i + 1
                );
                t.feed_line(&mut p, line.as_bytes());
            }
        }
        t
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_sources_near_the_threshold_are_asked_most_hits_first_and_not_twice() {
        let t = tally(&[3, 12, 5, 9]);
        let mut cache = Cache::new();
        // howmany 10: near is 5 or more: .2 (12), .4 (9), .3 (5); two lookups at most.
        assert_eq!(
            candidates(&t, 10, &rep(), &cache, 1000),
            [ip("203.0.113.2"), ip("203.0.113.4")]
        );
        cache.insert(ip("203.0.113.2"), Score { score: 10, at: 900 });
        assert_eq!(
            candidates(&t, 10, &rep(), &cache, 1000),
            [ip("203.0.113.4"), ip("203.0.113.3")]
        );
        // An hour later the score is stale: asked again.
        assert_eq!(
            candidates(&t, 10, &rep(), &cache, 900 + 3600)[0],
            ip("203.0.113.2")
        );
    }

    #[test]
    fn a_high_score_bans_below_the_threshold() {
        let t = tally(&[3, 12, 5, 9]);
        let mut cache = Cache::new();
        cache.insert(
            ip("203.0.113.4"),
            Score {
                score: 95,
                at: 1000,
            },
        );
        cache.insert(
            ip("203.0.113.3"),
            Score {
                score: 50,
                at: 1000,
            },
        );
        cache.insert(
            ip("203.0.113.2"),
            Score {
                score: 99,
                at: 1000,
            },
        );
        let v = below_threshold(&t, 10, &rep(), &cache, 1001);
        // .2 is over the threshold anyway; .3 scores too low.
        assert_eq!(
            v.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            [ip("203.0.113.4")]
        );
        assert!(
            below_threshold(&t, 10, &rep(), &cache, 1000 + 3600).is_empty(),
            "stale"
        );
    }

    #[test]
    fn answers_and_the_bounded_cache() {
        assert_eq!(
            parse_check(br#"{"data":{"ipAddress":"203.0.113.5","abuseConfidenceScore":97}}"#),
            Ok(97)
        );
        assert_eq!(
            parse_check(b"{\"errors\":[{\"detail\":\"Authentication failed.\"}]}"),
            Err(CheckError::NoScore)
        );
        assert!(parse_check(b"<html>")
            .unwrap_err()
            .to_string()
            .starts_with("not JSON ("));
        let mut c = Cache::new();
        c.insert(ip("203.0.113.1"), Score { score: 1, at: 0 });
        c.insert(ip("203.0.113.2"), Score { score: 1, at: 5000 });
        prune(&mut c, 3600, 6000);
        assert_eq!(c.len(), 1);
    }
}
