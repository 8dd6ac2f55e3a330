//! The never-ban policy (pure): one answer to "may this address or network be
//! banned here?", asked by scan, capture, a manual ban and the boot-time
//! restore alike. Never banned: loopback and non-unicast addresses, this
//! host's own addresses, the config's trusted networks and the members of
//! the kernel's whitelist sets (which an admin may have filled by hand). A
//! network is refused when it overlaps any of them.

use super::sets::Member;
use crate::units::addr::special;
use ipnet::IpNet;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

/// Members of a set: single addresses and networks (hash:net sets). A
/// lookup costs one hash probe per distinct prefix length, so a 100 000-entry
/// feed answers as fast as a handful of entries.
#[derive(Clone, Debug, Default)]
pub struct Members {
    exact: HashSet<IpAddr>,
    nets: Vec<IpNet>,
    /// (IPv6?, prefix length, address bits masked to it) of every network.
    index: HashSet<(bool, u8, u128)>,
    /// The prefix lengths present, per family (IPv4, IPv6), longest first.
    lens: [Vec<u8>; 2],
}

fn bits(a: &IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v4) => (false, u128::from(u32::from(*v4))),
        IpAddr::V6(v6) => (true, u128::from(*v6)),
    }
}

fn masked(v6: bool, bits: u128, len: u8) -> u128 {
    let width = if v6 { 128 } else { 32 };
    if len == 0 {
        0
    } else {
        bits & (u128::MAX >> (128 - width)) & !((1u128 << (width - u32::from(len))).wrapping_sub(1))
    }
}

impl FromIterator<IpNet> for Members {
    fn from_iter<I: IntoIterator<Item = IpNet>>(nets: I) -> Members {
        let mut m = Members::default();
        for n in nets {
            m.insert(n);
        }
        m
    }
}

impl Members {
    /// Add one address or network.
    pub fn insert(&mut self, net: IpNet) {
        if net.prefix_len() == net.max_prefix_len() {
            self.exact.insert(net.addr());
            return;
        }
        let (v6, b) = bits(&net.addr());
        let len = net.prefix_len();
        if self.index.insert((v6, len, masked(v6, b, len))) {
            self.nets.push(net);
            let lens = &mut self.lens[usize::from(v6)];
            if !lens.contains(&len) {
                lens.push(len);
                lens.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
    }

    /// The network (or the address itself) that holds `a`, if any.
    pub fn holding(&self, a: &IpAddr) -> Option<IpNet> {
        if self.exact.contains(a) {
            return Some(IpNet::from(*a));
        }
        let (v6, b) = bits(a);
        self.lens[usize::from(v6)]
            .iter()
            .find(|&&len| self.index.contains(&(v6, len, masked(v6, b, len))))
            .map(|&len| IpNet::new(*a, len).expect("prefix fits").trunc())
    }

    /// A kernel set's members (their time left does not matter here).
    pub fn of(members: &[Member]) -> Members {
        members.iter().map(|m| m.net).collect()
    }

    pub fn extend(&mut self, other: Members) {
        self.exact.extend(other.exact);
        for n in other.nets {
            self.insert(n);
        }
    }

    pub fn contains(&self, a: &IpAddr) -> bool {
        self.holding(a).is_some()
    }

    /// A member that `net` covers or that covers `net`.
    pub fn overlap(&self, net: &IpNet) -> Option<IpNet> {
        if let Some(n) = self.holding(&net.addr()).filter(|n| n.contains(net)) {
            return Some(n);
        }
        if net.prefix_len() == net.max_prefix_len() {
            return None;
        }
        if let Some(a) = self.exact.iter().find(|a| net.contains(*a)) {
            return Some(IpNet::from(*a));
        }
        self.nets.iter().find(|n| net.contains(*n)).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.nets.is_empty()
    }
}

/// The first address of each range of [`special`] addresses: unspecified,
/// loopback (127.0.0.0/8, ::1), multicast (224.0.0.0/4, ff00::/8) and the
/// broadcast address.
const SPECIAL_STARTS: [&str; 7] = [
    "0.0.0.0",
    "127.0.0.0",
    "224.0.0.0",
    "255.255.255.255",
    "::",
    "::1",
    "ff00::",
];

/// Why an address or network must never be banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Loopback, multicast, broadcast, unspecified.
    Special(&'static str),
    /// This host's own address (`covered`: the network being banned holds it).
    Own { addr: IpAddr, covered: bool },
    /// Overlaps one of the config's trusted networks.
    Trusted(IpNet),
    /// In (or overlapping a member of) the kernel's whitelist set.
    Whitelisted { set: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Special(why) => f.write_str(why),
            Refusal::Own { covered: false, .. } => f.write_str("this host's own address"),
            Refusal::Own {
                addr,
                covered: true,
            } => write!(f, "covers {addr}, this host's own address"),
            Refusal::Trusted(n) => write!(f, "in trusted network {n} (config)"),
            Refusal::Whitelisted { set } => write!(f, "in the {set} set"),
        }
    }
}

/// What the config, the kernel and the host say about who is never banned.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The config's trusted networks.
    pub trusted: Vec<IpNet>,
    /// Members of the kernel's whitelist sets (both families), and the
    /// set's name for the reason.
    pub whitelist: Members,
    pub whitelist_name: String,
    /// This host's own addresses.
    pub own: Vec<IpAddr>,
}

impl Policy {
    /// Why `net` must not be banned, if it must not.
    pub fn check(&self, net: &IpNet) -> Option<Refusal> {
        let host = net.addr();
        let single = net.prefix_len() == net.max_prefix_len();
        if let Some(why) = special(&host) {
            return Some(Refusal::Special(why));
        }
        // A network that starts outside a special range yet reaches into it
        // holds all of it, its first address included.
        if !single {
            if let Some(why) = SPECIAL_STARTS
                .iter()
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .find(|a| net.contains(a))
                .and_then(|a| special(&a))
            {
                return Some(Refusal::Special(why));
            }
        }
        if let Some(t) = self
            .trusted
            .iter()
            .find(|t| t.contains(net) || net.contains(*t))
        {
            return Some(Refusal::Trusted(*t));
        }
        if let Some(a) = self.own.iter().find(|a| net.contains(*a)) {
            return Some(Refusal::Own {
                addr: *a,
                covered: !single,
            });
        }
        if self.whitelist.overlap(net).is_some() {
            return Some(Refusal::Whitelisted {
                set: self.whitelist_name.clone(),
            });
        }
        None
    }

    /// `check` for a single address.
    pub fn check_addr(&self, a: &IpAddr) -> Option<Refusal> {
        self.check(&IpNet::from(*a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        crate::units::addr::parse_addr(s).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            trusted: vec![net("192.0.2.0/24"), net("2001:db8:1::/48")],
            whitelist: ["198.51.100.0/28", "203.0.113.7"]
                .map(net)
                .into_iter()
                .collect(),
            whitelist_name: "whitelist".into(),
            own: vec!["198.51.100.200".parse().unwrap()],
        }
    }

    #[test]
    fn members_find_the_network_that_holds_an_address() {
        let mut m = Members::default();
        for n in [
            "203.0.113.0/28",
            "198.51.100.7/32",
            "2001:db8:bad::/48",
            "10.0.0.0/8",
        ] {
            m.insert(net(n));
        }
        let holding = |s: &str| m.holding(&s.parse().unwrap()).map(|n| n.to_string());
        assert_eq!(holding("203.0.113.9").as_deref(), Some("203.0.113.0/28"));
        assert_eq!(holding("203.0.113.16"), None);
        assert_eq!(holding("198.51.100.7").as_deref(), Some("198.51.100.7/32"));
        assert_eq!(
            holding("2001:db8:bad:1::5").as_deref(),
            Some("2001:db8:bad::/48")
        );
        assert_eq!(holding("2001:db8:bae::1"), None);
        // The same bits in the other family are another address.
        assert_eq!(holding("::a00:1"), None);
        assert_eq!(
            m.overlap(&net("203.0.113.0/24")),
            Some(net("203.0.113.0/28"))
        );
        assert_eq!(
            m.overlap(&net("203.0.113.8/29")),
            Some(net("203.0.113.0/28"))
        );
        assert_eq!(m.overlap(&net("192.0.2.0/24")), None);
    }

    #[test]
    fn every_reason_and_networks_that_overlap_one() {
        let p = policy();
        let why = |s: &str| p.check(&net(s)).map(|r| r.to_string());
        assert_eq!(why("127.0.0.1").as_deref(), Some("loopback address"));
        assert_eq!(why("224.0.0.1").as_deref(), Some("not a unicast address"));
        assert_eq!(why("ff02::1").as_deref(), Some("not a unicast address"));
        assert_eq!(
            why("198.51.100.200").as_deref(),
            Some("this host's own address")
        );
        assert_eq!(
            why("198.51.100.128/25").as_deref(),
            Some("covers 198.51.100.200, this host's own address")
        );
        assert_eq!(
            why("192.0.2.7").as_deref(),
            Some("in trusted network 192.0.2.0/24 (config)")
        );
        assert!(why("2001:db8:1:2::9").unwrap().contains("trusted"));
        assert!(
            why("192.0.0.0/16").unwrap().contains("trusted"),
            "covers a trusted network"
        );
        assert_eq!(why("198.51.100.3").as_deref(), Some("in the whitelist set"));
        assert_eq!(why("203.0.113.7").as_deref(), Some("in the whitelist set"));
        assert_eq!(
            why("203.0.113.0/24").as_deref(),
            Some("in the whitelist set")
        );
        assert_eq!(
            why("198.51.100.0/24").as_deref(),
            Some("covers 198.51.100.200, this host's own address")
        );
        assert_eq!(why("203.0.113.5"), None);
        assert_eq!(why("2001:db8:2::1"), None);
        // A network over loopback or multicast addresses (a remote 96.0.0.0/3).
        assert_eq!(why("96.0.0.0/3").as_deref(), Some("loopback address"));
        assert_eq!(why("208.0.0.0/4"), None);
        assert_eq!(why("192.0.0.0/2").as_deref(), Some("not a unicast address"));
        assert_eq!(why("fe00::/7").as_deref(), Some("not a unicast address"));
        assert_eq!(why("3000::/4"), None);
    }
}
