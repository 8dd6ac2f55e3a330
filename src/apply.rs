//! Installing a [`Plan`]: snapshot what is there, render against it, install
//! in three steps (sets, IPv4 rules, IPv6 rules) and put the snapshot back if
//! any step fails. Also taking fwctl back out.

use crate::backend::{Backend, StepError};
use crate::ipset::{self, SavedSet};
use crate::ruleset::{self, Current, Family, Plan, TableState};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What the kernel had before we touched it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub v4: String,
    pub v6: String,
    pub sets: String,
}

impl Snapshot {
    pub fn take(b: &mut dyn Backend) -> Result<Snapshot, StepError> {
        Ok(Snapshot {
            v4: b.save_table(Family::V4)?,
            v6: b.save_table(Family::V6)?,
            sets: b.save_sets()?,
        })
    }

    fn table(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The state rendering needs: our jumps and chains, which sets exist, and
    /// the timed members (bans) of the plan's sets.
    fn current_from(&self, saved: &BTreeMap<String, SavedSet>, plan: &Plan) -> Current {
        let ours: BTreeSet<&str> = plan.sets.iter().map(|s| s.name.as_str()).collect();
        Current {
            v4: TableState::from_save(&self.v4),
            v6: TableState::from_save(&self.v6),
            sets: saved.keys().cloned().collect(),
            carried: saved
                .iter()
                .filter(|(name, _)| ours.contains(name.as_str()))
                .map(|(name, s)| (name.clone(), s.timed()))
                .collect(),
            restored: 0,
        }
    }
}

/// The three scripts one apply runs, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scripts {
    pub sets: String,
    pub v4: String,
    pub v6: String,
}

/// A ban the state file knows is still running: (set, address, seconds left).
pub type Ban = (String, IpNet, u32);

/// Render the scripts against the snapshot (returned with them), refusing
/// (before anything changes) when an existing set of the same name cannot be
/// swapped with ours. The `ipset save` text, large with a big feed, is parsed
/// once here. `bans` from the state file that the kernel's sets lack (after
/// a reboot or a flush) are put back with the time they have left; the
/// kernel's own timeout wins for a ban it still holds. `Current::restored`
/// counts them.
pub fn prepare(plan: &Plan, snap: &Snapshot, bans: &[Ban]) -> Result<(Current, Scripts), String> {
    let saved = ipset::parse_save(&snap.sets);
    for set in &plan.sets {
        if let Some(s) = saved.get(&set.name) {
            check_compatible(&set.name, set, s)?;
        }
    }
    let mut now = snap.current_from(&saved, plan);
    restore_bans(&mut now, plan, bans);
    let scripts = render(plan, &now);
    Ok((now, scripts))
}

fn restore_bans(now: &mut Current, plan: &Plan, bans: &[Ban]) {
    let parse = |m: &str| crate::ban::target::parse_addr(m).ok();
    for set in &plan.sets {
        let mine: Vec<&Ban> = bans.iter().filter(|b| b.0 == set.name).collect();
        if mine.is_empty() {
            continue;
        }
        let carried = now.carried.entry(set.name.clone()).or_default();
        let mut have: BTreeSet<IpNet> = carried.iter().filter_map(|(m, _)| parse(m)).collect();
        have.extend(set.members.iter().copied());
        for (_, addr, secs) in mine {
            let single = addr.prefix_len() == addr.max_prefix_len();
            let family_ok = Family::of(addr) == set.family;
            if *secs == 0 || !family_ok || (set.kind == ruleset::SetKind::HashIp && !single) {
                continue;
            }
            if have.insert(*addr) {
                carried.push((crate::ban::target::member(addr), *secs));
                now.restored += 1;
            }
        }
    }
}

pub fn render(plan: &Plan, now: &Current) -> Scripts {
    Scripts {
        sets: ruleset::render_sets(&plan.sets, now),
        v4: ruleset::render_table(&plan.v4, &now.v4),
        v6: ruleset::render_table(&plan.v6, &now.v6),
    }
}

fn check_compatible(name: &str, want: &ruleset::SetPlan, have: &SavedSet) -> Result<(), String> {
    let family = want.family.ipset_family();
    if have.kind() != want.kind.as_str() || have.family() != family || !have.has_timeout() {
        return Err(format!(
            "set {name} already exists as {} family {}{}, but fwctl needs {} family {family} with timeout support; \
             fix: remove it (ipset destroy {name}, after the rules that use it) or choose another name in [sets]",
            have.kind(),
            have.family(),
            if have.has_timeout() { "" } else { " without timeouts" },
            want.kind.as_str(),
        ));
    }
    Ok(())
}

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

/// Install the scripts; on any failure restore `snap` and report.
pub fn install(
    b: &mut dyn Backend,
    plan: &Plan,
    snap: &Snapshot,
    scripts: &Scripts,
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
        rollback: rollback(b, &set_names(plan), snap, &changed),
    })
}

pub fn set_names(plan: &Plan) -> Vec<String> {
    plan.sets.iter().map(|s| s.name.clone()).collect()
}

/// Put the filter tables of `tables` and fwctl's sets back as `snap` had
/// them. Tables go first so the sets are no longer referenced when some must
/// be destroyed.
pub fn rollback(
    b: &mut dyn Backend,
    ours: &[String],
    snap: &Snapshot,
    tables: &[Family],
) -> Result<(), StepError> {
    let mut first_err = None;
    for &family in tables {
        let text = filter_section(snap.table(family));
        if let Err(e) = b.restore_table(family, &text, false) {
            first_err.get_or_insert(e);
        }
    }
    let before: BTreeMap<String, SavedSet> = ipset::parse_save(&snap.sets);
    match b.save_sets() {
        Ok(now) => {
            let now: BTreeSet<String> = ipset::parse_save(&now).into_keys().collect();
            let script = ipset::render_rollback(ours, &before, &now, ruleset::temp_set_name);
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

/// The `*filter ... COMMIT` part of `iptables-save` output; an empty filter
/// table when there was none (nft shows no table until something uses it).
pub fn filter_section(save: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in save.lines() {
        if line == "*filter" {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
            if line == "COMMIT" {
                return out;
            }
        }
    }
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n".into()
}

/// Take fwctl's jump, chains and INPUT policy out of both families; destroy
/// fwctl's sets too if asked. Restores the snapshot if a step fails.
pub fn remove(b: &mut dyn Backend, ours: &[String], destroy_sets: bool) -> Result<(), ApplyError> {
    let snap = Snapshot::take(b).map_err(|failed| ApplyError {
        failed,
        rollback: Ok(()),
    })?;
    let steps = |b: &mut dyn Backend| -> Result<(), StepError> {
        for family in [Family::V4, Family::V6] {
            let st = TableState::from_save(snap.table(family));
            if st.is_installed() {
                b.restore_table(family, &ruleset::render_removal(&st), true)?;
            }
        }
        if destroy_sets {
            let existing = ipset::parse_save(&snap.sets);
            let script: String = ours
                .iter()
                .filter(|n| existing.contains_key(*n))
                .map(|n| format!("destroy {n}\n"))
                .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Fake;
    use crate::config::Config;
    use std::path::Path;

    fn plan() -> Plan {
        let c = Config::parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n",
            Path::new("/t.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap();
        ruleset::build(&c)
    }

    const BEFORE_V4: &str = "*filter\n:INPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\nCOMMIT\n";

    fn fake() -> Fake {
        Fake {
            v4: BEFORE_V4.into(),
            v6: String::new(),
            sets: "create blacklist hash:net family inet hashsize 1024 maxelem 262144 timeout 0\n\
                   add blacklist 198.51.100.9 timeout 300\n"
                .into(),
            ..Fake::default()
        }
    }

    #[test]
    fn installs_sets_then_v4_then_v6() {
        let mut b = fake();
        let p = plan();
        let snap = Snapshot::take(&mut b).unwrap();
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
        assert!(b.v4.contains("-I INPUT 1 -j FWCTL-INPUT"));
    }

    #[test]
    fn a_failing_step_puts_everything_back() {
        let mut b = fake();
        b.fail_on = Some("restore V6 --noflush".into());
        let p = plan();
        let snap = Snapshot::take(&mut b).unwrap();
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
        assert_eq!(b.v4, BEFORE_V4);
        assert!(
            b.v6.is_empty(),
            "the failed (atomic) IPv6 step is not re-run"
        );
        assert!(!b.calls.contains(&"restore V6".to_string()));
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
        let snap = Snapshot::take(&mut b).unwrap();
        let err = prepare(&plan(), &snap, &[]).unwrap_err();
        assert!(
            err.contains("set throttle-hard already exists as hash:net"),
            "{err}"
        );
        assert!(err.contains("fix:"), "{err}");
        assert!(b.calls.iter().all(|c| c.starts_with("save")));
    }

    #[test]
    fn remove_takes_out_only_what_is_ours() {
        let mut b = fake();
        let p = plan();
        let snap = Snapshot::take(&mut b).unwrap();
        install(&mut b, &p, &snap, &prepare(&p, &snap, &[]).unwrap().1).unwrap();
        // The fake keeps the last restore input as "the table": use a save-like text.
        b.v4 = format!(
            "{}-A INPUT -j FWCTL-INPUT\n:FWCTL-INPUT - [0:0]\nCOMMIT\n",
            &BEFORE_V4[..BEFORE_V4.len() - 7]
        );
        b.calls.clear();
        remove(&mut b, &set_names(&p), true).unwrap();
        assert!(b.v4.contains("-D INPUT -j FWCTL-INPUT") && b.v4.contains("-X FWCTL-INPUT"));
        assert!(!b.v4.contains("DOCKER"));
        assert!(
            b.sets.contains("destroy blacklist\n")
                && b.sets.ends_with("destroy throttle-soft_v6\n")
        );
    }

    #[test]
    fn state_bans_missing_from_the_kernel_come_back_with_their_time_left() {
        let mut b = fake();
        let p = plan();
        let snap = Snapshot::take(&mut b).unwrap();
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

    #[test]
    fn filter_section_is_cut_out() {
        let save = "# x\n*nat\nCOMMIT\n*filter\n:INPUT DROP [1:2]\nCOMMIT\n# done\n";
        assert_eq!(filter_section(save), "*filter\n:INPUT DROP [1:2]\nCOMMIT\n");
    }
}
