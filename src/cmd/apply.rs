//! `fwctl apply`, `confirm` and `remove`: install the config's ruleset
//! through the [`Firewall`] port (whichever backend `[firewall]` names; it
//! puts the kernel back if a step fails), wait for a confirmation, and take
//! fwctl back out. Checks that can fail (config, root, tools, lock) all run
//! before the first change.

use super::run::{Needs, NotRoot, Run};
use super::{say, Invocation};
use crate::core::apply;
use crate::core::config::firewall::Backend;
use crate::core::config::{Config, Mode};
use crate::core::conns::Via;
use crate::core::lockout;
use crate::core::notify::Notice;
use crate::core::policy::Policy;
use crate::core::ruleset::{self, Current, Plan};
use crate::core::state;
use crate::ports::{Connections, Firewall, Installed};
use crate::sys::confirm::{self, Outcome};
use crate::sys::firewall;
use crate::sys::{host, lock, sockdiag, statefile};
use crate::units::duration::MAX_TIMEOUT;
use anyhow::{anyhow, bail, Context, Result};
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

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
fn record_applied(installed: Installed, cfg: &Config, plan: &Plan, path: &Path, t: i64) {
    let applied = state::Applied {
        at: t,
        config: cfg.path.clone(),
        digest: ruleset::drift::digest_for(cfg.firewall.backend.as_str(), plan),
        v4: installed.v4,
        v6: installed.v6,
        sets: plan.sets.len(),
        form: ruleset::drift::FORM,
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
    apply_reading(inv, dry_run, confirm, force, false)
}

/// [`apply`]; `whole`: every set read back whole (`status --repair`: a set
/// flushed by hand keeps the marker that would leave it unread).
pub fn apply_reading(
    inv: &Invocation,
    dry_run: bool,
    confirm: Option<Duration>,
    force: bool,
    whole: bool,
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
    // `[geo]`: each country's networks from the database, or its last good
    // ones (exit 2); with neither, apply stops here, before any change.
    let geo_read = super::geo::fill(&cfg, &mut plan, &state_file, !dry_run)?;
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
        let mode = cfg.mode.as_str();
        let assumed = |note: String| match cfg.firewall.backend {
            Backend::Iptables => apply::dry_run_text(mode, &plan, &Current::default(), &note),
            Backend::Nftables => apply::nft_dry_run_text(mode, &plan, &Current::default(), &note),
        };
        let text = match (host::is_root(), firewall::open(cfg.firewall.backend)) {
            (true, Ok(mut fw)) => {
                let bans = state_bans(&cfg, &state_file, t);
                let p = fw.prepare(&plan, &bans).context("reading the current state")?;
                format!(
                    "# fwctl apply --dry-run, mode {mode}{}\n# state read from the kernel and the state file\n{}",
                    match cfg.firewall.backend {
                        Backend::Iptables => String::new(),
                        b => format!(", backend {}", b.as_str()),
                    },
                    p.script
                )
            }
            (true, Err(e)) => assumed(format!("{} tools unusable ({e}): the kernel was not read; this assumes nothing of fwctl's is installed yet", cfg.firewall.backend.as_str())),
            (false, _) => assumed("not root: the kernel was not read (rules, sets, connections); this assumes nothing of fwctl's is installed yet".into()),
        };
        super::out(text)?;
        // Without root nothing of the kernel is read, connections included.
        let n = if host::is_root() { lock_outs() } else { 0 };
        if n > 0 && !past {
            say!("fwctl: {}", refusal(n));
        }
        return Ok((n == 0 || past) && geo_read);
    }
    let does = "changes the kernel firewall and must run as root";
    let fix = "sudo fwctl apply (or --dry-run to only look)";
    let root = NotRoot("apply", does, fix.into());
    // Root first: the lock-out check reads the socket table.
    root.check(host::is_root())?;
    let n = lock_outs();
    if n > 0 && !past {
        bail!(refusal(n));
    }
    let needs = Needs::FIREWALL | Needs::LOCK | Needs::NOTIFY;
    let mut run = Run::start(&cfg, inv, None, needs)?;
    let config = cfg.path.display().to_string();
    // Every end of a real apply is told (apply, apply_failed, rollback) and
    // leaves the metrics textfile behind.
    if whole {
        run.firewall().read_whole_sets();
    }
    let result = install_and_confirm(run.firewall(), &cfg, &plan, &state_file, t, confirm);
    match &result {
        Ok(Some(counts)) => run.tell(Notice::Apply {
            config: config.clone(),
            rules_v4: counts.0,
            rules_v6: counts.1,
            sets: plan.sets.len(),
            restored: counts.2,
        }),
        Ok(None) => {}
        Err(e) => run.tell(match e.downcast_ref::<RolledBack>() {
            Some(r) => Notice::Rollback {
                config: config.clone(),
                reason: r.0.clone(),
            },
            None => Notice::ApplyFailed {
                config: config.clone(),
                error: format!("{e:#}"),
            },
        }),
    }
    run.finish();
    result.map(|_| geo_read)
}

/// An apply whose confirmation did not come: the previous rules are back.
#[derive(Debug, thiserror::Error)]
#[error("{0}: the previous rules and sets were put back")]
struct RolledBack(String);

/// Install, settle the jump, wait for the confirmation if asked; the rule
/// counts and the bans restored on success.
fn install_and_confirm(
    fw: &mut dyn Firewall,
    cfg: &Config,
    plan: &Plan,
    state_file: &Path,
    t: i64,
    confirm: Option<Duration>,
) -> Result<Option<(usize, usize, usize)>> {
    let bans = state_bans(cfg, state_file, t);
    if confirm.is_some() {
        fw.expect_rollback();
    }
    let prepared = fw
        .prepare(plan, &bans)
        .context("reading the current rules and sets")?;
    let installed = fw.install(plan)?;
    for w in &installed.warnings {
        say!("fwctl: warning: {w}");
    }
    let statics: usize = plan.sets.iter().map(|s| s.members.len()).sum();
    let rules = |t: &ruleset::Table| t.chains.iter().map(|c| c.rules.len()).sum::<usize>();
    let counts = (rules(&plan.v4), rules(&plan.v6), prepared.restored);
    say!(
        "fwctl: applied {} (mode {}, backend {}): {} IPv4 + {} IPv6 rules, {} sets, {statics} static members, {} bans kept, {} restored from the state file",
        cfg.path.display(),
        cfg.mode.as_str(),
        fw.name(),
        counts.0,
        counts.1,
        plan.sets.len(),
        prepared.carried - prepared.restored,
        prepared.restored
    );
    if !prepared.unread.is_empty() {
        say!(
            "fwctl: kept as they were, not read (their config members did not change; their bans stay): {}",
            prepared.unread.join(", ")
        );
    }
    let Some(window) = confirm else {
        record_applied(installed, cfg, plan, state_file, t);
        return Ok(Some(counts));
    };
    let tty = std::io::stdin().is_terminal();
    say!(
        "fwctl: waiting {} for confirmation: {}run `fwctl confirm` from another shell, or the previous rules are put back",
        humantime::format_duration(window),
        if tty { "press Enter here or " } else { "" }
    );
    let outcome =
        confirm::wait(&lock::run_dir(), window, tty).context("waiting for confirmation")?;
    if outcome == Outcome::Confirmed {
        say!("fwctl: confirmed; the new rules stay");
        record_applied(installed, cfg, plan, state_file, t);
        return Ok(Some(counts));
    }
    let why = match outcome {
        Outcome::Interrupted(sig) => format!("interrupted by signal {sig}"),
        _ => format!(
            "no confirmation within {}",
            humantime::format_duration(window)
        ),
    };
    fw.roll_back(plan).map_err(|e| {
        anyhow!(
            "{why}, and rolling back failed: {e}; check {} by hand",
            match fw.name() {
                "nftables" => "`nft list table inet fwctl`",
                _ => "`iptables-save` and `ipset list`",
            }
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
    // Without a config the backend is not known either: both are taken
    // out, each as far as its tools are here.
    let (cfg, backends) = match crate::sys::configfile::load(config) {
        Ok(cfg) => {
            let b = vec![cfg.firewall.backend];
            (cfg, b)
        }
        Err(e) if !config.exists() => {
            say!("fwctl: note: {e}; using the default set names, from both backends");
            (
                Config::builtin(),
                vec![Backend::Iptables, Backend::Nftables],
            )
        }
        Err(e) => return Err(e.into()),
    };
    let plan = ruleset::build(&cfg);
    let does = "changes the kernel firewall and must run as root";
    NotRoot("remove", does, "sudo fwctl remove".into()).check(host::is_root())?;
    let mut fws = Vec::new();
    for b in &backends {
        match firewall::open(*b) {
            Ok(fw) => fws.push(fw),
            Err(e) if backends.len() == 1 => return Err(e.into()),
            Err(e) => say!("fwctl: note: {} not taken out: {e}", b.as_str()),
        }
    }
    if fws.is_empty() {
        bail!("no backend's tools found; fix: apt-get install iptables ipset (or nftables)");
    }
    let _lock = super::run::take_lock()?;
    for fw in fws.iter_mut() {
        fw.remove(&plan, sets)?;
        say!(
            "fwctl: {}{}",
            match fw.name() {
                "nftables" =>
                    "removed table inet fwctl's chains: nothing of fwctl's filters packets now",
                _ => "removed fwctl's chains and jumps (INPUT, and FORWARD or DOCKER-USER); INPUT policy is ACCEPT",
            },
            if sets {
                "; sets destroyed"
            } else {
                "; sets kept (use --sets to destroy them)"
            }
        );
    }
    // The last apply's record goes with its rules (when they were this
    // backend's): status then says they are not installed, not that they
    // changed behind fwctl's back.
    let removed: Vec<&str> = fws.iter().map(|fw| fw.name()).collect();
    let state = cfg.state_path(inv.state());
    if state.exists() {
        let forget = |st: &mut crate::core::state::State| {
            let theirs = st
                .applied
                .as_ref()
                .map(|a| ruleset::drift::backend_of(&a.digest));
            if theirs.is_some_and(|b| removed.contains(&b)) {
                st.applied = None;
            }
        };
        if let Err(e) = statefile::update(&state, host::now(), forget) {
            say!("fwctl: warning: could not clear the last apply's record in {} ({e}); `fwctl status` calls the removed rules drift until the next apply", state.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let c = Config::parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n",
            Path::new("/t.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap();
        ruleset::build(&c)
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
}
