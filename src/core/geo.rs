//! Countries and networks (pure): what a country database says of an
//! address ([`Info`], for events, `why`, `list --geo` and the metrics), and
//! a country's networks gathered from a walk of the database into the
//! members of its sets (`geo-XX`, `geo-XX_v6`). The database is written by
//! someone else, so everything taken from it is bounded: the networks a
//! walk may yield, the members a set may get, the length and characters of
//! an organisation's name. Reading the file is `sys::geodb`'s.

pub use crate::core::config::geo::{set_names, Country};
use crate::core::sets::Refill;
use crate::units::addr::Family;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The most networks a walk of a database may yield (with data or
/// without): GeoLite2-Country holds about 600 000 with data (both
/// families); a corrupt or hostile tree whose nodes share their children
/// could yield 2^128.
pub const MAX_WALK: u64 = 8_000_000;
/// The most characters of an AS organisation's name kept.
pub const ORG_MAX: usize = 64;
/// The metrics' `country` label of an address whose country is none of
/// the config's, and of one with no country at all.
pub const OTHER: &str = "other";
pub const UNKNOWN: &str = "unknown";

/// What the databases say of one address (all of it optional: an address
/// may be in neither, and the ASN database is optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
}

impl Info {
    /// From the database's raw strings: a country code only when it is
    /// one, the organisation cut and cleaned.
    pub fn from_raw(country: Option<&str>, asn: Option<u32>, org: Option<&str>) -> Info {
        Info {
            country: country
                .and_then(|c| Country::parse(c).ok())
                .map(|c| c.to_string()),
            asn,
            as_org: org.map(clean).filter(|o| !o.is_empty()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.asn.is_none() && self.as_org.is_none()
    }

    /// The metrics label: a country the config names, else "other"
    /// ("unknown": none), so the label has at most configured + 2 values.
    pub fn label<'a>(&'a self, configured: &[Country]) -> &'a str {
        match &self.country {
            None => UNKNOWN,
            Some(c) if configured.iter().any(|k| k.as_str() == c) => c.as_str(),
            Some(_) => OTHER,
        }
    }
}

impl fmt::Display for Info {
    /// "NL, AS64500 Example Net" (what is known of it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(c) = &self.country {
            parts.push(c.clone());
        }
        match (self.asn, &self.as_org) {
            (Some(n), Some(o)) => parts.push(format!("AS{n} {o}")),
            (Some(n), None) => parts.push(format!("AS{n}")),
            (None, Some(o)) => parts.push(o.clone()),
            (None, None) => {}
        }
        if parts.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// An organisation's name as it may reach a terminal, a chat and a label:
/// at most [`ORG_MAX`] characters, control characters and quotes made
/// spaces, runs of spaces folded.
fn clean(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(ORG_MAX) {
        let c = if c.is_control() || matches!(c, '"' | '\\') {
            ' '
        } else {
            c
        };
        if !(c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// Why a database gives no sets (nothing is changed for it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    #[error("it yields more than {0} networks (a corrupt database?)")]
    TooBig(u64),
    #[error("{set} would get {n} members, over [sets] maxelem {max}")]
    SetFull { set: String, n: usize, max: u32 },
}

/// The networks of the wanted countries, as a walk of the database finds
/// them (bounded by [`MAX_WALK`]). The walk comes in address order, so
/// each network is merged with the one before it as it comes (siblings
/// make their parent): what is kept never grows past what the sets take.
pub struct Gather {
    wanted: Vec<Country>,
    limit: u64,
    maxelem: u32,
    seen: u64,
    nets: BTreeMap<Country, Vec<IpNet>>,
}

/// Push `net`, then fold the last two while they are siblings.
fn push_merged(list: &mut Vec<IpNet>, net: IpNet) {
    list.push(net);
    while let [.., a, b] = list[..] {
        match (a.supernet(), b.supernet()) {
            (Some(pa), Some(pb)) if pa == pb && a != b && a.prefix_len() == b.prefix_len() => {
                list.truncate(list.len() - 2);
                list.push(pa);
            }
            _ => break,
        }
    }
}

impl Gather {
    /// Each family of a country's set within `maxelem`.
    pub fn new(wanted: &[Country], maxelem: u32) -> Gather {
        Gather::with_limit(wanted, maxelem, MAX_WALK)
    }

    /// At most `limit` networks (tests walk small ones).
    pub fn with_limit(wanted: &[Country], maxelem: u32, limit: u64) -> Gather {
        Gather {
            wanted: wanted.to_vec(),
            limit,
            maxelem,
            seen: 0,
            nets: wanted.iter().map(|c| (*c, Vec::new())).collect(),
        }
    }

    /// How many networks the walk yielded so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// One network of the walk and the country code its record names.
    pub fn add(&mut self, net: IpNet, code: Option<&str>) -> Result<(), WalkError> {
        self.seen += 1;
        if self.seen > self.limit {
            return Err(WalkError::TooBig(self.limit));
        }
        if let Some(c) = code.and_then(|c| Country::parse(c).ok()) {
            if self.wanted.contains(&c) {
                // An IPv4 network seen through an IPv6 tree's ::/96.
                let net = match net {
                    IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4() {
                        Some(a) if v6.network().segments()[..6] == [0; 6] => {
                            ipnet::Ipv4Net::new(a, v6.prefix_len() - 96)
                                .map(IpNet::V4)
                                .unwrap_or(net)
                        }
                        _ => net,
                    },
                    n => n,
                };
                let list = self.nets.entry(c).or_default();
                push_merged(list, net.trunc());
                // Both families together: over twice maxelem, one is over.
                if list.len() > 2 * self.maxelem as usize {
                    return Err(WalkError::SetFull {
                        set: set_names(c)[usize::from(net.addr().is_ipv6())].clone(),
                        n: list.len(),
                        max: self.maxelem,
                    });
                }
            }
        }
        Ok(())
    }

    /// Each wanted country's networks, adjacent and nested ones merged,
    /// each family within `maxelem`.
    pub fn finish(self) -> Result<BTreeMap<Country, Vec<IpNet>>, WalkError> {
        let maxelem = self.maxelem;
        let mut out = BTreeMap::new();
        for (c, nets) in self.nets {
            let merged = IpNet::aggregate(&nets);
            for (i, family) in [Family::V4, Family::V6].into_iter().enumerate() {
                let n = merged.iter().filter(|x| Family::of(x) == family).count();
                if n > maxelem as usize {
                    return Err(WalkError::SetFull {
                        set: set_names(c)[i].clone(),
                        n,
                        max: maxelem,
                    });
                }
            }
            out.insert(c, merged);
        }
        Ok(out)
    }
}

/// The refills of every country's pair of sets.
pub fn refills(nets: &BTreeMap<Country, Vec<IpNet>>, maxelem: u32) -> Vec<Refill> {
    let mut out = Vec::new();
    for (c, list) in nets {
        for (i, family) in [Family::V4, Family::V6].into_iter().enumerate() {
            out.push(Refill {
                set: set_names(*c)[i].clone(),
                family,
                maxelem: u64::from(maxelem),
                nets: list
                    .iter()
                    .filter(|n| Family::of(n) == family)
                    .copied()
                    .collect(),
            });
        }
    }
    out
}

/// One line per country: "geo-NL 2 networks (IPv4 1, IPv6 1)".
pub fn summary(nets: &BTreeMap<Country, Vec<IpNet>>) -> Vec<String> {
    nets.iter()
        .map(|(c, list)| {
            let v4 = list.iter().filter(|n| Family::of(n) == Family::V4).count();
            format!(
                "geo-{c}: {} networks (IPv4 {v4}, IPv6 {})",
                list.len(),
                list.len() - v4
            )
        })
        .collect()
}

/// The `fwctl_bans_by_country` gauge: running bans per `country` label
/// (each configured country, "other", "unknown": every label always
/// present, so the series stay few and steady).
pub fn bans_by_country(
    addrs: impl Iterator<Item = std::net::IpAddr>,
    look: &dyn Fn(std::net::IpAddr) -> Info,
    configured: &[Country],
) -> String {
    let mut counts: BTreeMap<String, u64> = configured
        .iter()
        .map(|c| c.to_string())
        .chain([OTHER.to_string(), UNKNOWN.to_string()])
        .map(|l| (l, 0))
        .collect();
    for a in addrs {
        let info = look(a);
        *counts
            .entry(info.label(configured).to_string())
            .or_default() += 1;
    }
    let samples: Vec<(Vec<(&str, &str)>, f64)> = counts
        .iter()
        .map(|(l, n)| (vec![("country", l.as_str())], *n as f64))
        .collect();
    let mut e = crate::core::metrics::Exposition::default();
    e.family(
        "fwctl_bans_by_country",
        "gauge",
        "Running bans in the state file per country of the address ([geo] countries; the rest other, none unknown).",
        &samples,
    );
    e.text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn the_wanted_countries_networks_are_merged_and_bounded() {
        let nl = Country::parse("NL").unwrap();
        let mut g = Gather::new(&[nl], 1024);
        g.add(net("198.51.100.0/25"), Some("NL")).unwrap();
        g.add(net("198.51.100.128/25"), Some("NL")).unwrap();
        g.add(net("203.0.113.0/24"), Some("DE")).unwrap();
        g.add(net("::c000:200/120"), Some("NL")).unwrap();
        g.add(net("2001:db8:1::/48"), Some("NL")).unwrap();
        g.add(net("2001:db8:2::/48"), Some("nl\n")).unwrap();
        assert_eq!(g.seen(), 6);
        // Merged as they came: the two /25s are one /24 already.
        assert_eq!(g.nets[&nl].len(), 3);
        let out = g.finish().unwrap();
        assert_eq!(
            out[&nl],
            vec![
                net("192.0.2.0/24"),
                net("198.51.100.0/24"),
                net("2001:db8:1::/48")
            ]
        );
        assert_eq!(
            summary(&out),
            vec!["geo-NL: 3 networks (IPv4 2, IPv6 1)".to_string()]
        );
        let r = refills(&out, 1024);
        assert_eq!(r[1].set, "geo-NL_v6");
        assert_eq!(r[1].nets, vec![net("2001:db8:1::/48")]);

        let mut g = Gather::new(&[nl], 2);
        for i in 0..3u8 {
            g.add(net(&format!("198.51.100.{}/32", i * 2)), Some("NL"))
                .unwrap();
        }
        assert!(matches!(g.finish(), Err(WalkError::SetFull { n: 3, .. })));
        // What is kept stops growing while the walk goes on.
        let mut g = Gather::new(&[nl], 2);
        let r: Vec<_> = (0..6u8)
            .map(|i| g.add(net(&format!("198.51.100.{}/32", i * 2)), Some("NL")))
            .collect();
        assert!(r[..4].iter().all(Result::is_ok));
        assert!(
            matches!(r[4], Err(WalkError::SetFull { n: 5, .. })),
            "{r:?}"
        );
        // Adjacent runs of any length fold to their covering networks.
        let mut g = Gather::new(&[nl], 1024);
        for i in 0..=255u16 {
            g.add(net(&format!("203.0.113.{i}/32")), Some("NL"))
                .unwrap();
        }
        assert_eq!(g.nets[&nl], vec![net("203.0.113.0/24")]);
    }

    #[test]
    fn a_walk_stops_at_its_bound() {
        let mut g = Gather::new(&[], 1024);
        g.seen = MAX_WALK;
        assert_eq!(
            g.add(net("192.0.2.0/24"), None),
            Err(WalkError::TooBig(MAX_WALK))
        );
    }

    #[test]
    fn what_the_database_says_is_cleaned_and_labelled_within_bounds() {
        let long = "x".repeat(200);
        let i = Info::from_raw(Some("NL"), Some(64500), Some("Example\n\"Net\"\x1b[31m"));
        assert_eq!(i.as_org.as_deref(), Some("Example Net [31m"));
        assert_eq!(i.to_string(), "NL, AS64500 Example Net [31m");
        let i2 = Info::from_raw(Some("n1"), None, Some(&long));
        assert_eq!(i2.country, None);
        assert_eq!(i2.as_org.unwrap().len(), ORG_MAX);
        let nl = Country::parse("NL").unwrap();
        assert_eq!(i.label(&[nl]), "NL");
        assert_eq!(i.label(&[]), OTHER);
        assert_eq!(Info::default().label(&[nl]), UNKNOWN);
        assert_eq!(Info::default().to_string(), "-");
    }

    #[test]
    fn the_country_label_has_the_configured_values_and_two_more() {
        let nl = Country::parse("NL").unwrap();
        let look = |a: std::net::IpAddr| match a.to_string().as_str() {
            "198.51.100.7" | "198.51.100.8" => Info::from_raw(Some("NL"), None, None),
            "203.0.113.7" => Info::from_raw(Some("DE"), None, None),
            _ => Info::default(),
        };
        let addrs = ["198.51.100.7", "198.51.100.8", "203.0.113.7", "192.0.2.1"]
            .map(|a: &str| a.parse::<std::net::IpAddr>().unwrap());
        let text = bans_by_country(addrs.into_iter(), &look, &[nl]);
        assert!(
            text.contains("fwctl_bans_by_country{country=\"NL\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("{country=\"other\"} 1\n"), "{text}");
        assert!(text.contains("{country=\"unknown\"} 1\n"), "{text}");
        assert_eq!(text.matches("fwctl_bans_by_country{").count(), 3);
    }
}
