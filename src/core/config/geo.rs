//! `[geo]`: the country (and optional ASN) database in the MaxMind DB
//! format, the countries dropped before any service, and each
//! `[[service]]`'s `allow_countries`, validated while the file is known.
//! Country codes become set names (`geo-XX`), so only two uppercase ASCII
//! letters pass.

use crate::units::Invalid;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// The most countries the config may name in all (each is a pair of sets).
pub const MAX_COUNTRIES: usize = 64;

/// An ISO 3166-1 alpha-2 code: two uppercase ASCII letters, nothing else
/// (it is spliced into set names and rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country([u8; 2]);

impl Country {
    pub fn parse(s: &str) -> Result<Country, Invalid> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Country([*a, *b])),
            _ => Err(Invalid(format!(
                "\"{}\" is not a country code; fix: two uppercase letters (ISO 3166-1 alpha-2), as \"DE\"",
                s.escape_default()
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII letters")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kernel sets of a country: IPv4, IPv6.
pub fn set_names(c: Country) -> [String; 2] {
    [format!("geo-{c}"), format!("geo-{c}_v6")]
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geo {
    pub country_db: PathBuf,
    pub asn_db: Option<PathBuf>,
    /// Dropped (and logged) before any service, like the blacklist.
    pub block_countries: Vec<Country>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    country_db: PathBuf,
    asn_db: Option<PathBuf>,
    #[serde(default)]
    block_countries: Vec<String>,
}

/// A list of codes, checked and deduplicated (order kept).
pub fn countries(what: &str, list: &[String]) -> Result<Vec<Country>, Invalid> {
    let mut out: Vec<Country> = Vec::new();
    for s in list {
        let c = Country::parse(s).map_err(|e| Invalid(format!("{what}: {e}")))?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

impl RawGeo {
    pub fn validate(self) -> Result<Geo, Invalid> {
        for (key, p) in [
            ("country_db", Some(&self.country_db)),
            ("asn_db", self.asn_db.as_ref()),
        ] {
            if let Some(p) = p {
                if !p.is_absolute() {
                    return Err(Invalid(format!(
                        "[geo] {key} = \"{}\" is not an absolute path; fix: the full path of the .mmdb file",
                        p.display()
                    )));
                }
            }
        }
        Ok(Geo {
            block_countries: countries("[geo] block_countries", &self.block_countries)?,
            country_db: self.country_db,
            asn_db: self.asn_db,
        })
    }
}

/// Every country with sets: the blocked ones, then each service's allowed
/// ones, once each; or why the lists do not go together.
pub fn all_countries(
    geo: Option<&Geo>,
    services: &[(&str, &[Country])],
) -> Result<Vec<Country>, Invalid> {
    let mut out: Vec<Country> = geo.map(|g| g.block_countries.clone()).unwrap_or_default();
    for (name, allow) in services {
        if allow.is_empty() {
            continue;
        }
        if geo.is_none() {
            return Err(Invalid(format!(
                "[[service]] \"{name}\" has allow_countries but there is no [geo] section; fix: add [geo] country_db = \"/var/lib/GeoIP/GeoLite2-Country.mmdb\""
            )));
        }
        for c in allow.iter() {
            if geo.is_some_and(|g| g.block_countries.contains(c)) {
                return Err(Invalid(format!(
                    "{c} is in [geo] block_countries and in the allow_countries of [[service]] \"{name}\"; fix: remove it from one (blocked countries are dropped before any service)"
                )));
            }
            if !out.contains(c) {
                out.push(*c);
            }
        }
    }
    if out.len() > MAX_COUNTRIES {
        return Err(Invalid(format!(
            "the config names {} countries; fix: at most {MAX_COUNTRIES} (each is a pair of sets)",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_uppercase_letters_are_a_country() {
        assert_eq!(Country::parse("NL").unwrap().as_str(), "NL");
        for bad in ["nl", "N", "NLD", "N1", "Ä", "N\n", "", "-X"] {
            assert!(Country::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            set_names(Country::parse("DE").unwrap()),
            ["geo-DE", "geo-DE_v6"]
        );
    }

    #[test]
    fn allowed_and_blocked_countries_are_checked_together() {
        let nl = Country::parse("NL").unwrap();
        let de = Country::parse("DE").unwrap();
        let geo = Geo {
            country_db: "/x.mmdb".into(),
            asn_db: None,
            block_countries: vec![nl],
        };
        assert_eq!(
            all_countries(Some(&geo), &[("web", &[de, de][..])]).unwrap(),
            vec![nl, de]
        );
        let e = all_countries(Some(&geo), &[("web", &[nl][..])]).unwrap_err();
        assert!(e.0.contains("NL is in [geo] block_countries"), "{e}");
        let e = all_countries(None, &[("web", &[de][..])]).unwrap_err();
        assert!(e.0.contains("no [geo] section"), "{e}");
    }
}
