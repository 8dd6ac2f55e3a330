//! `fwctl test-source`, pure: what a source makes of a log (lines read,
//! hits per kind, the addresses with their counts, the lines of the
//! source's program that no pattern matched, grouped by shape) or of one
//! line (which rule, which group took which part), and the anchoring check.
//!
//! The anchoring check plants an address where a client could write: at
//! every space of the matched line's message (its start and end aside, which
//! the program writes), it inserts the text the pattern matched with a
//! documentation address in place of the real one, and also the bare
//! address; then it replaces each word that does not hold the real address
//! with the same. If the pattern then reads the planted address, a client
//! that writes that text there moves it: the pattern is not anchored.
//! Every size is bounded: lines, addresses and shapes kept, examples.

use super::regex_source::{Found, RegexSource};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// Distinct addresses kept (the rest are counted, not listed).
pub const MAX_ADDRS: usize = 100_000;
/// Distinct shapes of unmatched lines kept.
pub const MAX_SHAPES: usize = 1000;
/// Bytes of an example line shown.
pub const EXAMPLE: usize = 300;
/// Words of a line the anchoring check plants at.
const PLANT_WORDS: usize = 64;

fn cut(line: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&line[..line.len().min(EXAMPLE)]).into_owned();
    if line.len() > EXAMPLE {
        s.push_str("...");
    }
    s
}

/// What one planted address did: where it was put, and what was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// The line with the planted text.
    pub line: String,
    pub read: String,
    pub instead_of: String,
}

/// Plant addresses in a line the source matches: every planting after
/// which the source reads the planted address instead of the real one.
/// Empty when the line does not match or the pattern held.
pub fn plant(src: &mut RegexSource, line: &[u8]) -> Vec<Moved> {
    plant_in(src, line, false)
}

/// [`plant`], before the address only when `before_only` (for a source
/// whose text after the address is the program's alone, free text or not:
/// planted there, a copy of the shape would take that text as its own).
pub fn plant_in(src: &mut RegexSource, line: &[u8], before_only: bool) -> Vec<Moved> {
    let (rule, at, real) = match src.find(line) {
        Found::Matched {
            rule,
            at,
            addr: Some(a),
            ..
        } => (rule, at, a),
        _ => return Vec::new(),
    };
    let groups = src.groups(rule, at);
    let Some(&(_, as_, ae)) = groups.iter().find(|g| g.0 == "addr") else {
        return Vec::new();
    };
    let (ws, we) = (groups[0].1, groups[0].2);
    let planted: &[u8] = match (real.is_ipv6(), real.to_string().as_str()) {
        (false, "192.0.2.99") => b"192.0.2.98",
        (false, _) => b"192.0.2.99",
        (true, "2001:db8::99") => b"2001:db8::98",
        (true, _) => b"2001:db8::99",
    };
    let want: IpAddr = std::str::from_utf8(planted).unwrap().parse().unwrap();
    // The text the pattern matched, with the planted address in it.
    let mut shape = line[ws..as_].to_vec();
    shape.extend_from_slice(planted);
    shape.extend_from_slice(&line[ae..we]);
    // Where the client may write: between the message's words.
    let msg = &line[at..];
    let spaces: Vec<usize> = memchr::memchr_iter(b' ', msg)
        .map(|i| at + i)
        .filter(|&i| i + 1 < line.len() && (!before_only || i < as_))
        .take(PLANT_WORDS)
        .collect();
    let mut tries: Vec<Vec<u8>> = Vec::new();
    for &sp in &spaces {
        for text in [&shape[..], planted] {
            let mut l = line[..=sp].to_vec();
            l.extend_from_slice(text);
            l.push(b' ');
            l.extend_from_slice(&line[sp + 1..]);
            tries.push(l);
        }
    }
    // Each word that is not the address's, replaced (the last one too is
    // the program's).
    for (k, &sp) in spaces.iter().enumerate() {
        let Some(&end) = spaces.get(k + 1) else { break };
        if sp + 1 >= end || (sp < ae && as_ < end) {
            continue;
        }
        let mut l = line[..=sp].to_vec();
        l.extend_from_slice(&shape);
        l.extend_from_slice(&line[end..]);
        tries.push(l);
    }
    let mut out = Vec::new();
    for l in tries {
        if let Found::Matched { addr: Some(a), .. } = src.find(&l) {
            if a == want && out.len() < 5 {
                out.push(Moved {
                    line: cut(&l),
                    read: a.to_string(),
                    instead_of: real.to_string(),
                });
            }
        }
    }
    out
}

/// One part of the pattern and what it took.
#[derive(Debug, Serialize)]
pub struct Group {
    pub name: String,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// `test-source --line`: what the source makes of one line.
#[derive(Debug, Serialize)]
pub struct LineReport {
    pub source: String,
    pub line: String,
    pub matched: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Where the time was read: the `time` group (listed with the groups)
    /// or the syslog / RFC 3339 prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_from: Option<&'static str>,
    pub groups: Vec<Group>,
    /// Planted addresses the pattern read (not anchored).
    pub unanchored: Vec<Moved>,
}

/// `check`: run the anchoring check (the config's sources; the built-in
/// ones are checked by their tests, and where only the program writes after
/// the address the check would warn for nothing).
pub fn line(src: &mut RegexSource, line: &[u8], check: bool) -> LineReport {
    let mut r = LineReport {
        source: src.name.clone(),
        line: cut(line),
        matched: false,
        why_not: None,
        rule: None,
        kind: None,
        address: None,
        time: None,
        time_from: None,
        groups: Vec::new(),
        unanchored: Vec::new(),
    };
    match src.find(line) {
        Found::Unrelated => {
            r.why_not = Some(match super::header::split_any(line) {
                Some(h) => format!(
                    "the line's program is \"{}\", not one this source reads",
                    String::from_utf8_lossy(h.program)
                ),
                None => "no syslog header, and every rule wants a program".into(),
            })
        }
        Found::NoMatch => r.why_not = Some("no rule's pattern matched".into()),
        Found::TooLong => {
            r.why_not = Some(format!("longer than {} bytes: not read", super::MAX_LINE))
        }
        Found::Matched {
            rule,
            at,
            addr,
            time,
        } => {
            r.rule = Some(rule + 1);
            r.kind = Some(src.kind_of(rule).to_string());
            r.groups = src
                .groups(rule, at)
                .into_iter()
                .map(|(name, s, e)| Group {
                    name: if name == "0" { "match".into() } else { name },
                    start: s,
                    end: e,
                    text: cut(&line[s..e]),
                })
                .collect();
            match src.time_span(rule, line) {
                Some((s, e)) => {
                    r.time_from = Some("the time group");
                    r.groups.push(Group {
                        name: "time".into(),
                        start: s,
                        end: e,
                        text: cut(&line[s..e]),
                    });
                }
                None => r.time_from = Some("the syslog or RFC 3339 prefix"),
            }
            r.address = addr.map(|a| a.to_string());
            r.time = time.map(crate::units::time::utc);
            r.matched = addr.is_some() && time.is_some();
            if addr.is_none() {
                r.why_not = Some(
                    "the addr group is not an IP address (a host name is never resolved)".into(),
                );
            } else if time.is_none() {
                r.why_not = Some(
                    "no time: neither the time group nor a syslog / RFC 3339 prefix could be read"
                        .into(),
                );
            }
            if check {
                r.unanchored = plant(src, line);
            }
        }
    }
    r
}

#[derive(Debug, Default)]
struct Shape {
    count: u64,
    example: String,
}

/// `test-source --log`: the tally of a whole log.
#[derive(Debug, Default)]
pub struct Summary {
    pub lines: u64,
    pub matched: u64,
    per_kind: HashMap<String, u64>,
    addrs: HashMap<IpAddr, u64>,
    addrs_dropped: u64,
    no_addr: u64,
    no_time: u64,
    too_long: u64,
    unmatched: u64,
    shapes: HashMap<String, Shape>,
    shapes_dropped: u64,
    /// Per rule: planted addresses it read on its first matched line.
    checked: Vec<bool>,
    /// Run the anchoring check (see [`line`]).
    pub check_anchoring: bool,
    unanchored: Vec<(usize, Moved)>,
}

/// A line's shape: digits and addresses as placeholders, so lines that
/// differ only in them group together.
pub fn shape(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(&msg[..msg.len().min(EXAMPLE)]).into_owned();
    let addr_char = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        if !addr_char(c) {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = rest.find(|c: char| !addr_char(c)).unwrap_or(rest.len());
        let run = &rest[..end];
        let core = run.trim_end_matches([':', '.']);
        if crate::core::logline::parse_addr(core.as_bytes()).is_some() {
            out.push_str("<ADDR>");
            out.push_str(&run[core.len()..]);
        } else {
            let mut digits = false;
            for c in run.chars() {
                if c.is_ascii_digit() {
                    if !digits {
                        out.push('N');
                    }
                    digits = true;
                } else {
                    digits = false;
                    out.push(c);
                }
            }
        }
        rest = &rest[end..];
    }
    out
}

impl Summary {
    pub fn feed(&mut self, src: &mut RegexSource, line: &[u8]) {
        self.lines += 1;
        match src.find(line) {
            Found::Unrelated => {}
            Found::TooLong => self.too_long += 1,
            Found::NoMatch => {
                self.unmatched += 1;
                let msg = match super::header::split_any(line) {
                    Some(h) => h.msg,
                    None => line,
                };
                let key = shape(msg);
                let room = self.shapes.len() < MAX_SHAPES;
                match self.shapes.get_mut(&key) {
                    Some(s) => s.count += 1,
                    None if room => {
                        self.shapes.insert(
                            key,
                            Shape {
                                count: 1,
                                example: cut(line),
                            },
                        );
                    }
                    None => self.shapes_dropped += 1,
                }
            }
            Found::Matched {
                rule, addr, time, ..
            } => {
                let (Some(a), Some(_)) = (addr, time) else {
                    if addr.is_none() {
                        self.no_addr += 1;
                    } else {
                        self.no_time += 1;
                    }
                    return;
                };
                self.matched += 1;
                *self
                    .per_kind
                    .entry(src.kind_of(rule).to_string())
                    .or_default() += 1;
                let room = self.addrs.len() < MAX_ADDRS;
                match self.addrs.get_mut(&a) {
                    Some(n) => *n += 1,
                    None if room => {
                        self.addrs.insert(a, 1);
                    }
                    None => self.addrs_dropped += 1,
                }
                if self.checked.len() < src.rule_count() {
                    self.checked.resize(src.rule_count(), false);
                }
                if self.check_anchoring && !self.checked[rule] {
                    self.checked[rule] = true;
                    if let Some(m) = plant(src, line).into_iter().next() {
                        self.unanchored.push((rule + 1, m));
                    }
                }
            }
        }
    }

    pub fn report(&self, source: &str, top: usize) -> LogReport {
        let mut kinds: Vec<(String, u64)> =
            self.per_kind.iter().map(|(k, n)| (k.clone(), *n)).collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut addrs: Vec<(IpAddr, u64)> = self.addrs.iter().map(|(a, n)| (*a, *n)).collect();
        addrs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut shapes: Vec<(&String, &Shape)> = self.shapes.iter().collect();
        shapes.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        LogReport {
            source: source.to_string(),
            lines_read: self.lines,
            lines_matched: self.matched,
            kinds: kinds
                .into_iter()
                .map(|(kind, lines)| KindCount { kind, lines })
                .collect(),
            distinct_addresses: self.addrs.len() as u64,
            addresses_not_kept: self.addrs_dropped,
            addresses: addrs
                .iter()
                .take(top)
                .map(|(a, n)| AddrCount {
                    address: a.to_string(),
                    lines: *n,
                })
                .collect(),
            no_address: self.no_addr,
            no_time: self.no_time,
            too_long: self.too_long,
            unmatched: self.unmatched,
            unmatched_shapes: shapes
                .iter()
                .take(top)
                .map(|(k, s)| ShapeCount {
                    shape: (*k).clone(),
                    lines: s.count,
                    example: s.example.clone(),
                })
                .collect(),
            shapes_not_kept: self.shapes_dropped,
            unanchored: self
                .unanchored
                .iter()
                .map(|(rule, m)| Unanchored {
                    rule: *rule,
                    moved: m.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct KindCount {
    pub kind: String,
    pub lines: u64,
}

#[derive(Debug, Serialize)]
pub struct AddrCount {
    pub address: String,
    pub lines: u64,
}

#[derive(Debug, Serialize)]
pub struct ShapeCount {
    pub shape: String,
    pub lines: u64,
    pub example: String,
}

#[derive(Debug, Serialize)]
pub struct Unanchored {
    pub rule: usize,
    #[serde(flatten)]
    pub moved: Moved,
}

#[derive(Debug, Serialize)]
pub struct LogReport {
    pub source: String,
    pub lines_read: u64,
    pub lines_matched: u64,
    pub kinds: Vec<KindCount>,
    pub distinct_addresses: u64,
    pub addresses_not_kept: u64,
    pub addresses: Vec<AddrCount>,
    pub no_address: u64,
    pub no_time: u64,
    pub too_long: u64,
    /// Lines of the source's program (or any line, for a rule without
    /// one) that no pattern matched.
    pub unmatched: u64,
    pub unmatched_shapes: Vec<ShapeCount>,
    pub shapes_not_kept: u64,
    pub unanchored: Vec<Unanchored>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::logs::{Def, Rule};
    use crate::units::time::Zone;

    fn src(line: &str) -> RegexSource {
        let def = Def {
            name: "t".into(),
            default_log: None,
            rules: vec![Rule {
                program: Some("postfix/smtpd".into()),
                line: line.into(),
                kind: "sasl-failed".into(),
                time: None,
                time_format: None,
            }],
            builtin: false,
        };
        RegexSource::new(&def, Zone::fixed(0), 1_795_255_261, (i64::MIN, i64::MAX)).unwrap()
    }

    const LINE: &[u8] = b"Nov 21 10:00:01 mx postfix/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: Password:";

    #[test]
    fn an_unanchored_pattern_is_caught_and_an_anchored_one_passes() {
        // The issue's example has no ^: a client text before it moves it.
        let loose =
            r"warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL \w+ authentication failed";
        let moved = plant(&mut src(loose), LINE);
        assert!(!moved.is_empty());
        assert_eq!(
            (moved[0].read.as_str(), moved[0].instead_of.as_str()),
            ("192.0.2.99", "203.0.113.5")
        );
        let anchored =
            r"^warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL \w+ authentication failed";
        assert_eq!(plant(&mut src(anchored), LINE), vec![]);
        // Anything goes: the address is the first one seen.
        assert!(!plant(&mut src(r"(?P<addr>\d+\.\d+\.\d+\.\d+)"), LINE).is_empty());
        // A greedy pattern reads the last one: planted text after it moves it.
        assert!(!plant(
            &mut src(r".*\[(?P<addr>[0-9.]+)\]"),
            b"Nov 21 10:00:01 mx postfix/smtpd[7]: warning: a[203.0.113.5]: SASL x y"
        )
        .is_empty());
    }

    #[test]
    fn one_line_says_which_group_took_what() {
        let mut s = src(
            r"^warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL (?P<mech>\w+) authentication failed",
        );
        let r = line(&mut s, LINE, true);
        assert!(r.matched, "{r:?}");
        assert_eq!(r.address.as_deref(), Some("203.0.113.5"));
        assert_eq!(r.time.as_deref(), Some("2026-11-21T10:00:01Z"));
        let addr = r.groups.iter().find(|g| g.name == "addr").unwrap();
        assert_eq!(&LINE[addr.start..addr.end], b"203.0.113.5");
        assert!(r
            .groups
            .iter()
            .any(|g| g.name == "mech" && g.text == "LOGIN"));
        let r = line(&mut s, b"Nov 21 10:00:01 mx cron[7]: warning: x", true);
        assert!(!r.matched && r.why_not.unwrap().contains("\"cron\""));
    }

    #[test]
    fn a_log_summary_is_bounded_and_groups_misses_by_shape() {
        let mut s =
            src(r"^warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL \w+ authentication failed");
        let mut sum = Summary::default();
        for i in 0..(MAX_ADDRS + 10) {
            let a = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128);
            let l = format!("Nov 21 10:00:01 mx postfix/smtpd[7]: warning: x[{a}]: SASL LOGIN authentication failed: x");
            sum.feed(&mut s, l.as_bytes());
        }
        for i in 0..(MAX_SHAPES + 10) {
            let w: String = i
                .to_string()
                .bytes()
                .map(|c| char::from(b'a' + c - b'0'))
                .collect();
            let l = format!(
                "Nov 21 10:00:01 mx postfix/smtpd[7]: connect from {w}[203.0.113.{}]",
                i % 200
            );
            sum.feed(&mut s, l.as_bytes());
        }
        sum.feed(&mut s, b"Nov 21 10:00:01 mx cron[7]: whatever");
        let r = sum.report("t", 5);
        assert_eq!(r.lines_read, (MAX_ADDRS + MAX_SHAPES + 21) as u64);
        assert_eq!(
            (r.lines_matched, r.distinct_addresses, r.addresses_not_kept),
            ((MAX_ADDRS + 10) as u64, MAX_ADDRS as u64, 10)
        );
        assert_eq!(
            (r.unmatched, r.shapes_not_kept),
            ((MAX_SHAPES + 10) as u64, 10)
        );
        assert_eq!(r.addresses.len(), 5);
        assert!(r.unanchored.is_empty());
        assert_eq!(
            shape(b"connect from x[203.0.113.5]:25 id 42"),
            "connect from x[<ADDR>]:N id N"
        );
    }
}
