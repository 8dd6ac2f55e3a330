//! `fwctl list`: the members of fwctl's sets with the time each ban has left.

use super::Invocation;
use crate::core::ban::{self as target, entries};
use crate::ports::SetStore;
use crate::sys::firewall;
use crate::sys::statefile;
use crate::units::duration::{count, human};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

#[derive(clap::Args, Debug, Clone)]
pub struct ListOptions {
    /// Only this set: a role name (both families) or a kernel set name.
    #[arg(value_name = "SET")]
    pub set: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
    /// The fleet's running bans (the [fleet] Redis index), with the host
    /// each came from and whether it is in this host's sets.
    #[arg(long, conflicts_with = "set")]
    pub fleet: bool,
    /// Add each entry's country and AS (from the [geo] databases).
    #[arg(long, conflicts_with = "fleet")]
    pub geo: bool,
}

pub fn list(o: &ListOptions, inv: &Invocation) -> Result<()> {
    if o.fleet {
        return fleet(o, inv);
    }
    let (cfg, plan) = inv.load_plan()?;
    let names: Vec<String> = match &o.set {
        Some(s) => target::sets_named(&cfg, s)?,
        None => plan.sets.iter().map(|s| s.name.clone()).collect(),
    };
    if !crate::sys::host::is_root() {
        bail!(
            "fwctl list reads the kernel's ipsets and must run as root; fix: sudo fwctl list ..."
        );
    }
    let mut sys = firewall::sets(cfg.firewall.backend)?;
    let headers = sys.heads()?;
    let mut saves = BTreeMap::new();
    let mut missing = Vec::new();
    for n in &names {
        if headers.contains_key(n) {
            saves.insert(n.clone(), sys.members(n)?);
        } else {
            missing.push(n.clone());
        }
    }
    if saves.is_empty() {
        bail!(
            "{} not in the kernel; fix: {} (it creates fwctl's sets)",
            missing.join(", "),
            inv.fix("apply")
        );
    }
    let loaded = statefile::read(&cfg.state_path(inv.state()))?;
    if let Some(w) = loaded.warning {
        eprintln!("fwctl: warning: {w}");
    }
    let list = entries(&saves, &loaded.state.history.records());
    let db = if o.geo {
        if cfg.geo.is_none() {
            bail!(
                "{} has no [geo] section; fix: add one (country_db = \"/var/lib/GeoIP/GeoLite2-Country.mmdb\") or leave out --geo",
                cfg.path.display()
            );
        }
        super::geo::lookup(&cfg)
    } else {
        None
    };
    let geo: Option<Vec<crate::core::geo::Info>> = db.as_ref().map(|db| {
        list.iter()
            .map(|e| {
                crate::units::addr::parse_addr(&e.address)
                    .map(|n| crate::ports::GeoLookup::lookup(db, n.addr()))
                    .unwrap_or_default()
            })
            .collect()
    });
    if o.json {
        let list: Vec<serde_json::Value> = list
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut v = serde_json::to_value(e).expect("json");
                if let (Some(g), Some(obj)) = (geo.as_ref().map(|g| &g[i]), v.as_object_mut()) {
                    obj.insert("geo".into(), serde_json::to_value(g).expect("json"));
                }
                v
            })
            .collect();
        let doc = serde_json::json!({ "entries": list, "missing_sets": missing });
        return super::out(serde_json::to_string_pretty(&doc).expect("json") + "\n");
    }
    if !missing.is_empty() {
        eprintln!(
            "fwctl: warning: {} not in the kernel (fix: {})",
            missing.join(", "),
            inv.fix("apply")
        );
    }
    super::out(table(
        &list,
        saves.keys().cloned().collect(),
        geo.as_deref(),
    ))
}

/// Columns as wide as their widest value; the last one as it is.
fn columns(head: &[&str], rows: &[Vec<String>]) -> String {
    let n = head.len();
    let mut width = vec![0; n];
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    for r in rows.iter().chain([&head]) {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut o = String::new();
    for r in [&head].into_iter().chain(rows.iter()) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == n {
                line += c;
            } else {
                line += &format!("{c:<w$}  ", w = width[i]);
            }
        }
        o += line.trim_end();
        o.push('\n');
    }
    o
}

/// `list --fleet`: the fleet's index, and whether each ban is here.
fn fleet(o: &ListOptions, inv: &Invocation) -> Result<()> {
    let cfg = inv.load()?;
    let member = super::fleet::Member::of(&cfg)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no [fleet] section; fix: add one (redis = \"redis://HOST:6379/0\")",
            cfg.path.display()
        )
    })?;
    let now = crate::sys::host::now();
    let mut link = member.connect(std::time::Duration::from_secs(5))?;
    let mut bans: Vec<crate::core::fleet::Entry> = Vec::new();
    let mut garbage = 0;
    // A scan of the index may hand over a ban twice.
    let mut seen = std::collections::HashSet::new();
    crate::ports::FleetLink::active(&mut link, now, &mut |page| {
        for f in &page {
            match crate::core::fleet::Entry::from_fields(f) {
                Ok(e) if seen.insert(e.key()) => bans.push(e),
                Ok(_) => {}
                Err(_) => garbage += 1,
            }
        }
    })?;
    bans.sort_by_key(|e| (e.until, e.addr));
    // What this host's sets hold, when it may look.
    let here: Option<std::collections::HashSet<(String, ipnet::IpNet)>> = (|| {
        if !crate::sys::host::is_root() {
            return None;
        }
        let mut sys = firewall::sets(cfg.firewall.backend).ok()?;
        let mut have = std::collections::HashSet::new();
        for role in target::BAN_ROLES {
            for set in target::sets_named(&cfg, role).ok()? {
                let Ok(members) = sys.members(&set) else {
                    continue;
                };
                for m in members {
                    have.insert((role.to_string(), m.net));
                }
            }
        }
        Some(have)
    })();
    if o.json {
        let doc = serde_json::json!({
            "redis": member.fleet.redis,
            "stream": member.fleet.stream,
            "bans": bans.iter().map(|e| serde_json::json!({
                "address": crate::units::addr::member(&e.addr),
                "role": e.role,
                "until": crate::units::time::utc(e.until),
                "expires_in": e.until - now,
                "host": e.host,
                "origin": e.origin,
                "reason": e.reason,
                "offence": e.offence,
                "here": here.as_ref().map(|h| h.contains(&(e.role.clone(), e.addr))),
            })).collect::<Vec<_>>(),
            "malformed": garbage,
        });
        return super::out(serde_json::to_string_pretty(&doc).expect("json") + "\n");
    }
    let rows: Vec<Vec<String>> = bans
        .iter()
        .map(|e| {
            vec![
                crate::units::addr::member(&e.addr),
                e.role.clone(),
                human((e.until - now).max(0) as u64),
                e.host.clone(),
                e.origin.clone(),
                match &here {
                    Some(h) if h.contains(&(e.role.clone(), e.addr)) => "yes".into(),
                    Some(_) => "no".into(),
                    None => "?".into(),
                },
                e.reason.clone(),
            ]
        })
        .collect();
    let mut t = columns(
        &[
            "ADDRESS",
            "ROLE",
            "EXPIRES IN",
            "FROM",
            "ORIGIN",
            "HERE",
            "REASON",
        ],
        &rows,
    );
    t += &format!(
        "{} in the fleet ({} stream {}){}{}\n",
        count(bans.len() as u64, "running ban", "running bans"),
        member.fleet.redis,
        member.fleet.stream,
        if garbage > 0 {
            format!("; {garbage} malformed index entries skipped")
        } else {
            String::new()
        },
        if here.is_none() {
            "; HERE needs root"
        } else {
            ""
        }
    );
    super::out(t)
}

/// The listing: columns as wide as their widest value; FROM (the fleet
/// host of a ban sync applied) only when there is one.
fn table(
    list: &[target::Entry],
    sets: Vec<String>,
    geo: Option<&[crate::core::geo::Info]>,
) -> String {
    let fleet = list.iter().any(|e| e.from.is_some());
    let rows: Vec<Vec<String>> = list
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut r = vec![
                e.set.clone(),
                e.address.clone(),
                e.expires_in
                    .map(human)
                    .unwrap_or_else(|| "never (config)".into()),
                e.offences
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.since.clone().unwrap_or_else(|| "-".into()),
            ];
            if fleet {
                r.push(e.from.clone().unwrap_or_else(|| "-".into()));
            }
            if let Some(g) = geo.and_then(|g| g.get(i)) {
                r.push(g.to_string());
            }
            r
        })
        .collect();
    let mut head = vec!["SET", "ADDRESS", "EXPIRES IN", "OFFENCES", "SINCE"];
    if fleet {
        head.push("FROM");
    }
    if geo.is_some() {
        head.push("COUNTRY, AS");
    }
    columns(&head, &rows)
        + &format!(
            "{} in {}\n",
            count(list.len() as u64, "entry", "entries"),
            sets.join(", ")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_value() {
        let e = |addr: &str, secs: Option<u64>| target::Entry {
            set: "blacklist_v6".into(),
            address: addr.into(),
            expires_in: secs,
            offences: secs.map(|_| 1),
            since: None,
            from: None,
        };
        let t = table(
            &[
                e("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Some(2_000_000)),
                e("2001:db8::/32", None),
            ],
            vec!["blacklist_v6".into()],
            None,
        );
        let lines: Vec<&str> = t.lines().collect();
        let col = |l: &str| {
            l.find("EXPIRES")
                .or_else(|| l.find("23d"))
                .or_else(|| l.find("never"))
        };
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(lines[1].contains("23d 3h  "), "{t}");
        assert_eq!(lines[3], "2 entries in blacklist_v6");
        assert!(
            table(&[e("203.0.113.5", Some(5))], vec!["b".into()], None).ends_with("1 entry in b\n")
        );
        let nl = crate::core::geo::Info::from_raw(Some("NL"), Some(64500), Some("Example Net"));
        let t = table(&[e("198.51.100.7", Some(5))], vec!["b".into()], Some(&[nl]));
        assert!(t.lines().next().unwrap().ends_with("COUNTRY, AS"), "{t}");
        assert!(t.contains("  NL, AS64500 Example Net\n"), "{t}");
    }
}
