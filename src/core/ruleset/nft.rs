//! The same ruleset as `nft -f` text: one `table inet fwctl` holding every
//! set and chain, installed and replaced in one transaction (pure).
//!
//! The [`Plan`] is rendered as it is for iptables, rule for rule and in the
//! same order, so the two backends cannot drift apart: each family keeps
//! its own chains (the LOG prefixes differ, `IPTABLES-` / `IP6TABLES-`), and
//! one base chain on the input hook sends each packet to its family's.
//! `log prefix` goes through the same kernel logger as `-j LOG`, so the
//! lines rsyslog writes and `scan` reads are byte for byte the same.
//!
//! Sets: per role and family, named as the ipsets are (`blacklist`,
//! `blacklist_v6`), a hash set of single addresses (`flags timeout`); a
//! role that holds networks too (ipset `hash:net`: trusted, blacklist,
//! feeds) has a second, interval set beside it for its networks, named
//! `blacklist/net` ([`net_set`]: '/' is in no name fwctl accepts, so it
//! cannot clash). The kernel loads a hash set element about twice as fast
//! as an interval (two elements a network): most members are single
//! addresses. Reading a set back is slow either way (the dump's walk
//! starts over for every 32 KB batch, 1-4 s for 100 000 members), so a
//! re-apply leaves unread a set whose config members did not change
//! ([`super::nftmark`]).
//! A rule that matches the role matches both sets. Members without a
//! timeout belong to the config. hashlimit becomes a dynamic set per
//! limiter and family updated with `limit rate`.
//!
//! The raw part ([`Table::raw`]) becomes `FWCTL-RAW` / `FWCTL6-RAW`, sent
//! to from a base chain `prerouting` at priority raw: banned sources are
//! dropped before conntrack, as the iptables raw table does. Its drop rules
//! carry a `counter` (iptables counts every rule; nft only when asked), so
//! `nft list chain inet fwctl FWCTL-RAW` shows what the bans dropped.
//!
//! [`render_install`] is the whole table from scratch: `table` (create if
//! absent), `delete table`, then the table: nft runs a file as one
//! transaction, so a failing line changes nothing, and no other table
//! (firewalld's, Docker's) is ever named. `apply` sends the elements over
//! netlink and keeps the sets that are there (`sys::nftfw`), with
//! [`render_body`] and [`render_set`] as its parts.

use super::{nftmark, Current, Match, Plan, Rule, SetKind, Table, Target};
use crate::core::config::Limit;
use crate::units::addr::Family;
use crate::units::names::{ByteRate, RateUnit};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The one table fwctl owns on an nftables host.
pub const TABLE: &str = "fwctl";
/// Its family: both IP families in one table.
pub const FAMILY: &str = "inet";

/// The interval set of networks beside a role's set of addresses
/// (`blacklist/net`).
pub fn net_set(name: &str) -> String {
    format!("{name}{NET_SUFFIX}")
}

/// What [`net_set`] appends.
pub const NET_SUFFIX: &str = "/net";

/// Whether `net` is one address (a member of the hash set), not a network.
pub fn is_address(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

pub use super::nftmark::KernelSet;

/// What `apply` runs to bring fwctl's table from what the kernel has to
/// `plan`, in order ([`plan_install`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Install {
    /// Whether the table is new (undoing the install takes it out).
    pub new_table: bool,
    /// `nft -f` declaring the sets that are new, empty: no rule names them
    /// yet, so this changes nothing a packet meets. None when none is new.
    pub skeleton: Option<String>,
    /// The new sets (undoing the install deletes them).
    pub new_sets: Vec<String>,
    /// Their members, sent over netlink in one batch: the kernel takes an
    /// element over netlink in half the time `nft -f` text takes.
    pub fill: Vec<KernelSet>,
    /// The one `nft -f` transaction that puts the rules in: every rule
    /// flushed, the chains and sets no longer wanted (and the meters)
    /// deleted, the members of the sets kept changed to the plan's (only
    /// the difference), a set whose kind changed made again with its
    /// members, then the meters and chains declared and their rules added.
    pub main: String,
}

/// New sets holding at most this many members in all go in with the rules'
/// transaction as text; more are filled over netlink first.
pub const INLINE_MAX: usize = 2_000;

/// The kernel's sets of fwctl's table, as read.
pub struct Kernel<'a> {
    pub sets: &'a [KernelSet],
    pub chains: &'a [String],
    /// Sets kept as they are, members not read ([`nftmark::unread`]).
    pub unread: &'a BTreeSet<String>,
    /// The markers there: set → comment ([`nftmark`]).
    pub marks: &'a BTreeMap<String, String>,
}

/// The steps that install `plan` over `kernel` (None: no table), `now`
/// carrying the bans to keep (see [`kernel_sets`]). A set the kernel holds
/// as the plan wants it is kept with its elements: bans keep their own
/// time, and only the difference to the plan's members is sent.
pub fn plan_install(plan: &Plan, now: &Current, kernel: Option<Kernel>) -> Install {
    let want = kernel_sets(plan, now);
    let mut out = Install {
        new_table: kernel.is_none(),
        ..Install::default()
    };
    let none = (BTreeSet::new(), BTreeMap::new());
    let (have, chains, unread, marks) = match &kernel {
        Some(k) => (k.sets, k.chains, k.unread, k.marks),
        None => (&[][..], &[][..], &none.0, &none.1),
    };
    // The markers go again and are written anew with the rules.
    let mut marked = String::new();
    let mut skeleton = String::new();
    let mut recreated = String::new();
    let mut diff = String::new();
    let mut main = format!("table {FAMILY} {TABLE}\nflush table {FAMILY} {TABLE}\n");
    let chains_now = chain_names(plan, now);
    for c in chains.iter().filter(|c| !chains_now.contains(c)) {
        writeln!(main, "delete chain {FAMILY} {TABLE} {c}").expect("write");
    }
    for set in marks.keys() {
        let m = nftmark::loaded_set(set);
        writeln!(main, "delete set {FAMILY} {TABLE} {m}").expect("write");
    }
    for h in have {
        let kept = want.iter().any(|w| w.same_kind(h));
        if !kept {
            // Gone from the plan, a kind changed (made again below), or a
            // meter (declared afresh, as a new table would have it).
            writeln!(main, "delete set {FAMILY} {TABLE} {}", h.name).expect("write");
        }
    }
    // New sets with few members in all are declared with them in the
    // rules' transaction: one nft run fewer, as fast as a netlink batch.
    let new_members: usize = want
        .iter()
        .filter(|w| !have.iter().any(|h| h.name == w.name))
        .map(|w| w.members.len())
        .sum();
    let inline = new_members <= INLINE_MAX;
    // By value: a new set's members move into `fill` (100 000 of them are
    // not copied again).
    for w in want {
        let comment = match marks.get(&w.name) {
            Some(c) if unread.contains(&w.name) => c.clone(),
            _ => nftmark::comment(&w),
        };
        writeln!(
            marked,
            "\tset {} {{\n\t\ttype inet_service\n\t\tcomment \"{comment}\"\n\t}}",
            nftmark::loaded_set(&w.name)
        )
        .expect("write");
        match have.iter().find(|h| h.name == w.name) {
            Some(h) if w.same_kind(h) && unread.contains(&w.name) => {}
            Some(h) if w.same_kind(h) => element_diff(&mut diff, &w, h),
            Some(_) => render_set(&mut recreated, &w, true),
            None if inline => render_set(&mut recreated, &w, true),
            None => {
                render_set(&mut skeleton, &w, false);
                out.new_sets.push(w.name.clone());
                if !w.members.is_empty() {
                    out.fill.push(w);
                }
            }
        }
    }
    if !skeleton.is_empty() {
        out.skeleton = Some(format!("table {FAMILY} {TABLE} {{\n{skeleton}}}\n"));
    }
    main.push_str(&diff);
    write!(
        main,
        "table {FAMILY} {TABLE} {{\n{recreated}{}{marked}}}\n",
        render_body(plan, now)
    )
    .expect("write");
    out.main = main;
    out
}

/// `nft -f` input that takes out what the steps' skeleton put in (the new
/// table, or the new sets), after a later step failed; empty when it put
/// nothing in.
pub fn render_undo(steps: &Install) -> String {
    if steps.skeleton.is_none() {
        return String::new();
    }
    if steps.new_table {
        return render_removal();
    }
    steps
        .new_sets
        .iter()
        .map(|s| format!("delete set {FAMILY} {TABLE} {s}\n"))
        .collect()
}

/// The `delete element` / `add element` commands that make `have`'s
/// members `want`'s: a config member there with a timeout is made one
/// without; a ban there stays as it is (its own time left); a member the
/// plan no longer has goes.
fn element_diff(out: &mut String, want: &KernelSet, have: &KernelSet) {
    let there: BTreeMap<IpNet, Option<u32>> = have.members.iter().copied().collect();
    let wanted: BTreeMap<IpNet, Option<u32>> = want.members.iter().copied().collect();
    let mut dels: Vec<(IpNet, Option<u32>)> = Vec::new();
    let mut adds: Vec<(IpNet, Option<u32>)> = Vec::new();
    for (n, left) in &there {
        match wanted.get(n) {
            None => dels.push((*n, None)),
            Some(None) if left.is_some() => {
                dels.push((*n, None));
                adds.push((*n, None));
            }
            Some(_) => {}
        }
    }
    for (n, t) in &wanted {
        if !there.contains_key(n) {
            adds.push((*n, *t));
        }
    }
    for (verb, items) in [("delete", &dels), ("add", &adds)] {
        if items.is_empty() {
            continue;
        }
        write!(out, "{verb} element {FAMILY} {TABLE} {} {{ ", want.name).expect("write");
        for (i, (n, t)) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&crate::units::addr::member(n));
            if let Some(secs) = t {
                write!(out, " timeout {secs}s").expect("write");
            }
        }
        out.push_str(" }\n");
    }
}

/// The kernel sets of `plan`'s sets, holding the config's members and the
/// bans `now` carries (a member inside another is left out, as an
/// interval set would refuse it; the config's wins over a ban of the same).
/// A `hash:ip` role is one hash set; a `hash:net` role is the hash set and
/// its [`net_set`].
pub fn kernel_sets(plan: &Plan, now: &Current) -> Vec<KernelSet> {
    let mut out = Vec::new();
    for set in &plan.sets {
        let mut members: Vec<(IpNet, Option<u32>)> =
            set.members.iter().map(|n| (n.trunc(), None)).collect();
        if let Some(carried) = now.carried.get(&set.name) {
            for (m, secs) in carried {
                if let Ok(n) = crate::units::addr::parse_addr(m) {
                    members.push((n.trunc(), Some(*secs)));
                }
            }
        }
        let (addrs, nets): (Vec<_>, Vec<_>) = uncovered(members)
            .into_iter()
            .partition(|(n, _)| is_address(n));
        out.push(KernelSet {
            name: set.name.clone(),
            family: set.family,
            interval: false,
            timeout: true,
            size: set.maxelem,
            members: addrs,
        });
        if set.kind == SetKind::HashNet {
            out.push(KernelSet {
                name: net_set(&set.name),
                family: set.family,
                interval: true,
                timeout: true,
                size: set.maxelem,
                members: nets,
            });
        }
    }
    out
}

/// A chain's name in the table: the iptables name for IPv4, `FWCTL6-` for
/// IPv6 (`FWCTL-BLOCK`, `FWCTL6-BLOCK`).
pub fn chain_name(name: &str, family: Family) -> String {
    match family {
        Family::V4 => name.to_string(),
        Family::V6 => name.replacen("FWCTL-", "FWCTL6-", 1),
    }
}

/// A limiter's dynamic set for one family (`fwctl-log-bl`, `fwctl-log-bl_v6`).
fn meter_name(name: &str, family: Family) -> String {
    match family {
        Family::V4 => name.to_string(),
        Family::V6 => format!("{name}_v6"),
    }
}

fn addr_type(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

fn saddr(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip saddr",
        Family::V6 => "ip6 saddr",
    }
}

fn unit(u: RateUnit) -> &'static str {
    match u {
        RateUnit::Second => "second",
        RateUnit::Minute => "minute",
        RateUnit::Hour => "hour",
        RateUnit::Day => "day",
    }
}

fn unit_secs(u: RateUnit) -> u64 {
    match u {
        RateUnit::Second => 1,
        RateUnit::Minute => 60,
        RateUnit::Hour => 3_600,
        RateUnit::Day => 86_400,
    }
}

/// How long a source's bucket outlives its last packet: long enough to
/// have filled up again (so forgetting it changes nothing), at least a
/// minute so that a busy meter is not rewritten on every packet.
fn meter_timeout(limit: Limit) -> u64 {
    let period = unit_secs(limit.rate.per);
    let refill =
        (u64::from(limit.burst.max(1)) * period).div_ceil(u64::from(limit.rate.count.max(1)));
    refill.max(60)
}

/// nft's byte-rate form: bytes, kbytes or mbytes a second (1024-based,
/// as iptables' kb/s and mb/s).
fn byte_rate(r: ByteRate) -> String {
    let b = r.bytes_per_second();
    if b.is_multiple_of(1 << 20) {
        format!("{} mbytes/second", b >> 20)
    } else if b.is_multiple_of(1 << 10) {
        format!("{} kbytes/second", b >> 10)
    } else {
        format!("{b} bytes/second")
    }
}

/// The dynamic sets a table's limiters need: name → (family, timeout).
fn meters(table: &Table) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let forward = table.forward.iter().flat_map(|f| &f.chains);
    for r in table
        .chains
        .iter()
        .chain([&table.raw])
        .chain(forward)
        .flat_map(|c| &c.rules)
    {
        for m in &r.matches {
            match m {
                Match::HashLimit { name, limit } => {
                    out.insert(meter_name(name, table.family), meter_timeout(*limit));
                }
                Match::BytesAbove { name, .. } => {
                    out.insert(meter_name(name, table.family), 60);
                }
                _ => {}
            }
        }
    }
    out
}

/// One rule as nft statements: one line, or two where it matches a role
/// whose networks are in a [`net_set`] of `split`: the first for the
/// addresses, the second for the networks. A source in both meets the
/// second only when its verdict is final (accept, drop, return, goto):
/// otherwise the second asks that it is not in the first, so a source is
/// logged (or jumped) once.
pub fn render_rules(rule: &Rule, family: Family, split: &BTreeSet<String>) -> Vec<String> {
    let Some(name) = rule.matches.iter().find_map(|m| match m {
        Match::SrcSet(n) if split.contains(n) => Some(n),
        _ => None,
    }) else {
        return vec![render_rule(rule, family)];
    };
    let last = matches!(
        rule.target,
        Target::Accept | Target::Drop | Target::Return | Target::Goto(_)
    );
    let addrs = render_rule(rule, family);
    let mut nets = String::new();
    let mut rest = rule.clone();
    let at = rest
        .matches
        .iter()
        .position(|m| matches!(m, Match::SrcSet(n) if n == name))
        .expect("found above");
    rest.matches.remove(at);
    let (before, after) = rest.matches.split_at(at);
    let part = |matches: &[Match]| {
        let r = Rule {
            matches: matches.to_vec(),
            target: Target::Accept,
        };
        let t = render_rule(&r, family);
        t[..t.len() - "accept".len()].to_string()
    };
    nets.push_str(&part(before));
    write!(nets, "{} @{}", saddr(family), net_set(name)).expect("write");
    if !last {
        write!(nets, " {} != @{name}", saddr(family)).expect("write");
    }
    nets.push(' ');
    nets.push_str(&render_rule(
        &Rule {
            matches: after.to_vec(),
            target: rule.target.clone(),
        },
        family,
    ));
    vec![addrs, nets]
}

/// One rule as nft statements.
pub fn render_rule(rule: &Rule, family: Family) -> String {
    let mut s = String::new();
    for m in &rule.matches {
        if !s.is_empty() {
            s.push(' ');
        }
        match m {
            Match::InIface(i) => write!(s, "iifname \"{i}\""),
            Match::CtState(st) => write!(s, "ct state {}", st.to_ascii_lowercase()),
            Match::CtDir(d) => write!(s, "ct direction {}", d.to_ascii_lowercase()),
            Match::SrcSet(name) => write!(s, "{} @{name}", saddr(family)),
            Match::Port(proto, p) => {
                if p.first == p.last {
                    write!(s, "{proto} dport {}", p.first)
                } else {
                    write!(s, "{proto} dport {}-{}", p.first, p.last)
                }
            }
            Match::Icmp(t) => write!(s, "icmp type {t}"),
            Match::Icmp6(t) => write!(s, "icmpv6 type {t}"),
            Match::HashLimit { name, limit } => write!(
                s,
                "update @{} {{ {} limit rate {}/{} burst {} packets }}",
                meter_name(name, family),
                saddr(family),
                limit.rate.count,
                unit(limit.rate.per),
                limit.burst
            ),
            Match::BytesAbove { name, rate } => write!(
                s,
                "update @{} {{ {} limit rate over {} }}",
                meter_name(name, family),
                saddr(family),
                byte_rate(*rate)
            ),
            // The forward chain's matches, and the raw chain's SYN log.
            // DNAT is a status bit in nft, not a state.
            Match::NotCtState("DNAT") => write!(s, "ct status & dnat == 0"),
            Match::NotCtState(st) => write!(s, "ct state != {}", st.to_ascii_lowercase()),
            Match::OrigPort(proto, p) if p.first == p.last => {
                write!(s, "meta l4proto {proto} ct original proto-dst {}", p.first)
            }
            Match::OrigPort(proto, p) => write!(
                s,
                "meta l4proto {proto} ct original proto-dst {}-{}",
                p.first, p.last
            ),
            Match::Syn => write!(s, "tcp flags & (fin|syn|rst|ack) == syn"),
            Match::DstLocal => write!(s, "fib daddr type local"),
            Match::NotSyn => write!(s, "tcp flags & (fin|syn|rst|ack) != syn"),
            Match::Limit { per_second, burst } => {
                write!(s, "limit rate {per_second}/second burst {burst} packets")
            }
            Match::NotMarked => write!(
                s,
                "meta mark & {:#010x} != {:#010x}",
                super::forward::PRELOGGED,
                super::forward::PRELOGGED
            ),
        }
        .expect("write to String");
    }
    if !s.is_empty() {
        s.push(' ');
    }
    match &rule.target {
        Target::Accept => s.push_str("accept"),
        Target::Drop => s.push_str("drop"),
        Target::Return => s.push_str("return"),
        Target::Jump(c) => write!(s, "jump {}", chain_name(c, family)).expect("write"),
        Target::Goto(c) => write!(s, "goto {}", chain_name(c, family)).expect("write"),
        // LogPrefix has no quotes or backslashes, so plain quoting is safe.
        Target::Log(p) => write!(s, "log prefix \"{}\"", p.as_str()).expect("write"),
        Target::Mark => write!(
            s,
            "meta mark set meta mark | {:#010x}",
            super::forward::PRELOGGED
        )
        .expect("write"),
        Target::Nflog { group, size } => {
            write!(s, "log group {group} snaplen {size}").expect("write")
        }
    }
    s
}

/// Networks that another member of the same list already covers are left
/// out: an interval set refuses overlapping elements.
pub fn uncovered(members: Vec<(IpNet, Option<u32>)>) -> Vec<(IpNet, Option<u32>)> {
    let mut sorted = members;
    // By first address, the wider first where two start alike: a cover then
    // always comes before what it covers, and since two CIDR networks are
    // either nested or apart, a covered one is covered by the last one
    // kept (one pass, not a search: 100 000 feed members load in
    // milliseconds, not the minutes a pairwise check took).
    sorted.sort_by_key(|(n, _)| (n.network(), n.prefix_len()));
    let mut kept: Vec<(IpNet, Option<u32>)> = Vec::with_capacity(sorted.len());
    for (n, t) in sorted {
        if !kept.last().is_some_and(|(k, _)| k.contains(&n)) {
            kept.push((n, t));
        }
    }
    kept
}

/// One set's declaration (with its members when `elements`).
pub fn render_set(out: &mut String, set: &KernelSet, elements: bool) {
    let flags = if set.interval {
        "interval, timeout"
    } else {
        "timeout"
    };
    writeln!(
        out,
        "\tset {} {{\n\t\ttype {}\n\t\tflags {flags}\n\t\tsize {}",
        set.name,
        addr_type(set.family),
        set.size
    )
    .expect("write");
    if elements && !set.members.is_empty() {
        out.push_str("\t\telements = {");
        for (i, (n, t)) in set.members.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ",\n\t\t\t     " });
            out.push_str(&crate::units::addr::member(n));
            if let Some(secs) = t {
                write!(out, " timeout {secs}s").expect("write");
            }
        }
        out.push_str(" }\n");
    }
    out.push_str("\t}\n");
}

fn render_chains(out: &mut String, table: &Table, split: &BTreeSet<String>) {
    let forward = table.forward.iter().flat_map(|f| &f.chains);
    for c in table.chains.iter().chain(forward) {
        writeln!(out, "\tchain {} {{", chain_name(c.name, table.family)).expect("write");
        for r in &c.rules {
            for line in render_rules(r, table.family, split) {
                writeln!(out, "\t\t{line}").expect("write");
            }
        }
        out.push_str("\t}\n");
    }
}

/// The raw chain of one family; its drops counted.
fn render_raw_chain(out: &mut String, table: &Table, split: &BTreeSet<String>) {
    writeln!(
        out,
        "\tchain {} {{",
        chain_name(table.raw.name, table.family)
    )
    .expect("write");
    for r in &table.raw.rules {
        for mut line in render_rules(r, table.family, split) {
            if r.target == Target::Drop {
                line.truncate(line.len() - "drop".len());
                line.push_str("counter drop");
            }
            writeln!(out, "\t\t{line}").expect("write");
        }
    }
    out.push_str("\t}\n");
}

/// The roles of `plan` that have a [`net_set`].
fn split_sets(plan: &Plan) -> BTreeSet<String> {
    plan.sets
        .iter()
        .filter(|s| s.kind == SetKind::HashNet)
        .map(|s| s.name.clone())
        .collect()
}

/// The table's contents: sets, meters, chains and the base chain.
pub fn render_table(plan: &Plan, now: &Current) -> String {
    let mut out = format!("table {FAMILY} {TABLE} {{\n");
    for set in kernel_sets(plan, now) {
        render_set(&mut out, &set, true);
    }
    out.push_str(&render_body(plan, now));
    out.push_str("}\n");
    out
}

/// The dynamic sets (meters) and the chains of the table, without its
/// sets: what `apply` declares again on every install (the sets it keeps).
pub fn render_body(plan: &Plan, now: &Current) -> String {
    // "auto" decided by Docker's DOCKER-USER (in iptables-nft's tables),
    // which the backend's adapter looked for.
    let plan = &super::resolve(plan, &now.v4, &now.v6);
    let split = split_sets(plan);
    let mut out = String::new();
    for t in [&plan.v4, &plan.v6] {
        for (name, timeout) in meters(t) {
            writeln!(
                out,
                "\tset {name} {{\n\t\ttype {}\n\t\tsize 65535\n\t\tflags dynamic, timeout\n\t\ttimeout {timeout}s\n\t}}",
                addr_type(t.family)
            )
            .expect("write");
        }
    }
    render_chains(&mut out, &plan.v4, &split);
    render_chains(&mut out, &plan.v6, &split);
    render_raw_chain(&mut out, &plan.v4, &split);
    render_raw_chain(&mut out, &plan.v6, &split);
    let policy = if plan.v4.drop_policy {
        "drop"
    } else {
        "accept"
    };
    writeln!(
        out,
        "\tchain input {{\n\t\ttype filter hook input priority filter; policy {policy};\n\
         \t\tmeta nfproto ipv4 jump {}\n\t\tmeta nfproto ipv6 jump {}\n\t}}",
        chain_name(super::MAIN_CHAIN, Family::V4),
        chain_name(super::MAIN_CHAIN, Family::V6)
    )
    .expect("write");
    // Priority raw (-300): ahead of conntrack (-200), as the raw table is.
    writeln!(
        out,
        "\tchain prerouting {{\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tmeta nfproto ipv4 jump {}\n\t\tmeta nfproto ipv6 jump {}\n\t}}",
        chain_name(super::RAW_CHAIN, Family::V4),
        chain_name(super::RAW_CHAIN, Family::V6)
    )
    .expect("write");
    // `[forward]`: Docker writes its rules through iptables(-nft) into
    // tables of its own, so there is no DOCKER-USER to jump from here: a
    // base chain on the forward hook, just ahead of theirs (priority
    // filter, 0), whose drop is final and whose accept (the chain's end,
    // after a return) lets Docker's chains decide as before.
    let hooked: Vec<Family> = [&plan.v4, &plan.v6]
        .into_iter()
        .filter(|t| t.forward.as_ref().is_some_and(|f| f.hook.is_some()))
        .map(|t| t.family)
        .collect();
    if !hooked.is_empty() {
        out.push_str(
            "\tchain forward {\n\t\ttype filter hook forward priority filter - 1; policy accept;\n",
        );
        for family in hooked {
            let proto = if family.is_v6() { "ipv6" } else { "ipv4" };
            writeln!(
                out,
                "\t\tmeta nfproto {proto} jump {}",
                chain_name(super::forward::CHAIN, family)
            )
            .expect("write");
        }
        out.push_str("\t}\n");
    }
    out
}

/// The names of the dynamic sets (meters) [`render_body`] declares.
pub fn meter_names(plan: &Plan) -> Vec<String> {
    [&plan.v4, &plan.v6]
        .into_iter()
        .flat_map(|t| meters(t).into_keys())
        .collect()
}

/// The chains [`render_body`] declares, with the base chains.
pub fn chain_names(plan: &Plan, now: &Current) -> Vec<String> {
    let plan = &super::resolve(plan, &now.v4, &now.v6);
    let mut out = Vec::new();
    for t in [&plan.v4, &plan.v6] {
        let forward = t.forward.iter().flat_map(|f| &f.chains);
        for c in t.chains.iter().chain(forward) {
            out.push(chain_name(c.name, t.family));
        }
    }
    for t in [&plan.v4, &plan.v6] {
        out.push(chain_name(t.raw.name, t.family));
    }
    out.extend(["input".to_string(), "prerouting".to_string()]);
    let forward = [&plan.v4, &plan.v6]
        .iter()
        .any(|t| t.forward.as_ref().is_some_and(|f| f.hook.is_some()));
    if forward {
        out.push("forward".to_string());
    }
    out
}

/// `nft -f` input that installs or replaces fwctl's table in one
/// transaction, carrying the bans of `now` with their time left.
pub fn render_install(plan: &Plan, now: &Current) -> String {
    format!(
        "table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n{}",
        render_table(plan, now)
    )
}

/// `nft -f` input that takes fwctl's table out (and nothing else).
pub fn render_removal() -> String {
    format!("table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
}

/// `nft -f` input that adds `members` (address, seconds left; None: no
/// timeout) to one of fwctl's sets, leaving out those inside another of
/// them (an interval set refuses overlapping elements). Empty when none.
pub fn render_add_elements(set: &str, members: Vec<(IpNet, Option<u32>)>) -> String {
    let members = uncovered(members);
    if members.is_empty() {
        return String::new();
    }
    let list: Vec<String> = members
        .iter()
        .map(|(n, t)| match t {
            Some(secs) => format!("{} timeout {secs}s", crate::units::addr::member(n)),
            None => crate::units::addr::member(n),
        })
        .collect();
    format!(
        "add element {FAMILY} {TABLE} {set} {{ {} }}\n",
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_members_are_left_out_in_one_pass() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        let got = uncovered(vec![
            (n("192.0.2.7/32"), Some(60)),
            (n("198.51.100.0/24"), None),
            (n("192.0.2.0/28"), None),
            (n("198.51.100.0/25"), Some(5)),
            (n("192.0.2.64/26"), None),
            (n("192.0.2.70/32"), None),
            (n("2001:db8::/48"), None),
            (n("2001:db8::1/128"), Some(9)),
            (n("203.0.113.9/32"), Some(1)),
        ]);
        let shown: Vec<String> = got.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            shown,
            [
                "192.0.2.0/28",
                "192.0.2.64/26",
                "198.51.100.0/24",
                "203.0.113.9/32",
                "2001:db8::/48"
            ]
        );
        // 100 000 apart members: linear, all kept.
        let many: Vec<(IpNet, Option<u32>)> = (0..100_000u32)
            .map(|i| {
                (
                    IpNet::new(
                        std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i) << 64))
                            .into(),
                        64,
                    )
                    .unwrap(),
                    None,
                )
            })
            .collect();
        assert_eq!(uncovered(many).len(), 100_000);
    }
    use crate::core::config::Config;
    use crate::core::ruleset::build;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("/t.toml"), &|_| Ok(String::new())).unwrap()
    }

    fn text(c: &str) -> String {
        render_install(&build(&cfg(c)), &Current::default())
    }

    #[test]
    fn the_input_path_keeps_iptables_order_per_family() {
        let t = text("[[service]]\nname = \"ssh\"\nport = 22\nrate = \"10/minute\"\n");
        let pos = |needle: &str| {
            t.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing in\n{t}"))
        };
        assert!(
            pos("\tchain FWCTL-INPUT {\n\t\tiifname \"lo\" accept\n")
                < pos("ct state invalid drop")
        );
        assert!(pos("ct state invalid drop") < pos("ct state related,established accept"));
        assert!(
            pos("ip saddr @whitelist jump FWCTL-WHITELIST") < pos("ip saddr @throttle-hard jump")
        );
        assert!(
            !t.contains("ip saddr @blacklist jump"),
            "dropped at priority raw"
        );
        assert!(pos("ip saddr @throttle-soft jump") < pos("tcp dport 22 update @fwctl-svc-0 { ip saddr limit rate 10/minute burst 5 packets } jump FWCTL-ALLOW"));
        assert!(t.contains(
            "\tchain FWCTL6-INPUT {\n\t\tiifname \"lo\" accept\n\t\ticmpv6 type 1 accept\n"
        ));
        assert!(t.contains(
            "\tchain FWCTL6-RAW {\n\t\tiifname \"lo\" accept\n\t\ticmpv6 type 1 accept\n"
        ));
        assert!(t.contains("\t\tip6 saddr @blacklist_v6 counter drop\n"));
        // Each role matched in its two sets, a source logged once.
        assert!(t.contains(
            "\tchain FWCTL-RAW {\n\t\tiifname \"lo\" accept\n\t\tip saddr @whitelist accept\n\
             \t\tip saddr @whitelist/net accept\n\
             \t\tip saddr @blacklist update @fwctl-log-bl { ip saddr limit rate 10/second burst 20 packets } log prefix \"IPTABLES-BLOCKED: \"\n\
             \t\tip saddr @blacklist/net ip saddr != @blacklist update @fwctl-log-bl { ip saddr limit rate 10/second burst 20 packets } log prefix \"IPTABLES-BLOCKED: \"\n\
             \t\tip saddr @blacklist counter drop\n\
             \t\tip saddr @blacklist/net counter drop\n\t}\n"
        ), "{t}");
        assert!(t.contains("\t\tip6 saddr @blacklist_v6/net counter drop\n"));
        assert!(t.contains(
            "\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tmeta nfproto ipv4 jump FWCTL-RAW\n\t\tmeta nfproto ipv6 jump FWCTL6-RAW\n\t}\n"
        ));
        assert!(
            t.contains("\tset fwctl-log-bl {\n"),
            "the raw chain's limiter"
        );
        assert!(t.contains("log prefix \"IPTABLES-BLOCKED: \""));
        assert!(t.contains("log prefix \"IP6TABLES-BLOCKED: \""));
        assert!(t.contains("type filter hook input priority filter; policy drop;"));
        assert!(t.starts_with("table inet fwctl\ndelete table inet fwctl\ntable inet fwctl {\n"));
    }

    #[test]
    fn sets_hold_config_members_and_carried_bans_without_overlap() {
        let plan = build(&cfg(
            "[trusted]\nnetworks = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n[blacklist]\nentries = [\"203.0.113.0/24\", \"203.0.113.7\"]\n",
        ));
        let mut now = Current::default();
        now.carried.insert(
            "blacklist".into(),
            vec![("198.51.100.9".into(), 300), ("203.0.113.9".into(), 50)],
        );
        let t = render_install(&plan, &now);
        // Addresses in a hash set, networks in the interval set beside it.
        assert!(t.contains("\tset whitelist {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\tsize 262144\n\t}\n\
            \tset whitelist/net {\n\t\ttype ipv4_addr\n\t\tflags interval, timeout\n\t\tsize 262144\n\t\telements = { 192.0.2.0/24 }\n"), "{t}");
        assert!(t.contains("\tset whitelist_v6 {\n\t\ttype ipv6_addr\n"));
        assert!(
            t.contains("\tset blacklist {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\tsize 262144\n\t\telements = { 198.51.100.9 timeout 300s }\n"),
            "{t}"
        );
        assert!(
            t.contains("\tset blacklist/net {\n\t\ttype ipv4_addr\n\t\tflags interval, timeout\n\t\tsize 262144\n\t\telements = { 203.0.113.0/24 }\n"),
            "{t}"
        );
        // Single addresses only: no interval set for throttle's roles.
        assert!(t.contains("\tset throttle-hard {\n\t\ttype ipv4_addr\n\t\tflags timeout\n"));
        assert!(!t.contains("throttle-hard/net"));
        assert!(!t.contains("203.0.113.7") && !t.contains("203.0.113.9"));
    }

    /// A first install: every set declared empty first (no rule names it
    /// yet), its members sent over netlink, then the rules in one
    /// transaction; undoing it takes the new table out.
    #[test]
    fn a_first_install_declares_the_sets_then_fills_them_then_adds_the_rules() {
        let plan = build(&cfg(
            "[blacklist]\nentries = [\"203.0.113.0/24\", \"198.51.100.7\", \"2001:db8::1\"]\n",
        ));
        // A small config: one transaction, the members in it.
        let small = plan_install(&plan, &Current::default(), None);
        assert!(small.skeleton.is_none() && small.fill.is_empty());
        assert!(small.main.contains("\tset blacklist/net {\n\t\ttype ipv4_addr\n\t\tflags interval, timeout\n\t\tsize 262144\n\t\telements = { 203.0.113.0/24 }\n"), "{}", small.main);
        assert_eq!(render_undo(&small), "", "one transaction: nothing to undo");
        // A feed's worth: declared empty, filled over netlink.
        let mut plan = plan;
        let bl = plan
            .sets
            .iter_mut()
            .find(|s| s.name == "blacklist")
            .unwrap();
        bl.members.extend((0..INLINE_MAX as u32).map(|i| {
            IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                0xc633_6400 + (1 << 16) + i,
            )))
        }));
        let steps = plan_install(&plan, &Current::default(), None);
        assert!(steps.new_table);
        let skeleton = steps.skeleton.as_deref().unwrap();
        assert!(skeleton.starts_with("table inet fwctl {\n\tset whitelist {\n"));
        assert!(skeleton.contains("\tset blacklist/net {\n\t\ttype ipv4_addr\n\t\tflags interval, timeout\n\t\tsize 262144\n\t}\n"));
        assert!(!skeleton.contains("elements") && !skeleton.contains("chain"));
        let fill: Vec<(&str, usize)> = steps
            .fill
            .iter()
            .map(|s| (s.name.as_str(), s.members.len()))
            .collect();
        assert_eq!(
            fill,
            [
                ("blacklist", 1 + INLINE_MAX),
                ("blacklist/net", 1),
                ("blacklist_v6", 1)
            ]
        );
        assert!(
            steps.main.starts_with(
                "table inet fwctl\nflush table inet fwctl\ntable inet fwctl {\n\tset fwctl-"
            ),
            "{}",
            steps.main
        );
        assert!(!steps.main.contains("delete") && !steps.main.contains("elements"));
        assert!(steps.main.contains("\tchain input {\n"));
        assert_eq!(render_undo(&steps), render_removal());
    }

    /// A re-apply keeps the sets the kernel holds as the plan wants them:
    /// only the difference of the config's members is sent, a ban stays as
    /// it is; a set whose kind changed is made again with its members; a
    /// set, meter or chain the plan no longer has goes.
    #[test]
    fn a_reapply_keeps_the_sets_and_sends_only_the_difference() {
        let n = |s: &str| crate::units::addr::parse_addr(s).unwrap();
        let plan = build(&cfg(
            "[blacklist]\nentries = [\"203.0.113.0/24\", \"198.51.100.7\", \"198.51.100.8\"]\n",
        ));
        let fresh = kernel_sets(&plan, &Current::default());
        let mut have: Vec<KernelSet> = fresh.clone();
        let bl = have.iter_mut().find(|s| s.name == "blacklist").unwrap();
        // .7 is there; .8 is there as a ban (the config's now); .9 the
        // config had; .50 is a ban.
        bl.members = vec![
            (n("198.51.100.7"), None),
            (n("198.51.100.8"), Some(100)),
            (n("198.51.100.9"), None),
            (n("198.51.100.50"), Some(300)),
        ];
        // The whitelist's size changed: made again.
        have.iter_mut()
            .find(|s| s.name == "whitelist")
            .unwrap()
            .size = 1024;
        for name in ["fwctl-log-bl", "old-set"] {
            have.push(KernelSet {
                name: name.into(),
                family: Family::V4,
                interval: false,
                timeout: true,
                size: 65535,
                members: vec![],
            });
        }
        let chains = ["FWCTL-INPUT".to_string(), "FWCTL-GONE".to_string()];
        let mut now = Current::default();
        now.carried.insert(
            "blacklist".into(),
            vec![("198.51.100.8".into(), 100), ("198.51.100.50".into(), 300)],
        );
        let steps = plan_install(
            &plan,
            &now,
            Some(Kernel {
                sets: &have,
                chains: &chains,
                unread: &BTreeSet::new(),
                marks: &BTreeMap::new(),
            }),
        );
        assert!(!steps.new_table && steps.skeleton.is_none() && steps.fill.is_empty());
        let m = &steps.main;
        assert!(m.starts_with(
            "table inet fwctl\nflush table inet fwctl\ndelete chain inet fwctl FWCTL-GONE\n\
             delete set inet fwctl whitelist\ndelete set inet fwctl fwctl-log-bl\ndelete set inet fwctl old-set\n\
             delete element inet fwctl blacklist { 198.51.100.8, 198.51.100.9 }\n\
             add element inet fwctl blacklist { 198.51.100.8 }\n\
             table inet fwctl {\n\tset whitelist {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\tsize 262144\n\t}\n\tset fwctl-"
        ), "{m}");
        assert!(
            !m.contains("blacklist/net {") && !m.contains("198.51.100.50"),
            "{m}"
        );
        assert!(!m.contains("delete chain inet fwctl FWCTL-INPUT"));
        assert_eq!(render_undo(&steps), "");
        // Nothing changed: nothing sent but the rules.
        let same = plan_install(
            &plan,
            &Current::default(),
            Some(Kernel {
                sets: &fresh,
                chains: &[],
                unread: &BTreeSet::new(),
                marks: &BTreeMap::new(),
            }),
        );
        assert!(
            !same.main.contains("element") && !same.main.contains("delete"),
            "{}",
            same.main
        );
    }

    /// A set whose marker names the plan's config members is kept unread:
    /// no element sent, whatever bans it holds; its marker is written
    /// again as it was, every other set's from the plan's members.
    #[test]
    fn a_set_left_unread_is_kept_and_every_marker_written_again() {
        let plan = build(&cfg(
            "[blacklist]\nentries = [\"203.0.113.0/24\", \"198.51.100.7\"]\n",
        ));
        let fresh = kernel_sets(&plan, &Current::default());
        let have: Vec<KernelSet> = fresh
            .iter()
            .map(|s| KernelSet {
                members: vec![],
                ..s.clone()
            })
            .collect();
        let bl = fresh.iter().find(|s| s.name == "blacklist").unwrap();
        let marks = BTreeMap::from([
            ("blacklist".to_string(), nftmark::comment(bl)),
            ("gone".to_string(), "fwctl config members 0 0".to_string()),
        ]);
        let unread = nftmark::unread(&fresh, &have, &marks);
        assert_eq!(unread, BTreeSet::from(["blacklist".to_string()]));
        let steps = plan_install(
            &plan,
            &Current::default(),
            Some(Kernel {
                sets: &have,
                chains: &[],
                unread: &unread,
                marks: &marks,
            }),
        );
        let m = &steps.main;
        assert!(
            m.contains(
                "delete set inet fwctl blacklist/loaded\ndelete set inet fwctl gone/loaded\n"
            ),
            "{m}"
        );
        assert!(!m.contains("element inet fwctl blacklist {"), "{m}");
        // blacklist/net was read (no marker): its member is sent.
        assert!(
            m.contains("add element inet fwctl blacklist/net { 203.0.113.0/24 }"),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "\tset blacklist/loaded {{\n\t\ttype inet_service\n\t\tcomment \"{}\"\n\t}}",
                marks["blacklist"]
            )),
            "{m}"
        );
        let net = fresh.iter().find(|s| s.name == "blacklist/net").unwrap();
        assert!(
            m.contains(&format!(
                "\tset blacklist/net/loaded {{\n\t\ttype inet_service\n\t\tcomment \"{}\"",
                nftmark::comment(net)
            )),
            "{m}"
        );
        assert!(!m.contains("gone/loaded {"), "{m}");
    }

    #[test]
    fn limiters_are_dynamic_sets_that_outlive_a_refill() {
        let t = text("[bandwidth]\nabove = \"20mb/s\"\n");
        assert!(t.contains("\tset fwctl-log-block {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic, timeout\n\t\ttimeout 60s\n\t}"));
        assert!(t.contains("\tset fwctl-log-block_v6 {\n\t\ttype ipv6_addr\n"));
        // throttle-hard: 6/minute, burst 3: a full bucket again after 30 s, so a minute.
        assert!(t.contains("\tset fwctl-thr-hard {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic, timeout\n\t\ttimeout 60s\n"));
        assert!(t.contains("ct direction original update @fwctl-bw { ip saddr limit rate over 20 mbytes/second } update @fwctl-log-bw"));
        assert_eq!(
            meter_timeout(Limit {
                rate: crate::units::names::Rate {
                    count: 2,
                    per: RateUnit::Hour
                },
                burst: 10
            }),
            18_000
        );
    }

    #[test]
    fn detection_only_accepts_everything() {
        let t = text("mode = \"detection_only\"\n");
        assert!(!t.contains("drop"), "{t}");
        assert!(t.contains("policy accept;"));
    }

    #[test]
    fn removal_names_only_our_table() {
        assert_eq!(
            render_removal(),
            "table inet fwctl\ndelete table inet fwctl\n"
        );
    }

    /// `[forward]` is a base chain on the forward hook just ahead of
    /// Docker's (iptables-nft) chains, not a DOCKER-USER jump; "auto" is
    /// decided by the DOCKER-USER the adapter found.
    #[test]
    fn forward_is_a_base_chain_ahead_of_dockers() {
        let c = "[[service]]\nname = \"web\"\nport = 8080\n[forward]\ndefault = \"drop\"\n";
        assert!(!text(c).contains("hook forward"), "auto, no Docker: off");
        let mut now = Current::default();
        now.v4.docker_user = true;
        let t = render_install(&build(&cfg(c)), &now);
        assert!(
            t.contains("\tchain forward {\n\t\ttype filter hook forward priority filter - 1; policy accept;\n\t\tmeta nfproto ipv4 jump FWCTL-FORWARD\n\t}\n"),
            "{t}"
        );
        assert!(!t.contains("FWCTL6-FORWARD"), "decided per family: {t}");
        for want in [
            "\tchain FWCTL-FORWARD {\n\t\tct state != new return\n\t\tct status & dnat == 0 return\n",
            "meta l4proto tcp ct original proto-dst 8080 goto FWCTL-FWD-ALLOW\n",
            "\t\tjump FWCTL-FWD-BLOCK\n",
            "tcp flags & (fin|syn|rst|ack) == syn fib daddr type local meta mark set meta mark | 0x10000000\n",
            "\tchain FWCTL-BLOCK {\n\t\tmeta mark & 0x10000000 != 0x10000000 update @fwctl-log-block",
        ] {
            assert!(t.contains(want), "{want} missing in\n{t}");
        }
        // IPv6's BLOCK is untouched where IPv6 has no forward chain.
        assert!(!t.contains("\tchain FWCTL6-BLOCK {\n\t\tmeta mark"), "{t}");
    }
}
