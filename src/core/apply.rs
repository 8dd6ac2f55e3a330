//! What an apply installs, worked out from what the kernel has (pure): the
//! snapshot of the kernel's tables and sets comes in as text, the three
//! restore scripts (sets, IPv4 rules, IPv6 rules) go out. The adapters that
//! read the snapshot and run the scripts are above this layer.

use super::ruleset::ipset::{self, SavedSet};
use super::ruleset::save::Saved;
use super::ruleset::{self, Current, Family, Plan, TableState};
use crate::units::addr::{member, parse_addr};
use crate::units::Invalid;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

/// What the kernel had before we touched it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub v4: String,
    pub v6: String,
    pub sets: String,
}

impl Snapshot {
    pub fn table(&self, family: Family) -> &str {
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
pub fn prepare(plan: &Plan, snap: &Snapshot, bans: &[Ban]) -> Result<(Current, Scripts), Invalid> {
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
    let parse = |m: &str| parse_addr(m).ok();
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
                carried.push((member(addr), *secs));
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

fn check_compatible(name: &str, want: &ruleset::SetPlan, have: &SavedSet) -> Result<(), Invalid> {
    let family = want.family.ipset_family();
    if have.kind() != want.kind.as_str() || have.family() != family || !have.has_timeout() {
        return Err(Invalid(format!(
            "set {name} already exists as {} family {}{}, but fwctl needs {} family {family} with timeout support; \
             fix: remove it (ipset destroy {name}, after the rules that use it) or choose another name in [sets]",
            have.kind(),
            have.family(),
            if have.has_timeout() { "" } else { " without timeouts" },
            want.kind.as_str(),
        )));
    }
    Ok(())
}

pub fn set_names(plan: &Plan) -> Vec<String> {
    plan.sets.iter().map(|s| s.name.clone()).collect()
}

/// The `iptables-restore` input (without --noflush) that puts one family's
/// filter table back as the snapshot had it.
pub fn rollback_table(snap: &Snapshot, family: Family) -> String {
    Saved::filter(snap.table(family)).restore_text("filter")
}

/// The `ipset restore` input that puts `ours` back as the snapshot had them,
/// given the set names that exist now.
pub fn rollback_sets(ours: &[String], snap: &Snapshot, now: &str) -> String {
    let before: BTreeMap<String, SavedSet> = ipset::parse_save(&snap.sets);
    let now: BTreeSet<String> = ipset::parse_save(now).into_keys().collect();
    ipset::render_rollback(ours, &before, &now, ruleset::temp_set_name)
}

/// The `iptables-restore --noflush` input that takes fwctl out of one
/// family's table (None: nothing of fwctl's is there).
pub fn removal(snap: &Snapshot, family: Family) -> Option<String> {
    let st = TableState::from_save(snap.table(family));
    st.is_installed().then(|| ruleset::render_removal(&st))
}

/// The `ipset restore` input that destroys those of `ours` that exist.
pub fn destroy_sets(ours: &[String], snap: &Snapshot) -> String {
    let existing = ipset::parse_save(&snap.sets);
    ours.iter()
        .filter(|n| existing.contains_key(*n))
        .map(|n| format!("destroy {n}\n"))
        .collect()
}

/// The text `apply --dry-run` prints: the three scripts, in the order they run.
pub fn dry_run_text(
    cfg: &crate::core::config::Config,
    plan: &Plan,
    now: &Current,
    state_note: &str,
) -> String {
    let s = render(plan, now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_table_is_the_snapshot_s_filter_table() {
        let snap = Snapshot {
            v4: "# x\n*nat\nCOMMIT\n*filter\n:INPUT DROP [1:2]\n:DOCKER - [0:0]\n-A INPUT -j DOCKER\nCOMMIT\n# done\n".into(),
            ..Snapshot::default()
        };
        assert_eq!(
            rollback_table(&snap, Family::V4),
            "*filter\n:INPUT DROP [0:0]\n:DOCKER - [0:0]\n-A INPUT -j DOCKER\nCOMMIT\n"
        );
        // Nothing printed: an empty filter table.
        assert!(rollback_table(&snap, Family::V6).starts_with("*filter\n:INPUT ACCEPT"));
    }
}
