//! The `[geo]` databases (MaxMind DB format: GeoLite2, DB-IP lite ...),
//! read with the `maxminddb` crate: a country's networks for its sets
//! (a bounded walk of the whole tree, `core::geo::Gather`) and what the
//! databases say of one address ([`Db`], the `GeoLookup` port). A file
//! that is missing, too big or not a MaxMind DB is one error line naming
//! the file and the fix; the caller then changes nothing.

use crate::core::config::geo::Geo;
use crate::core::geo::{Country, Gather, Info, WalkError};
use crate::ports::GeoLookup;
use ipnet::IpNet;
use maxminddb::{path, Reader, WithinOptions};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The biggest database read: GeoLite2-Country is about 10 MB, ASN 10 MB,
/// City 70 MB.
pub const MAX_BYTES: u64 = 256 << 20;
/// Records whose decoded country is remembered during a walk (by offset).
const CACHE: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum GeoDbError {
    #[error("[geo] {key} {}: {why}; fix: {fix}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        why: String,
        fix: &'static str,
    },
}

const FIX_OPEN: &str = "install the database there (e.g. geoipupdate) or correct the path";
const FIX_FORMAT: &str = "download the database again (a MaxMind DB .mmdb file)";

fn err(key: &'static str, path: &Path, why: String, fix: &'static str) -> GeoDbError {
    GeoDbError::File {
        key,
        path: path.to_path_buf(),
        why,
        fix,
    }
}

/// Read and open one database (bounded in size).
pub fn open(key: &'static str, path: &Path) -> Result<Reader<Vec<u8>>, GeoDbError> {
    let f = std::fs::File::open(path).map_err(|e| err(key, path, e.to_string(), FIX_OPEN))?;
    let mut buf = Vec::new();
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(key, path, e.to_string(), FIX_OPEN))?;
    if buf.len() as u64 > MAX_BYTES {
        return Err(err(
            key,
            path,
            format!("over {} MiB", MAX_BYTES >> 20),
            FIX_FORMAT,
        ));
    }
    Reader::from_source(buf).map_err(|e| {
        err(
            key,
            path,
            format!("not a MaxMind DB ({})", one_line(&e.to_string())),
            FIX_FORMAT,
        )
    })
}

/// A library message on one line, bounded.
fn one_line(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(160)
        .collect();
    s
}

/// What a walk found, and what it cost.
pub struct Walked {
    pub nets: BTreeMap<Country, Vec<IpNet>>,
    /// Networks the database yielded.
    pub seen: u64,
    pub bytes: u64,
    pub took: Duration,
}

/// The networks of `countries` in the country database (adjacent ones
/// merged), each family within `maxelem`; or the one-line reason none.
pub fn networks(geo: &Geo, countries: &[Country], maxelem: u32) -> Result<Walked, GeoDbError> {
    walk(geo, countries, maxelem, crate::core::geo::MAX_WALK)
}

/// [`networks`], at most `limit` networks walked.
fn walk(geo: &Geo, countries: &[Country], maxelem: u32, limit: u64) -> Result<Walked, GeoDbError> {
    let started = Instant::now();
    let key = "country_db";
    let path = &geo.country_db;
    let reader = open(key, path)?;
    let bad = |why: String| err(key, path, why, FIX_FORMAT);
    // Too many networks for a set is the config's to fix; the rest the file's.
    let walk_err = |e: WalkError| match e {
        WalkError::SetFull { .. } => err(key, path, e.to_string(), "raise [sets] maxelem"),
        e => bad(e.to_string()),
    };
    let mut gather = Gather::with_limit(countries, maxelem, limit);
    let mut cache: HashMap<usize, Option<String>> = HashMap::new();
    // Networks without data are yielded too, so that the bound counts
    // every leaf: a tree whose nodes share their children could otherwise
    // lead the walk through 2^128 empty leaves without yielding one.
    let walk = reader
        .networks(WithinOptions::default().include_networks_without_data())
        .map_err(|e| bad(one_line(&e.to_string())))?;
    for item in walk {
        let found = item.map_err(|e| bad(one_line(&e.to_string())))?;
        let net = found.network().map_err(|e| bad(one_line(&e.to_string())))?;
        let net = IpNet::new(net.ip(), net.prefix()).map_err(|e| bad(e.to_string()))?;
        if !found.has_data() {
            gather.add(net, None).map_err(walk_err)?;
            continue;
        }
        let code = match found.offset().and_then(|o| cache.get(&o)) {
            Some(c) => c.clone(),
            None => {
                let c = country_of(&found).map_err(|e| bad(one_line(&e.to_string())))?;
                if let Some(o) = found.offset() {
                    if cache.len() < CACHE {
                        cache.insert(o, c.clone());
                    }
                }
                c
            }
        };
        gather.add(net, code.as_deref()).map_err(walk_err)?;
    }
    let seen = gather.seen();
    let nets = gather.finish().map_err(walk_err)?;
    Ok(Walked {
        nets,
        seen,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        took: started.elapsed(),
    })
}

/// The record's country: `country.iso_code`, else (anycast, satellite
/// providers) `registered_country.iso_code`. Anything else is no code.
fn country_of<S: AsRef<[u8]>>(
    found: &maxminddb::LookupResult<'_, S>,
) -> Result<Option<String>, maxminddb::MaxMindDbError> {
    let short = |c: Option<String>| c.filter(|c| c.len() <= 8);
    if let Some(c) = short(found.decode_path(&path!["country", "iso_code"])?) {
        return Ok(Some(c));
    }
    Ok(short(
        found.decode_path(&path!["registered_country", "iso_code"])?,
    ))
}

/// The country and (optional) ASN databases, open for lookups.
pub struct Db {
    country: Reader<Vec<u8>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl Db {
    pub fn open(geo: &Geo) -> Result<Db, GeoDbError> {
        Ok(Db {
            country: open("country_db", &geo.country_db)?,
            asn: geo
                .asn_db
                .as_deref()
                .map(|p| open("asn_db", p))
                .transpose()?,
        })
    }
}

impl GeoLookup for Db {
    fn lookup(&self, addr: IpAddr) -> Info {
        let code: Option<String> = self
            .country
            .lookup(addr)
            .ok()
            .and_then(|r| country_of(&r).ok().flatten());
        let (asn, org) = self
            .asn
            .as_ref()
            .and_then(|r| r.lookup(addr).ok())
            .map(|r| {
                let n: Option<u32> = r
                    .decode_path(&path!["autonomous_system_number"])
                    .ok()
                    .flatten();
                let o: Option<String> = r
                    .decode_path(&path!["autonomous_system_organization"])
                    .ok()
                    .flatten();
                (n, o)
            })
            .unwrap_or((None, None));
        Info::from_raw(code.as_deref(), asn, org.as_deref())
    }
}

/// The lookup when `[geo]` is configured and its databases open; a failure
/// to open is a warning (`warn` gets the line): enrichment is optional.
pub fn lookup_for(geo: Option<&Geo>, warn: &mut dyn FnMut(String)) -> Option<Db> {
    let geo = geo?;
    match Db::open(geo) {
        Ok(db) => Some(db),
        Err(e) => {
            warn(format!("fwctl: warning: {e}; going on without countries"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmdb_writer::{Ipv4Aliasing, RecordSize, Writer};

    fn geo(path: &Path) -> Geo {
        Geo {
            country_db: path.to_path_buf(),
            asn_db: None,
            block_countries: vec![Country::parse("NL").unwrap()],
        }
    }

    #[derive(serde::Serialize)]
    struct Iso {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Rec {
        country: Iso,
    }

    #[test]
    fn a_tree_whose_nodes_share_their_children_stops_at_the_bound() {
        // One /128 makes a path of 128 nodes; then every node's two
        // records point at the next one: 2^128 leaves, all without data.
        let mut w = Writer::builder("GeoLite2-Country")
            .record_size(RecordSize::Bits24)
            .ipv4_aliasing(Ipv4Aliasing::Disabled)
            .build();
        w.insert(
            "8000::/128".parse::<IpNet>().unwrap(),
            &Rec {
                country: Iso { iso_code: "NL" },
            },
        )
        .unwrap();
        let mut bytes = w.to_bytes().unwrap();
        let n = Reader::from_source(bytes.clone())
            .unwrap()
            .metadata()
            .node_count as usize;
        assert!(n >= 128, "{n} nodes");
        for i in 0..n {
            let next = if i < 127 { i + 1 } else { n } as u32;
            let rec = &next.to_be_bytes()[1..];
            bytes[i * 6..i * 6 + 3].copy_from_slice(rec);
            bytes[i * 6 + 3..i * 6 + 6].copy_from_slice(rec);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostile.mmdb");
        std::fs::write(&path, &bytes).unwrap();
        let g = geo(&path);
        let t = Instant::now();
        let e = walk(&g, &g.block_countries, 1024, 100_000)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("it yields more than 100000 networks (a corrupt database?)")
                && e.contains("hostile.mmdb"),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }

    #[test]
    fn a_good_database_gives_its_countrys_networks_and_lookups() {
        let mut w = Writer::new("GeoLite2-Country");
        for (net, iso) in [
            ("198.51.100.0/24", "NL"),
            ("2001:db8:1::/48", "NL"),
            ("203.0.113.0/24", "DE"),
        ] {
            w.insert(
                net.parse::<IpNet>().unwrap(),
                &Rec {
                    country: Iso { iso_code: iso },
                },
            )
            .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.mmdb");
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        let g = geo(&path);
        let got = networks(&g, &g.block_countries, 1024).unwrap();
        let nl = got.nets[&g.block_countries[0]]
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>();
        assert_eq!(nl, ["198.51.100.0/24", "2001:db8:1::/48"]);
        let db = Db::open(&g).unwrap();
        let at = |a: &str| db.lookup(a.parse().unwrap()).country;
        assert_eq!(at("198.51.100.7").as_deref(), Some("NL"));
        assert_eq!(at("203.0.113.7").as_deref(), Some("DE"));
        assert_eq!(at("192.0.2.1"), None);
    }
}
