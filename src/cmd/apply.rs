//! `fwctl apply`, `confirm` and `remove`: install the config's ruleset in
//! three steps (sets, IPv4 rules, IPv6 rules) against the [`Backend`] port,
//! put the snapshot back if any step fails, wait for a confirmation, and take
//! fwctl back out. Checks that can fail (config, root, tools, lock) all run
//! before the first change.

use super::notify::{Life, Notifier};
use super::{say, Invocation};
use crate::core::apply::{self, Snapshot};
use crate::core::config::{Config, Mode};
use crate::core::conns::Via;
use crate::core::lockout;
use crate::core::notify::Notice;
use crate::core::policy::Policy;
use crate::core::ruleset::{self, Current, Family, Plan};
use crate::core::state;
use crate::ports::{Backend, Connections, StepError};
use crate::sys::confirm::{self, Outcome};
use crate::sys::tools::System;
use crate::sys::{host, lock, sockdiag, statefile};
use crate::units::duration::MAX_TIMEOUT;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// How long a run waits for another fwctl run to finish before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// A failed install: which step failed, and whether putting things back worked.
#[derive(Debug)]
pub struct ApplyError {
    pub failed: StepError,
    pub rollback: Result<(), StepError>,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.failed)?;
        match &self.rollback {
            Ok(()) => write!(f, "; the previous rules and sets were put back"),
            Err(e) => write!(
                f,
                "; ROLLBACK ALSO FAILED ({e}): check `iptables-save` and `ipset list` by hand"
            ),
        }
    }
}

impl std::error::Error for ApplyError {}

/// What the kernel has now. A table save without a filter table is an
/// error: `iptables-save -t filter` always prints one, so the save tool is
/// not reading this kernel (FWCTL_IPTABLES_SAVE=/bin/true), and rules
/// rendered against "nothing there" would add a second jump.
pub fn snapshot(b: &mut dyn Backend) -> Result<Snapshot, StepError> {
    let table = |b: &mut dyn Backend, family| -> Result<String, StepError> {
        let s = b.save_table(family)?;
        apply::check_saved(&s, family).map_err(|e| StepError {
            step: format!(
                "{}-save -t filter",
                if family.is_v6() {
                    "ip6tables"
                } else {
                    "iptables"
                }
            ),
            detail: e.0,
        })?;
        Ok(s)
    };
    Ok(Snapshot {
        v4: table(b, Family::V4)?,
        v6: table(b, Family::V6)?,
        sets: b.save_sets()?,
    })
}

/// After an install, exactly one jump to fwctl's chain in each INPUT,
/// whatever the snapshot's save printed: extra ones are deleted. Returns
/// both tables as the kernel prints them now (the record for `status`).
pub fn settle_jumps(b: &mut dyn Backend) -> Result<(String, String)> {
    let mut saves = Vec::new();
    for family in [Family::V4, Family::V6] {
        let mut save = b.save_table(family)?;
        if let Some(script) = apply::extra_jumps(&save, family)? {
            say!(
                "fwctl: warning: {} INPUT had more than one jump to {}; the extra ones were deleted",
                family.name(),
                ruleset::MAIN_CHAIN
            );
            b.restore_table(family, &script, true)?;
            save = b.save_table(family)?;
            if apply::extra_jumps(&save, family)?.is_some() {
                bail!("{} INPUT still has more than one jump to {}; fix: check `iptables-save` by hand", family.name(), ruleset::MAIN_CHAIN);
            }
        }
        saves.push(save);
    }
    let v6 = saves.pop().expect("two");
    Ok((saves.pop().expect("two"), v6))
}

/// Install the scripts; on any failure restore `snap` and report.
pub fn install(
    b: &mut dyn Backend,
    plan: &Plan,
    snap: &Snapshot,
    scripts: &apply::Scripts,
) -> Result<(), ApplyError> {
    // Each restore is atomic on its own, so only the steps that succeeded
    // before the failing one need undoing.
    let mut changed = Vec::new();
    let mut steps = |b: &mut dyn Backend| -> Result<(), StepError> {
        b.restore_sets(&scripts.sets)?;
        b.restore_table(Family::V4, &scripts.v4, true)?;
        changed.push(Family::V4);
        b.restore_table(Family::V6, &scripts.v6, true)?;
        changed.push(Family::V6);
        Ok(())
    };
    let result = steps(b);
    result.map_err(|failed| ApplyError {
        failed,
        rollback: rollback(b, &apply::set_names(plan), snap, &changed),
    })
}

/// Put fwctl's part of the filter tables of `tables` (its chains, its jump,
/// the INPUT policy) and fwctl's sets back as `snap` had them, with
/// --noflush: rules, chains and bans that others added since stay. Tables
/// go first so the sets are no longer referenced when some must be
/// destroyed.
pub fn rollback(
    b: &mut dyn Backend,
    ours: &[String],
    snap: &Snapshot,
    tables: &[Family],
) -> Result<(), StepError> {
    let mut first_err = None;
    for &family in tables {
        let result = b.save_table(family).and_then(|now| {
            b.restore_table(family, &apply::rollback_table(snap, &now, family), true)
        });
        if let Err(e) = result {
            first_err.get_or_insert(e);
        }
    }
    match b.save_sets() {
        Ok(now) => {
            let script = apply::rollback_sets(ours, snap, &now);
            if !script.is_empty() {
                if let Err(e) = b.restore_sets(&script) {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(e) => {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Take fwctl's jump, chains and INPUT policy out of both families; destroy
/// fwctl's sets too if asked. Restores the snapshot if a step fails.
pub fn take_out(
    b: &mut dyn Backend,
    ours: &[String],
    destroy_sets: bool,
) -> Result<(), ApplyError> {
    let snap = snapshot(b).map_err(|failed| ApplyError {
        failed,
        rollback: Ok(()),
    })?;
    let steps = |b: &mut dyn Backend| -> Result<(), StepError> {
        for family in [Family::V4, Family::V6] {
            if let Some(script) = apply::removal(&snap, family) {
                b.restore_table(family, &script, true)?;
            }
        }
        if destroy_sets {
            let script = apply::destroy_sets(ours, &snap);
            if !script.is_empty() {
                b.restore_sets(&script)?;
            }
        }
        Ok(())
    };
    steps(b).map_err(|failed| ApplyError {
        failed,
        rollback: rollback(b, ours, &snap, &[Family::V4, Family::V6]),
    })
}

/// The state file's running bans, as apply restores them (refused by the
/// never-ban policy excepted: the config may have changed since). An
/// unreadable state file only warns: the ruleset matters more at boot than
/// the bans, and a failed apply would leave the host open.
fn state_bans(cfg: &Config, path: &Path, t: i64) -> Vec<apply::Ban> {
    let loaded = match statefile::read(path) {
        Ok(l) => l,
        Err(e) => {
            say!("fwctl: warning: {e}; applying without restoring its bans");
            return Vec::new();
        }
    };
    if let Some(w) = loaded.warning {
        say!("fwctl: warning: {w}");
    }
    // The same policy as every ban (own addresses are not known at boot).
    let policy = Policy {
        trusted: cfg.trusted.clone(),
        ..Policy::default()
    };
    loaded
        .state
        .history
        .active(t)
        .into_iter()
        .filter(|r| policy.check(&r.addr).is_none())
        .map(|r| {
            let left = (r.until - t).clamp(1, MAX_TIMEOUT as i64) as u32;
            (r.set.clone(), r.addr, left)
        })
        .collect()
}

/// Note what was installed (fwctl's rules as the kernel printed them back
/// right after), so `status` tells drift from a config edit. A failure only
/// warns: the rules are in.
fn record_applied(saves: &(String, String), cfg: &Config, plan: &Plan, path: &Path, t: i64) {
    let applied = state::Applied {
        at: t,
        config: cfg.path.clone(),
        digest: ruleset::drift::digest(plan),
        v4: ruleset::drift::ours(&saves.0),
        v6: ruleset::drift::ours(&saves.1),
        sets: plan.sets.len(),
    };
    let saved = statefile::update(path, t, |st| st.applied = Some(applied));
    if let Err(e) = saved {
        say!("fwctl: warning: could not record this apply in the state file ({e}); `fwctl status` cannot check for drift");
    }
}

/// Most lock-out lines printed; the rest are counted.
const LOCKOUT_LINES: usize = 20;

/// The peers connected now (sock_diag, or SSH_CONNECTION) whose new
/// connections `plan` would drop, each said on a line of its own: a
/// warning when the apply goes on regardless (`past`: --confirm or
/// --force), else a problem. Returns how many; a socket table that cannot
/// be read is only a warning (at boot nothing is connected anyway).
pub fn lockouts(plan: &Plan, conns: &mut dyn Connections, own: &[IpAddr], past: bool) -> usize {
    let est = match conns.established(None) {
        Ok(e) => e,
        Err(e) => {
            say!("fwctl: warning: cannot check whether this ruleset locks out a connected peer: {e}; fix: over SSH, apply with --confirm");
            return 0;
        }
    };
    if matches!(est.via, Via::SshConnection { .. }) {
        say!("fwctl: note: lock-out check from {}", est.via.describe());
    }
    let found = lockout::check(plan, &est.conns, own);
    let tag = if past { "warning" } else { "lock-out" };
    for l in found.iter().take(LOCKOUT_LINES) {
        say!("fwctl: {tag}: {}", l.line());
    }
    if found.len() > LOCKOUT_LINES {
        say!(
            "fwctl: {tag}: and {} more connected peers",
            found.len() - LOCKOUT_LINES
        );
    }
    found.len()
}

/// The one-line refusal after the lock-out lines.
fn refusal(n: usize) -> String {
    format!(
        "apply refused: the new ruleset would lock out {} (above); fix: add the [[service]] or [trusted] entry each line names, or pass --confirm DURATION (the old rules come back unless confirmed) or --force",
        crate::units::duration::count(n as u64, "connected peer", "connected peers")
    )
}

/// Without --config and without /etc/fwctl/fwctl.toml, a dry run shows the
/// built-in defaults; a real apply refuses them: they let no new connection
/// in, SSH included. Ok(false): a dry run whose real apply would refuse (a
/// lock-out without --confirm or --force): exit 2.
pub fn apply(
    inv: &Invocation,
    dry_run: bool,
    confirm: Option<Duration>,
    force: bool,
) -> Result<bool> {
    if !dry_run && inv.builtin() {
        bail!(
            "no config: {} does not exist, and apply does not install the built-in defaults (no service and no trusted network: nothing could connect, SSH included); fix: cp rules/fwctl.toml {} and set your [[service]] and [trusted] entries, or pass --config PATH",
            crate::core::config::DEFAULT_PATH,
            crate::core::config::DEFAULT_PATH
        );
    }
    let (cfg, mut plan) = inv.load_plan()?;
    let state_file = cfg.state_path(inv.state());
    // Each feed's sets start with its last good copy (after a reboot too).
    let feed_dir = crate::sys::feedstore::dir_for(&state_file);
    for s in plan.sets.iter_mut() {
        for f in &cfg.feeds {
            let names = crate::core::feeds::set_names(&f.name);
            if let Some(i) = names.iter().position(|n| *n == s.name) {
                s.members = crate::sys::feedstore::list(&feed_dir, &f.name)?
                    .into_iter()
                    .filter(|n| n.addr().is_ipv6() == (i == 1))
                    .collect();
            }
        }
    }
    let t = host::now();
    let locked_out =
        cfg.services.is_empty() && cfg.trusted.is_empty() && cfg.mode != Mode::DetectionOnly;
    if locked_out {
        say!("fwctl: warning: no [[service]] and no [trusted] networks: no new connection can reach this host (SSH included)");
    }
    let past = force || confirm.is_some();
    let lock_outs = || {
        lockouts(
            &plan,
            &mut sockdiag::Host::new(),
            &host::own_addresses(),
            past,
        )
    };
    if dry_run {
        // Read the kernel when we can (exact output); otherwise say what we assumed.
        let (now, note) = match (host::is_root(), System::locate()) {
            (true, Ok(mut sys)) => {
                let snap = snapshot(&mut sys).context("reading the current state")?;
                let bans = state_bans(&cfg, &state_file, t);
                let (now, _) = apply::prepare(&plan, &snap, &bans)?;
                (now, "state read from the kernel and the state file")
            }
            (true, Err(_)) => (
                Current::default(),
                "iptables/ipset tools missing: the kernel was not read; this assumes nothing of fwctl's is installed yet",
            ),
            (false, _) => (
                Current::default(),
                "not root: the kernel was not read (rules, sets, connections); this assumes nothing of fwctl's is installed yet",
            ),
        };
        super::out(apply::dry_run_text(&cfg, &plan, &now, note))?;
        // Without root nothing of the kernel is read, connections included.
        let n = if host::is_root() { lock_outs() } else { 0 };
        if n > 0 && !past {
            say!("fwctl: {}", refusal(n));
        }
        return Ok(n == 0 || past);
    }
    if !host::is_root() {
        bail!("fwctl apply changes the kernel firewall and must run as root; fix: sudo fwctl apply (or --dry-run to only look)");
    }
    let n = lock_outs();
    if n > 0 && !past {
        bail!(refusal(n));
    }
    let mut sys = System::locate()?;
    let run_dir = lock::run_dir();
    let _lock = lock::acquire(&run_dir, LOCK_WAIT)?;
    let notifier = Notifier::start(&cfg, &state_file, Life::Run)?;
    let config = cfg.path.display().to_string();
    // Every end of a real apply is told (apply, apply_failed, rollback) and
    // leaves the metrics textfile behind.
    let tell = |notice: Option<Notice>| {
        if let (Some(n), Some(notice)) = (&notifier, notice) {
            n.send(notice);
        }
    };
    let result = install_and_confirm(&mut sys, &cfg, &plan, &state_file, t, confirm, &run_dir);
    match &result {
        Ok(Some(counts)) => tell(Some(Notice::Apply {
            config: config.clone(),
            rules_v4: counts.0,
            rules_v6: counts.1,
            sets: plan.sets.len(),
            restored: counts.2,
        })),
        Ok(None) => {}
        Err(e) => tell(Some(match e.downcast_ref::<RolledBack>() {
            Some(r) => Notice::Rollback {
                config: config.clone(),
                reason: r.0.clone(),
            },
            None => Notice::ApplyFailed {
                config: config.clone(),
                error: format!("{e:#}"),
            },
        })),
    }
    if let Some(n) = notifier {
        n.finish(super::notify::NOTIFY_WAIT);
    }
    super::metrics::write_textfile(&cfg, &state_file);
    result.map(|_| true)
}

/// An apply whose confirmation did not come: the previous rules are back.
#[derive(Debug, thiserror::Error)]
#[error("{0}: the previous rules and sets were put back")]
struct RolledBack(String);

/// Install, settle the jump, wait for the confirmation if asked; the rule
/// counts and the bans restored on success.
fn install_and_confirm(
    sys: &mut System,
    cfg: &Config,
    plan: &Plan,
    state_file: &Path,
    t: i64,
    confirm: Option<Duration>,
    run_dir: &Path,
) -> Result<Option<(usize, usize, usize)>> {
    let bans = state_bans(cfg, state_file, t);
    let snap = snapshot(sys).context("reading the current rules and sets")?;
    let (now, scripts) = apply::prepare(plan, &snap, &bans)?;
    install(sys, plan, &snap, &scripts)?;
    let saves = settle_jumps(sys)?;
    let statics: usize = plan.sets.iter().map(|s| s.members.len()).sum();
    let carried: usize = now.carried.values().map(Vec::len).sum();
    let rules = |t: &ruleset::Table| t.chains.iter().map(|c| c.rules.len()).sum::<usize>();
    let counts = (rules(&plan.v4), rules(&plan.v6), now.restored);
    say!(
        "fwctl: applied {} (mode {}): {} IPv4 + {} IPv6 rules, {} sets, {statics} static members, {} bans kept, {} restored from the state file",
        cfg.path.display(),
        cfg.mode.as_str(),
        counts.0,
        counts.1,
        plan.sets.len(),
        carried - now.restored,
        now.restored
    );
    let Some(window) = confirm else {
        record_applied(&saves, cfg, plan, state_file, t);
        return Ok(Some(counts));
    };
    let tty = std::io::stdin().is_terminal();
    say!(
        "fwctl: waiting {} for confirmation: {}run `fwctl confirm` from another shell, or the previous rules are put back",
        humantime::format_duration(window),
        if tty { "press Enter here or " } else { "" }
    );
    let outcome = confirm::wait(run_dir, window, tty).context("waiting for confirmation")?;
    if outcome == Outcome::Confirmed {
        say!("fwctl: confirmed; the new rules stay");
        record_applied(&saves, cfg, plan, state_file, t);
        return Ok(Some(counts));
    }
    let why = match outcome {
        Outcome::Interrupted(sig) => format!("interrupted by signal {sig}"),
        _ => format!(
            "no confirmation within {}",
            humantime::format_duration(window)
        ),
    };
    rollback(
        sys,
        &apply::set_names(plan),
        &snap,
        &[Family::V4, Family::V6],
    )
    .map_err(|e| {
        anyhow!(
            "{why}, and rolling back failed: {e}; check `iptables-save` and `ipset list` by hand"
        )
    })?;
    Err(RolledBack(why).into())
}

pub fn confirm() -> Result<()> {
    confirm::send(&lock::run_dir())?;
    say!("fwctl: confirmation sent");
    Ok(())
}

pub fn remove(inv: &Invocation, sets: bool) -> Result<()> {
    // The config names the sets; without one (even a named one that is
    // gone: removing must work after the config was deleted), the default names.
    let config = inv.config_path();
    let plan = match crate::sys::configfile::load(config) {
        Ok(cfg) => ruleset::build(&cfg),
        Err(e) if !config.exists() => {
            say!("fwctl: note: {e}; using the default set names");
            ruleset::build(&Config::builtin())
        }
        Err(e) => return Err(e.into()),
    };
    if !host::is_root() {
        bail!(
            "fwctl remove changes the kernel firewall and must run as root; fix: sudo fwctl remove"
        );
    }
    let mut sys = System::locate()?;
    let _lock = lock::acquire(&lock::run_dir(), LOCK_WAIT)?;
    take_out(&mut sys, &apply::set_names(&plan), sets)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::apply::{prepare, Ban};
    use crate::core::ruleset::save::Saved;
    use crate::testing::fake::Fake;
    use ipnet::IpNet;

    fn plan() -> Plan {
        let c = Config::parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n",
            Path::new("/t.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap();
        ruleset::build(&c)
    }

    const BEFORE_V4: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\nCOMMIT\n";

    const EMPTY: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    fn fake() -> Fake {
        Fake {
            v4: BEFORE_V4.into(),
            v6: EMPTY.into(),
            sets: "create blacklist hash:net family inet hashsize 1024 maxelem 262144 timeout 0\n\
                   add blacklist 198.51.100.9 timeout 300\n"
                .into(),
            ..Fake::default()
        }
    }

    /// The admin on port 22 and a client of a port the config does not
    /// allow (SSH is a service): one lock-out, whatever the flags; a
    /// socket table that cannot be read only warns.
    #[test]
    fn connected_peers_the_new_ruleset_drops_are_found() {
        use crate::testing::conns::FakeConns;
        let mut c = FakeConns::of(&[
            ("198.51.100.1:22", "203.0.113.5:50000"),
            ("198.51.100.1:8080", "203.0.113.6:40000"),
            ("198.51.100.1:8080", "198.51.100.1:40000"),
            ("127.0.0.1:8080", "127.0.0.1:40001"),
        ]);
        let own = ["198.51.100.1".parse().unwrap()];
        assert_eq!(lockouts(&plan(), &mut c, &own, false), 1);
        assert_eq!(lockouts(&plan(), &mut c, &own, true), 1);
        assert_eq!(c.calls, [None, None], "every port is asked about");
        c.fail = Some("sock_diag: EPERM".into());
        assert_eq!(lockouts(&plan(), &mut c, &own, false), 0);
        let r = refusal(2);
        for want in [
            "2 connected peers",
            "[[service]]",
            "[trusted]",
            "--confirm",
            "--force",
        ] {
            assert!(r.contains(want), "{want}: {r}");
        }
    }

    #[test]
    fn installs_sets_then_v4_then_v6() {
        let mut b = fake();
        let p = plan();
        let snap = snapshot(&mut b).unwrap();
        let (_, scripts) = prepare(&p, &snap, &[]).unwrap();
        assert!(
            scripts.sets.contains("198.51.100.9 timeout 300"),
            "bans are carried over"
        );
        install(&mut b, &p, &snap, &scripts).unwrap();
        assert_eq!(
            b.calls[3..],
            [
                "restore sets",
                "restore V4 --noflush",
                "restore V6 --noflush"
            ]
        );
        let v4 = Saved::filter(&b.v4);
        assert_eq!(v4.jump_positions(), [1]);
        assert_eq!(v4.policy("INPUT"), Some("DROP"));
        assert!(b.v4.contains("-A INPUT -s 192.0.2.9/32 -j ACCEPT") && b.v4.contains(":DOCKER"));
        // Applied again over itself: still one jump.
        let snap = snapshot(&mut b).unwrap();
        let (_, scripts) = prepare(&p, &snap, &[]).unwrap();
        install(&mut b, &p, &snap, &scripts).unwrap();
        assert_eq!(Saved::filter(&b.v4).jump_positions(), [1]);
        assert_eq!(settle_jumps(&mut b).unwrap().0, b.v4);
    }

    /// A save that hides rules (FWCTL_IPTABLES_SAVE=/bin/true) is refused
    /// before anything changes; a save that hid our jump once let apply add
    /// a second one, which settle_jumps takes out.
    #[test]
    fn a_save_that_lies_changes_nothing_or_leaves_one_jump() {
        let mut b = fake();
        b.v4 = String::new();
        let e = snapshot(&mut b).unwrap_err().to_string();
        assert!(e.contains("printed no filter table"), "{e}");
        assert!(b.calls.iter().all(|c| c.starts_with("save")));
        let mut b = fake();
        let p = plan();
        let snap = snapshot(&mut b).unwrap();
        install(&mut b, &p, &snap, &prepare(&p, &snap, &[]).unwrap().1).unwrap();
        // The next apply is told "nothing there" and inserts a second jump.
        let blind = Snapshot {
            v4: BEFORE_V4.into(),
            ..snapshot(&mut b).unwrap()
        };
        install(&mut b, &p, &blind, &prepare(&p, &blind, &[]).unwrap().1).unwrap();
        assert_eq!(Saved::filter(&b.v4).jump_positions().len(), 2);
        let (v4, _) = settle_jumps(&mut b).unwrap();
        assert_eq!(Saved::filter(&v4).jump_positions(), [1]);
    }

    /// During a --confirm window another tool adds a chain and a rule and a
    /// ban arrives; the rollback keeps all three and takes out only fwctl.
    #[test]
    fn a_rollback_keeps_what_others_added_meanwhile() {
        let mut b = fake();
        let p = plan();
        let snap = snapshot(&mut b).unwrap();
        install(&mut b, &p, &snap, &prepare(&p, &snap, &[]).unwrap().1).unwrap();
        b.restore_table(
            Family::V4,
            "*filter\n:EXTRA - [0:0]\n-I INPUT 1 -s 192.0.2.77/32 -j ACCEPT\n-A EXTRA -j RETURN\nCOMMIT\n",
            true,
        )
        .unwrap();
        b.sets.push_str("add blacklist 203.0.113.50 timeout 600\n");
        let before = b.sets.len();
        rollback(
            &mut b,
            &apply::set_names(&p),
            &snap,
            &[Family::V4, Family::V6],
        )
        .unwrap();
        // The sets' rollback script (what the fake appended) keeps the ban.
        let script = b.sets[before..].to_string();
        let tmp = script
            .lines()
            .find_map(|l| {
                l.strip_suffix(" blacklist")
                    .and_then(|l| l.strip_prefix("swap "))
            })
            .unwrap_or_else(|| panic!("{script}"));
        assert!(
            script.contains(&format!("add {tmp} 203.0.113.50 timeout 600\n")),
            "{script}"
        );
        let v4 = Saved::filter(&b.v4);
        assert_eq!(v4.fwctl_chains().count(), 0, "{}", b.v4);
        assert!(v4.jump_positions().is_empty());
        assert_eq!(v4.policy("INPUT"), Some("ACCEPT"));
        assert!(
            v4.chains.contains(&"EXTRA".to_string()) && v4.chains.contains(&"DOCKER".to_string())
        );
        assert!(
            b.v4.contains("-A INPUT -s 192.0.2.77/32 -j ACCEPT"),
            "{}",
            b.v4
        );
        assert!(b.v4.contains("-A INPUT -s 192.0.2.9/32 -j ACCEPT"));
        assert!(b
            .calls
            .iter()
            .filter(|c| c.starts_with("restore V"))
            .all(|c| c.ends_with("--noflush")));
        assert!(Saved::filter(&b.v6).fwctl_chains().next().is_none());
    }

    #[test]
    fn a_failing_step_puts_everything_back() {
        let mut b = fake();
        b.fail_on = Some("restore V6 --noflush".into());
        let p = plan();
        let snap = snapshot(&mut b).unwrap();
        let (_, scripts) = prepare(&p, &snap, &[]).unwrap();
        let err = install(&mut b, &p, &snap, &scripts).unwrap_err();
        assert!(err.rollback.is_ok());
        let msg = err.to_string();
        assert!(
            msg.contains("restore V6 --noflush failed: injected failure"),
            "{msg}"
        );
        assert!(msg.contains("put back"), "{msg}");
        // The IPv4 table is the snapshot again, Docker's chain included.
        assert_eq!(Saved::filter(&b.v4), Saved::filter(BEFORE_V4));
        assert_eq!(
            Saved::filter(&b.v6),
            Saved::filter(EMPTY),
            "the failed (atomic) IPv6 step is not re-run"
        );
        assert_eq!(
            b.calls
                .iter()
                .filter(|c| c.starts_with("restore V6"))
                .count(),
            1
        );
        assert_eq!(
            b.calls.last().unwrap(),
            "restore sets",
            "sets were rolled back too"
        );
    }

    #[test]
    fn incompatible_existing_set_is_refused_before_any_change() {
        let mut b = fake();
        b.sets = "create throttle-hard hash:net family inet hashsize 1024 maxelem 65536\n".into();
        let snap = snapshot(&mut b).unwrap();
        let err = prepare(&plan(), &snap, &[]).unwrap_err();
        assert!(
            err.0
                .contains("set throttle-hard already exists as hash:net"),
            "{err}"
        );
        assert!(err.0.contains("fix:"), "{err}");
        assert!(b.calls.iter().all(|c| c.starts_with("save")));
    }

    #[test]
    fn remove_takes_out_only_what_is_ours() {
        let mut b = fake();
        let p = plan();
        let snap = snapshot(&mut b).unwrap();
        install(&mut b, &p, &snap, &prepare(&p, &snap, &[]).unwrap().1).unwrap();
        b.calls.clear();
        take_out(&mut b, &apply::set_names(&p), true).unwrap();
        assert_eq!(Saved::filter(&b.v4), Saved::filter(BEFORE_V4), "{}", b.v4);
        assert!(Saved::filter(&b.v6).fwctl_chains().next().is_none());
        assert!(
            b.sets.contains("destroy blacklist\n")
                && b.sets.ends_with("destroy throttle-soft_v6\n")
        );
    }

    #[test]
    fn state_bans_missing_from_the_kernel_come_back_with_their_time_left() {
        let mut b = fake();
        let p = plan();
        let snap = snapshot(&mut b).unwrap();
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let bans: Vec<Ban> = vec![
            // Still in the kernel with 300 s: the kernel's timeout stands.
            ("blacklist".into(), net("198.51.100.9/32"), 900),
            // Lost in a flush or a reboot: back with what it has left.
            ("blacklist".into(), net("203.0.113.0/24"), 120),
            ("throttle-hard_v6".into(), net("2001:db8::7/128"), 60),
            // Not one of this config's sets, or not a fit for it: skipped.
            ("other".into(), net("203.0.113.8/32"), 60),
            ("throttle-hard".into(), net("203.0.113.0/28"), 60),
        ];
        let (now, scripts) = prepare(&p, &snap, &bans).unwrap();
        assert_eq!(now.restored, 2);
        let s = &scripts.sets;
        assert!(
            s.contains(" 198.51.100.9 timeout 300\n") && !s.contains("timeout 900"),
            "{s}"
        );
        assert!(s.contains(" 203.0.113.0/24 timeout 120\n"), "{s}");
        assert!(s.contains(" 2001:db8::7 timeout 60\n"), "{s}");
        assert!(
            !s.contains("203.0.113.8") && !s.contains("203.0.113.0/28"),
            "{s}"
        );
    }
}
