//! After a batch of bans (scan, watch; capture through its own state
//! writer): gather what `[aggregate]` says into prefix bans. The decision
//! is `core::aggregate::plan`; this reads its facts (the state file, the
//! kernel's whitelist and which sets hold networks), makes the set changes
//! (members out, prefix in: one batch) and records them.

use crate::core::aggregate::{self, Gather, Kept};
use crate::core::config::Config;
use crate::core::history::Record;
use crate::core::notify::{Notice, Origin};
use crate::core::policy::{Members, Policy};
use crate::core::sets::Holds;
use crate::core::state::State;
use crate::core::statejournal::Op;
use crate::ports::SetStore;
use crate::sys::statefile;
use crate::units::addr::member;
use crate::units::time::utc;
use anyhow::{anyhow, Result};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;

/// What a gathering did.
#[derive(Debug, Default)]
pub struct Done {
    pub gathered: Vec<Gather>,
    pub kept: Vec<Kept>,
}

/// The never-ban policy as the kernel and config have it now: trusted
/// networks (and `extra`, e.g. web proxies), the whitelist sets' members,
/// this host's addresses.
pub fn policy(
    cfg: &Config,
    sets: &mut dyn SetStore,
    own: &[IpAddr],
    extra: &[IpNet],
) -> Result<Policy> {
    let heads = sets.heads()?;
    let mut p = Policy {
        trusted: cfg.trusted.iter().chain(extra).copied().collect(),
        whitelist_name: cfg.sets.whitelist.to_string(),
        own: own.to_vec(),
        ..Policy::default()
    };
    for v6 in [false, true] {
        let w = cfg.sets.whitelist.for_family(v6).to_string();
        if heads.contains_key(&w) {
            p.whitelist.extend(Members::of(&sets.members(&w)?));
        }
    }
    Ok(p)
}

/// Gather at `now`: read the state, plan, change the sets, record. A run
/// without an `[aggregate]` section does nothing (and reads nothing).
pub fn after_bans(
    cfg: &Config,
    sets: &mut dyn SetStore,
    state: &Path,
    own: &[IpAddr],
    extra: &[IpNet],
    now: i64,
) -> Result<Done> {
    if !cfg.aggregate.enabled {
        return Ok(Done::default());
    }
    let facts = Facts::read(cfg, sets, own, extra)?;
    let loaded = statefile::read(state)?;
    let mut done = Done::default();
    let ops = facts.gather(cfg, sets, &loaded.state, now, &mut done)?;
    if ops.is_empty() {
        return Ok(done);
    }
    let result = statefile::update(state, now, |st| {
        for op in &ops {
            op.apply(st);
        }
    });
    if let Err(e) = result {
        unwritten(&e);
    }
    Ok(done)
}

/// [`after_bans`] for a writer that keeps the state in a
/// [`statefile::Cached`] copy (watch): the records are the copy's, and a
/// gathering is one journal line, not the whole state file read and
/// written back after each second's bans.
pub fn after_bans_cached(
    cfg: &Config,
    sets: &mut dyn SetStore,
    (state, cache): (&Path, &mut statefile::Cached),
    own: &[IpAddr],
    extra: &[IpNet],
    now: i64,
) -> Result<Done> {
    if !cfg.aggregate.enabled {
        return Ok(Done::default());
    }
    let facts = Facts::read(cfg, sets, own, extra)?;
    let mut done = Done::default();
    let mut failed = None;
    let result = statefile::update_cached_with(state, now, cache, |st| {
        facts
            .gather(cfg, sets, st, now, &mut done)
            .unwrap_or_else(|e| {
                failed = Some(e);
                Vec::new()
            })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    match result {
        Ok((_, warning)) => {
            if let Some(w) = warning {
                eprintln!("fwctl: warning: {w}");
            }
        }
        // Before anything was gathered (the state could not be read).
        Err(e) if done.gathered.is_empty() => return Err(e.into()),
        Err(e) => unwritten(&e),
    }
    Ok(done)
}

/// The prefixes are in the kernel's sets but not in the state file.
fn unwritten(e: &dyn std::fmt::Display) {
    eprintln!(
        "fwctl: warning: the aggregated prefixes are banned, but the state file was not written ({e}); a reboot restores the members instead"
    );
}

/// What a gathering decides by besides the records: the never-ban policy
/// and which sets hold networks.
struct Facts {
    policy: Policy,
    networks: Vec<String>,
}

impl Facts {
    fn read(
        cfg: &Config,
        sets: &mut dyn SetStore,
        own: &[IpAddr],
        extra: &[IpNet],
    ) -> Result<Facts> {
        let policy = policy(cfg, sets, own, extra)?;
        let networks = sets
            .heads()?
            .into_iter()
            .filter(|(_, h)| h.holds == Holds::Networks)
            .map(|(name, _)| name)
            .collect();
        Ok(Facts { policy, networks })
    }

    /// Plan from `st`'s records, change the sets (members out, prefix in:
    /// one batch), and return the journal ops that record it (none when
    /// nothing is gathered); what was gathered and kept goes to `done`.
    fn gather(
        &self,
        cfg: &Config,
        sets: &mut dyn SetStore,
        st: &State,
        now: i64,
        done: &mut Done,
    ) -> Result<Vec<Op>> {
        let holds = |s: &str| self.networks.iter().any(|n| n == s);
        let records: Vec<&Record> = st.history.iter().collect();
        let out = aggregate::plan(&records, &cfg.aggregate, &self.policy, &holds, now);
        done.kept = out.kept;
        if out.gather.is_empty() {
            return Ok(Vec::new());
        }
        let changes: Vec<_> = out.gather.iter().flat_map(|g| g.ops(now)).collect();
        sets.change(&changes)
            .map_err(|e| anyhow!("banning the aggregated prefixes: {e}"))?;
        let ops = out
            .gather
            .iter()
            .map(|g| Op::Gather {
                prefix: g.prefix,
                set: g.set.clone(),
                until: g.until,
                members: g.members.clone(),
                why: g.why(&cfg.aggregate, &records),
                at: now,
            })
            .collect();
        done.gathered = out.gather;
        Ok(ops)
    }
}

/// The notices of a gathering: one `ip_blocked` per prefix (origin
/// aggregate), its members named in the reason.
pub fn notices(done: &Done, cfg: &Config, now: i64) -> Vec<Notice> {
    done.gathered
        .iter()
        .map(|g| Notice::IpBlocked {
            address: member(&g.prefix),
            set: g.set.clone(),
            reason: format!(
                "aggregate: {} bans within {} in one /{}: {}",
                g.members.len(),
                crate::units::duration::human(cfg.aggregate.within),
                g.prefix.prefix_len(),
                g.members.iter().map(member).collect::<Vec<_>>().join(", ")
            ),
            offence: 1,
            duration_s: g.secs(now),
            until: utc(g.until),
            origin: Origin::Aggregate,
        })
        .collect()
}

/// What to print of a gathering, one line each.
pub fn lines(done: &Done) -> Vec<String> {
    let mut out: Vec<String> = done
        .gathered
        .iter()
        .map(|g| {
            format!(
                "aggregated {} members into {} ({}): {}",
                g.members.len(),
                member(&g.prefix),
                g.set,
                g.members.iter().map(member).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    for k in &done.kept {
        out.push(format!(
            "not aggregated into {}: {}; its {} members stay banned one by one",
            member(&k.prefix),
            k.refusal,
            k.members.len()
        ));
    }
    out
}

/// The fleet entries of a gathering: the prefix, in the role of its set,
/// under the origin of the run that gathered it (`scan`, `capture`: the
/// fleet's origins, so a peer of an older fwctl takes it; a peer refuses a
/// prefix wider than its own minimum, as for any network).
pub fn fleet_entries(
    m: &super::fleet::Member,
    cfg: &Config,
    done: &Done,
    origin: &str,
    now: i64,
) -> Vec<crate::core::fleet::Entry> {
    done.gathered
        .iter()
        .filter_map(|g| {
            let role = crate::core::ban::role_of(cfg, &g.set)?.0;
            Some(m.entry(
                crate::core::fleet::Op::Ban,
                g.prefix,
                role,
                g.secs(now),
                &format!(
                    "aggregate: {} bans in one /{}",
                    g.members.len(),
                    g.prefix.prefix_len()
                ),
                1,
                origin,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_and_lines_show_prefixes_as_prefixes() {
        let net = |s: &str| crate::units::addr::parse_addr(s).unwrap();
        let done = Done {
            gathered: vec![Gather {
                prefix: net("2001:db8:1::/48"),
                set: "blacklist_v6".into(),
                until: 1600,
                members: vec![
                    net("2001:db8:1:1::/64"),
                    net("2001:db8:1:2::/64"),
                    net("2001:db8:1:3::5"),
                ],
            }],
            kept: vec![Kept {
                prefix: net("192.0.2.0/24"),
                members: vec![net("192.0.2.1"), net("192.0.2.2"), net("192.0.2.3")],
                refusal: crate::core::policy::Refusal::Trusted(net("192.0.2.77")),
            }],
        };
        let cfg = Config::builtin();
        let n = notices(&done, &cfg, 1000);
        assert_eq!(n.len(), 1);
        match &n[0] {
            Notice::IpBlocked {
                address,
                reason,
                duration_s,
                origin,
                ..
            } => {
                assert_eq!(address, "2001:db8:1::/48");
                assert_eq!(*duration_s, 600);
                assert_eq!(*origin, Origin::Aggregate);
                assert!(
                    reason.ends_with("2001:db8:1:1::/64, 2001:db8:1:2::/64, 2001:db8:1:3::5"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let l = lines(&done);
        assert!(l[0].starts_with("aggregated 3 members into 2001:db8:1::/48 (blacklist_v6)"));
        assert_eq!(
            l[1],
            "not aggregated into 192.0.2.0/24: in trusted network 192.0.2.77/32 (config); its 3 members stay banned one by one"
        );
    }
}
