//! The `--match` request patterns of a web log (pure): which of them a
//! request line matches, and the answer remembered for the request lines a
//! log repeats.
//!
//! Telling which patterns a request matches walks their DFA over it (see
//! request_walk): 0.5 to 1.5 ns a byte of an ordinary request here (up to
//! 4 on bytes crafted to be something to every pattern), most of a scan's
//! time on a log of long query strings. Access logs repeat their request
//! lines: the same probe list sent by thousands of scanners, health checks,
//! the site's own pages. Hashing a request and comparing it with the
//! remembered copy costs a fraction of a walk, so a repeated request is
//! answered from [`Memo`]; on a log of unique requests the memo finds few
//! repeats in a probe and is left alone for a while (`PROBE`, `REST`). The
//! answer is the same either way: a remembered request is compared byte
//! for byte, never trusted by its hash.

use super::request_walk::Walks;
use regex::bytes::RegexSet;
use std::hash::BuildHasher;

/// The `--match` patterns: which a request matches.
#[derive(Clone)]
pub(super) struct Requests {
    set: RegexSet,
    /// The same patterns as one lazy DFA walked by hand (see
    /// request_walk): a walk that skips most bytes, where the set takes
    /// two passes that do not. None if they cannot be walked (the set
    /// answers, as it does a request the walk leaves to it).
    walk: Option<Walks>,
    memo: Memo,
}

impl Requests {
    pub(super) fn new(set: RegexSet) -> Requests {
        Requests {
            walk: Walks::new(set.patterns()),
            set,
            memo: Memo::default(),
        }
    }

    /// The patterns `request` matches, bit i for pattern i (0: none).
    fn which(&mut self, request: &[u8]) -> u64 {
        if let Some(m) = self.walk.as_mut().and_then(|w| w.which(request)) {
            return m;
        }
        // Most requests match nothing: telling so stops at the first match
        // and skips the bookkeeping of which.
        if !self.set.is_match(request) {
            return 0;
        }
        self.set.matches(request).iter().fold(0, |m, i| m | 1 << i)
    }

    /// [`Self::which`], from the memo when this request was seen.
    pub(super) fn marks(&mut self, request: &[u8]) -> u64 {
        if request.len() > MEMO_LONGEST || !self.memo.worth_it() {
            return self.which(request);
        }
        let h = self.memo.hasher.hash_one(request);
        if let Some(m) = self.memo.get(h, request) {
            return m;
        }
        let m = self.which(request);
        self.memo.put(h, request, m);
        m
    }
}

/// Requests remembered: 2 x `SETS` of them, each at most `MEMO_LONGEST`
/// bytes (at most 2 MiB a parser: one per reading thread of a scan, one per
/// `[[watch]]` entry with `match`; whatever the log holds).
const SETS: usize = 512;
const MEMO_LONGEST: usize = 2048;

/// The memo's hits are counted over `PROBE` lookups; fewer than one in
/// `FEW` and it is left alone for the next `REST` requests (a log of unique
/// requests, 900-byte query strings with a token each, ran 5 % slower with
/// the memo's hashing and copying than without it).
const PROBE: u32 = 4096;
const FEW: u32 = 16;
const REST: u32 = 1 << 16;

/// A two-way set-associative table of request -> marks. The hash only
/// picks the set (foldhash, seeded per process, not built to resist a
/// chosen-collision flood): requests aimed at one set would only push each
/// other out, costing misses (a hash and a copy each, and a probe that
/// finds few repeats rests the memo), never a wrong answer.
#[derive(Default, Clone)]
struct Memo {
    /// `2 * SETS` once the first request is remembered.
    ways: Vec<Way>,
    /// Per set, the way to replace next (the one used least recently).
    older: Vec<u8>,
    hasher: foldhash::fast::RandomState,
    /// Lookups and hits of this probe, and requests still to leave alone.
    looked: u32,
    hits: u32,
    resting: u32,
}

#[derive(Default, Clone)]
struct Way {
    hash: u64,
    marks: u64,
    request: Vec<u8>,
    used: bool,
}

impl Memo {
    /// Whether to look this request up: no while resting after a probe
    /// that found too few repeats.
    fn worth_it(&mut self) -> bool {
        if self.resting > 0 {
            self.resting -= 1;
            return false;
        }
        if self.looked == PROBE {
            let few = self.hits * FEW < PROBE;
            self.looked = 0;
            self.hits = 0;
            if few {
                // This request is the first of the REST left alone.
                self.resting = REST - 1;
                return false;
            }
        }
        true
    }

    fn get(&mut self, h: u64, request: &[u8]) -> Option<u64> {
        self.looked += 1;
        let set = h as usize % SETS;
        for w in 0..2 {
            let way = self.ways.get(2 * set + w)?;
            if way.used && way.hash == h && way.request == request {
                self.older[set] = 1 - w as u8;
                self.hits += 1;
                return Some(way.marks);
            }
        }
        None
    }

    fn put(&mut self, h: u64, request: &[u8], marks: u64) {
        if self.ways.is_empty() {
            self.ways.resize_with(2 * SETS, Way::default);
            self.older = vec![0; SETS];
        }
        let set = h as usize % SETS;
        let w = usize::from(self.older[set]);
        self.older[set] = 1 - w as u8;
        let way = &mut self.ways[2 * set + w];
        way.hash = h;
        way.marks = marks;
        way.request.clear();
        // Exactly its length: a copy never holds more than MEMO_LONGEST.
        way.request.reserve_exact(request.len());
        way.request.extend_from_slice(request);
        way.used = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in() -> Requests {
        let all = crate::core::patterns::for_source(&[], "nginx");
        Requests::new(crate::core::patterns::compile(&all))
    }

    #[test]
    fn the_walk_answers_for_the_built_in_patterns_and_the_set_without_it() {
        let mut r = built_in();
        assert!(r.walk.is_some());
        let req = b"GET /cgi-bin/../x HTTP/1.1";
        assert_eq!(r.which(req), 1 | 1 << 5);
        r.walk = None;
        assert_eq!(r.which(req), 1 | 1 << 5);
        assert_eq!(r.which(b"GET / HTTP/1.1"), 0);
        // A Unicode word boundary is not walked: the set answers.
        let mut u = Requests::new(RegexSet::new([r"\bpasswd\b", "x"]).unwrap());
        assert!(u.walk.is_none());
        assert_eq!(u.which("GET /é/passwd".as_bytes()), 1);
    }

    #[test]
    fn remembered_marks_are_the_patterns_own() {
        let mut r = built_in();
        let reqs: [&[u8]; 6] = [
            b"GET /../../etc/passwd HTTP/1.1",
            b"GET /cgi-bin/../x HTTP/1.1",
            b"GET / HTTP/1.1",
            b"GET /wp-login.php HTTP/1.1",
            b"GET /.env HTTP/1.1",
            b"GET /cgi-bin/ HTTP/1.1",
        ];
        for _ in 0..3 {
            for req in reqs {
                assert_eq!(
                    r.marks(req),
                    r.which(req),
                    "{:?}",
                    String::from_utf8_lossy(req)
                );
            }
        }
        // Pattern 0 is path-traversal, 5 cgi-bin: both, from the memo too.
        assert_eq!(r.marks(reqs[1]), 1 | 1 << 5);
        assert_eq!(r.marks(reqs[2]), 0);
    }

    #[test]
    fn a_full_memo_still_answers_every_request_exactly() {
        let mut r = built_in();
        // Many more requests than the memo holds, each seen twice, some
        // matching: replaced entries are answered again, never confused.
        for round in 0..2 {
            for i in 0..(4 * SETS) {
                let req = if i % 3 == 0 {
                    format!("GET /cgi-bin/{i} HTTP/1.1")
                } else {
                    format!("GET /p/{i} HTTP/1.1")
                };
                let want = if i % 3 == 0 { 1 << 5 } else { 0 };
                assert_eq!(r.marks(req.as_bytes()), want, "round {round}: {req}");
            }
        }
        // Longer than it keeps: answered, not remembered.
        let long = format!("GET /cgi-bin/{} HTTP/1.1", "a".repeat(MEMO_LONGEST));
        assert_eq!(r.marks(long.as_bytes()), 1 << 5);
        assert!(r.memo.ways.iter().all(|w| w.request.len() <= MEMO_LONGEST));
        assert_eq!(r.memo.ways.len(), 2 * SETS);
    }

    #[test]
    fn a_request_is_answered_by_its_bytes_not_its_hash() {
        let mut m = Memo::default();
        m.put(7, b"GET /a HTTP/1.1", 1);
        // Same hash, other bytes: not this entry's answer.
        assert_eq!(m.get(7, b"GET /b HTTP/1.1"), None);
        assert_eq!(m.get(8, b"GET /a HTTP/1.1"), None);
        assert_eq!(m.get(7, b"GET /a HTTP/1.1"), Some(1));
        // Both ways of a set hold their own request.
        m.put(7 + SETS as u64, b"GET /c HTTP/1.1", 2);
        assert_eq!(m.get(7, b"GET /a HTTP/1.1"), Some(1));
        assert_eq!(m.get(7 + SETS as u64, b"GET /c HTTP/1.1"), Some(2));
        // A short request after a long one in the same way: its copy holds
        // no more than the longest kept.
        let long = vec![b'x'; MEMO_LONGEST];
        // (1 500 then 2 000 bytes: a vector's doubling would make it 3 000.)
        for (i, len) in [1500, MEMO_LONGEST - 48, 10, MEMO_LONGEST]
            .into_iter()
            .enumerate()
        {
            m.put(9, &long[..len], i as u64);
            assert_eq!(m.get(9, &long[..len]), Some(i as u64));
        }
        assert!(m.ways.iter().all(|w| w.request.capacity() <= MEMO_LONGEST));
    }

    #[test]
    fn unique_requests_rest_the_memo_and_repeats_wake_it() {
        let mut r = built_in();
        for i in 0..PROBE {
            assert_eq!(r.marks(format!("GET /u/{i} HTTP/1.1").as_bytes()), 0);
        }
        // The probe found no repeat: the next REST requests are searched
        // without it (and still answered).
        assert_eq!(r.marks(b"GET /cgi-bin/x HTTP/1.1"), 1 << 5);
        assert_eq!((r.memo.resting, r.memo.looked), (REST - 1, 0));
        for _ in 1..REST {
            assert_eq!(r.marks(b"GET /cgi-bin/x HTTP/1.1"), 1 << 5);
        }
        assert_eq!(r.memo.resting, 0);
        // Then it probes again, and repeats keep it on.
        for _ in 0..2 * PROBE {
            assert_eq!(r.marks(b"GET /.env HTTP/1.1"), 1 << 3);
        }
        assert_eq!(r.memo.resting, 0);
        assert!(r.memo.hits > 0);
    }
}
