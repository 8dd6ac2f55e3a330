//! `[aggregate]`: how IPv6 sources are counted (per `v6_count_prefix`, by
//! scan, watch and capture alike) and when bans of one prefix become one
//! ban of the prefix.
//!
//! A prefix ban is never wider than what the fleet and the feeds accept
//! (their `min_prefix_v4`/`min_prefix_v6`): a config asking for wider is
//! refused, not clamped, so what is banned is always what the file says.

use crate::units::duration::parse_window;
use crate::units::Invalid;
use serde::Deserialize;

/// The validated `[aggregate]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// IPv6 offenders are counted (and banned) per this prefix; 128: per address.
    pub v6_count_prefix: u8,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub min_offenders: usize,
    /// Seconds: bans started this long ago or less count.
    pub within: u64,
    /// Whether bans are aggregated at all: only with an `[aggregate]`
    /// section whose `min_offenders` is not 0 (the counting prefix applies
    /// without one).
    pub enabled: bool,
}

pub const DEFAULT_V6_COUNT_PREFIX: u8 = 64;

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            v6_count_prefix: DEFAULT_V6_COUNT_PREFIX,
            v4_prefix: 24,
            v6_prefix: 48,
            min_offenders: 3,
            within: 3600,
            enabled: false,
        }
    }
}

impl Aggregate {
    /// The aggregate prefix length of a family.
    pub fn prefix(&self, v6: bool) -> u8 {
        if v6 {
            self.v6_prefix
        } else {
            self.v4_prefix
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAggregate {
    v6_count_prefix: Option<u8>,
    v4_prefix: Option<u8>,
    v6_prefix: Option<u8>,
    min_offenders: Option<usize>,
    within: Option<String>,
}

/// The widest prefixes (IPv4, IPv6) anything fwctl bans may have: the
/// fleet's minimums (its defaults without a `[fleet]`) and every feed's.
pub struct Bounds {
    pub v4: (u8, &'static str),
    pub v6: (u8, &'static str),
}

impl Bounds {
    pub fn new(fleet: Option<(u8, u8)>, feeds: impl Iterator<Item = (u8, u8)>) -> Bounds {
        let (f4, f6) = fleet.unwrap_or((
            super::fleet::DEFAULT_MIN_PREFIX_V4,
            super::fleet::DEFAULT_MIN_PREFIX_V6,
        ));
        let mut b = Bounds {
            v4: (f4, "[fleet] min_prefix_v4"),
            v6: (f6, "[fleet] min_prefix_v6"),
        };
        for (p4, p6) in feeds {
            if p4 > b.v4.0 {
                b.v4 = (p4, "a [[feed]]'s min_prefix_v4");
            }
            if p6 > b.v6.0 {
                b.v6 = (p6, "a [[feed]]'s min_prefix_v6");
            }
        }
        b
    }
}

/// Validate the section. `alias` is the deprecated `[capture] ipv6_prefix`
/// when the config gives it (the same setting by its old name).
pub fn validate(
    raw: Option<RawAggregate>,
    alias: Option<u8>,
    bounds: &Bounds,
) -> Result<Aggregate, Invalid> {
    // `min_offenders = 0`: the section only sets the counting prefix.
    let enabled = raw.as_ref().is_some_and(|r| r.min_offenders != Some(0));
    let raw = raw.unwrap_or_default();
    let d = Aggregate::default();
    let v6_count_prefix = match (raw.v6_count_prefix, alias) {
        (Some(a), Some(b)) if a != b => {
            return Err(Invalid(format!(
                "[aggregate] v6_count_prefix = {a} but [capture] ipv6_prefix = {b}; fix: remove [capture] ipv6_prefix (its old name)"
            )))
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => d.v6_count_prefix,
    };
    if !(32..=128).contains(&v6_count_prefix) {
        return Err(Invalid(format!(
            "[aggregate] v6_count_prefix = {v6_count_prefix}; fix: 32 to 128 (64: one /64 per source, 128: each address)"
        )));
    }
    let v4_prefix = raw.v4_prefix.unwrap_or(d.v4_prefix);
    if !(8..=32).contains(&v4_prefix) {
        return Err(Invalid(format!(
            "[aggregate] v4_prefix = {v4_prefix}; fix: 8 to 32 (e.g. 24)"
        )));
    }
    let v6_prefix = raw.v6_prefix.unwrap_or(d.v6_prefix);
    if !(16..=128).contains(&v6_prefix) {
        return Err(Invalid(format!(
            "[aggregate] v6_prefix = {v6_prefix}; fix: 16 to 128 (e.g. 48)"
        )));
    }
    if enabled && v6_prefix > v6_count_prefix {
        return Err(Invalid(format!(
            "[aggregate] v6_prefix = {v6_prefix} is longer than v6_count_prefix = {v6_count_prefix}; fix: a v6_prefix of at most {v6_count_prefix} (the sources it gathers are /{v6_count_prefix}s)"
        )));
    }
    for (key, len, (min, by)) in [
        ("v4_prefix", v4_prefix, bounds.v4),
        ("v6_prefix", v6_prefix, bounds.v6),
        ("v6_count_prefix", v6_count_prefix, bounds.v6),
    ] {
        // Only a section that aggregates bans wider prefixes; the
        // counting prefix is always in force.
        let checked = enabled || key == "v6_count_prefix";
        if checked && len < min {
            return Err(Invalid(format!(
                "[aggregate] {key} = {len} is wider than {by} = {min}; fix: a {key} of {min} or more (fwctl never bans wider than its minimum prefix)"
            )));
        }
    }
    let min_offenders = raw.min_offenders.unwrap_or(d.min_offenders);
    if min_offenders != 0 && !(2..=65_536).contains(&min_offenders) {
        return Err(Invalid(format!(
            "[aggregate] min_offenders = {min_offenders}; fix: 2 to 65536 (0: never aggregate, only count IPv6 per v6_count_prefix)"
        )));
    }
    let within = match raw.within {
        Some(w) => parse_window(&w).map_err(|e| Invalid(format!("[aggregate] within = {e}")))?,
        None => d.within,
    };
    Ok(Aggregate {
        v6_count_prefix,
        v4_prefix,
        v6_prefix,
        min_offenders,
        within,
        enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, alias: Option<u8>, fleet: Option<(u8, u8)>) -> Result<Aggregate, String> {
        let raw: RawAggregate = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(Some(raw), alias, &Bounds::new(fleet, std::iter::empty())).map_err(|e| e.0)
    }

    #[test]
    fn defaults_and_the_issue_example() {
        let none = validate(None, None, &Bounds::new(None, std::iter::empty())).unwrap();
        assert_eq!(none.v6_count_prefix, 64);
        assert!(!none.enabled);
        let a = parse(
            "v6_count_prefix = 64\nv4_prefix = 24\nv6_prefix = 48\nmin_offenders = 3\nwithin = \"1h\"",
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            (
                a.v6_count_prefix,
                a.v4_prefix,
                a.v6_prefix,
                a.min_offenders,
                a.within,
                a.enabled
            ),
            (64, 24, 48, 3, 3600, true)
        );
        assert_eq!((a.prefix(false), a.prefix(true)), (24, 48));
    }

    #[test]
    fn the_old_capture_key_is_an_alias() {
        let none = Bounds::new(None, std::iter::empty());
        assert_eq!(
            validate(None, Some(128), &none).unwrap().v6_count_prefix,
            128
        );
        assert_eq!(
            parse("v6_count_prefix = 56", Some(56), None)
                .unwrap()
                .v6_count_prefix,
            56
        );
        let e = parse("v6_count_prefix = 64", Some(128), None).unwrap_err();
        assert!(e.contains("remove [capture] ipv6_prefix"), "{e}");
    }

    #[test]
    fn bad_values_and_prefixes_wider_than_the_minimums_are_refused() {
        for (text, want) in [
            ("v6_count_prefix = 31", "32 to 128"),
            ("v6_count_prefix = 129", "32 to 128"),
            ("v4_prefix = 7", "8 to 32"),
            ("v4_prefix = 33", "8 to 32"),
            ("v6_prefix = 15", "16 to 128"),
            ("v6_prefix = 80", "longer than v6_count_prefix = 64"),
            ("v4_prefix = 16", "wider than [fleet] min_prefix_v4 = 24"),
            ("v6_prefix = 32", "wider than [fleet] min_prefix_v6 = 48"),
            (
                "v6_count_prefix = 40\nv6_prefix = 40",
                "v6_prefix = 40 is wider",
            ),
            ("min_offenders = 1", "2 to 65536"),
            ("within = \"soon\"", "[aggregate] within"),
            ("max = 3", "unknown field"),
        ] {
            let e = parse(text, None, None).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        // A fleet that accepts wider lets the config aggregate wider.
        let a = parse("v4_prefix = 16\nv6_prefix = 32", None, Some((16, 32))).unwrap();
        assert_eq!((a.v4_prefix, a.v6_prefix), (16, 32));
        // A feed's narrower minimum is a bound too.
        let b = Bounds::new(Some((16, 32)), [(20, 40)].into_iter());
        let raw: RawAggregate = toml::from_str("v4_prefix = 16").unwrap();
        let e = validate(Some(raw), None, &b).unwrap_err().0;
        assert!(
            e.contains("wider than a [[feed]]'s min_prefix_v4 = 20"),
            "{e}"
        );
        // min_offenders = 0: counting only, no aggregation, no bound on
        // the aggregate prefixes.
        let a = parse(
            "v6_count_prefix = 128\nmin_offenders = 0\nv4_prefix = 16",
            None,
            None,
        )
        .unwrap();
        assert!(!a.enabled && a.v6_count_prefix == 128);
        // Without a section only the counting prefix is bound.
        let e = validate(None, Some(40), &Bounds::new(None, std::iter::empty()))
            .unwrap_err()
            .0;
        assert!(e.contains("v6_count_prefix = 40 is wider"), "{e}");
    }
}
