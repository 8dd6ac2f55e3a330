//! `fwctl status`: gathers what `core::status` evaluates (the kernel's rules
//! and sets, the state file, the capture lock), and --repair.

use super::run::{Needs, NotRoot, Run};
use super::Invocation;
use crate::core::config::Config;
use crate::core::notify::Notice;
use crate::core::ruleset::{self, Plan};
use crate::core::state::Checked;
use crate::core::status::{evaluate, Facts, Status};
use crate::ports::{Firewall, Installed, SetStore};
use crate::sys::{host, lock, statefile};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
    /// If rules, sets or bans are missing or changed, run `fwctl apply` to
    /// put them back (bans the state file knows come back with the time they
    /// have left), then report again.
    #[arg(long)]
    pub repair: bool,
}

/// Read the kernel, the state file and the capture lock. Without `members`
/// the sets' members are not read (capture's watcher wants only the rules
/// and the sets' fill, every minute, whatever their size).
pub(super) fn gather<'a>(
    cfg: &'a Config,
    plan: &'a Plan,
    state_path: &Path,
    fw: &mut dyn Firewall,
    sys: &mut dyn SetStore,
    invoke: String,
    members: bool,
) -> Result<Facts<'a>> {
    let Installed { v4, v6, .. } = fw.installed()?;
    let headers = sys.heads()?;
    let mut held = BTreeMap::new();
    for s in plan.sets.iter().filter(|_| members) {
        if headers.contains_key(&s.name) {
            held.insert(s.name.clone(), sys.members(&s.name)?);
        }
    }
    // A corrupt file is a problem of the evaluation (exit 2), not a warning.
    let loaded = statefile::read(state_path)?;
    Ok(Facts {
        cfg,
        plan,
        v4,
        v6,
        headers,
        members: held,
        state: loaded.state,
        state_path: state_path.to_path_buf(),
        state_warning: loaded.warning,
        capture_pid: lock::holder(&lock::capture_lock()),
        watch_pid: lock::holder(&lock::watch_lock()),
        sync: super::sync::read_status().map(|(pid, s)| crate::core::status::SyncFacts {
            pid,
            connected: s.connected,
            redis: s.redis,
            last_id: s.last_id,
            last_entry_ms: s.last_entry_ms,
            lag_ms: s.lag_ms,
            applied: s.applied,
            skipped: s.skipped,
            oversized: s.oversized,
            unsigned: s.unsigned,
            error: s.error,
            updated: s.updated,
        }),
        fleet_outbox: crate::sys::fleetbox::waiting(&crate::sys::fleetbox::path_for(state_path)),
        feeds: cfg
            .feeds
            .iter()
            .map(|f| {
                let dir = crate::sys::feedstore::dir_for(state_path);
                (f.name.clone(), crate::sys::feedstore::meta(&dir, &f.name))
            })
            .collect(),
        now: host::now(),
        invoke,
    })
}

/// Returns whether everything is as it should be (the exit status).
pub fn run(o: &Options, inv: &Invocation) -> Result<bool> {
    let cfg = inv.load()?;
    let plan = ruleset::build(&cfg);
    // No lock: status only reads (--repair's apply takes it).
    let does = "reads the kernel's rules and sets, which needs root";
    let root = NotRoot("status", does, inv.fix("status"));
    let mut run = Run::start(&cfg, inv, Some(root), Needs::FIREWALL | Needs::SETS)?;
    let path = run.state_file.clone();
    let (fw, sys) = run.kernel();
    let mut status = evaluate(&gather(&cfg, &plan, &path, fw, sys, inv.sudo(), true)?);
    if o.repair && !status.healthy {
        if status.repairable {
            eprintln!("fwctl: repairing: {}", status.problems.join("; "));
            // What the last apply installed goes back; a peer it would
            // lock out is warned about, not a reason to leave drift.
            super::apply::apply_reading(inv, false, None, true, true)?;
            let (fw, sys) = run.kernel();
            status = evaluate(&gather(&cfg, &plan, &path, fw, sys, inv.sudo(), true)?);
        } else {
            eprintln!("fwctl: nothing an apply repairs: a full set needs a bigger [sets] maxelem, and the fleet's problems need sync and Redis");
        }
    }
    record(&cfg, &path, &status, run)?;
    let text = if o.json {
        serde_json::to_string_pretty(&status).expect("json") + "\n"
    } else {
        status.human()
    };
    super::out(text)?;
    Ok(status.healthy)
}

/// With [[notify]] sinks or a metrics textfile configured, status leaves
/// what it found in the state file (the textfile's `fwctl_rules_drift`
/// comes from it) and tells the sinks of drift once: the same drift found
/// by every cron'd status is not sent again, a new or returning one is.
fn record(cfg: &Config, path: &Path, status: &Status, mut run: Run) -> Result<()> {
    if cfg.notify.is_empty() && cfg.metrics.textfile_dir.is_none() {
        return Ok(());
    }
    // Started only now: a failed --repair leaves no sink mid-delivery.
    run.notifier = super::notify::Notifier::start(cfg, path, super::notify::Life::Run)?;
    let signature = (!status.drift.is_empty()).then(|| status.drift.join("\n"));
    let drifted = |family: &str| status.rules.iter().any(|r| r.family == family && r.drifted);
    let now = host::now();
    let (tell, _) = statefile::update(path, now, |st| {
        let before = st.status.as_ref().and_then(|c| c.notified.clone());
        let tell = signature.is_some() && signature != before;
        st.status = Some(Checked {
            at: now,
            problems: status.problems.clone(),
            drift: [drifted("ipv4"), drifted("ipv6")],
            notified: signature.clone(),
            sets: status
                .sets
                .iter()
                .filter(|s| s.exists)
                .map(|s| (s.name.clone(), s.entries, s.capacity))
                .collect(),
        });
        tell
    })?;
    if tell {
        run.tell(Notice::Drift {
            problems: status.drift.clone(),
        });
    }
    run.finish();
    Ok(())
}
