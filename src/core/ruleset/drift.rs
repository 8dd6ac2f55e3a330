//! Drift (pure): fwctl's part of a table as the backend's adapter reads it
//! back (lines: `policy INPUT DROP`, `:CHAIN`, `jump at INPUT N`, `-A CHAIN
//! rule`), so the rules right after an apply and the rules now compare line
//! by line, and a digest of the rendered plan, so a config edited since the last
//! apply is told apart from rules changed behind fwctl's back.

use super::{Current, Plan, TableState};

/// The line form of the records apply writes now: 1 since nftables' base
/// chain on the forward hook is read back (`jump at FORWARD N`, as
/// iptables' FORWARD and DOCKER-USER always were), 2 since its base chain
/// at priority raw is (`jump at PREROUTING N`, as iptables' raw PREROUTING:
/// without it no ban drops a packet).
pub const FORM: u32 = 2;

/// The lines a record of an older `form` did not have, for `backend`, as
/// the apply it records put them: nftables' base chains hold each family's
/// jump first. Added to the record before it is compared, so an upgrade is
/// not drift and a jump deleted since still is. `forward`: whether the
/// table's `[forward]` has a hook, None when that was decided at apply
/// ("auto": Docker there or not); then the forward jumps `now` holds are
/// taken as recorded (a deleted one shows from the next apply on).
pub fn unrecorded(form: u32, backend: &str, forward: Option<bool>, now: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if backend == "nftables" {
        if form < 1 {
            match forward {
                Some(true) => out.push("jump at FORWARD 1".to_string()),
                Some(false) => {}
                None => out.extend(
                    now.iter()
                        .filter(|l| l.starts_with("jump at FORWARD "))
                        .cloned(),
                ),
            }
        }
        if form < 2 {
            out.push("jump at PREROUTING 1".to_string());
        }
    }
    out
}

/// How the rules now differ from the rules then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Lines of `then` not in `now`, and lines of `now` not in `then` (as
    /// multisets, in their order).
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    /// Rules in both that are no longer in the same order in their chain:
    /// the ones outside the longest common subsequence, chain by chain (a
    /// rule moved is drift too: packets meet the rules in order).
    pub moved: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.moved.is_empty()
    }
}

pub fn diff(then: &[String], now: &[String]) -> Diff {
    let mut left: Vec<Option<&String>> = now.iter().map(Some).collect();
    let mut missing = Vec::new();
    let mut kept_then = Vec::new();
    for l in then {
        match left.iter().position(|x| *x == Some(l)) {
            Some(i) => {
                left[i] = None;
                kept_then.push(l);
            }
            None => missing.push(l.clone()),
        }
    }
    let extra: Vec<String> = left.iter().flatten().map(|s| (*s).clone()).collect();
    // `now` without its extra lines: the same multiset as kept_then.
    let mut extra_left: Vec<&String> = extra.iter().collect();
    let kept_now: Vec<&String> = now
        .iter()
        .filter(|l| match extra_left.iter().position(|x| x == l) {
            Some(i) => {
                extra_left.remove(i);
                false
            }
            None => true,
        })
        .collect();
    Diff {
        missing,
        extra,
        moved: moved_in_chains(&kept_then, &kept_now),
    }
}

/// The chain a `-A CHAIN rule` line is in; None for the other lines, whose
/// place in the listing means nothing (a chain's declaration, the policy,
/// a jump's position, which the line itself says).
fn chain_of(line: &str) -> Option<&str> {
    line.strip_prefix("-A ")?.split(' ').next()
}

/// The rules no longer in their order, chain by chain: packets meet a
/// chain's rules in order, but the order the chains are listed in is the
/// order they were created in (nftables lists a chain added to an existing
/// table after the older ones), which is no change to what they do.
fn moved_in_chains<'a>(then: &[&'a String], now: &[&'a String]) -> Vec<String> {
    let mut chains: Vec<&str> = Vec::new();
    for l in now {
        if let Some(c) = chain_of(l) {
            if !chains.contains(&c) {
                chains.push(c);
            }
        }
    }
    let of = |v: &[&'a String], c: &str| -> Vec<&'a String> {
        v.iter()
            .copied()
            .filter(|l| chain_of(l) == Some(c))
            .collect()
    };
    let mut out = Vec::new();
    for c in chains {
        out.extend(outside_lcs(&of(then, c), &of(now, c)));
    }
    out
}

/// The lines of `b` outside a longest common subsequence of `a` and `b`.
fn outside_lcs(a: &[&String], b: &[&String]) -> Vec<String> {
    if a == b {
        return Vec::new();
    }
    let (n, m) = (a.len(), b.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if a[i] == b[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while j < m {
        if i < n && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < n && t[i + 1][j] >= t[i][j + 1] {
            i += 1;
        } else {
            out.push(b[j].clone());
            j += 1;
        }
    }
    out
}

/// FNV-1a (64 bits): where each digest here starts, and one step of it.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether a set's members are left out of the digests: a feed's change
/// with every update, not with the config; so do a country's (`[geo]`:
/// with its database).
fn members_outside_config(set: &super::SetPlan) -> bool {
    set.name.starts_with("feed-") || set.name.starts_with("geo-")
}

/// A stable digest (FNV-1a, 64 bits) of the plan: its rules as rendered on
/// an empty kernel, and per set its kind and its config members (a digest
/// of each member's bytes, summed, as the nftables markers name them, and
/// their count): the same config gives the same digest across runs and
/// builds. The members are hashed as data, not rendered as text: 100 000
/// of them cost a first install some 50 ms that way ([`legacy_digest`]).
pub fn digest(plan: &Plan) -> String {
    digest_with(plan, true)
}

/// `[forward] protect = "off"`: no forward part in either family's table.
fn forward_off(plan: &Plan) -> bool {
    plan.v4.forward.is_none() && plan.v6.forward.is_none()
}

/// [`digest`], with or without its line for "off" (digests recorded
/// before it lacked it).
fn digest_with(plan: &Plan, off_line: bool) -> String {
    // "auto" renders as it would where Docker does not run; an explicit
    // [forward] protect renders its chains. The sets are not cloned.
    let none = TableState::default();
    let rules = Plan {
        sets: Vec::new(),
        v4: plan.v4.clone(),
        v6: plan.v6.clone(),
    };
    let rules = &super::resolve(&rules, &none, &none);
    let mut h = FNV_OFFSET;
    for part in [
        super::render_table(&rules.v4, &none),
        super::render_table(&rules.v6, &none),
        super::render_raw(&rules.v4, &none),
        super::render_raw(&rules.v6, &none),
    ] {
        h = fnv(h, part.as_bytes());
    }
    // "off" renders as "auto" does without Docker: said apart, or a host
    // whose "auto" put a forward chain in (Docker there) and whose config
    // now says "off" would read as applied (auto configs keep their digest).
    if off_line && forward_off(plan) {
        h = fnv(h, b"forward off\n");
    }
    for s in &plan.sets {
        let (sum, count) = match members_outside_config(s) {
            true => (0, 0),
            false => super::nftmark::members_digest(s.members.iter()),
        };
        let line = format!(
            "set {} {} family {} maxelem {} members {sum:016x} {count}\n",
            s.name,
            s.kind.as_str(),
            s.family.ipset_family(),
            s.maxelem
        );
        h = fnv(h, line.as_bytes());
    }
    format!("{h:016x}")
}

/// The digest applies recorded before [`digest`] (state files written by
/// older fwctl): the whole plan rendered as `ipset restore` text, members
/// included, and hashed. Only [`same_config`] still asks for it.
pub fn legacy_digest(plan: &Plan) -> String {
    let empty = Current::default();
    let mut sets = plan.sets.clone();
    for s in sets.iter_mut().filter(|s| members_outside_config(s)) {
        s.members.clear();
    }
    let none = TableState::default();
    let plan = &super::resolve(plan, &none, &none);
    let text = [
        super::render_table(&plan.v4, &TableState::default()),
        super::render_table(&plan.v6, &TableState::default()),
        super::render_raw(&plan.v4, &TableState::default()),
        super::render_raw(&plan.v6, &TableState::default()),
        super::render_sets(&sets, &empty),
    ]
    .concat();
    format!("{:016x}", fnv(FNV_OFFSET, text.as_bytes()))
}

/// `backend`'s tag on a digest: none for iptables (as before backends
/// existed), `-NAME` for any other: a switch of backend is a config change
/// to apply, not drift.
fn tagged(backend: &str, digest: String) -> String {
    match backend {
        "iptables" => digest,
        other => format!("{digest}-{other}"),
    }
}

/// The digest an apply records and status compares: [`digest`], tagged
/// with the backend.
pub fn digest_for(backend: &str, plan: &Plan) -> String {
    tagged(backend, digest(plan))
}

/// The backend a recorded digest was tagged with (see [`tagged`]).
pub fn backend_of(recorded: &str) -> &str {
    recorded.split_once('-').map_or("iptables", |(_, b)| b)
}

/// Whether `recorded` (the last apply's digest) is this plan's on
/// `backend`: by [`digest_for`], or by the definitions before it, so a
/// state file an older fwctl wrote tells no config change after an
/// upgrade (those are worked out only when the first differs). Those
/// hashed "off" as "auto" without Docker: for an "off" plan they count
/// only when the record holds no forward chain (`forward_recorded`: the
/// record has `:FWCTL-FORWARD` or a forward jump), which "auto" with
/// Docker would have put in.
pub fn same_config(recorded: &str, backend: &str, plan: &Plan, forward_recorded: bool) -> bool {
    if recorded == digest_for(backend, plan) {
        return true;
    }
    let off = forward_off(plan);
    if off && forward_recorded {
        return false;
    }
    (off && recorded == tagged(backend, digest_with(plan, false)))
        || recorded == tagged(backend, legacy_digest(plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_countrys_networks_are_no_config_change() {
        let cfg = crate::core::config::Config::parse(
            "[geo]\ncountry_db = \"/x.mmdb\"\nblock_countries = [\"NL\"]\n",
            std::path::Path::new("/t.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap();
        let plan = super::super::build(&cfg);
        let mut filled = plan.clone();
        for s in filled.sets.iter_mut().filter(|s| s.name == "geo-NL") {
            s.members = vec!["198.51.100.0/24".parse().unwrap()];
        }
        assert_eq!(digest(&plan), digest(&filled));
    }
    use crate::sys::iptables::save::{ours, ours_raw};

    /// A state file written before the members were hashed as data holds
    /// the digest of the old definition: still the same config to status,
    /// on either backend; a member more is a change under both.
    #[test]
    fn a_digest_recorded_by_the_old_definition_still_matches() {
        let parse = |t: &str| {
            crate::core::config::Config::parse(t, std::path::Path::new("/x.toml"), &|_| {
                Ok(String::new())
            })
            .unwrap()
        };
        let text = "[[service]]\nname = \"ssh\"\nport = 22\n[blacklist]\nentries = [\"192.0.2.0/24\", \"2001:db8::1\"]\n";
        let plan = super::super::build(&parse(text));
        let more = super::super::build(&parse(
            &text.replace("192.0.2.0/24", "192.0.2.0/24\", \"198.51.100.7"),
        ));
        // The old definition, pinned: what fwctl 5d70749 recorded in a
        // state file for this config (applied in a namespace).
        assert_eq!(legacy_digest(&plan), "491dbbf48fe140ff");
        for backend in ["iptables", "nftables"] {
            let old = tagged(backend, legacy_digest(&plan));
            let new = digest_for(backend, &plan);
            assert_ne!(old, new);
            assert!(same_config(&old, backend, &plan, false));
            assert!(same_config(&new, backend, &plan, false));
            assert!(!same_config(&old, backend, &more, false));
            assert!(!same_config(&new, backend, &more, false));
        }
        assert!(!same_config(
            &digest_for("iptables", &plan),
            "nftables",
            &plan,
            false
        ));
        assert_eq!(backend_of(&digest_for("iptables", &plan)), "iptables");
        assert_eq!(backend_of(&digest_for("nftables", &plan)), "nftables");
        // The members' order is no change; their number is.
        let mut shuffled = plan.clone();
        for s in &mut shuffled.sets {
            s.members.reverse();
        }
        assert_eq!(digest(&plan), digest(&shuffled));
        assert_ne!(digest(&plan), digest(&more));
    }

    const SAVE: &str = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j X\nCOMMIT\n\
        *filter\n:INPUT DROP [10:600]\n:FORWARD ACCEPT [0:0]\n:FWCTL-INPUT - [0:0]\n:DOCKER - [0:0]\n\
        -A INPUT -j FWCTL-INPUT\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\n\
        -A FWCTL-INPUT -i lo -j ACCEPT\n-A DOCKER -j RETURN\nCOMMIT\n";

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_fwctls_part_of_the_filter_table_is_kept() {
        assert_eq!(
            ours(SAVE),
            lines(&[
                "policy INPUT DROP",
                ":FWCTL-INPUT",
                "jump at INPUT 1",
                "-A FWCTL-INPUT -i lo -j ACCEPT"
            ])
        );
        // `iptables -F`: the chains stay, their rules and the jump are gone.
        let flushed = "*filter\n:INPUT DROP [0:0]\n:FWCTL-INPUT - [0:0]\nCOMMIT\n";
        let d = diff(&ours(SAVE), &ours(flushed));
        assert_eq!(
            d.missing,
            lines(&["jump at INPUT 1", "-A FWCTL-INPUT -i lo -j ACCEPT"])
        );
        assert!(d.extra.is_empty() && d.moved.is_empty());
        // A rule inserted above the jump moves it: that is drift too.
        let moved = SAVE.replace(
            "-A INPUT -j FWCTL-INPUT\n",
            "-A INPUT -p tcp -j ACCEPT\n-A INPUT -j FWCTL-INPUT\n",
        );
        let d = diff(&ours(SAVE), &ours(&moved));
        assert_eq!(
            (d.missing, d.extra),
            (lines(&["jump at INPUT 1"]), lines(&["jump at INPUT 2"]))
        );
        assert!(diff(&ours(SAVE), &ours(SAVE)).is_empty());
    }

    #[test]
    fn only_fwctls_part_of_the_raw_table_is_kept() {
        let save = "*raw\n:PREROUTING ACCEPT [3:4]\n:OUTPUT ACCEPT [0:0]\n:FWCTL-RAW - [0:0]\n\
                    -A PREROUTING -p udp -j CT --notrack\n-A PREROUTING -j FWCTL-RAW\n\
                    -A FWCTL-RAW -i lo -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            ours_raw(&format!("{SAVE}{save}")),
            lines(&[
                ":FWCTL-RAW",
                "jump at PREROUTING 2",
                "-A FWCTL-RAW -i lo -j ACCEPT"
            ])
        );
        assert!(ours_raw(SAVE).is_empty());
        assert!(!ours(save).iter().any(|l| l.contains("RAW")));
    }

    #[test]
    fn a_reordering_is_drift_too() {
        let then = lines(&[
            "policy INPUT DROP",
            "-A FWCTL-INPUT -a",
            "-A FWCTL-INPUT -b",
            "-A FWCTL-INPUT -c",
        ]);
        let now = lines(&[
            "policy INPUT DROP",
            "-A FWCTL-INPUT -c",
            "-A FWCTL-INPUT -a",
            "-A FWCTL-INPUT -b",
        ]);
        let d = diff(&then, &now);
        assert!(d.missing.is_empty() && d.extra.is_empty());
        assert_eq!(d.moved, lines(&["-A FWCTL-INPUT -c"]));
        // A moved line and an extra one are told apart.
        let mut now2 = now.clone();
        now2.push("-A FWCTL-INPUT -x".into());
        let d = diff(&then, &now2);
        assert_eq!((d.extra.len(), d.moved.len()), (1, 1));
    }

    /// nftables lists a chain added to an existing table after the older
    /// ones: the chains' order is no drift, a rule's place in its chain is.
    #[test]
    fn the_order_of_the_chains_is_no_drift() {
        let then = lines(&[
            ":FWCTL-A",
            "-A FWCTL-A -a",
            "-A FWCTL-A -b",
            ":FWCTL-B",
            "-A FWCTL-B -c",
            "policy INPUT DROP",
            "jump at INPUT 1",
        ]);
        let now = lines(&[
            "policy INPUT DROP",
            "jump at INPUT 1",
            ":FWCTL-B",
            "-A FWCTL-B -c",
            ":FWCTL-A",
            "-A FWCTL-A -a",
            "-A FWCTL-A -b",
        ]);
        assert!(diff(&then, &now).is_empty(), "{:?}", diff(&then, &now));
        let swapped = lines(&[
            ":FWCTL-B",
            "-A FWCTL-B -c",
            ":FWCTL-A",
            "-A FWCTL-A -b",
            "-A FWCTL-A -a",
        ]);
        let d = diff(&then[..5], &swapped);
        assert_eq!(d.moved, lines(&["-A FWCTL-A -a"]));
    }

    #[test]
    fn the_digest_follows_the_rendered_rules_not_the_file_text() {
        let parse = |t: &str| {
            crate::core::config::Config::parse(t, std::path::Path::new("/x.toml"), &|_| {
                Ok(String::new())
            })
            .unwrap()
        };
        let a = digest(&super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n",
        )));
        let b = digest(&super::super::build(&parse(
            "# a comment\n[[service]]\nname = \"ssh\"\nport = 22\n",
        )));
        let c = digest(&super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 2222\n",
        )));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
        // The blacklisted prefix is only in the raw part now.
        let d = digest(&super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n[logging.prefixes]\nblacklisted = { v4 = \"BL: \", v6 = \"BL6: \" }\n",
        )));
        assert_ne!(a, d);
        // [forward] "off" and the default "auto" are two configs (they
        // render alike where Docker does not run); "auto" keeps its digest.
        let off = digest(&super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n[forward]\nprotect = \"off\"\n",
        )));
        assert_ne!(a, off);
        assert_eq!(a, "b5a917b56fd6fec2", "a digest apply recorded before");
        // A record of "off" made before that line: the same config when it
        // holds no forward chain, not when it does ("auto" with Docker).
        let off_plan = super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n[forward]\nprotect = \"off\"\n",
        ));
        for before in [digest_with(&off_plan, false), legacy_digest(&off_plan)] {
            assert!(same_config(&before, "iptables", &off_plan, false));
            assert!(!same_config(&before, "iptables", &off_plan, true));
        }
        assert!(same_config(&off, "iptables", &off_plan, true));
    }
}
