//! What to do with each offender (pure): skip the addresses that must never
//! be banned, leave the ones already listed alone (their timeout stands), and
//! ask for the rest in one batch of set changes.

use super::count::Source;
use crate::core::policy::{Members, Policy};
use crate::core::sets::SetOp;
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Added,
    WouldAdd,
    AlreadyListed,
    /// Already dropped: a member of the blacklist covers it (the set and
    /// the member, e.g. "blacklist 203.0.113.0/28").
    AlreadyBlocked(String),
    Skipped(String),
}

/// An [`Action`] without its why: the report's `action`, written as
/// [`ActionKind::word`] in the JSON and the text alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ActionKind {
    #[serde(rename = "added")]
    Added,
    #[serde(rename = "would add")]
    WouldAdd,
    #[serde(rename = "already listed")]
    AlreadyListed,
    #[serde(rename = "already blocked")]
    AlreadyBlocked,
    #[serde(rename = "skipped")]
    Skipped,
}

impl ActionKind {
    pub const ALL: [ActionKind; 5] = [
        ActionKind::Added,
        ActionKind::WouldAdd,
        ActionKind::AlreadyListed,
        ActionKind::AlreadyBlocked,
        ActionKind::Skipped,
    ];

    pub fn word(self) -> &'static str {
        match self {
            ActionKind::Added => "added",
            ActionKind::WouldAdd => "would add",
            ActionKind::AlreadyListed => "already listed",
            ActionKind::AlreadyBlocked => "already blocked",
            ActionKind::Skipped => "skipped",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Added => ActionKind::Added,
            Action::WouldAdd => ActionKind::WouldAdd,
            Action::AlreadyListed => ActionKind::AlreadyListed,
            Action::AlreadyBlocked(_) => ActionKind::AlreadyBlocked,
            Action::Skipped(_) => ActionKind::Skipped,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Action::Skipped(r) => Some(r),
            _ => None,
        }
    }

    /// What already blocks the address ("blacklist 203.0.113.0/28").
    pub fn blocked_by(&self) -> Option<&str> {
        match self {
            Action::AlreadyBlocked(b) => Some(b),
            _ => None,
        }
    }
}

/// What the config and the kernel say about addresses.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Who is never banned.
    pub policy: Policy,
    /// Members of the target sets (both families).
    pub listed: Members,
    /// Members of the blacklist (the config's and the kernel's, both
    /// families), and the blacklist's kernel names (IPv4, IPv6).
    pub blocked: Members,
    pub blocked_names: [String; 2],
    /// Free entries in the v4 and v6 target sets (None: unknown).
    pub room: [Option<u64>; 2],
    /// The prefix IPv6 offenders were counted by (None or 128: each
    /// address): an offender is banned as that network.
    pub v6_prefix: Option<u8>,
}

impl Known {
    /// What an offender stands for: its address, or its IPv6 network.
    pub fn net_of(&self, a: IpAddr) -> IpNet {
        match (a, self.v6_prefix) {
            (IpAddr::V6(_), Some(p)) if p < 128 => IpNet::new(a, p).expect("prefix <= 128").trunc(),
            _ => IpNet::from(a),
        }
    }
}

/// The member of `m` that holds all of `net`.
fn covering(m: &Members, net: &IpNet) -> Option<IpNet> {
    m.holding(&net.addr()).filter(|h| h.contains(net))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub addr: IpAddr,
    /// What is banned: the address, or the network it was counted by.
    pub net: IpNet,
    pub source: Source,
    /// The set it goes (or would go) into.
    pub set: String,
    pub action: Action,
}

/// `sets` are the target set names (v4, v6). With `apply` false nothing is
/// added and the actions say "would add".
pub fn decide(
    offenders: Vec<(IpAddr, Source)>,
    known: &Known,
    sets: &[String; 2],
    apply: bool,
) -> Vec<Decision> {
    let mut room = known.room;
    offenders
        .into_iter()
        .map(|(addr, source)| {
            let fam = usize::from(addr.is_ipv6());
            let net = known.net_of(addr);
            let single = net.prefix_len() == net.max_prefix_len();
            let refusal = if single {
                known.policy.check_addr(&addr)
            } else {
                known.policy.check(&net)
            };
            let action = if let Some(why) = refusal {
                Action::Skipped(why.to_string())
            } else if covering(&known.listed, &net).is_some() {
                Action::AlreadyListed
            } else if let Some(net) = covering(&known.blocked, &net) {
                Action::AlreadyBlocked(format!(
                    "{} {}",
                    known.blocked_names[fam],
                    crate::units::addr::member(&net)
                ))
            } else if room[fam] == Some(0) {
                Action::Skipped(format!("{} is full (maxelem reached)", sets[fam]))
            } else {
                if let Some(r) = &mut room[fam] {
                    *r -= 1;
                }
                if apply {
                    Action::Added
                } else {
                    Action::WouldAdd
                }
            };
            Decision {
                addr,
                net,
                source,
                set: sets[fam].clone(),
                action,
            }
        })
        .collect()
}

/// The one batch adding every decision to be added, grouped by family
/// (IPv4 first). A timeout beyond what the kernel takes is the kernel's
/// longest (the option's parser keeps it far below).
pub fn ops(decisions: &[Decision], timeout_secs: u64) -> Vec<SetOp> {
    let timeout = Some(u32::try_from(timeout_secs).unwrap_or(u32::MAX));
    let mut out = Vec::new();
    for v6 in [false, true] {
        for d in decisions
            .iter()
            .filter(|d| d.action == Action::Added && d.addr.is_ipv6() == v6)
        {
            out.push(SetOp::Add {
                set: d.set.clone(),
                net: d.net,
                timeout,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON report says what the text says, as it always did.
    #[test]
    fn an_action_kind_serializes_as_its_word() {
        let words: Vec<String> = ActionKind::ALL
            .iter()
            .map(|k| serde_json::to_string(k).unwrap())
            .collect();
        assert_eq!(
            words,
            [
                "\"added\"",
                "\"would add\"",
                "\"already listed\"",
                "\"already blocked\"",
                "\"skipped\""
            ]
        );
        for k in ActionKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
    }
    use crate::core::scan::count::TopPorts;

    fn src(hits: u64) -> Source {
        Source {
            hits,
            first: 0,
            last: 1,
            ports: TopPorts::default(),
            marks: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sets() -> [String; 2] {
        ["throttle-hard".into(), "throttle-hard_v6".into()]
    }

    #[test]
    fn an_ipv6_offender_counted_per_64_is_banned_as_the_64() {
        let known = Known {
            policy: Policy {
                trusted: vec!["2001:db8:7:7::99/128".parse().unwrap()],
                ..Policy::default()
            },
            listed: ["2001:db8:5::/48", "2001:db8:6:6::1/128"]
                .map(|s| s.parse::<IpNet>().unwrap())
                .into_iter()
                .collect(),
            v6_prefix: Some(64),
            ..Known::default()
        };
        let offenders = [
            "2001:db8:1:2::",
            "2001:db8:5:1::",
            "2001:db8:6:6::",
            "2001:db8:7:7::",
            "203.0.113.9",
        ]
        .map(|a| (ip(a), src(9)))
        .to_vec();
        let d = decide(offenders, &known, &sets(), true);
        let got: Vec<(String, Action)> = d
            .iter()
            .map(|d| (crate::units::addr::member(&d.net), d.action.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("2001:db8:1:2::/64".to_string(), Action::Added),
                // A wider member holds all of it.
                ("2001:db8:5:1::/64".to_string(), Action::AlreadyListed),
                // One address of it listed: the /64 still goes in.
                ("2001:db8:6:6::/64".to_string(), Action::Added),
                (
                    "2001:db8:7:7::/64".to_string(),
                    Action::Skipped("in trusted network 2001:db8:7:7::99/128 (config)".into())
                ),
                ("203.0.113.9".to_string(), Action::Added),
            ]
        );
        let ops = ops(&d, 60);
        assert!(ops.contains(&SetOp::Add {
            set: "throttle-hard_v6".into(),
            net: "2001:db8:1:2::/64".parse().unwrap(),
            timeout: Some(60)
        }));
    }

    #[test]
    fn each_reason_to_skip_and_the_rest_added_to_their_familys_set() {
        let known = Known {
            policy: Policy {
                trusted: vec!["192.0.2.0/28".parse().unwrap()],
                whitelist: ["198.51.100.0/24", "203.0.113.7/32"]
                    .map(|s| s.parse::<IpNet>().unwrap())
                    .into_iter()
                    .collect(),
                whitelist_name: "whitelist".into(),
                own: vec![ip("203.0.113.1"), ip("2001:db8::1")],
            },
            listed: [IpNet::from(ip("203.0.113.50"))].into_iter().collect(),
            room: [None, None],
            ..Known::default()
        };
        let cases = [
            ("127.0.0.1", Action::Skipped("loopback address".into())),
            ("::1", Action::Skipped("loopback address".into())),
            ("0.0.0.0", Action::Skipped("not a unicast address".into())),
            ("ff02::1", Action::Skipped("not a unicast address".into())),
            (
                "203.0.113.1",
                Action::Skipped("this host's own address".into()),
            ),
            (
                "2001:db8::1",
                Action::Skipped("this host's own address".into()),
            ),
            (
                "192.0.2.9",
                Action::Skipped("in trusted network 192.0.2.0/28 (config)".into()),
            ),
            (
                "198.51.100.77",
                Action::Skipped("in the whitelist set".into()),
            ),
            (
                "203.0.113.7",
                Action::Skipped("in the whitelist set".into()),
            ),
            ("203.0.113.50", Action::AlreadyListed),
            ("192.0.2.16", Action::Added),
            ("2001:db8::66", Action::Added),
        ];
        let offenders = cases.iter().map(|(a, _)| (ip(a), src(9))).collect();
        let d = decide(offenders, &known, &sets(), true);
        for (got, (addr, want)) in d.iter().zip(&cases) {
            assert_eq!(&got.action, want, "{addr}");
        }
        assert_eq!(d[11].set, "throttle-hard_v6");
        let add = |set: &str, a: &str| SetOp::Add {
            set: set.into(),
            net: IpNet::from(ip(a)),
            timeout: Some(7200),
        };
        assert_eq!(
            ops(&d, 7200),
            [
                add("throttle-hard", "192.0.2.16"),
                add("throttle-hard_v6", "2001:db8::66")
            ]
        );
        let dry = decide(vec![(ip("192.0.2.16"), src(9))], &known, &sets(), false);
        assert_eq!(dry[0].action, Action::WouldAdd);
        assert_eq!(ops(&dry, 7200), []);
    }

    #[test]
    fn an_offender_the_blacklist_covers_is_already_blocked() {
        let mut blocked = Members::default();
        blocked.insert("203.0.113.0/28".parse().unwrap());
        blocked.insert("2001:db8:bad::/48".parse().unwrap());
        let known = Known {
            blocked,
            blocked_names: ["blacklist".into(), "blacklist_v6".into()],
            listed: [IpNet::from(ip("203.0.113.3"))].into_iter().collect(),
            ..Known::default()
        };
        let offenders = vec![
            (ip("203.0.113.1"), src(9)),
            (ip("2001:db8:bad::2"), src(9)),
            (ip("203.0.113.3"), src(9)),
            (ip("203.0.113.77"), src(9)),
        ];
        let d = decide(offenders, &known, &sets(), true);
        assert_eq!(
            d[0].action,
            Action::AlreadyBlocked("blacklist 203.0.113.0/28".into())
        );
        assert_eq!(
            d[1].action,
            Action::AlreadyBlocked("blacklist_v6 2001:db8:bad::/48".into())
        );
        assert_eq!(
            d[2].action,
            Action::AlreadyListed,
            "its own set's timeout stands"
        );
        assert_eq!(d[3].action, Action::Added);
        assert_eq!(
            ops(&d, 60),
            [SetOp::Add {
                set: "throttle-hard".into(),
                net: IpNet::from(ip("203.0.113.77")),
                timeout: Some(60)
            }]
        );
    }

    #[test]
    fn a_full_set_takes_what_fits() {
        let known = Known {
            room: [Some(1), None],
            ..Known::default()
        };
        let offenders = vec![
            (ip("192.0.2.20"), src(9)),
            (ip("192.0.2.21"), src(8)),
            (ip("2001:db8::5"), src(7)),
        ];
        let d = decide(offenders, &known, &sets(), true);
        assert_eq!(d[0].action, Action::Added);
        assert_eq!(
            d[1].action,
            Action::Skipped("throttle-hard is full (maxelem reached)".into())
        );
        assert_eq!(d[2].action, Action::Added);
    }
}
