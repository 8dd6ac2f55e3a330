//! The `[capture]` section of the config: parsed and validated here; the
//! detector turns it into its settings (`detect::Settings::from_config`).

use crate::units::duration::{parse_timeout, parse_window};
use crate::units::names::Rate;
use crate::units::time::{Micros, SECOND};
use crate::units::Invalid;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The state file's default (`core::state::DEFAULT_PATH`; kept here so the
/// config imports nothing that uses it).
pub const STATE_PATH: &str = "/var/lib/fwctl/state.json";

/// A detection profile: how many ports within which window are a scan, and
/// the bans for repeat offences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// Distinct non-service ports within `window` that make a scan.
    pub ports: u32,
    pub window: Micros,
    /// Ban durations in seconds for the 1st, 2nd, ... offence (the last repeats).
    pub bans: Vec<u64>,
}

impl Profile {
    pub fn named(name: &str) -> Option<Profile> {
        const M: u64 = 60;
        const H: u64 = 3600;
        const D: u64 = 86400;
        let (ports, window, bans) = match name {
            "aggressive" => (3, H, vec![5 * M, H, 12 * H, 3 * D]),
            "standard" => (7, 2 * H, vec![10 * M, 2 * H, D, 7 * D]),
            "lenient" => (15, D, vec![30 * M, 4 * H, 2 * D, 14 * D]),
            _ => return None,
        };
        Some(Profile {
            name: name.into(),
            ports,
            window: window * SECOND,
            bans,
        })
    }
}

/// The validated `[capture]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    pub profile: Profile,
    pub port_thresholds: BTreeMap<u16, u32>,
    /// Destination addresses that count as this host, beyond its own.
    pub protected: Vec<IpNet>,
    /// Which of the config's sets takes the bans ("blacklist", ...).
    pub ban_set: String,
    pub max_sources: usize,
    pub ipv6_prefix: u8,
    pub distributed_sources: u32,
    pub distributed_window: u64,
    pub state_file: PathBuf,
    /// `[capture.flood]`: connection floods to the services (off without it).
    pub flood: Option<Flood>,
    /// TCP ports capture listens on so that scanners find them open; a
    /// completed handshake with one is banned at once.
    pub decoy_ports: Vec<u16>,
    /// `[[capture.signature]]`: payloads looked for (none by default).
    pub signatures: Vec<super::signature::Signature>,
    /// TCP ports whose established connections make their peer an admin
    /// peer: never banned on evidence a forger can produce. Default: the
    /// ports of a `[[service]]` named "ssh", else 22 (set by the config,
    /// which knows the services); `[]` turns this off.
    pub admin_ports: Vec<u16>,
    /// Seconds a connection to an admin port must have been held before
    /// its peer counts as an admin (sshd drops a client that has not
    /// logged in after LoginGraceTime, 120 s by default).
    pub admin_min_age: u64,
    /// The NFLOG group `apply`'s rules hand conntrack's INVALID packets and
    /// TCP non-SYNs opening no connection to, and capture reads (ACK-type
    /// scans); 0: neither.
    pub nflog_group: u16,
}

/// The validated `[capture.flood]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flood {
    /// New connections from one source to one service.
    pub syn_rate: Rate,
    /// ... sustained over this long (seconds).
    pub over: u64,
    /// Where flooders go: a [sets] key.
    pub set: String,
    /// New connections to one service from all sources together: a SYN
    /// flood, reported (its sources are forged, so never banned).
    pub syn_flood_rate: Rate,
}

/// The [sets] keys that take bans (the whitelist never does).
pub const BAN_SET_KEYS: [&str; 3] = ["blacklist", "throttle_soft", "throttle_hard"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlood {
    syn_rate: Option<String>,
    over: Option<String>,
    set: Option<String>,
    syn_flood_rate: Option<String>,
}

impl RawFlood {
    fn validate(self) -> Result<Flood, Invalid> {
        let rate = |key: &str, s: &str| {
            Rate::parse(s).map_err(|e| Invalid(format!("[capture.flood] {key}: {}", e.0)))
        };
        let syn_rate = rate("syn_rate", self.syn_rate.as_deref().unwrap_or("100/second"))?;
        let over = match &self.over {
            None => 5,
            Some(o) => {
                let d = super::intel::duration(
                    "[capture.flood] over",
                    o,
                    std::time::Duration::from_secs(1),
                    std::time::Duration::from_secs(600),
                )?;
                if d.subsec_nanos() != 0 {
                    return Err(Invalid(format!(
                        "[capture.flood] over = \"{o}\"; fix: whole seconds, e.g. \"5s\""
                    )));
                }
                d.as_secs()
            }
        };
        // The rate must be reachable within `over`: 1/minute over 5s is 0.08
        // connections, which every client exceeds.
        if syn_rate.per_second() * (over as f64) < 2.0 {
            return Err(Invalid(format!(
                "[capture.flood] syn_rate = \"{syn_rate}\" over {over}s allows less than 2 connections; fix: a higher rate or a longer over"
            )));
        }
        let set = self.set.unwrap_or_else(|| "throttle_hard".into());
        if !BAN_SET_KEYS.contains(&set.as_str()) {
            return Err(Invalid(format!("[capture.flood] set = \"{set}\"; fix: one of the [sets] keys blacklist, throttle_soft or throttle_hard")));
        }
        let syn_flood_rate = match &self.syn_flood_rate {
            Some(s) => rate("syn_flood_rate", s)?,
            None => Rate {
                count: syn_rate.count.saturating_mul(10),
                per: syn_rate.per,
            },
        };
        if syn_flood_rate.per_second() < syn_rate.per_second() {
            return Err(Invalid(format!("[capture.flood] syn_flood_rate = \"{syn_flood_rate}\" is below syn_rate = \"{syn_rate}\"; fix: the rate of all sources together is at least one source's (default 10 times)")));
        }
        Ok(Flood {
            syn_rate,
            over,
            set,
            syn_flood_rate,
        })
    }
}

impl Default for Capture {
    fn default() -> Self {
        Capture::from_raw(RawCapture::default()).expect("defaults are valid")
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    profile: Option<String>,
    ports: Option<u32>,
    window: Option<String>,
    bans: Option<Vec<String>>,
    #[serde(default)]
    port_thresholds: BTreeMap<String, u32>,
    #[serde(default)]
    protected: Vec<String>,
    ban_set: Option<String>,
    max_sources: Option<usize>,
    ipv6_prefix: Option<u8>,
    distributed_sources: Option<u32>,
    distributed_window: Option<String>,
    state_file: Option<PathBuf>,
    flood: Option<RawFlood>,
    #[serde(default)]
    decoy_ports: Vec<i64>,
    #[serde(default)]
    signature: Vec<super::signature::RawSignature>,
    admin_ports: Option<Vec<i64>>,
    admin_min_age: Option<String>,
    nflog_group: Option<i64>,
}

/// `[capture] nflog_group`'s default.
pub const NFLOG_GROUP: u16 = 33;

impl RawCapture {
    /// Whether the config names its admin ports (else the config takes
    /// them from its services).
    pub fn admin_ports_given(&self) -> bool {
        self.admin_ports.is_some()
    }

    /// The deprecated `[capture] ipv6_prefix`, when given: the old name of
    /// `[aggregate] v6_count_prefix`.
    pub fn ipv6_prefix_given(&self) -> Option<u8> {
        self.ipv6_prefix
    }
}

/// Most admin ports (each is a comparison of capture's connection filter).
pub const MAX_ADMIN_PORTS: usize = 16;

fn admin_ports(raw: &[i64]) -> Result<Vec<u16>, Invalid> {
    let mut out: Vec<u16> = Vec::new();
    for &p in raw {
        let port = u16::try_from(p).ok().filter(|&p| p > 0).ok_or_else(|| {
            Invalid(format!(
                "[capture] admin_ports: {p} is not a port; fix: TCP ports 1-65535, e.g. [22]"
            ))
        })?;
        if !out.contains(&port) {
            out.push(port);
        }
    }
    if out.len() > MAX_ADMIN_PORTS {
        return Err(Invalid(format!(
            "[capture] admin_ports: {} ports; fix: at most {MAX_ADMIN_PORTS}",
            out.len()
        )));
    }
    Ok(out)
}

/// How long a connection to an admin port must have been held before its
/// peer counts as an admin (the default of `[capture] admin_min_age`):
/// sshd drops a client that has not logged in after LoginGraceTime, 120 s
/// by default, so anyone can hold a connection for less than that, and
/// only a logged-in user for longer.
pub const ADMIN_MIN_AGE: u64 = 150;

/// `[capture] admin_min_age`: 0s (a test lab) up to an hour.
fn admin_min_age(s: &str) -> Result<u64, Invalid> {
    let fix =
        "fix: a duration from 0s to 1h, at least sshd's LoginGraceTime (default 2m), e.g. \"150s\"";
    if s.trim() == "0" || s.trim() == "0s" {
        return Ok(0);
    }
    match humantime::parse_duration(s) {
        Ok(d) if d.as_secs() <= 3600 => Ok(d.as_secs()),
        _ => Err(Invalid(format!("[capture] admin_min_age = \"{s}\"; {fix}"))),
    }
}

/// A `[capture]` ban duration: the same rules as `scan --removeafter`, with
/// the key named.
fn timeout(key: &str, s: &str) -> Result<u64, Invalid> {
    parse_timeout(s).map_err(|e| Invalid(format!("[capture] {key} = {e}")))
}

/// A `[capture]` window: a span to look back over, with the key named.
fn span(key: &str, s: &str) -> Result<u64, Invalid> {
    parse_window(s).map_err(|e| Invalid(format!("[capture] {key} = {e}")))
}

/// Most decoy ports (each is a listener and a rule).
pub const MAX_DECOYS: usize = 32;

fn decoys(raw: &[i64]) -> Result<Vec<u16>, Invalid> {
    let mut out: Vec<u16> = Vec::new();
    for &p in raw {
        let port = u16::try_from(p).ok().filter(|&p| p > 0).ok_or_else(|| {
            Invalid(format!(
                "[capture] decoy_ports: {p} is not a port; fix: TCP ports 1-65535, e.g. [2323, 5900]"
            ))
        })?;
        if out.contains(&port) {
            return Err(Invalid(format!(
                "[capture] decoy_ports: {port} is listed twice; fix: list each port once"
            )));
        }
        out.push(port);
    }
    if out.len() > MAX_DECOYS {
        return Err(Invalid(format!(
            "[capture] decoy_ports: {} ports; fix: at most {MAX_DECOYS}",
            out.len()
        )));
    }
    Ok(out)
}

impl Capture {
    pub fn from_raw(raw: RawCapture) -> Result<Capture, Invalid> {
        let name = raw.profile.unwrap_or_else(|| "standard".into());
        let custom_keys = raw.ports.is_some() || raw.window.is_some() || raw.bans.is_some();
        let profile = if name == "custom" {
            let (Some(ports), Some(window), Some(bans)) = (raw.ports, raw.window, raw.bans) else {
                return Err("[capture] profile = \"custom\" needs ports, window and bans; fix: e.g. ports = 10, window = \"30m\", bans = [\"15m\", \"1h\", \"1d\"]".into());
            };
            if !(1..=1000).contains(&ports) {
                return Err(Invalid(format!(
                    "[capture] ports = {ports} is out of range; fix: 1 to 1000 distinct ports"
                )));
            }
            if bans.is_empty() {
                return Err(
                    "[capture] bans is empty; fix: at least one ban duration, e.g. [\"10m\"]"
                        .into(),
                );
            }
            Profile {
                name,
                ports,
                window: span("window", &window)? * SECOND,
                bans: bans
                    .iter()
                    .map(|b| timeout("bans", b))
                    .collect::<Result<_, _>>()?,
            }
        } else {
            let Some(p) = Profile::named(&name) else {
                return Err(Invalid(format!("[capture] profile = \"{name}\" is unknown; fix: aggressive, standard, lenient or custom")));
            };
            if custom_keys {
                return Err(Invalid(format!("[capture] ports, window and bans belong to profile = \"custom\"; fix: remove them or set profile = \"custom\" (\"{name}\" has its own)")));
            }
            p
        };
        let mut port_thresholds = BTreeMap::new();
        for (port, n) in raw.port_thresholds {
            let p = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(Invalid(format!(
                        "[capture.port_thresholds] \"{port}\" is not a port; fix: keys are port numbers, e.g. 22 = 3"
                    )))
                }
            };
            if n == 0 {
                return Err(Invalid(format!(
                    "[capture.port_thresholds] {port} = 0; fix: at least 1 probe"
                )));
            }
            port_thresholds.insert(p, n);
        }
        let protected = raw
            .protected
            .iter()
            .map(|s| {
                crate::units::addr::parse_net(s, true)
                    .map_err(|e| Invalid(format!("[capture] protected: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ban_set = raw.ban_set.unwrap_or_else(|| "blacklist".into());
        if !BAN_SET_KEYS.contains(&ban_set.as_str()) {
            return Err(Invalid(format!("[capture] ban_set = \"{ban_set}\"; fix: one of the [sets] keys blacklist, throttle_soft or throttle_hard (the whitelist never takes bans)")));
        }
        let max_sources = raw.max_sources.unwrap_or(100_000);
        if !(100..=10_000_000).contains(&max_sources) {
            return Err(Invalid(format!(
                "[capture] max_sources = {max_sources} is out of range; fix: 100 to 10000000"
            )));
        }
        let ipv6_prefix = raw.ipv6_prefix.unwrap_or(128);
        if !(32..=128).contains(&ipv6_prefix) {
            return Err(Invalid(format!(
                "[capture] ipv6_prefix = {ipv6_prefix}; fix: 128 (each address) or a prefix such as 64 (one /64 per source)"
            )));
        }
        Ok(Capture {
            profile,
            port_thresholds,
            protected,
            ban_set,
            max_sources,
            ipv6_prefix,
            distributed_sources: raw.distributed_sources.unwrap_or(20),
            distributed_window: match raw.distributed_window {
                Some(w) => span("distributed_window", &w)?,
                None => 600,
            },
            state_file: raw.state_file.unwrap_or_else(|| PathBuf::from(STATE_PATH)),
            flood: raw.flood.map(RawFlood::validate).transpose()?,
            decoy_ports: decoys(&raw.decoy_ports)?,
            signatures: super::signature::validate(raw.signature)?,
            admin_ports: admin_ports(raw.admin_ports.as_deref().unwrap_or(&[22]))?,
            admin_min_age: match raw.admin_min_age {
                Some(a) => admin_min_age(&a)?,
                None => ADMIN_MIN_AGE,
            },
            nflog_group: match raw.nflog_group {
                None => NFLOG_GROUP,
                Some(g) => u16::try_from(g).map_err(|_| {
                    Invalid(format!(
                        "[capture] nflog_group = {g}; fix: an NFLOG group 1-65535 no other program (ulogd) reads, or 0 for none"
                    ))
                })?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Capture, String> {
        let raw: RawCapture = toml::from_str(text).map_err(|e| e.to_string())?;
        Capture::from_raw(raw).map_err(|e| e.0)
    }

    #[test]
    fn named_profiles_and_custom() {
        let c = parse("").unwrap();
        assert_eq!((c.profile.name.as_str(), c.profile.ports), ("standard", 7));
        assert_eq!(c.profile.bans, vec![600, 7200, 86400, 604800]);
        let c = parse("profile = \"aggressive\"").unwrap();
        assert_eq!((c.profile.ports, c.profile.window), (3, 3600 * SECOND));
        let c = parse("profile = \"custom\"\nports = 4\nwindow = \"10m\"\nbans = [\"1m\", \"1h\"]\n[port_thresholds]\n22 = 3\n").unwrap();
        assert_eq!(c.profile.bans, vec![60, 3600]);
        assert_eq!(c.port_thresholds.get(&22), Some(&3));
    }

    #[test]
    fn flood_is_off_unless_asked_and_defaults_to_the_issue_s_example() {
        assert_eq!(parse("").unwrap().flood, None);
        let f = parse("[flood]\n").unwrap().flood.unwrap();
        assert_eq!(
            (f.syn_rate.per_second(), f.over, f.set.as_str()),
            (100.0, 5, "throttle_hard")
        );
        assert_eq!(f.syn_flood_rate.per_second(), 1000.0);
        let f = parse("[flood]\nsyn_rate = \"600/minute\"\nover = \"10s\"\nset = \"blacklist\"\nsyn_flood_rate = \"50/second\"\n")
            .unwrap()
            .flood
            .unwrap();
        assert_eq!(
            (
                f.syn_rate.per_second(),
                f.over,
                f.syn_flood_rate.per_second()
            ),
            (10.0, 10, 50.0)
        );
    }

    #[test]
    fn admin_ports_default_to_the_ssh_service_else_22() {
        let ports = |text: &str| {
            crate::core::config::Config::parse(text, std::path::Path::new("/t.toml"), &|_| {
                Ok(String::new())
            })
            .unwrap()
            .capture
            .admin_ports
        };
        assert_eq!(ports(""), [22]);
        assert_eq!(ports("[[service]]\nname = \"web\"\nport = 443\n"), [22]);
        assert_eq!(ports("[[service]]\nname = \"ssh\"\nport = 2222\n"), [2222]);
        assert_eq!(
            ports("[[service]]\nname = \"ssh\"\nport = 22\n[[service]]\nname = \"SSH\"\nport = \"2200-2201\"\n"),
            [22, 2200, 2201]
        );
        // A UDP "ssh" is no SSH; the config's own list wins, [] turns it off.
        assert_eq!(
            ports("[[service]]\nname = \"ssh\"\nport = 22\nprotocol = \"udp\"\n"),
            [22]
        );
        assert_eq!(
            ports("[[service]]\nname = \"ssh\"\nport = 2222\n[capture]\nadmin_ports = [22, 443, 22]\n"),
            [22, 443]
        );
        assert!(ports("[capture]\nadmin_ports = []\n").is_empty());
        assert_eq!(parse("").unwrap().admin_ports, [22]);
    }

    #[test]
    fn mistakes_name_the_fix() {
        for (text, want) in [
            (
                "profile = \"paranoid\"",
                "aggressive, standard, lenient or custom",
            ),
            (
                "profile = \"custom\"\nports = 4",
                "needs ports, window and bans",
            ),
            ("ports = 4", "belong to profile = \"custom\""),
            ("ban_set = \"whitelist\"", "never takes bans"),
            ("[port_thresholds]\nssh = 3", "keys are port numbers"),
            ("ipv6_prefix = 12", "128 (each address)"),
            ("distributed_window = \"soon\"", "not a duration"),
            ("protected = [\"300.1.1.1\"]", "protected"),
            ("[flood]\nsyn_rate = \"fast\"", "[capture.flood] syn_rate"),
            ("[flood]\nover = \"1h\"", "from 1s to 10m"),
            (
                "[flood]\nsyn_rate = \"1/minute\"",
                "less than 2 connections",
            ),
            ("[flood]\nset = \"whitelist\"", "[capture.flood] set"),
            ("[flood]\nsyn_flood_rate = \"5/second\"", "below syn_rate"),
            ("[flood]\nrate = \"5/second\"", "unknown field"),
            ("decoy_ports = [0]", "is not a port"),
            ("decoy_ports = [70000]", "is not a port"),
            ("decoy_ports = [23, 23]", "listed twice"),
            ("admin_ports = [0]", "admin_ports: 0 is not a port"),
            ("admin_ports = [22, 70000]", "admin_ports: 70000"),
            (
                "admin_ports = [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]",
                "at most 16",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
