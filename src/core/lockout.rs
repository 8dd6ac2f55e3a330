//! Would a ruleset lock out someone connected now? (pure) `apply` and
//! `doctor` ask it before the ruleset is installed: for each established
//! connection into this host, would a NEW connection from the same peer to
//! the same port pass the ruleset as data (the [`Plan`] that is rendered to
//! iptables-restore input), or be dropped? The chains are walked as the
//! kernel walks them, for the first packet of a new TCP connection from a
//! peer on a network interface: what the config lets in (a `[[service]]`,
//! a `[trusted]` network, a decoy port), what it keeps out (the static
//! blacklist, a feed's last copy) and the mode (`detection_only` drops
//! nothing) all decide, since all are in the plan.

use super::conns::{is_local, Conn};
use super::ruleset::{Chain, Match, Plan, Table, Target, MAIN_CHAIN};
use std::net::IpAddr;

/// A peer connected now whose new connections to `port` the ruleset drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    pub peer: IpAddr,
    pub port: u16,
}

impl Lockout {
    /// One line naming the peer, the port and the two fixes.
    pub fn line(&self) -> String {
        let (peer, port) = (self.peer, self.port);
        format!(
            "{peer} is connected to port {port} now, and the new ruleset drops its new connections to that port; fix: a [[service]] with port = {port} (tcp), or {peer} (or its network) in [trusted] networks"
        )
    }
}

/// The first packet of a new TCP connection from `peer` to `port`.
struct NewTcp {
    peer: IpAddr,
    port: u16,
}

/// Chains jump at most this deep (fwctl's jump one level; a bound anyway).
const DEPTH: usize = 8;

fn matches(m: &Match, p: &NewTcp, plan: &Plan) -> bool {
    match m {
        // It came in on a network interface, not lo.
        Match::InIface(_) => false,
        Match::CtState(states) => states.split(',').any(|s| s == "NEW"),
        Match::CtDir(d) => *d == "ORIGINAL",
        Match::SrcSet(name) => plan
            .sets
            .iter()
            .find(|s| &s.name == name)
            .is_some_and(|s| s.members.iter().any(|n| n.contains(&p.peer))),
        Match::Port(proto, ports) => {
            *proto == "tcp" && (ports.first..=ports.last).contains(&p.port)
        }
        Match::Icmp(_) | Match::Icmp6(_) => false,
        // A peer's first new connection is within any per-source rate.
        Match::HashLimit { .. } => true,
        // ... and has sent no bytes yet.
        Match::BytesAbove { .. } => false,
        // Forward and raw matches: not on INPUT's path of a peer's SYN
        // (the raw table only logs it; its mark skips a LOG rule).
        Match::NotCtState(states) => !states.split(',').any(|s| s == "NEW"),
        Match::OrigPort(proto, ports) => {
            *proto == "tcp" && (ports.first..=ports.last).contains(&p.port)
        }
        Match::Syn | Match::DstLocal | Match::NotMarked | Match::Limit { .. } => true,
        Match::NotSyn => false,
    }
}

/// The verdict of `chain` (Some(accepted)), or None when it returns.
fn walk(table: &Table, chain: &Chain, p: &NewTcp, plan: &Plan, depth: usize) -> Option<bool> {
    for rule in &chain.rules {
        if !rule.matches.iter().all(|m| matches(m, p, plan)) {
            continue;
        }
        match &rule.target {
            Target::Accept => return Some(true),
            Target::Drop => return Some(false),
            Target::Return => return None,
            Target::Log(_) | Target::Mark | Target::Nflog { .. } => {}
            Target::Jump(name) => {
                let next = table.chains.iter().find(|c| c.name == *name)?;
                if depth < DEPTH {
                    if let Some(v) = walk(table, next, p, plan, depth + 1) {
                        return Some(v);
                    }
                }
            }
            // Its verdict, or (it returned) this chain's return.
            Target::Goto(name) => {
                let next = table.chains.iter().find(|c| c.name == *name)?;
                return if depth < DEPTH {
                    walk(table, next, p, plan, depth + 1)
                } else {
                    None
                };
            }
        }
    }
    None
}

/// Whether a new TCP connection from `peer` to `port` gets through `plan`:
/// the raw chain first (PREROUTING, where banned sources are dropped; an
/// ACCEPT there only ends the raw table), then the filter table's INPUT.
pub fn accepts(plan: &Plan, peer: IpAddr, port: u16) -> bool {
    let peer = peer.to_canonical();
    let table = if peer.is_ipv6() { &plan.v6 } else { &plan.v4 };
    let p = NewTcp { peer, port };
    if walk(table, &table.raw, &p, plan, 0) == Some(false) {
        return false;
    }
    let main = table.chains.iter().find(|c| c.name == MAIN_CHAIN);
    main.and_then(|c| walk(table, c, &p, plan, 0))
        .unwrap_or(!table.drop_policy)
}

/// The connected peers (loopback and this host's own addresses excepted:
/// they come over lo) whose new connections to the port they are connected
/// to `plan` would drop, each (peer, port) once, in order.
pub fn check(plan: &Plan, conns: &[Conn], own: &[IpAddr]) -> Vec<Lockout> {
    let mut out: Vec<Lockout> = Vec::new();
    for c in conns {
        let (peer, port) = (c.peer.ip().to_canonical(), c.local.port());
        if is_local(peer, own) || out.iter().any(|l| l.peer == peer && l.port == port) {
            continue;
        }
        if !accepts(plan, peer, port) {
            out.push(Lockout { peer, port });
        }
    }
    out.sort_by_key(|l| (l.port, l.peer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::core::ruleset::build;
    use std::path::Path;

    fn plan(text: &str) -> Plan {
        build(&Config::parse(text, Path::new("/t.toml"), &|_| Ok(String::new())).unwrap())
    }

    fn conn(local: &str, peer: &str) -> Conn {
        Conn {
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
        }
    }

    const ADMIN: &str = "203.0.113.5";

    fn admin_on(port: u16) -> Vec<Conn> {
        vec![conn(
            &format!("198.51.100.1:{port}"),
            &format!("{ADMIN}:50000"),
        )]
    }

    #[test]
    fn a_config_without_the_ssh_port_locks_the_admin_out() {
        let web = "[[service]]\nname = \"web\"\nport = 443\n";
        let l = check(&plan(web), &admin_on(22), &[]);
        assert_eq!(
            l,
            [Lockout {
                peer: ADMIN.parse().unwrap(),
                port: 22
            }]
        );
        let line = l[0].line();
        for want in [ADMIN, "port 22", "[[service]] with port = 22", "[trusted]"] {
            assert!(line.contains(want), "{want}: {line}");
        }
        // The admin connected to the web port is not locked out of it.
        assert!(check(&plan(web), &admin_on(443), &[]).is_empty());
    }

    #[test]
    fn a_service_trust_or_detection_only_lets_the_peer_back_in() {
        let admin = admin_on(22);
        for ok in [
            "[[service]]\nname = \"ssh\"\nport = 22\n",
            "[[service]]\nname = \"range\"\nport = \"20-30\"\nrate = \"1/minute\"\n",
            "[trusted]\nnetworks = [\"203.0.113.0/24\"]\n",
            "mode = \"detection_only\"\n",
            // The whitelist wins over the blacklist, as in the kernel.
            "[trusted]\nnetworks = [\"203.0.113.5\"]\n[blacklist]\nentries = [\"203.0.113.0/24\"]\n",
        ] {
            assert!(check(&plan(ok), &admin, &[]).is_empty(), "{ok}");
        }
        for locked in [
            "",
            "mode = \"corporate\"\n",
            "[[service]]\nname = \"dns\"\nport = 22\nprotocol = \"udp\"\n",
            "[trusted]\nnetworks = [\"2001:db8::/32\"]\n",
            "[[service]]\nname = \"ssh\"\nport = 22\n[blacklist]\nentries = [\"203.0.113.5\"]\n",
            "[capture]\ndecoy_ports = [2323]\n",
        ] {
            assert_eq!(check(&plan(locked), &admin, &[]).len(), 1, "{locked}");
        }
        // A decoy port lets anyone in (to be banned by capture).
        assert!(check(
            &plan("[capture]\ndecoy_ports = [2323]\n"),
            &admin_on(2323),
            &[]
        )
        .is_empty());
    }

    #[test]
    fn ipv6_mapped_loopback_and_own_peers() {
        let p = plan("[trusted]\nnetworks = [\"2001:db8:7::/48\"]\n");
        let conns = [
            conn("[2001:db8::1]:22", "[2001:db8:7::9]:40000"),
            conn("[2001:db8::1]:22", "[2001:db8:8::9]:40000"),
            conn("[2001:db8::1]:22", "[2001:db8:8::9]:40001"),
            // An IPv4 peer seen through a dual-stack socket.
            conn("[::ffff:198.51.100.1]:22", "[::ffff:203.0.113.5]:40000"),
            conn("127.0.0.1:22", "127.0.0.1:40000"),
            conn("[::1]:22", "[::1]:40000"),
            conn("198.51.100.1:22", "198.51.100.1:40000"),
        ];
        let own = ["198.51.100.1".parse().unwrap()];
        let l = check(&p, &conns, &own);
        let got: Vec<String> = l.iter().map(|l| format!("{} {}", l.peer, l.port)).collect();
        assert_eq!(got, ["203.0.113.5 22", "2001:db8:8::9 22"]);
    }

    #[test]
    fn the_static_blacklist_and_a_feed_keep_a_peer_out_of_a_service() {
        let mut p = plan(
            "[[service]]\nname = \"ssh\"\nport = 22\n[[feed]]\nname = \"drop\"\nurl = \"https://feeds.example.net/drop.txt\"\n",
        );
        assert!(accepts(&p, ADMIN.parse().unwrap(), 22));
        let feed = p
            .sets
            .iter_mut()
            .find(|s| s.name.contains("drop") && !s.name.ends_with("_v6"))
            .unwrap();
        feed.members.push("203.0.113.0/24".parse().unwrap());
        assert!(!accepts(&p, ADMIN.parse().unwrap(), 22));
        assert!(accepts(&p, "198.51.100.77".parse().unwrap(), 22));
    }

    /// The bans moved to the raw table: a walk of the filter chains alone
    /// would let a blacklisted peer in.
    #[test]
    fn the_raw_chain_is_walked_before_the_filter_table() {
        let p = plan("[[service]]\nname = \"ssh\"\nport = 22\n[blacklist]\nentries = [\"203.0.113.0/24\", \"2001:db8:9::/48\"]\n");
        for banned in [ADMIN, "2001:db8:9::1"] {
            assert!(!accepts(&p, banned.parse().unwrap(), 22), "{banned}");
        }
        assert!(accepts(&p, "2001:db8:8::1".parse().unwrap(), 22));
        // Whitelisted: let through raw, then accepted by filter's whitelist.
        let wl = plan("[trusted]\nnetworks = [\"203.0.113.5\"]\n[blacklist]\nentries = [\"203.0.113.0/24\"]\n");
        assert!(accepts(&wl, ADMIN.parse().unwrap(), 9999));
    }
}
