//! The subcommands: glue between the CLI, the config, the pure core and the
//! kernel adapters. Checks that can fail (config, root, tools, lock) all run
//! before the first change.

use crate::apply::{self, Snapshot};
use crate::backend::{Backend, System};
use crate::config::{Config, Mode};
use crate::confirm::{self, Outcome};
use crate::lock;
use crate::ruleset::{self, Current, Plan};
use crate::state;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a run waits for another fwctl run to finish before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

pub fn parse_confirm(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("\"{s}\" is not a duration ({e}); write e.g. 60s or 5m"))?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(format!(
            "\"{s}\": the confirmation window must be between 1s and 1h"
        ));
    }
    Ok(d)
}

/// The state file: --state (or FWCTL_STATE), else the config's
/// [capture] state_file, else /var/lib/fwctl/state.json.
pub fn state_path(arg: Option<&Path>, cfg: &Config) -> PathBuf {
    arg.map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.capture.state_file.clone())
}

/// The lock a running capture holds (its pid inside), in the run directory.
pub fn capture_lock() -> PathBuf {
    lock::run_dir().join("capture.pid")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("fwctl {what} changes the kernel firewall and must run as root; fix: sudo fwctl {what} (or --dry-run to only look)");
    }
    Ok(())
}

fn load(path: &Path) -> Result<(Config, Plan)> {
    let cfg = Config::load(path).map_err(|e| anyhow!("{e}"))?;
    let plan = ruleset::build(&cfg);
    Ok((cfg, plan))
}

/// Stderr writes that cannot kill us if the terminal has gone away.
macro_rules! say {
    ($($arg:tt)*) => {{ let _ = writeln!(std::io::stderr(), $($arg)*); }};
}

/// The text `apply --dry-run` prints: the three scripts, in the order they run.
pub fn dry_run_text(cfg: &Config, plan: &Plan, now: &Current, state_note: &str) -> String {
    let s = apply::render(plan, now);
    format!(
        "# fwctl apply --dry-run, mode {}\n# {state_note}\n\
         # ---- ipset restore ----\n{}\
         # ---- iptables-restore --noflush ----\n{}\
         # ---- ip6tables-restore --noflush ----\n{}",
        cfg.mode.as_str(),
        s.sets,
        s.v4,
        s.v6
    )
}

/// The state file's running bans, as apply restores them (trusted and
/// whitelisted addresses excepted: the config may have changed since).
/// An unreadable state file only warns: the ruleset matters more at boot
/// than the bans, and a failed apply would leave the host open.
fn state_bans(cfg: &Config, path: &Path, t: i64) -> Vec<apply::Ban> {
    let loaded = match state::read(path) {
        Ok(l) => l,
        Err(e) => {
            say!("fwctl: warning: {e:#}; applying without restoring its bans");
            return Vec::new();
        }
    };
    if let Some(w) = loaded.warning {
        say!("fwctl: warning: {w}");
    }
    loaded
        .state
        .history
        .active(t)
        .into_iter()
        // The same refusal as `fwctl ban` (own addresses are not known at boot).
        .filter(|r| crate::ban::target::refuse(cfg, &[], &r.addr).is_none())
        .map(|r| {
            let left = (r.until - t).clamp(1, crate::scan::MAX_TIMEOUT as i64) as u32;
            (r.set.clone(), r.addr, left)
        })
        .collect()
}

/// Note what was installed (fwctl's rules as the kernel prints them back),
/// so `status` tells drift from a config edit. A failure only warns: the
/// rules are in.
fn record_applied(sys: &mut System, cfg: &Config, plan: &Plan, path: &Path, t: i64) {
    let saved = (|| -> Result<state::Applied> {
        let e = |e: crate::backend::StepError| anyhow!("{e}");
        Ok(state::Applied {
            at: t,
            config: cfg.path.clone(),
            digest: crate::status::drift::digest(plan),
            v4: crate::status::drift::ours(&sys.save_table(ruleset::Family::V4).map_err(e)?),
            v6: crate::status::drift::ours(&sys.save_table(ruleset::Family::V6).map_err(e)?),
        })
    })()
    .and_then(|a| state::update(path, t, |st| st.applied = Some(a)).map(drop));
    if let Err(e) = saved {
        say!("fwctl: warning: could not record this apply in the state file ({e:#}); `fwctl status` cannot check for drift");
    }
}

pub fn apply(
    config: &Path,
    dry_run: bool,
    confirm: Option<Duration>,
    state_arg: Option<&Path>,
) -> Result<()> {
    let (cfg, plan) = load(config)?;
    let state_file = state_path(state_arg, &cfg);
    let t = crate::host::now();
    if dry_run {
        // Read the kernel when we can (exact output); otherwise say what we assumed.
        let (now, note) = match (is_root(), System::locate()) {
            (true, Ok(mut sys)) => {
                let snap = Snapshot::take(&mut sys).context("reading the current state")?;
                let bans = state_bans(&cfg, &state_file, t);
                let (now, _) = apply::prepare(&plan, &snap, &bans).map_err(|e| anyhow!(e))?;
                (now, "state read from the kernel and the state file")
            }
            (true, Err(_)) => (
                Current::default(),
                "iptables/ipset tools missing: the kernel was not read; this assumes nothing of fwctl's is installed yet",
            ),
            (false, _) => (
                Current::default(),
                "not root: the kernel was not read; this assumes nothing of fwctl's is installed yet",
            ),
        };
        let mut out = std::io::stdout().lock();
        out.write_all(dry_run_text(&cfg, &plan, &now, note).as_bytes())?;
        return Ok(());
    }
    require_root("apply")?;
    let mut sys = System::locate().map_err(|e| anyhow!(e))?;
    let run_dir = lock::run_dir();
    let _lock = lock::acquire(&run_dir, LOCK_WAIT).map_err(|e| anyhow!(e))?;
    if cfg.services.is_empty() && cfg.trusted.is_empty() && cfg.mode != Mode::DetectionOnly {
        say!("fwctl: warning: no [[service]] and no [trusted] networks: no new connection can reach this host (SSH included)");
    }
    let bans = state_bans(&cfg, &state_file, t);
    let snap = Snapshot::take(&mut sys).context("reading the current rules and sets")?;
    let (now, scripts) = apply::prepare(&plan, &snap, &bans).map_err(|e| anyhow!(e))?;
    apply::install(&mut sys, &plan, &snap, &scripts)?;
    let statics: usize = plan.sets.iter().map(|s| s.members.len()).sum();
    let carried: usize = now.carried.values().map(Vec::len).sum();
    let rules = |t: &ruleset::Table| t.chains.iter().map(|c| c.rules.len()).sum::<usize>();
    say!(
        "fwctl: applied {} (mode {}): {} IPv4 + {} IPv6 rules, {} sets, {statics} static members, {} bans kept, {} restored from the state file",
        cfg.path.display(),
        cfg.mode.as_str(),
        rules(&plan.v4),
        rules(&plan.v6),
        plan.sets.len(),
        carried - now.restored,
        now.restored
    );
    let Some(window) = confirm else {
        record_applied(&mut sys, &cfg, &plan, &state_file, t);
        return Ok(());
    };
    let tty = std::io::stdin().is_terminal();
    say!(
        "fwctl: waiting {} for confirmation: {}run `fwctl confirm` from another shell, or the previous rules are put back",
        humantime::format_duration(window),
        if tty { "press Enter here or " } else { "" }
    );
    let outcome = confirm::wait(&run_dir, window, tty).context("waiting for confirmation")?;
    if outcome == Outcome::Confirmed {
        say!("fwctl: confirmed; the new rules stay");
        record_applied(&mut sys, &cfg, &plan, &state_file, t);
        return Ok(());
    }
    let why = match outcome {
        Outcome::Interrupted(sig) => format!("interrupted by signal {sig}"),
        _ => format!(
            "no confirmation within {}",
            humantime::format_duration(window)
        ),
    };
    apply::rollback(
        &mut sys,
        &apply::set_names(&plan),
        &snap,
        &[ruleset::Family::V4, ruleset::Family::V6],
    )
    .map_err(|e| {
        anyhow!(
            "{why}, and rolling back failed: {e}; check `iptables-save` and `ipset list` by hand"
        )
    })?;
    bail!("{why}: the previous rules and sets were put back")
}

pub fn confirm() -> Result<()> {
    confirm::send(&lock::run_dir()).map_err(|e| anyhow!(e))?;
    say!("fwctl: confirmation sent");
    Ok(())
}

pub fn remove(config: &Path, sets: bool) -> Result<()> {
    // The config names the sets; without one, fall back to the default names.
    let plan = match Config::load(config) {
        Ok(cfg) => ruleset::build(&cfg),
        Err(e) if !config.exists() => {
            say!("fwctl: note: {e}; using the default set names");
            ruleset::build(
                &Config::parse("", config, &|_| Ok(String::new())).map_err(|e| anyhow!("{e}"))?,
            )
        }
        Err(e) => return Err(anyhow!("{e}")),
    };
    require_root("remove")?;
    let mut sys = System::locate().map_err(|e| anyhow!(e))?;
    let _lock = lock::acquire(&lock::run_dir(), LOCK_WAIT).map_err(|e| anyhow!(e))?;
    let b: &mut dyn Backend = &mut sys;
    apply::remove(b, &apply::set_names(&plan), sets)?;
    say!(
        "fwctl: removed fwctl's chains and INPUT jump; INPUT policy is ACCEPT{}",
        if sets {
            "; sets destroyed"
        } else {
            "; sets kept (use --sets to destroy them)"
        }
    );
    Ok(())
}
