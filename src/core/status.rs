//! `fwctl status`, the evaluation (pure): is fwctl's ruleset installed and
//! still what the config says, how full are the sets, what expires next, when
//! did each scan rule last run, is capture running. The kernel's tables and
//! sets, the state file and the clock are inputs; `cmd::status` gathers them.

use super::ban;
use super::config::Config;
use super::ruleset::drift;
use super::ruleset::{Family, Plan};
use super::sets::{Member, SetHead};
use super::state::{self, State};
use crate::units::duration::{count, human};
use crate::units::time::utc;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A set this full (percent) is a problem: bans start failing at 100.
const FULL_WARN: f64 = 90.0;
/// How many of the soonest expiries are shown.
const SOONEST: usize = 5;

/// What status reads, gathered by `run` (or a test).
pub struct Facts<'a> {
    pub cfg: &'a Config,
    pub plan: &'a Plan,
    /// fwctl's rules per family as the backend read them back
    /// (`ports::Installed`'s line form).
    pub v4: Vec<String>,
    pub v6: Vec<String>,
    /// Every set's header, and the members of each of fwctl's sets that
    /// exists.
    pub headers: BTreeMap<String, SetHead>,
    pub members: BTreeMap<String, Vec<Member>>,
    pub state: State,
    pub state_path: PathBuf,
    /// Why the state file could not be read as state (it is corrupt).
    pub state_warning: Option<String>,
    /// The pid of a running capture, if one runs.
    pub capture_pid: Option<String>,
    /// The pid of a running watch, if one runs.
    pub watch_pid: Option<String>,
    /// With [fleet]: what `fwctl sync` says of itself (None: it does not
    /// run), and the bans waiting in the fleet outbox.
    pub sync: Option<SyncFacts>,
    pub fleet_outbox: usize,
    /// Each [[feed]]'s record of its updates.
    pub feeds: Vec<(String, crate::core::feeds::Meta)>,
    pub now: i64,
    /// `sudo fwctl` with the --config and --state the user gave, for the fixes.
    pub invoke: String,
}

/// A running sync's own account (its status file).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SyncFacts {
    pub pid: String,
    pub connected: bool,
    pub redis: String,
    pub last_id: String,
    /// When the last entry applied was written (Unix ms) and how long it
    /// took to get here.
    pub last_entry_ms: u64,
    pub lag_ms: u64,
    pub applied: u64,
    pub skipped: u64,
    /// Of the skipped: oversized entries, and entries refused for their
    /// signature.
    pub oversized: u64,
    pub unsigned: u64,
    pub error: Option<String>,
    /// When sync last wrote its account.
    pub updated: i64,
}

/// The fleet part of the status, with [fleet].
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    pub sync: Option<SyncFacts>,
    /// Bans made here that wait for Redis.
    pub waiting: usize,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub config: PathBuf,
    pub mode: &'static str,
    pub healthy: bool,
    /// Each problem with its fix.
    pub problems: Vec<String>,
    /// Whether `status --repair` (an apply) fixes the problems.
    pub repairable: bool,
    /// The problems that are drift: what fwctl installed, changed or gone
    /// behind its back (rules, sets, bans). Not drift: a first install not
    /// yet made, an edited config, a full set.
    pub drift: Vec<String>,
    pub rules: Vec<Rules>,
    pub last_apply: Option<LastApply>,
    pub sets: Vec<SetStatus>,
    pub soonest_expiries: Vec<ban::Entry>,
    pub state: StateStatus,
    pub scans: Vec<ScanStatus>,
    pub capture: Capture,
    /// `fwctl watch`: running or not (the same shape as capture's).
    pub watch: Capture,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<FeedStatus>,
}

#[derive(Debug, Serialize)]
pub struct FeedStatus {
    pub name: String,
    pub entries: usize,
    /// When its list was last taken (or found unchanged), and last asked for.
    pub ok_at: Option<String>,
    pub fetched: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Rules {
    pub family: &'static str,
    pub installed: bool,
    pub policy: String,
    /// Lines of fwctl's rules the last apply installed that are gone, and
    /// lines that were not there then (iptables-save form).
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    /// Lines still there but no longer in the order the apply left them
    /// (packets meet rules in order, so a moved rule is drift too).
    pub moved: Vec<String>,
    /// These rules are drift (see [`Status::drift`]).
    pub drifted: bool,
}

#[derive(Debug, Serialize)]
pub struct LastApply {
    pub at: String,
    pub ago_secs: i64,
    pub config_changed: bool,
}

#[derive(Debug, Serialize)]
pub struct SetStatus {
    pub name: String,
    pub exists: bool,
    pub entries: u64,
    pub capacity: u64,
    pub percent_full: f64,
    /// Members with a timeout: the bans.
    pub bans: u64,
}

#[derive(Debug, Serialize)]
pub struct StateStatus {
    pub path: PathBuf,
    pub active_bans: usize,
    /// Running bans the state file knows that the kernel's sets lack.
    pub missing_from_kernel: usize,
}

#[derive(Debug, Serialize)]
pub struct ScanStatus {
    pub rule: String,
    pub kind: String,
    pub ipset: String,
    pub at: String,
    pub ago_secs: i64,
    pub offenders: u64,
    pub added: u64,
}

#[derive(Debug, Serialize)]
pub struct Capture {
    pub running: bool,
    pub pid: Option<String>,
}

/// What the plan check looks for besides the record.
struct Want {
    /// The chain the forward jump sits in, when the config names it.
    forward: Option<&'static str>,
    /// The config was edited since the last apply: its chains, rules and
    /// policy are the edit's to put in (apply), not drift.
    edited: bool,
}

fn family_rules(
    family: Family,
    now: &[String],
    plan: &Plan,
    then: Option<&[String]>,
    want: Want,
    invoke: &str,
    problems: &mut Vec<String>,
) -> Rules {
    let Want { forward, edited } = want;
    let name = match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    };
    let table = table_of(plan, family);
    let policy = now
        .iter()
        .find_map(|l| l.strip_prefix("policy INPUT "))
        .unwrap_or("ACCEPT")
        .to_string();
    let has = |l: &str| now.iter().any(|x| x == l);
    let installed = has("jump at INPUT 1") || now.iter().any(|l| l.starts_with(':'));
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    let mut moved = Vec::new();
    if !installed {
        problems.push(format!(
            "{name}: fwctl's rules are not installed; fix: {invoke} apply"
        ));
    } else {
        if let Some(then) = then {
            let d = drift::diff(then, now);
            (missing, extra, moved) = (d.missing, d.extra, d.moved);
        }
        // Checked against the plan too, for a kernel changed before any
        // recorded apply (or whose record is gone).
        let mut plan_miss: Vec<String> = Vec::new();
        if !has("jump at INPUT 1") {
            plan_miss.push("jump at INPUT 1".into());
        }
        // The jumps to the raw chain (where bans drop) and to the forward
        // chain, wherever they sit (a record tells their place).
        for at in std::iter::once("PREROUTING").chain(forward) {
            let jump = format!("jump at {at} ");
            if !now.iter().any(|l| l.starts_with(&jump)) {
                plan_miss.push(format!("{jump}1"));
            }
        }
        for c in table.chains.iter().filter(|_| !edited) {
            let decl = format!(":{}", c.name);
            let rules = now
                .iter()
                .filter(|l| l.starts_with(&format!("-A {} ", c.name)))
                .count();
            if !has(&decl) {
                plan_miss.push(decl);
            } else if then.is_none() && rules != c.rules.len() {
                plan_miss.push(format!(
                    "{} rules in {} (has {rules})",
                    c.rules.len(),
                    c.name
                ));
            }
        }
        let want_policy = if table.drop_policy { "DROP" } else { "ACCEPT" };
        if policy != want_policy && !edited {
            plan_miss.push(format!("policy INPUT {want_policy}"));
        }
        for m in plan_miss {
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
        if !missing.is_empty() || !extra.is_empty() || !moved.is_empty() {
            problems.push(format!(
                "{name}: fwctl's rules changed behind its back ({} missing, {} extra, {} moved: e.g. {}); fix: {invoke} status --repair",
                missing.len(),
                extra.len(),
                moved.len(),
                missing
                    .first()
                    .or(extra.first())
                    .or(moved.first())
                    .map(String::as_str)
                    .unwrap_or("order")
            ));
        }
    }
    Rules {
        family: if family == Family::V4 { "ipv4" } else { "ipv6" },
        installed,
        policy,
        missing,
        extra,
        moved,
        drifted: false,
    }
}

/// Whether a ban is in force in the kernel: its set holds it, or a network
/// that covers it (nft's interval sets hold no element inside another).
fn in_force(f: &Facts, set: &str, addr: &IpNet) -> bool {
    f.members
        .get(set)
        .is_some_and(|ms| ms.iter().any(|m| m.net.contains(addr)))
}

fn table_of(plan: &Plan, family: Family) -> &crate::core::ruleset::Table {
    match family {
        Family::V4 => &plan.v4,
        Family::V6 => &plan.v6,
    }
}

/// Where `table`'s forward jump sits, when the config alone says so
/// (`protect = "docker"` or `"all"`; "auto" is decided by apply, from
/// whether Docker's DOCKER-USER is there).
fn forward_hook(table: &crate::core::ruleset::Table) -> Option<crate::core::config::forward::Hook> {
    let f = table.forward.as_ref()?;
    f.hook.or(f.protect.resolve(false))
}

/// A record's lines, with those an older `form` lacks as its apply put
/// them (copied only then).
fn as_recorded<'a>(
    v: &'a [String],
    form: u32,
    backend: &str,
    table: &crate::core::ruleset::Table,
    now: &[String],
    edited: bool,
) -> std::borrow::Cow<'a, [String]> {
    // The config edited since: its [forward] may not be the applied one.
    let forward = match &table.forward {
        _ if edited => None,
        None => Some(false),
        Some(_) => forward_hook(table).map(|_| true),
    };
    let lacked = drift::unrecorded(form, backend, forward, now);
    if lacked.is_empty() {
        std::borrow::Cow::Borrowed(v)
    } else {
        std::borrow::Cow::Owned([v, &lacked].concat())
    }
}

pub fn evaluate(f: &Facts) -> Status {
    let mut problems = Vec::new();
    let backend = f.cfg.firewall.backend.as_str();
    let applied = f.state.applied.as_ref();
    let forward_recorded = applied.is_some_and(|a| {
        a.v4.iter().chain(&a.v6).any(|l| {
            l == ":FWCTL-FORWARD"
                || l.starts_with("jump at FORWARD ")
                || l.starts_with("jump at DOCKER-USER ")
        })
    });
    let config_changed =
        applied.is_some_and(|a| !drift::same_config(&a.digest, backend, f.plan, forward_recorded));
    // The kernel holds what the last apply put in until the next apply,
    // edited config or not: compared with it whenever it was this backend's
    // (an edit's forward part taken from the kernel for an older record).
    // A form-0 record with an edited config is not: it may predate lines
    // read back since (the raw table's) that only its digest tells apart.
    let same_backend = applied.is_some_and(|a| drift::backend_of(&a.digest) == backend);
    let then = |v: fn(&state::Applied) -> &Vec<String>, table, now| {
        applied
            .filter(|a| same_backend && (!config_changed || a.form >= 1))
            .map(|a| as_recorded(v(a), a.form, backend, table, now, config_changed))
    };
    let mut drift = Vec::new();
    let mut rules = Vec::new();
    let nft = backend == "nftables";
    for (family, save, then) in [
        (Family::V4, &f.v4, then(|a| &a.v4, &f.plan.v4, &f.v4)),
        (Family::V6, &f.v6, then(|a| &a.v6, &f.plan.v6, &f.v6)),
    ] {
        let before = problems.len();
        let mut r = family_rules(
            family,
            save,
            f.plan,
            then.as_deref(),
            Want {
                // A forward jump the edited config wants is the edit's.
                forward: (!config_changed)
                    .then(|| forward_hook(table_of(f.plan, family)))
                    .flatten()
                    .map(|h| if nft { "FORWARD" } else { h.chain() }),
                edited: config_changed,
            },
            &f.invoke,
            &mut problems,
        );
        // Rules never installed are drift only once fwctl has installed
        // them (with this backend: a switch not yet applied is the edit's).
        r.drifted = problems.len() > before && (r.installed || same_backend);
        if r.drifted {
            drift.extend(problems[before..].iter().cloned());
        }
        rules.push(r);
    }
    if config_changed {
        problems.push(format!(
            "{} changed since the last apply ({}); fix: {} apply",
            f.cfg.path.display(),
            utc(applied.map(|a| a.at).unwrap_or(0)),
            f.invoke
        ));
    }
    if let Some(w) = &f.state_warning {
        problems.push(format!(
            "{w}; fix: {} apply (it sets the file aside and starts a new one)",
            f.invoke
        ));
    }

    // Every member of fwctl's sets: bans per set, what the kernel holds,
    // and the soonest expiries all come from them.
    let members = ban::entries(&f.members, &f.state.history.records());
    let mut bans_in: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &members {
        if e.expires_in.is_some() {
            *bans_in.entry(e.set.as_str()).or_default() += 1;
        }
    }
    let mut full = 0;
    let mut sets = Vec::new();
    for p in &f.plan.sets {
        let h = f.headers.get(&p.name);
        let capacity = h.and_then(|h| h.maxelem).unwrap_or(u64::from(p.maxelem));
        let entries = h.map(|h| h.entries).unwrap_or(0);
        let bans = bans_in.get(p.name.as_str()).copied().unwrap_or(0);
        let percent = if capacity == 0 {
            0.0
        } else {
            (entries as f64 * 1000.0 / capacity as f64).round() / 10.0
        };
        if h.is_none() {
            problems.push(format!(
                "set {} does not exist; fix: {} apply",
                p.name, f.invoke
            ));
            if applied.is_some() {
                drift.push(problems.last().expect("just pushed").clone());
            }
        } else if percent >= FULL_WARN {
            full += 1;
            problems.push(format!(
                "set {} is {percent}% full ({entries} of {capacity}): new bans fail when it is full; fix: raise [sets] maxelem and apply",
                p.name
            ));
        }
        sets.push(SetStatus {
            name: p.name.clone(),
            exists: h.is_some(),
            entries,
            capacity,
            percent_full: percent,
            bans,
        });
    }

    let ours: BTreeSet<&str> = f.plan.sets.iter().map(|s| s.name.as_str()).collect();
    let active = f.state.history.active(f.now);
    let missing_from_kernel = active
        .iter()
        .filter(|r| ours.contains(r.set.as_str()) && !in_force(f, &r.set, &r.addr))
        .count();
    if missing_from_kernel > 0 {
        problems.push(format!(
            "{} in the state file {} not in the kernel's sets (flushed or rebooted?); fix: {} status --repair",
            count(missing_from_kernel as u64, "running ban", "running bans"),
            if missing_from_kernel == 1 { "is" } else { "are" },
            f.invoke
        ));
        // After `remove --sets` (no record) the bans are gone on purpose.
        if applied.is_some() {
            drift.push(problems.last().expect("just pushed").clone());
        }
    }
    // Entries come soonest expiry first, the permanent ones last.
    let soonest: Vec<ban::Entry> = members
        .into_iter()
        .filter(|e| e.expires_in.is_some())
        .take(SOONEST)
        .collect();

    let mut scans: Vec<ScanStatus> = f
        .state
        .scans
        .iter()
        .map(|s| ScanStatus {
            rule: s.rule.clone(),
            kind: s.kind.clone(),
            ipset: s.ipset.clone(),
            at: utc(s.at),
            ago_secs: f.now - s.at,
            offenders: s.offenders,
            added: s.added,
        })
        .collect();
    scans.sort_by_key(|s| s.ago_secs);

    let before_feeds = problems.len();
    let mut feeds = Vec::new();
    for feed in &f.cfg.feeds {
        let meta = f
            .feeds
            .iter()
            .find(|(n, _)| *n == feed.name)
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        if meta.ok_at == 0 {
            problems.push(format!(
                "feed {} has no list yet{}; fix: {} feeds update --feed {}",
                feed.name,
                meta.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default(),
                f.invoke,
                feed.name
            ));
        } else if let Some(e) = &meta.error {
            problems.push(format!(
                "feed {}: the last update failed ({e}); its last good copy from {} stays; fix: check its url, then {} feeds update --feed {} --force",
                feed.name,
                utc(meta.ok_at),
                f.invoke,
                feed.name
            ));
        } else if f.now - meta.ok_at > 3 * feed.every as i64 {
            problems.push(format!(
                "feed {} was last updated {} ago (every {}); fix: enable systemd/fwctl-feeds.timer or the cron line",
                feed.name,
                human((f.now - meta.ok_at) as u64),
                human(feed.every)
            ));
        }
        feeds.push(FeedStatus {
            name: feed.name.clone(),
            entries: meta.entries,
            ok_at: (meta.ok_at > 0).then(|| utc(meta.ok_at)),
            fetched: (meta.fetched > 0).then(|| utc(meta.fetched)),
            error: meta.error.clone(),
        });
    }
    let feed_problems = problems.len() - before_feeds;
    let before_fleet = problems.len();
    let fleet = f.cfg.fleet.as_ref().map(|_| {
        match &f.sync {
            None => problems.push(format!(
                "fwctl sync is not running: the fleet's bans are not applied here; fix: systemctl enable --now fwctl-sync (or {} sync)",
                f.invoke
            )),
            Some(s) if !s.connected => problems.push(format!(
                "fwctl sync cannot reach Redis ({}): {}; fix: check that Redis runs and [fleet] redis and password_file",
                s.redis,
                s.error.as_deref().unwrap_or("not connected")
            )),
            Some(_) => {}
        }
        if f.fleet_outbox > 0 {
            problems.push(format!(
                "{} made here {} for Redis (unreachable when they were made); fix: start fwctl sync, which publishes them once Redis answers",
                count(f.fleet_outbox as u64, "ban", "bans"),
                if f.fleet_outbox == 1 { "waits" } else { "wait" }
            ));
        }
        FleetStatus {
            sync: f.sync.clone(),
            waiting: f.fleet_outbox,
        }
    });
    // Nothing in the fleet's part is what an apply puts back.
    let fleet_problems = problems.len() - before_fleet;
    // Everything but a full set is what an apply puts back.
    let repairable = problems.len() > full + fleet_problems + feed_problems;
    Status {
        config: f.cfg.path.clone(),
        mode: f.cfg.mode.as_str(),
        healthy: problems.is_empty(),
        problems,
        repairable,
        drift,
        rules,
        last_apply: applied.map(|a| LastApply {
            at: utc(a.at),
            ago_secs: f.now - a.at,
            config_changed,
        }),
        sets,
        soonest_expiries: soonest,
        state: StateStatus {
            path: f.state_path.clone(),
            active_bans: active.len(),
            missing_from_kernel,
        },
        scans,
        capture: Capture {
            running: f.capture_pid.is_some(),
            pid: f.capture_pid.clone(),
        },
        watch: Capture {
            running: f.watch_pid.is_some(),
            pid: f.watch_pid.clone(),
        },
        fleet,
        feeds,
    }
}

fn ago(secs: i64) -> String {
    if secs < 0 {
        return "in the future (clock changed?)".into();
    }
    format!("{} ago", human(secs as u64))
}

impl Status {
    pub fn human(&self) -> String {
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(&s);
            o.push('\n');
        };
        line(format!(
            "fwctl status: {} (config {}, mode {})",
            if self.healthy { "OK" } else { "ATTENTION" },
            self.config.display(),
            self.mode
        ));
        for r in &self.rules {
            let state = if !r.installed {
                "not installed".to_string()
            } else if r.missing.is_empty() && r.extra.is_empty() && r.moved.is_empty() {
                "installed, as applied".to_string()
            } else {
                format!(
                    "DRIFT: {} missing, {} extra, {} moved",
                    r.missing.len(),
                    r.extra.len(),
                    r.moved.len()
                )
            };
            line(format!(
                "rules {}: {state}; INPUT policy {}",
                r.family, r.policy
            ));
            for m in &r.missing {
                line(format!("  - {m}"));
            }
            for m in &r.extra {
                line(format!("  + {m}"));
            }
            for m in &r.moved {
                line(format!("  ~ {m} (moved)"));
            }
        }
        match &self.last_apply {
            Some(a) => line(format!(
                "last apply: {} ({}){}",
                a.at,
                ago(a.ago_secs),
                if a.config_changed {
                    "; the config changed since"
                } else {
                    ""
                }
            )),
            None => line("last apply: none recorded in the state file".into()),
        }
        line("sets:".into());
        for s in &self.sets {
            if s.exists {
                line(format!(
                    "  {:<20} {:>8} of {:<8} ({:>5.1}% full), {}",
                    s.name,
                    s.entries,
                    s.capacity,
                    s.percent_full,
                    count(s.bans, "ban", "bans")
                ));
            } else {
                line(format!("  {:<20} MISSING", s.name));
            }
        }
        if !self.soonest_expiries.is_empty() {
            line("soonest expiries:".into());
            for e in &self.soonest_expiries {
                line(format!(
                    "  {:<20} {:<40} in {}",
                    e.set,
                    e.address,
                    human(e.expires_in.unwrap_or(0))
                ));
            }
        }
        line(format!(
            "state file {}: {}, {} of them missing from the kernel",
            self.state.path.display(),
            count(self.state.active_bans as u64, "running ban", "running bans"),
            self.state.missing_from_kernel
        ));
        if self.scans.is_empty() {
            line("last scan: none recorded".into());
        }
        for s in &self.scans {
            line(format!(
                "last scan {} {} -> {}: {} ({}), {} offenders, {} added",
                s.rule,
                s.kind,
                s.ipset,
                s.at,
                ago(s.ago_secs),
                s.offenders,
                s.added
            ));
        }
        line(match &self.capture.pid {
            Some(p) => format!("capture: running (pid {p})"),
            None => "capture: not running".into(),
        });
        line(match &self.watch.pid {
            Some(p) => format!("watch: running (pid {p})"),
            None => "watch: not running".into(),
        });
        for fd in &self.feeds {
            line(format!(
                "feed {}: {} entries, updated {}{}",
                fd.name,
                fd.entries,
                fd.ok_at.as_deref().unwrap_or("never"),
                fd.error
                    .as_ref()
                    .map(|e| format!("; last try failed: {e}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(fl) = &self.fleet {
            line(match &fl.sync {
                None => "sync: not running".into(),
                Some(s) => {
                    format!(
                    "sync: running (pid {}), {} {}, last entry {} ({}), {} applied, {} skipped{}",
                    s.pid,
                    if s.connected {
                        "connected to"
                    } else {
                        "NOT connected to"
                    },
                    s.redis,
                    if s.last_id.is_empty() {
                        "none".to_string()
                    } else {
                        s.last_id.clone()
                    },
                    if s.last_entry_ms == 0 {
                        "none yet".to_string()
                    } else {
                        format!("lag {} ms", s.lag_ms)
                    },
                    s.applied,
                    s.skipped,
                    if s.oversized + s.unsigned > 0 {
                        format!(" ({} oversized, {} unsigned or forged)", s.oversized, s.unsigned)
                    } else {
                        String::new()
                    }
                )
                }
            });
            if fl.waiting > 0 {
                line(format!(
                    "fleet outbox: {} to publish",
                    count(fl.waiting as u64, "ban", "bans")
                ));
            }
        }
        for p in &self.problems {
            line(format!("problem: {p}"));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ruleset::{render_sets, render_table, Current, TableState};
    use crate::sys::iptables::save::ours_raw;
    use std::path::Path;

    /// fwctl's lines of a family's filter save, and of its raw table as
    /// apply leaves it (the jump to FWCTL-RAW first in PREROUTING).
    fn ours(save: &str) -> Vec<String> {
        let raw = "*raw\n:PREROUTING ACCEPT [0:0]\n:FWCTL-RAW - [0:0]\n-A PREROUTING -j FWCTL-RAW\nCOMMIT\n";
        [crate::sys::iptables::save::ours(save), ours_raw(raw)].concat()
    }

    fn cfg() -> Config {
        Config::parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n",
            Path::new("/etc/fwctl/fwctl.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap()
    }

    /// What the kernel would print right after applying `plan`: the
    /// rendered rules in save form, as far as `drift::ours` reads them.
    fn installed(plan: &Plan, family: Family) -> String {
        let t = match family {
            Family::V4 => &plan.v4,
            Family::V6 => &plan.v6,
        };
        let text = render_table(t, &TableState::default());
        let mut out = String::from("*filter\n:INPUT DROP [0:0]\n");
        for l in text.lines() {
            if l.starts_with(':') {
                out += &format!("{l}\n");
            } else if let Some(r) = l.strip_prefix("-I INPUT 1 ") {
                out += &format!("-A INPUT {r}\n");
            } else if l.starts_with("-A ") {
                out += &format!("{l}\n");
            }
        }
        out + "COMMIT\n"
    }

    fn facts<'a>(cfg: &'a Config, plan: &'a Plan) -> Facts<'a> {
        let sets = render_sets(&plan.sets, &Current::default());
        let mut headers = BTreeMap::new();
        let mut members = BTreeMap::new();
        for s in &plan.sets {
            headers.insert(
                s.name.clone(),
                SetHead {
                    holds: crate::core::sets::Holds::Addresses,
                    family: s.family,
                    maxelem: Some(100),
                    timeout: true,
                    entries: 0,
                },
            );
            members.insert(s.name.clone(), Vec::new());
        }
        assert!(!sets.is_empty());
        let v4 = installed(plan, Family::V4);
        let v6 = installed(plan, Family::V6);
        let mut state = State::default();
        state.applied = Some(state::Applied {
            at: 1000,
            config: cfg.path.clone(),
            digest: drift::digest(plan),
            v4: ours(&v4),
            v6: ours(&v6),
            sets: plan.sets.len(),
            form: drift::FORM,
        });
        Facts {
            cfg,
            plan,
            v4: ours(&v4),
            v6: ours(&v6),
            headers,
            members,
            state,
            state_path: "/var/lib/fwctl/state.json".into(),
            state_warning: None,
            capture_pid: None,
            watch_pid: None,
            sync: None,
            fleet_outbox: 0,
            feeds: vec![],
            now: 2000,
            invoke: "sudo fwctl".into(),
        }
    }

    #[test]
    fn as_applied_is_healthy() {
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let s = evaluate(&facts(&c, &p));
        assert!(s.healthy, "{:?}", s.problems);
        assert_eq!(s.last_apply.unwrap().ago_secs, 1000);
        assert!(s.rules.iter().all(|r| r.installed && r.policy == "DROP"));
        assert!(s.drift.is_empty() && s.rules.iter().all(|r| !r.drifted));
    }

    /// nftables' jumps read back since drift::FORM 1 (forward) and 2
    /// (prerouting): a record made before holds them as its apply put
    /// them, so an upgrade is no drift and a jump deleted since still is.
    #[test]
    fn an_nftables_record_before_the_jumps_were_read_back() {
        let mut c = cfg();
        c.firewall.backend = crate::core::config::firewall::Backend::Nftables;
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        let a = f.state.applied.as_mut().unwrap();
        a.digest = drift::digest_for("nftables", &p);
        // What a form-1 apply recorded: all but the prerouting jump.
        for v in [&mut a.v4, &mut a.v6] {
            v.retain(|l| !l.starts_with("jump at PREROUTING "));
        }
        for form in [0, 1] {
            f.state.applied.as_mut().unwrap().form = form;
            let s = evaluate(&f);
            assert!(s.healthy, "form {form}: {:?}", s.problems);
            // The jump deleted since: drift, from the old record too.
            let mut g = facts(&c, &p);
            g.state.applied = f.state.applied.clone();
            g.v6.retain(|l| !l.starts_with("jump at PREROUTING "));
            let s = evaluate(&g);
            assert_eq!(s.rules[1].missing, ["jump at PREROUTING 1"], "form {form}");
            assert!(!s.healthy && s.rules[0].missing.is_empty());
            // Moved behind another rule: only the record knows its place
            // (the plan check takes a jump anywhere).
            g.v6.push("jump at PREROUTING 2".into());
            let s = evaluate(&g);
            assert_eq!(
                (s.rules[1].missing.clone(), s.rules[1].extra.clone()),
                (
                    vec!["jump at PREROUTING 1".to_string()],
                    vec!["jump at PREROUTING 2".to_string()]
                ),
                "form {form}"
            );
        }
        // A form-2 record without the line is compared as it is.
        f.state.applied.as_mut().unwrap().form = 2;
        assert_eq!(evaluate(&f).rules[0].extra, ["jump at PREROUTING 1"]);
        // Form 0 lacked the forward jump too: known from the plan when
        // `[forward]` names its hook, taken from the kernel for "auto".
        for (protect, then_lacks) in [("all", true), ("auto", false)] {
            let c = Config::parse(
                &format!(
                    "[[service]]\nname = \"ssh\"\nport = 22\n[firewall]\nbackend = \"nftables\"\n{}",
                    // "auto" is the default.
                    if protect == "auto" {
                        String::new()
                    } else {
                        format!("[forward]\nprotect = \"{protect}\"\n")
                    }
                ),
                Path::new("/etc/fwctl/fwctl.toml"),
                &|_| Ok(String::new()),
            )
            .unwrap();
            let p = crate::core::ruleset::build(&c);
            let mut f = facts(&c, &p);
            f.v4.push("jump at FORWARD 1".into());
            f.v6.push("jump at FORWARD 1".into());
            let a = f.state.applied.as_mut().unwrap();
            a.digest = drift::digest_for("nftables", &p);
            a.form = 0;
            for v in [&mut a.v4, &mut a.v6] {
                v.retain(|l| !l.starts_with("jump at "));
                v.push("jump at INPUT 1".into());
            }
            assert!(
                evaluate(&f).healthy,
                "{protect}: {:?}",
                evaluate(&f).problems
            );
            f.v4.retain(|l| l != "jump at FORWARD 1");
            let s = evaluate(&f);
            assert_eq!(s.healthy, !then_lacks, "{protect}: {:?}", s.problems);
        }
        // The iptables backend always read its raw jump: with no record,
        // the plan alone says it is missing.
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        f.state.applied = None;
        f.v4.retain(|l| !l.starts_with("jump at PREROUTING "));
        let s = evaluate(&f);
        assert_eq!(s.rules[0].missing, ["jump at PREROUTING 1"]);
        assert!(s.rules[1].missing.is_empty());
    }

    /// With no record, the plan wants the forward jump where the config
    /// puts it (iptables: DOCKER-USER for "docker"; nftables: its own
    /// forward chain); a config edited to want one since the last apply is
    /// that edit, not drift.
    #[test]
    fn the_forward_jump_the_config_names_and_an_edit_that_adds_it() {
        let with = |backend: &str| {
            Config::parse(
                &format!("[[service]]\nname = \"ssh\"\nport = 22\n[firewall]\nbackend = \"{backend}\"\n[forward]\nprotect = \"docker\"\n"),
                Path::new("/etc/fwctl/fwctl.toml"),
                &|_| Ok(String::new()),
            )
            .unwrap()
        };
        for (backend, at) in [("iptables", "DOCKER-USER"), ("nftables", "FORWARD")] {
            let c = with(backend);
            let p = crate::core::ruleset::build(&c);
            let mut f = facts(&c, &p);
            f.state.applied = None;
            let s = evaluate(&f);
            for r in &s.rules {
                assert_eq!(r.missing, [format!("jump at {at} 1")], "{backend}");
            }
            // Applied before the edit (no [forward] then): the edit only.
            let before = cfg();
            let mut f = facts(&c, &p);
            f.state.applied.as_mut().unwrap().digest =
                drift::digest_for(backend, &crate::core::ruleset::build(&before));
            let s = evaluate(&f);
            assert!(s.last_apply.as_ref().unwrap().config_changed, "{backend}");
            assert!(s.drift.is_empty(), "{backend}: {:?}", s.drift);
            assert!(s.rules.iter().all(|r| r.missing.is_empty()), "{backend}");
        }
        // A service added and not applied yet: the edit, not a rule gone.
        let more = Config::parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n[[service]]\nname = \"web\"\nport = 443\n",
            Path::new("/etc/fwctl/fwctl.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap();
        let p2 = crate::core::ruleset::build(&more);
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        f.plan = &p2;
        let s = evaluate(&f);
        assert!(s.last_apply.as_ref().unwrap().config_changed);
        assert!(s.drift.is_empty(), "{:?}", s.drift);
        // The jumps every config installs are still looked for.
        f.v4.retain(|l| l != "jump at INPUT 1");
        assert_eq!(evaluate(&f).rules[0].missing, ["jump at INPUT 1"]);
        // And the kernel is still compared with the last apply: a rule put
        // in behind fwctl's back while an edit waits is drift.
        let mut f = facts(&c, &p);
        f.plan = &p2;
        f.v6.push("-A FWCTL-INPUT -j ACCEPT".into());
        let s = evaluate(&f);
        assert_eq!(s.rules[1].extra, ["-A FWCTL-INPUT -j ACCEPT"]);
        assert!(s.rules[1].drifted && !s.drift.is_empty());
        // Not with a form-0 record (it may predate lines read back since).
        f.state.applied.as_mut().unwrap().form = 0;
        assert!(evaluate(&f).rules[1].extra.is_empty());
        // A switch of backend not applied yet: its rules are not in, which
        // is the edit's (not drift).
        let mut f = facts(&c, &p);
        f.state.applied.as_mut().unwrap().digest = drift::digest_for("nftables", &p);
        f.v4.clear();
        f.v6.clear();
        let s = evaluate(&f);
        assert!(s.last_apply.as_ref().unwrap().config_changed);
        assert!(
            s.rules.iter().all(|r| !r.installed && !r.drifted),
            "{:?}",
            s.rules
        );
        assert!(s.drift.is_empty(), "{:?}", s.drift);
    }

    /// After `remove --sets` (which clears the record) the state file's
    /// running bans are not in the kernel: a problem, not drift.
    #[test]
    fn bans_gone_with_no_record_are_no_drift() {
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        f.state
            .history
            .record("203.0.113.5/32".parse().unwrap(), "blacklist", 1, 1900, 600);
        assert!(!evaluate(&f).drift.is_empty());
        f.state.applied = None;
        let s = evaluate(&f);
        assert!(
            s.problems.iter().any(|p| p.contains("running ban")),
            "{:?}",
            s.problems
        );
        assert!(s.drift.is_empty(), "{:?}", s.drift);
    }

    #[test]
    fn drift_missing_sets_fullness_and_lost_bans_are_each_a_problem() {
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        // A rule deleted from fwctl's chain, one added in IPv6.
        f.v4 = ours(&installed(&p, Family::V4).replacen("-A FWCTL-INPUT -i lo -j ACCEPT\n", "", 1));
        f.v6 = ours(&installed(&p, Family::V6).replace(
            "COMMIT",
            "-A FWCTL-INPUT -s 2001:db8::1/128 -j ACCEPT\nCOMMIT",
        ));
        f.headers.remove("throttle-soft_v6");
        f.headers.get_mut("blacklist").unwrap().entries = 95;
        f.state
            .history
            .record("203.0.113.5/32".parse().unwrap(), "blacklist", 1, 1900, 600);
        let s = evaluate(&f);
        assert!(!s.healthy);
        assert_eq!(s.rules[0].missing, ["-A FWCTL-INPUT -i lo -j ACCEPT"]);
        assert_eq!(
            s.rules[1].extra,
            ["-A FWCTL-INPUT -s 2001:db8::1/128 -j ACCEPT"]
        );
        let p = s.problems.join("\n");
        for want in [
            "IPv4: fwctl's rules changed",
            "IPv6: fwctl's rules changed",
            "set throttle-soft_v6 does not exist",
            "set blacklist is 95% full",
            "1 running ban in the state file is not in the kernel",
        ] {
            assert!(p.contains(want), "{want}: {p}");
        }
        assert!(s.repairable);
        assert_eq!(s.state.missing_from_kernel, 1);
        // A ban inside a network the set holds is in force (nft keeps no
        // element inside another): it was counted as lost.
        f.members
            .entry("blacklist".into())
            .or_default()
            .push(crate::core::sets::Member {
                net: "203.0.113.0/28".parse().unwrap(),
                left: Some(300),
            });
        assert_eq!(evaluate(&f).state.missing_from_kernel, 0);
        // All but the full set is drift (what fwctl installed, changed).
        assert_eq!(s.drift.len(), 4, "{:?}", s.drift);
        assert!(!s.drift.iter().any(|d| d.contains("full")));
        assert!(s.rules[0].drifted && s.rules[1].drifted);
    }

    #[test]
    fn not_installed_and_a_changed_config_are_told_apart() {
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        f.v4 = crate::sys::iptables::save::ours("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
        f.state.applied.as_mut().unwrap().digest = "0000000000000000".into();
        let s = evaluate(&f);
        assert!(!s.rules[0].installed);
        let p = s.problems.join("\n");
        assert!(
            p.contains("IPv4: fwctl's rules are not installed; fix: sudo fwctl apply"),
            "{p}"
        );
        assert!(p.contains("changed since the last apply"), "{p}");
        assert!(s.last_apply.unwrap().config_changed);
        // Rules fwctl installed that are gone are drift; the edited config
        // is not, and neither is a host fwctl never installed on.
        assert_eq!(s.drift.len(), 1, "{:?}", s.drift);
        assert!(s.rules[0].drifted && !s.rules[1].drifted);
        f.state.applied = None;
        let s = evaluate(&f);
        assert!(!s.healthy && s.drift.is_empty(), "{:?}", s.drift);
        // Only a full set is left: nothing for --repair to do.
        let plan = p_of(&c);
        let mut f = facts(&c, &plan);
        f.headers.get_mut("whitelist").unwrap().entries = 100;
        let s = evaluate(&f);
        assert!(!s.healthy && !s.repairable);
    }

    /// A corrupt state file once left status at exit 0 with "OK".
    #[test]
    fn a_corrupt_state_file_needs_attention() {
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        f.state_warning = Some("state file /var/lib/fwctl/state.json is corrupt (EOF)".into());
        let s = evaluate(&f);
        assert!(!s.healthy && s.repairable);
        assert!(
            s.problems[0].contains("is corrupt") && s.problems[0].contains("fix: sudo fwctl apply"),
            "{:?}",
            s.problems
        );
        assert!(s.human().starts_with("fwctl status: ATTENTION"));
    }

    #[test]
    fn a_rule_moved_within_fwctls_chain_is_drift() {
        let c = cfg();
        let p = crate::core::ruleset::build(&c);
        let mut f = facts(&c, &p);
        // The loopback accept moved from the top of FWCTL-INPUT to its end.
        let lo = "-A FWCTL-INPUT -i lo -j ACCEPT\n";
        f.v4 = ours(&installed(&p, Family::V4).replacen(lo, "", 1).replacen(
            "-A FWCTL-INPUT -j FWCTL-BLOCK\n",
            &format!("-A FWCTL-INPUT -j FWCTL-BLOCK\n{lo}"),
            1,
        ));
        let s = evaluate(&f);
        assert!(!s.healthy);
        assert!(s.rules[0].missing.is_empty() && s.rules[0].extra.is_empty());
        assert!(!s.rules[0].moved.is_empty(), "{:?}", s.rules[0]);
        assert!(s.problems[0].contains("moved"), "{:?}", s.problems);
        assert!(s.rules[0].drifted && s.drift.len() == 1);
    }

    fn p_of(c: &Config) -> Plan {
        crate::core::ruleset::build(c)
    }
}
