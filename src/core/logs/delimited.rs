//! A `line` or `time` pattern written as delimited fields, matched by one
//! walk along the line (pure). Log patterns are mostly this shape:
//! `^(?P<addr>[0-9a-fA-F:.]+) \S+ \S+ \[(?P<time>[^\]]+)\] "[^"]*" \d{3} `:
//! literals, and runs of one class each ended by a character the run
//! cannot hold. Such a pattern has at most one way to match a line, so
//! the walk that takes each run as far as it goes finds the regex's own
//! match and groups, at a fraction of the cost of the regex's one-pass DFA
//! with captures (two thirds of a scan of an access log whose every line
//! a `[[source]]` matched).
//!
//! Only patterns anchored at the start (`^`) are taken: an unanchored one
//! would be tried at many places of a line, and the regex's linear time
//! holds whatever the line. Anything else (alternations, optional groups,
//! a run followed by what it could also hold like `.*` before a literal,
//! `\b`, multi-line `^`) is left to the regex: [`Delimited::new`] says None.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// A class of one character: a byte, or a UTF-8 encoded char when the
/// pattern is in Unicode mode (as regex::bytes reads it: an invalid UTF-8
/// byte is in no Unicode class).
#[derive(Clone, Debug)]
enum Set {
    Bytes([u64; 4]),
    Chars {
        ascii: [u64; 2],
        /// Ranges of chars from U+0080, sorted.
        wide: Vec<(u32, u32)>,
    },
}

fn has(bits: &[u64], b: u8) -> bool {
    bits[usize::from(b >> 6)] >> (b & 63) & 1 == 1
}

fn put(bits: &mut [u64], b: u8) {
    bits[usize::from(b >> 6)] |= 1 << (b & 63);
}

/// The length of the UTF-8 char a byte starts, None for a byte that
/// starts none (a continuation byte, C0, C1, F5 and above).
fn utf8_len(lead: u8) -> Option<usize> {
    match lead {
        0..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

impl Set {
    fn of(c: &Class) -> Set {
        match c {
            Class::Bytes(c) => {
                let mut bits = [0u64; 4];
                for r in c.ranges() {
                    (r.start()..=r.end()).for_each(|b| put(&mut bits, b));
                }
                Set::Bytes(bits)
            }
            Class::Unicode(c) => {
                let mut ascii = [0u64; 2];
                let mut wide = Vec::new();
                for r in c.ranges() {
                    let (a, b) = (u32::from(r.start()), u32::from(r.end()));
                    for x in a..=b.min(0x7f) {
                        put(&mut ascii, x as u8);
                    }
                    if b >= 0x80 {
                        wide.push((a.max(0x80), b));
                    }
                }
                if wide.is_empty() {
                    // Only ASCII: no byte from 0x80 starts one.
                    Set::Bytes([ascii[0], ascii[1], 0, 0])
                } else {
                    Set::Chars { ascii, wide }
                }
            }
        }
    }

    /// One char, as `Set::of` would make its class.
    fn char(c: char) -> Set {
        let mut cls = regex_syntax::hir::ClassUnicode::empty();
        cls.push(regex_syntax::hir::ClassUnicodeRange::new(c, c));
        Set::of(&Class::Unicode(cls))
    }

    /// See `Item::Run`'s `stop`.
    fn stop(&self) -> Option<u8> {
        let ascii = match self {
            Set::Bytes(b) => [b[0], b[1]],
            Set::Chars { ascii, .. } => *ascii,
        };
        let missing = 128 - ascii[0].count_ones() - ascii[1].count_ones();
        (missing == 1).then(|| (0..128u8).find(|&b| !has(&ascii, b)).expect("one missing"))
    }

    /// The walk's look-up: see `Item::Run`.
    fn table(&self) -> Box<[u8; 256]> {
        let mut t = Box::new([0u8; 256]);
        let (bits, leads) = match self {
            Set::Bytes(b) => (*b, [0; 4]),
            Set::Chars { ascii, wide } => ([ascii[0], ascii[1], 0, 0], leads(wide)),
        };
        for b in 0..=255u8 {
            t[usize::from(b)] = if has(&bits, b) {
                1
            } else if has(&leads, b) {
                2
            } else {
                0
            };
        }
        t
    }

    /// The length of the member at the start of `t`, if one is there.
    #[inline(always)]
    fn step(&self, t: &[u8]) -> Option<usize> {
        let &b = t.first()?;
        match self {
            Set::Bytes(bits) => has(bits, b).then_some(1),
            Set::Chars { ascii, wide } => {
                if b < 0x80 {
                    return has(ascii, b).then_some(1);
                }
                let n = utf8_len(b)?;
                let c = std::str::from_utf8(t.get(..n)?).ok()?.chars().next()?;
                let c = u32::from(c);
                let i = wide.partition_point(|&(_, hi)| hi < c);
                wide.get(i).is_some_and(|&(lo, _)| lo <= c).then_some(n)
            }
        }
    }
}

/// The lead bytes of the UTF-8 encodings of chars in `wide`.
fn leads(wide: &[(u32, u32)]) -> [u64; 4] {
    let mut f = [0u64; 4];
    for &(a, b) in wide {
        // The lead byte grows with the char within each length.
        for (lo, hi, shift, mark) in [
            (0x80, 0x7ff, 6, 0xc0),
            (0x800, 0xffff, 12, 0xe0),
            (0x1_0000, 0x10_ffff, 18, 0xf0),
        ] {
            let (x, y) = (a.max(lo), b.min(hi));
            if x <= y {
                ((mark | x >> shift)..=(mark | y >> shift)).for_each(|l| put(&mut f, l as u8));
            }
        }
    }
    f
}

/// What the items after a run may start with: chars (ASCII and wide), and
/// bytes taken as they are (a `(?-u)` class's, a literal's invalid first).
#[derive(Default)]
struct Follow {
    ascii: [u64; 2],
    wide: Vec<(u32, u32)>,
    raw: [u64; 4],
}

impl Follow {
    fn add_set(&mut self, s: &Set) {
        match s {
            Set::Bytes(b) => {
                (0..2).for_each(|k| self.ascii[k] |= b[k]);
                (2..4).for_each(|k| self.raw[k] |= b[k]);
            }
            Set::Chars { ascii, wide } => {
                (0..2).for_each(|k| self.ascii[k] |= ascii[k]);
                self.wide.extend_from_slice(wide);
            }
        }
    }

    fn add_lit(&mut self, l: &[u8]) {
        let n = match utf8_len(l[0]) {
            Some(1) => return put(&mut self.ascii, l[0]),
            Some(n) => n,
            // No char starts with it: matched as the byte it is.
            None => return put(&mut self.raw, l[0]),
        };
        match l.get(..n).and_then(|c| std::str::from_utf8(c).ok()) {
            Some(c) => {
                let c = u32::from(c.chars().next().expect("n > 0"));
                self.wide.push((c, c));
            }
            None => put(&mut self.raw, l[0]),
        }
    }

    /// No char or byte `s` can take at a place is one these can start
    /// with there (a valid UTF-8 char decodes one way only).
    fn disjoint(&self, s: &Set) -> bool {
        let (ascii, high, wide): ([u64; 2], [u64; 4], &[(u32, u32)]) = match s {
            Set::Bytes(b) => ([b[0], b[1]], [0, 0, b[2], b[3]], &[]),
            Set::Chars { ascii, wide } => (*ascii, [0; 4], wide),
        };
        let their_leads = leads(&self.wide);
        let our_leads = leads(wide);
        (0..2).all(|k| ascii[k] & self.ascii[k] == 0)
            && (0..4).all(|k| high[k] & (their_leads[k] | self.raw[k]) == 0)
            && (0..4).all(|k| our_leads[k] & self.raw[k] == 0)
            && wide
                .iter()
                .all(|&(a, b)| self.wide.iter().all(|&(c, d)| b < c || d < a))
    }
}

#[derive(Clone, Debug)]
enum Item {
    Lit(Vec<u8>),
    /// From min to max members of a set (max u32::MAX: no bound).
    Run {
        set: Set,
        /// Per byte: 1 a member of one byte, 2 maybe the start of a wide
        /// member (decoded then), 0 none.
        table: Box<[u8; 256]>,
        /// The one ASCII character the set lacks, when it holds every
        /// other (`[^"]`, `[^\]]`, `.`): an ASCII run of it ends there,
        /// found with memchr.
        stop: Option<u8>,
        min: u32,
        max: u32,
        greedy: bool,
    },
    Open(usize),
    Close(usize),
    End,
}

impl Item {
    /// A run of `set`, with its look-ups.
    fn run(set: Set, min: u32, max: Option<u32>, greedy: bool) -> Item {
        Item::Run {
            table: set.table(),
            stop: set.stop(),
            set,
            min,
            max: max.unwrap_or(u32::MAX),
            greedy,
        }
    }
}

/// An anchored pattern of delimited fields (see the module's doc).
#[derive(Clone, Debug)]
pub struct Delimited {
    items: Vec<Item>,
    /// Capture slots, as regex's: two per group, group 0 the match.
    slots: usize,
}

impl Delimited {
    /// The matcher of `pattern` (read as `regex::bytes` reads it), or None
    /// when it is not one this walk matches exactly as the regex does.
    pub fn new(pattern: &str) -> Option<Delimited> {
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(pattern)
            .ok()?;
        let mut items = Vec::new();
        let mut parts = match hir.kind() {
            HirKind::Concat(p) => p.iter().collect::<Vec<_>>(),
            _ => vec![&hir],
        }
        .into_iter();
        if !matches!(parts.next()?.kind(), HirKind::Look(Look::Start)) {
            return None;
        }
        for p in parts {
            flatten(p, &mut items)?;
        }
        // `$` only last (groups may close after it).
        if let Some(i) = items.iter().position(|i| matches!(i, Item::End)) {
            if !items[i + 1..].iter().all(|i| matches!(i, Item::Close(_))) {
                return None;
            }
        }
        for (i, it) in items.iter().enumerate() {
            let Item::Run {
                set,
                min,
                max,
                greedy,
                ..
            } = it
            else {
                continue;
            };
            if min == max {
                continue;
            }
            // What may come next: the items up to the first that cannot
            // be empty, or the end of the pattern.
            let mut next = Follow::default();
            let mut open_end = true;
            for j in &items[i + 1..] {
                match j {
                    Item::Open(_) | Item::Close(_) => continue,
                    Item::Lit(l) => next.add_lit(l),
                    Item::Run { set, min, .. } => {
                        next.add_set(set);
                        if *min == 0 {
                            continue;
                        }
                    }
                    Item::End => {}
                }
                open_end = false;
                break;
            }
            if !next.disjoint(set) {
                return None;
            }
            // At the end of the pattern a greedy run takes all it can, as
            // the regex prefers; a lazy one would take the least.
            if open_end && !greedy {
                return None;
            }
        }
        Some(Delimited {
            items,
            slots: 2 * hir_groups(&hir),
        })
    }

    /// The slots the captures take (regex's `captures_len() * 2`).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Match `t` from its start: true with each group's span in `slots`
    /// (None for every slot otherwise), as regex's captures_read.
    pub fn captures(&self, t: &[u8], slots: &mut [Option<usize>]) -> bool {
        slots.iter_mut().for_each(|s| *s = None);
        let mut i = 0;
        for it in &self.items {
            match it {
                Item::Lit(l) => {
                    // Byte by byte: most are a few bytes, short of memcmp's call.
                    let end = i + l.len();
                    if end > t.len() || t[i..end].iter().zip(l).any(|(a, b)| a != b) {
                        return fail(slots);
                    }
                    i = end;
                }
                Item::Run {
                    set,
                    table,
                    stop,
                    min,
                    max,
                    ..
                } => {
                    let tb: &[u8; 256] = table;
                    if *max == u32::MAX && *min <= 1 {
                        // The common run (`\S+`, `[^"]*`): no count kept.
                        let start = i;
                        if let Some(stop) = stop {
                            // All ASCII up to its stop: all members.
                            let rest = &t[i..];
                            let end = memchr::memchr(*stop, rest).unwrap_or(rest.len());
                            if rest[..end].is_ascii() {
                                i += end;
                            }
                        }
                        loop {
                            while i < t.len() && tb[usize::from(t[i])] == 1 {
                                i += 1;
                            }
                            if i < t.len() && tb[usize::from(t[i])] == 2 {
                                if let Some(k) = set.step(&t[i..]) {
                                    i += k;
                                    continue;
                                }
                            }
                            break;
                        }
                        if *min == 1 && i == start {
                            return fail(slots);
                        }
                        continue;
                    }
                    let mut n = 0;
                    while n < *max {
                        match t.get(i).map(|&b| tb[usize::from(b)]) {
                            Some(1) => i += 1,
                            Some(2) => match set.step(&t[i..]) {
                                Some(k) => i += k,
                                None => break,
                            },
                            _ => break,
                        }
                        n += 1;
                    }
                    if n < *min {
                        return fail(slots);
                    }
                }
                Item::Open(g) => slots[2 * g] = Some(i),
                Item::Close(g) => slots[2 * g + 1] = Some(i),
                Item::End => {
                    if i != t.len() {
                        return fail(slots);
                    }
                }
            }
        }
        slots[0] = Some(0);
        slots[1] = Some(i);
        true
    }
}

/// No match: every slot None, as regex leaves its locations.
fn fail(slots: &mut [Option<usize>]) -> bool {
    slots.iter_mut().for_each(|s| *s = None);
    false
}

/// Items in pattern order: literals (adjacent ones joined), runs, group
/// marks, `$`; None for any other part.
fn flatten(h: &Hir, out: &mut Vec<Item>) -> Option<()> {
    match h.kind() {
        HirKind::Empty => {}
        HirKind::Literal(l) => match out.last_mut() {
            Some(Item::Lit(prev)) => prev.extend_from_slice(&l.0),
            _ => out.push(Item::Lit(l.0.to_vec())),
        },
        HirKind::Class(c) => out.push(Item::run(Set::of(c), 1, Some(1), true)),
        HirKind::Look(Look::End) => out.push(Item::End),
        HirKind::Repetition(r) => {
            let set = match r.sub.kind() {
                HirKind::Class(c) => Set::of(c),
                HirKind::Literal(l) => {
                    let s = std::str::from_utf8(&l.0).ok()?;
                    let mut cs = s.chars();
                    let (Some(c), None) = (cs.next(), cs.next()) else {
                        return None;
                    };
                    Set::char(c)
                }
                _ => return None,
            };
            out.push(Item::run(set, r.min, r.max, r.greedy));
        }
        HirKind::Capture(c) => {
            out.push(Item::Open(c.index as usize));
            flatten(&c.sub, out)?;
            out.push(Item::Close(c.index as usize));
        }
        HirKind::Concat(parts) => {
            for p in parts {
                flatten(p, out)?;
            }
        }
        _ => return None,
    }
    Some(())
}

/// The groups of `hir`, group 0 (the match) included.
fn hir_groups(hir: &Hir) -> usize {
    fn max(h: &Hir) -> usize {
        match h.kind() {
            HirKind::Capture(c) => (c.index as usize).max(max(&c.sub)),
            HirKind::Concat(p) | HirKind::Alternation(p) => p.iter().map(max).max().unwrap_or(0),
            HirKind::Repetition(r) => max(&r.sub),
            _ => 0,
        }
    }
    max(hir) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex_slots(pattern: &str, line: &[u8]) -> Option<Vec<Option<usize>>> {
        let re = regex::bytes::Regex::new(pattern).unwrap();
        let mut locs = re.capture_locations();
        re.captures_read(&mut locs, line)?;
        Some(
            (0..locs.len())
                .flat_map(|g| match locs.get(g) {
                    Some((a, b)) => [Some(a), Some(b)],
                    None => [None, None],
                })
                .collect(),
        )
    }

    fn walk_slots(d: &Delimited, line: &[u8]) -> Option<Vec<Option<usize>>> {
        let mut slots = vec![Some(7); d.slots()];
        let m = d.captures(line, &mut slots);
        if !m {
            assert!(slots.iter().all(Option::is_none));
        }
        m.then_some(slots)
    }

    #[test]
    fn log_shapes_are_taken_and_others_left_to_the_regex() {
        for p in [
            r#"^(?P<addr>[0-9a-fA-F:.]+) \S+ \S+ \[[^\]]+\] "[^"]*" \d\d\d "#,
            r"^\S+ \S+ \S+ \[(?P<time>[^\]]+)\]",
            r"^(?P<addr>\S+) - (?i:user) \d{1,3}\s*$",
            r"^x\S*",
            r"^(?-u:\S)+ (?P<addr>[^ ]+?) ",
            // A literal whose first byte starts no char, after a run.
            r"^(?P<addr>[0-9.]+)(?-u:\xff)",
            r"^a+(?-u:\x80)",
        ] {
            assert!(Delimited::new(p).is_some(), "{p}");
        }
        for p in [
            // Unanchored, multi-line, alternations, optional groups.
            r"(?P<addr>\S+) x",
            r"(?m)^(?P<addr>\S+) x",
            r"^(?:ab|c)(?P<addr>\S+)",
            r"^(?P<addr>\S+)(?::\d+)?:",
            // A run followed by what it could hold.
            r"^.* from (?P<addr>\S+)",
            r"^\w+\d",
            r"^[^ ]* ?\S",
            r"^é*(?-u:\xc3)",
            // A lazy run at the end, a word boundary.
            r"^(?P<addr>\S+?)",
            r"^\bx",
        ] {
            assert!(Delimited::new(p).is_none(), "{p}");
        }
    }

    #[test]
    fn the_walk_gives_the_regexs_groups_on_log_lines() {
        let p =
            r#"^(?P<addr>[0-9a-fA-F:.]+) \S+ \S+ \[(?P<time>[^\]]+)\] "[^"]*" (?P<status>\d\d\d) "#;
        let d = Delimited::new(p).unwrap();
        for line in [
            &b"203.0.113.9 - - [21/Nov/2026:11:00:00 +0000] \"GET / HTTP/1.1\" 404 12 \"-\""[..],
            b"2001:db8::1 - bob [21/Nov/2026:11:00:00 +0000] \"\" 200 ",
            b"203.0.113.9 - - [21/Nov/2026:11:00:00 +0000] \"GET /\xff HTTP/1.1\" 404 12",
            b"203.0.113.9 - \xc3\xa9 [x] \"\" 4\xd9\xa3\xd9\xa3 ",
            b"203.0.113.9 -  - [x] \"\" 404 ",
            b"host - - [x] \"\" 404 ",
            b"",
        ] {
            assert_eq!(walk_slots(&d, line), regex_slots(p, line), "{line:?}");
        }
    }

    const PIECES: &[&str] = &[
        " ",
        r"\[",
        r"\]",
        "\"",
        "from ",
        ":",
        "é",
        "x",
        r"\S+",
        r"\S*",
        r"[^\]]+",
        r#"[^"]*"#,
        r"[0-9a-fA-F:.]+",
        r"\d{1,3}",
        r"\d\d",
        r"\w+?",
        ".*",
        r"[a-z]*",
        r"(?-u:\S)+",
        r"(?-u:[\x80-\xff])+",
        "é+",
        "[^ ]+?",
        r"\s?",
        "a{2}",
        "(?i)ab",
        "x*?",
        "$",
        r"\s+",
        r"[^:]{2,4}",
        "(?-u:.)",
        ".",
        r"(?-u:\xff)",
        r"(?-u:\x80)+",
        r"(?-u:\xa9x)",
    ];
    const BITS: &[&[u8]] = &[
        b" ",
        b"[",
        b"]",
        b"\"",
        b"from ",
        b":",
        b"x",
        b"ab",
        b"AB",
        b"1",
        b"42",
        b"\xc3\xa9",
        b"\xc2\xa0",
        b"\xff",
        b"\xc3",
        b"\n",
        b"12.3.4.5",
        b"::1",
        b"aa",
        b"\xed\xa0\x80",
        b"\xf0\x9f\x98\x80",
        b"\t",
        b"\x80",
        b"\xa9x",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Whenever the walk takes a pattern, it matches every line as
        /// the regex does, group by group.
        #[test]
        fn the_walk_is_the_regex(
            pieces in proptest::collection::vec((0usize..34, 0usize..4), 1..8),
            lines in proptest::collection::vec(proptest::collection::vec(0usize..24, 0..12), 1..12),
        ) {
            let mut p = String::from("^");
            for (i, (k, g)) in pieces.iter().enumerate() {
                match g {
                    0 => p += &format!("(?P<g{i}>{})", PIECES[*k]),
                    1 => p += &format!("({})", PIECES[*k]),
                    _ => p += PIECES[*k],
                }
            }
            let Some(d) = Delimited::new(&p) else { return Ok(()) };
            for bits in &lines {
                let line: Vec<u8> = bits.iter().flat_map(|b| BITS[*b].iter().copied()).collect();
                proptest::prop_assert_eq!(walk_slots(&d, &line), regex_slots(&p, &line), "{} on {:?}", p, String::from_utf8_lossy(&line));
            }
        }
    }
}
