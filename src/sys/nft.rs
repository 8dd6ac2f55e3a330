//! The `nft` tool for the nftables backend: scripts run as one transaction
//! (`nft -f -`, never through a shell), and fwctl's sets read back as typed
//! data over netlink (`sys::nftdump`). `nft -j` (its JSON schema, for the
//! tables and the version) is parsed here, next to the tool that prints it,
//! and nowhere else; serde_json's `Value` is enough for the few fields
//! read, so no schema crate is pulled in for them.

use super::ipset::checked;
use super::tools::{locate_tool, Missing};
use crate::core::ruleset::nft::{FAMILY, TABLE};
use crate::core::sets::{Holds, Member, Refill, SetHead, SetOp};
use crate::ports::{SetStore, StepError, StepResult};
use crate::units::addr::{member, Family};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;

pub use super::nftdump::NftSet;

/// The `nft` program, found once.
pub struct Nft {
    path: PathBuf,
}

impl Nft {
    pub fn locate() -> Result<Nft, Missing> {
        Ok(Nft {
            path: locate_tool("nft", "nftables")?,
        })
    }

    fn run(&self, args: &[&str], input: Option<&str>) -> StepResult<String> {
        super::tools::run_step("nft", &self.path, args, input)
    }

    /// Run `script` as one transaction: all of it, or nothing.
    pub fn transaction(&self, script: &str) -> StepResult<()> {
        self.run(&["-f", "-"], Some(script)).map(drop)
    }

    /// Whether fwctl's table exists.
    pub fn has_table(&self) -> StepResult<bool> {
        let out = self.run(&["-j", "list", "tables", FAMILY], None)?;
        Ok(parse_tables(&out).iter().any(|t| t == TABLE))
    }

    /// Whether `table ip filter` (`ip6` for IPv6) holds Docker's DOCKER-USER
    /// chain, as iptables-nft writes it (an error reads as no).
    pub fn has_docker_user(&self, v6: bool) -> bool {
        let family = if v6 { "ip6" } else { "ip" };
        let chain = crate::core::config::forward::DOCKER_USER;
        self.run(&["-t", "list", "chain", family, "filter", chain], None)
            .is_ok()
    }

    /// fwctl's table without set elements (`nft -t`), as the kernel prints
    /// it: what drift detection compares. None when there is no table.
    pub fn terse_table(&self) -> StepResult<Option<String>> {
        self.table(&["-t", "list", "table", FAMILY, TABLE])
    }

    /// Every set of fwctl's table with its members (none without the
    /// table), read over netlink (`sys::nftdump`): nft would read and print
    /// every element of every set, 2 s for 100 000.
    pub fn sets(&self) -> StepResult<Vec<NftSet>> {
        Ok(dumped(None)?.unwrap_or_default())
    }

    /// A listing of fwctl's table, None when there is none. Asked at once,
    /// not after a `list tables`: every listing of nft 1.0 reads every set
    /// element into its cache (2 s for 100 000), so each one saved counts.
    fn table(&self, args: &[&str]) -> StepResult<Option<String>> {
        match self.run(args, None) {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.detail.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How nft prints fwctl's table once `script` installed it (`nft -t`),
    /// worked out in a network namespace of its own that this thread
    /// makes and that ends with it: the script's sets hold no elements
    /// there, so nft does not read 2 s of them to print the rules, and
    /// nothing of this host's firewall is touched.
    pub fn printed(&self, script: &str) -> StepResult<String> {
        let fail = |detail: String| StepError {
            step: "printing the ruleset (private network namespace)".into(),
            detail,
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: unshare(2) with a flag; it only moves this
                    // thread into a new, empty network namespace.
                    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                        return Err(fail(std::io::Error::last_os_error().to_string()));
                    }
                    self.transaction(script)?;
                    Ok(self.terse_table()?.unwrap_or_default())
                })
                .join()
                .unwrap_or_else(|_| Err(fail("the thread panicked".into())))
        })
    }

    /// `nft --version`: (major, minor, patch).
    pub fn version(&self) -> StepResult<(u32, u32, u32)> {
        let out = self.run(&["--version"], None)?;
        parse_version(&out).ok_or_else(|| StepError {
            step: "nft --version".into(),
            detail: format!("unexpected answer {:?}", out.trim()),
        })
    }
}

impl NftSet {
    fn head(&self) -> SetHead {
        SetHead {
            // fwctl's sets are interval sets: addresses and networks alike.
            holds: Holds::Networks,
            family: self.family,
            maxelem: self.size.map(u64::from),
            timeout: self.timeout,
            entries: self.members.len() as u64,
        }
    }

    fn typed_members(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|(net, left)| Member {
                net: *net,
                left: left.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
            })
            .collect()
    }
}

/// One element as nft writes it: `203.0.113.5`, `2001:db8::/64`, with its
/// timeout.
fn element(out: &mut String, net: &IpNet, timeout: Option<u32>) {
    out.push_str(&member(net));
    if let Some(t) = timeout {
        let _ = write!(out, " timeout {t}s");
    }
}

/// The change `ops` make, given the members each named set
/// holds now (`present`, by set). nft 1.0.6 has no `destroy element`, and a
/// `delete element` of one not there fails the whole transaction, so a
/// delete of a member not there is left out; an `add element` of one there
/// keeps its old timeout on kernels before element timeout updates (6.18,
/// where the kernel test runs, refreshes it either way), so a refresh is a
/// delete and an add of it in the same transaction. Ops are followed in
/// order (an add then a delete of the same member ends with it gone).
///
/// An interval set refuses overlapping elements, so an add follows what an
/// install does with them (the wider one holds): an add inside a member
/// there is left out (that member already drops it, as capture's netlink
/// path answers "already listed"), and an add of a network first deletes
/// the members inside it. Members are kept ordered, so each of those
/// checks is a lookup, not a walk.
///
/// Each set's deletes, then its adds: one netlink batch (see `change`),
/// or one command each in `nft -f` text ([`render_change`]).
pub fn plan_change(
    ops: &[SetOp],
    present: &BTreeMap<String, BTreeSet<IpNet>>,
) -> StepResult<Change> {
    let empty = BTreeSet::new();
    // Per set, in first-seen order: its members as the ops leave them, and
    // those this batch adds (with their timeout).
    let mut sets: Vec<(&str, BTreeSet<IpNet>, Added)> = Vec::new();
    for op in ops {
        let (set, net) = match op {
            SetOp::Add { set, net, .. } | SetOp::Del { set, net } => (checked(set)?, net.trunc()),
        };
        let i = match sets.iter().position(|(s, _, _)| *s == set) {
            Some(i) => i,
            None => {
                let held = present.get(set).unwrap_or(&empty);
                sets.push((
                    set,
                    held.iter().map(IpNet::trunc).collect(),
                    BTreeMap::new(),
                ));
                sets.len() - 1
            }
        };
        let (_, now, added) = &mut sets[i];
        match op {
            SetOp::Del { .. } => {
                if now.remove(&net) {
                    added.remove(&net);
                }
            }
            SetOp::Add { timeout, .. } => {
                if now.contains(&net) {
                    added.insert(net, *timeout);
                    continue;
                }
                if covering(now, &net).is_some() {
                    continue;
                }
                for m in inside(now, &net) {
                    now.remove(&m);
                    added.remove(&m);
                }
                now.insert(net);
                added.insert(net, *timeout);
            }
        }
    }
    Ok(sets
        .into_iter()
        .map(|(set, now, added)| {
            let held = present.get(set).unwrap_or(&empty);
            let dels: Vec<(IpNet, Option<u32>)> = held
                .iter()
                .map(IpNet::trunc)
                .filter(|m| !now.contains(m) || added.contains_key(m))
                .map(|m| (m, None))
                .collect();
            let adds: Vec<(IpNet, Option<u32>)> = added.into_iter().collect();
            (set.to_string(), dels, adds)
        })
        .collect())
}

/// The members a batch adds, with their timeout.
type Added = BTreeMap<IpNet, Option<u32>>;

/// Each set's deletes and adds, as [`plan_change`] works them out.
pub type Change = Vec<(String, Vec<(IpNet, Option<u32>)>, Vec<(IpNet, Option<u32>)>)>;

/// The same as `nft -f` text: each set's deletes, then its adds, one
/// command each.
pub fn render_change(
    ops: &[SetOp],
    present: &BTreeMap<String, BTreeSet<IpNet>>,
) -> StepResult<String> {
    let mut out = String::new();
    let command = |out: &mut String, verb: &str, set: &str, items: &[(IpNet, Option<u32>)]| {
        if items.is_empty() {
            return;
        }
        let _ = write!(out, "{verb} element {FAMILY} {TABLE} {set} {{ ");
        for (i, (n, t)) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            element(out, n, *t);
        }
        out.push_str(" }\n");
    };
    for (set, dels, adds) in plan_change(ops, present)? {
        command(&mut out, "delete", &set, &dels);
        command(&mut out, "add", &set, &adds);
    }
    Ok(out)
}

/// The member of `now` (disjoint networks) that covers `net`, if one does:
/// only the last one starting at or before it can.
fn covering<'a>(now: &'a BTreeSet<IpNet>, net: &IpNet) -> Option<&'a IpNet> {
    now.range(..=*net).next_back().filter(|m| m.contains(net))
}

/// The members of `now` inside `net`.
fn inside(now: &BTreeSet<IpNet>, net: &IpNet) -> Vec<IpNet> {
    let from = IpNet::new(net.network(), 0).expect("prefix 0");
    now.range(from..)
        .take_while(|m| m.network() <= net.broadcast() && Family::of(m) == Family::of(net))
        .filter(|m| net.contains(*m))
        .copied()
        .collect()
}

/// The `nft -f` transaction that replaces each set's members: flushed and
/// filled in one transaction, so a reader sees the old list or the new.
pub fn render_refill(fills: &[Refill]) -> StepResult<String> {
    let mut out = String::new();
    for f in fills {
        let set = checked(&f.set)?;
        let _ = writeln!(out, "flush set {FAMILY} {TABLE} {set}");
        // A feed's address inside one of its networks is left out: an
        // interval set refuses overlapping elements.
        let mine = crate::core::ruleset::nft::uncovered(
            f.nets
                .iter()
                .filter(|n| Family::of(n) == f.family)
                .map(|n| (*n, None))
                .collect(),
        );
        if mine.is_empty() {
            continue;
        }
        let _ = write!(out, "add element {FAMILY} {TABLE} {set} {{");
        for (i, (n, _)) in mine.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ",\n\t" });
            element(&mut out, n, None);
        }
        out.push_str(" }\n");
    }
    Ok(out)
}

impl Nft {
    /// One of fwctl's sets (an error when it is missing).
    fn set(&self, name: &str) -> StepResult<NftSet> {
        dumped(Some(checked(name)?))?
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StepError {
                step: format!("reading set {name}"),
                detail: format!("no set {name} in table {FAMILY} {TABLE}; fix: run `fwctl apply`"),
            })
    }

    /// `change` as one nf_tables transaction over netlink.
    fn batch(&self, change: &Change) -> StepResult<()> {
        let fail = |detail: String| StepError {
            step: "nf_tables batch (netlink)".into(),
            detail,
        };
        let mut lists = Vec::new();
        for (set, dels, adds) in change {
            lists.push(super::nftlink::Elements {
                set,
                add: false,
                items: dels,
            });
            lists.push(super::nftlink::Elements {
                set,
                add: true,
                items: adds,
            });
        }
        let mut sock = super::netlink::Netfilter::open().map_err(|e| fail(e.to_string()))?;
        super::nftlink::run_batch(&mut sock, TABLE, &lists).map_err(|e| fail(e.to_string()))
    }

    /// The members each set named in `ops` holds now (a set that cannot be
    /// read holds none: the transaction then says what is wrong with it).
    fn present(&self, ops: &[SetOp]) -> BTreeMap<String, BTreeSet<IpNet>> {
        let mut present = BTreeMap::new();
        for op in ops {
            let (SetOp::Add { set, .. } | SetOp::Del { set, .. }) = op;
            if !present.contains_key(set) {
                let held = self
                    .set(set)
                    .map(|s| s.members.iter().map(|(n, _)| *n).collect())
                    .unwrap_or_default();
                present.insert(set.clone(), held);
            }
        }
        present
    }
}

/// The nftables backend's set store: fwctl's sets in `table inet fwctl`,
/// read with `nft -j`, changed in one `nft -f` transaction.
impl SetStore for Nft {
    fn heads(&mut self) -> StepResult<BTreeMap<String, SetHead>> {
        Ok(self
            .sets()?
            .into_iter()
            .map(|s| (s.name.clone(), s.head()))
            .collect())
    }

    fn members(&mut self, set: &str) -> StepResult<Vec<Member>> {
        Ok(self.set(set)?.typed_members())
    }

    fn change(&mut self, ops: &[SetOp]) -> StepResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        // Read, then change: a ban that times out between the two makes
        // its delete fail the transaction (which then changes nothing);
        // read again and try once more, which sees it gone. The change is
        // one nf_tables batch over netlink: nft took 1.2 s to parse and
        // send 100 000 elements, the batch a fraction of that.
        let first = self.batch(&plan_change(ops, &self.present(ops))?);
        if first.is_ok() {
            return first;
        }
        self.batch(&plan_change(ops, &self.present(ops))?)
    }

    fn refill(&mut self, fills: &[Refill]) -> StepResult<()> {
        if fills.is_empty() {
            return Ok(());
        }
        self.transaction(&render_refill(fills)?)
    }
}

/// fwctl's sets (or the one named) with their members, over netlink.
fn dumped(only: Option<&str>) -> StepResult<Option<Vec<NftSet>>> {
    super::nftdump::sets(TABLE, only).map_err(|e| StepError {
        step: format!("reading table {FAMILY} {TABLE}'s sets (netlink)"),
        detail: e.to_string(),
    })
}

/// `nftables v1.0.6 (Lester Gooch #5)` → (1, 0, 6).
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let v = s.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut it = v.split('.').map(|x| x.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

fn objects<'a>(v: &'a Value, kind: &str) -> impl Iterator<Item = &'a Value> {
    let kind = kind.to_string();
    v.get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |o| o.get(&kind))
}

/// The names of the tables in `nft -j list tables` output.
pub fn parse_tables(json: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    objects(&v, "table")
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        crate::units::addr::parse_addr(s).unwrap()
    }

    #[test]
    fn a_change_refreshes_members_there_and_skips_deletes_of_members_not_there() {
        let mut present = BTreeMap::new();
        present.insert(
            "blacklist".to_string(),
            BTreeSet::from([net("203.0.113.5")]),
        );
        let ops = [
            SetOp::Add {
                set: "blacklist".into(),
                net: net("203.0.113.5"),
                timeout: Some(60),
            },
            SetOp::Add {
                set: "blacklist_v6".into(),
                net: net("2001:db8::/64"),
                timeout: None,
            },
            SetOp::Del {
                set: "blacklist".into(),
                net: net("198.51.100.9"),
            },
            SetOp::Del {
                set: "blacklist_v6".into(),
                net: net("2001:db8::/64"),
            },
        ];
        assert_eq!(
            render_change(&ops, &present).unwrap(),
            "delete element inet fwctl blacklist { 203.0.113.5 }\n\
             add element inet fwctl blacklist { 203.0.113.5 timeout 60s }\n"
        );
        // A batch of many is one command per set and verb.
        let many: Vec<SetOp> = (1..=200u8)
            .map(|i| SetOp::Add {
                set: "blacklist".into(),
                net: net(&format!("192.0.2.{i}")),
                timeout: Some(60),
            })
            .collect();
        let text = render_change(&many, &BTreeMap::new()).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with(", 192.0.2.200 timeout 60s }\n"), "{text}");
        let bad = [SetOp::Del {
            set: "x; flush ruleset".into(),
            net: net("203.0.113.5"),
        }];
        assert!(render_change(&bad, &present).is_err());
    }

    /// `ban 2001:db8:bad::/64` after `ban 2001:db8:bad::5` once failed
    /// with nft's "interval overlaps with an existing one".
    #[test]
    fn an_add_never_overlaps_a_member_there() {
        let present = BTreeMap::from([(
            "blacklist_v6".to_string(),
            BTreeSet::from([net("2001:db8:bad::5"), net("2001:db8:1::/48")]),
        )]);
        let add = |n: &str| SetOp::Add {
            set: "blacklist_v6".into(),
            net: net(n),
            timeout: Some(60),
        };
        assert_eq!(
            render_change(&[add("2001:db8:bad::/64")], &present).unwrap(),
            "delete element inet fwctl blacklist_v6 { 2001:db8:bad::5 }\n\
             add element inet fwctl blacklist_v6 { 2001:db8:bad::/64 timeout 60s }\n"
        );
        assert_eq!(
            render_change(&[add("2001:db8:1:2::/64"), add("2001:db8:1::9")], &present).unwrap(),
            "",
            "inside a member there"
        );
        // In one batch: the network, then an address inside it.
        assert_eq!(
            render_change(&[add("2001:db8:2::/64"), add("2001:db8:2::1")], &present).unwrap(),
            "add element inet fwctl blacklist_v6 { 2001:db8:2::/64 timeout 60s }\n"
        );
    }

    #[test]
    fn a_refill_flushes_and_fills_in_one_transaction() {
        let fills = [
            Refill {
                set: "feed-drop".into(),
                family: Family::V4,
                maxelem: 10,
                nets: vec![
                    net("198.51.100.7"),
                    net("203.0.113.0/24"),
                    // Inside the /24: nft once refused the whole update
                    // ("conflicting intervals specified").
                    net("203.0.113.9"),
                    net("2001:db8::/32"),
                ],
            },
            Refill {
                set: "feed-drop_v6".into(),
                family: Family::V6,
                maxelem: 10,
                nets: vec![],
            },
        ];
        assert_eq!(
            render_refill(&fills).unwrap(),
            "flush set inet fwctl feed-drop\n\
             add element inet fwctl feed-drop { 198.51.100.7,\n\t203.0.113.0/24 }\n\
             flush set inet fwctl feed-drop_v6\n"
        );
    }

    #[test]
    fn version_and_tables() {
        assert_eq!(
            parse_version("nftables v1.0.6 (Lester Gooch #5)\n"),
            Some((1, 0, 6))
        );
        assert_eq!(parse_version("nftables v1.1\n"), Some((1, 1, 0)));
        assert_eq!(parse_version("what"), None);
        assert_eq!(
            parse_tables(
                r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "inet", "name": "fwctl"}}]}"#
            ),
            ["fwctl"]
        );
    }
}
