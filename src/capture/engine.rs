//! What capture does with each frame: parse it, keep only probes addressed to
//! this host, feed the detector, and turn its reports into bans (progressive
//! durations from the history) and events. The ipset writer is a trait, so
//! tests drive all of this with a recording fake and no kernel.

use super::detect::{Detector, Event, Micros, Reason, Scan, SECOND};
use super::events::{time, Sink};
use super::netlink::Added;
use super::packet::{self, Link};
use crate::state::history::History;
use ipnet::IpNet;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io;
use std::net::IpAddr;

/// An address for people: a single address without its /32 or /128.
pub fn show(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Where bans go: the kernel over netlink, or a recording fake.
pub trait Banner {
    fn add(&mut self, set: &str, net: IpNet, secs: u32) -> Result<Added, String>;
}

impl Banner for super::netlink::Ipset {
    fn add(&mut self, set: &str, net: IpNet, secs: u32) -> Result<Added, String> {
        super::netlink::Ipset::add(self, set, net, secs)
    }
}

/// A banner that records what it was asked (tests), with addresses that are
/// "already listed" and an optional error for every add.
#[derive(Default)]
pub struct Recorder {
    pub adds: Vec<(String, IpNet, u32)>,
    pub listed: HashSet<IpNet>,
    pub fail: Option<String>,
}

impl Banner for Recorder {
    fn add(&mut self, set: &str, net: IpNet, secs: u32) -> Result<Added, String> {
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        if !self.listed.insert(net) {
            return Ok(Added::AlreadyListed);
        }
        self.adds.push((set.to_string(), net, secs));
        Ok(Added::Added)
    }
}

/// A UDP datagram from a privileged port to an unprivileged one is taken for
/// a reply to this host's own query (DNS, NTP, ...), not a probe: UDP has no
/// flags to tell, and every answer to a resolver lookup would otherwise count
/// as a probe of a new high port. nmap -sU sends from a high port unless told
/// otherwise (-g 53 evades this, as it evades most firewalls' DNS rules).
pub fn is_reply(p: &packet::Probe) -> bool {
    p.kind == packet::Kind::Udp && p.sport < 1024 && p.dport >= 1024
}

/// Which destinations count as "this host".
#[derive(Clone, Debug, Default)]
pub struct Dests {
    pub exact: HashSet<IpAddr>,
    pub nets: Vec<IpNet>,
    /// Every destination counts (a replay with no protected addresses given).
    pub any: bool,
}

impl Dests {
    pub fn contains(&self, a: &IpAddr) -> bool {
        self.any || self.exact.contains(a) || self.nets.iter().any(|n| n.contains(a))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Ban through the banner.
    Ban,
    /// Report only (`--detect-only` or mode = "detection_only").
    DetectOnly,
    /// A replay: bans are decided and reported, never applied.
    Replay,
}

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub frames: u64,
    /// Probes addressed to this host (what the detector saw).
    pub probes: u64,
    pub bans: u64,
    pub ban_failures: u64,
}

pub struct Engine {
    pub detector: Detector,
    pub history: History,
    /// Ban sets: IPv4, IPv6.
    pub sets: [String; 2],
    pub trusted: Vec<IpNet>,
    pub dests: Dests,
    /// This host's own addresses: never tracked as sources, never banned.
    pub own: HashSet<IpAddr>,
    pub mode: Mode,
    pub counts: Counts,
    /// The history changed since the state file was last written.
    pub dirty: bool,
    events: Vec<Event>,
}

impl Engine {
    pub fn new(detector: Detector, history: History, sets: [String; 2], mode: Mode) -> Engine {
        Engine {
            detector,
            history,
            sets,
            trusted: Vec::new(),
            dests: Dests::default(),
            own: HashSet::new(),
            mode,
            counts: Counts::default(),
            dirty: false,
            events: Vec::new(),
        }
    }

    /// One captured frame received at `now` (µs). `clock` reads the wall
    /// clock after a ban, for the latency figure (live only).
    pub fn frame(
        &mut self,
        link: Link,
        data: &[u8],
        now: Micros,
        banner: &mut dyn Banner,
        sink: &mut Sink,
        clock: &dyn Fn() -> Micros,
    ) -> io::Result<()> {
        self.counts.frames += 1;
        let Some(p) = packet::parse(link, data) else {
            return Ok(());
        };
        if !self.dests.contains(&p.dst) || self.own.contains(&p.src) || is_reply(&p) {
            return Ok(());
        }
        self.counts.probes += 1;
        self.detector.probe(&p, now, &mut self.events);
        if self.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            match ev {
                Event::Scan(s) => self.scan(s, banner, sink, clock)?,
                Event::Distributed {
                    time: t,
                    port,
                    udp,
                    sources,
                } => sink.emit(&json!({
                    "event": "distributed_scan",
                    "time": time(*t),
                    "proto": if *udp { "udp" } else { "tcp" },
                    "port": port,
                    "sources": sources,
                    "window_s": self.detector.settings().distributed_window / SECOND,
                    "profile": self.detector.settings().profile.name,
                }))?,
            }
        }
        self.events = events;
        self.events.clear();
        Ok(())
    }

    /// Why `net` must not be banned, if it must not.
    fn exempt(&self, net: &IpNet) -> Option<&'static str> {
        let a = net.addr();
        if self
            .trusted
            .iter()
            .any(|t| t.contains(&a) || net.contains(&t.addr()))
        {
            return Some("trusted network");
        }
        if self.own.contains(&a) {
            return Some("this host's own address");
        }
        crate::scan::decide::special(&a)
    }

    fn scan(
        &mut self,
        s: &Scan,
        banner: &mut dyn Banner,
        sink: &mut Sink,
        clock: &dyn Fn() -> Micros,
    ) -> io::Result<()> {
        let settings = self.detector.settings();
        let profile = settings.profile.clone();
        let window = profile.window;
        let reason = match &s.reason {
            Reason::Ports => format!(
                "{} distinct ports within {}",
                s.counted.len(),
                super::events::span(window / SECOND)
            ),
            Reason::Port { port, probes } => format!(
                "{probes} probes to port {port} within {} (its threshold is {})",
                super::events::span(window / SECOND),
                settings.port_thresholds.get(port).copied().unwrap_or(0)
            ),
        };
        let now_s = (s.time / SECOND) as i64;
        let (offence, secs) = self.history.next_ban(&s.source, now_s, &profile.bans);
        let set = &self.sets[usize::from(s.source.addr().is_ipv6())];
        let mut quiet_until = s.time + window;
        let mut blocked: Option<Value> = None;
        let action: String = if let Some(why) = self.exempt(&s.source) {
            format!("not banned: {why}")
        } else {
            match self.mode {
                Mode::DetectOnly => "not banned: detection only".into(),
                Mode::Replay | Mode::Ban => {
                    let applied = if self.mode == Mode::Ban {
                        Some(banner.add(set, s.source, secs as u32))
                    } else {
                        None
                    };
                    match applied {
                        Some(Err(e)) => {
                            self.counts.ban_failures += 1;
                            format!("ban failed: {e}")
                        }
                        Some(Ok(Added::AlreadyListed)) => {
                            quiet_until = s.time + secs * SECOND;
                            format!("not banned: already in {set} (its timeout is left alone)")
                        }
                        Some(Ok(Added::Added)) | None => {
                            self.history.record(s.source, set, offence, now_s, secs);
                            self.dirty = true;
                            self.counts.bans += 1;
                            quiet_until = s.time + secs * SECOND;
                            let mut b = json!({
                                "event": "ip_blocked",
                                "time": time(s.time),
                                "src": show(&s.source),
                                "set": set,
                                "ban_seconds": secs,
                                "offence": offence,
                                "until": time(s.time + secs * SECOND),
                                "profile": profile.name,
                                "scan_type": s.kinds.label(),
                                "applied": applied.is_some(),
                            });
                            if applied.is_some() {
                                b["latency_us"] = json!(clock().saturating_sub(s.time));
                            }
                            blocked = Some(b);
                            if applied.is_some() {
                                format!("banned for {}", super::events::span(secs))
                            } else {
                                format!("would ban for {} (replay)", super::events::span(secs))
                            }
                        }
                    }
                }
            }
        };
        self.detector.quiet(s.key, quiet_until);
        sink.emit(&json!({
            "event": "scan_detected",
            "time": time(s.time),
            "src": show(&s.source),
            "scan_type": s.kinds.label(),
            "nmap": s.kinds.nmap(),
            "reason": reason,
            "ports": s.counted,
            "port_count": s.counted.len(),
            "service_ports": s.services,
            "probes": s.probes,
            "first_seen": time(s.first),
            "duration_s": (s.time - s.first) / SECOND,
            "profile": profile.name,
            "action": action,
        }))?;
        if let Some(b) = blocked {
            sink.emit(&b)?;
        }
        Ok(())
    }

    /// The counters for a `capture_stats` event.
    pub fn stats(&self) -> Value {
        let d = &self.detector;
        json!({
            "frames": self.counts.frames,
            "probes": self.counts.probes,
            "tracked": d.tracked(),
            "capacity": d.settings().capacity,
            "evicted": d.evicted(),
            "scans": d.stats.scans,
            "distributed": d.stats.distributed,
            "bans": self.counts.bans,
            "ban_failures": self.counts.ban_failures,
            "profile": d.settings().profile.name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::detect::{Profile, Settings};
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Clone, Default)]
    struct Buf(Rc<RefCell<Vec<u8>>>);
    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Rig {
        e: Engine,
        banner: Recorder,
        sink: Sink,
        buf: Buf,
    }

    impl Rig {
        fn new(mode: Mode) -> Rig {
            let d = Detector::new(Settings::for_profile(Profile::named("aggressive").unwrap()));
            let mut e = Engine::new(
                d,
                History::default(),
                ["blacklist".into(), "blacklist_v6".into()],
                mode,
            );
            e.dests.exact.insert("198.51.100.1".parse().unwrap());
            e.dests.exact.insert("2001:db8:100::1".parse().unwrap());
            e.trusted = vec!["192.0.2.0/24".parse().unwrap()];
            let buf = Buf::default();
            Rig {
                e,
                banner: Recorder::default(),
                sink: Sink::new(Box::new(buf.clone()), true, false),
                buf,
            }
        }

        /// A SYN scan of `ports` ports from `src` to `dst`, starting at `t` seconds.
        fn scan(&mut self, src: &str, dst: &str, ports: u16, t: u64) {
            for i in 0..ports {
                let p = packet::Probe {
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    sport: 5555,
                    dport: 1000 + i,
                    kind: packet::Kind::Syn,
                };
                let frame = frame_of(&p);
                let now = (t + u64::from(i)) * SECOND;
                self.e
                    .frame(
                        Link::Raw,
                        &frame,
                        now,
                        &mut self.banner,
                        &mut self.sink,
                        &|| now + 250,
                    )
                    .unwrap();
            }
        }

        fn events(&self) -> Vec<Value> {
            String::from_utf8(self.buf.0.borrow().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }

        fn of(&self, kind: &str) -> Vec<Value> {
            self.events()
                .into_iter()
                .filter(|e| e["event"] == kind)
                .collect()
        }
    }

    /// A raw IPv4/IPv6 + TCP SYN packet for a probe (enough for the parser).
    fn frame_of(p: &packet::Probe) -> Vec<u8> {
        let mut f = Vec::new();
        match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => unreachable!(),
        }
        f.extend_from_slice(&p.sport.to_be_bytes());
        f.extend_from_slice(&p.dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 4, 0, 0, 0, 0, 0]);
        f
    }

    #[test]
    fn a_scan_is_banned_with_latency_and_recorded() {
        let mut r = Rig::new(Mode::Ban);
        r.scan("203.0.113.5", "198.51.100.1", 3, 1000);
        assert_eq!(
            r.banner.adds,
            vec![("blacklist".into(), "203.0.113.5/32".parse().unwrap(), 300)]
        );
        let b = &r.of("ip_blocked")[0];
        assert_eq!(b["latency_us"], 250);
        assert_eq!(b["src"], "203.0.113.5");
        assert_eq!(r.of("scan_detected")[0]["action"], "banned for 5m");
        assert!(r.e.dirty);
        assert_eq!(r.e.history.active(1002).len(), 1);
    }

    #[test]
    fn repeat_offenders_get_longer_bans() {
        let mut r = Rig::new(Mode::Ban);
        let mut t = 1000;
        let mut got = Vec::new();
        for _ in 0..5 {
            r.banner.listed.clear(); // the kernel let the last ban expire
            r.scan("2001:db8:bad::7", "2001:db8:100::1", 3, t);
            let (_, net, secs) = r.banner.adds.last().unwrap().clone();
            assert_eq!(net.to_string(), "2001:db8:bad::7/128");
            got.push(secs);
            t += u64::from(secs) + 10;
        }
        assert_eq!(got, vec![300, 3600, 43200, 259200, 259200]);
        assert_eq!(r.banner.adds[0].0, "blacklist_v6");
    }

    #[test]
    fn while_banned_the_source_is_quiet() {
        let mut r = Rig::new(Mode::Ban);
        r.scan("203.0.113.5", "198.51.100.1", 3, 1000);
        r.scan("203.0.113.5", "198.51.100.1", 3, 1100);
        assert_eq!(r.banner.adds.len(), 1);
        assert_eq!(r.of("scan_detected").len(), 1);
    }

    #[test]
    fn trusted_and_own_addresses_are_never_banned_even_when_spoofed() {
        let mut r = Rig::new(Mode::Ban);
        r.scan("192.0.2.77", "198.51.100.1", 10, 1000);
        assert!(r.banner.adds.is_empty());
        let s = &r.of("scan_detected")[0];
        assert_eq!(s["action"], "not banned: trusted network");
        assert!(r.of("ip_blocked").is_empty());
        // Probes from this host's own address are not even tracked.
        r.e.own.insert("198.51.100.2".parse().unwrap());
        r.scan("198.51.100.2", "198.51.100.1", 10, 2000);
        assert_eq!(r.of("scan_detected").len(), 1);
    }

    #[test]
    fn only_probes_to_this_host_count() {
        let mut r = Rig::new(Mode::Ban);
        r.scan("203.0.113.5", "198.51.100.200", 10, 1000);
        assert!(r.events().is_empty());
        assert_eq!(r.e.counts.probes, 0);
    }

    #[test]
    fn udp_replies_to_our_own_queries_are_not_probes() {
        let mut r = Rig::new(Mode::Ban);
        for (i, port) in (33000..33010u16).enumerate() {
            let mut f = frame_of(&packet::Probe {
                src: "203.0.113.53".parse().unwrap(),
                dst: "198.51.100.1".parse().unwrap(),
                sport: 53,
                dport: port,
                kind: packet::Kind::Syn,
            });
            f[9] = 17; // UDP instead of TCP
            let now = (1000 + i as u64) * SECOND;
            r.e.frame(Link::Raw, &f, now, &mut r.banner, &mut r.sink, &|| now)
                .unwrap();
        }
        assert_eq!(r.e.counts.probes, 0);
        assert!(r.events().is_empty());
    }

    #[test]
    fn detect_only_reports_without_banning() {
        let mut r = Rig::new(Mode::DetectOnly);
        r.scan("203.0.113.5", "198.51.100.1", 3, 1000);
        assert!(r.banner.adds.is_empty());
        assert_eq!(
            r.of("scan_detected")[0]["action"],
            "not banned: detection only"
        );
        assert!(r.of("ip_blocked").is_empty());
    }

    #[test]
    fn replay_decides_but_never_applies() {
        let mut r = Rig::new(Mode::Replay);
        r.scan("203.0.113.5", "198.51.100.1", 3, 1000);
        assert!(r.banner.adds.is_empty());
        let b = &r.of("ip_blocked")[0];
        assert_eq!(
            (b["applied"].as_bool(), b["ban_seconds"].as_u64()),
            (Some(false), Some(300))
        );
        assert!(b.get("latency_us").is_none());
    }

    #[test]
    fn already_listed_and_failed_bans_are_reported() {
        let mut r = Rig::new(Mode::Ban);
        r.banner.listed.insert("203.0.113.5/32".parse().unwrap());
        r.scan("203.0.113.5", "198.51.100.1", 3, 1000);
        assert!(r.of("scan_detected")[0]["action"]
            .as_str()
            .unwrap()
            .starts_with("not banned: already in blacklist"));
        assert!(r.e.history.is_empty());
        r.banner.fail = Some("ipset blacklist does not exist; fix: run `fwctl apply`".into());
        r.scan("203.0.113.6", "198.51.100.1", 3, 1000);
        assert_eq!(r.e.counts.ban_failures, 1);
        assert!(r.of("scan_detected")[1]["action"]
            .as_str()
            .unwrap()
            .contains("fwctl apply"));
    }
}
