//! The iptables backend: fwctl's chains in the filter tables of
//! iptables/ip6tables and its sets in ipset, installed in three restores
//! (sets, IPv4 rules, IPv6 rules) with the snapshot put back if one fails.
//! The tools' text (`iptables-save`, `ipset save`) is read here and in the
//! modules below, nowhere else.

pub mod save;
pub mod snapshot;

use crate::core::apply::{set_names, Ban, Scripts};
use crate::core::ruleset::{self, Family, Plan};
use crate::ports::{ApplyError, Firewall, Installed, Prepared, StepError, StepResult};
use snapshot::{Part, Snapshot};

/// What to check by hand when a rollback fails.
const CHECK: &str = "`iptables-save` and `ipset list`";

/// The iptables and ipset tools as the adapter runs them (the real ones in
/// `sys::tools::System`, a recording fake in tests). `noflush` keeps the
/// rules fwctl does not own.
pub trait Tools {
    /// `iptables-save -t filter` (or ip6tables-save).
    fn save_table(&mut self, family: Family) -> StepResult<String>;
    /// `iptables-save -t raw` (or ip6tables-save).
    fn save_raw(&mut self, family: Family) -> StepResult<String>;
    /// `iptables-restore` with `input` (its `*TABLE` line says which table).
    fn restore_table(&mut self, family: Family, input: &str, noflush: bool) -> StepResult<()>;
    /// `ipset save` (every set).
    fn save_sets(&mut self) -> StepResult<String>;
    /// One `ipset restore` run.
    fn restore_sets(&mut self, input: &str) -> StepResult<()>;
}

/// The iptables backend over `T`.
pub struct Iptables<T: Tools> {
    pub tools: T,
    /// What the last `prepare` read, and the scripts it rendered.
    read: Option<(Snapshot, Scripts)>,
}

impl<T: Tools> Iptables<T> {
    pub fn new(tools: T) -> Iptables<T> {
        Iptables { tools, read: None }
    }

    fn snapshot(&mut self) -> StepResult<Snapshot> {
        snapshot_of(&mut self.tools)
    }
}

/// What the kernel has now. A table save without a filter table is an
/// error: `iptables-save -t filter` always prints one, so the save tool is
/// not reading this kernel (FWCTL_IPTABLES_SAVE=/bin/true), and rules
/// rendered against "nothing there" would add a second jump.
pub fn snapshot_of(b: &mut dyn Tools) -> StepResult<Snapshot> {
    let table = |b: &mut dyn Tools, family: Family| -> StepResult<String> {
        let s = b.save_table(family)?;
        snapshot::check_saved(&s, family).map_err(|e| StepError {
            step: format!("{}-save -t filter", prefix(family)),
            detail: e.0,
        })?;
        Ok(s)
    };
    Ok(Snapshot {
        v4: table(b, Family::V4)?,
        v6: table(b, Family::V6)?,
        raw_v4: b.save_raw(Family::V4)?,
        raw_v6: b.save_raw(Family::V6)?,
        sets: b.save_sets()?,
    })
}

pub fn prefix(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

/// After an install, exactly one jump to fwctl's chain in each INPUT,
/// whatever the snapshot's save printed: extra ones are deleted (with a
/// warning in `warnings`). Returns both tables as the kernel prints them now.
pub fn settle_jumps(b: &mut dyn Tools, warnings: &mut Vec<String>) -> StepResult<(String, String)> {
    let mut saves = Vec::new();
    for family in [Family::V4, Family::V6] {
        let step = |detail: String| StepError {
            step: format!(
                "checking the jump to {} in {} INPUT",
                ruleset::MAIN_CHAIN,
                family.name()
            ),
            detail,
        };
        let mut save = b.save_table(family)?;
        if let Some(script) = snapshot::extra_jumps(&save, family).map_err(|e| step(e.0))? {
            warnings.push(format!(
                "{} INPUT (or FORWARD, DOCKER-USER) had more than one jump to fwctl's chain; the extra ones were deleted",
                family.name()
            ));
            b.restore_table(family, &script, true)?;
            save = b.save_table(family)?;
            if snapshot::extra_jumps(&save, family)
                .map_err(|e| step(e.0))?
                .is_some()
            {
                return Err(step(format!(
                    "still more than one jump; fix: check `{}-save` by hand",
                    prefix(family)
                )));
            }
        }
        saves.push(save);
    }
    let v6 = saves.pop().expect("two");
    Ok((saves.pop().expect("two"), v6))
}

/// Install the scripts; on any failure restore `snap` and report.
pub fn install(
    b: &mut dyn Tools,
    plan: &Plan,
    snap: &Snapshot,
    scripts: &Scripts,
) -> Result<(), ApplyError> {
    // Each restore is atomic on its own, so only the steps that succeeded
    // before the failing one need undoing. The raw tables go first: the
    // bans drop there before filter stops dropping them.
    let mut changed = Vec::new();
    let mut steps = |b: &mut dyn Tools| -> Result<(), StepError> {
        b.restore_sets(&scripts.sets)?;
        for (part, family, script) in [
            (Part::Raw, Family::V4, &scripts.raw_v4),
            (Part::Raw, Family::V6, &scripts.raw_v6),
            (Part::Filter, Family::V4, &scripts.v4),
            (Part::Filter, Family::V6, &scripts.v6),
        ] {
            b.restore_table(family, script, true)?;
            changed.push((part, family));
        }
        Ok(())
    };
    let result = steps(b);
    result.map_err(|failed| ApplyError {
        failed,
        rollback: rollback(b, &set_names(plan), snap, &changed),
        check: CHECK,
    })
}

/// Every part of both families.
pub const ALL: [(Part, Family); 4] = [
    (Part::Raw, Family::V4),
    (Part::Raw, Family::V6),
    (Part::Filter, Family::V4),
    (Part::Filter, Family::V6),
];

/// Put fwctl's part of the tables of `tables` (its chains, its jump, the
/// INPUT policy) and fwctl's sets back as `snap` had them, with --noflush:
/// rules, chains and bans that others added since stay. Tables go first so
/// the sets are no longer referenced when some must be destroyed.
pub fn rollback(
    b: &mut dyn Tools,
    ours: &[String],
    snap: &Snapshot,
    tables: &[(Part, Family)],
) -> Result<(), StepError> {
    let mut first_err = None;
    for &(part, family) in tables {
        let now = match part {
            Part::Filter => b.save_table(family),
            Part::Raw => b.save_raw(family),
        };
        let result = now.and_then(|now| {
            b.restore_table(
                family,
                &snapshot::rollback_part(snap, &now, part, family),
                true,
            )
        });
        if let Err(e) = result {
            first_err.get_or_insert(e);
        }
    }
    match b.save_sets() {
        Ok(now) => {
            let script = snapshot::rollback_sets(ours, snap, &now);
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
pub fn take_out(b: &mut dyn Tools, ours: &[String], destroy_sets: bool) -> Result<(), ApplyError> {
    let snap = snapshot_of(b).map_err(|failed| ApplyError {
        failed,
        rollback: Ok(()),
        check: CHECK,
    })?;
    let steps = |b: &mut dyn Tools| -> Result<(), StepError> {
        for family in [Family::V4, Family::V6] {
            if let Some(script) = snapshot::removal(&snap, family) {
                b.restore_table(family, &script, true)?;
            }
            if let Some(script) = snapshot::raw_removal(&snap, family) {
                b.restore_table(family, &script, true)?;
            }
        }
        if destroy_sets {
            let script = snapshot::destroy_sets(ours, &snap);
            if !script.is_empty() {
                b.restore_sets(&script)?;
            }
        }
        Ok(())
    };
    steps(b).map_err(|failed| ApplyError {
        failed,
        rollback: rollback(b, ours, &snap, &ALL),
        check: CHECK,
    })
}

/// An install whose rules are in but could not be read back.
fn not_read(failed: StepError) -> ApplyError {
    ApplyError {
        failed,
        rollback: Err(StepError {
            step: "rollback".into(),
            detail: "not attempted: the rules are in, only reading them back failed".into(),
        }),
        check: CHECK,
    }
}

impl<T: Tools> Firewall for Iptables<T> {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn prepare(&mut self, plan: &Plan, bans: &[Ban]) -> Result<Prepared, StepError> {
        let snap = self.snapshot()?;
        let (now, scripts) = snapshot::prepare(plan, &snap, bans).map_err(|e| StepError {
            step: "reading fwctl's sets (ipset save)".into(),
            detail: e.0,
        })?;
        let prepared = Prepared {
            script: scripts.text(),
            carried: now.carried.values().map(Vec::len).sum(),
            restored: now.restored,
            ..Prepared::default()
        };
        self.read = Some((snap, scripts));
        Ok(prepared)
    }

    fn install(&mut self, plan: &Plan) -> Result<Installed, ApplyError> {
        let (snap, scripts) = self.read.as_ref().expect("prepare before install");
        install(&mut self.tools, plan, snap, scripts)?;
        let mut warnings = Vec::new();
        let (v4, v6) =
            settle_jumps(&mut self.tools, &mut warnings).map_err(|failed| ApplyError {
                failed,
                rollback: Err(StepError {
                    step: "rollback".into(),
                    detail: "not attempted: the rules are in, only the check of the jump failed"
                        .into(),
                }),
                check: CHECK,
            })?;
        Ok(Installed {
            v4: [
                save::ours(&v4),
                save::ours_raw(&self.tools.save_raw(Family::V4).map_err(not_read)?),
            ]
            .concat(),
            v6: [
                save::ours(&v6),
                save::ours_raw(&self.tools.save_raw(Family::V6).map_err(not_read)?),
            ]
            .concat(),
            warnings,
        })
    }

    fn roll_back(&mut self, plan: &Plan) -> Result<(), StepError> {
        let (snap, _) = self.read.as_ref().expect("prepare before roll_back");
        rollback(&mut self.tools, &set_names(plan), snap, &ALL)
    }

    fn remove(&mut self, plan: &Plan, destroy_sets: bool) -> Result<(), ApplyError> {
        take_out(&mut self.tools, &set_names(plan), destroy_sets)
    }

    fn installed(&mut self) -> Result<Installed, StepError> {
        let mut read = |family| -> StepResult<Vec<String>> {
            Ok([
                save::ours(&self.tools.save_table(family)?),
                save::ours_raw(&self.tools.save_raw(family)?),
            ]
            .concat())
        };
        Ok(Installed {
            v4: read(Family::V4)?,
            v6: read(Family::V6)?,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::save::Saved;
    use super::snapshot::prepare;
    use super::*;
    use crate::core::config::Config;
    use crate::testing::fake::Fake;
    use ipnet::IpNet;
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

    #[test]
    fn installs_sets_then_raw_then_filter() {
        let mut b = fake();
        let p = plan();
        let snap = snapshot_of(&mut b).unwrap();
        let (_, scripts) = prepare(&p, &snap, &[]).unwrap();
        assert!(
            scripts.sets.contains("198.51.100.9 timeout 300"),
            "bans are carried over"
        );
        install(&mut b, &p, &snap, &scripts).unwrap();
        assert_eq!(
            b.calls[5..],
            [
                "restore sets",
                "restore raw V4 --noflush",
                "restore raw V6 --noflush",
                "restore V4 --noflush",
                "restore V6 --noflush"
            ]
        );
        // The bans drop in raw, before conntrack, from a jump at the top.
        let raw = Saved::parse(&b.raw_v4, "raw");
        assert_eq!(raw.jumps_in("PREROUTING", ruleset::RAW_CHAIN), [1]);
        assert!(
            b.raw_v4.contains("--match-set blacklist src"),
            "{}",
            b.raw_v4
        );
        let v4 = Saved::filter(&b.v4);
        assert_eq!(v4.jump_positions(), [1]);
        assert_eq!(v4.policy("INPUT"), Some("DROP"));
        assert!(b.v4.contains("-A INPUT -s 192.0.2.9/32 -j ACCEPT") && b.v4.contains(":DOCKER"));
        // Applied again over itself: still one jump.
        let snap = snapshot_of(&mut b).unwrap();
        let (_, scripts) = prepare(&p, &snap, &[]).unwrap();
        install(&mut b, &p, &snap, &scripts).unwrap();
        assert_eq!(Saved::filter(&b.v4).jump_positions(), [1]);
        assert_eq!(settle_jumps(&mut b, &mut Vec::new()).unwrap().0, b.v4);
    }

    /// A save that hides rules (FWCTL_IPTABLES_SAVE=/bin/true) is refused
    /// before anything changes; a save that hid our jump once let apply add
    /// a second one, which settle_jumps takes out.
    #[test]
    fn a_save_that_lies_changes_nothing_or_leaves_one_jump() {
        let mut b = fake();
        b.v4 = String::new();
        let e = snapshot_of(&mut b).unwrap_err().to_string();
        assert!(e.contains("printed no filter table"), "{e}");
        assert!(b.calls.iter().all(|c| c.starts_with("save")));
        let mut b = fake();
        let p = plan();
        let snap = snapshot_of(&mut b).unwrap();
        install(&mut b, &p, &snap, &prepare(&p, &snap, &[]).unwrap().1).unwrap();
        // The next apply is told "nothing there" and inserts a second jump.
        let blind = Snapshot {
            v4: BEFORE_V4.into(),
            ..snapshot_of(&mut b).unwrap()
        };
        install(&mut b, &p, &blind, &prepare(&p, &blind, &[]).unwrap().1).unwrap();
        assert_eq!(Saved::filter(&b.v4).jump_positions().len(), 2);
        let (v4, _) = settle_jumps(&mut b, &mut Vec::new()).unwrap();
        assert_eq!(Saved::filter(&v4).jump_positions(), [1]);
    }

    /// During a --confirm window another tool adds a chain and a rule and a
    /// ban arrives; the rollback keeps all three and takes out only fwctl.
    #[test]
    fn a_rollback_keeps_what_others_added_meanwhile() {
        let mut b = fake();
        let p = plan();
        let snap = snapshot_of(&mut b).unwrap();
        install(&mut b, &p, &snap, &prepare(&p, &snap, &[]).unwrap().1).unwrap();
        b.restore_table(
            Family::V4,
            "*filter\n:EXTRA - [0:0]\n-I INPUT 1 -s 192.0.2.77/32 -j ACCEPT\n-A EXTRA -j RETURN\nCOMMIT\n",
            true,
        )
        .unwrap();
        b.sets.push_str("add blacklist 203.0.113.50 timeout 600\n");
        let before = b.sets.len();
        rollback(&mut b, &set_names(&p), &snap, &ALL).unwrap();
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
        let snap = snapshot_of(&mut b).unwrap();
        let (_, scripts) = prepare(&p, &snap, &[]).unwrap();
        let err = install(&mut b, &p, &snap, &scripts).unwrap_err();
        assert!(err.rollback.is_ok());
        let msg = err.to_string();
        assert!(
            msg.contains("restore V6 --noflush failed: injected failure"),
            "{msg}"
        );
        assert!(msg.contains("put back"), "{msg}");
        // The IPv4 table is the snapshot again, Docker's chain included,
        // and nothing of fwctl's is left in either raw table.
        assert_eq!(Saved::filter(&b.v4), Saved::filter(BEFORE_V4));
        for raw in [&b.raw_v4, &b.raw_v6] {
            let r = Saved::parse(raw, "raw");
            assert!(
                r.fwctl_chains().next().is_none() && r.rules.is_empty(),
                "{raw}"
            );
        }
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
        let snap = snapshot_of(&mut b).unwrap();
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
        let snap = snapshot_of(&mut b).unwrap();
        install(&mut b, &p, &snap, &prepare(&p, &snap, &[]).unwrap().1).unwrap();
        b.calls.clear();
        take_out(&mut b, &set_names(&p), true).unwrap();
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
        let snap = snapshot_of(&mut b).unwrap();
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
