//! `fwctl list`: the members of fwctl's sets with the time each ban has left.

use super::Invocation;
use crate::core::ban::{self as target, entries};
use crate::core::ruleset::ipset;
use crate::ports::SetStore;
use crate::sys::statefile;
use crate::sys::tools::System;
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
}

pub fn list(o: &ListOptions, inv: &Invocation) -> Result<()> {
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
    let mut sys = System::locate_only(&["ipset"])?;
    let headers = ipset::parse_headers(&sys.headers()?);
    let mut saves = BTreeMap::new();
    let mut missing = Vec::new();
    for n in &names {
        if headers.contains_key(n) {
            saves.insert(n.clone(), sys.save_set(n)?);
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
    if o.json {
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
    super::out(table(&list, saves.keys().cloned().collect()))
}

/// The listing: columns as wide as their widest value.
fn table(list: &[target::Entry], sets: Vec<String>) -> String {
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|e| {
            [
                e.set.clone(),
                e.address.clone(),
                e.expires_in
                    .map(human)
                    .unwrap_or_else(|| "never (config)".into()),
                e.offences
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.since.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = ["SET", "ADDRESS", "EXPIRES IN", "OFFENCES", "SINCE"].map(String::from);
    let mut width = [0; 4];
    for r in rows.iter().chain([&head]) {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut o = String::new();
    for r in [&head].into_iter().chain(rows.iter()) {
        o += &format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3]
        );
    }
    o + &format!(
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
        };
        let t = table(
            &[
                e("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Some(2_000_000)),
                e("2001:db8::/32", None),
            ],
            vec!["blacklist_v6".into()],
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
        assert!(table(&[e("203.0.113.5", Some(5))], vec!["b".into()]).ends_with("1 entry in b\n"));
    }
}
