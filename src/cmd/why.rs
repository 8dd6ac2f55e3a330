//! `fwctl why ADDRESS`: which of fwctl's sets hold it and for how long,
//! every ban of it the state file remembers with its rule, count and
//! evidence, whether it could be banned at all, and its cached reputation.
//! Reads only; without root the kernel's sets are left out (and said so).

use super::Invocation;
use crate::core::policy::{Members, Policy};
use crate::core::why::{report, Facts};
use crate::ports::SetStore;
use crate::sys::{feedstore, firewall, host, statefile};
use anyhow::{anyhow, Result};

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  sudo fwctl why 203.0.113.5        the sets, the bans and their evidence, the verdict
  fwctl why 2001:db8::/64 --json     a network: every member and ban inside it or around it")]
pub struct Options {
    /// An address or a network (CIDR).
    #[arg(value_name = "ADDRESS")]
    pub address: String,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: &Options, inv: &Invocation) -> Result<()> {
    let query = crate::units::addr::parse_addr(o.address.trim())
        .map_err(|e| anyhow!("{}: {e}", o.address))?;
    let (cfg, plan) = inv.load_plan()?;
    let state = statefile::read(&cfg.state_path(inv.state()))?;
    if let Some(w) = &state.warning {
        eprintln!("fwctl: warning: {w}");
    }
    let mut policy = Policy {
        trusted: cfg.trusted.clone(),
        whitelist_name: cfg.sets.whitelist.to_string(),
        own: host::own_addresses(),
        ..Policy::default()
    };
    policy
        .trusted
        .extend(cfg.web.trusted_proxies.iter().copied());
    let sets = if host::is_root() {
        let mut sys = firewall::sets(cfg.firewall.backend).map_err(|e| anyhow!("{e}"))?;
        let heads = sys.heads()?;
        let mut v = Vec::new();
        for s in plan
            .sets
            .iter()
            .map(|s| &s.name)
            .filter(|n| heads.contains_key(*n))
        {
            v.push((s.clone(), sys.members(s)?));
        }
        for v6 in [false, true] {
            let name = cfg.sets.whitelist.for_family(v6);
            if let Some((_, m)) = v.iter().find(|(n, _)| *n == name) {
                policy.whitelist.extend(Members::of(m));
            }
        }
        Some(v)
    } else {
        eprintln!(
            "fwctl: note: not root: the kernel's sets are not read (sudo fwctl why ... shows them)"
        );
        None
    };
    let score = state
        .state
        .reputation
        .get(&query.addr())
        .filter(|_| query.prefix_len() == query.max_prefix_len())
        .map(|s| (s.score, s.at));
    // The feeds' last good lists, as `feeds update` kept them (an unreadable
    // directory only leaves them out).
    let dir = feedstore::dir_for(&cfg.state_path(inv.state()));
    let mut feeds = Vec::new();
    if feedstore::check(&dir).is_ok() {
        for f in &cfg.feeds {
            if let Ok(nets) = feedstore::list(&dir, &f.name) {
                feeds.push((f.name.clone(), nets));
            }
        }
    }
    let r = report(&Facts {
        query,
        now: host::now(),
        sets,
        history: state.state.history.iter().collect(),
        policy: &policy,
        blacklist: &cfg.blacklist,
        score,
        geo: super::geo::lookup(&cfg).map(|db| crate::ports::GeoLookup::lookup(&db, query.addr())),
        feeds,
    });
    super::out(if o.json { r.json() } else { r.human() })
}
