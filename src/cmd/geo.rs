//! `[geo]` in the commands: the countries' networks read from the country
//! database into their sets (`apply`, `feeds update`), with size and time
//! said on standard error; and the lookup the reporting commands use.
//!
//! Each good read is kept in `geo/` beside the state file (`NL.list`,
//! `NL.json`, as feeds keep theirs). A database that cannot be read is an
//! error line and exit status 2: `feeds update` leaves the kernel's geo sets
//! as they are; `apply` installs the last good networks kept (so a reboot
//! with a broken database still blocks), or, with none kept for a country,
//! refuses before anything changed.

use super::say;
use crate::core::config::Config;
use crate::core::feeds::Meta;
use crate::core::geo::{self, Country};
use crate::core::ruleset::Plan;
use crate::ports::SetStore;
use crate::sys::{feedstore, geodb, host, statefile};
use crate::units::time::utc;
use anyhow::Result;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every configured country's networks, said on standard error; None when
/// the config names no country.
pub fn read(cfg: &Config) -> Result<Option<BTreeMap<Country, Vec<IpNet>>>> {
    let Some(g) = cfg.geo.as_ref().filter(|_| !cfg.countries.is_empty()) else {
        return Ok(None);
    };
    let w = geodb::networks(g, &cfg.countries, cfg.sets.maxelem)?;
    say!(
        "fwctl: geo: read {} ({} KiB, {} networks) in {} ms",
        g.country_db.display(),
        w.bytes / 1024,
        w.seen,
        w.took.as_millis()
    );
    for line in geo::summary(&w.nets) {
        say!("fwctl: {line}");
    }
    Ok(Some(w.nets))
}

/// The last good networks' directory.
pub fn store_dir(state_file: &Path) -> PathBuf {
    statefile::beside(state_file, "geo")
}

/// Keep a good read (a failure only warns: the sets are right).
pub fn save(state_file: &Path, nets: &BTreeMap<Country, Vec<IpNet>>) {
    let dir = store_dir(state_file);
    let now = host::now();
    for (c, list) in nets {
        let meta = Meta {
            fetched: now,
            ok_at: now,
            entries: list.len(),
            ..Meta::default()
        };
        let saved = feedstore::save_list(&dir, c.as_str(), list)
            .and_then(|()| feedstore::save_meta(&dir, c.as_str(), &meta));
        if let Err(e) = saved {
            say!(
                "fwctl: warning: cannot keep geo-{c}'s networks in {} ({e}); a later apply with an unreadable database cannot fall back on them",
                dir.display()
            );
            return;
        }
    }
}

/// The last good networks of every configured country and the oldest
/// read's time; None unless every one of them has some.
fn kept(cfg: &Config, state_file: &Path) -> Option<(BTreeMap<Country, Vec<IpNet>>, i64)> {
    let dir = store_dir(state_file);
    let mut out = BTreeMap::new();
    let mut oldest = i64::MAX;
    for c in &cfg.countries {
        let m = feedstore::meta(&dir, c.as_str());
        if m.ok_at == 0 {
            return None;
        }
        oldest = oldest.min(m.ok_at);
        out.insert(*c, feedstore::list(&dir, c.as_str()).ok()?);
    }
    Some((out, oldest))
}

/// Put the countries' networks into the plan's geo sets: from the
/// database (kept when `keep`: a real apply), else the last good ones
/// (said on standard error; Ok(false): exit 2). An unreadable database
/// with nothing kept is the error.
pub fn fill(cfg: &Config, plan: &mut Plan, state_file: &Path, keep: bool) -> Result<bool> {
    let (nets, fresh) = match read(cfg) {
        Ok(None) => return Ok(true),
        Ok(Some(nets)) => {
            if keep {
                save(state_file, &nets);
            }
            (nets, true)
        }
        Err(e) => {
            let Some((nets, at)) = kept(cfg, state_file) else {
                return Err(e);
            };
            say!(
                "fwctl: {e:#}; applying the last good networks of its countries (read {})",
                utc(at)
            );
            (nets, false)
        }
    };
    for r in geo::refills(&nets, cfg.sets.maxelem) {
        if let Some(s) = plan.sets.iter_mut().find(|s| s.name == r.set) {
            s.members = r.nets;
        }
    }
    Ok(fresh)
}

/// `feeds update`'s part: the geo sets refilled in one batch (the caller
/// holds the run lock and checked the sets exist); the networks back.
pub fn refill(
    sets: &mut dyn SetStore,
    cfg: &Config,
    nets: BTreeMap<Country, Vec<IpNet>>,
) -> Result<BTreeMap<Country, Vec<IpNet>>> {
    sets.refill(&geo::refills(&nets, cfg.sets.maxelem))?;
    Ok(nets)
}

/// How many peers connected now the countries' new networks would cut
/// off that the ruleset without them lets in (each said on a line; the raw
/// table drops established traffic too): `feeds update` refuses those
/// networks then, as apply refuses such a ruleset. A socket table that
/// cannot be read only warns.
pub fn locks_out(cfg: &Config, nets: &BTreeMap<Country, Vec<IpNet>>) -> usize {
    use crate::ports::Connections;
    let est = match crate::sys::sockdiag::Host::new().established(None) {
        Ok(e) => e,
        Err(e) => {
            say!("fwctl: warning: cannot check whether the countries' new networks lock out a connected peer: {e}");
            return 0;
        }
    };
    let own = host::own_addresses();
    let without = crate::core::ruleset::build(cfg);
    let mut with = without.clone();
    for r in geo::refills(nets, cfg.sets.maxelem) {
        if let Some(s) = with.sets.iter_mut().find(|s| s.name == r.set) {
            s.members = r.nets;
        }
    }
    let before = crate::core::lockout::check(&without, &est.conns, &own);
    let new: Vec<_> = crate::core::lockout::check(&with, &est.conns, &own)
        .into_iter()
        .filter(|l| !before.contains(l))
        .collect();
    for l in new.iter().take(20) {
        say!("fwctl: lock-out: {}", l.line());
    }
    new.len()
}

/// An event line with what the databases say of its address: a JSON
/// object gets `"geo"` after its own fields, a readable line ends with
/// ` [NL, AS64500 Example Net]`; unchanged when they know nothing of it.
pub fn tag(
    mut line: String,
    json: bool,
    look: Option<&dyn crate::ports::GeoLookup>,
    addr: Option<&str>,
) -> String {
    let info = look.zip(addr).and_then(|(g, a)| {
        let a = crate::units::addr::parse_addr(a).ok()?;
        Some(g.lookup(a.addr())).filter(|i| !i.is_empty())
    });
    let Some(i) = info else {
        return line;
    };
    if !json {
        return format!("{line} [{i}]");
    }
    if line.ends_with('}') {
        line.pop();
        line.push_str(",\"geo\":");
        line.push_str(&serde_json::to_string(&i).expect("plain data"));
        line.push('}');
    }
    line
}

/// The lookup, when `[geo]` is configured and readable (else a warning).
pub fn lookup(cfg: &Config) -> Option<geodb::Db> {
    geodb::lookup_for(cfg.geo.as_ref(), &mut |w| say!("{w}"))
}
