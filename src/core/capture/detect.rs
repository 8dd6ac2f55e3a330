//! The scan detector (pure): probes and their times in, events out. No clock,
//! no I/O: the live capture passes kernel receive times, a replay passes the
//! capture file's own timestamps, tests pass whatever they like.
//!
//! Per source it keeps the distinct destination ports probed within the
//! profile's window. A scan is `ports` distinct ports inside the window.
//! Repeats to the same port never add up (a user reaching the same service
//! all day is one port). Plain SYNs to a TCP service the config allows, and
//! UDP to an allowed UDP service, are *counted apart*: they are kept and
//! reported but do not count toward the threshold, so a user of ssh, http and
//! https is not a "scanner". FIN, NULL, XMAS and odd-flag probes count on any
//! port, service or not: no legitimate client sends them.

use super::packet::{Addr, Kind, Kinds, Probe};
use super::table::{Sightings, Table};
use crate::core::config::{Config, Protocol};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::HashMap;

// The plain data the config also names lives below this module (the config
// must not import the detector it configures).
pub use crate::core::config::capture::Profile;
pub use crate::units::time::{Micros, SECOND};

/// What a service port is, for counting apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePorts {
    pub udp: bool,
    pub first: u16,
    pub last: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub profile: Profile,
    /// Per destination port (TCP and UDP): probes from one source within the
    /// window that are a scan on their own (e.g. 22 => 3).
    pub port_thresholds: HashMap<u16, u32>,
    pub services: Vec<ServicePorts>,
    /// Most sources tracked at once.
    pub capacity: usize,
    /// IPv6 sources are tracked (and banned) as this prefix: 128 or e.g. 64.
    pub v6_prefix: u8,
    /// A distributed scan: at least this many sources probing one port
    /// within `distributed_window`. 0 disables.
    pub distributed_sources: u32,
    pub distributed_window: Micros,
}

impl Settings {
    pub fn for_profile(profile: Profile) -> Settings {
        Settings {
            profile,
            port_thresholds: HashMap::new(),
            services: Vec::new(),
            capacity: 100_000,
            v6_prefix: 128,
            distributed_sources: 20,
            distributed_window: 600 * SECOND,
        }
    }

    /// The settings for a config: its `[capture]` section with the config's
    /// services counted apart.
    pub fn from_config(config: &Config) -> Settings {
        let c = &config.capture;
        let mut s = Settings::for_profile(c.profile.clone());
        s.port_thresholds = c.port_thresholds.iter().map(|(&p, &n)| (p, n)).collect();
        s.services = config
            .services
            .iter()
            .map(|svc| ServicePorts {
                udp: svc.protocol == Protocol::Udp,
                first: svc.ports.first,
                last: svc.ports.last,
            })
            .collect();
        s.capacity = c.max_sources;
        s.v6_prefix = c.ipv6_prefix;
        s.distributed_sources = c.distributed_sources;
        s.distributed_window = c.distributed_window * SECOND;
        s
    }

    pub fn is_service(&self, p: &Probe) -> bool {
        // (An ACK, SCTP or protocol probe is never a service visit: a
        // client's ACKs belong to a connection conntrack knows.)
        let udp = match p.kind {
            Kind::Syn => false,
            Kind::Udp => true,
            _ => return false,
        };
        self.services
            .iter()
            .any(|s| s.udp == udp && (s.first..=s.last).contains(&p.dport))
    }
}

/// Why a source was reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `ports` distinct ports within the window.
    Ports,
    /// This many probes to one port with its own threshold.
    Port { port: u16, probes: u32 },
    /// A TCP first fragment of `bytes` TCP bytes to `port`: too short to
    /// hold the flags (RFC 1858), a scan on its own.
    TinyFragment { port: u16, bytes: usize },
}

/// How long after a scan another one with the same port sequence counts as
/// the same scanner's (nmap -D sends each probe from every decoy within
/// microseconds).
pub const SAME_SCANNER: Micros = 60 * SECOND;
/// Recent scans remembered for that.
const RECENT: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Scan(Scan),
    Distributed {
        time: Micros,
        port: u16,
        udp: bool,
        sources: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    pub time: Micros,
    pub source: IpNet,
    pub key: u128,
    pub reason: Reason,
    /// Distinct ports within the window that counted toward the threshold.
    pub counted: Vec<u16>,
    /// Service ports seen (not counted).
    pub services: Vec<u16>,
    pub kinds: Kinds,
    pub probes: u32,
    pub first: Micros,
    /// Other sources whose scans probed the same ports in the same order
    /// within `SAME_SCANNER` before this one: decoys of one scanner (-D).
    pub same_ports_as: Vec<IpNet>,
    /// Every TCP probe came from this one port below 1024: what the SYNs
    /// of an idle scan (-sI) look like, forged with the zombie's address
    /// and port (or a scanner's -g).
    pub fixed_low_sport: Option<u16>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PortSeen {
    last: Micros,
    first: Micros,
    count: u32,
    port: u16,
    /// `Kind::space`: TCP, UDP, SCTP port or IP protocol.
    space: u8,
    service: bool,
}

/// What the detector keeps per source. The first port lives inline, so the
/// one-packet sources of a spoofed flood cost no allocation.
#[derive(Clone, Debug, Default)]
pub struct Tracked {
    first: Micros,
    probes: u32,
    kinds: Kinds,
    quiet_until: Micros,
    /// The TCP source port of every probe so far (from the second on);
    /// `MIXED` once two differ.
    sport: Option<u16>,
    one: Option<PortSeen>,
    more: Vec<PortSeen>,
}

const MIXED: u16 = 0;

impl Tracked {
    fn ports(&self) -> impl Iterator<Item = &PortSeen> {
        self.one.iter().chain(self.more.iter())
    }

    fn find(&mut self, port: u16, space: u8) -> Option<&mut PortSeen> {
        self.one
            .iter_mut()
            .chain(self.more.iter_mut())
            .find(|p| p.port == port && p.space == space)
    }

    fn note_sport(&mut self, p: &Probe) {
        if p.kind.space() != super::packet::SPACE_TCP || p.kind == Kind::Frag {
            return;
        }
        self.sport = match self.sport {
            None => Some(p.sport),
            Some(s) if s == p.sport => Some(s),
            Some(_) => Some(MIXED),
        };
    }

    fn push(&mut self, p: PortSeen) {
        if self.one.is_none() {
            self.one = Some(p);
        } else {
            self.more.push(p);
        }
    }

    /// Forget ports not probed within the window.
    fn expire(&mut self, since: Micros) {
        self.more.retain(|p| p.last >= since);
        if self.one.is_some_and(|p| p.last < since) {
            self.one = self.more.pop();
        }
    }

    fn reset(&mut self) {
        self.one = None;
        self.more = Vec::new();
        self.probes = 0;
        self.kinds = Kinds::default();
        self.sport = None;
    }
}

/// Per-port counts of new sources, over a sliding window estimated from the
/// current and previous fixed windows (constant memory per port).
#[derive(Clone, Copy, Default)]
struct PortWindow {
    start: Micros,
    count: u32,
    prev: u32,
    alerted: Option<Micros>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub scans: u64,
    pub distributed: u64,
}

/// A source's first probe, held until its second (`Sightings`). The time
/// is split in halves so that the struct is 12 bytes aligned to 4: four of
/// them and their tags fill one cache line.
#[derive(Clone, Copy, Default)]
struct Sight {
    port: u16,
    /// The port's space (`Kind::space`) in bits 0-1, service in bit 2.
    flags: u8,
    /// The probe's kind (`Kind as u8`).
    kind: u8,
    time: [u32; 2],
}

impl Sight {
    fn space(&self) -> u8 {
        self.flags & 3
    }

    fn service(&self) -> bool {
        self.flags & 4 != 0
    }

    fn time(&self) -> Micros {
        u64::from(self.time[0]) << 32 | u64::from(self.time[1])
    }
}

// Checked when building: a bigger Sight would spill each bucket over two
// cache lines again.
const _: () = assert!(std::mem::size_of::<Sight>() == 12 && std::mem::align_of::<Sight>() == 4);

impl super::table::Stamped for Sight {
    fn stamp(&self) -> u64 {
        self.time()
    }
}

pub struct Detector {
    settings: Settings,
    table: Table<Tracked>,
    /// None when one probe can be a scan on its own (ports = 1, or a port
    /// threshold of 1): then every source goes straight into the table.
    first: Option<Sightings<Sight>>,
    ports: Vec<PortWindow>,
    /// Recent scans: (port-sequence hash, time, source), for decoys.
    recent: std::collections::VecDeque<(u64, Micros, IpNet)>,
    pub stats: Stats,
}

impl Detector {
    pub fn new(settings: Settings) -> Detector {
        let ports = if settings.distributed_sources > 0 {
            vec![PortWindow::default(); 2 * 65536]
        } else {
            Vec::new()
        };
        let one_can_scan =
            settings.profile.ports <= 1 || settings.port_thresholds.values().any(|&n| n <= 1);
        let table = Table::new(settings.capacity);
        // The sightings hash as the table does: one hash a frame serves both.
        let first =
            (!one_can_scan).then(|| Sightings::with_hasher(settings.capacity, table.hasher()));
        Detector {
            table,
            first,
            settings,
            ports,
            recent: Default::default(),
            stats: Stats::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    pub fn evicted(&self) -> u64 {
        self.table.evicted()
    }

    /// The tracking key of an address: IPv4 as a mapped address, IPv6 cut to
    /// the configured prefix.
    pub fn key(&self, a: impl Into<Addr>) -> u128 {
        let a = a.into();
        if a.is_v4() {
            return a.0;
        }
        let p = u32::from(self.settings.v6_prefix.min(128));
        if p == 0 {
            0
        } else {
            a.0 & (u128::MAX << (128 - p))
        }
    }

    /// The address or network a key stands for (what gets banned).
    pub fn net(&self, key: u128) -> IpNet {
        let v6 = std::net::Ipv6Addr::from(key);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, 32).expect("/32")),
            None => IpNet::V6(Ipv6Net::new(v6, self.settings.v6_prefix).expect("prefix <= 128")),
        }
    }

    /// Say nothing more about `key` until `until` (it is banned, or was
    /// reported in detection-only mode). Its ports start afresh after that.
    pub fn quiet(&mut self, key: u128, until: Micros) {
        let (t, _) = self.table.touch(key, Tracked::default);
        t.reset();
        t.quiet_until = until;
    }

    /// Whether `key` is to be left alone at `now` (banned, or reported).
    pub fn is_quiet(&self, key: u128, now: Micros) -> bool {
        self.table.get(key).is_some_and(|t| t.quiet_until > now)
    }

    /// `src` sends a probe a few frames from now: what to prefetch for it
    /// (see `Sightings::bucket_addr_hashed`).
    pub fn warm(&self, src: Addr) -> [Option<*const u8>; 2] {
        let h = self.table.hash(self.key(src));
        [
            Some(self.table.filter_addr(h)),
            self.first.as_ref().map(|fs| fs.bucket_addr_hashed(h)),
        ]
    }

    /// Feed one probe seen at `now`.
    pub fn probe(&mut self, p: &Probe, now: Micros, out: &mut Vec<Event>) {
        let key = self.key(p.src);
        let window = self.settings.profile.window;
        let service = self.settings.is_service(p);
        let space = p.kind.space();
        let h = self.table.hash(key);
        let t = match self.table.find_hashed(key, h) {
            Some(i) => self.table.touch_at(i),
            None => {
                let mut seen = None;
                if let Some(fs) = self.first.as_mut() {
                    let first = || Sight {
                        port: p.dport,
                        flags: space | u8::from(service) << 2,
                        kind: p.kind as u8,
                        time: [(now >> 32) as u32, now as u32],
                    };
                    match fs.take_or_record_hashed(h, first) {
                        Some(s) => seen = Some(s),
                        None => {
                            if !service {
                                self.count_source(p, now, out);
                            }
                            return;
                        }
                    }
                }
                let (t, _) = self.table.touch(key, Tracked::default);
                // The first probe, unless it fell out of the window.
                if let Some(s) = seen.filter(|s| s.time() >= now.saturating_sub(window)) {
                    let time = s.time();
                    t.first = time;
                    t.probes = 1;
                    t.kinds = Kinds::of(Kind::from_index(s.kind));
                    t.push(PortSeen {
                        last: time,
                        first: time,
                        count: 1,
                        port: s.port,
                        space: s.space(),
                        service: s.service(),
                    });
                }
                t
            }
        };
        if t.quiet_until > now {
            return;
        }
        if t.probes == 0 {
            t.first = now;
        }
        t.probes = t.probes.saturating_add(1);
        t.kinds.add(p.kind);
        t.note_sport(p);
        let since = now.saturating_sub(window);
        let mut new_port = false;
        let count = match t.find(p.dport, space) {
            Some(seen) => {
                if seen.first < since {
                    seen.first = now;
                    seen.count = 0;
                }
                seen.last = now;
                seen.count = seen.count.saturating_add(1);
                // A port probed with an odd flag set is no longer a service visit.
                seen.service &= service;
                seen.count
            }
            None => {
                t.expire(since);
                t.push(PortSeen {
                    last: now,
                    first: now,
                    count: 1,
                    port: p.dport,
                    space,
                    service,
                });
                new_port = true;
                1
            }
        };
        let (counted, distinct) = t
            .ports()
            .fold((0u32, 0u32), |(c, d), s| (c + u32::from(!s.service), d + 1));
        let reason = if counted >= self.settings.profile.ports {
            Some(Reason::Ports)
        } else {
            self.settings
                .port_thresholds
                .get(&p.dport)
                .filter(|&&limit| count >= limit)
                .map(|_| Reason::Port {
                    port: p.dport,
                    probes: count,
                })
        };
        if let Some(reason) = reason {
            // The counted ports in the order they were first probed: what
            // decoys of one scanner share.
            let mut seq: Vec<(Micros, u8, u16)> = t
                .ports()
                .filter(|s| !s.service)
                .map(|s| (s.first, s.space, s.port))
                .collect();
            seq.sort_by_key(|&(first, _, _)| first);
            let mut counted: Vec<u16> = t.ports().filter(|s| !s.service).map(|s| s.port).collect();
            let mut services: Vec<u16> = t.ports().filter(|s| s.service).map(|s| s.port).collect();
            counted.sort_unstable();
            counted.dedup();
            services.sort_unstable();
            services.dedup();
            let (kinds, probes, first) = (t.kinds, t.probes, t.first);
            let fixed_low_sport = t
                .sport
                .filter(|&s| s != MIXED && s < 1024 && kinds == Kinds::of(Kind::Syn));
            // Until the caller says otherwise, stay quiet for a window.
            t.reset();
            t.quiet_until = now.saturating_add(window);
            self.stats.scans += 1;
            let source = self.net(key);
            let same_ports_as = self.same_scanner(&seq, now, source);
            out.push(Event::Scan(Scan {
                time: now,
                source,
                key,
                reason,
                counted,
                services,
                kinds,
                probes,
                first,
                same_ports_as,
                fixed_low_sport,
            }));
        } else if distinct >= 2 {
            self.table.promote(key);
        }
        if new_port && !service {
            self.count_source(p, now, out);
        }
    }

    /// The sources of recent scans with this port sequence (nmap -D: one
    /// scanner, several source addresses); remembers this one.
    fn same_scanner(
        &mut self,
        seq: &[(Micros, u8, u16)],
        now: Micros,
        source: IpNet,
    ) -> Vec<IpNet> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for &(_, space, port) in seq {
            (space, port).hash(&mut h);
        }
        let fp = h.finish();
        while self
            .recent
            .front()
            .is_some_and(|&(_, t, _)| t.saturating_add(SAME_SCANNER) < now)
        {
            self.recent.pop_front();
        }
        let same = self
            .recent
            .iter()
            .filter(|&&(f, _, s)| f == fp && s != source)
            .map(|&(_, _, s)| s)
            .collect();
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((fp, now, source));
        same
    }

    fn count_source(&mut self, p: &Probe, now: Micros, out: &mut Vec<Event>) {
        if self.ports.is_empty() || p.kind.space() > super::packet::SPACE_UDP {
            return;
        }
        let udp = p.kind.is_udp();
        let w = self.settings.distributed_window.max(1);
        let slot = &mut self.ports[usize::from(udp) * 65536 + usize::from(p.dport)];
        // Times may come out of order (pcapng merges, multi-queue NICs): a
        // probe from before the current window counts in it, and no
        // difference is taken the wrong way round.
        if now >= slot.start.saturating_add(w.saturating_mul(2)) {
            *slot = PortWindow {
                start: now,
                alerted: slot.alerted,
                ..Default::default()
            };
        } else if now >= slot.start.saturating_add(w) {
            slot.prev = slot.count;
            slot.count = 0;
            slot.start += w;
        }
        slot.count = slot.count.saturating_add(1);
        let due = slot.alerted.is_none_or(|at| now >= at.saturating_add(w));
        if !due {
            return;
        }
        let left = w - now.saturating_sub(slot.start).min(w);
        let threshold = self.settings.distributed_sources;
        if reaches(slot.count, slot.prev, left, w, threshold) {
            let est = estimate(slot.count, slot.prev, left, w);
            slot.alerted = Some(now);
            self.stats.distributed += 1;
            out.push(Event::Distributed {
                time: now,
                port: p.dport,
                udp,
                sources: u32::try_from(est).unwrap_or(u32::MAX),
            });
        }
    }
}

/// How many sources a port saw in the sliding window: this window's count
/// and the previous one's, weighted by how much of the window (`w`) is
/// still `left` of it.
fn estimate(count: u32, prev: u32, left: u64, w: u64) -> u128 {
    u128::from(count) + u128::from(prev) * u128::from(left) / u128::from(w)
}

/// `estimate(..) >= threshold`, asked without dividing: a 64-bit divide on
/// every first sighting of a spoofed flood was most of count_source.
fn reaches(count: u32, prev: u32, left: u64, w: u64, threshold: u32) -> bool {
    let need = u128::from(threshold.saturating_sub(count));
    u128::from(prev) * u128::from(left) >= need * u128::from(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Micros = 60 * SECOND;

    fn probe(src: &str, dport: u16, kind: Kind) -> Probe {
        Probe {
            src: src.parse().unwrap(),
            dst: "198.51.100.1".parse().unwrap(),
            sport: 40000,
            dport,
            kind,
        }
    }

    fn standard() -> Detector {
        let mut s = Settings::for_profile(Profile::named("standard").unwrap());
        s.services = vec![
            ServicePorts {
                udp: false,
                first: 22,
                last: 22,
            },
            ServicePorts {
                udp: false,
                first: 80,
                last: 80,
            },
            ServicePorts {
                udp: false,
                first: 443,
                last: 443,
            },
            ServicePorts {
                udp: true,
                first: 53,
                last: 53,
            },
        ];
        Detector::new(s)
    }

    /// Feed (minute, port, kind) probes from one source; the scans reported.
    fn feed(d: &mut Detector, src: &str, probes: &[(u64, u16, Kind)]) -> Vec<Scan> {
        let mut out = Vec::new();
        for &(min, port, kind) in probes {
            d.probe(&probe(src, port, kind), 1_000 * SECOND + min * M, &mut out);
        }
        out.into_iter()
            .filter_map(|e| match e {
                Event::Scan(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_scan_type_is_classified() {
        for kind in Kind::ALL {
            let mut d = standard();
            let probes: Vec<_> = (0..7).map(|i| (0, 1000 + i, kind)).collect();
            let scans = feed(&mut d, "203.0.113.5", &probes);
            assert_eq!(scans.len(), 1, "{kind:?}");
            assert_eq!(scans[0].kinds.label(), kind.name());
            assert_eq!(scans[0].kinds.nmap(), kind.nmap());
        }
        let mut d = standard();
        let probes: Vec<_> = (0..7)
            .map(|i| (0, 1000 + i, if i % 2 == 0 { Kind::Syn } else { Kind::Udp }))
            .collect();
        let s = &feed(&mut d, "203.0.113.5", &probes)[0];
        assert_eq!(
            (s.kinds.label(), s.kinds.nmap().as_str()),
            ("mixed", "-sS -sU")
        );
    }

    #[test]
    fn the_threshold_is_exact() {
        let mut d = standard();
        let six: Vec<_> = (0..6).map(|i| (i, 1000 + i as u16, Kind::Syn)).collect();
        assert!(feed(&mut d, "203.0.113.5", &six).is_empty());
        let s = feed(&mut d, "203.0.113.5", &[(6, 2000, Kind::Syn)]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].counted, vec![1000, 1001, 1002, 1003, 1004, 1005, 2000]);
        assert_eq!(s[0].reason, Reason::Ports);
        assert_eq!(s[0].source.to_string(), "203.0.113.5/32");
    }

    #[test]
    fn repeats_to_one_port_never_make_a_scan() {
        let mut d = standard();
        let many: Vec<_> = (0..5000).map(|i| (i / 10, 8080, Kind::Syn)).collect();
        assert!(feed(&mut d, "198.51.100.10", &many).is_empty());
    }

    #[test]
    fn service_ports_are_counted_apart_but_odd_flags_count_anywhere() {
        let mut d = standard();
        // A user of ssh, http, https and DNS, all day, plus five other ports.
        let mut user: Vec<_> = (0..600)
            .map(|i| (i, [22, 80, 443][i as usize % 3], Kind::Syn))
            .collect();
        user.push((1, 53, Kind::Udp));
        user.extend((0..5).map(|i| (i, 3000 + i as u16, Kind::Syn)));
        assert!(feed(&mut d, "198.51.100.10", &user).is_empty());
        // A FIN scan of the same service ports does count.
        let fins: Vec<_> = [22, 80, 443, 25, 110, 143, 993]
            .iter()
            .map(|&p| (0, p, Kind::Fin))
            .collect();
        let s = feed(&mut d, "203.0.113.9", &fins);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].counted.len(), 7);
    }

    #[test]
    fn a_service_user_who_also_scans_reports_the_services_apart() {
        let mut d = standard();
        let mut probes = vec![(0, 22, Kind::Syn), (0, 80, Kind::Syn)];
        probes.extend((0..7).map(|i| (1, 5000 + i as u16, Kind::Syn)));
        let s = &feed(&mut d, "203.0.113.9", &probes)[0];
        assert_eq!(s.services, vec![22, 80]);
        assert_eq!(s.counted.len(), 7);
        assert_eq!(s.probes, 9);
    }

    #[test]
    fn slow_scans_inside_the_window_are_caught_and_older_ports_expire() {
        // One probe every 15 minutes: 7 ports take 90 minutes, inside 2 h.
        let mut d = standard();
        let slow: Vec<_> = (0..7)
            .map(|i| (i * 15, 1000 + i as u16, Kind::Syn))
            .collect();
        let s = feed(&mut d, "203.0.113.7", &slow);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].time - s[0].first, 90 * M);
        // One probe every 21 minutes: 7 ports take 126 minutes, never 7 in 2 h.
        let mut d = standard();
        let slower: Vec<_> = (0..20)
            .map(|i| (i * 21, 1000 + i as u16, Kind::Syn))
            .collect();
        assert!(feed(&mut d, "203.0.113.7", &slower).is_empty());
    }

    #[test]
    fn per_port_thresholds_count_repeats() {
        let mut d = standard();
        d.settings.port_thresholds.insert(22, 3);
        assert!(feed(
            &mut d,
            "203.0.113.2",
            &[(0, 22, Kind::Syn), (1, 22, Kind::Syn)]
        )
        .is_empty());
        let s = feed(&mut d, "203.0.113.2", &[(2, 22, Kind::Syn)]);
        assert_eq!(
            s[0].reason,
            Reason::Port {
                port: 22,
                probes: 3
            }
        );
        // Outside the window the count starts again.
        let mut d = standard();
        d.settings.port_thresholds.insert(22, 3);
        let spaced = [(0, 22, Kind::Syn), (1, 22, Kind::Syn), (200, 22, Kind::Syn)];
        assert!(feed(&mut d, "203.0.113.2", &spaced).is_empty());
    }

    #[test]
    fn a_reported_source_is_quiet_until_told_otherwise() {
        let mut d = standard();
        let scan: Vec<_> = (0..7).map(|i| (0, 1000 + i, Kind::Syn)).collect();
        assert_eq!(feed(&mut d, "203.0.113.5", &scan).len(), 1);
        assert!(feed(&mut d, "203.0.113.5", &scan).is_empty());
        let key = d.key("203.0.113.5".parse::<Addr>().unwrap());
        // Banned for 10 minutes: after that, the same scan is reported again.
        d.quiet(key, 1_000 * SECOND + 10 * M);
        let later: Vec<_> = (0..7).map(|i| (11, 1000 + i, Kind::Syn)).collect();
        assert_eq!(feed(&mut d, "203.0.113.5", &later).len(), 1);
    }

    #[test]
    fn ipv6_sources_can_be_aggregated_to_a_64() {
        let mut d = standard();
        let mut out = Vec::new();
        for i in 0..7u16 {
            let src = format!("2001:db8:bad:1::{:x}", i + 1);
            d.probe(&probe(&src, 1000 + i, Kind::Syn), SECOND, &mut out);
        }
        assert!(out.is_empty(), "per address: 7 sources of one port each");
        d.settings.v6_prefix = 64;
        for i in 0..7u16 {
            let src = format!("2001:db8:bad:2::{:x}", i + 1);
            d.probe(&probe(&src, 1000 + i, Kind::Syn), SECOND, &mut out);
        }
        match &out[..] {
            [Event::Scan(s)] => assert_eq!(s.source.to_string(), "2001:db8:bad:2::/64"),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn the_threshold_is_reached_exactly_when_the_estimate_reaches_it(
            count in 0u32..100, prev in 0u32..100, w in 1u64..100_000_000,
            left_part in 0u64..=1000, threshold in 0u32..200,
        ) {
            let left = w * left_part / 1000;
            proptest::prop_assert_eq!(
                reaches(count, prev, left, w, threshold),
                estimate(count, prev, left, w) >= u128::from(threshold)
            );
        }
    }

    #[test]
    fn the_threshold_edges() {
        // 10 + 20 * 50 / 100 = 20; 10 + 20 * 49 / 100 = 19 (rounded down).
        assert!(reaches(10, 20, 50, 100, 20) && !reaches(10, 20, 50, 100, 21));
        assert!(!reaches(10, 20, 49, 100, 20) && reaches(10, 20, 49, 100, 19));
        assert!(reaches(20, 0, 0, 100, 20) && reaches(u32::MAX, 0, 0, 1, u32::MAX));
    }

    #[test]
    fn a_distributed_scan_is_reported_once_per_window() {
        let mut d = standard();
        let mut out = Vec::new();
        for i in 0..19u32 {
            let src = std::net::Ipv4Addr::from(0xcb00_7100 + i).to_string();
            d.probe(&probe(&src, 23, Kind::Syn), SECOND + u64::from(i), &mut out);
        }
        assert!(out.is_empty());
        for i in 19..60u32 {
            let src = std::net::Ipv4Addr::from(0xcb00_7100 + i).to_string();
            d.probe(&probe(&src, 23, Kind::Syn), SECOND + u64::from(i), &mut out);
        }
        assert_eq!(
            out,
            vec![Event::Distributed {
                time: SECOND + 19,
                port: 23,
                udp: false,
                sources: 20
            }]
        );
        // Many users of a service port are not a distributed scan.
        let mut out = Vec::new();
        for i in 0..100u32 {
            let src = std::net::Ipv4Addr::from(0xc633_6400 + i).to_string();
            d.probe(&probe(&src, 443, Kind::Syn), SECOND, &mut out);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_first_probe_held_outside_the_table_still_counts_and_one_probe_scans_need_no_second() {
        let custom = |ports| Profile {
            name: "custom".into(),
            ports,
            window: 60 * SECOND,
            bans: vec![600],
        };
        let scans = |d: &mut Detector, probes: &[(u16, Micros)]| {
            let mut out = Vec::new();
            for &(port, t) in probes {
                d.probe(&probe("203.0.113.5", port, Kind::Fin), t, &mut out);
            }
            out.into_iter()
                .filter_map(|e| match e {
                    Event::Scan(s) => Some((s.counted, s.first, s.probes)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // Two ports make a scan: the first probe, held as a first sighting,
        // is counted with its own time when the second comes.
        let mut d = Detector::new(Settings::for_profile(custom(2)));
        assert_eq!(scans(&mut d, &[(7, SECOND)]), vec![]);
        assert_eq!(d.tracked(), 0);
        assert_eq!(
            scans(&mut d, &[(8, 5 * SECOND)]),
            vec![(vec![7, 8], SECOND, 2)]
        );
        // A first sighting older than the window does not count.
        let mut d = Detector::new(Settings::for_profile(custom(2)));
        assert_eq!(scans(&mut d, &[(7, SECOND), (8, 100 * SECOND)]), vec![]);
        assert_eq!(
            scans(&mut d, &[(9, 101 * SECOND)]),
            vec![(vec![8, 9], 100 * SECOND, 2)]
        );
        // One port is a scan, or one probe to a port with threshold 1: the
        // first probe goes straight to the table and is reported at once.
        let mut d = Detector::new(Settings::for_profile(custom(1)));
        assert_eq!(scans(&mut d, &[(7, SECOND)]), vec![(vec![7], SECOND, 1)]);
        let mut s = Settings::for_profile(custom(5));
        s.port_thresholds.insert(23, 1);
        let mut d = Detector::new(s);
        assert_eq!(scans(&mut d, &[(23, SECOND)]).len(), 1);
    }

    #[test]
    fn a_spoofed_flood_stays_in_bounds_and_the_scanner_is_still_caught() {
        let mut s = Settings::for_profile(Profile::named("standard").unwrap());
        s.capacity = 10_000;
        let mut d = Detector::new(s);
        let mut out = Vec::new();
        let mut t = SECOND;
        for i in 0..1_000_000u32 {
            // A random-looking spoofed source per packet, to one port.
            let src = Addr::v4(i.wrapping_mul(2_654_435_761).to_be_bytes());
            let p = Probe {
                src,
                ..probe("192.0.2.1", 81, Kind::Syn)
            };
            d.probe(&p, t, &mut out);
            // In the middle of the flood a real scanner probes a new port
            // every 1000 flood packets (5 ms apart at 200 000 packets/s).
            if (500_000..520_000).contains(&i) && i % 1000 == 0 {
                let port = 1000 + (i / 1000) as u16;
                d.probe(&probe("198.51.100.99", port, Kind::Syn), t, &mut out);
            }
            t += 5;
        }
        // One probe per forged source: none of them ever reaches the table
        // (they stay first sightings), so nothing was evicted for them.
        assert_eq!((d.tracked(), d.evicted()), (1, 0));
        let scans: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                Event::Scan(s) => Some(s.source.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(scans, vec!["198.51.100.99/32"]);
    }

    #[test]
    fn decoys_with_one_port_sequence_name_each_other_and_others_do_not() {
        let mut d = standard();
        let mut out = Vec::new();
        // nmap -D: every probe from each decoy and the scanner in turn.
        let order = [1005u16, 1001, 1009, 1003, 1002, 1008, 1004];
        for (i, port) in order.iter().enumerate() {
            for src in ["198.51.100.51", "198.51.100.41", "198.51.100.52"] {
                d.probe(&probe(src, *port, Kind::Syn), SECOND + i as u64, &mut out);
            }
        }
        // Another scanner at the same time, the same ports in another order.
        for (i, port) in order.iter().rev().enumerate() {
            d.probe(
                &probe("203.0.113.7", *port, Kind::Syn),
                SECOND + i as u64,
                &mut out,
            );
        }
        let same: Vec<(String, Vec<String>)> = out
            .iter()
            .filter_map(|e| match e {
                Event::Scan(s) => Some((
                    s.source.to_string(),
                    s.same_ports_as.iter().map(|n| n.to_string()).collect(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            same,
            vec![
                ("198.51.100.51/32".into(), vec![]),
                ("198.51.100.41/32".into(), vec!["198.51.100.51/32".into()]),
                (
                    "198.51.100.52/32".into(),
                    vec!["198.51.100.51/32".into(), "198.51.100.41/32".into()]
                ),
                ("203.0.113.7/32".into(), vec![]),
            ]
        );
        // A minute later the same sequence is another scan.
        let mut out = Vec::new();
        for (i, port) in order.iter().enumerate() {
            let t = SECOND + SAME_SCANNER + 10 * SECOND + i as u64;
            d.probe(&probe("198.51.100.60", *port, Kind::Syn), t, &mut out);
        }
        assert!(matches!(&out[..], [Event::Scan(s)] if s.same_ports_as.is_empty()));
    }

    #[test]
    fn syns_all_from_one_low_port_are_told_apart_as_an_idle_scans() {
        let scan = |sports: &[u16]| {
            let mut d = standard();
            let mut out = Vec::new();
            for (i, &sport) in sports.iter().enumerate() {
                let p = Probe {
                    sport,
                    ..probe("198.51.100.77", 2000 + i as u16, Kind::Syn)
                };
                d.probe(&p, SECOND, &mut out);
            }
            match &out[..] {
                [Event::Scan(s)] => s.fixed_low_sport,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(scan(&[80; 7]), Some(80));
        assert_eq!(scan(&[40000; 7]), None, "nmap -sS: one high port");
        assert_eq!(scan(&[80, 80, 80, 81, 80, 80, 80]), None);
    }

    #[test]
    fn ack_sctp_and_protocol_probes_count_on_every_port_each_in_its_own_space() {
        let mut d = standard();
        // ACKs to the service ports count (a client's ACKs belong to a
        // connection conntrack knows, so never reach the detector).
        let acks: Vec<_> = [22, 80, 443, 1, 2, 3, 4]
            .iter()
            .map(|&p| (0, p, Kind::Ack))
            .collect();
        let s = feed(&mut d, "203.0.113.20", &acks);
        assert_eq!((s.len(), s[0].kinds.label()), (1, "ACK"));
        // TCP port 6, UDP port 6, SCTP port 6 and protocol 6 are four
        // ports, not one; seven protocols make an -sO scan.
        let mut d = standard();
        let mix = [
            (0, 6, Kind::Syn),
            (0, 6, Kind::Udp),
            (0, 6, Kind::SctpInit),
            (0, 6, Kind::Proto),
        ];
        assert!(feed(&mut d, "203.0.113.21", &mix).is_empty());
        let t = d
            .table
            .get(d.key("203.0.113.21".parse::<Addr>().unwrap()))
            .unwrap();
        assert_eq!(t.ports().count(), 4);
        let protos: Vec<_> = (40..47).map(|p| (0, p, Kind::Proto)).collect();
        let s = feed(&mut d, "203.0.113.22", &protos);
        assert_eq!(
            (s[0].kinds.label(), s[0].kinds.nmap()),
            ("IP-PROTOCOL", "-sO".into())
        );
    }
}
