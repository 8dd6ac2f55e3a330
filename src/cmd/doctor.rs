//! `fwctl doctor`: gather the machine's facts, judge them, print the verdicts.

use crate::core::doctor::{checks, Level};
use crate::sys;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The log rsyslog should write (as for `fwctl scan --log`).
    #[arg(long, value_name = "PATH", default_value = "/ram/iptables.log")]
    pub log: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: &Options, inv: &super::Invocation) -> anyhow::Result<bool> {
    let facts = sys::doctor::gather(
        &o.log,
        inv.config_path(),
        inv.builtin(),
        inv.state(),
        inv.sudo(),
    );
    let mut facts = facts;
    facts.fleet = fleet_check(inv);
    facts.lockout = lockout_check(inv);
    facts.watch = watch_check(inv);
    let list = checks(&facts);
    let failed = list.iter().filter(|c| c.level == Level::Fail).count();
    let text = if o.json {
        let doc = serde_json::json!({ "checks": list, "failed": failed });
        serde_json::to_string_pretty(&doc).expect("json") + "\n"
    } else {
        let mut t = String::new();
        for c in &list {
            let tag = match c.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            t += &format!("{tag}  {:<14} {}\n", c.name, c.detail);
            if let Some(fix) = &c.fix {
                t += &format!("      {:<14} fix: {fix}\n", "");
            }
        }
        t + &if failed == 0 {
            "fwctl doctor: every check passed\n".to_string()
        } else {
            format!(
                "fwctl doctor: {} failed\n",
                crate::units::duration::count(failed as u64, "check", "checks")
            )
        } + &selftest_hint(inv)
    };
    super::out(text)?;
    Ok(failed == 0)
}

/// Each [[watch]] entry: what it follows, or why watch would refuse it;
/// and the logs that are not there (yet).
fn watch_check(inv: &super::Invocation) -> Option<Result<Vec<String>, String>> {
    let cfg = inv.load().ok()?;
    if cfg.watch.is_empty() {
        return None;
    }
    Some(match super::watch::plans(&cfg, &[], inv, false) {
        Err(e) => Err(format!("{e:#}")),
        Ok(plans) => Ok(plans
            .iter()
            .zip(&cfg.watch)
            .filter_map(|(p, w)| {
                let log = p.log.as_ref()?;
                (!log.exists())
                    .then(|| format!("{}: {} does not exist (yet)", w.name, log.display()))
            })
            .collect()),
    })
}

/// doctor sees what an install has; whether its rules do their work is
/// selftest's to show.
fn selftest_hint(inv: &super::Invocation) -> String {
    format!(
        "hint: {} proves the rules on a private twin of this host (services reachable, drops, bans; the host's firewall is not touched)\n",
        inv.fix("selftest")
    )
}

/// With a config: the peers connected now (sock_diag netlink) its ruleset
/// would lock out, as `apply` checks them.
fn lockout_check(
    inv: &super::Invocation,
) -> Option<Result<(Vec<crate::core::lockout::Lockout>, String), String>> {
    use crate::ports::Connections;
    let cfg = inv.load().ok()?;
    let plan = crate::core::ruleset::build(&cfg);
    Some(
        sys::sockdiag::Host::new()
            .established(None)
            .map(|e| {
                let own = sys::host::own_addresses();
                let found = crate::core::lockout::check(&plan, &e.conns, &own);
                (found, e.via.describe())
            })
            .map_err(|e| e.to_string()),
    )
}

/// With [fleet]: connect and authenticate as sync would, within 3 s.
fn fleet_check(inv: &super::Invocation) -> Option<Result<String, String>> {
    let cfg = inv.load().ok()?;
    let f = cfg.fleet.as_ref()?;
    Some((|| {
        let m = super::fleet::Member::of(&cfg)
            .map_err(|e| format!("{e:#}"))?
            .expect("[fleet]");
        m.connect(std::time::Duration::from_secs(3))
            .and_then(|mut link| link.load_scripts())
            .map_err(|e| e.0)?;
        Ok(format!(
            "Redis at {} answers{}; stream {}, this host is {}{}{}",
            f.redis,
            if f.password_file.is_some() {
                " and takes the password"
            } else {
                ""
            },
            f.stream,
            m.host,
            if m.key.is_some() {
                ", signs its entries"
            } else {
                ""
            },
            if f.peers.is_empty() {
                "; no [fleet.peers]: entries are applied from anyone who can write to Redis"
                    .to_string()
            } else {
                format!(
                    "; only entries signed by its {} peers are applied",
                    f.peers.len()
                )
            }
        ))
    })())
}
