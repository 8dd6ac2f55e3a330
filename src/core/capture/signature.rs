//! Payload signatures (pure): the first data segment of each connection to a
//! signature port, matched against every literal in one Aho-Corasick pass
//! (one automaton for exact literals, one for `nocase` ones run over an
//! ASCII-lowercased copy of the payload) and each regex.
//! A TCP segment counts only when it is the first of a connection whose
//! SYN-ACK this host sent, carrying the sequence number that handshake
//! fixed. With the exact acknowledgement too, a forger who never saw our
//! SYN-ACK cannot make it, so a high-severity match can ban its sender; an
//! ack further on (the server spoke first) is only reported.

use crate::core::config::pattern::Severity;
use crate::core::config::signature::{ports, regex, Needle, Proto, Signature};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// One signature that matched a payload, at bytes `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub sig: usize,
    pub start: usize,
    pub end: usize,
}

pub struct Matcher {
    pub sigs: Vec<Signature>,
    exact: Option<Literals>,
    folded: Option<Literals>,
    regexes: Vec<(usize, regex::bytes::Regex)>,
    tcp_ports: Vec<u16>,
    udp_ports: Vec<u16>,
}

/// One set of literals, twice: `any` (leftmost-first) answers "does anything
/// match" through aho-corasick's SIMD prefilter, which its standard
/// semantics leave out (with them every byte was stepped through: the
/// literals cost 2.5x more); `all` then lists every match, overlapping ones
/// too, for the rare payload that has one.
struct Literals {
    any: AhoCorasick,
    all: AhoCorasick,
    /// The signature of each literal.
    ids: Vec<usize>,
}

/// The automata of the literals with `nocase` as given. Case-folded ones
/// are lowercased here and run over a lowercased payload: aho-corasick's own
/// case folding leaves it without a fast prefilter for a mix of first
/// bytes, and it then stepped through every byte (a fifth of a replay).
fn automaton(sigs: &[Signature], nocase: bool) -> Option<Literals> {
    let (ids, lits): (Vec<usize>, Vec<Vec<u8>>) = sigs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.needle {
            Needle::Contains(c) if s.nocase == nocase => Some((
                i,
                if nocase {
                    c.as_bytes().to_ascii_lowercase()
                } else {
                    c.as_bytes().to_vec()
                },
            )),
            _ => None,
        })
        .unzip();
    if ids.is_empty() {
        return None;
    }
    let build = |kind| {
        AhoCorasickBuilder::new()
            .match_kind(kind)
            .build(&lits)
            .expect("validated literals")
    };
    Some(Literals {
        any: build(MatchKind::LeftmostFirst),
        all: build(MatchKind::Standard),
        ids,
    })
}

impl Matcher {
    /// Built from validated signatures (their regexes compile).
    pub fn new(sigs: Vec<Signature>) -> Matcher {
        let regexes = sigs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.needle {
                Needle::Regex(r) => Some((i, regex(r, s.nocase).expect("validated regex"))),
                Needle::Contains(_) => None,
            })
            .collect();
        Matcher {
            exact: automaton(&sigs, false),
            folded: automaton(&sigs, true),
            regexes,
            tcp_ports: ports(&sigs, Proto::Tcp),
            udp_ports: ports(&sigs, Proto::Udp),
            sigs,
        }
    }

    /// Some signature watches `port` of this protocol.
    pub fn watches(&self, proto: Proto, port: u16) -> bool {
        match proto {
            Proto::Tcp => self.tcp_ports.binary_search(&port).is_ok(),
            Proto::Udp => self.udp_ports.binary_search(&port).is_ok(),
        }
    }

    pub fn ports(&self, proto: Proto) -> &[u16] {
        match proto {
            Proto::Tcp => &self.tcp_ports,
            Proto::Udp => &self.udp_ports,
        }
    }

    /// The signatures of `proto` for `port` that `payload` matches, each
    /// once (its first match), in signature order. `folded` is scratch
    /// space for the lowercased payload.
    pub fn matches(
        &self,
        proto: Proto,
        port: u16,
        payload: &[u8],
        folded: &mut Vec<u8>,
        out: &mut Vec<Hit>,
    ) {
        out.clear();
        if self.folded.is_some() {
            folded.clear();
            folded.extend(payload.iter().map(u8::to_ascii_lowercase));
        }
        let applies = |i: usize| {
            let s = &self.sigs[i];
            s.proto == proto && s.ports.contains(&port)
        };
        let runs = [
            (self.exact.as_ref(), payload),
            (self.folded.as_ref(), folded.as_slice()),
        ];
        for (lits, text) in runs.into_iter().filter_map(|(l, t)| l.map(|l| (l, t))) {
            if !lits.any.is_match(text) {
                continue;
            }
            for m in lits.all.find_overlapping_iter(text) {
                let sig = lits.ids[m.pattern().as_usize()];
                if applies(sig) && !out.iter().any(|h| h.sig == sig) {
                    out.push(Hit {
                        sig,
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        }
        for (sig, re) in &self.regexes {
            if applies(*sig) {
                if let Some(m) = re.find(payload) {
                    out.push(Hit {
                        sig: *sig,
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        }
        out.sort_by_key(|h| h.sig);
    }

    pub fn severity(&self, h: &Hit) -> Severity {
        self.sigs[h.sig].severity
    }
}

/// Most matched bytes an event carries.
pub const SHOWN: usize = 64;

/// The matched bytes for an event: printable ASCII as is, the rest as \xNN,
/// at most SHOWN bytes of the match.
pub fn escaped(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(SHOWN) {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > SHOWN {
        s.push_str("...");
    }
    s
}

/// The most a server's greeting may be before the client's first data.
const GREETING: u32 = 64 << 10;

/// A connection by its client end and our port.
type Key = (IpAddr, u16, u16);

/// Handshakes this host answered on signature ports, waiting for their
/// first data segment: bounded, the oldest forgotten first.
pub struct Handshakes {
    cap: usize,
    /// (sequence number the client's first byte carries, acknowledgement
    /// it must carry, generation), keyed by addresses and ports a client
    /// chooses: seeded per table.
    open: HashMap<Key, (u32, u32, u64), foldhash::fast::FixedState>,
    order: VecDeque<(Key, u64)>,
    generation: u64,
}

impl Handshakes {
    pub fn new(cap: usize) -> Handshakes {
        Handshakes {
            cap,
            open: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(
                crate::core::capture::table::random_seed(),
            )),
            order: VecDeque::new(),
            generation: 0,
        }
    }

    /// We sent a SYN-ACK from `port` to `client`:`cport` with sequence
    /// `seq`, acknowledging `ack` (the client's ISN + 1).
    pub fn syn_ack(&mut self, client: IpAddr, cport: u16, port: u16, seq: u32, ack: u32) {
        self.generation += 1;
        let key = (client, cport, port);
        self.open
            .insert(key, (ack, seq.wrapping_add(1), self.generation));
        self.order.push_back((key, self.generation));
        while self.open.len() > self.cap || self.order.len() > 2 * self.cap {
            let Some((k, g)) = self.order.pop_front() else {
                break;
            };
            if self.open.get(&k).is_some_and(|v| v.2 == g) {
                self.open.remove(&k);
            }
        }
    }

    /// A data segment from `client`:`cport` to `port`. The handshake is
    /// forgotten at its first data segment, whatever it carries, so a blind
    /// forger gets one guess per handshake. None: not the first data of a
    /// connection we answered. Some(true): it acknowledges our SYN-ACK
    /// exactly (only who saw it can): the sender is proven. Some(false): it
    /// acknowledges up to 64 KiB more, our greeting (SMTP, FTP, MySQL speak
    /// first): looked at, but the sender is not proven.
    pub fn first_data(
        &mut self,
        client: IpAddr,
        cport: u16,
        port: u16,
        seq: u32,
        ack: u32,
    ) -> Option<bool> {
        let (s, a, _) = self.open.remove(&(client, cport, port))?;
        if s != seq {
            return None;
        }
        match ack.wrapping_sub(a) {
            0 => Some(true),
            1..=GREETING => Some(false),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(
        name: &str,
        proto: Proto,
        ports: &[u16],
        needle: Needle,
        nocase: bool,
        severity: Severity,
    ) -> Signature {
        Signature {
            name: name.into(),
            proto,
            ports: ports.to_vec(),
            needle,
            nocase,
            severity,
        }
    }

    fn matcher() -> Matcher {
        Matcher::new(vec![
            sig(
                "sql-union",
                Proto::Tcp,
                &[80, 3306],
                Needle::Contains("UNION SELECT".into()),
                true,
                Severity::High,
            ),
            sig(
                "etc-passwd",
                Proto::Tcp,
                &[80],
                Needle::Contains("/etc/passwd".into()),
                false,
                Severity::Medium,
            ),
            sig(
                "cmd",
                Proto::Tcp,
                &[80],
                Needle::Regex(r"cmd=[a-z]{2,}".into()),
                false,
                Severity::Low,
            ),
            sig(
                "dns-version",
                Proto::Udp,
                &[53],
                Needle::Contains("\x07version\x04bind".into()),
                false,
                Severity::Low,
            ),
        ])
    }

    fn names(m: &Matcher, proto: Proto, port: u16, payload: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        m.matches(proto, port, payload, &mut Vec::new(), &mut out);
        out.iter().map(|h| m.sigs[h.sig].name.clone()).collect()
    }

    #[test]
    fn literals_and_regexes_match_on_their_ports_only() {
        let m = matcher();
        let req = b"GET /?id=1 union select password from users HTTP/1.1\r\n";
        assert_eq!(names(&m, Proto::Tcp, 80, req), ["sql-union"]);
        assert_eq!(names(&m, Proto::Tcp, 3306, req), ["sql-union"]);
        assert!(names(&m, Proto::Tcp, 443, req).is_empty());
        assert!(names(&m, Proto::Udp, 80, req).is_empty());
        let both = b"GET /x?cmd=id&f=/etc/passwd&q=UNION%20SELECT HTTP/1.1";
        assert_eq!(names(&m, Proto::Tcp, 80, both), ["etc-passwd", "cmd"]);
        assert!(names(&m, Proto::Tcp, 3306, both).is_empty());
        assert_eq!(names(&m, Proto::Udp, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03"), ["dns-version"]);
    }

    #[test]
    fn case_folds_only_where_asked() {
        let m = matcher();
        assert_eq!(names(&m, Proto::Tcp, 80, b"uNiOn SeLeCt 1"), ["sql-union"]);
        assert!(names(&m, Proto::Tcp, 80, b"GET /ETC/PASSWD").is_empty());
        assert!(names(&m, Proto::Tcp, 80, b"cmd=ID").is_empty());
    }

    #[test]
    fn a_payload_that_matches_nothing_and_a_match_cut_by_the_snap_length() {
        let m = matcher();
        assert!(names(
            &m,
            Proto::Tcp,
            80,
            b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        .is_empty());
        assert!(names(&m, Proto::Tcp, 80, b"").is_empty());
        // The kernel cut the frame inside the literal: what was not captured
        // cannot match, and the part that was is no match either.
        let full = b"GET /?q=1 UNION SELECT 2";
        let cut = &full[..full.len() - 3];
        assert!(names(&m, Proto::Tcp, 80, cut).is_empty());
        assert_eq!(names(&m, Proto::Tcp, 80, full), ["sql-union"]);
        let mut hits = Vec::new();
        m.matches(Proto::Tcp, 80, full, &mut Vec::new(), &mut hits);
        assert_eq!(&full[hits[0].start..hits[0].end], b"UNION SELECT");
    }

    #[test]
    fn matched_bytes_are_escaped_and_capped() {
        assert_eq!(escaped(b"UNION SELECT"), "UNION SELECT");
        assert_eq!(escaped(b"a\r\n\x00\\\xff"), "a\\x0d\\x0a\\x00\\\\\\xff");
        let long = vec![b'A'; 100];
        assert_eq!(escaped(&long), format!("{}...", "A".repeat(SHOWN)));
    }

    #[test]
    fn only_the_first_data_segment_of_a_handshake_we_answered_counts() {
        let c: IpAddr = "203.0.113.7".parse().unwrap();
        let mut h = Handshakes::new(4);
        // Our SYN-ACK: seq 1000, acknowledging the client's ISN 5000 + 1.
        h.syn_ack(c, 40000, 80, 1000, 5001);
        assert_eq!(h.first_data(c, 40000, 80, 5001, 1001), Some(true));
        // The second segment of the same connection is not looked at.
        assert_eq!(h.first_data(c, 40000, 80, 5101, 1001), None);
        // No handshake seen: never counts.
        assert_eq!(h.first_data(c, 40001, 80, 1, 1), None);
        // A forger who never saw the SYN-ACK guesses the acknowledgement
        // wrong, and that was its one guess: the right one is too late.
        h.syn_ack(c, 40003, 80, 1000, 5001);
        assert_eq!(h.first_data(c, 40003, 80, 5001, 77), None);
        assert_eq!(h.first_data(c, 40003, 80, 5001, 1001), None);
        // A segment with our acknowledgement but later data (the first one
        // was lost to us): forgotten, not examined.
        h.syn_ack(c, 40002, 80, 9, 100);
        assert_eq!(h.first_data(c, 40002, 80, 300, 10), None);
        assert_eq!(h.first_data(c, 40002, 80, 100, 10), None);
        // After a server greeting of 95 bytes (our sequence wraps): looked
        // at, the sender not proven.
        h.syn_ack(c, 40004, 3306, u32::MAX - 10, 100);
        assert_eq!(h.first_data(c, 40004, 3306, 100, 84), Some(false));
        assert!(h.is_empty());
    }

    #[test]
    fn handshakes_stay_bounded_and_forget_the_oldest() {
        let c: IpAddr = "203.0.113.7".parse().unwrap();
        let mut h = Handshakes::new(3);
        for p in 0..10u16 {
            h.syn_ack(c, 40000 + p, 80, 0, 1);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.first_data(c, 40000, 80, 1, 1), None);
        assert_eq!(h.first_data(c, 40009, 80, 1, 1), Some(true));
        // A retransmitted SYN-ACK refreshes its handshake without growing.
        for _ in 0..10 {
            h.syn_ack(c, 40008, 80, 0, 1);
        }
        assert!(h.len() <= 3 && h.order.len() <= 6);
        assert_eq!(h.first_data(c, 40008, 80, 1, 1), Some(true));
    }
}
