//! What an apply installs, whatever the backend (pure): the bans it carries
//! over and restores, and the iptables/ipset scripts rendered against what
//! the kernel has ([`Current`], read by the backend's adapter in `sys`).

use super::ruleset::{self, Current, Family, Plan};
use crate::units::addr::{member, parse_addr};
use ipnet::IpNet;
use std::collections::BTreeSet;

/// The scripts one iptables apply runs, in order: sets, the raw tables
/// (bans dropped before conntrack), the filter tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scripts {
    pub sets: String,
    pub raw_v4: String,
    pub raw_v6: String,
    pub v4: String,
    pub v6: String,
}

/// A ban the state file knows is still running: (set, address, seconds left).
pub type Ban = (String, IpNet, u32);

/// Put `bans` from the state file that the kernel's sets lack (after a
/// reboot or a flush) into `now.carried` with the time they have left; the
/// kernel's own timeout wins for a ban it still holds. `Current::restored`
/// counts them.
pub fn restore_bans(now: &mut Current, plan: &Plan, bans: &[Ban]) {
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

/// The scripts for `plan` on the kernel `now` (where `[forward] protect`
/// is "auto", the kernel's DOCKER-USER decides).
pub fn render(plan: &Plan, now: &Current) -> Scripts {
    let plan = &ruleset::resolve(plan, &now.v4, &now.v6);
    Scripts {
        sets: ruleset::render_sets(&plan.sets, now),
        raw_v4: ruleset::render_raw(&plan.v4, &now.raw_v4),
        raw_v6: ruleset::render_raw(&plan.v6, &now.raw_v6),
        v4: ruleset::render_table(&plan.v4, &now.v4),
        v6: ruleset::render_table(&plan.v6, &now.v6),
    }
}

pub fn set_names(plan: &Plan) -> Vec<String> {
    plan.sets.iter().map(|s| s.name.clone()).collect()
}

impl Scripts {
    /// The scripts, each under a line naming the tool that runs it, in the
    /// order they run.
    pub fn text(&self) -> String {
        format!(
            "# ---- ipset restore ----\n{}\
             # ---- iptables-restore --noflush (raw) ----\n{}\
             # ---- ip6tables-restore --noflush (raw) ----\n{}\
             # ---- iptables-restore --noflush ----\n{}\
             # ---- ip6tables-restore --noflush ----\n{}",
            self.sets, self.raw_v4, self.raw_v6, self.v4, self.v6
        )
    }
}

/// The text `apply --dry-run` prints for the iptables backend: the
/// scripts, in the order they run.
pub fn dry_run_text(mode: &str, plan: &Plan, now: &Current, state_note: &str) -> String {
    format!(
        "# fwctl apply --dry-run, mode {mode}\n# {state_note}\n{}",
        render(plan, now).text()
    )
}

/// The text `apply --dry-run` prints for the nftables backend: the one
/// `nft -f` transaction.
pub fn nft_dry_run_text(mode: &str, plan: &Plan, now: &Current, state_note: &str) -> String {
    format!(
        "# fwctl apply --dry-run, mode {mode}, backend nftables\n# {state_note}\n\
         # ---- nft -f (one transaction) ----\n{}",
        ruleset::nft::render_install(plan, now)
    )
}
