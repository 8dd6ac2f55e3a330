//! `[reputation]` (AbuseIPDB's check endpoint, asked about offenders near
//! the threshold) and `[[feed]]` (lists of known-bad networks that
//! `fwctl feeds update` downloads), validated while the file is known.

use crate::units::Invalid;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub const ABUSEIPDB_URL: &str = "https://api.abuseipdb.com/api/v2/check";
/// AbuseIPDB's v2 `report` endpoint, where `report = true` posts bans.
pub const ABUSEIPDB_REPORT_URL: &str = "https://api.abuseipdb.com/api/v2/report";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reputation {
    /// The API key's file (never the key in the config).
    pub key_file: PathBuf,
    pub url: String,
    /// A score (0-100) at which an offender is banned below --howmany.
    pub min_score: u8,
    /// How long a score is kept in the state file (seconds).
    pub cache: u64,
    pub max_lookups: u32,
    pub timeout: Duration,
    /// `report = true`: scan's bans are reported to `report_url`.
    pub report: bool,
    pub report_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReputation {
    abuseipdb_key_file: PathBuf,
    url: Option<String>,
    min_score: Option<u8>,
    cache: Option<String>,
    max_lookups: Option<u32>,
    timeout: Option<String>,
    report: Option<bool>,
    report_url: Option<String>,
}

fn http_url(what: &str, s: &str) -> Result<(), Invalid> {
    // Shown redacted: a path or query may hold an access token.
    let shown = super::notify::redact(s);
    let u = url::Url::parse(s).map_err(|e| Invalid(format!("{what} is not a URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(Invalid(format!(
            "{what} \"{shown}\" must be http:// or https:// with a host"
        )));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Invalid(format!(
            "{what} \"{shown}\" holds a user name or password; fix: keep secrets out of the config"
        )));
    }
    Ok(())
}

/// The kernel sets of a feed: IPv4, IPv6.
pub fn set_names(name: &str) -> [String; 2] {
    [format!("feed-{name}"), format!("feed-{name}_v6")]
}

/// A duration within bounds, or the error naming the key and the range.
pub(super) fn duration(
    what: &str,
    s: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, Invalid> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= min && d <= max => Ok(d),
        _ => Err(Invalid(format!(
            "{what} = \"{s}\"; fix: a duration from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ))),
    }
}

impl RawReputation {
    pub fn validate(self) -> Result<Reputation, Invalid> {
        let url = self.url.unwrap_or_else(|| ABUSEIPDB_URL.to_string());
        http_url("[reputation] url", &url)?;
        let report_url = self
            .report_url
            .unwrap_or_else(|| ABUSEIPDB_REPORT_URL.to_string());
        http_url("[reputation] report_url", &report_url)?;
        let min_score = self.min_score.unwrap_or(90);
        if !(1..=100).contains(&min_score) {
            return Err(Invalid(format!(
                "[reputation] min_score = {min_score}; fix: 1 to 100"
            )));
        }
        let cache = match &self.cache {
            None => 86_400,
            Some(c) => duration(
                "[reputation] cache",
                c,
                Duration::from_secs(60),
                Duration::from_secs(30 * 86_400),
            )?
            .as_secs(),
        };
        let max_lookups = self.max_lookups.unwrap_or(100);
        if max_lookups > 10_000 {
            return Err(Invalid(format!(
                "[reputation] max_lookups = {max_lookups}; fix: at most 10000 a run"
            )));
        }
        let timeout = match &self.timeout {
            None => Duration::from_secs(3),
            Some(t) => duration(
                "[reputation] timeout",
                t,
                Duration::from_millis(100),
                Duration::from_secs(30),
            )?,
        };
        Ok(Reputation {
            key_file: self.abuseipdb_key_file,
            url,
            min_score,
            cache,
            max_lookups,
            timeout,
            report: self.report.unwrap_or(false),
            report_url,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feed {
    pub name: String,
    pub url: String,
    /// How often `feeds update` fetches it (seconds).
    pub every: u64,
    pub max_entries: usize,
    /// The widest entry taken, per family: a shorter prefix is refused.
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// The most addresses the whole feed may cover, per family.
    pub max_coverage: Coverage,
}

/// How many addresses a feed may cover, per family, counted after
/// overlapping entries are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    pub v4: u128,
    pub v6: u128,
}

impl Default for Coverage {
    /// One /8 of IPv4, one /32 of IPv6.
    fn default() -> Coverage {
        Coverage {
            v4: 1 << (32 - 8),
            v6: 1 << (128 - 32),
        }
    }
}

/// `max_coverage = { v4 = "/8", v6 = "/32" }`: per family, what one network
/// of that prefix covers ("/N"), or a number of addresses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoverage {
    v4: Option<Amount>,
    v6: Option<Amount>,
}

enum Amount {
    Addresses(u64),
    Prefix(String),
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"/N\" (what one /N network covers) or a number of addresses")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Amount, E> {
                Ok(Amount::Addresses(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Amount, E> {
                // A negative count is refused by the range check.
                Ok(Amount::Addresses(u64::try_from(n).unwrap_or(0)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Amount, E> {
                Ok(Amount::Prefix(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Amount {
    /// The number of addresses, or None when it does not fit the family.
    fn addresses(&self, bits: u8) -> Option<u128> {
        match self {
            Amount::Addresses(n) => {
                (*n >= 1 && u128::from(*n) <= 1u128 << bits.min(64)).then_some(u128::from(*n))
            }
            Amount::Prefix(p) => {
                let n: u8 = p.trim().strip_prefix('/')?.parse().ok()?;
                (n <= bits).then(|| 1u128.checked_shl(u32::from(bits - n)).unwrap_or(u128::MAX))
            }
        }
    }
}

/// An amount of addresses as a person reads it: "/8" when it is what one
/// network covers, else the number.
pub fn amount(n: u128, bits: u8) -> String {
    if n == u128::MAX && bits == 128 {
        return "/0".into();
    }
    if n.is_power_of_two() && n.trailing_zeros() <= u32::from(bits) {
        return format!("/{}", u32::from(bits) - n.trailing_zeros());
    }
    n.to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    name: String,
    url: String,
    every: Option<String>,
    max_entries: Option<usize>,
    min_prefix_v4: Option<u8>,
    min_prefix_v6: Option<u8>,
    max_coverage: Option<RawCoverage>,
}

/// A feed's name becomes part of its sets' names (`feed-NAME`, `_v6`).
pub const MAX_NAME: usize = 16;

impl RawFeed {
    pub fn validate(self) -> Result<Feed, Invalid> {
        let n = &self.name;
        let ok = !n.is_empty()
            && n.len() <= MAX_NAME
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !ok {
            return Err(Invalid(format!(
                "[[feed]] name \"{n}\": fix: 1 to {MAX_NAME} of A-Z a-z 0-9 - _ (it names the feed's sets, feed-{n} and feed-{n}_v6)"
            )));
        }
        http_url(&format!("[[feed]] {n}: url"), &self.url)?;
        let every = match &self.every {
            None => 12 * 3600,
            Some(e) => duration(
                &format!("[[feed]] {n}: every"),
                e,
                Duration::from_secs(300),
                Duration::from_secs(30 * 86_400),
            )?
            .as_secs(),
        };
        let max_entries = self.max_entries.unwrap_or(200_000);
        if !(1..=1_000_000).contains(&max_entries) {
            return Err(Invalid(format!(
                "[[feed]] {n}: max_entries = {max_entries}; fix: 1 to 1000000"
            )));
        }
        let min_prefix_v4 = self.min_prefix_v4.unwrap_or(8);
        if !(8..=32).contains(&min_prefix_v4) {
            return Err(Invalid(format!(
                "[[feed]] {n}: min_prefix_v4 = {min_prefix_v4}; fix: 8 to 32 (an entry wider than /{min_prefix_v4} is refused)"
            )));
        }
        let min_prefix_v6 = self.min_prefix_v6.unwrap_or(32);
        if !(16..=128).contains(&min_prefix_v6) {
            return Err(Invalid(format!(
                "[[feed]] {n}: min_prefix_v6 = {min_prefix_v6}; fix: 16 to 128 (an entry wider than /{min_prefix_v6} is refused)"
            )));
        }
        let mut max_coverage = Coverage::default();
        if let Some(c) = &self.max_coverage {
            for (family, bits, raw, into) in [
                ("v4", 32, &c.v4, &mut max_coverage.v4),
                ("v6", 128, &c.v6, &mut max_coverage.v6),
            ] {
                if let Some(a) = raw {
                    *into = a.addresses(bits).ok_or_else(|| {
                        Invalid(format!(
                            "[[feed]] {n}: max_coverage {family} = {}; fix: \"/N\" (what one /N network covers, N from 0 to {bits}) or a number of addresses from 1 to 2^{}",
                            match a {
                                Amount::Addresses(x) => x.to_string(),
                                Amount::Prefix(p) => format!("\"{p}\""),
                            },
                            bits.min(64)
                        ))
                    })?;
                }
            }
        }
        Ok(Feed {
            name: self.name,
            url: self.url,
            every,
            max_entries,
            min_prefix_v4,
            min_prefix_v6,
            max_coverage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(t: &str) -> Result<Reputation, Invalid> {
        toml::from_str::<RawReputation>(&format!("abuseipdb_key_file = \"/k\"\n{t}"))
            .unwrap()
            .validate()
    }

    #[test]
    fn report_is_off_by_default_and_its_url_is_checked() {
        let r = rep("").unwrap();
        assert!(!r.report);
        assert_eq!(r.report_url, ABUSEIPDB_REPORT_URL);
        let r = rep("report = true\nreport_url = \"http://127.0.0.1:9/api/v2/report\"").unwrap();
        assert!(r.report && r.report_url.ends_with("/report"));
        let e = rep("report_url = \"ftp://x\"").unwrap_err().0;
        assert!(e.contains("[reputation] report_url"), "{e}");
        let e = rep("report_url = \"https://u:hunter2@x/r\"").unwrap_err().0;
        assert!(e.contains("fix:") && !e.contains("hunter2"), "{e}");
    }
}
