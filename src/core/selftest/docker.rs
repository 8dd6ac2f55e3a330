//! What Docker writes, for the forward row's twin (`iptables-restore
//! --noflush` input, as Docker 24 lays it out; `tests/kernel_forward.rs`
//! builds the same). The daemon's chains exist before `fwctl apply` runs in
//! the twin, so apply finds `DOCKER-USER` as on a Docker host; a container's
//! rules (its DNATs and DOCKER's ACCEPTs) come when the row starts it, like
//! `docker run -p` after the firewall is up, so the other rows' ports are
//! never DNATed while they run.

use crate::core::config::forward::{Fallback, Protect};
use crate::core::config::{Config, Mode};
use std::net::IpAddr;

/// The first TCP [[service]] (`super::tcp_service`, which this module
/// cannot import: the parent imports it).
fn tcp_service(cfg: &Config) -> Option<usize> {
    cfg.services
        .iter()
        .position(|s| s.protocol == crate::core::config::Protocol::Tcp)
}

/// The container's own ports: host port `published[i]` maps to `80 + i`.
pub const CONTAINER_PORT: u16 = 80;

/// Whether the config hooks a forward chain in the twin. `auto` decides by
/// Docker's presence on the host, and the twin has no Docker of its own, so
/// only an explicit `docker` or `all` is checked (`off` and `auto`: none).
pub fn protected(cfg: &Config) -> bool {
    match cfg.forward.protect {
        Protect::Auto => false,
        p => p.resolve(false).is_some(),
    }
}

/// Why the forward row is skipped, if it is (`forward`: [`protected`]).
pub fn skip(cfg: &Config, forward: bool) -> Option<String> {
    if !forward {
        return Some(match cfg.forward.protect {
            Protect::Off => "[forward] protect = \"off\"".into(),
            _ => "no [forward] protect".into(),
        });
    }
    if cfg.mode == Mode::DetectionOnly {
        return Some("mode = \"detection_only\" drops nothing".into());
    }
    (cfg.forward.default == Fallback::Drop && tcp_service(cfg).is_none())
        .then(|| "default = \"drop\" and no TCP [[service]] to publish".into())
}

/// The published ports the row probes: the first TCP [[service]]'s port
/// (must pass), then a port the config does not use (passes with `default
/// = "accept"`, dropped with `"drop"`). Without a TCP service the free
/// port is the only one.
pub fn published(cfg: &Config) -> Vec<u16> {
    let service = tcp_service(cfg).map(|i| cfg.services[i].ports.first);
    let free = (8080..=u16::MAX)
        .chain(1024..8080)
        .find(|p| !super::twin::taken(cfg, *p));
    service.into_iter().chain(free).collect()
}

/// The daemon's chains for bridge `bridge` (network `net`): filter's
/// FORWARD with policy DROP and Docker's jumps, DOCKER-USER ending in
/// RETURN, the isolation stages; nat's DOCKER chain from PREROUTING and
/// OUTPUT for local destinations, MASQUERADE for the containers.
pub fn daemon(bridge: &str, net: &str) -> String {
    let b = bridge;
    format!(
        "*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n\
         :DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n\
         -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
         -A FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -o {b} -j DOCKER\n-A FORWARD -i {b} ! -o {b} -j ACCEPT\n\
         -A FORWARD -i {b} -o {b} -j ACCEPT\n\
         -A DOCKER-ISOLATION-STAGE-1 -i {b} ! -o {b} -j DOCKER-ISOLATION-STAGE-2\n\
         -A DOCKER-ISOLATION-STAGE-1 -j RETURN\n-A DOCKER-ISOLATION-STAGE-2 -o {b} -j DROP\n\
         -A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n\
         *nat\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -s {net} ! -o {b} -j MASQUERADE\n-A DOCKER -i {b} -j RETURN\nCOMMIT\n"
    )
}

/// A container at `ctr` publishing `ports` (host port `ports[i]` to the
/// container's `CONTAINER_PORT + i`): DOCKER's ACCEPT and nat's DNAT.
pub fn container(bridge: &str, ctr: IpAddr, ports: &[u16]) -> String {
    let b = bridge;
    let mut filter = String::from("*filter\n");
    let mut nat = String::from("*nat\n");
    for (i, p) in ports.iter().enumerate() {
        let c = CONTAINER_PORT + i as u16;
        filter +=
            &format!("-A DOCKER -d {ctr}/32 ! -i {b} -o {b} -p tcp -m tcp --dport {c} -j ACCEPT\n");
        nat += &format!(
            "-A DOCKER ! -i {b} -p tcp -m tcp --dport {p} -j DNAT --to-destination {ctr}:{c}\n"
        );
    }
    format!("{filter}COMMIT\n{nat}COMMIT\n")
}

/// The forward row's verdict from what its probes saw: the client's
/// connection to each published port (`reached`, in [`published`]'s
/// order), and whether the banned source's connection to the first one
/// went unanswered.
pub fn verdict(
    cfg: &Config,
    ports: &[u16],
    reached: &[bool],
    banned_silent: bool,
) -> (bool, String) {
    let drop = cfg.forward.default == Fallback::Drop;
    let has_service = tcp_service(cfg).is_some();
    let mut ok = banned_silent;
    let mut said = Vec::new();
    for (i, (p, r)) in ports.iter().zip(reached).enumerate() {
        // With "drop", only the service's port (the first) may pass.
        let want = !drop || (i == 0 && has_service);
        ok &= *r == want;
        let what = match (i == 0 && has_service, *r) {
            (true, true) => "service, reached",
            (true, false) => "service, not reached",
            (false, true) => "not a service, reached",
            (false, false) => "not a service, dropped",
        };
        said.push(format!("tcp/{p} ({what})"));
    }
    let first = ports.first().copied().unwrap_or(0);
    let ban = match banned_silent {
        true => "dropped",
        false => "answered",
    };
    (
        ok,
        format!(
            "published to the container: {}; the banned source to tcp/{first}: {ban}",
            said.join(", ")
        ),
    )
}
