//! What capture reports, as typed events: one JSON object per line
//! (`--json`, the field names scripts and dashboards read) or one readable
//! line. Both come from the same value so they never disagree.

use crate::units::duration::human;
use crate::units::time::utc_micros;
use serde::Serialize;

/// RFC 3339 UTC time with milliseconds, from Unix microseconds.
pub fn time(us: u64) -> String {
    utc_micros(us)
}

/// "10m", "2h", "1d", "7d" style, for readable lines.
pub fn span(secs: u64) -> String {
    human(secs)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ScanDetected(ScanDetected),
    IpBlocked(IpBlocked),
    DistributedScan(DistributedScan),
    ConnectionFlood(ConnectionFlood),
    SynFlood(SynFlood),
    DecoyTouched(DecoyTouched),
    SignatureMatched(SignatureMatched),
    CaptureStats(CaptureStats),
}

/// A payload signature matched the first data segment of a connection (or
/// a UDP datagram) to one of its ports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignatureMatched {
    pub time: String,
    pub src: String,
    pub proto: &'static str,
    pub port: u16,
    pub name: String,
    pub severity: &'static str,
    /// The bytes that matched: printable ASCII as is, others as \xNN, capped.
    pub matched: String,
    pub action: String,
}

/// A source completed a TCP handshake with a decoy port: not forgeable,
/// and no client has business there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecoyTouched {
    pub time: String,
    pub src: String,
    pub port: u16,
    pub action: String,
}

/// One source opening connections to a service above `[capture.flood] syn_rate`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionFlood {
    pub time: String,
    pub src: String,
    pub port: u16,
    /// New connections (SYNs) within `over_s`, estimated.
    pub syns: u32,
    pub over_s: u64,
    /// The configured limit, e.g. "100/second".
    pub syn_rate: String,
    pub action: String,
}

/// Many sources together SYN-flooding one service: never banned (forged).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SynFlood {
    pub time: String,
    pub port: u16,
    pub syns: u32,
    pub over_s: u64,
    pub rate_per_s: u64,
    pub syn_flood_rate: String,
    /// net.ipv4.tcp_syncookies is on (unknown in a replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syncookies: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScanDetected {
    pub time: String,
    pub src: String,
    pub scan_type: &'static str,
    pub nmap: String,
    pub reason: String,
    pub ports: Vec<u16>,
    pub port_count: usize,
    pub service_ports: Vec<u16>,
    pub probes: u32,
    pub first_seen: String,
    pub duration_s: u64,
    pub profile: String,
    pub action: String,
    /// Sources that scanned the same ports in the same order within the
    /// last minute: one scanner behind decoys (nmap -D).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_ports_as: Vec<String>,
    /// What the evidence says of its source (an idle scan's forged SYNs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IpBlocked {
    pub time: String,
    pub src: String,
    pub set: String,
    pub ban_seconds: u64,
    pub offence: u32,
    pub until: String,
    pub profile: String,
    pub scan_type: &'static str,
    /// Why: the scan's reason ("9 distinct ports within 2h").
    pub reason: String,
    /// False in a replay: decided, not applied.
    pub applied: bool,
    /// From the packet's kernel timestamp to the ipset's acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistributedScan {
    pub time: String,
    pub proto: &'static str,
    pub port: u16,
    pub sources: u32,
    pub window_s: u64,
    pub profile: String,
}

/// The counters of a run. Live runs add the kernel's counters and memory; a
/// replay adds its own rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CaptureStats {
    pub time: String,
    pub frames: u64,
    pub probes: u64,
    pub tracked: usize,
    pub capacity: usize,
    pub evicted: u64,
    pub scans: u64,
    pub distributed: u64,
    pub bans: u64,
    pub ban_failures: u64,
    pub profile: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_drops: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_second: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_other_link: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kb: Option<u64>,
}

fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Event {
    /// One JSON object, no newline.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("plain data")
    }

    /// The readable line of an event.
    pub fn human(&self) -> String {
        match self {
            Event::ScanDetected(e) => {
                let svc = list(&e.service_ports);
                format!(
                    "{} scan_detected {} {} scan ({}) {}: ports {}{}; {} probes over {}s; profile {}; {}{}{}",
                    e.time,
                    e.src,
                    e.scan_type,
                    e.nmap,
                    e.reason,
                    list(&e.ports),
                    if svc.is_empty() {
                        String::new()
                    } else {
                        format!(" (+ service ports {svc}, not counted)")
                    },
                    e.probes,
                    e.duration_s,
                    e.profile,
                    e.action,
                    if e.same_ports_as.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; same ports in the same order as {} (one scanner, decoys)",
                            e.same_ports_as.join(", ")
                        )
                    },
                    e.note.as_deref().map(|n| format!("; {n}")).unwrap_or_default(),
                )
            }
            Event::IpBlocked(e) => format!(
                "{} ip_blocked {} in {} for {} (offence {}, until {}){}",
                e.time,
                e.src,
                e.set,
                span(e.ban_seconds),
                e.offence,
                e.until,
                match e.latency_us {
                    Some(l) => format!(", {l} us after the packet"),
                    None => " (replay: not applied)".into(),
                }
            ),
            Event::DistributedScan(e) => format!(
                "{} distributed_scan {} port {}: {} sources within {}",
                e.time,
                e.proto,
                e.port,
                e.sources,
                span(e.window_s),
            ),
            Event::ConnectionFlood(e) => format!(
                "{} connection_flood {} port {}: {} new connections within {} (limit {}); {}",
                e.time,
                e.src,
                e.port,
                e.syns,
                span(e.over_s),
                e.syn_rate,
                e.action,
            ),
            Event::SynFlood(e) => format!(
                "{} syn_flood port {}: {} SYNs within {} ({}/s, limit {}) from many sources, not banned (forged); SYN cookies {}",
                e.time,
                e.port,
                e.syns,
                span(e.over_s),
                e.rate_per_s,
                e.syn_flood_rate,
                match e.syncookies {
                    Some(true) => "on",
                    Some(false) => "off (sysctl -w net.ipv4.tcp_syncookies=1)",
                    None => "unknown",
                },
            ),
            Event::DecoyTouched(e) => format!(
                "{} decoy_touched {} completed a handshake with decoy port {}; {}",
                e.time, e.src, e.port, e.action
            ),
            Event::SignatureMatched(e) => format!(
                "{} signature_matched {} {} ({}) to {}/{}: \"{}\"; {}",
                e.time, e.src, e.name, e.severity, e.proto, e.port, e.matched, e.action
            ),
            Event::CaptureStats(e) => {
                let mut line = format!(
                    "{} capture_stats frames {} probes {} tracked {}/{} evicted {} scans {} bans {}",
                    e.time, e.frames, e.probes, e.tracked, e.capacity, e.evicted, e.scans, e.bans,
                );
                // Live runs have kernel counters; a replay has its own rate.
                for (v, label) in [
                    (e.kernel_drops, "kernel_drops"),
                    (e.frames_per_second, "frames/s"),
                    (e.rss_kb, "rss_kB"),
                ] {
                    if let Some(v) = v {
                        line.push_str(&format!(" {label} {v}"));
                    }
                }
                line
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(time(1_763_726_400_123_456), "2025-11-21T12:00:00.123Z");
        assert_eq!(span(7200), "2h");
    }

    #[test]
    fn readable_lines_carry_the_facts_and_json_is_tagged() {
        let ev = Event::IpBlocked(IpBlocked {
            time: "T".into(),
            src: "203.0.113.5".into(),
            set: "blacklist".into(),
            ban_seconds: 600,
            offence: 1,
            until: "U".into(),
            profile: "standard".into(),
            scan_type: "SYN",
            reason: "9 distinct ports within 2h".into(),
            applied: true,
            latency_us: Some(120),
        });
        assert_eq!(
            ev.human(),
            "T ip_blocked 203.0.113.5 in blacklist for 10m (offence 1, until U), 120 us after the packet"
        );
        assert!(
            ev.json()
                .starts_with("{\"event\":\"ip_blocked\",\"time\":\"T\""),
            "{}",
            ev.json()
        );
    }
}
