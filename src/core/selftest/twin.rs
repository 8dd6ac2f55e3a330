//! The twin's particulars, decided from the config alone: the addresses
//! each role uses (documentation addresses that no [trusted] or [blacklist]
//! entry covers, so a row tests what it names and nothing else), the closed
//! and scanned ports, the twin's own config file, and how a kernel LOG line
//! of the twin is recognised and written for `scan`.

use crate::core::config::Config;
use crate::units::Invalid;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Every address a run uses, one role each so that a ban made by one row
/// (scan's, capture's) cannot decide another. Client side: `client`,
/// `throttled`; the forward row's container side: `gateway`, `container`;
/// attacker side: the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addrs {
    pub twin4: IpAddr,
    pub twin6: IpAddr,
    pub client4: IpAddr,
    pub client6: IpAddr,
    pub throttled: IpAddr,
    pub closed: IpAddr,
    pub banned: IpAddr,
    pub fed: IpAddr,
    pub scan: IpAddr,
    pub syn: IpAddr,
    pub decoy: IpAddr,
    /// The forward row's "docker0" address in the twin, and its container.
    pub gateway: IpAddr,
    pub container: IpAddr,
}

/// The documentation networks, in the order addresses are taken from them.
const POOL_V4: [[u8; 3]; 3] = [[198, 51, 100], [203, 0, 113], [192, 0, 2]];

fn covered(cfg: &Config, a: IpAddr) -> bool {
    cfg.trusted
        .iter()
        .chain(&cfg.blacklist)
        .chain(&cfg.capture.protected)
        .any(|n| n.contains(&a))
}

/// The addresses of a run: the first free ones of the documentation
/// networks (IPv4: 198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24; IPv6:
/// 2001:db8:5e1f::/64). None when the config covers nearly all of them.
pub fn addresses(cfg: &Config) -> Option<Addrs> {
    let v4 = POOL_V4
        .iter()
        .flat_map(|p| (1..=254u8).map(move |h| IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], h))));
    let mut free4 = v4.filter(|a| !covered(cfg, *a));
    let mut free6 = (1..=0xfffu16)
        .map(|h| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x5e1f, 0, 0, 0, 0, h)))
        .filter(|a| !covered(cfg, *a));
    Some(Addrs {
        twin4: free4.next()?,
        twin6: free6.next()?,
        client4: free4.next()?,
        client6: free6.next()?,
        throttled: free4.next()?,
        closed: free4.next()?,
        banned: free4.next()?,
        fed: free4.next()?,
        scan: free4.next()?,
        syn: free4.next()?,
        decoy: free4.next()?,
        gateway: free4.next()?,
        container: free4.next()?,
    })
}

/// An address of the first [trusted] network (IPv4 first) that can sit on
/// a link: the network's first host, or the address itself. Loopback,
/// multicast, link-local and unspecified ones cannot.
pub fn trusted_source(cfg: &Config) -> Option<IpAddr> {
    let mut nets: Vec<&IpNet> = cfg.trusted.iter().collect();
    nets.sort_by_key(|n| n.addr().is_ipv6());
    nets.into_iter().find_map(|n| {
        let a = match n {
            IpNet::V4(n) if n.prefix_len() < 31 => IpAddr::V4((u32::from(n.network()) + 1).into()),
            IpNet::V6(n) if n.prefix_len() < 127 => {
                IpAddr::V6((u128::from(n.network()) + 1).into())
            }
            n => n.addr(),
        };
        let odd = match a {
            IpAddr::V4(v) => {
                v.is_loopback()
                    || v.is_multicast()
                    || v.is_unspecified()
                    || v.is_link_local()
                    || v.is_broadcast()
            }
            IpAddr::V6(v) => {
                v.is_loopback()
                    || v.is_multicast()
                    || v.is_unspecified()
                    || (v.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        (!odd).then_some(a)
    })
}

/// Whether `port` is taken by the config: a [[service]] of either protocol,
/// a decoy, a capture port threshold.
pub fn taken(cfg: &Config, port: u16) -> bool {
    cfg.services
        .iter()
        .any(|s| (s.ports.first..=s.ports.last).contains(&port))
        || cfg.capture.decoy_ports.contains(&port)
        || cfg.capture.port_thresholds.contains_key(&port)
}

/// The closed port the drop-and-log check knocks on: the first port from
/// 1 up that the config does not use.
pub fn closed_port(cfg: &Config) -> Option<u16> {
    (1..=u16::MAX).find(|p| !taken(cfg, *p))
}

/// `n` distinct free ports from 20000 up (scan's and capture's scans).
pub fn scan_ports(cfg: &Config, n: usize) -> Vec<u16> {
    (20000..=u16::MAX)
        .filter(|p| !taken(cfg, *p))
        .take(n)
        .collect()
}

/// The twin's config: the host's file with what reaches outside the twin
/// taken out ([[notify]] sinks, [fleet], [reputation], the metrics endpoint
/// and textfile), the state file in the run's temp directory, and relative
/// [blacklist] files made absolute (the copy lives elsewhere). The ruleset
/// it renders is the host's.
pub fn twin_config(text: &str, base: &Path, state: &Path) -> Result<String, Invalid> {
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        Invalid(format!("the config does not parse: {}", e.message().trim()))
    })?;
    for k in ["notify", "fleet", "reputation"] {
        doc.remove(k);
    }
    let table = |doc: &mut toml::Table, k: &str| -> Result<toml::Table, Invalid> {
        match doc.remove(k) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => Err(Invalid(format!("[{k}] is not a table"))),
        }
    };
    let mut metrics = table(&mut doc, "metrics")?;
    metrics.remove("textfile_dir");
    metrics.insert("listen".into(), "".into());
    doc.insert("metrics".into(), metrics.into());
    let mut capture = table(&mut doc, "capture")?;
    let state = state
        .to_str()
        .ok_or_else(|| Invalid("the state path is not UTF-8".into()))?;
    capture.insert("state_file".into(), state.into());
    doc.insert("capture".into(), capture.into());
    if let Some(toml::Value::Table(bl)) = doc.get_mut("blacklist") {
        if let Some(toml::Value::Array(files)) = bl.get_mut("files") {
            for f in files.iter_mut() {
                if let toml::Value::String(s) = f {
                    let p = base.join(s.as_str());
                    *s = p.to_string_lossy().into_owned();
                }
            }
        }
    }
    toml::to_string(&doc).map_err(|e| Invalid(format!("cannot write the twin's config: {e}")))
}

/// Whether the kernel message `msg` is the twin's LOG line of `src` to
/// `port`, written with `prefix` (the prefix comes right before `IN=`).
pub fn is_log_of(msg: &str, prefix: &str, iface: &str, src: IpAddr, port: u16) -> bool {
    let src = match src {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let s = a.segments().map(|g| format!("{g:04x}"));
            s.join(":")
        }
    };
    msg.contains(&format!("{prefix}IN={iface} "))
        && msg.contains(&format!(" SRC={src} "))
        && msg.contains(&format!(" DPT={port} "))
}

/// A kernel message as rsyslog's RSYSLOG_FileFormat writes it to the log
/// `scan` reads; `t`: the time, seconds since the epoch.
pub fn log_file_line(t: i64, msg: &str) -> String {
    let at = crate::units::time::utc(t).replace('Z', ".000000+00:00");
    format!("{at} fwctl-selftest kernel: {}\n", msg.trim_end())
}
