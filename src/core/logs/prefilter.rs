//! A regex source's cheap first look at a line (pure): the literals every
//! match of a rule's `line` pattern holds (`" 4` in `"[^"]*" 4\d\d`), looked
//! for with memchr's memmem before the regex runs. A line without one of
//! them cannot match, so the answer is the regex's: only the work differs.
//! On an access log a `[[source]]` of 4xx requests ran its regex over three
//! quarters of each line of every line (a one-pass DFA with captures, 63 %
//! of the scan); most lines lack `" 4`.
//!
//! Which literal is the rare one depends on the log, not the pattern (`] "`
//! is in every access log line, `" 4` in a few): the first SAMPLE lines a
//! rule reads are checked for all of them, and the one that most lines
//! lacked is kept, or none when it let nearly every line through.

use memchr::memmem::Finder;
use regex_syntax::hir::{Hir, HirKind};

/// Lines a rule reads before it settles on one literal.
const SAMPLE: u32 = 256;
/// Literals looked for while sampling, the longest first.
const MOST: usize = 4;

/// The byte strings every match of `pattern` holds (parsed as
/// `regex::bytes` reads it), longest first, at most MOST, none inside
/// another (it could not be missing more often); none when the pattern
/// does not parse or has no literal that every match holds (a top-level
/// alternation; the letters of a case-insensitive part are classes, its
/// digits and punctuation still literals).
pub fn required(pattern: &str) -> Vec<Vec<u8>> {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    collect(&hir, &mut out);
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|l| {
        !all.iter()
            .any(|o| o.len() > l.len() && memchr::memmem::find(o, l).is_some())
    });
    out.sort_by_key(|l| std::cmp::Reverse(l.len()));
    out.truncate(MOST);
    out
}

/// The literals a match of `h` must contain: its own if it is one, those
/// of each part of a concatenation, of a group, of a repetition that
/// happens at least once. An alternation, a class or an optional part
/// holds none for certain.
fn collect(h: &Hir, out: &mut Vec<Vec<u8>>) {
    match h.kind() {
        HirKind::Literal(l) => out.push(l.0.to_vec()),
        HirKind::Capture(c) => collect(&c.sub, out),
        HirKind::Concat(parts) => parts.iter().for_each(|p| collect(p, out)),
        HirKind::Repetition(r) if r.min >= 1 => collect(&r.sub, out),
        _ => {}
    }
}

/// One rule's first look: every literal while sampling, then the one that
/// most sampled lines lacked.
#[derive(Clone, Debug)]
pub struct Prefilter {
    finders: Vec<Finder<'static>>,
    misses: Vec<u32>,
    seen: u32,
}

impl Prefilter {
    pub fn new(pattern: &str) -> Prefilter {
        let finders: Vec<Finder<'static>> = required(pattern)
            .iter()
            .map(|l| Finder::new(l).into_owned())
            .collect();
        Prefilter {
            misses: vec![0; finders.len()],
            finders,
            seen: 0,
        }
    }

    /// Whether the rule's regex may match `text`: false only when a
    /// literal every match holds is not in it.
    #[inline]
    pub fn admits(&mut self, text: &[u8]) -> bool {
        if self.seen >= SAMPLE {
            return self.finders.first().is_none_or(|f| f.find(text).is_some());
        }
        self.seen += 1;
        let mut admits = true;
        for (f, m) in self.finders.iter().zip(&mut self.misses) {
            if f.find(text).is_none() {
                *m += 1;
                admits = false;
            }
        }
        if self.seen == SAMPLE {
            self.settle();
        }
        admits
    }

    /// Keep the literal that most sampled lines lacked, if it kept out at
    /// least one line in eight (a look that lets everything through is
    /// only a cost).
    fn settle(&mut self) {
        let best = (0..self.finders.len()).max_by_key(|&i| (self.misses[i], usize::MAX - i));
        match best {
            Some(i) if self.misses[i] * 8 >= SAMPLE => {
                let f = self.finders.swap_remove(i);
                self.finders = vec![f];
            }
            _ => self.finders.clear(),
        }
    }

    /// The literal it settled on (tests, `test-source`'s curious reader).
    pub fn literal(&self) -> Option<&[u8]> {
        (self.seen >= SAMPLE)
            .then(|| self.finders.first().map(Finder::needle))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literals_every_match_holds_and_none_that_may_be_missing() {
        let r = |p: &str| -> Vec<String> {
            required(p)
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect()
        };
        assert_eq!(
            r(r#"^(?P<addr>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 4\d\d "#),
            ["\" 4", "] \"", " ["]
        );
        assert_eq!(
            r(r"warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL \w+ authentication failed"),
            [" authentication failed", "warning: ", "]: SASL ", "["]
        );
        // Inside a group, a repetition of at least one.
        assert_eq!(r(r"(?:user=(?P<addr>\S+))+ end"), ["user=", " end"]);
        // Nothing certain: alternatives, an optional part, any case.
        assert!(r(r"(?P<addr>\S+) (?:failed|refused)")
            .iter()
            .all(|l| l == " "));
        assert_eq!(r(r"(?:denied )?(?P<addr>\S+)"), Vec::<String>::new());
        assert_eq!(
            r(r"(?i)denied (?P<addr>\S+)"),
            [" "],
            "letters of any case are no literal"
        );
        assert_eq!(r(r"(?P<addr>\S+"), Vec::<String>::new(), "does not parse");
    }

    proptest::proptest! {
        /// Whatever the pattern and the line: a line the regex matches
        /// holds every literal `required` names.
        #[test]
        fn a_line_that_matches_holds_every_required_literal(
            pieces in proptest::collection::vec(0usize..12, 1..7),
            bits in proptest::collection::vec(0usize..13, 0..14),
        ) {
            const P: [&str; 12] = ["abc", "x", "(?:ab|cd)", r"\d+", "[a-c]*", "(?:zz)?",
                "(q+)", "(?:yy)+", " ", "(?i:k)", "(?:a(?:b|c)d)", "^"];
            const L: [&str; 13] = ["abc", "x", "ab", "cd", "1", "22", "a", "zz", "q", "yy",
                " ", "K", "acd"];
            let pattern: String = pieces.iter().map(|&i| P[i]).collect();
            let line: String = bits.iter().map(|&i| L[i]).collect();
            let re = regex::bytes::Regex::new(&pattern).unwrap();
            if re.is_match(line.as_bytes()) {
                for l in required(&pattern) {
                    proptest::prop_assert!(
                        memchr::memmem::find(line.as_bytes(), &l).is_some(),
                        "{pattern} matches {line:?}, which lacks {:?}",
                        String::from_utf8_lossy(&l)
                    );
                }
                let mut p = Prefilter::new(&pattern);
                proptest::prop_assert!(p.admits(line.as_bytes()));
            }
        }
    }

    #[test]
    fn it_settles_on_the_literal_most_lines_lack() {
        let mut p = Prefilter::new(r#"^(?P<addr>\S+) \S+ \S+ \[[^\]]+\] "[^"]*" 4\d\d "#);
        let line = |st: u32| {
            format!(
                "192.0.2.{} - - [21/Nov/2026:11:00:00 +0000] \"GET / HTTP/1.1\" {st} 5\n",
                st % 250
            )
        };
        let mut let_in = 0;
        for i in 0..1000u32 {
            let st = if i % 4 == 0 { 404 } else { 200 };
            let l = line(st);
            let admitted = p.admits(l.as_bytes());
            // Never a line the regex would match turned away.
            assert!(admitted || st != 404, "{l}");
            let_in += u32::from(admitted);
        }
        assert_eq!(p.literal(), Some(&b"\" 4"[..]));
        assert_eq!(let_in, 250);
        // Where every line holds every literal, it looks no more.
        let mut q = Prefilter::new(r"sshd\[\d+\]: Failed (?P<addr>\S+)");
        for _ in 0..SAMPLE {
            assert!(q.admits(b"host sshd[1]: Failed 192.0.2.1"));
        }
        assert_eq!(q.literal(), None);
        assert!(q.admits(b"no literal here"), "settled on none: lets all in");
    }
}
