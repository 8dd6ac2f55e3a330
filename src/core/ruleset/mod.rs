//! The ruleset as data, and its rendering to `ipset restore` and
//! `iptables-restore --noflush` text. Pure: the kernel's current state comes in
//! as [`Current`], so the same inputs always render the same bytes (golden tests
//! pin them).
//!
//! fwctl owns the chains named `FWCTL-*`, one jump at the top of INPUT and the
//! INPUT policy. Everything else in the filter table is left alone, which is why
//! we restore with `--noflush` and delete our old jump by count rather than
//! rewriting the whole table.
//!
//! In the raw table fwctl owns `FWCTL-RAW` and one jump at the top of
//! PREROUTING (never a policy): banned sources (blacklist, feeds) are logged
//! and dropped there, before conntrack, so a flood from one costs no
//! conntrack lookup per packet ([`render_raw`], [`render_raw_removal`]).
//!
//! With `[forward] protect` on, fwctl also owns `FWCTL-FORWARD` (and its
//! `FWCTL-FWD-*` chains) and one jump to it at the top of Docker's
//! `DOCKER-USER` chain (`protect = "docker"`, created if absent) or of
//! FORWARD (`"all"`): see [`forward`].

pub mod drift;
pub mod forward;
pub mod ipset;
pub mod nft;
pub mod nftmark;
pub mod rules;

use crate::core::config::forward::Hook;
use crate::core::config::{Config, Limit, Mode, PrefixPair};
pub use crate::units::addr::Family;
use crate::units::names::PortRange;
use ipnet::IpNet;
use rules::{limiter, rule};
pub use rules::{Chain, Match, Rule, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// fwctl owns the chains named so, one jump to its main chain in INPUT
/// (filter table) and one jump to its raw chain in PREROUTING (raw table).
pub const CHAIN_PREFIX: &str = "FWCTL-";
pub const MAIN_CHAIN: &str = "FWCTL-INPUT";
/// The chain of the raw table, where banned sources are dropped before
/// conntrack sees them.
pub const RAW_CHAIN: &str = "FWCTL-RAW";

/// What rendering needs to know of one family's table (filter or raw, read
/// from the kernel by the backend's adapter in `sys`): fwctl's jumps and chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    /// How many `-A INPUT -j FWCTL-INPUT` rules exist (filter table).
    pub input_jumps: usize,
    /// How many `-A PREROUTING -j FWCTL-RAW` rules exist (raw table).
    pub prerouting_jumps: usize,
    /// How many `-A FORWARD -j FWCTL-FORWARD` rules exist (filter table).
    pub forward_jumps: usize,
    /// How many `-A DOCKER-USER -j FWCTL-FORWARD` rules exist (filter table).
    pub docker_user_jumps: usize,
    /// Docker's `DOCKER-USER` chain exists (filter table): Docker runs
    /// here, and `[forward] protect` defaults to "docker".
    pub docker_user: bool,
    /// The FWCTL-* chains that exist.
    pub chains: BTreeSet<String>,
}

impl TableState {
    pub fn is_installed(&self) -> bool {
        self.input_jumps > 0
            || self.prerouting_jumps > 0
            || self.forward_jumps > 0
            || self.docker_user_jumps > 0
            || !self.chains.is_empty()
    }
}
const WHITELIST: &str = "FWCTL-WHITELIST";
const BLACKLIST: &str = "FWCTL-BLACKLIST";
const THROTTLE_HARD: &str = "FWCTL-THROTTLE-HARD";
const THROTTLE_SOFT: &str = "FWCTL-THROTTLE-SOFT";
const ALLOW: &str = "FWCTL-ALLOW";
const BLOCK: &str = "FWCTL-BLOCK";
/// What the NFLOG rules hand capture of each packet: its headers.
pub const NFLOG_SIZE: u32 = 256;
/// Packets a second the NFLOG rules hand over at most (each rule): an
/// nmap -T5 scan sends fewer, a flood of ACKs costs capture no more.
pub const NFLOG_RATE: u32 = 1000;

/// Every chain fwctl may own in the filter table, in the order they are
/// declared (FWCTL-BLACKLIST only in detection-only mode: otherwise the
/// raw table drops what it would see).
pub const CHAINS: [&str; 7] = [
    MAIN_CHAIN,
    WHITELIST,
    BLACKLIST,
    THROTTLE_HARD,
    THROTTLE_SOFT,
    ALLOW,
    BLOCK,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// Single addresses: what `scan` and `capture` ban.
    HashIp,
    /// Addresses and networks: trusted networks, threat feeds.
    HashNet,
}

impl SetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SetKind::HashIp => "hash:ip",
            SetKind::HashNet => "hash:net",
        }
    }
}

/// One kernel set and the members the config puts in it. Members without a
/// timeout belong to the config; members with one were added by `scan`,
/// `capture` or `ban` and are carried over on re-apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetPlan {
    pub name: String,
    pub kind: SetKind,
    pub family: Family,
    pub maxelem: u32,
    pub members: Vec<IpNet>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    /// The INPUT policy: DROP unless the mode is detection-only.
    pub drop_policy: bool,
    /// The filter table's chains (INPUT jumps to the first).
    pub chains: Vec<Chain>,
    /// The raw table's chain [`RAW_CHAIN`], jumped to from the top of
    /// PREROUTING: whitelisted sources leave it (ACCEPT: on to conntrack and
    /// the filter table as before), feed and blacklist sources are logged
    /// and dropped before conntrack. Empty in detection-only mode.
    pub raw: Chain,
    /// `[forward]`: the forward chains and where they hook in; None when
    /// `protect = "off"` (or, after [`forward::resolve`], when "auto"
    /// found no Docker).
    pub forward: Option<forward::ForwardTable>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub sets: Vec<SetPlan>,
    pub v4: Table,
    pub v6: Table,
}

/// What is in the kernel now, as far as rendering needs to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Current {
    pub v4: TableState,
    pub v6: TableState,
    /// The raw tables (iptables), where fwctl's FWCTL-RAW sits.
    pub raw_v4: TableState,
    pub raw_v6: TableState,
    /// Every set name that exists (ours or not: a stale temp set must be cleared).
    pub sets: BTreeSet<String>,
    /// Timed members of our sets, with their remaining seconds, to carry over.
    pub carried: BTreeMap<String, Vec<(String, u32)>>,
    /// How many of `carried` came from the state file, not the kernel.
    pub restored: usize,
}

/// The kernel name of a set for one family.
fn set_name(base: &crate::units::names::SetName, family: Family) -> String {
    base.for_family(family.is_v6())
}

/// The kernel set of a country's networks for one family.
fn geo_set(c: crate::core::geo::Country, family: Family) -> String {
    crate::core::geo::set_names(c)[usize::from(family.is_v6())].clone()
}

/// Temporary set names used while rebuilding a set, swapped in at the end.
/// Short and fixed so they can never collide with the 31-character limit.
pub fn temp_set_name(index: usize) -> String {
    format!("fwctl-new-{index}")
}

pub fn build(cfg: &Config) -> Plan {
    let mut sets = Vec::new();
    for family in [Family::V4, Family::V6] {
        let only = |list: &[IpNet]| -> Vec<IpNet> {
            list.iter()
                .filter(|n| Family::of(n) == family)
                .copied()
                .collect()
        };
        let mut add = |base: &crate::units::names::SetName, kind, members| {
            sets.push(SetPlan {
                name: set_name(base, family),
                kind,
                family,
                maxelem: cfg.sets.maxelem,
                members,
            })
        };
        add(&cfg.sets.whitelist, SetKind::HashNet, only(&cfg.trusted));
        add(&cfg.sets.blacklist, SetKind::HashNet, only(&cfg.blacklist));
        add(&cfg.sets.throttle_hard, SetKind::HashIp, vec![]);
        add(&cfg.sets.throttle_soft, SetKind::HashIp, vec![]);
        // Each [[feed]]'s own sets; their members are the last good copy,
        // which the apply command reads from the state directory.
        for f in &cfg.feeds {
            sets.push(SetPlan {
                name: crate::core::config::intel::set_names(&f.name)[usize::from(family.is_v6())]
                    .clone(),
                kind: SetKind::HashNet,
                family,
                maxelem: f.max_entries.max(1024) as u32,
                members: vec![],
            });
        }
        // `[geo]`: each country's pair; its members come from the country
        // database, which the apply command reads.
        for c in &cfg.countries {
            sets.push(SetPlan {
                name: geo_set(*c, family),
                kind: SetKind::HashNet,
                family,
                maxelem: cfg.sets.maxelem,
                members: vec![],
            });
        }
    }
    Plan {
        sets,
        v4: table(cfg, Family::V4),
        v6: table(cfg, Family::V6),
    }
}

fn table(cfg: &Config, family: Family) -> Table {
    let detect_only = cfg.mode == Mode::DetectionOnly;
    // In detection-only mode every verdict that would drop accepts instead, so
    // the log shows what the firewall would do without anyone being cut off.
    let drop = if detect_only {
        Target::Accept
    } else {
        Target::Drop
    };
    let prefix = |p: &PrefixPair| rules::prefix(p, family);
    let log =
        |name: &str, p: &PrefixPair, audit: bool| rules::log_rule(cfg, family, name, p, audit);
    let set = |base: &crate::units::names::SetName| Match::SrcSet(set_name(base, family));

    let mut main = vec![rule(vec![Match::InIface("lo")], Target::Accept)];
    if family == Family::V6 {
        // Neighbour discovery and ICMPv6 errors come first: without them IPv6
        // itself stops working (no address resolution, no path MTU).
        for t in [1u8, 2, 3, 4, 133, 134, 135, 136] {
            main.push(rule(vec![Match::Icmp6(t)], Target::Accept));
        }
    }
    // What conntrack says belongs to no connection (INVALID, and a TCP
    // segment other than a SYN that would open one), handed to `fwctl
    // capture`'s NFLOG group: the ACK-type scans (-sA, -sW, -sM) only it
    // can tell from a connection's traffic. Limited, so that a flood of
    // them costs capture no more than the limit.
    if cfg.capture.nflog_group != 0 {
        let nflog = Target::Nflog {
            group: cfg.capture.nflog_group,
            size: NFLOG_SIZE,
        };
        let limit = Match::Limit {
            per_second: NFLOG_RATE,
            burst: NFLOG_RATE,
        };
        main.push(rule(
            vec![Match::CtState("INVALID"), limit.clone()],
            nflog.clone(),
        ));
        main.push(rule(
            vec![Match::NotSyn, Match::CtState("NEW"), limit],
            nflog,
        ));
    }
    if !detect_only {
        main.push(rule(vec![Match::CtState("INVALID")], Target::Drop));
    }
    // Bandwidth hogs: before the established-connection accept, since a hog's
    // bytes flow on connections already open. Only a LOG line (limited per
    // source like every other), no verdict: `scan --rule bandwidth` bans.
    // Only the original direction counts: the replies to downloads this host
    // started (mirrors, backups) are no hog.
    if let Some(rate) = cfg.bandwidth {
        main.push(rule(
            vec![
                Match::CtDir("ORIGINAL"),
                Match::BytesAbove {
                    name: "fwctl-bw",
                    rate,
                },
                limiter("fwctl-log-bw", cfg.log_limit),
            ],
            Target::Log(prefix(&cfg.prefixes.bandwidth)),
        ));
    }
    main.push(rule(
        vec![Match::CtState("RELATED,ESTABLISHED")],
        Target::Accept,
    ));
    main.push(rule(
        vec![set(&cfg.sets.whitelist)],
        Target::Jump(WHITELIST),
    ));
    // Threat feeds, then the blacklist. Outside detection-only mode the raw
    // table drops these sources before conntrack, so no packet of theirs
    // gets here (a whitelisted one was let through raw, and is taken by the
    // whitelist jump above just as before): the jumps would never match.
    // In detection-only mode raw does nothing (an accept there saves no
    // conntrack work), and here they log and accept as they always did:
    // only new connections, and not on to FWCTL-BLOCK's lines.
    let bans: Vec<Match> = cfg
        .feeds
        .iter()
        .map(|f| {
            Match::SrcSet(
                crate::core::config::intel::set_names(&f.name)[usize::from(family.is_v6())].clone(),
            )
        })
        .chain([set(&cfg.sets.blacklist)])
        // `[geo] block_countries`: dropped (and logged) like the bans,
        // before any service.
        .chain(
            cfg.geo
                .iter()
                .flat_map(|g| &g.block_countries)
                .map(|c| Match::SrcSet(geo_set(*c, family))),
        )
        .collect();
    if detect_only {
        for m in &bans {
            main.push(rule(vec![m.clone()], Target::Jump(BLACKLIST)));
        }
    }
    main.push(rule(
        vec![set(&cfg.sets.throttle_hard)],
        Target::Jump(THROTTLE_HARD),
    ));
    main.push(rule(
        vec![set(&cfg.sets.throttle_soft)],
        Target::Jump(THROTTLE_SOFT),
    ));
    if let Some(limit) = cfg.icmp_echo {
        let echo = match family {
            Family::V4 => Match::Icmp(8),
            Family::V6 => Match::Icmp6(128),
        };
        // Within the rate: accepted unlogged (pings are routine). Over it: falls
        // through to FWCTL-BLOCK, so an ICMP flood shows up as blocked lines.
        main.push(rule(
            vec![echo, limiter("fwctl-icmp", limit)],
            Target::Accept,
        ));
    }
    for (i, svc) in cfg.services.iter().enumerate() {
        let mut m = vec![Match::Port(svc.protocol.as_str(), svc.ports)];
        if let Some(limit) = svc.limit {
            // Over the per-source rate the packet falls through to FWCTL-BLOCK.
            m.push(limiter(&format!("fwctl-svc-{i}"), limit));
        }
        if svc.allow_countries.is_empty() {
            main.push(rule(m, Target::Jump(ALLOW)));
        } else {
            // Only these countries' sources reach it (one rule each: a
            // rule matches one set); the rest fall through to FWCTL-BLOCK.
            for c in &svc.allow_countries {
                let mut m = m.clone();
                m.insert(1, Match::SrcSet(geo_set(*c, family)));
                main.push(rule(m, Target::Jump(ALLOW)));
            }
        }
    }
    // Decoy ports: let in, so a scanner completes the handshake with
    // capture's listener and is banned for it.
    for &p in &cfg.capture.decoy_ports {
        main.push(rule(
            vec![Match::Port("tcp", PortRange { first: p, last: p })],
            Target::Jump(ALLOW),
        ));
    }
    main.push(rule(vec![], Target::Jump(BLOCK)));

    // A throttled source within its rate goes back to the normal path (it
    // still only reaches allowed services); over the rate it is dropped.
    let throttle = |limit: Limit, name: &str, log_name: &str| {
        vec![
            rule(vec![limiter(name, limit)], Target::Return),
            log(log_name, &cfg.prefixes.throttled, false),
            rule(vec![], drop.clone()),
        ]
    };

    // The terminal chains: a (rate-limited) LOG line, then the verdict.
    let terminal = |name, limiter_name, p, audit, verdict| Chain {
        name,
        rules: vec![log(limiter_name, p, audit), rule(vec![], verdict)],
    };
    let mut chains = vec![
        Chain {
            name: MAIN_CHAIN,
            rules: main,
        },
        terminal(
            WHITELIST,
            "fwctl-log-wl",
            &cfg.prefixes.whitelisted,
            true,
            Target::Accept,
        ),
    ];
    if detect_only {
        chains.push(terminal(
            BLACKLIST,
            "fwctl-log-bl",
            &cfg.prefixes.blacklisted,
            false,
            drop.clone(),
        ));
    }
    chains.extend([
        Chain {
            name: THROTTLE_HARD,
            rules: throttle(cfg.throttle_hard, "fwctl-thr-hard", "fwctl-log-thh"),
        },
        Chain {
            name: THROTTLE_SOFT,
            rules: throttle(cfg.throttle_soft, "fwctl-thr-soft", "fwctl-log-ths"),
        },
        terminal(
            ALLOW,
            "fwctl-log-allow",
            &cfg.prefixes.allowed,
            true,
            Target::Accept,
        ),
        terminal(BLOCK, "fwctl-log-block", &cfg.prefixes.blocked, false, drop),
    ]);
    let raw = Chain {
        name: RAW_CHAIN,
        rules: if detect_only {
            vec![]
        } else {
            raw_rules(cfg, family, &bans)
        },
    };
    Table {
        family,
        drop_policy: !detect_only,
        chains,
        raw,
        forward: forward::build(cfg, family),
    }
}

/// `[forward]`: `plan` as it installs on a kernel whose filter tables are `v4` and `v6`:
/// "auto" decided per family (DOCKER-USER there or not), and where the
/// forward chain is on, the raw table's `blocked` lines added and INPUT's
/// `blocked` LOG rule told to skip what they logged.
pub fn resolve(plan: &Plan, v4: &TableState, v6: &TableState) -> Plan {
    let mut out = plan.clone();
    for (t, now) in [(&mut out.v4, v4), (&mut out.v6, v6)] {
        let Some(f) = t.forward.as_mut() else {
            continue;
        };
        if f.hook.is_some() {
            continue;
        }
        match f.protect.resolve(now.docker_user) {
            None => t.forward = None,
            Some(hook) => {
                f.hook = Some(hook);
                if !f.raw.is_empty() {
                    t.raw.rules.extend(f.raw.iter().cloned());
                    if let Some(c) = t.chains.iter_mut().find(|c| c.name == BLOCK) {
                        if let Some(r) = c
                            .rules
                            .iter_mut()
                            .find(|r| matches!(r.target, Target::Log(_)))
                        {
                            r.matches.insert(0, Match::NotMarked);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The raw chain: what the filter table let through ahead of the ban sets
/// (loopback, IPv6 neighbour discovery, the whitelist) leaves it with
/// ACCEPT (on to conntrack and filter, unchanged); each ban set's sources
/// get a LOG line, limited per source and with the filter table's
/// blacklisted prefix (rsyslog and `scan --rule blacklist` read them as
/// ever), then DROP. Unlike the filter table this also drops packets of
/// connections already open: conntrack has not looked at them yet.
fn raw_rules(cfg: &Config, family: Family, bans: &[Match]) -> Vec<Rule> {
    let prefix = match family {
        Family::V4 => cfg.prefixes.blacklisted.v4.clone(),
        Family::V6 => cfg.prefixes.blacklisted.v6.clone(),
    };
    let mut out = vec![rule(vec![Match::InIface("lo")], Target::Accept)];
    if family == Family::V6 {
        for t in [1u8, 2, 3, 4, 133, 134, 135, 136] {
            out.push(rule(vec![Match::Icmp6(t)], Target::Accept));
        }
    }
    out.push(rule(
        vec![Match::SrcSet(set_name(&cfg.sets.whitelist, family))],
        Target::Accept,
    ));
    for m in bans {
        out.push(rule(
            vec![m.clone(), limiter("fwctl-log-bl", cfg.log_limit)],
            Target::Log(prefix.clone()),
        ));
        out.push(rule(vec![m.clone()], Target::Drop));
    }
    out
}

/// `iptables-restore --noflush` input that installs `table`. Declaring our
/// chains flushes them; builtin chains keep their rules; the old jump is
/// deleted as many times as it exists and one is inserted at the top.
pub fn render_table(table: &Table, now: &TableState) -> String {
    let mut out = String::from("*filter\n");
    let policy = if table.drop_policy { "DROP" } else { "ACCEPT" };
    writeln!(out, ":INPUT {policy} [0:0]").expect("write");
    let fwd = table.forward.as_ref().and_then(|f| f.hook.map(|h| (f, h)));
    let chains: Vec<&Chain> = table
        .chains
        .iter()
        .chain(fwd.iter().flat_map(|(f, _)| f.chains.iter()))
        .collect();
    for c in &chains {
        writeln!(out, ":{} - [0:0]", c.name).expect("write");
    }
    // Docker's chain is created when absent, never declared: declaring it
    // would flush the rules Docker and the admin keep there. `-N` fails
    // (and with it this whole restore) if Docker created it meanwhile.
    if fwd.is_some_and(|(_, h)| h == Hook::DockerUser) && !now.docker_user {
        writeln!(out, "-N {}", forward::DOCKER_USER).expect("write");
    }
    // A chain left from another fwctl version or mode would keep stale
    // rules: flush it.
    for stale in now
        .chains
        .iter()
        .filter(|c| !chains.iter().any(|t| t.name == c.as_str()))
    {
        writeln!(out, "-F {stale}").expect("write");
    }
    for _ in 0..now.input_jumps {
        writeln!(out, "-D INPUT -j {MAIN_CHAIN}").expect("write");
    }
    writeln!(out, "-I INPUT 1 -j {MAIN_CHAIN}").expect("write");
    // Every old forward jump goes (by count, like INPUT's), wherever it
    // was; exactly one comes back where the config says.
    for _ in 0..now.forward_jumps {
        writeln!(out, "-D FORWARD -j {}", forward::CHAIN).expect("write");
    }
    for _ in 0..now.docker_user_jumps {
        writeln!(out, "-D {} -j {}", forward::DOCKER_USER, forward::CHAIN).expect("write");
    }
    if let Some((_, hook)) = fwd {
        writeln!(out, "-I {} 1 -j {}", hook.chain(), forward::CHAIN).expect("write");
    }
    for c in &chains {
        for r in &c.rules {
            writeln!(out, "-A {}{}", c.name, r.render()).expect("write");
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// `iptables-restore --noflush` input that takes fwctl back out: jump gone,
/// chains flushed and deleted, INPUT policy back to ACCEPT.
pub fn render_removal(now: &TableState) -> String {
    let mut out = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
    for _ in 0..now.input_jumps {
        writeln!(out, "-D INPUT -j {MAIN_CHAIN}").expect("write");
    }
    // DOCKER-USER itself stays: it is Docker's (an empty one is harmless).
    for _ in 0..now.forward_jumps {
        writeln!(out, "-D FORWARD -j {}", forward::CHAIN).expect("write");
    }
    for _ in 0..now.docker_user_jumps {
        writeln!(out, "-D {} -j {}", forward::DOCKER_USER, forward::CHAIN).expect("write");
    }
    for c in &now.chains {
        writeln!(out, "-F {c}").expect("write");
    }
    for c in &now.chains {
        writeln!(out, "-X {c}").expect("write");
    }
    out.push_str("COMMIT\n");
    out
}

/// `iptables-restore --noflush` input (`ip6tables-restore` for the IPv6
/// table) that installs `table`'s raw part in the raw table. `now` is the
/// raw table as it is (`sys::iptables::save::raw_state` of `iptables-save -t
/// raw`). Declaring FWCTL-RAW creates or flushes it; a stale FWCTL-* chain
/// is flushed; every old jump is deleted and exactly one inserted at the top
/// of PREROUTING. PREROUTING is not declared, so its policy and the other
/// rules and chains of the raw table stay as they are. Install this before
/// the filter table: the filter table no longer drops banned sources.
pub fn render_raw(table: &Table, now: &TableState) -> String {
    let mut out = String::from("*raw\n");
    writeln!(out, ":{} - [0:0]", table.raw.name).expect("write");
    for stale in now.chains.iter().filter(|c| c.as_str() != table.raw.name) {
        writeln!(out, "-F {stale}").expect("write");
    }
    for _ in 0..now.prerouting_jumps {
        writeln!(out, "-D PREROUTING -j {}", table.raw.name).expect("write");
    }
    writeln!(out, "-I PREROUTING 1 -j {}", table.raw.name).expect("write");
    for r in &table.raw.rules {
        writeln!(out, "-A {}{}", table.raw.name, r.render()).expect("write");
    }
    out.push_str("COMMIT\n");
    out
}

/// `iptables-restore --noflush` input that takes fwctl's part of the raw
/// table out: its jumps deleted, its chains flushed and deleted; nothing
/// else named. None when `now` (the raw table as it is) holds none of it,
/// so that removal never loads the raw table where it was never used.
pub fn render_raw_removal(now: &TableState) -> Option<String> {
    if !now.is_installed() {
        return None;
    }
    let mut out = String::from("*raw\n");
    for _ in 0..now.prerouting_jumps {
        writeln!(out, "-D PREROUTING -j {RAW_CHAIN}").expect("write");
    }
    for c in &now.chains {
        writeln!(out, "-F {c}").expect("write");
    }
    for c in &now.chains {
        writeln!(out, "-X {c}").expect("write");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// A hash size that fits `n` entries without the kernel resizing the table
/// over and over while a large feed loads.
fn hashsize(n: usize) -> usize {
    n.next_power_of_two().clamp(1024, 1 << 24)
}

fn create_line(name: &str, set: &SetPlan, entries: usize) -> String {
    format!(
        "create {name} {} family {} hashsize {} maxelem {} timeout 0\n",
        set.kind.as_str(),
        set.family.ipset_family(),
        hashsize(entries),
        set.maxelem
    )
}

/// `ipset restore` input that rebuilds every set: each set's new contents are
/// built in a temporary set, then all are swapped in (atomic per set) and the
/// temporaries destroyed. A failure while filling leaves the live sets as they
/// were. Timed members (bans) are carried over with their remaining time.
pub fn render_sets(sets: &[SetPlan], now: &Current) -> String {
    let mut out = String::new();
    for (i, set) in sets.iter().enumerate() {
        let tmp = temp_set_name(i);
        if now.sets.contains(&tmp) {
            // Left by an interrupted run.
            writeln!(out, "destroy {tmp}").expect("write");
        }
        let statics: BTreeSet<String> =
            set.members.iter().map(crate::units::addr::member).collect();
        let carried: Vec<&(String, u32)> = now
            .carried
            .get(&set.name)
            .map(|v| v.iter().filter(|(e, _)| !statics.contains(e)).collect())
            .unwrap_or_default();
        if !now.sets.contains(&set.name) {
            out.push_str(&create_line(&set.name, set, 0));
        }
        out.push_str(&create_line(&tmp, set, statics.len() + carried.len()));
        for m in &statics {
            writeln!(out, "add {tmp} {m}").expect("write");
        }
        for (m, secs) in carried {
            writeln!(out, "add {tmp} {m} timeout {secs}").expect("write");
        }
    }
    for (i, set) in sets.iter().enumerate() {
        writeln!(out, "swap {} {}", temp_set_name(i), set.name).expect("write");
    }
    for i in 0..sets.len() {
        writeln!(out, "destroy {}", temp_set_name(i)).expect("write");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("/t.toml"), &|_| Ok(String::new())).unwrap()
    }

    #[test]
    fn order_of_the_input_path() {
        let plan = build(&cfg(
            "[[service]]\nname = \"ssh\"\nport = 22\nrate = \"10/minute\"\n",
        ));
        let text = render_table(&plan.v4, &TableState::default());
        let pos = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing in\n{text}"))
        };
        assert!(pos("-A FWCTL-INPUT -i lo -j ACCEPT") < pos("--ctstate INVALID -j DROP"));
        assert!(pos("--ctstate INVALID") < pos("--ctstate RELATED,ESTABLISHED"));
        assert!(pos("RELATED,ESTABLISHED") < pos("--match-set whitelist src"));
        assert!(pos("--match-set whitelist src") < pos("--match-set throttle-hard src"));
        assert!(
            !text.contains("blacklist") && !text.contains("FWCTL-BLACKLIST"),
            "the raw table drops banned sources: {text}"
        );
        assert!(pos("--match-set throttle-hard src") < pos("--match-set throttle-soft src"));
        assert!(pos("--match-set throttle-soft src") < pos("--dport 22"));
        assert!(pos("--dport 22") < pos("-A FWCTL-INPUT -j FWCTL-BLOCK"));
        assert!(text.contains(":INPUT DROP"));
        assert!(text.contains("-A FWCTL-BLOCK -j DROP"));
    }

    #[test]
    fn bandwidth_hogs_are_logged_before_established_traffic_is_accepted() {
        assert!(!render_table(&build(&cfg("")).v4, &TableState::default()).contains("fwctl-bw"));
        let plan = build(&cfg("[bandwidth]\nabove = \"20mb/s\"\n"));
        for (t, prefix) in [(&plan.v4, "IPTABLES-"), (&plan.v6, "IP6TABLES-")] {
            let text = render_table(t, &TableState::default());
            let line = format!(
                "-A FWCTL-INPUT -m conntrack --ctdir ORIGINAL -m hashlimit --hashlimit-above 20mb/s --hashlimit-mode srcip --hashlimit-name fwctl-bw \
                 -m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 20 --hashlimit-mode srcip --hashlimit-name fwctl-log-bw \
                 -j LOG --log-prefix \"{prefix}BANDWIDTH: \"\n"
            );
            let at = text
                .find(&line)
                .unwrap_or_else(|| panic!("{line} missing in\n{text}"));
            assert!(at > text.find("--ctstate INVALID").unwrap());
            assert!(at < text.find("RELATED,ESTABLISHED").unwrap());
        }
        // Detection-only logs the same: the line has no verdict to soften.
        let d = build(&cfg(
            "mode = \"detection_only\"\n[bandwidth]\nabove = \"512kb/s\"\n",
        ));
        assert!(render_table(&d.v4, &TableState::default()).contains("--hashlimit-above 512kb/s"));
    }

    #[test]
    fn decoy_ports_are_let_in_after_the_ban_sets() {
        let plan = build(&cfg("[capture]\ndecoy_ports = [2323, 5900]\n"));
        for t in [&plan.v4, &plan.v6] {
            let text = render_table(t, &TableState::default());
            let at = text
                .find("-A FWCTL-INPUT -p tcp -m tcp --dport 2323 -j FWCTL-ALLOW\n")
                .unwrap_or_else(|| panic!("{text}"));
            assert!(at > text.find("-j FWCTL-THROTTLE-SOFT").unwrap());
            assert!(text.contains("--dport 5900 -j FWCTL-ALLOW\n"));
        }
        let e = Config::parse(
            "[[service]]\nname = \"telnet\"\nport = 23\n[capture]\ndecoy_ports = [23]\n",
            Path::new("/t.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is the port of [[service]] \"telnet\""), "{e}");
    }

    #[test]
    fn ipv6_keeps_neighbour_discovery_ahead_of_invalid() {
        let plan = build(&cfg(""));
        let text = render_table(&plan.v6, &TableState::default());
        let nd = text.find("--icmpv6-type 135 -j ACCEPT").unwrap();
        assert!(nd < text.find("INVALID").unwrap());
        assert!(text.contains("IP6TABLES-BLOCKED: "));
        assert!(!text.contains("\"IPTABLES-"));
        let raw = render_raw(&plan.v6, &TableState::default());
        assert!(raw.contains("--icmpv6-type 135 -j ACCEPT"));
        assert!(raw.find("--icmpv6-type 135").unwrap() < raw.find("blacklist_v6").unwrap());
        assert!(raw.contains("-A FWCTL-RAW -m set --match-set blacklist_v6 src -j DROP\n"));
        assert!(!raw.contains("\"IPTABLES-"));
    }

    #[test]
    fn the_raw_table_logs_and_drops_bans_before_conntrack() {
        let c = "[[feed]]\nname = \"drop\"\nurl = \"https://feeds.example.net/drop.txt\"\n\
                 [logging.prefixes]\nblacklisted = { v4 = \"IPTABLES-BLACKLIST: \", v6 = \"IP6TABLES-BLACKLIST: \" }\n";
        for mode in ["firewall", "corporate"] {
            let plan = build(&cfg(&format!("mode = \"{mode}\"\n{c}")));
            let lim = "-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 20 --hashlimit-mode srcip --hashlimit-name fwctl-log-bl";
            assert_eq!(
                render_raw(&plan.v4, &TableState::default()),
                format!(
                    "*raw\n:FWCTL-RAW - [0:0]\n-I PREROUTING 1 -j FWCTL-RAW\n\
                     -A FWCTL-RAW -i lo -j ACCEPT\n\
                     -A FWCTL-RAW -m set --match-set whitelist src -j ACCEPT\n\
                     -A FWCTL-RAW -m set --match-set feed-drop src {lim} -j LOG --log-prefix \"IPTABLES-BLACKLIST: \"\n\
                     -A FWCTL-RAW -m set --match-set feed-drop src -j DROP\n\
                     -A FWCTL-RAW -m set --match-set blacklist src {lim} -j LOG --log-prefix \"IPTABLES-BLACKLIST: \"\n\
                     -A FWCTL-RAW -m set --match-set blacklist src -j DROP\n\
                     COMMIT\n"
                ),
                "{mode}"
            );
            // Nothing of it is left in the filter table; the throttles stay.
            let filter = render_table(&plan.v4, &TableState::default());
            assert!(
                !filter.contains("feed-drop") && !filter.contains("BLACKLIST"),
                "{filter}"
            );
            assert!(filter.contains("--match-set throttle-hard src -j FWCTL-THROTTLE-HARD"));
            assert!(filter.contains("--match-set whitelist src -j FWCTL-WHITELIST"));
        }
    }

    #[test]
    fn detection_only_leaves_the_bans_in_the_filter_table() {
        let plan = build(&cfg("mode = \"detection_only\"\n"));
        for t in [&plan.v4, &plan.v6] {
            assert!(t.raw.rules.is_empty());
            let raw = render_raw(t, &TableState::default());
            assert!(
                !raw.contains("DROP") && !raw.contains("-A FWCTL-RAW"),
                "{raw}"
            );
            let filter = render_table(t, &TableState::default());
            assert!(filter.contains(" src -j FWCTL-BLACKLIST\n"), "{filter}");
            assert!(filter.contains("-A FWCTL-BLACKLIST -j ACCEPT\n"));
        }
    }

    #[test]
    fn the_raw_render_replaces_our_jumps_and_touches_nothing_else() {
        let plan = build(&cfg(""));
        let save = "*raw\n:PREROUTING ACCEPT [9:9]\n:OUTPUT ACCEPT [0:0]\n:FWCTL-RAW - [0:0]\n:FWCTL-OLD - [0:0]\n\
                    -A PREROUTING -j FWCTL-RAW\n-A PREROUTING -p udp -j CT --notrack\n-A PREROUTING -j FWCTL-RAW\n\
                    -A FWCTL-RAW -j DROP\n-A FWCTL-OLD -j DROP\nCOMMIT\n";
        let now = crate::sys::iptables::save::raw_state(save);
        let text = render_raw(&plan.v4, &now);
        assert!(text.starts_with("*raw\n:FWCTL-RAW - [0:0]\n-F FWCTL-OLD\n-D PREROUTING -j FWCTL-RAW\n-D PREROUTING -j FWCTL-RAW\n-I PREROUTING 1 -j FWCTL-RAW\n"), "{text}");
        assert!(
            !text.contains(":PREROUTING") && !text.contains("notrack") && !text.contains("OUTPUT")
        );
        assert_eq!(text.matches("-I PREROUTING").count(), 1);
        assert_eq!(
            render_raw_removal(&now).unwrap(),
            "*raw\n-D PREROUTING -j FWCTL-RAW\n-D PREROUTING -j FWCTL-RAW\n-F FWCTL-OLD\n-F FWCTL-RAW\n\
             -X FWCTL-OLD\n-X FWCTL-RAW\nCOMMIT\n"
        );
        let foreign =
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j CT --notrack\nCOMMIT\n";
        assert_eq!(
            render_raw_removal(&crate::sys::iptables::save::raw_state(foreign)),
            None
        );
    }

    #[test]
    fn a_filter_chain_the_mode_no_longer_has_is_flushed() {
        let plan = build(&cfg(""));
        let now = crate::sys::iptables::save::table_state(
            "*filter\n:INPUT DROP [0:0]\n:FWCTL-INPUT - [0:0]\n:FWCTL-BLACKLIST - [0:0]\nCOMMIT\n",
        );
        let text = render_table(&plan.v4, &now);
        assert!(text.contains("\n-F FWCTL-BLACKLIST\n"), "{text}");
        assert!(!text.contains("-F FWCTL-INPUT"));
    }

    #[test]
    fn detection_only_never_drops() {
        let plan = build(&cfg("mode = \"detection_only\"\n"));
        for t in [&plan.v4, &plan.v6] {
            let text = render_table(t, &TableState::default());
            assert!(!text.contains("DROP"), "{text}");
            assert!(text.contains("-j LOG --log-prefix"));
        }
    }

    #[test]
    fn corporate_logs_every_allowed_connection() {
        let plan = build(&cfg("mode = \"corporate\"\n"));
        let text = render_table(&plan.v4, &TableState::default());
        assert!(text.contains("-A FWCTL-ALLOW -j LOG --log-prefix \"IPTABLES-ALLOWED: \""));
        assert!(text.contains("-A FWCTL-BLOCK -m hashlimit"));
    }

    #[test]
    fn old_jumps_are_deleted_by_count() {
        let plan = build(&cfg(""));
        let now = TableState {
            input_jumps: 2,
            prerouting_jumps: 0,
            chains: ["FWCTL-INPUT".to_string(), "FWCTL-OLD".to_string()].into(),
            ..TableState::default()
        };
        let text = render_table(&plan.v4, &now);
        assert_eq!(text.matches("-D INPUT -j FWCTL-INPUT").count(), 2);
        assert_eq!(text.matches("-I INPUT 1 -j FWCTL-INPUT").count(), 1);
        assert!(text.contains("-F FWCTL-OLD"));
    }

    #[test]
    fn table_state_reads_iptables_save() {
        let save = "# Generated\n*nat\n:FWCTL-X - [0:0]\n-A INPUT -j FWCTL-INPUT\nCOMMIT\n*filter\n:INPUT DROP [5:300]\n\
                    :DOCKER - [0:0]\n:FWCTL-INPUT - [0:0]\n-A INPUT -j FWCTL-INPUT\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\nCOMMIT\n";
        let st = crate::sys::iptables::save::table_state(save);
        assert_eq!(st.input_jumps, 1);
        assert_eq!(st.chains, ["FWCTL-INPUT".to_string()].into());
        let rm = render_removal(&st);
        assert!(rm.contains(":INPUT ACCEPT") && rm.contains("-X FWCTL-INPUT"));
        assert!(!rm.contains("DOCKER"));
    }

    #[test]
    fn sets_are_rebuilt_and_swapped_keeping_bans() {
        let plan = build(&cfg(
            "[trusted]\nnetworks = [\"192.0.2.0/24\"]\n[blacklist]\nentries = [\"203.0.113.7\"]\n",
        ));
        let mut now = Current::default();
        now.sets.insert("blacklist".into());
        now.sets.insert(temp_set_name(1));
        now.carried.insert(
            "blacklist".into(),
            vec![("198.51.100.9".into(), 300), ("203.0.113.7".into(), 50)],
        );
        let text = render_sets(&plan.sets, &now);
        assert!(text.contains(
            "create whitelist hash:net family inet hashsize 1024 maxelem 262144 timeout 0\n"
        ));
        assert!(
            !text.contains("create blacklist "),
            "existing sets are not re-created:\n{text}"
        );
        assert!(text.contains("destroy fwctl-new-1\ncreate fwctl-new-1 "));
        assert!(text.contains("add fwctl-new-0 192.0.2.0/24\n"));
        assert!(text.contains("add fwctl-new-1 203.0.113.7\n"));
        assert!(text.contains("add fwctl-new-1 198.51.100.9 timeout 300\n"));
        assert!(
            !text.contains("203.0.113.7 timeout"),
            "a static entry is not also carried"
        );
        assert!(text.contains("create throttle-hard_v6 hash:ip family inet6"));
        let swap = text.find("swap fwctl-new-0 whitelist").unwrap();
        assert!(
            text.rfind("add ").unwrap() < swap,
            "all fills happen before any swap"
        );
        assert_eq!(text.matches("swap ").count(), 8);
    }
}
