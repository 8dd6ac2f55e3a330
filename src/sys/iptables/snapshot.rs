//! The iptables backend's snapshot (pure): the kernel's filter tables and
//! sets as `iptables-save` and `ipset save` printed them, what rendering
//! needs of them ([`Current`]), and the scripts that put fwctl's part back
//! (rollback), check the jump and take fwctl out.

use super::save::{raw_state, table_state, Saved};
use crate::core::apply::{render, restore_bans, Ban, Scripts};
use crate::core::ruleset::ipset::{self, SavedSet};
use crate::core::ruleset::{self, Current, Family, Plan};
use crate::units::Invalid;
use std::collections::{BTreeMap, BTreeSet};

/// What the kernel had before we touched it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub v4: String,
    pub v6: String,
    pub sets: String,
    /// `iptables-save -t raw` (and ip6tables): where FWCTL-RAW sits.
    pub raw_v4: String,
    pub raw_v6: String,
}

/// The two tables fwctl has a part of: each with the builtin chain its
/// one jump sits in and the chain that jump goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// INPUT → FWCTL-INPUT, and the INPUT policy.
    Filter,
    /// PREROUTING → FWCTL-RAW (no policy: fwctl never sets one there).
    Raw,
}

impl Part {
    pub fn table(self) -> &'static str {
        match self {
            Part::Filter => "filter",
            Part::Raw => "raw",
        }
    }

    /// Each (chain, fwctl chain) whose plain jumps fwctl owns in this
    /// table: INPUT's, and the forward chain's in FORWARD and DOCKER-USER.
    fn jumps(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Part::Filter => &[
                ("INPUT", ruleset::MAIN_CHAIN),
                ("FORWARD", ruleset::forward::CHAIN),
                (ruleset::forward::DOCKER_USER, ruleset::forward::CHAIN),
            ],
            Part::Raw => &[("PREROUTING", ruleset::RAW_CHAIN)],
        }
    }
}

impl Snapshot {
    pub fn table(&self, family: Family) -> &str {
        self.part(Part::Filter, family)
    }

    pub fn part(&self, part: Part, family: Family) -> &str {
        match (part, family) {
            (Part::Filter, Family::V4) => &self.v4,
            (Part::Filter, Family::V6) => &self.v6,
            (Part::Raw, Family::V4) => &self.raw_v4,
            (Part::Raw, Family::V6) => &self.raw_v6,
        }
    }

    /// The state rendering needs: our jumps and chains, which sets exist, and
    /// the timed members (bans) of the plan's sets.
    fn current_from(&self, saved: &BTreeMap<String, SavedSet>, plan: &Plan) -> Current {
        let ours: BTreeSet<&str> = plan.sets.iter().map(|s| s.name.as_str()).collect();
        Current {
            v4: table_state(&self.v4),
            v6: table_state(&self.v6),
            raw_v4: raw_state(&self.raw_v4),
            raw_v6: raw_state(&self.raw_v6),
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

/// The `iptables-restore --noflush` input that puts fwctl's part of one
/// family's filter table back as the snapshot had it: its chains with their
/// rules, its jump from INPUT and the INPUT policy. `now` is the table as it
/// is at rollback time; everything in it that is not fwctl's (rules and
/// chains another tool added, before the snapshot or since) stays.
pub fn rollback_table(snap: &Snapshot, now: &str, family: Family) -> String {
    rollback_part(snap, now, Part::Filter, family)
}

/// The same for one part (filter or raw) of one family.
pub fn rollback_part(snap: &Snapshot, now: &str, part: Part, family: Family) -> String {
    let then = Saved::parse(snap.part(part, family), part.table());
    let now = Saved::parse(now, part.table());
    let mut out = format!("*{}\n", part.table());
    if part == Part::Filter {
        out += &format!(
            ":INPUT {} [0:0]\n",
            then.policy("INPUT").unwrap_or("ACCEPT")
        );
    }
    let then_chains: BTreeSet<&str> = then.fwctl_chains().collect();
    // Declaring a chain flushes it (or creates it): then's chains come back
    // with then's rules only.
    for c in then.fwctl_chains() {
        out += &format!(":{c} - [0:0]\n");
    }
    let gone: Vec<&str> = now
        .fwctl_chains()
        .filter(|c| !then_chains.contains(c))
        .collect();
    for c in &gone {
        out += &format!("-F {c}\n");
    }
    for &(builtin, target) in part.jumps() {
        // Docker's DOCKER-USER, gone since (or never there): nothing of ours
        // can be in it, and nothing can be put back.
        let exists =
            |s: &Saved| s.policy(builtin).is_some() || s.chains.iter().any(|c| c == builtin);
        if builtin == ruleset::forward::DOCKER_USER && !exists(&now) {
            continue;
        }
        // Our jumps now, by rule number from the bottom so the numbers hold.
        let jumps_now = now.jumps_in(builtin, target);
        for p in jumps_now.iter().rev() {
            out += &format!("-D {builtin} {p}\n");
        }
        // Then's jumps at then's positions, as far as the chain is that
        // long now (only into a chain of ours that comes back).
        if !then_chains.contains(target) {
            continue;
        }
        let others = now.rules_of(builtin).count() - jumps_now.len();
        for (k, p) in then.jumps_in(builtin, target).into_iter().enumerate() {
            // The chain holds the other rules and the k jumps inserted before.
            let room = others + k + 1;
            out += &format!("-I {builtin} {} -j {target}\n", p.min(room));
        }
    }
    for (c, line) in &then.rules {
        if then_chains.contains(c.as_str()) {
            out += line;
            out.push('\n');
        }
    }
    for c in &gone {
        out += &format!("-X {c}\n");
    }
    out + "COMMIT\n"
}

/// The `ipset restore` input that puts `ours` back as the snapshot had them,
/// keeping every ban they hold `now` (the `ipset save` text of now).
pub fn rollback_sets(ours: &[String], snap: &Snapshot, now: &str) -> String {
    let before: BTreeMap<String, SavedSet> = ipset::parse_save(&snap.sets);
    let now: BTreeMap<String, SavedSet> = ipset::parse_save(now);
    ipset::render_rollback(ours, &before, &now, ruleset::temp_set_name)
}

/// Why the kernel's tables cannot be trusted to be what a save printed.
pub fn check_saved(save: &str, family: Family) -> Result<(), Invalid> {
    if Saved::filter(save).found {
        return Ok(());
    }
    let tool = match family {
        Family::V4 => "iptables-save",
        Family::V6 => "ip6tables-save",
    };
    Err(Invalid(format!(
        "{tool} -t filter printed no filter table ({} bytes): fwctl cannot see the rules it would change, so nothing was changed; fix: check that FWCTL_{} (or {tool} on PATH) is the real {tool}",
        save.len(),
        tool.to_uppercase().replace('-', "_")
    )))
}

/// After an install: exactly one jump to fwctl's chain must be in INPUT.
/// The `iptables-restore --noflush` input that deletes the extra ones (by
/// rule number, keeping the first), or None when there is exactly one.
pub fn extra_jumps(save: &str, family: Family) -> Result<Option<String>, Invalid> {
    check_saved(save, family)?;
    let jumps = Saved::filter(save).jump_positions();
    match jumps.len() {
        0 => Err(Invalid(format!(
            "after installing, {} INPUT has no jump to {}; fix: run fwctl apply again and check `iptables-save`",
            family.name(),
            ruleset::MAIN_CHAIN
        ))),
        _ => {
            // The forward chain's jump: none is fine (protect off), more
            // than one are extra, as in INPUT.
            let saved = Saved::filter(save);
            let mut s = String::new();
            for (chain, target) in Part::Filter.jumps() {
                let at = saved.jumps_in(chain, target);
                for p in at.iter().skip(1).rev() {
                    s += &format!("-D {chain} {p}\n");
                }
            }
            Ok((!s.is_empty()).then(|| format!("*filter\n{s}COMMIT\n")))
        }
    }
}

/// The `iptables-restore --noflush` input that takes fwctl out of one
/// family's table (None: nothing of fwctl's is there).
pub fn removal(snap: &Snapshot, family: Family) -> Option<String> {
    let st = table_state(snap.table(family));
    st.is_installed().then(|| ruleset::render_removal(&st))
}

/// The `iptables-restore --noflush` input that takes FWCTL-RAW out of one
/// family's raw table (None: nothing of fwctl's is there).
pub fn raw_removal(snap: &Snapshot, family: Family) -> Option<String> {
    ruleset::render_raw_removal(&raw_state(snap.part(Part::Raw, family)))
}

/// The `ipset restore` input that destroys those of `ours` that exist.
pub fn destroy_sets(ours: &[String], snap: &Snapshot) -> String {
    let existing = ipset::parse_save(&snap.sets);
    ours.iter()
        .filter(|n| existing.contains_key(*n))
        .map(|n| format!("destroy {n}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollback once restored the whole filter table from a snapshot up
    /// to an hour old, wiping what Docker added meanwhile. It puts back
    /// fwctl's part only and leaves everything else as it is now.
    #[test]
    fn a_rollback_puts_back_fwctls_part_and_nothing_else() {
        let snap = Snapshot {
            v4: "*filter\n:INPUT ACCEPT [1:2]\n:FWCTL-INPUT - [0:0]\n:FWCTL-OLD - [0:0]\n\
                 -A INPUT -j FWCTL-INPUT\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\n\
                 -A FWCTL-INPUT -i lo -j ACCEPT\n-A FWCTL-OLD -j RETURN\nCOMMIT\n"
                .into(),
            ..Snapshot::default()
        };
        // Now: the new apply's chains and policy, a Docker chain and rule
        // added meanwhile above our jump.
        let now = "*filter\n:INPUT DROP [0:0]\n:DOCKER - [0:0]\n:FWCTL-INPUT - [0:0]\n:FWCTL-NEW - [0:0]\n\
                   -A INPUT -j DOCKER\n-A INPUT -j FWCTL-INPUT\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\n\
                   -A DOCKER -j RETURN\n-A FWCTL-INPUT -j FWCTL-NEW\n-A FWCTL-NEW -j DROP\nCOMMIT\n";
        let s = rollback_table(&snap, now, Family::V4);
        assert_eq!(
            s,
            "*filter\n:INPUT ACCEPT [0:0]\n:FWCTL-INPUT - [0:0]\n:FWCTL-OLD - [0:0]\n-F FWCTL-NEW\n\
             -D INPUT 2\n-I INPUT 1 -j FWCTL-INPUT\n-A FWCTL-INPUT -i lo -j ACCEPT\n-A FWCTL-OLD -j RETURN\n\
             -X FWCTL-NEW\nCOMMIT\n"
        );
        assert!(!s.contains("DOCKER") && !s.contains("192.0.2.9"));
        // A first apply rolled back: fwctl leaves nothing behind.
        let first = Snapshot {
            v4: "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n".into(),
            ..Snapshot::default()
        };
        let s = rollback_table(&first, now, Family::V4);
        assert!(
            s.contains("-F FWCTL-INPUT\n")
                && s.contains("-X FWCTL-INPUT\n")
                && s.contains("-D INPUT 2\n"),
            "{s}"
        );
        assert!(!s.contains("-I INPUT"), "{s}");
    }

    /// `FWCTL_IPTABLES_SAVE=/bin/true fwctl apply` once left two jumps.
    #[test]
    fn a_save_without_a_filter_table_is_refused_and_extra_jumps_found() {
        let e = check_saved("", Family::V4).unwrap_err();
        assert!(
            e.0.contains("iptables-save -t filter printed no filter table")
                && e.0.contains("FWCTL_IPTABLES_SAVE"),
            "{e}"
        );
        assert!(check_saved("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", Family::V6).is_ok());
        let two = "*filter\n:INPUT DROP [0:0]\n-A INPUT -j FWCTL-INPUT\n-A INPUT -p tcp -j ACCEPT\n-A INPUT -j FWCTL-INPUT\nCOMMIT\n";
        assert_eq!(
            extra_jumps(two, Family::V4).unwrap().as_deref(),
            Some("*filter\n-D INPUT 3\nCOMMIT\n")
        );
        let one = "*filter\n:INPUT DROP [0:0]\n-A INPUT -j FWCTL-INPUT\nCOMMIT\n";
        assert_eq!(extra_jumps(one, Family::V4).unwrap(), None);
        assert!(extra_jumps("*filter\nCOMMIT\n", Family::V4).is_err());
    }

    /// The forward jump is rolled back like INPUT's: the new one out of
    /// DOCKER-USER, the old one back first in FORWARD; Docker's rules stay.
    #[test]
    fn a_rollback_moves_the_forward_jump_back_and_leaves_docker_alone() {
        let snap = Snapshot {
            v4: "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n:FWCTL-INPUT - [0:0]\n\
                 :FWCTL-FORWARD - [0:0]\n-A INPUT -j FWCTL-INPUT\n-A FORWARD -j FWCTL-FORWARD\n\
                 -A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n-A FWCTL-FORWARD -j RETURN\nCOMMIT\n"
                .into(),
            ..Snapshot::default()
        };
        let now = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n:FWCTL-INPUT - [0:0]\n\
                   :FWCTL-FORWARD - [0:0]\n-A INPUT -j FWCTL-INPUT\n-A FORWARD -j DOCKER-USER\n\
                   -A DOCKER-USER -j FWCTL-FORWARD\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
        let s = rollback_table(&snap, now, Family::V4);
        assert!(s.contains("-D DOCKER-USER 1\n"), "{s}");
        assert!(s.contains("-I FORWARD 1 -j FWCTL-FORWARD\n"), "{s}");
        assert!(s.contains("-A FWCTL-FORWARD -j RETURN\n"), "{s}");
        assert!(
            !s.contains("-A DOCKER-USER") && !s.contains(":DOCKER-USER"),
            "{s}"
        );
        // Without DOCKER-USER now, nothing names it.
        let gone =
            "*filter\n:INPUT DROP [0:0]\n:FWCTL-INPUT - [0:0]\n-A INPUT -j FWCTL-INPUT\nCOMMIT\n";
        let s = rollback_table(&snap, gone, Family::V4);
        assert!(!s.contains("DOCKER-USER"), "{s}");
        // Two forward jumps after an install: the extra one goes.
        let two = "*filter\n:INPUT DROP [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -j FWCTL-INPUT\n\
                   -A DOCKER-USER -j FWCTL-FORWARD\n-A DOCKER-USER -j RETURN\n-A DOCKER-USER -j FWCTL-FORWARD\nCOMMIT\n";
        assert_eq!(
            extra_jumps(two, Family::V4).unwrap().as_deref(),
            Some("*filter\n-D DOCKER-USER 3\nCOMMIT\n")
        );
    }
}
