//! What capture does with each frame (pure): parse it, keep only probes
//! addressed to this host, feed the detector, and turn its reports into bans
//! (progressive durations from the history) and events. The ban itself is
//! made by whoever drives the engine (netlink live, nothing in a replay, a
//! recording closure in tests), through the function it passes in.

use super::detect::{Detector, Event as Detected, Micros, Reason, Scan, SECOND};
use super::events::{self, span, time, Event};
use super::flood::{Flood, FloodTracker};
use super::packet::{self, Addr, Link};
use super::signature::{escaped, Handshakes, Hit, Matcher};
use crate::core::config::pattern::Severity;
use crate::core::config::signature::Proto;
use crate::core::history::{History, Why};
use crate::core::policy::Policy;
use crate::units::addr::member;
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

/// This host's addresses, looked up twice for every frame. A host has a
/// handful: comparing each costs less than hashing one (the hash lookups
/// were 8 % of a one-source flood's CPU), so a set is made only past SMALL.
/// The list holds plain integers (`packet::Addr`): comparing `IpAddr` enums
/// was a call per frame and 10 % of a one-source flood. (foldhash in the
/// set: SipHash was a fifth of a flood's CPU, and no attacker chooses the
/// members, so no HashDoS to resist.)
#[derive(Clone, Debug, Default)]
pub struct Addrs {
    list: Vec<u128>,
    set: Option<HashSet<u128, foldhash::fast::RandomState>>,
}

impl Addrs {
    const SMALL: usize = 16;

    pub fn insert(&mut self, a: impl Into<Addr>) {
        let a = a.into().0;
        if let Some(set) = self.set.as_mut() {
            set.insert(a);
            return;
        }
        if self.list.contains(&a) {
            return;
        }
        self.list.push(a);
        if self.list.len() > Self::SMALL {
            self.set = Some(self.list.drain(..).collect());
        }
    }

    #[inline]
    pub fn contains(&self, a: impl Into<Addr>) -> bool {
        let a = a.into().0;
        match &self.set {
            Some(set) => set.contains(&a),
            None => self.list.contains(&a),
        }
    }
}

impl FromIterator<IpAddr> for Addrs {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> Addrs {
        let mut a = Addrs::default();
        iter.into_iter().for_each(|x| a.insert(x));
        a
    }
}

/// What adding a ban to a set did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    /// The entry is in the set now, with the timeout given.
    Added,
    /// It was there already; its timeout was not touched.
    AlreadyListed,
}

/// A ban that could not be made, with the reason and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BanFailed(pub String);

/// Makes a ban: (set, address or network, seconds).
pub type BanFn<'a> = dyn FnMut(&str, IpNet, u32) -> Result<Added, BanFailed> + 'a;

/// A UDP datagram from a privileged port to an unprivileged one is taken for
/// a reply to this host's own query (DNS, NTP, ...), not a probe: UDP has no
/// flags to tell, and every answer to a resolver lookup would otherwise count
/// as a probe of a new high port. nmap -sU sends from a high port unless told
/// otherwise (-g 53 evades this, as it evades most firewalls' DNS rules).
/// The same goes for an ACK (conntrack's word that it belongs to no
/// connection) from a server port to a client one: a late segment of a
/// connection this host made, after conntrack forgot it.
pub fn is_reply(p: &packet::Probe) -> bool {
    matches!(
        p.kind,
        packet::Kind::Udp | packet::Kind::Ack | packet::Kind::Maimon
    ) && p.sport < 1024
        && p.dport >= 1024
}

/// TCP first fragments too short for the flags, held (a few at a time)
/// until the fragment holding the flags comes: keyed by source,
/// destination and IP identification, forgotten after `FRAG_TTL`.
#[derive(Default)]
pub struct Frags {
    slots: Vec<Held>,
}

#[derive(Clone, Copy)]
struct Held {
    src: Addr,
    dst: Addr,
    id: u32,
    sport: u16,
    dport: u16,
    time: Micros,
}

const FRAG_SLOTS: usize = 64;
const FRAG_TTL: Micros = 30 * SECOND;

impl Frags {
    fn slot(f: &packet::Fragment) -> usize {
        ((f.src.0 as u64) ^ u64::from(f.id).wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize
            % FRAG_SLOTS
    }

    fn hold(&mut self, f: &packet::Fragment, sport: u16, dport: u16, now: Micros) {
        if self.slots.is_empty() {
            self.slots = vec![
                Held {
                    src: Addr(0),
                    dst: Addr(0),
                    id: 0,
                    sport: 0,
                    dport: 0,
                    time: 0,
                };
                FRAG_SLOTS
            ];
        }
        self.slots[Self::slot(f)] = Held {
            src: f.src,
            dst: f.dst,
            id: f.id,
            sport,
            dport,
            time: now,
        };
    }

    fn take(&mut self, f: &packet::Fragment, now: Micros) -> Option<(u16, u16)> {
        let h = self.slots.get_mut(Self::slot(f))?;
        if h.src != f.src || h.dst != f.dst || h.id != f.id || h.time == 0 {
            return None;
        }
        let fresh = h.time.saturating_add(FRAG_TTL) >= now;
        h.time = 0;
        fresh.then_some((h.sport, h.dport))
    }
}

/// The set of a pair (IPv4, IPv6) for an address's family.
fn family_set(sets: &[String; 2], source: IpNet) -> String {
    sets[usize::from(source.addr().is_ipv6())].clone()
}

/// Which destinations count as "this host".
#[derive(Clone, Debug, Default)]
pub struct Dests {
    pub exact: Addrs,
    pub nets: Vec<IpNet>,
    /// Every destination counts (a replay with no protected addresses given).
    pub any: bool,
}

impl Dests {
    #[inline]
    pub fn contains(&self, a: impl Into<Addr>) -> bool {
        let a = a.into();
        self.any || self.exact.contains(a) || self.nets.iter().any(|n| n.contains(&a.ip()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Ban through the ban function.
    Ban,
    /// Report only (`--detect-only` or mode = "detection_only").
    DetectOnly,
    /// A replay: bans are decided and reported, never applied.
    Replay,
}

/// Whether a ban's evidence is something a forger can produce: a probe
/// (SYN, FIN, NULL, XMAS, odd flags, UDP) or a flood counted on SYNs
/// ("connection-flood": its SYNs are counted before any handshake) carries
/// a source address nobody proved. Only a completed handshake proves one:
/// a decoy touched, a signature in data that acknowledged our SYN-ACK
/// exactly. A new kind of evidence counts as forgeable until it proves its
/// source.
pub fn forgeable(scan_type: &str) -> bool {
    !matches!(scan_type, "decoy" | "signature")
}

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub frames: u64,
    /// Probes addressed to this host (what the detector saw).
    pub probes: u64,
    /// Of them, UDP (the rest are TCP).
    pub udp_probes: u64,
    pub bans: u64,
    pub ban_failures: u64,
    /// Bans not made: forgeable evidence against an admin peer.
    pub spared: u64,
}

pub struct Engine {
    pub detector: Detector,
    pub history: History,
    /// Ban sets: IPv4, IPv6.
    pub sets: [String; 2],
    /// Who is never banned.
    pub policy: Policy,
    pub dests: Dests,
    /// This host's own addresses: never tracked as sources.
    pub own: Addrs,
    pub mode: Mode,
    pub counts: Counts,
    /// The history changed since the state file was last written.
    pub dirty: bool,
    detected: Vec<Detected>,
    /// `[capture.flood]`: the tracker, the flood sets (IPv4, IPv6) and the
    /// limits as the config wrote them, for the events.
    pub flood: Option<FloodWatch>,
    /// net.ipv4.tcp_syncookies, read by the live driver (None in a replay).
    pub syncookies: Option<bool>,
    floods: Vec<Flood>,
    /// `[[capture.signature]]` (none without them).
    pub signatures: Option<Signatures>,
    /// The peers holding an established connection to an admin port, with
    /// that port (re-read every second or so by the live driver, at most
    /// `conns::MAX_ADMIN_PEERS`): never banned on forgeable evidence. Looked
    /// at only when a ban is decided, never per frame.
    pub admin_peers: Vec<(IpAddr, u16)>,
    frags: Frags,
    /// `[history] evidence`: pieces of evidence kept per ban for `fwctl why`.
    pub evidence: usize,
}

/// Payload signatures: the matcher, the handshakes this host answered on
/// their ports, and the hits of the segment at hand.
pub struct Signatures {
    pub matcher: Matcher,
    pub handshakes: Handshakes,
    hits: Vec<Hit>,
    /// The payload lowercased, for `nocase` literals.
    folded: Vec<u8>,
    /// Segments examined (first data segments and UDP datagrams).
    pub examined: u64,
}

/// Handshakes awaiting their first data segment, at most.
pub const HANDSHAKES: usize = 65_536;

impl Signatures {
    pub fn new(sigs: Vec<crate::core::config::signature::Signature>) -> Signatures {
        Signatures {
            matcher: Matcher::new(sigs),
            handshakes: Handshakes::new(HANDSHAKES),
            hits: Vec::new(),
            folded: Vec::new(),
            examined: 0,
        }
    }
}

pub struct FloodWatch {
    pub tracker: FloodTracker,
    pub sets: [String; 2],
    pub syn_rate: String,
    pub syn_flood_rate: String,
}

impl Engine {
    pub fn new(detector: Detector, history: History, sets: [String; 2], mode: Mode) -> Engine {
        Engine {
            detector,
            history,
            sets,
            policy: Policy::default(),
            dests: Dests::default(),
            own: Addrs::default(),
            mode,
            counts: Counts::default(),
            dirty: false,
            detected: Vec::new(),
            flood: None,
            syncookies: None,
            floods: Vec::new(),
            signatures: None,
            admin_peers: Vec::new(),
            frags: Frags::default(),
            evidence: 5,
        }
    }

    /// This host's own addresses (re-read now and then by the caller).
    pub fn set_own(&mut self, own: Vec<IpAddr>) {
        self.own = own.iter().copied().collect();
        self.dests.exact = self.own.clone();
        self.policy.own = own;
    }

    /// A frame that `frame` will be handed a few frames from now (the
    /// packet source looks ahead where it can): the address of what its
    /// probe will need, which under a spoofed flood is a cache miss per
    /// frame, for the caller to prefetch (`sys::cpu::prefetch`).
    pub fn warm(&self, link: Link, data: &[u8]) -> [Option<*const u8>; 2] {
        match packet::source(link, data) {
            Some(src) => self.detector.warm(src),
            None => [None; 2],
        }
    }

    /// One captured frame received at `now` (µs). `ban` makes a ban (live
    /// only); `clock` reads the wall clock after a ban, for the latency
    /// figure. Events go to `out`.
    pub fn frame(
        &mut self,
        link: Link,
        data: &[u8],
        now: Micros,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
        out: &mut Vec<Event>,
    ) {
        self.counts.frames += 1;
        let Some(p) = packet::parse(link, data) else {
            if link == Link::Nflog {
                return;
            }
            // A TCP fragment: a tiny first one, or the one holding its flags.
            if let Some(f) = packet::fragment(link, data) {
                self.fragment(&f, now, ban, clock, out);
                return;
            }
            // Not a probe: with signatures, a data segment or our SYN-ACK.
            if self.signatures.is_some() {
                self.payload(link, data, now, ban, clock, out);
            }
            return;
        };
        self.probe(&p, link, data, now, ban, clock, out);
    }

    /// A TCP fragment to this host: a first one too short to hold the
    /// flags is a scan on its own (reported and banned at once, as a
    /// forgeable probe); the fragment that holds its flags (at byte 8)
    /// makes the probe the two are once put back together.
    fn fragment(
        &mut self,
        f: &packet::Fragment,
        now: Micros,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
        out: &mut Vec<Event>,
    ) {
        if !self.dests.contains(f.dst) || self.own.contains(f.src) {
            return;
        }
        let port = |at: usize| {
            f.l4.get(at..at + 2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
        };
        if f.offset == 0 {
            if f.l4.len() >= packet::FLAGS_END {
                return;
            }
            let (sport, dport) = (port(0), port(2));
            self.frags.hold(f, sport, dport, now);
            self.counts.probes += 1;
            let key = self.detector.key(f.src);
            if self.detector.is_quiet(key, now) {
                return;
            }
            self.detector.stats.scans += 1;
            let s = Scan {
                time: now,
                source: self.detector.net(key),
                key,
                reason: Reason::TinyFragment {
                    port: dport,
                    bytes: f.l4.len(),
                },
                counted: vec![dport],
                services: vec![],
                kinds: packet::Kinds::of(packet::Kind::Frag),
                probes: 1,
                first: now,
                same_ports_as: vec![],
                fixed_low_sport: None,
            };
            self.scan(&s, ban, clock, out);
        } else if f.offset == 8 {
            let Some((sport, dport)) = self.frags.take(f, now) else {
                return;
            };
            // TCP's flags are its 14th byte: the 6th of this fragment.
            let Some(kind) =
                f.l4.get(packet::FLAGS_END - 1 - 8)
                    .and_then(|&b| packet::classify(b))
            else {
                return;
            };
            let p = packet::Probe {
                src: f.src,
                dst: f.dst,
                sport,
                dport,
                kind,
            };
            self.probe(&p, Link::Raw, &[], now, ban, clock, out);
        }
    }

    /// One probe, from a frame or put together from fragments (`data` is
    /// its frame, for a UDP payload signature; empty when there is none).
    #[allow(clippy::too_many_arguments)]
    fn probe(
        &mut self,
        p: &packet::Probe,
        link: Link,
        data: &[u8],
        now: Micros,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
        out: &mut Vec<Event>,
    ) {
        let p = *p;
        if !self.dests.contains(p.dst) || self.own.contains(p.src) || is_reply(&p) {
            return;
        }
        if p.kind == packet::Kind::Udp
            && (self.signatures.as_ref()).is_some_and(|s| s.matcher.watches(Proto::Udp, p.dport))
        {
            self.payload(link, data, now, ban, clock, out);
        }
        self.counts.probes += 1;
        self.counts.udp_probes += u64::from(p.kind == packet::Kind::Udp);
        if let Some(f) = self.flood.as_mut() {
            // Plain SYNs to a TCP service: what the scan detector counts apart.
            if p.kind == packet::Kind::Syn && self.detector.settings().is_service(&p) {
                let key = self.detector.key(p.src);
                f.tracker.syn(key, p.dport, now, &mut self.floods);
            }
        }
        if !self.floods.is_empty() {
            let floods = std::mem::take(&mut self.floods);
            for fl in &floods {
                self.flood(fl, ban, clock, out);
            }
            self.floods = floods;
            self.floods.clear();
        }
        self.detector.probe(&p, now, &mut self.detected);
        if self.detected.is_empty() {
            return;
        }
        let detected = std::mem::take(&mut self.detected);
        for d in &detected {
            match d {
                Detected::Scan(s) => self.scan(s, ban, clock, out),
                Detected::Distributed {
                    time: t,
                    port,
                    udp,
                    sources,
                } => out.push(Event::DistributedScan(events::DistributedScan {
                    time: time(*t),
                    proto: if *udp { "udp" } else { "tcp" },
                    port: *port,
                    sources: *sources,
                    window_s: self.detector.settings().distributed_window / SECOND,
                    profile: self.detector.settings().profile.name.clone(),
                })),
            }
        }
        self.detected = detected;
        self.detected.clear();
    }

    /// Ban `source` (or say why not) for what it did at `t`: the policy,
    /// the mode, the profile's next duration from the history, the ban, its
    /// record and its `ip_blocked` event. Returns the action said, the event,
    /// and the ban's length when it is (now or already) in the set, for the
    /// caller to stay quiet about it that long.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        source: IpNet,
        t: Micros,
        scan_type: &'static str,
        reason: &str,
        set: String,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
    ) -> (String, Option<Event>, Option<u64>) {
        let profile = &self.detector.settings().profile;
        let now_s = (t / SECOND) as i64;
        let (offence, secs) = self.history.next_ban(&source, now_s, &profile.bans);
        if let Some(why) = self.policy.check(&source) {
            return (format!("not banned: {why}"), None, None);
        }
        if self.mode == Mode::DetectOnly {
            return ("not banned: detection only".into(), None, None);
        }
        // Anyone can send a SYN with the admin's address: only what a
        // forger cannot produce bans a peer logged in to an admin port.
        if forgeable(scan_type) {
            if let Some((peer, port)) = self.admin_peers.iter().find(|(a, _)| source.contains(a)) {
                self.counts.spared += 1;
                return (
                    format!("not banned: spoofable evidence ({scan_type}) against an admin peer ({peer} holds an established connection to port {port})"),
                    None,
                    None,
                );
            }
        }
        let profile = profile.name.clone();
        let applied = (self.mode == Mode::Ban).then(|| ban(&set, source, secs as u32));
        match applied {
            Some(Err(e)) => {
                self.counts.ban_failures += 1;
                (format!("ban failed: {e}"), None, None)
            }
            Some(Ok(Added::AlreadyListed)) => (
                format!("not banned: already in {set} (its timeout is left alone)"),
                None,
                Some(secs),
            ),
            Some(Ok(Added::Added)) | None => {
                self.history.record(source, &set, offence, now_s, secs);
                // What the packets showed, for `fwctl why` (the scan's own
                // caller adds its ports and times).
                let why = Why {
                    origin: "capture".into(),
                    rule: format!("{scan_type} ({profile})"),
                    hits: 1,
                    window_s: 0,
                    first: now_s,
                    last: now_s,
                    evidence: vec![reason.to_string()],
                };
                self.history.explain(&source, why, self.evidence);
                self.dirty = true;
                self.counts.bans += 1;
                let action = if applied.is_some() {
                    format!("banned for {}", span(secs))
                } else {
                    format!("would ban for {} (replay)", span(secs))
                };
                let blocked = Event::IpBlocked(events::IpBlocked {
                    time: time(t),
                    src: member(&source),
                    set,
                    ban_seconds: secs,
                    offence,
                    until: time(t.saturating_add(secs * SECOND)),
                    profile,
                    scan_type,
                    reason: reason.to_string(),
                    applied: applied.is_some(),
                    latency_us: applied.is_some().then(|| clock().saturating_sub(t)),
                });
                (action, Some(blocked), Some(secs))
            }
        }
    }

    /// A scan's ban as `fwctl why` shows it: its probes, window and times,
    /// the reason, the ports counted and what nmap would have been run with.
    /// Ports are the scanner's choice but only numbers; nothing here is
    /// packet payload.
    fn explain_scan(&mut self, s: &Scan, reason: &str, nmap: &str, note: Option<&str>) {
        let settings = self.detector.settings();
        let mut ports: Vec<String> = s.counted.iter().take(32).map(u16::to_string).collect();
        if s.counted.len() > 32 {
            ports.push(format!("... ({} in all)", s.counted.len()));
        }
        let mut evidence = vec![
            reason.to_string(),
            format!("ports: {}", ports.join(",")),
            format!("as nmap {nmap}"),
        ];
        if !s.same_ports_as.is_empty() {
            let others: Vec<String> = s.same_ports_as.iter().take(8).map(member).collect();
            evidence.push(format!(
                "the same ports in the same order from {}: one scanner's decoys (-D)",
                others.join(", ")
            ));
        }
        evidence.extend(note.map(str::to_string));
        let why = Why {
            origin: "capture".into(),
            rule: format!("{} ({})", s.kinds.label(), settings.profile.name),
            hits: u64::from(s.probes),
            window_s: settings.profile.window / SECOND,
            first: (s.first / SECOND) as i64,
            last: (s.time / SECOND) as i64,
            evidence,
        };
        self.history.explain(&s.source, why, self.evidence);
    }

    /// Ban the source of `key` now, before any threshold, into the capture
    /// ban set (decoys, signatures: what it did cannot be forged), and keep
    /// the detector quiet about it for the ban's length.
    fn ban_at_once(
        &mut self,
        key: u128,
        t: Micros,
        scan_type: &'static str,
        reason: &str,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
    ) -> (String, Option<Event>) {
        let source = self.detector.net(key);
        let set = family_set(&self.sets, source);
        let (action, blocked, secs) = self.decide(source, t, scan_type, reason, set, ban, clock);
        if let Some(secs) = secs {
            self.detector.quiet(key, t.saturating_add(secs * SECOND));
        }
        (action, blocked)
    }

    /// A source completed a TCP handshake with decoy `port` at `t` (µs):
    /// banned at once into the capture ban set, with the profile's
    /// progressive durations.
    pub fn decoy(
        &mut self,
        src: IpAddr,
        port: u16,
        t: Micros,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
        out: &mut Vec<Event>,
    ) {
        let key = self.detector.key(src);
        let source = self.detector.net(key);
        let reason = format!("completed a TCP handshake with decoy port {port}");
        let (action, blocked) = self.ban_at_once(key, t, "decoy", &reason, ban, clock);
        out.push(Event::DecoyTouched(events::DecoyTouched {
            time: time(t),
            src: member(&source),
            port,
            action,
        }));
        out.extend(blocked);
    }

    /// A frame for the payload signatures: our SYN-ACK from a signature
    /// port is remembered; the first data segment of that connection (or a
    /// UDP datagram to a signature port) is matched, and a high-severity
    /// match bans its TCP sender, when the exact ack proves it, into the
    /// capture ban set.
    fn payload(
        &mut self,
        link: Link,
        data: &[u8],
        t: Micros,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
        out: &mut Vec<Event>,
    ) {
        let Some(s) = packet::segment(link, data) else {
            return;
        };
        let Some(sig) = self.signatures.as_mut() else {
            return;
        };
        let proto = if s.udp { Proto::Udp } else { Proto::Tcp };
        const HANDSHAKE: u8 = packet::TCP_SYN | packet::TCP_ACK | packet::TCP_RST;
        if !s.udp && s.flags & HANDSHAKE == packet::TCP_SYN | packet::TCP_ACK {
            if self.dests.contains(s.src) && sig.matcher.watches(Proto::Tcp, s.sport) {
                sig.handshakes
                    .syn_ack(s.dst, s.dport, s.sport, s.seq, s.ack);
            }
            return;
        }
        if s.payload.is_empty()
            || s.flags & packet::TCP_SYN != 0
            || !sig.matcher.watches(proto, s.dport)
            || !self.dests.contains(s.dst)
            || self.own.contains(s.src)
        {
            return;
        }
        // A UDP sender is never proven; a TCP one when it acknowledged our
        // SYN-ACK exactly.
        let proven = if s.udp {
            false
        } else {
            match (sig.handshakes).first_data(s.src, s.sport, s.dport, s.seq, s.ack) {
                Some(p) => p,
                None => return,
            }
        };
        sig.examined += 1;
        sig.matcher
            .matches(proto, s.dport, s.payload, &mut sig.folded, &mut sig.hits);
        if sig.hits.is_empty() {
            return;
        }
        let hits = std::mem::take(&mut sig.hits);
        let high = hits
            .iter()
            .find(|h| sig.matcher.severity(h) == Severity::High)
            .map(|h| sig.matcher.sigs[h.sig].name.clone());
        let key = self.detector.key(s.src);
        let source = self.detector.net(key);
        let (action, blocked) = match high {
            Some(_) if !proven => (
                "reported only (the server spoke first, so the sender is not proven)".to_string(),
                None,
            ),
            Some(name) => {
                let reason = format!("payload matched signature {name} (high) on tcp/{}", s.dport);
                self.ban_at_once(key, t, "signature", &reason, ban, clock)
            }
            None => (
                "reported only (no high-severity signature)".to_string(),
                None,
            ),
        };
        let sig = self.signatures.as_mut().expect("checked above");
        for h in &hits {
            let def = &sig.matcher.sigs[h.sig];
            out.push(Event::SignatureMatched(events::SignatureMatched {
                time: time(t),
                src: member(&source),
                proto: proto.as_str(),
                port: s.dport,
                name: def.name.clone(),
                severity: def.severity.as_str(),
                matched: escaped(&s.payload[h.start..h.end]),
                action: action.clone(),
            }));
        }
        sig.hits = hits;
        out.extend(blocked);
    }

    fn flood(
        &mut self,
        fl: &Flood,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
        out: &mut Vec<Event>,
    ) {
        let Some(w) = self.flood.as_ref() else {
            return;
        };
        let over = w.tracker.settings().over;
        let (key, port, t, syns) = match *fl {
            Flood::Port {
                port,
                time: t,
                syns,
            } => {
                out.push(Event::SynFlood(events::SynFlood {
                    time: time(t),
                    port,
                    syns,
                    over_s: over / SECOND,
                    rate_per_s: u64::from(syns) * SECOND / over.max(1),
                    syn_flood_rate: w.syn_flood_rate.clone(),
                    syncookies: self.syncookies,
                }));
                return;
            }
            Flood::Source {
                key,
                port,
                time: t,
                syns,
            } => (key, port, t, syns),
        };
        let syn_rate = w.syn_rate.clone();
        let source = self.detector.net(key);
        let set = family_set(&w.sets, source);
        let reason = format!(
            "{syns} new connections to port {port} within {} (limit {syn_rate})",
            span(over / SECOND),
        );
        // Not banned (trusted, detection only, a failed ban): told again
        // after the profile's first ban length, not every `over`, so a busy
        // trusted proxy does not page anyone every few seconds.
        let first = self
            .detector
            .settings()
            .profile
            .bans
            .first()
            .copied()
            .unwrap_or(600);
        let (action, blocked, secs) =
            self.decide(source, t, "connection-flood", &reason, set, ban, clock);
        let quiet_until = t.saturating_add(over.max(secs.unwrap_or(first) * SECOND));
        if let Some(w) = self.flood.as_mut() {
            w.tracker.quiet(key, port, quiet_until);
        }
        out.push(Event::ConnectionFlood(events::ConnectionFlood {
            time: time(t),
            src: member(&source),
            port,
            syns,
            over_s: over / SECOND,
            syn_rate,
            action,
        }));
        out.extend(blocked);
    }

    fn scan(
        &mut self,
        s: &Scan,
        ban: &mut BanFn,
        clock: &dyn Fn() -> Micros,
        out: &mut Vec<Event>,
    ) {
        let settings = self.detector.settings();
        let window = settings.profile.window;
        let reason = match &s.reason {
            Reason::Ports => format!(
                "{} distinct ports within {}",
                s.counted.len(),
                span(window / SECOND)
            ),
            Reason::Port { port, probes } => format!(
                "{probes} probes to port {port} within {} (its threshold is {})",
                span(window / SECOND),
                settings.port_thresholds.get(port).copied().unwrap_or(0)
            ),
            Reason::TinyFragment { port, bytes } => format!(
                "a TCP first fragment of {bytes} bytes to port {port}, too short to hold the flags (RFC 1858's tiny fragment)"
            ),
        };
        let mut nmap = s.kinds.nmap();
        let note = s.fixed_low_sport.map(|port| {
            nmap.push_str(" (or -sI)");
            format!("every SYN came from port {port}: an idle scan (-sI) forges such SYNs with its zombie's address, so this is forgeable evidence, not proof that {} scanned", member(&s.source))
        });
        if !s.same_ports_as.is_empty() {
            nmap.push_str(" -D");
        }
        let profile = settings.profile.name.clone();
        let set = family_set(&self.sets, s.source);
        let (action, blocked, secs) =
            self.decide(s.source, s.time, s.kinds.label(), &reason, set, ban, clock);
        if blocked.is_some() {
            self.explain_scan(s, &reason, &nmap, note.as_deref());
        }
        let quiet_until = match secs {
            Some(secs) => s.time.saturating_add(secs * SECOND),
            None => s.time.saturating_add(window),
        };
        self.detector.quiet(s.key, quiet_until);
        out.push(Event::ScanDetected(events::ScanDetected {
            time: time(s.time),
            src: member(&s.source),
            scan_type: s.kinds.label(),
            nmap,
            reason,
            ports: s.counted.clone(),
            port_count: s.counted.len(),
            service_ports: s.services.clone(),
            probes: s.probes,
            first_seen: time(s.first),
            duration_s: s.time.saturating_sub(s.first) / SECOND,
            profile,
            action,
            same_ports_as: s.same_ports_as.iter().map(member).collect(),
            note,
        }));
        out.extend(blocked);
    }

    /// The counters for a `capture_stats` event at `now` (µs).
    pub fn stats(&self, now: Micros) -> events::CaptureStats {
        let d = &self.detector;
        events::CaptureStats {
            time: time(now),
            frames: self.counts.frames,
            probes: self.counts.probes,
            tracked: d.tracked(),
            capacity: d.settings().capacity,
            evicted: d.evicted(),
            scans: d.stats.scans,
            distributed: d.stats.distributed,
            bans: self.counts.bans,
            ban_failures: self.counts.ban_failures,
            profile: d.settings().profile.name.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::detect::{Profile, Settings};
    use super::*;
    use serde_json::Value;

    #[test]
    fn addrs_answer_the_same_as_a_list_and_past_the_small_size() {
        let v4 = |i: u8| IpAddr::from([198, 51, 100, i]);
        let mut a = Addrs::default();
        for n in 1..=40u8 {
            a.insert(v4(n));
            a.insert(v4(n)); // twice: kept once
            let len = a.set.as_ref().map_or(a.list.len(), |s| s.len());
            assert_eq!(len, usize::from(n));
            assert_eq!(a.set.is_some(), usize::from(n) > Addrs::SMALL);
            assert!((1..=n).all(|i| a.contains(v4(i))), "after {n}");
            assert!(
                !a.contains(v4(n + 1)) && !a.contains("2001:db8::1".parse::<IpAddr>().unwrap())
            );
        }
        let b: Addrs = [v4(7), "2001:db8::7".parse().unwrap()]
            .into_iter()
            .collect();
        assert!(b.contains(v4(7)) && b.contains("2001:db8::7".parse::<IpAddr>().unwrap()));
        assert!(!b.contains(v4(8)));
        // An IPv4-mapped IPv6 address is the IPv4 one (`packet::Addr`), as
        // the detector keys sources: no sender puts one on the wire, and
        // Linux drops IPv6 packets from such a source (ip6_rcv_core).
        assert!(b.contains("::ffff:198.51.100.7".parse::<IpAddr>().unwrap()));
        let c: Addrs = ["::ffff:198.51.100.9".parse::<IpAddr>().unwrap()]
            .into_iter()
            .collect();
        assert!(c.contains(v4(9)) && !c.contains(v4(8)));
    }

    /// A ban function that records what it was asked, with addresses that
    /// are "already listed" and an optional error for every add.
    #[derive(Default)]
    struct Recorder {
        adds: Vec<(String, IpNet, u32)>,
        listed: HashSet<IpNet>,
        fail: Option<String>,
    }

    impl Recorder {
        fn add(&mut self, set: &str, net: IpNet, secs: u32) -> Result<Added, BanFailed> {
            if let Some(e) = &self.fail {
                return Err(BanFailed(e.clone()));
            }
            if !self.listed.insert(net) {
                return Ok(Added::AlreadyListed);
            }
            self.adds.push((set.to_string(), net, secs));
            Ok(Added::Added)
        }
    }

    struct Rig {
        e: Engine,
        banner: Recorder,
        out: Vec<Event>,
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
            e.dests
                .exact
                .insert("198.51.100.1".parse::<IpAddr>().unwrap());
            e.dests
                .exact
                .insert("2001:db8:100::1".parse::<IpAddr>().unwrap());
            e.policy.trusted = vec!["192.0.2.0/24".parse().unwrap()];
            Rig {
                e,
                banner: Recorder::default(),
                out: Vec::new(),
            }
        }

        fn feed(&mut self, frame: &[u8], now: Micros) {
            let banner = &mut self.banner;
            self.e.frame(
                Link::Raw,
                frame,
                now,
                &mut |set, net, secs| banner.add(set, net, secs),
                &|| now + 250,
                &mut self.out,
            );
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
                self.feed(&frame_of(&p), (t + u64::from(i)) * SECOND);
            }
        }

        fn events(&self) -> Vec<Value> {
            self.out
                .iter()
                .map(|e| serde_json::from_str(&e.json()).unwrap())
                .collect()
        }

        fn of(&self, kind: &str) -> Vec<Value> {
            self.events()
                .into_iter()
                .filter(|e| e["event"] == kind)
                .collect()
        }
    }

    /// A rig whose config serves TCP 80 and watches floods: 100/s over 5 s
    /// per source, 1000/s per port, flooders into throttle-hard.
    fn flood_rig(mode: Mode) -> Rig {
        let mut r = Rig::new(mode);
        let mut settings = Settings::for_profile(Profile::named("aggressive").unwrap());
        settings.services = vec![super::super::detect::ServicePorts {
            udp: false,
            first: 80,
            last: 80,
        }];
        r.e.detector = Detector::new(settings);
        r.e.flood = Some(FloodWatch {
            tracker: FloodTracker::new(super::super::flood::FloodSettings {
                per_source: 100.0,
                per_port: 1000.0,
                over: 5 * SECOND,
                capacity: 10_000,
            }),
            sets: ["throttle-hard".into(), "throttle-hard_v6".into()],
            syn_rate: "100/second".into(),
            syn_flood_rate: "1000/second".into(),
        });
        r
    }

    /// `n` SYNs from `src` to port 80, `gap` µs apart from `t0` µs.
    fn syns(r: &mut Rig, src: &str, n: u64, t0: Micros, gap: Micros) {
        let dst = if src.contains(':') {
            "2001:db8:100::1"
        } else {
            "198.51.100.1"
        };
        for i in 0..n {
            let p = packet::Probe {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                sport: 10_000 + (i % 50_000) as u16,
                dport: 80,
                kind: packet::Kind::Syn,
            };
            r.feed(&frame_of(&p), t0 + i * gap);
        }
    }

    #[test]
    fn a_connection_flood_is_banned_into_the_flood_set_and_a_client_is_not() {
        let mut r = flood_rig(Mode::Ban);
        syns(&mut r, "198.51.100.20", 20, 0, SECOND / 10); // 20 requests in 2 s
        syns(&mut r, "203.0.113.7", 1000, 0, SECOND / 200); // 200/s for 5 s
        syns(&mut r, "2001:db8:bad::7", 1000, 0, SECOND / 200);
        syns(&mut r, "192.0.2.9", 1000, 0, SECOND / 200); // trusted
        let adds: Vec<(String, String)> = r
            .banner
            .adds
            .iter()
            .map(|(s, n, _)| (s.clone(), n.to_string()))
            .collect();
        assert_eq!(
            adds,
            [
                ("throttle-hard".to_string(), "203.0.113.7/32".to_string()),
                (
                    "throttle-hard_v6".to_string(),
                    "2001:db8:bad::7/128".to_string()
                )
            ]
        );
        let floods = r.of("connection_flood");
        assert_eq!(floods.len(), 3, "{floods:?}");
        assert_eq!(floods[0]["src"], "203.0.113.7");
        assert_eq!(floods[0]["port"], 80);
        assert_eq!(floods[0]["syns"], 501);
        assert_eq!(floods[0]["action"], "banned for 5m");
        assert!(
            floods[2]["action"]
                .as_str()
                .unwrap()
                .starts_with("not banned: "),
            "{floods:?}"
        );
        let blocked = r.of("ip_blocked");
        assert_eq!(blocked.len(), 2);
        assert_eq!(blocked[0]["scan_type"], "connection-flood");
        assert!(blocked[0]["reason"]
            .as_str()
            .unwrap()
            .contains("within 5s (limit 100/second)"));
        // Service SYNs are no scan, and the port as a whole saw under 1000/s.
        assert!(r.of("scan_detected").is_empty() && r.of("syn_flood").is_empty());
    }

    #[test]
    fn a_decoy_handshake_bans_at_once_with_progressive_durations() {
        let mut r = Rig::new(Mode::Ban);
        let src: IpAddr = "203.0.113.9".parse().unwrap();
        let touch = |r: &mut Rig, a: IpAddr, port: u16, t: Micros| {
            let banner = &mut r.banner;
            let mut ban = |set: &str, net, secs| banner.add(set, net, secs);
            r.e.decoy(a, port, t, &mut ban, &|| t + 90, &mut r.out);
        };
        touch(&mut r, src, 2323, 10 * SECOND);
        // Trusted: told, never banned.
        touch(&mut r, "192.0.2.4".parse().unwrap(), 2323, 11 * SECOND);
        assert_eq!(r.banner.adds.len(), 1);
        assert_eq!(r.banner.adds[0].0, "blacklist");
        assert_eq!(r.banner.adds[0].2, 300, "aggressive: 5m first");
        let touched = r.of("decoy_touched");
        assert_eq!(touched.len(), 2);
        assert_eq!(touched[0]["action"], "banned for 5m");
        assert!(touched[1]["action"]
            .as_str()
            .unwrap()
            .starts_with("not banned: "));
        let b = r.of("ip_blocked");
        assert_eq!(
            (b[0]["scan_type"].as_str(), b[0]["latency_us"].as_u64()),
            (Some("decoy"), Some(90))
        );
        // The second offence, after the first ban ended: the next duration.
        r.banner.listed.clear();
        touch(&mut r, src, 5900, 400 * SECOND);
        assert_eq!(r.banner.adds[1].2, 3600);
    }

    /// Anyone can send SYNs with the address of an admin logged in over
    /// SSH: probes and SYN-counted floods from an admin peer ban nobody
    /// (said, and counted), while the same from anyone else do; a decoy
    /// handshake and a proven signature still ban the admin peer.
    #[test]
    fn forgeable_evidence_never_bans_an_admin_peer() {
        let admin: IpAddr = "203.0.113.5".parse().unwrap();
        let mut r = flood_rig(Mode::Ban);
        r.e.admin_peers = vec![(admin, 22), ("2001:db8:ad::5".parse().unwrap(), 2222)];
        r.scan("203.0.113.5", "198.51.100.1", 10, 1000);
        r.scan("203.0.113.6", "198.51.100.1", 10, 1000);
        syns(&mut r, "203.0.113.5", 1000, 2000 * SECOND, SECOND / 200);
        let bans = |r: &Rig| -> Vec<String> {
            r.banner
                .adds
                .iter()
                .map(|(_, n, _)| n.to_string())
                .collect()
        };
        assert_eq!(bans(&r), ["203.0.113.6/32"]);
        let scans = r.of("scan_detected");
        assert_eq!(
            scans[0]["action"],
            "not banned: spoofable evidence (SYN) against an admin peer (203.0.113.5 holds an established connection to port 22)"
        );
        assert_eq!(scans[1]["action"], "banned for 5m");
        let flood = r.of("connection_flood");
        assert_eq!(flood.len(), 1);
        assert!(
            flood[0]["action"]
                .as_str()
                .unwrap()
                .starts_with("not banned: spoofable evidence (connection-flood)"),
            "{flood:?}"
        );
        assert_eq!(r.e.counts.spared, 2);
        // IPv6 sources tracked per /64: a /64 holding an admin peer is spared too.
        r.e.detector = Detector::new(Settings {
            v6_prefix: 64,
            ..Settings::for_profile(Profile::named("aggressive").unwrap())
        });
        r.scan("2001:db8:ad::99", "2001:db8:100::1", 10, 3000);
        assert_eq!(bans(&r), ["203.0.113.6/32"]);
        assert_eq!(r.e.counts.spared, 3);
        // A completed handshake cannot be forged: the admin peer is banned.
        let banner = &mut r.banner;
        let mut ban = |set: &str, net, secs| banner.add(set, net, secs);
        r.e.decoy(admin, 2323, 4000 * SECOND, &mut ban, &|| 0, &mut r.out);
        assert_eq!(bans(&r), ["203.0.113.6/32", "203.0.113.5/32"]);
        assert_eq!(r.of("ip_blocked")[1]["scan_type"], "decoy");
        assert_eq!(r.e.counts.spared, 3);
        assert!(
            forgeable("SYN")
                && forgeable("mixed")
                && forgeable("UDP")
                && forgeable("connection-flood")
        );
        assert!(!forgeable("decoy") && !forgeable("signature"));
    }

    #[test]
    fn a_proven_signature_still_bans_an_admin_peer() {
        let mut r = signature_rig();
        r.e.admin_peers = vec![("203.0.113.7".parse().unwrap(), 22)];
        request(
            &mut r,
            "203.0.113.7",
            40000,
            b"GET /?id=1 UNION SELECT 1",
            SECOND,
        );
        assert_eq!(r.banner.adds.len(), 1);
        assert_eq!(r.e.counts.spared, 0);
    }

    #[test]
    fn a_spoofed_syn_flood_is_reported_and_bans_nobody() {
        let mut r = flood_rig(Mode::Ban);
        r.e.syncookies = Some(true);
        // 30 000 sources, one SYN each, 6 000 a second.
        for i in 0..30_000u64 {
            let net = if (i / 250) % 2 == 0 {
                "203.0.113"
            } else {
                "198.51.100"
            };
            let src = format!("{net}.{}", i % 250 + 2);
            let src = if i % 3 == 0 {
                format!("2001:db8:{:x}::{:x}", i / 65536 + 1, i % 65536 + 1)
            } else {
                src
            };
            syns(&mut r, &src, 1, i * (SECOND / 6000), 1);
        }
        assert!(r.banner.adds.is_empty(), "{:?}", &r.banner.adds[..3]);
        let f = r.of("syn_flood");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0]["port"].as_u64(), f[0]["syncookies"].as_bool()),
            (Some(80), Some(true))
        );
        assert!(f[0]["rate_per_s"].as_u64().unwrap() >= 1000);
        let line = r
            .out
            .iter()
            .find(|e| matches!(e, Event::SynFlood(_)))
            .unwrap()
            .human();
        assert!(
            line.contains("syn_flood port 80") && line.contains("SYN cookies on"),
            "{line}"
        );
    }

    /// A raw IPv4/IPv6 + TCP SYN packet for a probe (enough for the parser).
    fn frame_of(p: &packet::Probe) -> Vec<u8> {
        let mut f = Vec::new();
        match (p.src.ip(), p.dst.ip()) {
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

    /// A raw IPv4 TCP segment with sequence numbers and a payload.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        src: &str,
        dst: &str,
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let (s, d): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
            (src.parse().unwrap(), dst.parse().unwrap());
        let total = (40 + payload.len()) as u16;
        let mut f = vec![0x45, 0];
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&s.octets());
        f.extend_from_slice(&d.octets());
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[0x50, flags, 4, 0, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// A rig with two signatures on port 80: sql-union (high, no case) and
    /// etc-passwd (medium).
    fn signature_rig() -> Rig {
        use crate::core::config::signature::{Needle, Signature};
        let mut r = Rig::new(Mode::Ban);
        let sig = |name: &str, lit: &str, nocase, severity| Signature {
            name: name.into(),
            proto: Proto::Tcp,
            ports: vec![80],
            needle: Needle::Contains(lit.into()),
            nocase,
            severity,
        };
        r.e.signatures = Some(Signatures::new(vec![
            sig("sql-union", "UNION SELECT", true, Severity::High),
            sig("etc-passwd", "/etc/passwd", false, Severity::Medium),
        ]));
        r
    }

    /// A connection from `src`:`port` to our port 80 whose SYN-ACK we sent
    /// (seq 1000, the client's ISN 5000), then its first data segment.
    fn request(r: &mut Rig, src: &str, port: u16, payload: &[u8], t: Micros) {
        r.feed(
            &segment("198.51.100.1", src, 80, port, 0x12, 1000, 5001, b""),
            t,
        );
        r.feed(
            &segment(src, "198.51.100.1", port, 80, 0x18, 5001, 1001, payload),
            t + 100,
        );
    }

    #[test]
    fn a_high_severity_payload_bans_its_sender_and_a_medium_one_is_reported() {
        let mut r = signature_rig();
        request(
            &mut r,
            "203.0.113.7",
            40000,
            b"GET /?id=1 union select pass FROM users HTTP/1.1\r\n",
            SECOND,
        );
        assert_eq!(
            r.banner.adds,
            [(
                "blacklist".to_string(),
                "203.0.113.7/32".parse().unwrap(),
                300
            )]
        );
        let m = r.of("signature_matched");
        assert_eq!(m.len(), 1);
        assert_eq!(
            (
                m[0]["name"].as_str(),
                m[0]["severity"].as_str(),
                m[0]["port"].as_u64()
            ),
            (Some("sql-union"), Some("high"), Some(80))
        );
        assert_eq!(m[0]["matched"], "union select");
        assert_eq!(m[0]["action"], "banned for 5m");
        let b = r.of("ip_blocked");
        assert_eq!(
            (b[0]["scan_type"].as_str(), b[0]["reason"].as_str()),
            (
                Some("signature"),
                Some("payload matched signature sql-union (high) on tcp/80")
            )
        );
        // Its next segment is not looked at.
        r.feed(
            &segment(
                "203.0.113.7",
                "198.51.100.1",
                40000,
                80,
                0x18,
                5101,
                1001,
                b"UNION SELECT",
            ),
            2 * SECOND,
        );
        assert_eq!(r.of("signature_matched").len(), 1);
        // Medium: the event, no ban.
        request(
            &mut r,
            "203.0.113.8",
            40000,
            b"GET /../../etc/passwd HTTP/1.1",
            3 * SECOND,
        );
        let m = r.of("signature_matched");
        assert_eq!((m.len(), m[1]["name"].as_str()), (2, Some("etc-passwd")));
        assert_eq!(m[1]["action"], "reported only (no high-severity signature)");
        assert_eq!(r.banner.adds.len(), 1);
        // A trusted sender is reported, never banned.
        request(&mut r, "192.0.2.9", 40000, b"UNION SELECT", 4 * SECOND);
        let m = r.of("signature_matched");
        assert!(
            m[2]["action"].as_str().unwrap().starts_with("not banned"),
            "{m:?}"
        );
        assert_eq!(r.banner.adds.len(), 1);
    }

    /// A SYN-ACK from `server`:`port` to `client`:40000 (seq 1000,
    /// acknowledging the client's ISN 5000 + 1).
    fn syn_ack(r: &mut Rig, server: &str, client: &str, port: u16, t: Micros) {
        r.feed(
            &segment(server, client, port, 40000, 0x12, 1000, 5001, b""),
            t,
        );
    }

    /// A data segment from `client`:40000 to our `port` (seq 5001).
    fn data(r: &mut Rig, client: &str, port: u16, ack: u32, payload: &[u8], t: Micros) {
        r.feed(
            &segment(
                client,
                "198.51.100.1",
                40000,
                port,
                0x18,
                5001,
                ack,
                payload,
            ),
            t,
        );
    }

    #[test]
    fn a_forged_or_unanswered_payload_bans_nobody() {
        let mut r = signature_rig();
        let evil = b"GET /?q=UNION SELECT 1";
        let us = "198.51.100.1";
        // No handshake that we answered.
        data(&mut r, "203.0.113.9", 80, 1001, evil, SECOND);
        // Our SYN-ACK went to someone; the forger guesses our sequence number wrong.
        syn_ack(&mut r, us, "203.0.113.10", 80, SECOND);
        data(&mut r, "203.0.113.10", 80, 900_000, evil, SECOND + 1);
        // A SYN-ACK another host sent (not us) opens nothing either.
        syn_ack(&mut r, "198.51.100.77", "203.0.113.11", 80, SECOND);
        data(&mut r, "203.0.113.11", 80, 1001, evil, SECOND + 1);
        // The right handshake, but to a port no signature watches.
        syn_ack(&mut r, us, "203.0.113.12", 8080, SECOND);
        data(&mut r, "203.0.113.12", 8080, 1001, evil, SECOND + 1);
        // A clean request passes without an event.
        request(
            &mut r,
            "203.0.113.13",
            40000,
            b"GET /index.html HTTP/1.1\r\n\r\n",
            SECOND,
        );
        assert!(r.banner.adds.is_empty(), "{:?}", r.banner.adds);
        assert!(r.of("signature_matched").is_empty());
        // After a greeting from us (95 bytes: a server that speaks first)
        // the client's first data is looked at, but its sender is not
        // proven (a blind forger could land in that window): reported only.
        syn_ack(&mut r, us, "203.0.113.14", 80, SECOND);
        data(&mut r, "203.0.113.14", 80, 1096, evil, SECOND + 1);
        assert!(r.banner.adds.is_empty(), "{:?}", r.banner.adds);
        let m = r.of("signature_matched");
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0]["src"], "203.0.113.14");
        assert_eq!(
            m[0]["action"],
            "reported only (the server spoke first, so the sender is not proven)"
        );
        assert!(r.of("ip_blocked").is_empty());
        let sig = r.e.signatures.as_ref().unwrap();
        assert_eq!(sig.examined, 2);
    }

    proptest::proptest! {
        /// Packet times out of order (pcapng merges, multi-queue NICs) once
        /// underflowed the detector's arithmetic. Any order of any times,
        /// from scanners and a flood of one-packet sources, is taken in stride.
        #[test]
        fn out_of_order_times_never_panic(
            probes in proptest::collection::vec((0u8..12, 0u16..40, 0u64..5_000_000_000_000u64), 1..400),
            flood in proptest::bool::ANY,
        ) {
            for mode in [Mode::Ban, Mode::Replay, Mode::DetectOnly] {
                let mut r = Rig::new(mode);
                r.e.detector = Detector::new(Settings {
                    capacity: 100,
                    distributed_sources: 3,
                    distributed_window: 60 * SECOND,
                    ..Settings::for_profile(Profile::named("aggressive").unwrap())
                });
                for &(src, port, t) in &probes {
                    let src = if flood { format!("198.18.{}.{}", t % 250, port) } else { format!("203.0.113.{}", 10 + src) };
                    let p = packet::Probe {
                        src: src.parse().unwrap(),
                        dst: "198.51.100.1".parse().unwrap(),
                        sport: 40000,
                        dport: 1000 + port,
                        kind: packet::Kind::Syn,
                    };
                    r.feed(&frame_of(&p), t);
                }
                proptest::prop_assert!(r.e.detector.tracked() <= 100);
                proptest::prop_assert_eq!(r.e.counts.frames, probes.len() as u64);
            }
        }
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
        // What `fwctl why` shows: capture's reason, the ports, nmap's flags.
        let rec = r.e.history.get(&"203.0.113.5/32".parse().unwrap()).unwrap();
        let why = rec.why.as_ref().expect("a capture ban keeps why");
        assert_eq!(why.origin, "capture");
        assert!(why.rule.starts_with("SYN"), "{why:?}");
        assert_eq!(why.hits, 3);
        assert!(why.evidence[0].contains("3 distinct ports"), "{why:?}");
        assert!(why.evidence[1].starts_with("ports: "), "{why:?}");
        assert!(why.evidence[2].contains("-sS"), "{why:?}");
        // `[history] evidence = 0` keeps none.
        let mut r = Rig::new(Mode::Ban);
        r.e.evidence = 0;
        r.scan("203.0.113.5", "198.51.100.1", 3, 1000);
        let rec = r.e.history.get(&"203.0.113.5/32".parse().unwrap()).unwrap();
        assert!(rec.why.as_ref().unwrap().evidence.is_empty());
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
        assert_eq!(
            s["action"],
            "not banned: in trusted network 192.0.2.0/24 (config)"
        );
        assert!(r.of("ip_blocked").is_empty());
        // Probes from this host's own address are not even tracked.
        r.e.set_own(vec!["198.51.100.2".parse().unwrap()]);
        r.e.dests
            .exact
            .insert("198.51.100.1".parse::<IpAddr>().unwrap());
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
            r.feed(&f, (1000 + i as u64) * SECOND);
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

    /// An IPv4 TCP fragment from `src` to 198.51.100.1: id 77, at byte
    /// `offset`, more to come or not, carrying `l4`.
    fn frag4(src: &str, offset: u16, more: bool, l4: &[u8]) -> Vec<u8> {
        let s: std::net::Ipv4Addr = src.parse().unwrap();
        let total = (20 + l4.len()) as u16;
        let fo = (offset / 8) | if more { 0x2000 } else { 0 };
        let mut f = vec![0x45, 0];
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 77]);
        f.extend_from_slice(&fo.to_be_bytes());
        f.extend_from_slice(&[64, 6, 0, 0]);
        f.extend_from_slice(&s.octets());
        f.extend_from_slice(&[198, 51, 100, 1]);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn a_tiny_first_fragment_is_a_scan_at_once_and_its_flags_fragment_makes_the_probe() {
        let mut r = Rig::new(Mode::Ban);
        // nmap -sS -f: ports and sequence number, then ack, offset, flags...
        let first = frag4(
            "203.0.113.9",
            0,
            true,
            &[0x9d, 0x25, 0x03, 0xea, 0, 0, 0, 1],
        );
        let second = frag4("203.0.113.9", 8, true, &[0, 0, 0, 0, 0x60, 0x02, 4, 0]);
        r.feed(&first, 10 * SECOND);
        let det = r.of("scan_detected");
        assert_eq!(det.len(), 1, "{det:?}");
        assert_eq!(det[0]["scan_type"], "TINY-FRAGMENT");
        assert_eq!(det[0]["nmap"], "-f");
        assert_eq!(det[0]["ports"], serde_json::json!([1002]));
        assert!(det[0]["reason"]
            .as_str()
            .unwrap()
            .contains("8 bytes to port 1002"));
        assert_eq!(r.banner.adds.len(), 1);
        // The fragment holding the flags is put together with it: a SYN to
        // 1002 from port 40229 (counted; the source is banned, so quiet).
        r.feed(&second, 10 * SECOND + 5);
        assert_eq!(r.e.counts.probes, 2);
        assert_eq!(r.of("scan_detected").len(), 1);
        // Alone (no first fragment held), the same fragment is no probe;
        // nor is a later one (byte 16), nor a first fragment holding the
        // flags (a probe like any other, parsed whole).
        let mut r = Rig::new(Mode::DetectOnly);
        r.feed(&second, SECOND);
        r.feed(&frag4("203.0.113.9", 16, false, &[0; 8]), SECOND);
        assert_eq!(r.e.counts.probes, 0);
        let whole = vec![
            0x9d, 0x25, 0x03, 0xea, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 4, 0,
        ];
        r.feed(&frag4("203.0.113.9", 0, true, &whole), SECOND);
        assert_eq!((r.e.counts.probes, r.of("scan_detected").len()), (1, 0));
    }

    #[test]
    fn held_fragments_match_on_source_destination_and_id_and_expire() {
        let mut f = Frags::default();
        let first = frag4("203.0.113.9", 0, true, &[0; 8]);
        let first = packet::fragment(Link::Raw, &first).unwrap();
        let second = frag4("203.0.113.9", 8, true, &[0; 8]);
        let second = packet::fragment(Link::Raw, &second).unwrap();
        let other = frag4("203.0.113.8", 8, true, &[0; 8]);
        let other = packet::fragment(Link::Raw, &other).unwrap();
        f.hold(&first, 4000, 22, SECOND);
        assert_eq!(f.take(&other, SECOND), None);
        assert_eq!(f.take(&second, SECOND), Some((4000, 22)));
        assert_eq!(f.take(&second, SECOND), None, "taken once");
        f.hold(&first, 4000, 22, SECOND);
        assert_eq!(f.take(&second, SECOND + FRAG_TTL + 1), None, "expired");
    }

    /// An NFLOG message (as netlink and LINKTYPE_NFLOG carry it) holding
    /// an IPv4 TCP segment with `flags` from `src`:`sport` to port `dport`.
    fn nflog(src: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let s: std::net::Ipv4Addr = src.parse().unwrap();
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&s.octets());
        ip.extend_from_slice(&[198, 51, 100, 1]);
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&dport.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 9, 0x50, flags, 4, 0, 0, 0, 0, 0]);
        let mut m = vec![2, 0, 0, 33];
        // A prefix attribute first (type 10), then the payload (type 9).
        m.extend_from_slice(&8u16.to_le_bytes());
        m.extend_from_slice(&10u16.to_le_bytes());
        m.extend_from_slice(b"abc\0");
        m.extend_from_slice(&((4 + ip.len()) as u16).to_le_bytes());
        m.extend_from_slice(&9u16.to_le_bytes());
        m.extend_from_slice(&ip);
        m
    }

    #[test]
    fn conntrack_hands_over_the_ack_scans_and_nothing_else_counts_from_it() {
        let feed = |r: &mut Rig, m: &[u8], t: Micros| {
            let banner = &mut r.banner;
            r.e.frame(
                Link::Nflog,
                m,
                t,
                &mut |set, net, secs| banner.add(set, net, secs),
                &|| t,
                &mut r.out,
            );
        };
        for (flags, kind, nmap) in [(0x10, "ACK", "-sA/-sW"), (0x11, "MAIMON", "-sM")] {
            let mut r = Rig::new(Mode::Ban);
            for port in 0..3 {
                feed(
                    &mut r,
                    &nflog("203.0.113.9", 40000, 1000 + port, flags),
                    SECOND,
                );
            }
            let det = r.of("scan_detected");
            assert_eq!(det.len(), 1, "{kind}");
            assert_eq!(
                (det[0]["scan_type"].as_str(), det[0]["nmap"].as_str()),
                (Some(kind), Some(nmap))
            );
        }
        let mut r = Rig::new(Mode::Ban);
        for port in 0..10 {
            // SYN-ACK and RST backscatter, a plain SYN (the packet socket's),
            // and late ACKs from a server port to a client one.
            for (sport, flags) in [
                (40000, 0x12),
                (40000, 0x14),
                (40000, 0x04),
                (40000, 0x02),
                (443, 0x10),
            ] {
                feed(
                    &mut r,
                    &nflog("203.0.113.9", sport, 40000 + port, flags),
                    SECOND,
                );
            }
        }
        assert_eq!(r.e.counts.probes, 0);
        assert!(r.out.is_empty());
    }

    #[test]
    fn syns_from_one_low_port_say_idle_scan_and_forgeable_and_decoys_say_so_too() {
        let mut r = Rig::new(Mode::Ban);
        for i in 0..3 {
            let p = packet::Probe {
                src: "203.0.113.30".parse().unwrap(),
                dst: "198.51.100.1".parse().unwrap(),
                sport: 80,
                dport: 3000 + i,
                kind: packet::Kind::Syn,
            };
            r.feed(&frame_of(&p), SECOND);
        }
        let det = &r.of("scan_detected")[0];
        assert_eq!(det["nmap"], "-sS (or -sI)");
        assert!(det["note"]
            .as_str()
            .unwrap()
            .starts_with("every SYN came from port 80: an idle scan (-sI) forges"));
        // Banned as a SYN scan (forgeable: an admin peer would be spared).
        assert_eq!(r.banner.adds.len(), 1);
        let line = r.out[0].human();
        assert!(line.contains("forgeable evidence"), "{line}");
        // Decoys: the second of two sources with one port sequence.
        let mut r = Rig::new(Mode::Ban);
        r.scan("203.0.113.31", "198.51.100.1", 3, 1);
        r.scan("203.0.113.32", "198.51.100.1", 3, 1);
        let det = r.of("scan_detected");
        assert_eq!(det[1]["nmap"], "-sS -D");
        assert_eq!(det[1]["same_ports_as"], serde_json::json!(["203.0.113.31"]));
        assert!(det[0].get("same_ports_as").is_none());
        let line = r
            .out
            .iter()
            .find(|e| matches!(e, Event::ScanDetected(s) if s.src == "203.0.113.32"))
            .unwrap()
            .human();
        assert!(
            line.contains("same ports in the same order as 203.0.113.31 (one scanner, decoys)"),
            "{line}"
        );
    }
}
