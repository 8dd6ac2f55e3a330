//! `fwctl selftest` as data: which checks a config gets (one row each, or a
//! row "skipped" with the reason), how a row reads in the table and in JSON,
//! and the exit code of a run. The namespaces and packets are `sys::selftest`'s;
//! the wiring is `cmd::selftest`. Addresses, ports and the twin's config are in
//! [`twin`].

pub mod docker;
pub mod twin;

use super::config::{Config, Mode, Protocol, Service};
use serde::Serialize;
use std::collections::BTreeSet;

/// What a row says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skipped",
        }
    }
}

/// What a row checks. `Service(i)`: the config's i-th [[service]].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Apply,
    Service(usize),
    ClosedPort,
    Blacklisted,
    Fed,
    Throttled,
    Whitelist,
    Neighbour,
    ScanBans,
    CaptureScan,
    CaptureDecoy,
    Forward,
}

/// A row to run, or to report skipped with `skip` as its detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub check: Check,
    pub name: String,
    pub skip: Option<String>,
}

/// One result row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub check: String,
    pub result: Verdict,
    pub detail: String,
}

impl Row {
    pub fn new(name: &str, result: Verdict, detail: impl Into<String>) -> Row {
        Row {
            check: name.to_string(),
            result,
            detail: detail.into(),
        }
    }
}

/// Most ports a capture SYN-scan check sends (a custom profile may ask for
/// more distinct ports than a bounded check should probe).
pub const MAX_SCAN_PORTS: u32 = 256;

/// A [[service]] row's name: `service NAME (PROTO/PORT)`.
pub fn service_name(cfg: &Config, i: usize) -> String {
    let s = &cfg.services[i];
    format!(
        "service {} ({}/{})",
        s.name,
        s.protocol.as_str(),
        s.ports.first
    )
}

/// The first TCP [[service]], the one the drop checks aim at: a dropped
/// source must fail to reach a port that a clean one reaches.
pub fn tcp_service(cfg: &Config) -> Option<usize> {
    cfg.services
        .iter()
        .position(|s| s.protocol == Protocol::Tcp)
}

/// The first TCP [[service]] with a rate (the throttle check's).
pub fn throttled_service(cfg: &Config) -> Option<usize> {
    cfg.services
        .iter()
        .position(|s| s.protocol == Protocol::Tcp && s.limit.is_some())
}

/// The largest burst the throttle row exceeds (it opens 2 x burst + 5
/// connections at once, file descriptors included).
pub const MAX_BURST: u32 = 200;
/// The fastest rate the throttle row can prove: above it the bucket refills
/// while the connections are still being opened.
pub const MAX_RATE_PER_SECOND: f64 = 100.0;

/// Why a service's rate cannot be shown to bite with a bounded burst of
/// connections, if it cannot.
fn unprovable(l: crate::core::config::Limit) -> Option<String> {
    if l.burst > MAX_BURST {
        return Some(format!("burst {} is over selftest's {MAX_BURST}", l.burst));
    }
    (l.rate.per_second() > MAX_RATE_PER_SECOND).then(|| {
        format!(
            "rate {} is over selftest's {MAX_RATE_PER_SECOND}/second",
            l.rate
        )
    })
}

/// The rows `cfg` gets, in the order they run. `forward`: whether the
/// twin hooks a forward chain ([`docker::protected`]).
pub fn plan(cfg: &Config, forward: bool) -> Vec<Planned> {
    let mut v = Vec::new();
    let mut add = |check, name: String, skip: Option<String>| v.push(Planned { check, name, skip });
    let no_drop = (cfg.mode == Mode::DetectionOnly)
        .then(|| "mode = \"detection_only\" drops nothing".to_string());
    let no_tcp = tcp_service(cfg)
        .is_none()
        .then(|| "no TCP [[service]] to aim at".to_string());
    add(Check::Apply, "ruleset applies in the twin".into(), None);
    for i in 0..cfg.services.len() {
        add(Check::Service(i), service_name(cfg, i), None);
    }
    add(
        Check::ClosedPort,
        "closed port dropped and logged".into(),
        no_drop.clone(),
    );
    add(
        Check::Blacklisted,
        "blacklisted address dropped".into(),
        no_drop.clone().or(no_tcp.clone()),
    );
    let no_feed = cfg
        .feeds
        .is_empty()
        .then(|| "no [[feed]] configured".to_string());
    add(
        Check::Fed,
        "fed address dropped".into(),
        no_feed.or(no_drop.clone()).or(no_tcp.clone()),
    );
    let throttled = match throttled_service(cfg) {
        Some(i) => format!(
            "throttled service refuses over its rate ({})",
            cfg.services[i].name
        ),
        None => "throttled service refuses over its rate".into(),
    };
    let no_rate = match throttled_service(cfg).and_then(|i| cfg.services[i].limit) {
        None => Some("no TCP [[service]] has a rate".to_string()),
        Some(l) => unprovable(l),
    };
    add(Check::Throttled, throttled, no_rate.or(no_drop.clone()));
    let no_trusted = twin::trusted_source(cfg)
        .is_none()
        .then(|| "no [trusted] network with an address usable on a link".to_string());
    add(Check::Whitelist, "whitelist gets in".into(), no_trusted);
    add(
        Check::Neighbour,
        "IPv6 neighbour discovery works".into(),
        None,
    );
    add(
        Check::ScanBans,
        "LOG line reaches scan and bans".into(),
        no_drop.clone(),
    );
    let no_ban = (cfg.mode == Mode::DetectionOnly)
        .then(|| "mode = \"detection_only\": capture bans nothing".to_string());
    let too_many = (cfg.capture.profile.ports > MAX_SCAN_PORTS).then(|| {
        format!(
            "the capture profile needs {} ports, over selftest's {MAX_SCAN_PORTS}",
            cfg.capture.profile.ports
        )
    });
    add(
        Check::CaptureScan,
        "capture bans a SYN scan".into(),
        no_ban.clone().or(too_many),
    );
    let no_decoy = cfg
        .capture
        .decoy_ports
        .is_empty()
        .then(|| "no [capture] decoy_ports".to_string());
    add(
        Check::CaptureDecoy,
        "capture bans a decoy handshake".into(),
        no_decoy.or(no_ban),
    );
    add(
        Check::Forward,
        "forward chain holds".into(),
        docker::skip(cfg, forward),
    );
    v
}

/// The exit code: 0 when no row failed, 1 when one did. (2, "selftest
/// could not run", never comes from rows.)
pub fn exit_code(rows: &[Row]) -> u8 {
    match rows.iter().any(|r| r.result == Verdict::Fail) {
        true => 1,
        false => 0,
    }
}

/// The table: one row a line, columns padded to the widest cell.
pub fn table(rows: &[Row]) -> String {
    let w = rows
        .iter()
        .map(|r| r.check.chars().count())
        .chain(["CHECK".len()])
        .max()
        .unwrap_or(0);
    let mut s = format!("{:<w$}  {:<7}  DETAIL\n", "CHECK", "RESULT");
    for r in rows {
        s += &format!("{:<w$}  {:<7}  {}\n", r.check, r.result.as_str(), r.detail);
    }
    s.trim_end_matches(' ').to_string()
}

/// The last line under the table.
pub fn summary(rows: &[Row], elapsed_ms: u64) -> String {
    let n = |v| rows.iter().filter(|r| r.result == v).count();
    format!(
        "selftest: {} passed, {} failed, {} skipped in {:.1} s",
        n(Verdict::Pass),
        n(Verdict::Fail),
        n(Verdict::Skipped),
        elapsed_ms as f64 / 1000.0
    )
}

/// The `--json` document.
pub fn json(rows: &[Row], elapsed_ms: u64) -> String {
    let doc = serde_json::json!({
        "ok": exit_code(rows) == 0,
        "elapsed_ms": elapsed_ms,
        "checks": rows,
    });
    serde_json::to_string_pretty(&doc).expect("json") + "\n"
}

/// The ports this host serves now: listening TCP sockets and bound
/// (unconnected) UDP ones, from /proc/net/{tcp,tcp6,udp,udp6}.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    pub tcp: BTreeSet<u16>,
    pub udp: BTreeSet<u16>,
}

/// The local ports of one /proc/net/tcp or udp table's sockets in state
/// LISTEN (0A, TCP) or UNCONN (07, UDP); lines that do not parse are skipped.
pub fn proc_net_ports(text: &str, tcp: bool) -> BTreeSet<u16> {
    let want = if tcp { "0A" } else { "07" };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit_once(':')?.1;
            (f.get(3)? == &want).then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// A [[service]] whose protocol is the wrong one for what this host runs:
/// something serves its port with the other protocol and nothing with its
/// own (sshd on tcp/2222 behind `protocol = "udp"`). The twin opens what the
/// config says, so only this comparison sees the mistake.
pub fn wrong_protocol(s: &Service, l: &Listening) -> Option<String> {
    let (own, other, other_name) = match s.protocol {
        Protocol::Tcp => (&l.tcp, &l.udp, "udp"),
        Protocol::Udp => (&l.udp, &l.tcp, "tcp"),
    };
    let range = s.ports.first..=s.ports.last;
    let p = other.range(range.clone()).next()?;
    if own.range(range).next().is_some() {
        return None;
    }
    Some(format!(
        "this host serves {other_name}/{p}, not {}/{p}: protocol = \"{other_name}\"?",
        s.protocol.as_str()
    ))
}

/// Whether `fwctl list SET --json` (its text) shows `addr` in `set`.
pub fn listed(list_json: &str, set: &str, addr: std::net::IpAddr) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(list_json) else {
        return false;
    };
    let (one, host) = (
        addr.to_string(),
        format!("{}/{}", addr, if addr.is_ipv4() { 32 } else { 128 }),
    );
    v["entries"].as_array().is_some_and(|es| {
        es.iter().any(|e| {
            e["set"] == set && (e["address"] == one.as_str() || e["address"] == host.as_str())
        })
    })
}

#[cfg(test)]
mod tests;
