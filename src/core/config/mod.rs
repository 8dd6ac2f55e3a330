//! The TOML configuration: parsed, validated and normalised into [`Config`].
//!
//! Every value that later reaches a command is validated here, while we still
//! know which file and line it came from, so a mistake is reported as
//! `FILE:LINE: what is wrong; fix: ...` and nothing gets installed.

pub mod aggregate;
pub mod baseline;
pub mod capture;
pub mod firewall;
pub mod fleet;
pub mod forward;
pub mod geo;
pub mod intel;
pub mod notify;
pub mod pattern;
pub mod signature;
pub mod source;
pub mod watch;
pub mod web;

use crate::units::addr::parse_net;
use crate::units::names::{LogPrefix, PortRange, Rate, SetName};
use crate::units::Invalid;
use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/fwctl/fwctl.toml";

/// What fwctl uses when no config exists (every command but a real apply):
/// the set names, LOG prefixes and capture profile of the shipped
/// `rules/fwctl.toml` (a test keeps the two in step), without its services,
/// trusted networks or blacklist.
pub const BUILTIN: &str =
    "[capture]\nprofile = \"standard\"\n\n[capture.port_thresholds]\n23 = 2\n3389 = 3\n";
/// The name the built-in defaults go by where a config file's path would show.
pub const BUILTIN_NAME: &str = "(built-in defaults)";

/// A config problem, with the place it was found.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {msg}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub msg: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Default-drop: only whitelisted sources and allowed services get in.
    #[default]
    Firewall,
    /// Every rule logs as usual but nothing is dropped: for a first deployment.
    DetectionOnly,
    /// Firewall, plus every allowed new connection is logged (no log rate limit).
    Corporate,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Firewall => "firewall",
            Mode::DetectionOnly => "detection_only",
            Mode::Corporate => "corporate",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A rate with its burst, as hashlimit takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub rate: Rate,
    pub burst: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub ports: PortRange,
    pub protocol: Protocol,
    pub limit: Option<Limit>,
    /// `allow_countries`: only sources of these reach it (empty: any).
    pub allow_countries: Vec<geo::Country>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixPair {
    pub v4: LogPrefix,
    pub v6: LogPrefix,
}

/// The LOG prefix of every rule name. `allowed` and `blocked` always exist; the
/// finer names default to them, so `scan --rule blocked` sees every drop unless
/// the config gives blacklisted/throttled traffic prefixes of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefixes {
    pub allowed: PrefixPair,
    pub blocked: PrefixPair,
    pub whitelisted: PrefixPair,
    pub blacklisted: PrefixPair,
    pub throttled: PrefixPair,
    /// The `[bandwidth]` rule's lines (a source above the byte rate).
    pub bandwidth: PrefixPair,
}

impl Prefixes {
    pub const RULES: [&'static str; 6] = [
        "allowed",
        "blocked",
        "whitelisted",
        "blacklisted",
        "throttled",
        "bandwidth",
    ];

    pub fn get(&self, rule: &str) -> Option<&PrefixPair> {
        match rule {
            "allowed" => Some(&self.allowed),
            "blocked" => Some(&self.blocked),
            "whitelisted" => Some(&self.whitelisted),
            "blacklisted" => Some(&self.blacklisted),
            "throttled" => Some(&self.throttled),
            "bandwidth" => Some(&self.bandwidth),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sets {
    pub whitelist: SetName,
    pub blacklist: SetName,
    pub throttle_soft: SetName,
    pub throttle_hard: SetName,
    pub maxelem: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub path: PathBuf,
    pub mode: Mode,
    pub sets: Sets,
    /// Trusted networks: never blocked, never banned; loaded into the whitelist sets.
    pub trusted: Vec<IpNet>,
    /// Static blacklist: inline entries and feed files, deduplicated.
    pub blacklist: Vec<IpNet>,
    pub services: Vec<Service>,
    pub throttle_soft: Limit,
    pub throttle_hard: Limit,
    pub icmp_echo: Option<Limit>,
    pub log_limit: Limit,
    pub prefixes: Prefixes,
    /// The `[capture]` section: scan detection profile and ban settings.
    pub capture: capture::Capture,
    /// Webhook sinks (`[[notify]]`).
    pub notify: Vec<notify::NotifySink>,
    /// `[metrics]`: capture's endpoint and the textfile directory.
    pub metrics: notify::Metrics,
    /// `[fleet]`: the Redis the fleet shares its bans through.
    pub fleet: Option<fleet::Fleet>,
    /// `[[pattern]]`: named request patterns for web logs.
    pub patterns: Vec<pattern::Pattern>,
    /// `[[source]]`: regex log sources, one per name.
    pub sources: Vec<crate::core::logs::Def>,
    /// `[web]`: the trusted reverse proxies of web logs.
    pub web: web::Web,
    /// `[reputation]`: AbuseIPDB, asked about offenders near the threshold.
    pub reputation: Option<intel::Reputation>,
    /// `[[feed]]`: blocklists `fwctl feeds update` downloads.
    pub feeds: Vec<intel::Feed>,
    /// `[bandwidth] above`: sources sending more bytes a second are logged
    /// (prefix `bandwidth`) for `scan --rule bandwidth`.
    pub bandwidth: Option<crate::units::names::ByteRate>,
    /// `[firewall]`: the backend (iptables, nftables).
    pub firewall: firewall::Firewall,
    /// `[forward]`: bans and default drop for forwarded (container) traffic.
    pub forward: forward::Forward,
    /// `[[watch]]`: the logs `fwctl watch` follows and bans from.
    pub watch: Vec<watch::Watch>,
    /// `[history] evidence`: pieces of evidence kept per ban for `fwctl why`.
    pub evidence: usize,
    /// `[geo]`: the country/ASN databases and the blocked countries.
    pub geo: Option<geo::Geo>,
    /// Every country with a pair of sets (`geo-XX`): blocked, then allowed.
    pub countries: Vec<geo::Country>,
    /// `[baseline]`: when an hour's count is an anomaly.
    pub baseline: baseline::Baseline,
    /// `[aggregate]`: IPv6 counting prefix, and bans of one prefix gathered.
    pub aggregate: aggregate::Aggregate,
}

impl Config {
    /// The state file: `arg` (--state, or FWCTL_STATE), else the config's
    /// [capture] state_file, whose default is /var/lib/fwctl/state.json.
    pub fn state_path(&self, arg: Option<&Path>) -> PathBuf {
        arg.map(Path::to_path_buf)
            .unwrap_or_else(|| self.capture.state_file.clone())
    }

    /// The built-in defaults.
    pub fn builtin() -> Config {
        Config::parse(BUILTIN, Path::new(BUILTIN_NAME), &|_| {
            Err(std::io::Error::other("the built-in defaults name no feed"))
        })
        .expect("the built-in defaults are valid")
    }

    /// Whether this is the built-in defaults rather than a file.
    pub fn is_builtin(&self) -> bool {
        self.path == Path::new(BUILTIN_NAME)
    }

    /// Validate config text. `read_feed` reads a blacklist feed file; relative
    /// feed paths are resolved against the config file's directory. (Reading
    /// the file itself is `sys::configfile::load`.)
    pub fn parse(
        text: &str,
        path: &Path,
        read_feed: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Config, ConfigError> {
        let err_at = |line: Option<usize>, msg: String| ConfigError {
            file: path.to_path_buf(),
            line,
            msg,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let mut msg = e.message().trim().replace('\n', " ");
            if msg.starts_with("unknown field") {
                msg.push_str("; fix: remove the key or correct its spelling");
            }
            err_at(line, msg)
        })?;

        let sets = Sets {
            whitelist: raw.sets.whitelist.0,
            blacklist: raw.sets.blacklist.0,
            throttle_soft: raw.sets.throttle_soft.0,
            throttle_hard: raw.sets.throttle_hard.0,
            maxelem: raw.sets.maxelem,
        };
        let names = [
            &sets.whitelist,
            &sets.blacklist,
            &sets.throttle_soft,
            &sets.throttle_hard,
        ];
        if names.iter().collect::<BTreeSet<_>>().len() != names.len() {
            return Err(err_at(
                None,
                "[sets]: two sets share a name; fix: give whitelist, blacklist, throttle_soft and throttle_hard distinct names".into(),
            ));
        }
        if !(1024..=16_777_216).contains(&sets.maxelem) {
            return Err(err_at(
                None,
                format!(
                    "[sets] maxelem = {} is out of range; fix: a capacity from 1024 to 16777216",
                    sets.maxelem
                ),
            ));
        }

        let trusted = dedup(raw.trusted.networks.into_iter().map(|n| n.0));

        let mut blacklist: Vec<IpNet> = raw.blacklist.entries.into_iter().map(|n| n.0).collect();
        let base = path.parent().unwrap_or(Path::new("."));
        for file in &raw.blacklist.files {
            let full = if file.is_absolute() {
                file.clone()
            } else {
                base.join(file)
            };
            let body = read_feed(&full).map_err(|e| ConfigError {
                file: full.clone(),
                line: None,
                msg: format!(
                    "cannot read blacklist feed: {e}; fix: correct [blacklist] files in {}",
                    path.display()
                ),
            })?;
            parse_feed(&body, &mut blacklist).map_err(|(line, msg)| ConfigError {
                file: full.clone(),
                line: Some(line),
                msg,
            })?;
        }
        // Sorted and deduplicated once (a BTreeSet took 100 000 inserts).
        blacklist.sort_unstable();
        blacklist.dedup();
        for (what, list) in [
            ("[trusted] networks", &trusted),
            ("[blacklist]", &blacklist),
        ] {
            for v6 in [false, true] {
                let n = list
                    .iter()
                    .filter(|n| matches!(n, IpNet::V6(_)) == v6)
                    .count();
                if n > sets.maxelem as usize {
                    return Err(err_at(
                        None,
                        format!(
                            "{what} has {n} IPv{} entries but [sets] maxelem is {}; fix: raise maxelem",
                            if v6 { 6 } else { 4 },
                            sets.maxelem
                        ),
                    ));
                }
            }
        }

        let mut services = Vec::new();
        for s in raw.service {
            let limit = match (s.rate, s.burst) {
                (Some(r), b) => Some(Limit {
                    rate: r.0,
                    burst: b.unwrap_or(5),
                }),
                (None, Some(_)) => {
                    return Err(err_at(
                        None,
                        format!("[[service]] \"{}\" has a burst but no rate; fix: add rate = \"10/minute\" or remove burst", s.name),
                    ))
                }
                (None, None) => None,
            };
            if s.name.is_empty() || s.name.len() > 64 {
                return Err(err_at(
                    None,
                    "a [[service]] needs a name of 1 to 64 characters".into(),
                ));
            }
            let allow_countries = geo::countries(
                &format!("[[service]] \"{}\" allow_countries", s.name),
                &s.allow_countries,
            )
            .map_err(|m| err_at(None, m.0))?;
            services.push(Service {
                name: s.name,
                ports: s.port.0,
                protocol: s.protocol,
                limit,
                allow_countries,
            });
        }
        if services.len() > 99 {
            return Err(err_at(
                None,
                "more than 99 [[service]] entries; fix: merge them into port ranges".into(),
            ));
        }

        let p = raw.logging.prefixes;
        let allowed = p
            .allowed
            .map(|x| x.into_pair())
            .unwrap_or_else(|| default_pair("ALLOWED"));
        let blocked = p
            .blocked
            .map(|x| x.into_pair())
            .unwrap_or_else(|| default_pair("BLOCKED"));
        let prefixes = Prefixes {
            whitelisted: p
                .whitelisted
                .map(|x| x.into_pair())
                .unwrap_or_else(|| allowed.clone()),
            blacklisted: p
                .blacklisted
                .map(|x| x.into_pair())
                .unwrap_or_else(|| blocked.clone()),
            throttled: p
                .throttled
                .map(|x| x.into_pair())
                .unwrap_or_else(|| blocked.clone()),
            // A rule of its own, not a finer kind of drop: never folded into
            // blocked, so `scan --rule blocked` does not count hogs' packets.
            bandwidth: p
                .bandwidth
                .map(|x| x.into_pair())
                .unwrap_or_else(|| default_pair("BANDWIDTH")),
            allowed,
            blocked,
        };
        let bandwidth = raw
            .bandwidth
            .map(|b| crate::units::names::ByteRate::parse(&b.above))
            .transpose()
            .map_err(|m| err_at(None, format!("[bandwidth] above: {}", m.0)))?;

        let admin_ports_given = raw.capture.admin_ports_given();
        let ipv6_prefix_given = raw.capture.ipv6_prefix_given();
        let mut capture = capture::Capture::from_raw(raw.capture).map_err(|m| err_at(None, m.0))?;
        if !admin_ports_given {
            capture.admin_ports = ssh_ports(&services);
        }
        // A decoy is a port no service uses: its visitors are banned.
        if let Some((p, svc)) = capture.decoy_ports.iter().find_map(|&p| {
            services
                .iter()
                .find(|s| {
                    s.protocol == Protocol::Tcp && (s.ports.first..=s.ports.last).contains(&p)
                })
                .map(|s| (p, s))
        }) {
            return Err(err_at(
                None,
                format!(
                    "[capture] decoy_ports: {p} is the port of [[service]] \"{}\"; fix: a decoy is a port no service uses (its visitors are banned)",
                    svc.name
                ),
            ));
        }
        let mut sinks = Vec::new();
        for n in raw.notify {
            let s = n.validate().map_err(|m| err_at(None, m.0))?;
            if sinks.iter().any(|o: &notify::NotifySink| o.name == s.name) {
                return Err(err_at(
                    None,
                    format!(
                        "two [[notify]] sinks are named \"{}\"; fix: give each its own name",
                        s.name
                    ),
                ));
            }
            sinks.push(s);
        }
        let metrics = raw.metrics.validate().map_err(|m| err_at(None, m.0))?;
        let fleet = raw
            .fleet
            .map(fleet::RawFleet::validate)
            .transpose()
            .map_err(|m| err_at(None, m.0))?;

        let mut patterns: Vec<pattern::Pattern> = Vec::new();
        for p in raw.pattern {
            let p = p.validate().map_err(|m| err_at(None, m.0))?;
            if patterns
                .iter()
                .any(|o| o.name == p.name && o.source == p.source)
            {
                return Err(err_at(
                    None,
                    format!(
                        "two [[pattern]]s for {} are named \"{}\"; fix: give each its own name",
                        p.source, p.name
                    ),
                ));
            }
            patterns.push(p);
        }
        let mut sources = Vec::new();
        for t in raw.source {
            sources.push(t.validate().map_err(|m| err_at(None, m.0))?);
        }
        let sources = crate::core::logs::registry::group(sources);
        let reputation = raw
            .reputation
            .map(intel::RawReputation::validate)
            .transpose()
            .map_err(|m| err_at(None, m.0))?;
        let mut feeds: Vec<intel::Feed> = Vec::new();
        for f in raw.feed {
            let f = f.validate().map_err(|m| err_at(None, m.0))?;
            if feeds.iter().any(|o| o.name == f.name) {
                return Err(err_at(
                    None,
                    format!(
                        "two [[feed]]s are named \"{}\"; fix: give each its own name",
                        f.name
                    ),
                ));
            }
            feeds.push(f);
        }

        let bounds = aggregate::Bounds::new(
            fleet.as_ref().map(|f| (f.min_prefix_v4, f.min_prefix_v6)),
            feeds.iter().map(|f| (f.min_prefix_v4, f.min_prefix_v6)),
        );
        let aggregate = aggregate::validate(raw.aggregate, ipv6_prefix_given, &bounds)
            .map_err(|m| err_at(None, m.0))?;
        // One key for scan, watch and capture alike; but iptables' throttle
        // sets are hash:ip, which takes no /64: capture banning into one
        // ([capture] ban_set, [capture.flood] set) tracks each address.
        let hash_ip = |key: &str| {
            raw.firewall.backend == firewall::Backend::Iptables && key.starts_with("throttle")
        };
        capture.ipv6_prefix = if hash_ip(&capture.ban_set)
            || capture.flood.as_ref().is_some_and(|f| hash_ip(&f.set))
        {
            128
        } else {
            aggregate.v6_count_prefix
        };
        let watch = watch::validate_all(raw.watch).map_err(|m| err_at(None, m.0))?;
        let evidence = raw.history.evidence.unwrap_or(5);
        if evidence > crate::core::history::MAX_EVIDENCE {
            return Err(err_at(
                None,
                format!(
                    "[history] evidence = {evidence}; fix: at most {} pieces a ban (0 keeps none)",
                    crate::core::history::MAX_EVIDENCE
                ),
            ));
        }
        let geo = raw
            .geo
            .map(geo::RawGeo::validate)
            .transpose()
            .map_err(|m| err_at(None, m.0))?;
        let allowed: Vec<(&str, &[geo::Country])> = services
            .iter()
            .map(|s| (s.name.as_str(), &s.allow_countries[..]))
            .collect();
        let countries =
            geo::all_countries(geo.as_ref(), &allowed).map_err(|m| err_at(None, m.0))?;
        let baseline = raw.baseline.validate().map_err(|m| err_at(None, m.0))?;
        Ok(Config {
            geo,
            countries,
            baseline,
            aggregate,
            evidence,
            watch,
            fleet,
            patterns,
            sources,
            web: raw.web.validate(),
            firewall: raw.firewall,
            forward: raw.forward,
            reputation,
            feeds,
            capture,
            notify: sinks,
            metrics,
            path: path.to_path_buf(),
            mode: raw.mode,
            sets,
            trusted,
            blacklist,
            services,
            throttle_soft: raw.throttle.soft.into_limit(),
            throttle_hard: raw.throttle.hard.into_limit(),
            icmp_echo: raw
                .icmp
                .echo_request
                .then(|| limit_or(raw.icmp.rate, raw.icmp.burst, 5, 10)),
            log_limit: limit_or(raw.logging.rate, raw.logging.burst, 10, 20),
            prefixes,
            bandwidth,
        })
    }
}

/// The default `[capture] admin_ports`: the ports of the TCP `[[service]]`s
/// named "ssh" (at most `capture::MAX_ADMIN_PORTS`), else 22.
fn ssh_ports(services: &[Service]) -> Vec<u16> {
    let mut out: Vec<u16> = services
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case("ssh") && s.protocol == Protocol::Tcp)
        .flat_map(|s| s.ports.first..=s.ports.last)
        .take(capture::MAX_ADMIN_PORTS)
        .collect();
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        out.push(22);
    }
    out
}

/// The v4 and v6 set names the bans go into.
pub fn ban_sets(config: &Config) -> [String; 2] {
    sets_of(config, &config.capture.ban_set)
}

/// The kernel sets (IPv4, IPv6) of a [sets] key ("blacklist", "throttle_hard", ...).
pub fn sets_of(config: &Config, key: &str) -> [String; 2] {
    let name = match key {
        "throttle_soft" => &config.sets.throttle_soft,
        "throttle_hard" => &config.sets.throttle_hard,
        _ => &config.sets.blacklist,
    };
    [
        name.for_family(false).to_string(),
        name.for_family(true).to_string(),
    ]
}

fn default_pair(what: &str) -> PrefixPair {
    PrefixPair {
        v4: LogPrefix::parse(&format!("IPTABLES-{what}: ")).expect("valid default"),
        v6: LogPrefix::parse(&format!("IP6TABLES-{what}: ")).expect("valid default"),
    }
}

fn dedup(it: impl Iterator<Item = IpNet>) -> Vec<IpNet> {
    it.collect::<BTreeSet<_>>().into_iter().collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A feed file: one entry per line; `#` and `;` start comments (Spamhaus-style
/// feeds use `;`). Appends its entries to `out`, which stays within twice
/// its distinct entries (sorted and deduplicated whenever it doubles: a
/// file of one line repeated grows nothing); the caller sorts and
/// deduplicates at the end. Returns the first bad line's number and message.
pub fn parse_feed(body: &str, out: &mut Vec<IpNet>) -> Result<(), (usize, String)> {
    let mut bound = (2 * out.len()).max(1 << 16);
    for (i, line) in body.lines().enumerate() {
        let entry = line.split(['#', ';']).next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        // Some feeds put extra columns after the network.
        let entry = entry.split_whitespace().next().unwrap_or(entry);
        out.push(parse_net(entry, true).map_err(|m| (i + 1, m.0))?);
        if out.len() >= bound {
            out.sort_unstable();
            out.dedup();
            bound = (2 * out.len()).max(1 << 16);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The raw TOML shape. Validated newtypes fail inside serde, so toml reports the
// exact line of the bad value.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    // `firewall_mode` is the name the capture issue uses for the same key.
    #[serde(default, alias = "firewall_mode")]
    mode: Mode,
    #[serde(default)]
    sets: RawSets,
    #[serde(default)]
    trusted: RawTrusted,
    #[serde(default)]
    blacklist: RawBlacklist,
    #[serde(default)]
    service: Vec<RawService>,
    #[serde(default)]
    throttle: RawThrottle,
    #[serde(default)]
    icmp: RawIcmp,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    capture: capture::RawCapture,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
    #[serde(default)]
    metrics: notify::RawMetrics,
    fleet: Option<fleet::RawFleet>,
    #[serde(default)]
    pattern: Vec<pattern::RawPattern>,
    #[serde(default)]
    source: Vec<source::RawSource>,
    #[serde(default)]
    web: web::RawWeb,
    reputation: Option<intel::RawReputation>,
    #[serde(default)]
    feed: Vec<intel::RawFeed>,
    bandwidth: Option<RawBandwidth>,
    #[serde(default)]
    firewall: firewall::Firewall,
    #[serde(default)]
    forward: forward::Forward,
    #[serde(default)]
    watch: Vec<watch::RawWatch>,
    #[serde(default)]
    history: RawHistory,
    geo: Option<geo::RawGeo>,
    #[serde(default)]
    baseline: baseline::RawBaseline,
    aggregate: Option<aggregate::RawAggregate>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    evidence: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBandwidth {
    above: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSets {
    whitelist: V<SetName>,
    blacklist: V<SetName>,
    throttle_soft: V<SetName>,
    throttle_hard: V<SetName>,
    maxelem: u32,
}

impl Default for RawSets {
    fn default() -> Self {
        let n = |s: &str| V(SetName::parse(s).expect("valid default"));
        RawSets {
            whitelist: n("whitelist"),
            blacklist: n("blacklist"),
            throttle_soft: n("throttle-soft"),
            throttle_hard: n("throttle-hard"),
            maxelem: 262_144,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrusted {
    #[serde(default)]
    networks: Vec<ConfigNet>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBlacklist {
    #[serde(default)]
    entries: Vec<ConfigNet>,
    #[serde(default)]
    files: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    port: V<PortRange>,
    #[serde(default = "tcp")]
    protocol: Protocol,
    rate: Option<V<Rate>>,
    burst: Option<u32>,
    #[serde(default)]
    allow_countries: Vec<String>,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    rate: V<Rate>,
    burst: u32,
}

impl RawLimit {
    fn new(rate: &str, burst: u32) -> RawLimit {
        RawLimit {
            rate: V(Rate::parse(rate).expect("valid default")),
            burst,
        }
    }
    fn into_limit(self) -> Limit {
        Limit {
            rate: self.rate.0,
            burst: self.burst.max(1),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    #[serde(default = "soft_default")]
    soft: RawLimit,
    #[serde(default = "hard_default")]
    hard: RawLimit,
}

fn soft_default() -> RawLimit {
    RawLimit::new("60/minute", 30)
}
fn hard_default() -> RawLimit {
    RawLimit::new("6/minute", 3)
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle {
            soft: soft_default(),
            hard: hard_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIcmp {
    #[serde(default = "yes")]
    echo_request: bool,
    rate: Option<V<Rate>>,
    burst: Option<u32>,
}

fn yes() -> bool {
    true
}

impl Default for RawIcmp {
    fn default() -> Self {
        RawIcmp {
            echo_request: true,
            rate: None,
            burst: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    rate: Option<V<Rate>>,
    burst: Option<u32>,
    #[serde(default)]
    prefixes: RawPrefixes,
}

/// An optional `rate`/`burst` pair with defaults of `per_second`/second and `burst`.
fn limit_or(
    rate: Option<V<Rate>>,
    burst: Option<u32>,
    per_second: u32,
    default_burst: u32,
) -> Limit {
    Limit {
        rate: rate.map(|r| r.0).unwrap_or(Rate {
            count: per_second,
            per: crate::units::names::RateUnit::Second,
        }),
        burst: burst.unwrap_or(default_burst).max(1),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrefixes {
    allowed: Option<RawPair>,
    blocked: Option<RawPair>,
    whitelisted: Option<RawPair>,
    blacklisted: Option<RawPair>,
    throttled: Option<RawPair>,
    bandwidth: Option<RawPair>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    v4: V<LogPrefix>,
    v6: V<LogPrefix>,
}

impl RawPair {
    fn into_pair(self) -> PrefixPair {
        PrefixPair {
            v4: self.v4.0,
            v6: self.v6.0,
        }
    }
}

/// A validated value deserialised from a TOML string (or, for ports, an integer).
struct V<T>(T);

trait FromConfigStr: Sized {
    const EXPECTING: &'static str;
    fn from_str(s: &str) -> Result<Self, Invalid>;
    fn from_int(n: i64) -> Result<Self, Invalid> {
        Err(Invalid(format!(
            "{n} is a number; expected {}",
            Self::EXPECTING
        )))
    }
}

impl FromConfigStr for SetName {
    const EXPECTING: &'static str = "a set name string";
    fn from_str(s: &str) -> Result<Self, Invalid> {
        SetName::parse(s)
    }
}
impl FromConfigStr for LogPrefix {
    const EXPECTING: &'static str = "a LOG prefix string";
    fn from_str(s: &str) -> Result<Self, Invalid> {
        LogPrefix::parse(s)
    }
}
impl FromConfigStr for Rate {
    const EXPECTING: &'static str = "a rate string like \"10/minute\"";
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Rate::parse(s)
    }
}
impl FromConfigStr for PortRange {
    const EXPECTING: &'static str = "a port number or a range string like \"8000-8080\"";
    fn from_str(s: &str) -> Result<Self, Invalid> {
        PortRange::parse(s)
    }
    fn from_int(n: i64) -> Result<Self, Invalid> {
        PortRange::from_number(n)
    }
}

impl<'de, T: FromConfigStr> Deserialize<'de> for V<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<T>(std::marker::PhantomData<T>);
        impl<T: FromConfigStr> Visitor<'_> for Vis<T> {
            type Value = V<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<V<T>, E> {
                T::from_str(s).map(V).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<V<T>, E> {
                T::from_int(n).map(V).map_err(E::custom)
            }
        }
        d.deserialize_any(Vis(std::marker::PhantomData))
    }
}

/// A network written in the config (host bits are an error there).
struct ConfigNet(IpNet);

impl<'de> Deserialize<'de> for ConfigNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_net(s.trim(), false)
            .map(ConfigNet)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/fwctl/test.toml"), &|p| {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no such feed {}", p.display()),
            ))
        })
    }

    #[test]
    fn bandwidth_is_a_byte_rate_with_a_rule_name_of_its_own() {
        let c = parse("[bandwidth]\nabove = \"20mb/s\"\n").unwrap();
        assert_eq!(c.bandwidth.unwrap().bytes_per_second(), 20 << 20);
        assert_eq!(
            c.prefixes.get("bandwidth").unwrap().v4.as_str(),
            "IPTABLES-BANDWIDTH: "
        );
        assert_eq!(c.prefixes.bandwidth.v6.as_str(), "IP6TABLES-BANDWIDTH: ");
        assert!(parse("").unwrap().bandwidth.is_none());
        for (text, want) in [
            (
                "[bandwidth]\nabove = \"20mbit\"\n",
                "[bandwidth] above: byte rate \"20mbit\"",
            ),
            (
                "[bandwidth]\nabove = \"5000mb/s\"\n",
                "outside 1kb/s to 4000mb/s",
            ),
            ("[bandwidth]\n", "above"),
            ("[bandwidth]\nabove = \"1mb/s\"\nburst = 3\n", "burst"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn empty_config_gets_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.mode, Mode::Firewall);
        assert_eq!(c.sets.throttle_hard.as_str(), "throttle-hard");
        assert_eq!(c.prefixes.blocked.v6.as_str(), "IP6TABLES-BLOCKED: ");
        assert_eq!(c.prefixes.blacklisted, c.prefixes.blocked);
        assert_eq!(c.log_limit.rate.to_iptables(), "10/sec");
        assert_eq!(c.icmp_echo.unwrap().burst, 10);
    }

    #[test]
    fn errors_name_the_line() {
        let e =
            parse("mode = \"firewall\"\n\n[trusted]\nnetworks = [\"10.0.0.300/8\"]\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().contains("test.toml:4:"), "{e}");
        assert!(e.to_string().contains("fix:"), "{e}");

        let e = parse("[[service]]\nname = \"x\"\nport = 70000\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");

        let e =
            parse("[sets]\nblacklist = \"a-name-that-is-far-too-long-for-ipset\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.msg.contains("at most 28"), "{e}");

        let e = parse("[sets]\nblacklist = \"bad;name\"\n").unwrap_err();
        assert!(e.msg.contains("';'"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("[trusted]\nnetwork = []\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.msg.contains("unknown field"), "{e}");
        assert!(parse("colour = 1\n").is_err());
        assert!(parse("mode = \"paranoid\"\n").is_err());
    }

    #[test]
    fn feeds_are_read_relative_to_the_config() {
        let c = Config::parse(
            "[blacklist]\nentries = [\"203.0.113.9\"]\nfiles = [\"feed.txt\"]\n",
            Path::new("/etc/fwctl/fwctl.toml"),
            &|p| {
                assert_eq!(p, Path::new("/etc/fwctl/feed.txt"));
                Ok("# comment\n198.51.100.0/24 ; SBL123\n\n2001:db8::1\n203.0.113.9\n".into())
            },
        )
        .unwrap();
        let got: Vec<String> = c.blacklist.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            got,
            ["198.51.100.0/24", "203.0.113.9/32", "2001:db8::1/128"]
        );
    }

    #[test]
    fn feed_errors_name_the_feed_line() {
        let e = Config::parse(
            "[blacklist]\nfiles = [\"/x/feed.txt\"]\n",
            Path::new("/etc/fwctl/fwctl.toml"),
            &|_| Ok("192.0.2.1\nnot-an-ip\n".into()),
        )
        .unwrap_err();
        assert_eq!(e.to_string().split(": ").next().unwrap(), "/x/feed.txt:2");
        let e = parse("[blacklist]\nfiles = [\"missing.txt\"]\n").unwrap_err();
        assert!(e.to_string().contains("cannot read blacklist feed"), "{e}");
    }

    #[test]
    fn maxelem_is_enforced() {
        let e = Config::parse(
            "[sets]\nmaxelem = 1024\n[blacklist]\nfiles = [\"f\"]\n",
            Path::new("/c.toml"),
            &|_| {
                Ok((0..1100u32)
                    .map(|i| format!("10.{}.{}.1\n", i / 256, i % 256))
                    .collect())
            },
        )
        .unwrap_err();
        assert!(e.msg.contains("raise maxelem"), "{e}");
    }

    #[test]
    fn capture_counts_ipv6_per_v6_count_prefix_unless_it_bans_into_a_hash_ip_set() {
        assert_eq!(parse("").unwrap().capture.ipv6_prefix, 64);
        let c = parse("[aggregate]\nv6_count_prefix = 56\nmin_offenders = 0\n").unwrap();
        assert_eq!(
            (c.capture.ipv6_prefix, c.aggregate.v6_count_prefix),
            (56, 56)
        );
        for (text, want) in [
            ("[capture]\nban_set = \"throttle_hard\"\n", 128),
            ("[capture.flood]\n", 128),
            ("[firewall]\nbackend = \"nftables\"\n[capture.flood]\n", 64),
            ("[capture.flood]\nset = \"blacklist\"\n", 64),
        ] {
            assert_eq!(parse(text).unwrap().capture.ipv6_prefix, want, "{text}");
        }
    }

    #[test]
    fn duplicate_set_names_are_refused() {
        let e = parse("[sets]\nwhitelist = \"x\"\nblacklist = \"x\"\n").unwrap_err();
        assert!(e.msg.contains("distinct"), "{e}");
    }

    #[test]
    fn the_builtin_defaults_are_the_shipped_configs_names_prefixes_and_profile() {
        let shipped = Config::parse(
            include_str!("../../../rules/fwctl.toml"),
            Path::new("/etc/fwctl/fwctl.toml"),
            &|_| Ok(include_str!("../../../rules/blacklist.txt").into()),
        )
        .unwrap();
        let b = Config::builtin();
        assert!(b.is_builtin() && !shipped.is_builtin());
        assert_eq!(b.sets, shipped.sets);
        assert_eq!(b.prefixes, shipped.prefixes);
        assert_eq!(b.mode, shipped.mode);
        assert_eq!(b.capture, shipped.capture);
        assert_eq!(
            (b.throttle_soft, b.throttle_hard, b.icmp_echo, b.log_limit),
            (
                shipped.throttle_soft,
                shipped.throttle_hard,
                shipped.icmp_echo,
                shipped.log_limit
            )
        );
        assert!(b.services.is_empty() && b.trusted.is_empty() && b.blacklist.is_empty());
        assert!(!shipped.services.is_empty() && !shipped.trusted.is_empty());
    }

    #[test]
    fn firewall_mode_is_another_name_for_mode() {
        let c = parse("firewall_mode = \"detection_only\"").unwrap();
        assert_eq!(c.mode, Mode::DetectionOnly);
    }

    #[test]
    fn services_and_prefixes() {
        let c = parse(
            "[[service]]\nname = \"web\"\nport = \"8000-8080\"\nprotocol = \"udp\"\nrate = \"20/second\"\n\
             [logging.prefixes]\nblacklisted = { v4 = \"FW-BL: \", v6 = \"FW6-BL: \" }\n",
        )
        .unwrap();
        assert_eq!(c.services[0].ports.to_iptables(), "8000:8080");
        assert_eq!(c.services[0].limit.unwrap().burst, 5);
        assert_eq!(
            c.prefixes.get("blacklisted").unwrap().v6.as_str(),
            "FW6-BL: "
        );
        assert!(c.prefixes.get("nosuch").is_none());
        assert!(parse("[[service]]\nname = \"x\"\nport = 22\nburst = 3\n").is_err());
    }
}
