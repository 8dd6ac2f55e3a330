//! `fwctl list`: the members of fwctl's sets with the time each ban has left.

use super::load;
use crate::core::ban::{self as target, entries};
use crate::core::ruleset::ipset;
use crate::ports::SetStore;
use crate::sys::statefile;
use crate::sys::tools::System;
use crate::units::duration::human;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(clap::Args, Debug, Clone)]
pub struct ListOptions {
    /// Only this set: a role name (both families) or a kernel set name.
    #[arg(value_name = "SET")]
    pub set: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

pub fn list(o: &ListOptions, config: &Path, state_arg: Option<&Path>) -> Result<()> {
    let (cfg, plan) = load(config)?;
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
            "{} not in the kernel; fix: sudo fwctl apply (it creates fwctl's sets)",
            missing.join(", ")
        );
    }
    let loaded = statefile::read(&cfg.state_path(state_arg))?;
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
