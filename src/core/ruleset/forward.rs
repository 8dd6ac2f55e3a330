//! `[forward]`: what INPUT applies to new connections, applied to new
//! forwarded ones (pure, like the rest of the ruleset).
//!
//! `FWCTL-FORWARD` is jumped from the first rule of Docker's `DOCKER-USER`
//! (`protect = "docker"`) or of FORWARD (`"all"`). It judges NEW
//! connections only (with "docker", only DNATed ones: Docker's published
//! ports, so containers' own outgoing connections are never judged), and
//! never accepts: a connection it lets through goes back (RETURN) to the
//! next rule, Docker's, so Docker's isolation rules still apply. Whitelisted
//! sources are let through with the `whitelisted` line, throttled ones are
//! held to their rate, `[[service]]` ports (matched on the ORIGINAL
//! destination port, `--ctorigdstport`: the packet is already DNATed here)
//! get the `allowed` line, and with `default = "drop"` the rest gets the
//! `blocked` line and is dropped. Banned sources (blacklist, feeds) never get
//! here: the raw table drops them before conntrack, forwarded or not.
//!
//! The `blocked` line must show the port the scanner aimed at (host port
//! 8080), not the container's (80), or `scan` would report the wrong ports:
//! a LOG rule prints the packet as it is, and after DNAT that is the
//! container's port. So TCP SYNs are logged in the raw table, before DNAT,
//! where the port is still the original one. There it is not yet known
//! whether the packet goes to INPUT or FORWARD, but with `default = "drop"`
//! both would block it alike: a new TCP connection to one of this host's
//! addresses, from a source neither whitelisted, banned nor throttled, to a
//! port that is no service and no decoy. The raw rule logs it once and sets
//! the mark bit [`PRELOGGED`]; the `blocked` LOG rules of INPUT and of the
//! forward chain skip packets carrying it, so each is logged exactly once.
//! Other lines (UDP, `allowed`, `throttled`) are logged in the forward chain
//! and show the packet's port after DNAT.

use super::rules::{limiter, log_rule, prefix, rule, Chain, Match, Rule, Target};
use crate::core::config::forward::{Fallback, Hook, Protect};
use crate::core::config::{Config, Mode, PrefixPair};
use crate::units::addr::Family;
use crate::units::names::PortRange;

pub use crate::core::config::forward::DOCKER_USER;

/// fwctl's forward chain.
pub const CHAIN: &str = "FWCTL-FORWARD";
const WL: &str = "FWCTL-FWD-WHITELIST";
const THR_HARD: &str = "FWCTL-FWD-THROTTLE-HARD";
const THR_SOFT: &str = "FWCTL-FWD-THROTTLE-SOFT";
const ALLOW: &str = "FWCTL-FWD-ALLOW";
const FWD_BLOCK: &str = "FWCTL-FWD-BLOCK";

/// The forward chains fwctl may own in the filter table.
pub const CHAINS: [&str; 6] = [CHAIN, WL, THR_HARD, THR_SOFT, ALLOW, FWD_BLOCK];

pub use super::rules::PRELOGGED;

/// One family's forward part of the ruleset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardTable {
    pub protect: Protect,
    /// Where the jump goes: None until [`resolve`] decided "auto".
    pub hook: Option<Hook>,
    /// `FWCTL-FORWARD` first, then the chains it jumps to.
    pub chains: Vec<Chain>,
    /// Appended to the raw chain once resolved: the `blocked` line of a
    /// TCP SYN, before DNAT (empty unless `default = "drop"`).
    pub raw: Vec<Rule>,
}

/// The forward part of `family`'s table, or None for `protect = "off"`.
pub fn build(cfg: &Config, family: Family) -> Option<ForwardTable> {
    let protect = cfg.forward.protect;
    if protect == Protect::Off {
        return None;
    }
    let detect_only = cfg.mode == Mode::DetectionOnly;
    // fwctl never accepts forwarded traffic: what it lets through returns
    // to Docker's rules (or FORWARD's), which decide as before.
    let drop = if detect_only {
        Target::Return
    } else {
        Target::Drop
    };
    let prefix = |p: &PrefixPair| prefix(p, family);
    let log = |name: &str, p: &PrefixPair, audit: bool| log_rule(cfg, family, name, p, audit);
    let set = |base: &crate::units::names::SetName| Match::SrcSet(base.for_family(family.is_v6()));
    let drop_default = cfg.forward.default == Fallback::Drop;
    let prelog = drop_default && !detect_only;

    let mut main = vec![rule(vec![Match::NotCtState("NEW")], Target::Return)];
    if protect != Protect::All {
        // Published ports only: a container's own new connections out
        // (not DNATed) are not judged.
        main.push(rule(vec![Match::NotCtState("DNAT")], Target::Return));
    }
    // A connection let through leaves with a goto: the RETURN (or the end)
    // of the chain gone to returns to FWCTL-FORWARD's caller, so nothing
    // below (the default drop) sees it. Jumps come back here.
    main.push(rule(vec![set(&cfg.sets.whitelist)], Target::Goto(WL)));
    if detect_only {
        // The raw table does nothing in this mode: the bans log here.
        let bans = cfg
            .feeds
            .iter()
            .map(|f| {
                Match::SrcSet(
                    crate::core::config::intel::set_names(&f.name)[usize::from(family.is_v6())]
                        .clone(),
                )
            })
            .chain([set(&cfg.sets.blacklist)]);
        for m in bans {
            main.push(rule(
                vec![m.clone(), limiter("fwctl-log-bl", cfg.log_limit)],
                Target::Log(prefix(&cfg.prefixes.blacklisted)),
            ));
            main.push(rule(vec![m], Target::Return));
        }
    }
    main.push(rule(
        vec![set(&cfg.sets.throttle_hard)],
        Target::Jump(THR_HARD),
    ));
    main.push(rule(
        vec![set(&cfg.sets.throttle_soft)],
        Target::Jump(THR_SOFT),
    ));
    for (i, svc) in cfg.services.iter().enumerate() {
        // The same per-source bucket as INPUT's rule for this service.
        let mut m = vec![Match::OrigPort(svc.protocol.as_str(), svc.ports)];
        if let Some(limit) = svc.limit {
            m.push(limiter(&format!("fwctl-svc-{i}"), limit));
        }
        main.push(rule(m, Target::Goto(ALLOW)));
    }
    if drop_default {
        main.push(rule(vec![], Target::Jump(FWD_BLOCK)));
    }
    // Within its rate a throttled source goes on (RETURN to the caller);
    // over it, logged and dropped. The buckets are INPUT's.
    let throttle = |limit, name: &str, log_name: &str| {
        vec![
            rule(vec![limiter(name, limit)], Target::Return),
            log(log_name, &cfg.prefixes.throttled, false),
            rule(vec![], drop.clone()),
        ]
    };
    let mut block_log = log("fwctl-log-block", &cfg.prefixes.blocked, false);
    if prelog {
        block_log.matches.insert(0, Match::NotMarked);
    }
    let mut chains = vec![
        Chain {
            name: CHAIN,
            rules: main,
        },
        Chain {
            name: WL,
            rules: vec![
                log("fwctl-log-wl", &cfg.prefixes.whitelisted, true),
                rule(vec![], Target::Return),
            ],
        },
        Chain {
            name: THR_HARD,
            rules: throttle(cfg.throttle_hard, "fwctl-thr-hard", "fwctl-log-thh"),
        },
        Chain {
            name: THR_SOFT,
            rules: throttle(cfg.throttle_soft, "fwctl-thr-soft", "fwctl-log-ths"),
        },
        Chain {
            name: ALLOW,
            rules: vec![
                log("fwctl-log-allow", &cfg.prefixes.allowed, true),
                rule(vec![], Target::Return),
            ],
        },
    ];
    if drop_default {
        chains.push(Chain {
            name: FWD_BLOCK,
            rules: vec![block_log, rule(vec![], drop)],
        });
    }
    let raw = if prelog {
        raw_prelog(cfg, family)
    } else {
        Vec::new()
    };
    Some(ForwardTable {
        protect,
        hook: None,
        chains,
        raw,
    })
}

/// The raw chain's `blocked` line for a TCP SYN, before DNAT (see the
/// module's comment). The raw chain already let the loopback and the
/// whitelist through and dropped the bans; throttled sources, services and
/// decoys go on unlogged, as INPUT and the forward chain treat them.
fn raw_prelog(cfg: &Config, family: Family) -> Vec<Rule> {
    let prefix = prefix(&cfg.prefixes.blocked, family);
    let mut out = vec![
        rule(
            vec![Match::SrcSet(
                cfg.sets.throttle_hard.for_family(family.is_v6()),
            )],
            Target::Return,
        ),
        rule(
            vec![Match::SrcSet(
                cfg.sets.throttle_soft.for_family(family.is_v6()),
            )],
            Target::Return,
        ),
    ];
    let tcp = cfg
        .services
        .iter()
        .filter(|s| s.protocol.as_str() == "tcp")
        .map(|s| s.ports)
        .chain(
            cfg.capture
                .decoy_ports
                .iter()
                .map(|&p| PortRange { first: p, last: p }),
        );
    for ports in tcp {
        out.push(rule(vec![Match::Port("tcp", ports)], Target::Return));
    }
    out.push(rule(
        vec![
            Match::Syn,
            Match::DstLocal,
            limiter("fwctl-log-block", cfg.log_limit),
        ],
        Target::Log(prefix),
    ));
    out.push(rule(vec![Match::Syn, Match::DstLocal], Target::Mark));
    out
}

#[cfg(test)]
mod tests {
    use super::super::{render_raw, render_removal, render_table, resolve, Plan, TableState};
    use super::*;
    use std::path::Path;

    fn plan(text: &str) -> Plan {
        let c = Config::parse(text, Path::new("/t.toml"), &|_| Ok(String::new())).unwrap();
        super::super::build(&c)
    }

    const SVC: &str = "[[service]]\nname = \"web\"\nport = 8080\n";

    fn docker() -> TableState {
        TableState {
            docker_user: true,
            ..TableState::default()
        }
    }

    #[test]
    fn auto_hooks_into_docker_user_only_where_it_exists() {
        let p = plan(SVC);
        let none = TableState::default();
        let off = resolve(&p, &none, &none);
        assert!(off.v4.forward.is_none() && off.v6.forward.is_none());
        let text = render_table(&off.v4, &none);
        assert!(
            !text.contains("FORWARD") && !text.contains("DOCKER-USER"),
            "{text}"
        );
        let on = resolve(&p, &docker(), &none);
        assert_eq!(on.v4.forward.as_ref().unwrap().hook, Some(Hook::DockerUser));
        assert!(on.v6.forward.is_none(), "decided per family");
        let text = render_table(&on.v4, &docker());
        assert!(
            text.contains("\n-I DOCKER-USER 1 -j FWCTL-FORWARD\n"),
            "{text}"
        );
        assert_eq!(text.matches("-j FWCTL-FORWARD\n").count(), 1);
        assert!(!text.contains(":DOCKER-USER") && !text.contains("-N DOCKER-USER"));
        // "off" never hooks, even with Docker there.
        let p = plan(&format!("{SVC}[forward]\nprotect = \"off\"\n"));
        assert!(resolve(&p, &docker(), &docker()).v4.forward.is_none());
    }

    #[test]
    fn the_forward_chain_judges_new_dnated_connections_by_their_original_port() {
        let p = plan(&format!(
            "{SVC}[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\nrate = \"5/second\"\n\
             [forward]\nprotect = \"docker\"\n"
        ));
        let none = TableState::default();
        let r = resolve(&p, &none, &none);
        let text = render_table(&r.v4, &none);
        // Created (not declared: that would flush Docker's rules) when absent.
        assert!(text.contains("\n-N DOCKER-USER\n"), "{text}");
        let fwd: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A FWCTL-FORWARD "))
            .collect();
        assert_eq!(
            fwd,
            [
                "-A FWCTL-FORWARD -m conntrack ! --ctstate NEW -j RETURN",
                "-A FWCTL-FORWARD -m conntrack ! --ctstate DNAT -j RETURN",
                "-A FWCTL-FORWARD -m set --match-set whitelist src -g FWCTL-FWD-WHITELIST",
                "-A FWCTL-FORWARD -m set --match-set throttle-hard src -j FWCTL-FWD-THROTTLE-HARD",
                "-A FWCTL-FORWARD -m set --match-set throttle-soft src -j FWCTL-FWD-THROTTLE-SOFT",
                "-A FWCTL-FORWARD -p tcp -m conntrack --ctorigdstport 8080 -g FWCTL-FWD-ALLOW",
                "-A FWCTL-FORWARD -p udp -m conntrack --ctorigdstport 53 -m hashlimit --hashlimit-upto 5/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name fwctl-svc-1 -g FWCTL-FWD-ALLOW",
            ]
        );
        // fwctl never accepts forwarded traffic: Docker's rules still decide.
        let fwd_part: String = text
            .lines()
            .filter(|l| l.starts_with("-A FWCTL-FWD-") || l.starts_with("-A FWCTL-FORWARD"))
            .collect();
        assert!(!fwd_part.contains("ACCEPT"), "{fwd_part}");
        assert!(text.contains("-A FWCTL-FWD-ALLOW -j RETURN"));
        assert!(text.contains("-A FWCTL-FWD-THROTTLE-HARD -j DROP"));
        // default = "accept": no block chain, nothing logged before DNAT.
        assert!(!text.contains("FWCTL-FWD-BLOCK") && !text.contains("--mark"));
        assert!(!render_raw(&r.v4, &none).contains("MARK"));
        // "all": FORWARD itself, and every new routed connection.
        let p = plan(&format!("{SVC}[forward]\nprotect = \"all\"\n"));
        let text = render_table(&resolve(&p, &none, &none).v6, &none);
        assert!(text.contains("\n-I FORWARD 1 -j FWCTL-FORWARD\n"), "{text}");
        assert!(
            !text.contains("DNAT") && !text.contains("DOCKER-USER"),
            "{text}"
        );
    }

    #[test]
    fn default_drop_logs_syns_before_dnat_once_and_drops_the_rest() {
        let p = plan(&format!(
            "{SVC}[capture]\ndecoy_ports = [2323]\n[forward]\nprotect = \"docker\"\ndefault = \"drop\"\n"
        ));
        let r = resolve(&p, &docker(), &docker());
        let text = render_table(&r.v4, &docker());
        let lim = "-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 20 --hashlimit-mode srcip --hashlimit-name fwctl-log-block";
        assert!(
            text.contains("-A FWCTL-FORWARD -j FWCTL-FWD-BLOCK\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "-A FWCTL-FWD-BLOCK -m mark ! --mark 0x10000000/0x10000000 {lim} -j LOG --log-prefix \"IPTABLES-BLOCKED: \"\n\
             -A FWCTL-FWD-BLOCK -j DROP\n"
        )));
        // INPUT's blocked line skips what the raw table logged.
        assert!(text.contains(&format!(
            "-A FWCTL-BLOCK -m mark ! --mark 0x10000000/0x10000000 {lim} -j LOG"
        )));
        let raw = render_raw(&r.v4, &TableState::default());
        let tail = &raw[raw.find("--match-set blacklist src -j DROP\n").unwrap()..];
        assert!(tail.contains(&format!(
            "-A FWCTL-RAW -m set --match-set throttle-hard src -j RETURN\n\
             -A FWCTL-RAW -m set --match-set throttle-soft src -j RETURN\n\
             -A FWCTL-RAW -p tcp -m tcp --dport 8080 -j RETURN\n\
             -A FWCTL-RAW -p tcp -m tcp --dport 2323 -j RETURN\n\
             -A FWCTL-RAW -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m addrtype --dst-type LOCAL {lim} -j LOG --log-prefix \"IPTABLES-BLOCKED: \"\n\
             -A FWCTL-RAW -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m addrtype --dst-type LOCAL -j MARK --set-xmark 0x10000000/0x10000000\n"
        )), "{raw}");
        // Without forward protection INPUT's blocked line is as it was.
        let plain = render_table(&plan(SVC).v4, &TableState::default());
        assert!(!plain.contains("--mark") && !plain.contains("FORWARD"));
        // Detection-only: logs, never drops, nothing before DNAT.
        let p = plan(&format!(
            "mode = \"detection_only\"\n{SVC}[forward]\nprotect = \"all\"\ndefault = \"drop\"\n"
        ));
        let r = resolve(&p, &docker(), &docker());
        let text = render_table(&r.v4, &docker());
        assert!(!text.contains("DROP") && !text.contains("--mark"), "{text}");
        assert!(text.contains("-A FWCTL-FWD-BLOCK -j RETURN"));
        assert!(text.contains("--match-set blacklist src -j RETURN"));
    }

    #[test]
    fn old_forward_jumps_go_wherever_they_were_and_removal_takes_them() {
        let p = plan(&format!("{SVC}[forward]\nprotect = \"docker\"\n"));
        let now = TableState {
            docker_user: true,
            docker_user_jumps: 2,
            forward_jumps: 1,
            chains: [CHAIN.to_string()].into(),
            ..TableState::default()
        };
        let r = resolve(&p, &now, &now);
        let text = render_table(&r.v4, &now);
        assert_eq!(text.matches("-D DOCKER-USER -j FWCTL-FORWARD\n").count(), 2);
        assert_eq!(text.matches("-D FORWARD -j FWCTL-FORWARD\n").count(), 1);
        assert_eq!(
            text.matches("-I ").count(),
            2,
            "INPUT's and one forward jump"
        );
        // Turned off: the jumps go, the chain is flushed.
        let off = plan(&format!("{SVC}[forward]\nprotect = \"off\"\n"));
        let text = render_table(&resolve(&off, &now, &now).v4, &now);
        assert!(text.contains("-F FWCTL-FORWARD\n") && !text.contains("-I DOCKER-USER"));
        assert_eq!(text.matches("-D DOCKER-USER -j FWCTL-FORWARD\n").count(), 2);
        let rm = render_removal(&now);
        assert!(rm.contains("-D FORWARD -j FWCTL-FORWARD\n-D DOCKER-USER -j FWCTL-FORWARD\n-D DOCKER-USER -j FWCTL-FORWARD\n"), "{rm}");
        assert!(rm.contains("-X FWCTL-FORWARD\n") && !rm.contains("-X DOCKER-USER"));
    }
}
