//! `fwctl ban`, `unban` and `list`: an admin's hand on the ban sets. Every
//! check that can refuse (address, set, whitelist, duration) runs on the
//! config alone, before root and the kernel; then one `ipset -exist restore`
//! changes the set and the state file records it, so the boot-time apply
//! puts a ban back with the time it has left.

pub mod target;

use crate::backend::{SetStore, System};
use crate::config::Config;
use crate::scan::decide::Members;
use crate::scan::report::utc;
use crate::state::{self, history::Record};
use crate::{commands, host, ipset, lock, ruleset};
use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A ban without --for lasts a day; a permanent one belongs in the config.
pub const DEFAULT_FOR: &str = "1d";

#[derive(clap::Args, Debug, Clone)]
pub struct BanOptions {
    /// The address or network to ban (IPv4 or IPv6; a network only into blacklist).
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The set: blacklist, throttle-hard or throttle-soft (or a kernel set
    /// name of the config's [sets]); the IPv6 twin is picked for IPv6.
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// How long the ban lasts (1s to 49 days). For a permanent ban, add the
    /// address to the config's [blacklist] instead.
    #[arg(long = "for", value_name = "DURATION", default_value = DEFAULT_FOR, value_parser = crate::scan::parse_duration)]
    pub duration: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct UnbanOptions {
    /// The address or network to take out of every ban set (as it was banned).
    #[arg(value_name = "ADDR")]
    pub addr: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ListOptions {
    /// Only this set: a role name (both families) or a kernel set name.
    #[arg(value_name = "SET")]
    pub set: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

fn load(config: &Path) -> Result<(Config, ruleset::Plan)> {
    let cfg = Config::load(config).map_err(|e| anyhow!("{e}"))?;
    let plan = ruleset::build(&cfg);
    Ok((cfg, plan))
}

fn need_root(what: &str) -> Result<()> {
    if !commands::is_root() {
        bail!("fwctl {what} reads and changes the kernel's ipsets and must run as root; fix: sudo fwctl {what} ...");
    }
    Ok(())
}

/// A duration as people read it: `1h 59m 59s`.
pub fn human(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

pub fn ban(o: &BanOptions, config: &Path, state_arg: Option<&Path>) -> Result<()> {
    let (cfg, plan) = load(config)?;
    let addr = target::parse_addr(&o.addr).map_err(|e| anyhow!(e))?;
    let set = target::ban_set(&cfg, &plan, o.set.as_deref(), &addr).map_err(|e| anyhow!(e))?;
    if let Some(why) = target::refuse(&cfg, &host::own_addresses(), &addr) {
        bail!("refusing to ban: {why}");
    }
    need_root("ban")?;
    let mut sys = System::locate_only(&["ipset"]).map_err(|e| anyhow!(e))?;
    let _lock = lock::acquire(&lock::run_dir(), LOCK_WAIT).map_err(|e| anyhow!(e))?;
    let v6 = matches!(addr, IpNet::V6(_));
    let role = target::role_of(&cfg, &set)
        .map(|r| r.0)
        .unwrap_or("blacklist");
    let twins = target::sets_named(&cfg, role).map_err(|e| anyhow!(e))?;
    let headers = ipset::parse_headers(&sys.headers().map_err(|e| anyhow!("{e}"))?);
    crate::scan::check_sets(&[twins[0].clone(), twins[1].clone()], &headers, "")?;
    let white = cfg.sets.whitelist.for_family(v6);
    if headers.contains_key(&white) {
        let m = Members::from_save(&sys.save_set(&white).map_err(|e| anyhow!("{e}"))?);
        if m.contains(&addr.addr()) {
            bail!("refusing to ban: {addr} is in the {white} set (whitelisted); fix: take it out of the whitelist first");
        }
    }
    let member = target::member(&addr);
    sys.add_members(&format!("add {set} {member} timeout {}\n", o.duration))
        .map_err(|e| anyhow!("adding {member} to {set}: {e}"))?;
    let now = host::now();
    let path = commands::state_path(state_arg, &cfg);
    let offence = match state::update(&path, now, |st| {
        let (n, _) = st.history.next_ban(&addr, now, &[o.duration]);
        st.history.record(addr, &set, n, now, o.duration);
        n
    }) {
        Ok((n, warning)) => {
            if let Some(w) = warning {
                eprintln!("fwctl: warning: {w}");
            }
            format!("offence {n}")
        }
        Err(e) => {
            eprintln!("fwctl: warning: the ban is in the kernel but not in the state file ({e:#}); it will not be restored after a reboot");
            "not recorded".into()
        }
    };
    println!(
        "fwctl: banned {member} in {set} for {} (until {}; {offence})",
        human(o.duration),
        utc(now + o.duration as i64)
    );
    Ok(())
}

pub fn unban(o: &UnbanOptions, config: &Path, state_arg: Option<&Path>) -> Result<()> {
    let (cfg, _) = load(config)?;
    let addr = target::parse_addr(&o.addr).map_err(|e| anyhow!(e))?;
    need_root("unban")?;
    let mut sys = System::locate_only(&["ipset"]).map_err(|e| anyhow!(e))?;
    let _lock = lock::acquire(&lock::run_dir(), LOCK_WAIT).map_err(|e| anyhow!(e))?;
    let v6 = matches!(addr, IpNet::V6(_));
    let headers = ipset::parse_headers(&sys.headers().map_err(|e| anyhow!("{e}"))?);
    let member = target::member(&addr);
    let mut script = String::new();
    let mut found = Vec::new();
    let mut inside = Vec::new();
    for role in target::BAN_ROLES {
        let set = target::sets_named(&cfg, role).map_err(|e| anyhow!(e))?[usize::from(v6)].clone();
        if !headers.contains_key(&set) {
            continue;
        }
        let saved = ipset::parse_save(&sys.save_set(&set).map_err(|e| anyhow!("{e}"))?);
        for m in saved.values().flat_map(|s| &s.members) {
            let Some(net) = m.first().and_then(|w| target::parse_addr(w).ok()) else {
                continue;
            };
            if net == addr {
                script += &format!("del {set} {member}\n");
                found.push(set.clone());
            } else if net.contains(&addr) {
                inside.push(format!("{} in {set}", target::member(&net)));
            }
        }
    }
    if !script.is_empty() {
        sys.add_members(&script)
            .map_err(|e| anyhow!("removing {member}: {e}"))?;
    }
    let now = host::now();
    let path = commands::state_path(state_arg, &cfg);
    let ended = match state::update(&path, now, |st| st.history.end(&addr, now)) {
        Ok((ended, _)) => ended,
        Err(e) => {
            eprintln!("fwctl: warning: could not record the unban in the state file ({e:#}); a reboot may restore the ban");
            false
        }
    };
    if found.is_empty() && !ended {
        let hint = if inside.is_empty() {
            String::new()
        } else {
            format!(
                " (it is inside the banned {}; unban that instead)",
                inside.join(", ")
            )
        };
        bail!("{member} is not banned in any of fwctl's ban sets{hint}; nothing changed");
    }
    if found.is_empty() {
        println!("fwctl: {member} was not in the kernel's sets; its ban is ended in the state file so it is not restored");
    } else {
        println!("fwctl: unbanned {member} from {}", found.join(", "));
    }
    if !inside.is_empty() {
        println!("fwctl: note: it is still covered by {}", inside.join(", "));
    }
    Ok(())
}

/// One member of a set, as `list` shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub set: String,
    pub address: String,
    /// Seconds left; None: permanent (a config member).
    pub expires_in: Option<u64>,
    /// From the state file: how many bans, and when this one started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offences: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// The entries of `sets` from their `ipset save` text (pure), bans soonest
/// expiry first, then the permanent ones.
pub fn entries(saves: &BTreeMap<String, String>, records: &[Record]) -> Vec<Entry> {
    let by_addr: BTreeMap<(IpNet, &str), &Record> = records
        .iter()
        .map(|r| ((r.addr, r.set.as_str()), r))
        .collect();
    let mut out = Vec::new();
    for (name, text) in saves {
        for set in ipset::parse_save(text).into_values() {
            for m in &set.members {
                let Some(address) = m.first() else { continue };
                let secs = m
                    .windows(2)
                    .find(|w| w[0] == "timeout")
                    .and_then(|w| w[1].parse::<u64>().ok())
                    .filter(|s| *s > 0);
                let rec = target::parse_addr(address)
                    .ok()
                    .and_then(|a| by_addr.get(&(a, name.as_str())));
                out.push(Entry {
                    set: name.clone(),
                    address: address.clone(),
                    expires_in: secs,
                    offences: rec.filter(|_| secs.is_some()).map(|r| r.offences),
                    since: rec.filter(|_| secs.is_some()).map(|r| utc(r.since)),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (a.expires_in.is_none(), a.expires_in, &a.set, &a.address).cmp(&(
            b.expires_in.is_none(),
            b.expires_in,
            &b.set,
            &b.address,
        ))
    });
    out
}

pub fn list(o: &ListOptions, config: &Path, state_arg: Option<&Path>) -> Result<()> {
    let (cfg, plan) = load(config)?;
    let names: Vec<String> = match &o.set {
        Some(s) => target::sets_named(&cfg, s).map_err(|e| anyhow!(e))?,
        None => plan.sets.iter().map(|s| s.name.clone()).collect(),
    };
    need_root("list")?;
    let mut sys = System::locate_only(&["ipset"]).map_err(|e| anyhow!(e))?;
    let headers = ipset::parse_headers(&sys.headers().map_err(|e| anyhow!("{e}"))?);
    let mut saves = BTreeMap::new();
    let mut missing = Vec::new();
    for n in &names {
        if headers.contains_key(n) {
            saves.insert(n.clone(), sys.save_set(n).map_err(|e| anyhow!("{e}"))?);
        } else {
            missing.push(n.clone());
        }
    }
    if saves.is_empty() {
        bail!(
            "{} not in the kernel; fix: sudo fwctl apply (it creates fwctl's sets)",
            missing.join(", ")
        );
    }
    let loaded = state::read(&commands::state_path(state_arg, &cfg))?;
    if let Some(w) = loaded.warning {
        eprintln!("fwctl: warning: {w}");
    }
    let list = entries(&saves, &loaded.state.history.records());
    if o.json {
        let doc = serde_json::json!({ "entries": list, "missing_sets": missing });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(());
    }
    if !missing.is_empty() {
        eprintln!(
            "fwctl: warning: {} not in the kernel (run fwctl apply)",
            missing.join(", ")
        );
    }
    println!(
        "{:<18} {:<40} {:<14} {:<8} SINCE",
        "SET", "ADDRESS", "EXPIRES IN", "OFFENCES"
    );
    for e in &list {
        println!(
            "{:<18} {:<40} {:<14} {:<8} {}",
            e.set,
            e.address,
            e.expires_in
                .map(human)
                .unwrap_or_else(|| "never (config)".into()),
            e.offences
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            e.since.as_deref().unwrap_or("-")
        );
    }
    println!(
        "{} entries in {}",
        list.len(),
        saves.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_join_the_kernel_and_the_state_file() {
        let mut saves = BTreeMap::new();
        saves.insert(
            "blacklist".to_string(),
            "create blacklist hash:net family inet hashsize 1024 maxelem 65536 timeout 0\n\
             add blacklist 192.0.2.0/24\n\
             add blacklist 203.0.113.5 timeout 300\n\
             add blacklist 203.0.113.6 timeout 30\n"
                .to_string(),
        );
        let mut h = crate::state::history::History::default();
        h.record(
            "203.0.113.5/32".parse().unwrap(),
            "blacklist",
            3,
            1_795_262_400,
            600,
        );
        let got = entries(&saves, &h.records());
        let brief: Vec<(&str, Option<u64>, Option<u32>)> = got
            .iter()
            .map(|e| (e.address.as_str(), e.expires_in, e.offences))
            .collect();
        assert_eq!(
            brief,
            [
                ("203.0.113.6", Some(30), None),
                ("203.0.113.5", Some(300), Some(3)),
                ("192.0.2.0/24", None, None)
            ]
        );
        assert_eq!(got[1].since.as_deref(), Some("2026-11-21T12:00:00Z"));
    }
}
