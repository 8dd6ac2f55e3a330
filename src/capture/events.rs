//! Events as they are written: one JSON object per line (`--json`), or one
//! readable line. Both come from the same JSON value so they never disagree.

use serde_json::{json, Value};
use std::io::{self, Write};

/// RFC 3339 UTC time with milliseconds, from Unix microseconds.
pub fn time(us: u64) -> String {
    let utc = crate::scan::report::utc((us / 1_000_000) as i64);
    format!("{}.{:03}Z", utc.trim_end_matches('Z'), (us / 1000) % 1000)
}

/// "10m", "2h", "1d", "7d" style, for readable lines.
pub fn span(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

pub struct Sink {
    out: Box<dyn Write>,
    json: bool,
    /// Flush after every event (live: a reader sees it at once).
    eager: bool,
}

impl Sink {
    pub fn new(out: Box<dyn Write>, json: bool, eager: bool) -> Sink {
        Sink { out, json, eager }
    }

    pub fn emit(&mut self, ev: &Value) -> io::Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.out, ev)?;
            self.out.write_all(b"\n")?;
        } else {
            writeln!(self.out, "{}", human(ev))?;
        }
        if self.eager {
            self.out.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("?")
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn ports(v: &Value, k: &str) -> String {
    let list: Vec<String> = v
        .get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|p| p.to_string()).collect())
        .unwrap_or_default();
    list.join(",")
}

/// The readable line of an event.
pub fn human(ev: &Value) -> String {
    let t = s(ev, "time");
    match s(ev, "event") {
        "scan_detected" => {
            let svc = ports(ev, "service_ports");
            format!(
                "{t} scan_detected {} {} scan ({}) {}: ports {}{}; {} probes over {}s; profile {}; {}",
                s(ev, "src"),
                s(ev, "scan_type"),
                s(ev, "nmap"),
                s(ev, "reason"),
                ports(ev, "ports"),
                if svc.is_empty() {
                    String::new()
                } else {
                    format!(" (+ service ports {svc}, not counted)")
                },
                n(ev, "probes"),
                n(ev, "duration_s"),
                s(ev, "profile"),
                s(ev, "action"),
            )
        }
        "ip_blocked" => format!(
            "{t} ip_blocked {} in {} for {} (offence {}, until {}){}",
            s(ev, "src"),
            s(ev, "set"),
            span(n(ev, "ban_seconds")),
            n(ev, "offence"),
            s(ev, "until"),
            match ev.get("latency_us").and_then(Value::as_u64) {
                Some(l) => format!(", {l} us after the packet"),
                None => " (replay: not applied)".into(),
            }
        ),
        "distributed_scan" => format!(
            "{t} distributed_scan {} port {}: {} sources within {}",
            s(ev, "proto"),
            n(ev, "port"),
            n(ev, "sources"),
            span(n(ev, "window_s")),
        ),
        "capture_stats" => {
            let mut line = format!(
                "{t} capture_stats frames {} probes {} tracked {}/{} evicted {} scans {} bans {}",
                n(ev, "frames"),
                n(ev, "probes"),
                n(ev, "tracked"),
                n(ev, "capacity"),
                n(ev, "evicted"),
                n(ev, "scans"),
                n(ev, "bans"),
            );
            // Live runs have kernel counters; a replay has its own rate.
            for (key, label) in [
                ("kernel_drops", "kernel_drops"),
                ("frames_per_second", "frames/s"),
                ("rss_kb", "rss_kB"),
            ] {
                if ev.get(key).is_some() {
                    line.push_str(&format!(" {label} {}", n(ev, key)));
                }
            }
            line
        }
        "ban_failed" => format!("{t} ban_failed {}: {}", s(ev, "src"), s(ev, "error")),
        other => format!("{t} {other} {ev}"),
    }
}

/// A `capture_stats` event body (the caller adds counters it owns).
pub fn stats(time_us: u64, fields: Value) -> Value {
    let mut v = json!({"event": "capture_stats", "time": time(time_us)});
    if let (Some(o), Value::Object(f)) = (v.as_object_mut(), fields) {
        o.extend(f);
    }
    v
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
    fn readable_lines_carry_the_facts() {
        let ev = json!({"event": "ip_blocked", "time": "T", "src": "203.0.113.5", "set": "blacklist",
            "ban_seconds": 600, "offence": 1, "until": "U", "latency_us": 120});
        assert_eq!(
            human(&ev),
            "T ip_blocked 203.0.113.5 in blacklist for 10m (offence 1, until U), 120 us after the packet"
        );
    }
}
