//! `[geo]` in the commands: the countries' networks read from the country
//! database into their sets (`apply`, `feeds update`), with size and time
//! said on standard error; and the lookup the reporting commands use. A
//! database that cannot be read is the command's error: the kernel's geo
//! sets (the last good ones) are not touched.

use super::say;
use crate::core::config::Config;
use crate::core::geo::{self, Country};
use crate::core::ruleset::Plan;
use crate::ports::SetStore;
use crate::sys::geodb;
use anyhow::Result;
use ipnet::IpNet;
use std::collections::BTreeMap;

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

/// Put the countries' networks into the plan's geo sets.
pub fn fill(cfg: &Config, plan: &mut Plan) -> Result<()> {
    let Some(nets) = read(cfg)? else {
        return Ok(());
    };
    for r in geo::refills(&nets, cfg.sets.maxelem) {
        if let Some(s) = plan.sets.iter_mut().find(|s| s.name == r.set) {
            s.members = r.nets;
        }
    }
    Ok(())
}

/// `feeds update`'s part: the geo sets refilled in one batch (the caller
/// holds the run lock and checked the sets exist).
pub fn refill(
    sets: &mut dyn SetStore,
    cfg: &Config,
    nets: &BTreeMap<Country, Vec<IpNet>>,
) -> Result<()> {
    sets.refill(&geo::refills(nets, cfg.sets.maxelem))?;
    Ok(())
}

/// The lookup, when `[geo]` is configured and readable (else a warning).
pub fn lookup(cfg: &Config) -> Option<geodb::Db> {
    geodb::lookup_for(cfg.geo.as_ref(), &mut |w| say!("{w}"))
}
