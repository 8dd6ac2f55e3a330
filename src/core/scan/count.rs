//! Window counting (pure): lines in, per-source tallies out. Memory grows
//! with the number of distinct sources inside the window, never with the
//! amount of log read: lines outside the window or of other rules and types
//! are counted and dropped.

use crate::core::logline::{Hit, Line, Malformed, Proto};
use crate::core::logsource::LineParser;
use memchr::memmem::Finder;
use std::net::IpAddr;

pub use super::sources::{Source, Sources, TopPorts};

/// `--type`: which protocols count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TypeFilter {
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    All,
}

impl TypeFilter {
    pub fn wants(self, proto: Proto) -> bool {
        match self {
            TypeFilter::Tcp => proto == Proto::Tcp,
            TypeFilter::Udp => proto == Proto::Udp,
            TypeFilter::Icmp => matches!(proto, Proto::Icmp | Proto::Icmpv6),
            TypeFilter::All => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TypeFilter::Tcp => "tcp",
            TypeFilter::Udp => "udp",
            TypeFilter::Icmp => "icmp",
            TypeFilter::All => "all",
        }
    }
}

/// What a tally counts: the protocols, and the prefix IPv6 sources are
/// counted by (128: each address; see [`Tally::fold_v6`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counting {
    pub kind: TypeFilter,
    pub v6_prefix: u8,
}

impl From<TypeFilter> for Counting {
    /// Every IPv6 address on its own.
    fn from(kind: TypeFilter) -> Counting {
        Counting {
            kind,
            v6_prefix: 128,
        }
    }
}

/// An address as one number: IPv4 as its IPv4-mapped IPv6 form (the parser
/// never yields a mapped IPv6 address, so the two cannot collide).
fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The IPv4-mapped block `::ffff:0:0/96`, as [`key`] writes IPv4.
fn is_v4_key(k: u128) -> bool {
    k >> 32 == 0xffff
}

/// The bits of an IPv6 key kept when counting per `/len`.
fn v6_mask(len: u8) -> u128 {
    match len {
        0 => 0,
        128.. => u128::MAX,
        n => !(u128::MAX >> n),
    }
}

pub fn addr(k: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// How many hits ahead the tally warms a slot, and then a source.
const AHEAD: usize = 8;

/// How far past the line being read the tally warms the buffer (bytes).
/// A mapped log is read from the page cache, not from a buffer a `read`
/// just filled: the CPU's own prefetcher stops at each 4 KiB page, and
/// the line splitting then waited on memory (measured: 12-15 % of the CPU
/// of counting every request, whatever the distance from 512 to 4096).
const READ_AHEAD: usize = 2048;

/// What counting a hit needs of it once its source is known: a third of a
/// [`Hit`], moved twice through the [`Pipe`] on every line.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    time: i64,
    marks: u64,
    n: u32,
    dport: Option<u16>,
}

impl From<&Hit> for Counted {
    fn from(h: &Hit) -> Counted {
        Counted {
            time: h.time,
            marks: h.marks,
            n: h.n,
            dport: h.dport,
        }
    }
}

/// The hits between warming and counting: (key, hash, hit) whose slot is
/// warm, (place, hit) whose source is. Two rings of `AHEAD`: the hit put in
/// at `at` replaces the one looked up there (now placed at `at`), which
/// replaces the one counted, so each stage is `AHEAD` hits behind the one
/// before, in order. `queued` says which entries are live.
struct Pipe {
    looked: [(u128, u64, Counted); AHEAD],
    placed: [(u32, Counted); AHEAD],
    at: usize,
    queued: usize,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            looked: Default::default(),
            placed: Default::default(),
            at: 0,
            queued: 0,
        }
    }
}

/// A new source's tally, before its first hit is added.
fn fresh(h: &Counted) -> Source {
    Source {
        hits: 0,
        first: h.time,
        last: h.time,
        ports: TopPorts::default(),
        marks: 0,
    }
}

/// Per-line outcome counts, and the sources seen in the window.
#[derive(Clone, Debug)]
pub struct Tally {
    pub filter: TypeFilter,
    pub lines: u64,
    /// Lines of the rule and type inside the window.
    pub matched: u64,
    /// Lines of the rule outside the window.
    pub outside: u64,
    /// Lines of the rule inside the window but of another protocol.
    pub other_type: u64,
    pub malformed: [u64; Malformed::ALL.len()],
    /// The first malformed line of each kind (cut to 300 bytes), to show.
    pub examples: [Option<String>; Malformed::ALL.len()],
    /// Keyed by [`key`]: one u128 hashes faster than an `IpAddr`.
    pub sources: Sources,
    /// Matching lines per minute of their time, for the baseline.
    pub minutes: Minutes,
    /// The prefix IPv6 sources are counted by (128: each address); see
    /// [`Tally::fold_v6`].
    pub v6_prefix: u8,
    /// Its mask, applied to each IPv6 hit's key as it is counted.
    v6_mask: u128,
}

/// Counts per minute (Unix seconds / 60). Lines come mostly in order, so
/// the current minute is counted aside and folded into the map when the
/// minute changes: one comparison a line, not a map lookup. Bounded: the
/// newest [`MAX_MINUTES`] minutes are kept (the baseline keeps no more),
/// about 2 MB at most, whatever the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Minutes {
    done: std::collections::BTreeMap<i64, u64>,
    current: Option<(i64, u64)>,
}

/// 31 days of minutes.
pub const MAX_MINUTES: usize = 31 * 24 * 60;

impl Minutes {
    pub fn add(&mut self, time: i64, n: u64) {
        let m = time.div_euclid(60);
        match &mut self.current {
            Some((cm, c)) if *cm == m => *c += n,
            cur => {
                if let Some((cm, c)) = cur.replace((m, n)) {
                    self.fold(cm, c);
                }
            }
        }
    }

    fn fold(&mut self, m: i64, c: u64) {
        *self.done.entry(m).or_default() += c;
        if self.done.len() > MAX_MINUTES {
            self.done.pop_first();
        }
    }

    /// Every minute's count, oldest first.
    pub fn counts(&self) -> std::collections::BTreeMap<i64, u64> {
        let mut all = self.done.clone();
        if let Some((m, c)) = self.current {
            *all.entry(m).or_default() += c;
            if all.len() > MAX_MINUTES {
                all.pop_first();
            }
        }
        all
    }

    /// Forget the minutes before `minute` (watch, once the baseline has
    /// taken them: a long-running counter stays small).
    pub fn forget_before(&mut self, minute: i64) {
        self.done = self.done.split_off(&minute);
        if self.current.is_some_and(|(m, _)| m < minute) {
            self.current = None;
        }
    }

    fn merge(&mut self, other: &Minutes) {
        if let Some((m, c)) = self.current.take() {
            self.fold(m, c);
        }
        for (m, c) in other.counts() {
            self.fold(m, c);
        }
    }
}

impl Tally {
    /// A tally of `count.kind`, IPv6 sources counted per
    /// `count.v6_prefix` from the first hit: folding the table after the
    /// scan built a second one as big (with a million clients, a third of
    /// a whole-file scan).
    pub fn new(count: impl Into<Counting>) -> Tally {
        let Counting { kind, v6_prefix } = count.into();
        let v6_prefix = v6_prefix.min(128);
        Tally {
            filter: kind,
            lines: 0,
            matched: 0,
            outside: 0,
            other_type: 0,
            malformed: [0; Malformed::ALL.len()],
            examples: Default::default(),
            sources: Sources::default(),
            minutes: Minutes::default(),
            v6_prefix,
            v6_mask: v6_mask(v6_prefix),
        }
    }

    /// What this tally counts (to make another that merges into it).
    pub fn counting(&self) -> Counting {
        Counting {
            kind: self.filter,
            v6_prefix: self.v6_prefix,
        }
    }

    /// The key a hit from `a` is counted under: the address, or its
    /// network when IPv6 is counted per prefix.
    #[inline]
    fn key_of(&self, a: IpAddr) -> u128 {
        let k = key(a);
        if is_v4_key(k) {
            k
        } else {
            k & self.v6_mask
        }
    }

    /// Count IPv6 sources per `/len` network (`[aggregate] v6_count_prefix`):
    /// a host rotating through the addresses of its /64 is one source; the
    /// key of a folded source is its network's first address. Nothing to
    /// do for a tally made counting per `/len` already ([`Counting`]), as
    /// the scan's are.
    pub fn fold_v6(&mut self, len: u8) {
        if len >= self.v6_prefix {
            return;
        }
        self.v6_prefix = len;
        let mask = v6_mask(len);
        self.v6_mask = mask;
        // Most logs hold no IPv6 source a fold would change: then the
        // table stays (rebuilding it was a third of a whole-file scan).
        if !self.sources.keys().any(|&k| k & mask != k && !is_v4_key(k)) {
            return;
        }
        let old = std::mem::take(&mut self.sources);
        for (k, s) in old.into_pairs() {
            let k = if is_v4_key(k) { k } else { k & mask };
            let mut fresh = Some(s);
            let mine = self
                .sources
                .get_or_insert_with(k, || fresh.take().expect("taken once"));
            if let Some(s) = fresh {
                mine.merge(&s);
            }
        }
    }

    /// What a source key stands for: the address, or (IPv6, folded) its
    /// network.
    pub fn net_of(&self, a: IpAddr) -> ipnet::IpNet {
        match a {
            IpAddr::V6(_) if self.v6_prefix < 128 => ipnet::IpNet::new(a, self.v6_prefix)
                .expect("prefix <= 128")
                .trunc(),
            _ => ipnet::IpNet::from(a),
        }
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    /// One line, without its newline.
    pub fn feed_line(&mut self, parser: &mut LineParser, line: &[u8]) {
        if let Some(h) = self.count(parser.parse_candidate(line), line) {
            let k = self.key_of(h.src);
            let h = Counted::from(&h);
            let i = self.sources.place(k, self.sources.hash(k), || fresh(&h));
            self.add(i, &h);
        }
    }

    /// A counted hit, for the source at place `i`.
    #[inline]
    fn add(&mut self, i: u32, h: &Counted) {
        self.matched += u64::from(h.n);
        let s = self.sources.at_mut(i);
        s.hits += u64::from(h.n);
        s.first = s.first.min(h.time);
        s.last = s.last.max(h.time);
        s.marks |= h.marks;
        if let Some(p) = h.dport {
            s.ports.add(p, h.n);
        }
        self.minutes.add(h.time, u64::from(h.n));
    }

    /// Counts a line's outcome but for a hit to count, which it returns.
    #[inline]
    fn count(&mut self, outcome: Line, line: &[u8]) -> Option<Hit> {
        match outcome {
            Line::Hit(h) if self.filter.wants(h.proto) => return Some(h),
            Line::Hit(_) | Line::Unwanted => self.other_type += 1,
            Line::Outside => self.outside += 1,
            Line::Other => {}
            Line::Malformed(why) => {
                let i = why.index();
                self.malformed[i] += 1;
                if self.examples[i].is_none() {
                    let cut = &line[..line.len().min(300)];
                    // A copy first: a mapped log's bytes are checked once.
                    let cut = cut.to_vec();
                    self.examples[i] = Some(String::from_utf8_lossy(&cut).into_owned());
                }
            }
        }
        None
    }

    /// A hit into the pipeline: its slot is warmed now, looked up (and its
    /// source warmed) `AHEAD` hits later, counted `AHEAD` hits after that,
    /// so that neither cache miss stalls a line (see [`Sources`]).
    #[inline]
    fn queue(&mut self, h: Hit, pipe: &mut Pipe, warm: impl Fn(*const u8) + Copy) {
        let k = self.key_of(h.src);
        let hash = self.sources.hash(k);
        if let Some(p) = self.sources.slot_addr(hash) {
            warm(p);
        }
        let at = pipe.at;
        pipe.at = (at + 1) % AHEAD;
        if pipe.queued >= 2 * AHEAD {
            let (i, h) = pipe.placed[at];
            self.add(i, &h);
        } else {
            pipe.queued += 1;
        }
        let (k, hash, h) = std::mem::replace(&mut pipe.looked[at], (k, hash, Counted::from(&h)));
        if pipe.queued > AHEAD {
            let i = self.sources.place(k, hash, || fresh(&h));
            self.sources.source_addr(i).into_iter().for_each(warm);
            pipe.placed[at] = (i, h);
        }
    }

    /// Counts what is left in the pipeline, in order.
    fn drain(&mut self, pipe: &mut Pipe) {
        // The oldest live entry of each ring is the next to be replaced.
        let (q, at) = (pipe.queued, pipe.at);
        let live = |n: usize| (AHEAD - n.min(AHEAD)..AHEAD).map(move |j| (at + j) % AHEAD);
        for j in live(q.saturating_sub(AHEAD)) {
            let (i, h) = pipe.placed[j];
            self.add(i, &h);
        }
        for j in live(q) {
            let (k, hash, h) = pipe.looked[j];
            let i = self.sources.place(k, hash, || fresh(&h));
            self.add(i, &h);
        }
        (pipe.at, pipe.queued) = (0, 0);
    }

    /// Whole lines, each ending in a newline except perhaps the last. Only
    /// lines holding the parser's needle are looked at (all lines, when the
    /// parser says the needle is on most); the rest are counted.
    pub fn feed_buffer(&mut self, parser: &mut LineParser, finder: &Finder, buf: &[u8]) {
        self.feed_buffer_warm(parser, finder, buf, |_| {});
    }

    /// [`Self::feed_buffer`], with `warm` asked to bring the memory a hit
    /// will need into the cache some hits ahead (the caller's prefetch: an
    /// intrinsic the core cannot call). The counts are the same.
    pub fn feed_buffer_warm(
        &mut self,
        parser: &mut LineParser,
        finder: &Finder,
        buf: &[u8],
        warm: impl Fn(*const u8) + Copy,
    ) {
        let mut pipe = Pipe::new();
        let most = parser.needle_on_most_lines();
        let mut feed = |t: &mut Tally, line: &[u8]| {
            if let Some(h) = t.count(parser.parse_candidate(line), line) {
                t.queue(h, &mut pipe, warm);
            }
        };
        if most {
            // Searching for the needle would find it on the next line
            // nearly every time, and the parser looks for it anyway.
            let mut start = 0;
            let mut warmed = 0;
            for end in memchr::memchr_iter(b'\n', buf) {
                let want = (end + READ_AHEAD).min(buf.len());
                while warmed < want {
                    warm(buf[warmed..].as_ptr());
                    warmed += 64;
                }
                feed(self, &buf[start..end]);
                start = end + 1;
                self.lines += 1;
            }
            if start < buf.len() {
                feed(self, &buf[start..]);
                self.lines += 1;
            }
            self.drain(&mut pipe);
            return;
        }
        self.lines += memchr::memchr_iter(b'\n', buf).count() as u64;
        if buf.last().is_some_and(|&b| b != b'\n') {
            self.lines += 1;
        }
        let mut from = 0;
        while from < buf.len() {
            let Some(i) = finder.find(&buf[from..]) else {
                break;
            };
            let at = from + i;
            let start = memchr::memrchr(b'\n', &buf[from..at]).map_or(from, |j| from + j + 1);
            let end = memchr::memchr(b'\n', &buf[at..]).map_or(buf.len(), |j| at + j);
            feed(self, &buf[start..end]);
            from = end + 1;
        }
        self.drain(&mut pipe);
    }

    /// Fold another part's tally (another thread, another file) into this
    /// one (the one counting IPv6 per longer prefixes is folded first).
    pub fn merge(&mut self, other: Tally) {
        self.merge_warm(other, |_| {});
    }

    /// [`Self::merge`], warming each source's slot before it is looked up
    /// (`warm` as in [`Self::feed_buffer_warm`]).
    pub fn merge_warm(&mut self, mut other: Tally, warm: impl Fn(*const u8)) {
        self.fold_v6(other.v6_prefix);
        other.fold_v6(self.v6_prefix);
        self.lines += other.lines;
        self.matched += other.matched;
        self.outside += other.outside;
        self.other_type += other.other_type;
        self.minutes.merge(&other.minutes);
        for i in 0..self.malformed.len() {
            self.malformed[i] += other.malformed[i];
            if self.examples[i].is_none() {
                self.examples[i].clone_from(&other.examples[i]);
            }
        }
        // Into the bigger of the two: fewer lookups, no growing.
        let mut other = other.sources;
        if other.len() > self.sources.len() {
            std::mem::swap(&mut self.sources, &mut other);
        }
        self.sources.absorb(other, warm);
    }

    /// One source's tally (an IPv6 address: its network's, when folded).
    pub fn get(&self, a: &IpAddr) -> Option<&Source> {
        self.sources.get(&key(self.net_of(*a).network()))
    }

    /// Sources with more than `howmany` hits, most hits first (then by address).
    pub fn offenders(&self, howmany: u64) -> Vec<(IpAddr, Source)> {
        let mut v: Vec<(IpAddr, Source)> = self
            .sources
            .iter()
            .filter(|(_, s)| s.hits > howmany)
            .map(|(k, s)| (addr(*k), s.clone()))
            .collect();
        v.sort_by(|a, b| b.1.hits.cmp(&a.1.hits).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::logline::Parser;
    use crate::units::time::Zone;

    const T0: i64 = 1_795_262_400; // 2026-11-21T12:00:00Z
    const BLOCKED: [&[u8]; 2] = [b"IPTABLES-BLOCKED: ", b"IP6TABLES-BLOCKED: "];

    #[test]
    fn minutes_forget_what_was_taken_and_keep_the_rest() {
        let mut m = Minutes::default();
        for (t, n) in [(T0, 1), (T0 + 60, 2), (T0 + 61, 3), (T0 + 125, 4)] {
            m.add(t, n);
        }
        m.forget_before(T0 / 60 + 1);
        let want: std::collections::BTreeMap<i64, u64> =
            [(T0 / 60 + 1, 5), (T0 / 60 + 2, 4)].into_iter().collect();
        assert_eq!(m.counts(), want);
        m.forget_before(T0 / 60 + 3);
        assert!(m.counts().is_empty());
        // Counting goes on after.
        m.add(T0 + 200, 7);
        assert_eq!(m.counts().get(&(T0 / 60 + 3)), Some(&7));
    }

    /// rsyslog's RFC 3339 stamp, with microseconds.
    fn stamp(t: i64) -> String {
        crate::units::time::utc(t).replace('Z', ".000000+00:00")
    }

    fn line(t: i64, src: &str, proto: &str, dpt: u16) -> String {
        let v6 = src.contains(':');
        format!(
            "{} host kernel: [ 1.5] {}: IN=eth0 OUT= MAC=00 SRC={src} DST=x LEN=40 PROTO={proto} SPT=4000 DPT={dpt} SYN URGP=0 \n",
            stamp(t),
            if v6 { "IP6TABLES-BLOCKED" } else { "IPTABLES-BLOCKED" }
        )
    }

    /// The tally of `lines` for a window of `within` seconds ending at `now`.
    fn tally(lines: &str, now: i64, within: i64, filter: impl Into<Counting>) -> Tally {
        let mut p = LineParser::Kernel(Parser::new(
            &BLOCKED,
            Zone::fixed(0),
            now,
            (now - within, now),
        ));
        let f = Finder::new(p.needle()).into_owned();
        let mut t = Tally::new(filter);
        t.feed_buffer(&mut p, &f, lines.as_bytes());
        t
    }

    fn burst(n: usize, src: &str, start: i64) -> String {
        (0..n)
            .map(|i| line(start + i as i64, src, "TCP", 22))
            .collect()
    }

    #[test]
    fn auth_log_lines_are_all_counted_and_only_sshd_failures_hit() {
        // The parser sees every line here (no needle search first).
        let mut p = LineParser::Ssh(crate::core::ssh_log::SshParser::new(
            Zone::fixed(0),
            T0,
            (T0 - 600, T0),
        ));
        assert!(p.needle_on_most_lines());
        let f = Finder::new(p.needle()).into_owned();
        let log =
            "Nov 21 11:59:00 h sshd[1]: Failed password for root from 192.0.2.5 port 1 ssh2\n\
                   Nov 21 11:59:00 h CRON[2]: (root) CMD (sshd from 192.0.2.6 port 1)\n\
                   \n\
                   Nov 21 11:59:01 h sshd[1]: Accepted password for a from 192.0.2.7 port 2 ssh2\n\
                   Nov 21 11:59:02 h sshd[3]: Invalid user x from 192.0.2.5 port 3";
        let mut t = Tally::new(TypeFilter::All);
        t.feed_buffer(&mut p, &f, log.as_bytes());
        assert_eq!((t.lines, t.matched, t.sources.len()), (5, 2, 1));
        assert_eq!(t.get(&"192.0.2.5".parse().unwrap()).unwrap().hits, 2);
    }

    #[test]
    fn exactly_n_hits_is_not_an_offender_n_plus_one_is() {
        let log = burst(5, "192.0.2.5", T0 - 100) + &burst(6, "192.0.2.6", T0 - 100);
        let t = tally(&log, T0, 1800, TypeFilter::Tcp);
        let off = t.offenders(5);
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].0, "192.0.2.6".parse::<IpAddr>().unwrap());
        assert_eq!(off[0].1.hits, 6);
        assert_eq!((t.lines, t.matched), (11, 11));
    }

    #[test]
    fn a_hit_just_outside_the_window_does_not_count() {
        // Six hits, the first one second before the window opens; the window
        // includes its first second and "now".
        let src = "192.0.2.7";
        let mut log = line(T0 - 1801, src, "TCP", 22);
        for t in [T0 - 1800, T0 - 5, T0 - 4, T0 - 3, T0] {
            log += &line(t, src, "TCP", 22);
        }
        log += &line(T0 + 1, src, "TCP", 22); // after "now" (an audit with --now)
        let t = tally(&log, T0, 1800, TypeFilter::Tcp);
        assert!(t.offenders(5).is_empty());
        assert_eq!(t.offenders(4)[0].1.hits, 5);
        assert_eq!(t.outside, 2);
    }

    #[test]
    fn out_of_order_timestamps_count_and_set_first_and_last() {
        let src = "2001:db8::9";
        let log: String = [T0 - 10, T0 - 50, T0 - 20, T0 - 5, T0 - 40]
            .iter()
            .map(|&t| {
                line(
                    t,
                    "2001:0db8:0000:0000:0000:0000:0000:0009",
                    "TCP",
                    80 + (t % 2) as u16,
                )
            })
            .collect();
        let t = tally(&log, T0, 60, TypeFilter::Tcp);
        let (addr, s) = &t.offenders(4)[0];
        assert_eq!(*addr, src.parse::<IpAddr>().unwrap());
        assert_eq!((s.hits, s.first, s.last), (5, T0 - 50, T0 - 5));
        // Per minute for the baseline, out of order too: T0 is a whole minute.
        let m = T0 / 60;
        assert_eq!(
            t.minutes.counts().into_iter().collect::<Vec<_>>(),
            vec![(m - 1, 5)]
        );
        assert_eq!(s.ports.top(3), vec![(80, 4), (81, 1)]);
    }

    #[test]
    fn type_filter_and_other_lines() {
        let mut log = burst(3, "192.0.2.8", T0 - 10);
        log += &line(T0 - 5, "192.0.2.8", "UDP", 53);
        log += &line(T0 - 5, "192.0.2.8", "ICMP", 0).replace(" SPT=4000 DPT=0", " TYPE=8");
        log += "2026-11-21T11:59:00Z host sshd[2]: not ours\n";
        log += "2026-11-21T11:59:00Z host kernel: IPTABLES-BLOCKED: IN=e OUT= SRC=192.0.2.8";
        let t = tally(&log, T0, 60, TypeFilter::Tcp);
        assert_eq!((t.lines, t.matched, t.other_type), (7, 3, 2));
        assert_eq!(t.malformed_total(), 1);
        assert!(t.examples[Malformed::NoSrc.index()]
            .as_ref()
            .unwrap()
            .ends_with("SRC=192.0.2.8"));
        let t = tally(&log, T0, 60, TypeFilter::Icmp);
        assert_eq!(t.matched, 1);
        let t = tally(&log, T0, 60, TypeFilter::All);
        assert_eq!(t.offenders(4)[0].1.hits, 5);
    }

    #[test]
    fn splitting_the_input_anywhere_between_lines_gives_the_same_tally() {
        let log = burst(7, "192.0.2.9", T0 - 30)
            + &burst(3, "198.51.100.1", T0 - 20)
            + "junk line\n"
            + &burst(2, "192.0.2.9", T0 - 10);
        let whole = tally(&log, T0, 60, TypeFilter::Tcp);
        let ends: Vec<usize> = log.match_indices('\n').map(|(i, _)| i + 1).collect();
        for &cut in &ends {
            let mut a = tally(&log[..cut], T0, 60, TypeFilter::Tcp);
            a.merge(tally(&log[cut..], T0, 60, TypeFilter::Tcp));
            assert_eq!((a.lines, a.matched), (whole.lines, whole.matched));
            assert_eq!(a.offenders(0), whole.offenders(0));
            assert_eq!(a.minutes.counts(), whole.minutes.counts());
        }
        assert_eq!(whole.minutes.counts().values().sum::<u64>(), 12);
    }

    #[test]
    fn the_minutes_kept_are_bounded_to_the_newest() {
        let mut m = Minutes::default();
        for i in 0..(MAX_MINUTES as i64 + 100) {
            m.add(i * 60 + 5, 1);
        }
        let c = m.counts();
        assert_eq!(c.len(), MAX_MINUTES);
        assert_eq!(c.keys().next(), Some(&100));
        assert_eq!(c.keys().last(), Some(&(MAX_MINUTES as i64 + 99)));
    }

    /// A source as a report shows it: address, hits, first, last, ports.
    type Shown = (IpAddr, u64, i64, i64, Vec<(u16, u64)>);

    /// Every source with its hits, times and ports, in the offenders' order.
    fn everything(t: &Tally) -> Vec<Shown> {
        t.offenders(0)
            .into_iter()
            .map(|(a, s)| (a, s.hits, s.first, s.last, s.ports.top(8)))
            .collect()
    }

    /// A scan counts each IPv6 hit under its /64 as it reads: the same
    /// sources, hits, times and ports as folding the table afterwards,
    /// also for parts read apart (threads, rotated files) and merged,
    /// whichever of them counted per address.
    #[test]
    fn counting_per_prefix_while_reading_equals_folding_after() {
        let mut log = String::new();
        for i in 1..=40u32 {
            let v6 = format!("2001:db8:1:{:x}::{i:x}", i % 4);
            log += &burst(2 + (i % 3) as usize, &v6, T0 - 1000 + i64::from(i));
            log += &burst(1, &format!("192.0.2.{i}"), T0 - 900 + i64::from(i));
        }
        log += &burst(2, "::1", T0 - 10);
        let mut after = tally(&log, T0, 1800, TypeFilter::Tcp);
        assert_eq!(after.sources.len(), 81);
        after.fold_v6(64);
        let per64 = Counting {
            kind: TypeFilter::Tcp,
            v6_prefix: 64,
        };
        let mut during = tally(&log, T0, 1800, per64);
        assert_eq!((during.v6_prefix, during.sources.len()), (64, 45));
        assert_eq!(everything(&during), everything(&after));
        assert_eq!(during.matched, after.matched);
        // Folding again to the prefix it counted by changes nothing.
        during.fold_v6(64);
        assert_eq!(everything(&during), everything(&after));
        let lines: Vec<&str> = log.split_inclusive('\n').collect();
        for cut in [1, 17, lines.len() / 2, lines.len() - 1] {
            let (head, tail) = (lines[..cut].concat(), lines[cut..].concat());
            let mut a = tally(&head, T0, 1800, per64);
            a.merge(tally(&tail, T0, 1800, TypeFilter::Tcp));
            assert_eq!(everything(&a), everything(&after), "cut at {cut}");
            let mut b = tally(&head, T0, 1800, TypeFilter::Tcp);
            b.merge(tally(&tail, T0, 1800, per64));
            assert_eq!(everything(&b), everything(&after), "cut at {cut}");
        }
    }

    /// Hits wait in the pipeline between warming and counting: a buffer
    /// that ends with it empty, part full or full loses none of them.
    #[test]
    fn no_hit_is_lost_in_the_pipeline_whatever_its_fill() {
        for n in 0..=3 * AHEAD + 1 {
            let log: String = (0..n)
                .map(|i| line(T0 - 100, &format!("198.51.100.{i}"), "TCP", 22))
                .collect();
            let mut p =
                LineParser::Kernel(Parser::new(&BLOCKED, Zone::fixed(0), T0, (T0 - 600, T0)));
            let f = Finder::new(p.needle()).into_owned();
            let mut t = Tally::new(TypeFilter::Tcp);
            t.feed_buffer(&mut p, &f, log.as_bytes());
            t.feed_buffer(&mut p, &f, log.as_bytes());
            assert_eq!((t.matched, t.sources.len()), (2 * n as u64, n), "{n}");
            assert!(t.sources.iter().all(|(_, s)| s.hits == 2), "{n}");
        }
    }

    #[test]
    fn ipv6_sources_fold_into_their_count_prefix() {
        // One /64 rotating through 40 addresses, two hits each; another
        // /64 with one address; an IPv4 source untouched.
        let mut log = String::new();
        for i in 1..=40 {
            log += &burst(2, &format!("2001:db8:1:2::{i:x}"), T0 - 100);
        }
        log += &burst(3, "2001:db8:1:3::1", T0 - 50);
        log += &burst(7, "192.0.2.9", T0 - 50);
        let mut t = tally(&log, T0, 1800, TypeFilter::Tcp);
        assert!(t.offenders(5).iter().all(|(a, _)| a.is_ipv4()));
        t.fold_v6(64);
        let off = t.offenders(5);
        assert_eq!(off.len(), 2);
        assert_eq!(off[0].0, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(off[0].1.hits, 80);
        assert_eq!(t.net_of(off[0].0).to_string(), "2001:db8:1:2::/64");
        assert_eq!(t.net_of(off[1].0).to_string(), "192.0.2.9/32");
        // Any address of the /64 finds it.
        assert_eq!(
            t.get(&"2001:db8:1:2::99".parse().unwrap()).unwrap().hits,
            80
        );
        assert_eq!(t.get(&"2001:db8:1:3::7".parse().unwrap()).unwrap().hits, 3);
        // 128 (or a second, wider-or-equal fold) changes nothing.
        let mut u = tally(&log, T0, 1800, TypeFilter::Tcp);
        u.fold_v6(128);
        assert_eq!(u.sources.len(), 42);
        t.fold_v6(64);
        assert_eq!(t.sources.len(), 3);
    }

    #[test]
    fn top_ports_are_exact_for_few_ports_and_flagged_estimates_beyond() {
        let mut p = TopPorts::default();
        for (port, n) in [(22, 5), (80, 3), (443, 3)] {
            p.add(port, n);
        }
        assert_eq!(p.top(2), vec![(22, 5), (80, 3)]);
        assert!(!p.estimated);
        // A heavy port among a hundred one-off probes keeps its exact count;
        // the one-offs are never reported above what they certainly have.
        for port in 1000..1100 {
            p.add(port, 1);
            p.add(22, 1);
        }
        assert!(p.estimated);
        let top = p.top(3);
        assert_eq!(top[0], (22, 105));
        assert!(top[1..].iter().all(|&(_, n)| n <= 1), "{top:?}");
    }
}
