//! Which `--match` patterns a request line matches, by walking a lazy DFA
//! here byte by byte (pure), skipping the bytes that leave it where it
//! idles.
//!
//! A DFA step is a load that waits for the one before it: about 1.5 ns a
//! byte here, whatever the engine. Most bytes of a request are nothing to
//! any pattern: in the unanchored DFA they lead from the state of "no
//! pattern begun" back to itself. That state's other bytes (18 for the
//! built-in patterns: `%'./<`, the first letters of the case-insensitive
//! words, and a lead byte of their Unicode case folds) are looked up in a
//! table 16 at a time, loads that wait for nothing: a 900-byte query
//! string of letters and digits costs a third of its steps.
//!
//! The DFA matches all patterns at once (`MatchKind::All`), so the patterns
//! of every match state on the way are the answer (the regex set needs one
//! pass to tell whether any matches and another for which); [`Walks`] goes
//! on with a DFA of the patterns not yet matched, at most two passes' worth
//! of steps a request.
//!
//! The lazy DFA's states are built as the walk meets them in a cache of
//! bounded size; when the cache is full it is cleared, and every state id
//! known before is void: the idle state is found again before the next
//! request, and the request being walked goes on without skipping. The
//! walk leaves a request to the regex set (the engine it replaces, with its
//! own bounds) when its cache is cleared more than `CLEARS_A_REQUEST` times
//! in it, and leaves every request to the set for `REST` requests after
//! `STRIKES` clears in a row came sooner than `CLEAR_EVERY` bytes walked:
//! requests an attacker writes to build states faster than they are used
//! cost what they cost before the walk, and a partial walk at most.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};

/// The cache of the DFA of all the patterns, as the regex crate gives its
/// own (one per reading thread of a scan, per `[[watch]]` entry with
/// `match`; with the DFAs of `Walks`, at most `CACHE + SUBSETS *
/// SUBSET_CACHE` a parser).
const CACHE: usize = 2 << 20;

/// Clears of the cache in one request after which the set answers it.
const CLEARS_A_REQUEST: usize = 2;
/// A clear sooner than this many bytes walked after the one before is a
/// strike; `STRIKES` in a row and the set answers the next `REST` requests.
const CLEAR_EVERY: u64 = 1 << 20;
const STRIKES: u32 = 3;
const REST: u32 = 1 << 16;

#[derive(Clone)]
pub(super) struct Walk {
    dfa: DFA,
    cache: Cache,
    /// The cache's clear count that `start`, `idle` and `stay` were found
    /// at: ids from before a clear mean nothing after it.
    clears: usize,
    start: LazyStateID,
    /// The state the walk skips from, and the bytes that keep it there
    /// (`stay[b] == 0`) or not (1).
    idle: LazyStateID,
    stay: [u8; 256],
    /// The caller's bit for each of this DFA's patterns.
    bits: Vec<u64>,
    /// The last match state met and its patterns' bits, at a clear count
    /// (a run of a pattern's matches meets the same state again and again).
    last: Option<(usize, LazyStateID, u64)>,
    /// Bytes walked since the cache was last cleared, clears in a row that
    /// came sooner than `CLEAR_EVERY`, and requests still left to the set.
    walked: u64,
    strikes: u32,
    resting: u32,
}

/// Where a walk of one request is, to go on from after it stopped.
pub(super) struct At {
    i: usize,
    sid: LazyStateID,
    /// False once the cache was cleared during this request: the idle
    /// state's id is void.
    skipping: bool,
    clears: usize,
}

/// What a walk found: the bits of the patterns matched, and whether at
/// the end of the request or stopped at a match (`stop`).
pub(super) enum Walked {
    End(u64),
    Stopped(u64),
}

impl Walk {
    /// None if the patterns cannot be walked (a Unicode word boundary, a
    /// start state that matches): the set answers then.
    pub(super) fn new(patterns: &[&str]) -> Option<Walk> {
        Self::with_cache(patterns, CACHE)
    }

    fn with_cache(patterns: &[&str], capacity: usize) -> Option<Walk> {
        let bits = (0..patterns.len()).map(|i| 1u64 << i).collect();
        Self::with_bits(patterns, bits, capacity)
    }

    fn with_bits(patterns: &[&str], bits: Vec<u64>, capacity: usize) -> Option<Walk> {
        let config = DFA::config()
            .match_kind(MatchKind::All)
            .cache_capacity(capacity)
            .skip_cache_capacity_check(true);
        let dfa = DFA::builder()
            .configure(config)
            .syntax(syntax::Config::new().utf8(false))
            .thompson(regex_automata::nfa::thompson::Config::new().utf8(false))
            .build_many(patterns)
            .ok()?;
        let cache = dfa.create_cache();
        let mut w = Walk {
            dfa,
            cache,
            clears: usize::MAX,
            start: LazyStateID::default(),
            idle: LazyStateID::default(),
            stay: [1; 256],
            bits,
            last: None,
            walked: 0,
            strikes: 0,
            resting: 0,
        };
        w.find_idle().then_some(w)
    }

    /// Finds the start and idle states (again, after a clear). False if
    /// the cache keeps being cleared or the DFA quits at the start.
    fn find_idle(&mut self) -> bool {
        for _ in 0..3 {
            let before = self.cache.clear_count();
            if let Some((start, idle, stay)) = self.idle_states(before) {
                (self.start, self.idle, self.stay) = (start, idle, stay);
                self.clears = before;
                return true;
            }
        }
        false
    }

    /// The start state, the idle state and its bytes; None if the cache
    /// was cleared meanwhile (each id found before is void then).
    fn idle_states(&mut self, clears: usize) -> Option<(LazyStateID, LazyStateID, [u8; 256])> {
        let start = self
            .dfa
            .start_state_forward(&mut self.cache, &Input::new(b""))
            .ok()?;
        if start.is_tagged() || self.cache.clear_count() != clears {
            return None;
        }
        let dfa = &self.dfa;
        let cache = &mut self.cache;
        let mut step = |s: LazyStateID, b: u8| {
            let n = dfa.next_state(cache, s, b).ok()?;
            (cache.clear_count() == clears).then_some(n)
        };
        // The start state when a byte leads back to it (the built-in
        // patterns), else a state a byte leads to and keeps (a `^`
        // makes the start differ from the state mid-request).
        let mut idle = None;
        for b in 0..=255u8 {
            if step(start, b)? == start {
                idle = Some(start);
                break;
            }
        }
        if idle.is_none() {
            for b in 0..=255u8 {
                let s = step(start, b)?;
                if !s.is_tagged() && step(s, b)? == s {
                    idle = Some(s);
                    break;
                }
            }
        }
        // None keeps: the start state, with every byte leaving it.
        let idle = idle.unwrap_or(start);
        let mut stay = [1u8; 256];
        for b in 0..=255u8 {
            stay[usize::from(b)] = u8::from(step(idle, b)? != idle);
        }
        Some((start, idle, stay))
    }

    /// The first byte from `i` on that leaves the idle state (or the end).
    #[inline]
    fn skip(&self, hay: &[u8], mut i: usize) -> usize {
        // Sixteen table loads that wait for nothing, then one branch.
        while let Some(chunk) = hay.get(i..i + 16) {
            if chunk
                .iter()
                .fold(0, |any, &b| any | self.stay[usize::from(b)])
                != 0
            {
                break;
            }
            i += 16;
        }
        while i < hay.len() && self.stay[usize::from(hay[i])] == 0 {
            i += 1;
        }
        i
    }

    /// The start of a walk of a request; None if the cache keeps being
    /// cleared (the caller asks the set).
    pub(super) fn begin(&mut self) -> Option<At> {
        if self.resting > 0 {
            self.resting -= 1;
            return None;
        }
        if self.cache.clear_count() != self.clears {
            // Cleared since the idle state was found: soon after the clear
            // before, a strike.
            if self.walked < CLEAR_EVERY {
                self.strikes += 1;
            } else {
                self.strikes = 0;
            }
            self.walked = 0;
            if self.strikes >= STRIKES {
                self.strikes = 0;
                self.resting = REST;
                return None;
            }
            if !self.find_idle() {
                return None;
            }
        }
        Some(At {
            i: 0,
            sid: self.start,
            skipping: true,
            clears: self.clears,
        })
    }

    /// Walks `hay` on from `at`: to its end, or with `stop` to the first
    /// match state with a pattern not in `known`. None when the walk cannot
    /// tell (the DFA quit, or its cache keeps being cleared): the caller
    /// asks the set.
    pub(super) fn walk(
        &mut self,
        hay: &[u8],
        at: &mut At,
        known: u64,
        stop: bool,
    ) -> Option<Walked> {
        let mut marks = 0u64;
        let (from, mut i, mut sid) = (at.i, at.i, at.sid);
        'walk: loop {
            if at.skipping && sid == self.idle {
                i = self.skip(hay, i);
            }
            // Steps between states with something to tell (a match, a
            // state not built yet), without the checks of each.
            while !sid.is_tagged() {
                let Some(&b) = hay.get(i) else { break 'walk };
                let next = self.dfa.next_state_untagged(&self.cache, sid, b);
                if next.is_tagged() {
                    break;
                }
                sid = next;
                i += 1;
                if at.skipping && sid == self.idle {
                    continue 'walk;
                }
            }
            let Some(&b) = hay.get(i) else { break };
            sid = self.dfa.next_state(&mut self.cache, sid, b).ok()?;
            i += 1;
            if self.cache.clear_count() != at.clears {
                at.skipping = false;
                if self.cache.clear_count() - at.clears > CLEARS_A_REQUEST {
                    return None;
                }
            }
            if sid.is_match() {
                let found = self.patterns(sid);
                marks |= found;
                if stop && found & !known != 0 {
                    (at.i, at.sid) = (i, sid);
                    self.walked += (i - from) as u64;
                    return Some(Walked::Stopped(marks));
                }
            } else if sid.is_dead() {
                self.walked += (i - from) as u64;
                return Some(Walked::End(marks));
            } else if sid.is_quit() {
                return None;
            }
        }
        // A match is seen one step after its end: the end of the request
        // is a step too.
        sid = self.dfa.next_eoi_state(&mut self.cache, sid).ok()?;
        if sid.is_match() {
            marks |= self.patterns(sid);
        } else if sid.is_quit() {
            return None;
        }
        (at.i, at.sid) = (i, sid);
        self.walked += (i - from) as u64;
        Some(Walked::End(marks))
    }

    /// The whole request's patterns, bit i for pattern i (see `walk`).
    #[cfg(test)]
    fn which(&mut self, hay: &[u8]) -> Option<u64> {
        let mut at = self.begin()?;
        match self.walk(hay, &mut at, 0, false)? {
            Walked::End(m) | Walked::Stopped(m) => Some(m),
        }
    }

    fn patterns(&mut self, sid: LazyStateID) -> u64 {
        let clears = self.cache.clear_count();
        if let Some((c, s, m)) = self.last {
            if (c, s) == (clears, sid) {
                return m;
            }
        }
        let m = (0..self.dfa.match_len(&self.cache, sid)).fold(0, |m, k| {
            m | self.bits[self.dfa.match_pattern(&self.cache, sid, k).as_usize()]
        });
        self.last = Some((clears, sid, m));
        m
    }
}

/// Sub-DFAs kept at most (each of the patterns not yet matched), and the
/// cache of each.
const SUBSETS: usize = 6;
const SUBSET_CACHE: usize = 1 << 20;
/// Stops of one request to go on with another DFA, at most.
const SWITCHES: usize = 3;
/// Sub-DFAs are built only for patterns whose NFA is at most this big (a
/// build takes milliseconds then; the built-in patterns' is 18 KiB).
const SUBSET_NFA: usize = 256 << 10;

/// The walk of all the patterns, and of the ones still unmatched: once a
/// request matched a pattern (a query string of `union select`s), the rest
/// of it is walked for the others only, by a DFA that idles on more bytes
/// (measured on such 900-byte strings: 0.9 ns a byte instead of 1.6). It
/// starts over from the request's first byte (a match of another pattern
/// may have begun before), so it switches only while the bytes walked so
/// far are at most the request's length: at most two passes' worth of
/// steps, however the matches lie.
#[derive(Clone)]
pub(super) struct Walks {
    patterns: Vec<String>,
    all: u64,
    /// The DFA of the patterns of each mask; the first is all of them.
    /// None: that subset could not be built (not tried again).
    walks: Vec<(u64, Option<Walk>)>,
    /// Whether sub-DFAs are built at all (see `SUBSET_NFA`).
    subsets: bool,
}

impl Walks {
    pub(super) fn new(patterns: &[String]) -> Option<Walks> {
        let p: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let walk = Walk::new(&p)?;
        let all = u64::MAX >> (64 - p.len().clamp(1, 64));
        Some(Walks {
            patterns: patterns.to_vec(),
            all,
            subsets: walk.dfa.get_nfa().memory_usage() <= SUBSET_NFA,
            walks: vec![(all, Some(walk))],
        })
    }

    /// The patterns `hay` matches, bit i for pattern i; None when the walk
    /// cannot tell (the caller asks the set).
    pub(super) fn which(&mut self, hay: &[u8]) -> Option<u64> {
        let mut k = 0;
        let mut known = 0;
        let mut switches = 0;
        // Bytes walked in this request, by every DFA.
        let mut spent = 0;
        let mut at = self.walk(k)?.begin()?;
        loop {
            let stop = switches < SWITCHES && spent <= hay.len();
            let from = at.i;
            let found = self.walk(k)?.walk(hay, &mut at, known, stop)?;
            spent += at.i - from;
            match found {
                Walked::End(m) => return Some(known | m),
                Walked::Stopped(m) => known |= m,
            }
            if known == self.all {
                return Some(known);
            }
            switches += 1;
            // The rest by the DFA of the others, from the first byte, if
            // that leaves at most two passes' worth; or on with this one
            // (also when that DFA cannot be built or is resting).
            if spent > hay.len() {
                continue;
            }
            if let Some(j) = self.subset(self.all & !known) {
                if let Some(a) = self.walk(j).and_then(Walk::begin) {
                    (k, at) = (j, a);
                }
            }
        }
    }

    fn walk(&mut self, k: usize) -> Option<&mut Walk> {
        self.walks[k].1.as_mut()
    }

    /// The index of the DFA of the patterns in `mask`, built if need be;
    /// None if it cannot be (too many kept, or it does not build).
    fn subset(&mut self, mask: u64) -> Option<usize> {
        if let Some(k) = self.walks.iter().position(|(m, _)| *m == mask) {
            return self.walks[k].1.is_some().then_some(k);
        }
        if !self.subsets || self.walks.len() > SUBSETS {
            return None;
        }
        let (p, bits): (Vec<&str>, Vec<u64>) = (0..self.patterns.len())
            .filter(|i| mask & 1 << i != 0)
            .map(|i| (self.patterns[i].as_str(), 1u64 << i))
            .unzip();
        self.walks
            .push((mask, Walk::with_bits(&p, bits, SUBSET_CACHE)));
        let k = self.walks.len() - 1;
        self.walks[k].1.is_some().then_some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::bytes::RegexSet;

    fn set_which(set: &RegexSet, req: &[u8]) -> u64 {
        set.matches(req).iter().fold(0, |m, i| m | 1 << i)
    }

    fn built_in() -> (Vec<&'static str>, RegexSet) {
        let p: Vec<&str> = crate::core::patterns::BUILTIN.iter().map(|p| p.1).collect();
        let set = RegexSet::new(&p).unwrap();
        (p, set)
    }

    /// Requests made of the patterns' pieces, long runs of idle bytes and
    /// a stray byte now and then.
    const PIECES: [&[u8]; 28] = [
        b"GET /",
        b"../",
        b"%2E%2e%2F",
        b"UNION%20ALL%20SELECT",
        b"select+a+from+",
        b"<ScRiPt",
        b"onerror%3d",
        b"/.env",
        b"/.env.local?",
        b"/WP-LOGIN.PHP",
        b"/cgi-bin/",
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"%20",
        b" HTTP/1.1",
        "\u{17f}elect+".as_bytes(),
        b"0123456789abcdef",
        b"'+oR+7=",
        b"%27%20Or%201%3d",
        b"JavaScript:",
        b"onload=",
        b"BENCHMARK(",
        b"sleep%20(3",
        b"information_schema",
        b"/xmlrpc.php",
        b"/wp-admin/",
        b"%252e%252E",
        b"%c0%ae%C0%AE",
        b"..\\",
    ];

    fn requests() -> Vec<Vec<u8>> {
        let pieces = PIECES;
        let mut seed = 7u64;
        (0..3000)
            .map(|n| {
                let mut req = Vec::new();
                for _ in 0..(n % 40) {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    req.extend_from_slice(pieces[(seed >> 33) as usize % pieces.len()]);
                    if seed >> 62 == 0 {
                        req.push((seed >> 40) as u8);
                    }
                }
                req
            })
            .collect()
    }

    #[test]
    fn the_walk_finds_the_patterns_the_set_finds() {
        let (p, set) = built_in();
        let mut w = Walk::new(&p).unwrap();
        // The idle state keeps most bytes: letters, digits, spaces.
        assert!(w.stay.iter().filter(|&&s| s == 0).count() > 200);
        let mut hits = 0;
        for req in requests() {
            let want = set_which(&set, &req);
            assert_eq!(
                w.which(&req),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(&req)
            );
            hits += usize::from(want != 0);
        }
        assert!(hits > 1000 && hits < 3000, "{hits}");
        // A match at the very end is seen at the end's step.
        assert_eq!(w.which(b"GET /.env"), Some(1 << 3));
        assert_eq!(w.which(b""), Some(0));
    }

    #[test]
    fn the_rest_of_a_matching_request_is_walked_for_the_other_patterns() {
        let (p, set) = built_in();
        let owned: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        let mut w = Walks::new(&owned).unwrap();
        for req in requests() {
            let want = set_which(&set, &req);
            assert_eq!(
                w.which(&req),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(&req)
            );
        }
        // DFAs of the patterns still unmatched were built, no more than kept.
        assert!(w.walks.len() > 2 && w.walks.len() <= SUBSETS + 1);
        assert!(w.walks.iter().all(|(m, walk)| walk.is_some() && *m != 0));
        // Every pattern, each found after the one before (more stops than
        // SWITCHES): the last of them by walking on.
        let every = b"GET /cgi-bin/wp-login.php/.env?x=<script>&y=1+union+select+1&z=../";
        assert_eq!(w.which(every), Some(0b11_1111));
        assert_eq!(w.which(b"GET / HTTP/1.1"), Some(0));
        // A subset that does not build is not tried again, and the walk
        // goes on with the DFA it has.
        let mut u = Walks::new(&["a".into(), "b".into()]).unwrap();
        u.walks.push((0b10, None));
        assert_eq!(u.which(b"xaxb"), Some(0b11));
        assert_eq!(u.subset(0b10), None);
        assert_eq!(u.walks.len(), 2);
    }

    #[test]
    fn a_cache_cleared_while_walking_gives_the_same_answers() {
        let (p, set) = built_in();
        // The smallest cache the idle state is found in (1 KiB steps): it
        // is cleared again and again.
        let small = (0..1000)
            .find_map(|k| Walk::with_cache(&p, k << 10))
            .unwrap();
        // Each request from a walk with the idle state just found: clears
        // come in the middle of requests (skipping stops, the match memo
        // is void), and the walk still answers most of them, as the set.
        let mut cleared_and_answered = 0;
        for req in requests() {
            let mut w = small.clone();
            let before = w.cache.clear_count();
            if let Some(m) = w.which(&req) {
                assert_eq!(
                    m,
                    set_which(&set, &req),
                    "{:?}",
                    String::from_utf8_lossy(&req)
                );
                cleared_and_answered += usize::from(w.cache.clear_count() > before);
            }
        }
        assert!(cleared_and_answered > 100, "{cleared_and_answered}");
        // One walk for all: clears in a row soon after each other rest it
        // (the set answers, None here), and the answers stay the set's.
        let mut w = small.clone();
        let mut asked_the_set = 0;
        for req in requests() {
            match w.which(&req) {
                Some(m) => assert_eq!(m, set_which(&set, &req)),
                None => asked_the_set += 1,
            }
        }
        assert!(w.resting > 0 && asked_the_set > 0);
        // A request that clears the cache more than CLEARS_A_REQUEST times
        // is the set's; the next one is walked again.
        let mut w = small.clone();
        let long: Vec<u8> = requests().concat();
        let before = w.cache.clear_count();
        assert_eq!(w.which(&long), None);
        assert!(w.cache.clear_count() - before > CLEARS_A_REQUEST);
        assert_eq!(w.which(b"GET /.env HTTP/1.1"), Some(1 << 3));
    }

    #[test]
    fn a_request_costs_at_most_two_passes_however_its_matches_lie() {
        let (p, _) = built_in();
        let owned: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        let mut w = Walks::new(&owned).unwrap();
        // Every pattern matched at the end, one after the other, after a
        // long run of bytes that are something to every pattern.
        let mut req = b"%2%2%2".repeat(300);
        req.extend_from_slice(b"/cgi-bin/ /wp-login.php /.env <script ../ union select");
        let walked = |w: &Walks| {
            w.walks
                .iter()
                .flat_map(|(_, w)| w)
                .map(|w| w.walked)
                .sum::<u64>()
        };
        for _ in 0..3 {
            let before = walked(&w);
            assert_eq!(w.which(&req), Some(0b11_1111));
            let spent = walked(&w) - before;
            assert!(
                spent <= 2 * req.len() as u64 + 64,
                "{spent} of {}",
                req.len()
            );
        }
    }

    #[test]
    fn patterns_with_look_behind_idle_in_the_state_they_keep() {
        // `^` makes the start state differ from the one mid-request.
        let p = ["^GET /admin", r"(?-u:\b)passwd(?-u:\b)", "x{3}"];
        let set = RegexSet::new(p).unwrap();
        let mut w = Walk::new(&p).unwrap();
        for req in [
            &b"GET /admin HTTP/1.1"[..],
            b"POST /GET /admin",
            b"/etc/passwd",
            b"/etc/passwds",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaxxx",
            b"xx xx",
        ] {
            assert_eq!(
                w.which(req),
                Some(set_which(&set, req)),
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_answered_as_the_set_answers(req in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let (p, set) = built_in();
            let owned: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            let mut w = Walks::new(&owned).unwrap();
            proptest::prop_assert_eq!(w.which(&req), Some(set_which(&set, &req)));
        }

        #[test]
        fn pieces_of_patterns_are_answered_as_the_set_answers(parts in proptest::collection::vec((0..PIECES.len() + 8, proptest::num::u8::ANY), 0..40)) {
            let (p, set) = built_in();
            let owned: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            let mut w = Walks::new(&owned).unwrap();
            let mut req = Vec::new();
            for (k, b) in parts {
                match PIECES.get(k) {
                    Some(piece) => req.extend_from_slice(piece),
                    None => req.push(b),
                }
            }
            proptest::prop_assert_eq!(w.which(&req), Some(set_which(&set, &req)));
        }
    }
}
