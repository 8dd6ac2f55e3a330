//! ipset's language, next to the tool that speaks it: the headers of
//! `ipset list -t` and the members of `ipset save NAME` read as data, and
//! the `ipset -exist restore` batch rendered from typed ops. The real store
//! (`impl SetStore for System`) runs ipset with these; nothing else in fwctl
//! reads or writes ipset text for the set store.

use super::tools::System;
use crate::core::sets::{Holds, Member, Refill, SetHead, SetOp};
use crate::ports::{SetStore, StepError, StepResult};
use crate::units::addr::{parse_addr, push_member, Family};
use crate::units::names::{SetName, V6_SUFFIX};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The sets a feed's new list is built in before the swap, per family
/// (apply's are fwctl-new-N; the run lock keeps the two apart anyway).
pub const REFILL_TEMP: [&str; 2] = ["fwctl-feed-4", "fwctl-feed-6"];

/// Every set's header from `ipset list -t`. Unknown lines are ignored, so
/// is a line before the first `Name:`.
pub fn parse_heads(text: &str) -> BTreeMap<String, SetHead> {
    let mut sets = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key == "Name" {
            name = Some(value.to_string());
            sets.insert(
                value.to_string(),
                SetHead {
                    holds: Holds::Other(String::new()),
                    // ipset's default when a header names none.
                    family: Family::V4,
                    maxelem: None,
                    timeout: false,
                    entries: 0,
                },
            );
            continue;
        }
        let Some(h) = name.as_ref().and_then(|n| sets.get_mut(n)) else {
            continue;
        };
        match key {
            "Type" => h.holds = holds(value),
            "Number of entries" => h.entries = value.parse().unwrap_or(0),
            "Header" => {
                let words: Vec<&str> = value.split_whitespace().collect();
                let opt = |k: &str| words.windows(2).find(|w| w[0] == k).map(|w| w[1]);
                h.family = match opt("family") {
                    Some("inet6") => Family::V6,
                    _ => Family::V4,
                };
                h.maxelem = opt("maxelem").and_then(|v| v.parse().ok());
                h.timeout = opt("timeout").is_some();
            }
            _ => {}
        }
    }
    sets
}

fn holds(kind: &str) -> Holds {
    match kind {
        "hash:ip" => Holds::Addresses,
        "hash:net" => Holds::Networks,
        other => Holds::Other(other.to_string()),
    }
}

/// The members of `set` in `ipset save` output, with their time left
/// (`timeout 0`, or none, is a permanent member). Lines of other sets and
/// unknown lines are ignored; a member that is not an address or network
/// (another set type's, or garbage) is skipped.
pub fn parse_members(text: &str, set: &str) -> Vec<Member> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("add") || words.next() != Some(set) {
            continue;
        }
        let Some(net) = words.next().and_then(|w| parse_addr(w).ok()) else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        let left = rest
            .windows(2)
            .find(|w| w[0] == "timeout")
            .and_then(|w| w[1].parse::<u32>().ok())
            .filter(|s| *s > 0);
        out.push(Member { net, left });
    }
    out
}

/// A set name that may reach ipset: a valid fwctl set name, or its `_v6`
/// twin. Checked here too, whoever built the op: a name is never put into
/// ipset's input (or onto its command line) unchecked.
pub fn checked(name: &str) -> StepResult<&str> {
    let base = name.strip_suffix(V6_SUFFIX).unwrap_or(name);
    SetName::parse(base).map_err(|e| StepError {
        step: "ipset".into(),
        detail: format!("refusing set name {name:?}: {e}"),
    })?;
    Ok(name)
}

/// The `ipset -exist restore` input for `ops`, grouped by set in the order
/// first named (ipset batches consecutive lines of one set into one netlink
/// message). `-exist` makes an add of a member there a refresh of its
/// timeout, and a delete of one not there no error.
pub fn render_change(ops: &[SetOp]) -> StepResult<String> {
    let mut order: Vec<&str> = Vec::new();
    for op in ops {
        let set = match op {
            SetOp::Add { set, .. } | SetOp::Del { set, .. } => checked(set)?,
        };
        if !order.contains(&set) {
            order.push(set);
        }
    }
    let mut out = String::with_capacity(ops.len() * 48);
    for name in order {
        for op in ops {
            match op {
                SetOp::Add { set, net, timeout } if set == name => {
                    out.push_str("add ");
                    out.push_str(set);
                    out.push(' ');
                    push_member(&mut out, net);
                    if let Some(t) = timeout {
                        let _ = write!(out, " timeout {t}");
                    }
                }
                SetOp::Del { set, net } if set == name => {
                    out.push_str("del ");
                    out.push_str(set);
                    out.push(' ');
                    push_member(&mut out, net);
                }
                _ => continue,
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// The `ipset restore` input that replaces each set's members: built aside
/// in a temporary set of its family, filled, swapped in, the old one
/// destroyed; `leftover` temporary sets (of a run that died) go first.
pub fn render_refill(fills: &[Refill], leftover: &[&str]) -> StepResult<String> {
    let mut s = String::new();
    for t in leftover {
        let _ = writeln!(s, "destroy {}", checked(t)?);
    }
    for f in fills {
        let name = checked(&f.set)?;
        let temp = REFILL_TEMP[usize::from(f.family.is_v6())];
        let mine = f
            .nets
            .iter()
            .filter(|n| Family::of(n) == f.family)
            .collect::<Vec<_>>();
        let _ = writeln!(
            s,
            "create {temp} hash:net family {} hashsize {} maxelem {} timeout 0",
            f.family.ipset_family(),
            mine.len().next_power_of_two().clamp(1024, 1 << 24),
            f.maxelem.max(1024)
        );
        for n in mine {
            s.push_str("add ");
            s.push_str(temp);
            s.push(' ');
            push_member(&mut s, n);
            s.push('\n');
        }
        let _ = writeln!(s, "swap {temp} {name}\ndestroy {temp}");
    }
    Ok(s)
}

impl SetStore for System {
    fn heads(&mut self) -> StepResult<BTreeMap<String, SetHead>> {
        Ok(parse_heads(&self.run("ipset", &["list", "-t"], None)?))
    }

    fn members(&mut self, set: &str) -> StepResult<Vec<Member>> {
        let text = self.run("ipset", &["save", checked(set)?], None)?;
        Ok(parse_members(&text, set))
    }

    fn change(&mut self, ops: &[SetOp]) -> StepResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let input = render_change(ops)?;
        self.run("ipset", &["-exist", "restore"], Some(&input))
            .map(drop)
    }

    fn refill(&mut self, fills: &[Refill]) -> StepResult<()> {
        if fills.is_empty() {
            return Ok(());
        }
        let heads = self.heads()?;
        let leftover: Vec<&str> = REFILL_TEMP
            .into_iter()
            .filter(|t| heads.contains_key(*t))
            .collect();
        let input = render_refill(fills, &leftover)?;
        self.run("ipset", &["-exist", "restore"], Some(&input))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    fn net(s: &str) -> IpNet {
        parse_addr(s).unwrap()
    }

    #[test]
    fn heads_of_list_t() {
        let text = "Name: t1\nType: hash:ip\nRevision: 6\nHeader: family inet hashsize 1024 maxelem 100 timeout 60 bucketsize 12 initval 0x1d0ea5c4\nSize in memory: 280\nReferences: 0\nNumber of entries: 1\n\nName: t2\nType: hash:net\nRevision: 7\nHeader: family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x38ba37b7\nSize in memory: 1240\nReferences: 0\nNumber of entries: 0\n";
        let h = parse_heads(text);
        assert_eq!(
            h["t1"],
            SetHead {
                holds: Holds::Addresses,
                family: Family::V4,
                maxelem: Some(100),
                timeout: true,
                entries: 1
            }
        );
        assert_eq!(
            (&h["t2"].holds, h["t2"].family, h["t2"].timeout),
            (&Holds::Networks, Family::V6, false)
        );
    }

    #[test]
    fn odd_header_lines_are_ignored_and_odd_types_kept_by_name() {
        let text = "Number of entries: 99\nwhat is this\nName: p\nType: bitmap:port\nHeader: range 1-100\nNumber of entries: many\nMembers:\n22\n";
        let h = parse_heads(text);
        assert_eq!(h.len(), 1, "nothing before the first Name: is a set");
        let p = &h["p"];
        assert_eq!(p.holds, Holds::Other("bitmap:port".into()));
        assert!(!p.holds.takes_addresses());
        assert_eq!(p.holds.to_string(), "bitmap:port");
        assert_eq!((p.family, p.maxelem, p.entries), (Family::V4, None, 0));
    }

    #[test]
    fn members_with_their_time_left_and_odd_lines_skipped() {
        let text = "create blacklist hash:net family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x1\n\
add blacklist 203.0.113.7 timeout 0\n\
add blacklist 198.51.100.9 timeout 293\n\
add blacklist 192.0.2.0/24\n\
add blacklist not-an-address timeout 5\n\
add blacklist 203.0.113.9/16 timeout 5\n\
add blacklist 22,tcp:80\n\
add blacklist\n\
add other 192.0.2.99 timeout 9\n\
swap a b\n\
garbage\n\
add blacklist 2001:db8::1 timeout 4294967296\n";
        let m = parse_members(text, "blacklist");
        assert_eq!(
            m,
            [
                Member {
                    net: net("203.0.113.7"),
                    left: None
                },
                Member {
                    net: net("198.51.100.9"),
                    left: Some(293)
                },
                Member {
                    net: net("192.0.2.0/24"),
                    left: None
                },
                // A timeout that is no u32 is not a time left.
                Member {
                    net: net("2001:db8::1"),
                    left: None
                },
            ]
        );
    }

    #[test]
    fn a_change_is_one_batch_grouped_by_set() {
        let ops = [
            SetOp::Add {
                set: "blacklist".into(),
                net: net("203.0.113.5"),
                timeout: Some(60),
            },
            SetOp::Del {
                set: "blacklist_v6".into(),
                net: net("2001:db8::/64"),
            },
            SetOp::Add {
                set: "blacklist".into(),
                net: net("198.51.100.0/24"),
                timeout: None,
            },
        ];
        assert_eq!(
            render_change(&ops).unwrap(),
            "add blacklist 203.0.113.5 timeout 60\nadd blacklist 198.51.100.0/24\ndel blacklist_v6 2001:db8::/64\n"
        );
    }

    #[test]
    fn a_name_that_is_no_set_name_never_reaches_ipset() {
        for bad in [
            "-exist",
            "a b",
            "x\nflush",
            "",
            "waytoolongname_waytoolongname_x",
        ] {
            let ops = [SetOp::Del {
                set: bad.into(),
                net: net("203.0.113.5"),
            }];
            let e = render_change(&ops).unwrap_err();
            assert!(e.detail.contains("refusing set name"), "{bad}: {e}");
        }
        assert!(checked("throttle-hard_v6").is_ok());
    }

    #[test]
    fn a_refill_builds_aside_and_swaps() {
        let nets = vec![
            net("198.51.100.7"),
            net("203.0.113.0/24"),
            net("2001:db8:bad::/48"),
        ];
        let fills = [
            Refill {
                set: "feed-drop".into(),
                family: Family::V4,
                maxelem: 10,
                nets: nets.clone(),
            },
            Refill {
                set: "feed-drop_v6".into(),
                family: Family::V6,
                maxelem: 10,
                nets,
            },
        ];
        let s = render_refill(&fills, &["fwctl-feed-6"]).unwrap();
        assert!(s.starts_with("destroy fwctl-feed-6\n"), "{s}");
        assert!(s.contains("create fwctl-feed-4 hash:net family inet hashsize 1024 maxelem 1024 timeout 0\nadd fwctl-feed-4 198.51.100.7\nadd fwctl-feed-4 203.0.113.0/24\nswap fwctl-feed-4 feed-drop\ndestroy fwctl-feed-4\n"), "{s}");
        assert!(
            s.contains("add fwctl-feed-6 2001:db8:bad::/48\nswap fwctl-feed-6 feed-drop_v6\n"),
            "{s}"
        );
    }
}
