//! The `nft` tool for the nftables backend: scripts run as one transaction
//! (`nft -f -`, never through a shell), and fwctl's sets read back as typed
//! data over netlink (`sys::nftdump`). `nft -j` (its JSON schema, for the
//! tables and the version) is parsed here, next to the tool that prints it,
//! and nowhere else; serde_json's `Value` is enough for the few fields
//! read, so no schema crate is pulled in for them.

use super::ipset::checked;
use super::tools::{locate_tool, Missing};
use crate::core::ruleset::nft::{is_address, net_set, FAMILY, NET_SUFFIX, TABLE};
use crate::core::ruleset::nftmark::loaded_set;
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

    /// Every chain of every table, as (family, table, name): one `nft -j
    /// list chains`, which reads no set element.
    pub fn chains(&self) -> StepResult<Vec<(String, String, String)>> {
        let out = self.run(&["-j", "list", "chains"], None)?;
        Ok(parse_chains(&out))
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

    /// Every set of fwctl's table, the members of those `read` says yes
    /// to (the others with none); None without the table.
    pub fn table_sets(&self, read: &dyn Fn(&str) -> bool) -> StepResult<Option<Vec<NftSet>>> {
        super::nftdump::sets_reading(TABLE, read).map_err(read_failed)
    }

    /// The comments of fwctl's marker sets, by the set each marks
    /// (`core::ruleset::nftmark`); None without the table.
    pub fn marks(&self) -> StepResult<Option<BTreeMap<String, String>>> {
        super::nftdump::marks(TABLE).map_err(read_failed)
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
            // An interval set holds networks; a hash set single addresses
            // (a role's networks are in its `/net` twin, merged in `heads`).
            holds: if self.interval {
                Holds::Networks
            } else {
                Holds::Addresses
            },
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
            SetOp::Add { set, net, .. } | SetOp::Del { set, net } => {
                (checked_kernel(set)?, net.trunc())
            }
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
            SetChange {
                set: set.to_string(),
                interval: false,
                flush: false,
                dels,
                adds,
            }
        })
        .collect())
}

/// The members a batch adds, with their timeout.
type Added = BTreeMap<IpNet, Option<u32>>;

/// One kernel set's part of a batch: flushed first (a refill), then its
/// deletes, then its adds (each with its timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetChange {
    pub set: String,
    /// An interval set: a network is two elements.
    pub interval: bool,
    pub flush: bool,
    pub dels: Vec<(IpNet, Option<u32>)>,
    pub adds: Vec<(IpNet, Option<u32>)>,
}

/// Each set's part, as [`plan_change`] or [`plan_refill`] works it out.
pub type Change = Vec<SetChange>;

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
    for c in plan_change(ops, present)? {
        command(&mut out, "delete", &c.set, &c.dels);
        command(&mut out, "add", &c.set, &c.adds);
    }
    Ok(out)
}

/// A kernel set name: a role's name (checked as ipset names are), or its
/// interval set's (`blacklist/net`).
fn checked_kernel(name: &str) -> StepResult<&str> {
    checked(name.strip_suffix(NET_SUFFIX).unwrap_or(name))?;
    Ok(name)
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

/// What a feed's refill sends, as one netlink batch: each kernel set of
/// each role flushed, then filled: the addresses into the role's set, the
/// networks into its interval set where it has one (`kinds`: the table's
/// sets, name → interval). A reader sees the old list or the new.
pub fn plan_refill(fills: &[Refill], kinds: &BTreeMap<String, bool>) -> StepResult<Change> {
    let mut out: Change = Vec::new();
    for f in fills {
        let set = checked(&f.set)?;
        // A feed's address inside one of its networks is left out, as an
        // install leaves it out.
        let mine = crate::core::ruleset::nft::uncovered(
            f.nets
                .iter()
                .filter(|n| Family::of(n) == f.family)
                .map(|n| (*n, None))
                .collect(),
        );
        let nets = net_set(set);
        let split = kinds.get(&nets) == Some(&true);
        let own_interval = kinds.get(set) == Some(&true);
        let (addrs, wide): (Vec<_>, Vec<_>) = mine
            .into_iter()
            .partition(|(n, _)| is_address(n) && (split || !own_interval));
        if !wide.is_empty() && !split && !own_interval {
            return Err(StepError {
                step: format!("refilling set {set}"),
                detail: format!(
                    "set {set} holds single addresses, not networks like {}; fix: run `fwctl apply`",
                    wide[0].0
                ),
            });
        }
        out.push(Flush(set.to_string(), own_interval, addrs).into());
        if split {
            out.push(Flush(nets, true, wide).into());
        } else if own_interval {
            // A table from before the split: one interval set holds both.
            let last = out.last_mut().expect("pushed above");
            last.adds.extend(wide);
        }
    }
    Ok(out)
}

/// A set flushed, then filled.
struct Flush(String, bool, Vec<(IpNet, Option<u32>)>);

impl From<Flush> for SetChange {
    fn from(f: Flush) -> SetChange {
        SetChange {
            set: f.0,
            interval: f.1,
            flush: true,
            dels: Vec::new(),
            adds: f.2,
        }
    }
}

impl Nft {
    /// One role's members: its set's and its interval set's (an error when
    /// it has neither).
    fn role(&self, name: &str) -> StepResult<Vec<NftSet>> {
        let nets = net_set(checked(name)?);
        let found = dumped(Some(&[name, &nets]))?.unwrap_or_default();
        if found.is_empty() {
            return Err(StepError {
                step: format!("reading set {name}"),
                detail: format!("no set {name} in table {FAMILY} {TABLE}; fix: run `fwctl apply`"),
            });
        }
        Ok(found)
    }

    /// The table's sets: name → whether it is an interval set.
    fn kinds(&self) -> StepResult<BTreeMap<String, bool>> {
        let heads = super::nftdump::heads(TABLE).map_err(|e| StepError {
            step: format!("reading table {FAMILY} {TABLE}'s sets (netlink)"),
            detail: e.to_string(),
        })?;
        Ok(heads
            .unwrap_or_default()
            .into_iter()
            .map(|h| (h.name, h.interval))
            .collect())
    }

    /// `change` as one nf_tables transaction over netlink.
    pub fn batch(&self, change: &Change) -> StepResult<()> {
        let fail = |detail: String| StepError {
            step: "nf_tables batch (netlink)".into(),
            detail,
        };
        use super::nftlink::{Elements, Verb};
        let mut lists = Vec::new();
        for c in change {
            if c.flush {
                lists.push(Elements {
                    set: &c.set,
                    verb: Verb::Flush,
                    interval: c.interval,
                    items: &[],
                });
            }
            for (verb, items) in [(Verb::Delete, &c.dels), (Verb::Add, &c.adds)] {
                if !items.is_empty() {
                    lists.push(Elements {
                        set: &c.set,
                        verb,
                        interval: c.interval,
                        items,
                    });
                }
            }
        }
        // A set that loses members loses its marker in the same batch:
        // the next apply reads it whole (`core::ruleset::nftmark`).
        let losing: Vec<&str> = change
            .iter()
            .filter(|c| c.flush || !c.dels.is_empty())
            .map(|c| c.set.as_str())
            .collect();
        let stale: Vec<String> = match losing.is_empty() {
            true => Vec::new(),
            false => super::nftdump::marks(TABLE)
                .map_err(|e| fail(e.to_string()))?
                .unwrap_or_default()
                .into_keys()
                .filter(|s| losing.contains(&s.as_str()))
                .map(|s| loaded_set(&s))
                .collect(),
        };
        for m in &stale {
            lists.push(Elements {
                set: m,
                verb: Verb::DropSet,
                interval: false,
                items: &[],
            });
        }
        let mut sock = super::netlink::Netfilter::open().map_err(|e| fail(e.to_string()))?;
        super::nftlink::run_batch(&mut sock, TABLE, &lists).map_err(|e| fail(e.to_string()))
    }

    /// `ops` on roles as ops on the kernel's sets (`kinds`): an address in
    /// the role's set, a network in its interval set.
    fn routed(ops: &[SetOp], kinds: &BTreeMap<String, bool>) -> StepResult<Vec<SetOp>> {
        ops.iter()
            .map(|op| {
                let (set, net) = match op {
                    SetOp::Add { set, net, .. } | SetOp::Del { set, net } => (set, net),
                };
                let (name, _) =
                    super::nftlink::route(kinds, checked(set)?, net).map_err(|e| StepError {
                        step: format!("changing set {set}"),
                        detail: e.0,
                    })?;
                Ok(match op {
                    SetOp::Add { timeout, .. } => SetOp::Add {
                        set: name,
                        net: *net,
                        timeout: *timeout,
                    },
                    SetOp::Del { .. } => SetOp::Del {
                        set: name,
                        net: *net,
                    },
                })
            })
            .collect()
    }

    /// The members each kernel set named in `ops` holds now (a set that
    /// cannot be read holds none: the transaction then says what is wrong
    /// with it), read in one pass.
    fn present(&self, ops: &[SetOp]) -> BTreeMap<String, BTreeSet<IpNet>> {
        let mut names: Vec<&str> = Vec::new();
        for op in ops {
            let (SetOp::Add { set, .. } | SetOp::Del { set, .. }) = op;
            if !names.contains(&set.as_str()) {
                names.push(set);
            }
        }
        let mut present: BTreeMap<String, BTreeSet<IpNet>> = names
            .iter()
            .map(|n| (n.to_string(), BTreeSet::new()))
            .collect();
        for s in dumped(Some(&names)).ok().flatten().unwrap_or_default() {
            present.insert(s.name, s.members.iter().map(|(n, _)| *n).collect());
        }
        present
    }

    /// Plan `ops` on the kernel as it is now, as one batch.
    fn planned(&self, ops: &[SetOp]) -> StepResult<Change> {
        let kinds = self.kinds()?;
        let ops = Self::routed(ops, &kinds)?;
        let mut change = plan_change(&ops, &self.present(&ops))?;
        for c in &mut change {
            c.interval = kinds.get(&c.set) == Some(&true);
        }
        Ok(change)
    }
}

/// The nftables backend's set store: fwctl's sets in `table inet fwctl`,
/// read and changed over netlink, each change one transaction. A role is
/// its set of addresses and its interval set of networks (`blacklist` and
/// `blacklist/net`): listed, counted and changed as one.
impl SetStore for Nft {
    fn heads(&mut self) -> StepResult<BTreeMap<String, SetHead>> {
        let sets = self.sets()?;
        let names: BTreeSet<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        let mut out: BTreeMap<String, SetHead> = BTreeMap::new();
        for s in &sets {
            let mut head = s.head();
            let role = s
                .name
                .strip_suffix(NET_SUFFIX)
                .filter(|r| names.contains(r))
                .unwrap_or(&s.name);
            if let Some(have) = out.get_mut(role) {
                have.entries += head.entries;
                have.holds = Holds::Networks;
                continue;
            }
            if role != s.name {
                head.holds = Holds::Networks;
            }
            out.insert(role.to_string(), head);
        }
        Ok(out)
    }

    fn members(&mut self, set: &str) -> StepResult<Vec<Member>> {
        let mut out: Vec<Member> = self
            .role(set)?
            .iter()
            .flat_map(NftSet::typed_members)
            .collect();
        out.sort_by_key(|m| m.net);
        Ok(out)
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
        let first = self.batch(&self.planned(ops)?);
        if first.is_ok() {
            return first;
        }
        self.batch(&self.planned(ops)?)
    }

    fn refill(&mut self, fills: &[Refill]) -> StepResult<()> {
        if fills.is_empty() {
            return Ok(());
        }
        self.batch(&plan_refill(fills, &self.kinds()?)?)
    }
}

/// fwctl's sets (or those named) with their members, over netlink.
fn dumped(only: Option<&[&str]>) -> StepResult<Option<Vec<NftSet>>> {
    super::nftdump::sets(TABLE, only).map_err(read_failed)
}

fn read_failed(e: std::io::Error) -> StepError {
    StepError {
        step: format!("reading table {FAMILY} {TABLE}'s sets (netlink)"),
        detail: e.to_string(),
    }
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

/// The chains in `nft -j list chains` output: (family, table, name).
pub fn parse_chains(json: &str) -> Vec<(String, String, String)> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let field = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).map(String::from);
    objects(&v, "chain")
        .filter_map(|c| Some((field(c, "family")?, field(c, "table")?, field(c, "name")?)))
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
    fn a_refill_flushes_and_fills_each_kernel_set_in_one_batch() {
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
        let kinds = BTreeMap::from([
            ("feed-drop".to_string(), false),
            ("feed-drop/net".to_string(), true),
            ("feed-drop_v6".to_string(), false),
            ("feed-drop_v6/net".to_string(), true),
        ]);
        let c = plan_refill(&fills, &kinds).unwrap();
        let shown: Vec<(&str, bool, bool, Vec<String>)> = c
            .iter()
            .map(|c| {
                (
                    c.set.as_str(),
                    c.interval,
                    c.flush,
                    c.adds.iter().map(|(n, _)| n.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "feed-drop",
                    false,
                    true,
                    vec!["198.51.100.7/32".to_string()]
                ),
                (
                    "feed-drop/net",
                    true,
                    true,
                    vec!["203.0.113.0/24".to_string()]
                ),
                ("feed-drop_v6", false, true, vec![]),
                ("feed-drop_v6/net", true, true, vec![]),
            ]
        );
        // A table from before the split: its one interval set takes both.
        let old = BTreeMap::from([("feed-drop".to_string(), true)]);
        let c = plan_refill(&fills[..1], &old).unwrap();
        assert_eq!(c.len(), 1);
        assert!(c[0].interval && c[0].adds.len() == 2);
        // Networks into a set of addresses only: refused, the fix named.
        let hash = BTreeMap::from([("feed-drop".to_string(), false)]);
        let e = plan_refill(&fills[..1], &hash).unwrap_err();
        assert!(e.detail.contains("fwctl apply"), "{e}");
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
        let s = |x: &str| x.to_string();
        assert_eq!(
            parse_chains(
                r#"{"nftables": [{"metainfo": {}}, {"chain": {"family": "inet", "table": "fwctl", "name": "input", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 2}}]}"#,
            ),
            [
                (s("inet"), s("fwctl"), s("input")),
                (s("ip"), s("filter"), s("DOCKER-USER"))
            ]
        );
    }
}
