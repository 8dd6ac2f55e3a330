//! One rule of the ruleset as data (a chain's matches and target), and its
//! `iptables-save` form (pure). The backends' renderers and the forward
//! part build on these.

use crate::core::config::{Config, Limit, Mode, PrefixPair};
use crate::units::addr::Family;
use crate::units::names::{LogPrefix, PortRange};
use std::fmt::Write;

/// The packet-mark bit the raw table sets on a TCP SYN it logged as
/// `blocked` before DNAT (`[forward] default = "drop"`; only this bit is
/// set or tested, other tools' bits stay). See `ruleset::forward`.
pub const PRELOGGED: u32 = 0x1000_0000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    InIface(&'static str),
    CtState(&'static str),
    SrcSet(String),
    Port(&'static str, PortRange),
    Icmp(u8),
    Icmp6(u8),
    /// Per-source rate: matches while the source is within `limit`.
    HashLimit {
        name: String,
        limit: Limit,
    },
    /// The packet's direction in its connection (`ORIGINAL`: from the side
    /// that opened it).
    CtDir(&'static str),
    /// Per-source byte rate: matches while the source is above `rate`.
    BytesAbove {
        name: &'static str,
        rate: crate::units::names::ByteRate,
    },
    /// Conntrack state NOT among these (`! --ctstate NEW`).
    NotCtState(&'static str),
    /// The connection's original destination port (before DNAT).
    OrigPort(&'static str, PortRange),
    /// A TCP SYN without ACK: the first packet of a new TCP connection
    /// (the raw table has no conntrack state to ask).
    Syn,
    /// The destination is one of this host's addresses (before DNAT).
    DstLocal,
    /// fwctl's mark bit [`PRELOGGED`] is not set.
    NotMarked,
    /// A TCP segment that is not a bare SYN.
    NotSyn,
    /// At most `per_second` packets a second (all sources together), in
    /// bursts of `burst`.
    Limit {
        per_second: u32,
        burst: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    Return,
    Jump(&'static str),
    /// Go to the chain: its RETURN returns to this chain's caller.
    Goto(&'static str),
    Log(LogPrefix),
    /// Set fwctl's mark bit [`PRELOGGED`] (and no other).
    Mark,
    /// Hand the packet (its first `size` bytes) to NFLOG `group`, for
    /// `fwctl capture`, and go on.
    Nflog {
        group: u16,
        size: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub rules: Vec<Rule>,
}

pub fn rule(matches: Vec<Match>, target: Target) -> Rule {
    Rule { matches, target }
}

pub fn limiter(name: &str, limit: Limit) -> Match {
    Match::HashLimit {
        name: name.to_string(),
        limit,
    }
}

/// One family's log prefix of a pair (`IPTABLES-`, `IP6TABLES-`).
pub fn prefix(p: &PrefixPair, family: Family) -> LogPrefix {
    match family {
        Family::V4 => p.v4.clone(),
        Family::V6 => p.v6.clone(),
    }
}

/// A LOG rule with `p`'s prefix, limited per source by the limiter
/// `name` so a flood cannot fill the RAM disk, yet every scanner still
/// leaves a trace. An `audit` line is not limited in corporate mode, which
/// logs every allowed new connection.
pub fn log_rule(cfg: &Config, family: Family, name: &str, p: &PrefixPair, audit: bool) -> Rule {
    let m = if audit && cfg.mode == Mode::Corporate {
        vec![]
    } else {
        vec![limiter(name, cfg.log_limit)]
    };
    rule(m, Target::Log(prefix(p, family)))
}

impl Rule {
    /// The rule's arguments as `iptables-save` prints them (so that a save
    /// after apply reads like the render).
    pub fn render(&self) -> String {
        let mut s = String::new();
        for m in &self.matches {
            match m {
                Match::InIface(i) => write!(s, " -i {i}"),
                Match::CtState(st) => write!(s, " -m conntrack --ctstate {st}"),
                Match::CtDir(d) => write!(s, " -m conntrack --ctdir {d}"),
                Match::SrcSet(name) => write!(s, " -m set --match-set {name} src"),
                Match::Port(proto, p) => {
                    write!(s, " -p {proto} -m {proto} --dport {}", p.to_iptables())
                }
                Match::Icmp(t) => write!(s, " -p icmp -m icmp --icmp-type {t}"),
                Match::Icmp6(t) => write!(s, " -p ipv6-icmp -m icmp6 --icmpv6-type {t}"),
                Match::BytesAbove { name, rate } => write!(
                    s,
                    " -m hashlimit --hashlimit-above {} --hashlimit-mode srcip --hashlimit-name {name}",
                    rate.to_iptables()
                ),
                Match::HashLimit { name, limit } => write!(
                    s,
                    " -m hashlimit --hashlimit-upto {} --hashlimit-burst {} --hashlimit-mode srcip --hashlimit-name {name}",
                    limit.rate.to_iptables(),
                    limit.burst
                ),
                Match::NotCtState(st) => write!(s, " -m conntrack ! --ctstate {st}"),
                Match::OrigPort(proto, p) => write!(
                    s,
                    " -p {proto} -m conntrack --ctorigdstport {}",
                    p.to_iptables()
                ),
                Match::Syn => write!(s, " -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN"),
                Match::DstLocal => write!(s, " -m addrtype --dst-type LOCAL"),
                Match::NotSyn => write!(s, " -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN"),
                Match::Limit { per_second, burst } => {
                    write!(s, " -m limit --limit {per_second}/sec --limit-burst {burst}")
                }
                Match::NotMarked => write!(
                    s,
                    " -m mark ! --mark {:#010x}/{:#010x}",
                    PRELOGGED,
                    PRELOGGED
                ),
            }
            .expect("write to String");
        }
        match &self.target {
            Target::Accept => s.push_str(" -j ACCEPT"),
            Target::Drop => s.push_str(" -j DROP"),
            Target::Return => s.push_str(" -j RETURN"),
            Target::Jump(c) => write!(s, " -j {c}").expect("write to String"),
            Target::Goto(c) => write!(s, " -g {c}").expect("write to String"),
            // LogPrefix has no quotes or backslashes, so plain quoting is safe.
            Target::Log(p) => write!(s, " -j LOG --log-prefix \"{}\"", p.as_str()).expect("write"),
            Target::Mark => write!(
                s,
                " -j MARK --set-xmark {:#010x}/{:#010x}",
                PRELOGGED, PRELOGGED
            )
            .expect("write"),
            Target::Nflog { group, size } => {
                write!(s, " -j NFLOG --nflog-group {group} --nflog-size {size}").expect("write")
            }
        }
        s
    }
}
