//! A regex source compiled for a run: for every line, the first rule whose
//! program (from the syslog header only) and `line` regex match gives a hit
//! with the address of its `addr` group and the time of its `time` group (or
//! of the syslog / RFC 3339 prefix). The address is never looked for
//! anywhere else in the line, and a host name is never resolved.

use super::delimited::Delimited;
use super::header::{self, Head};
use super::prefilter::Prefilter;
use super::time::TimeFormat;
use super::{Def, MAX_LINE};
use crate::core::logline::{parse_addr, Hit, Line, Malformed, Proto, Stamps};
use crate::units::time::Zone;
use crate::units::Invalid;
use regex::bytes::{CaptureLocations, Regex};
use std::net::IpAddr;

/// Program names with `*` wildcards (`postfix*/smtpd`), `|` between
/// alternatives (`dovecot|auth`).
#[derive(Clone, Debug)]
struct Program(Vec<Vec<Vec<u8>>>);

impl Program {
    fn new(p: &str) -> Program {
        Program(
            p.split('|')
                .map(|alt| alt.split('*').map(|s| s.as_bytes().to_vec()).collect())
                .collect(),
        )
    }

    fn matches(&self, name: &[u8]) -> bool {
        self.0.iter().any(|glob| Self::glob(glob, name))
    }

    fn glob(pieces: &[Vec<u8>], name: &[u8]) -> bool {
        let (first, rest) = pieces.split_first().expect("split gives one piece");
        let Some(mut r) = name.strip_prefix(first.as_slice()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return r.is_empty();
        };
        for m in middle {
            match memchr::memmem::find(r, m) {
                Some(i) => r = &r[i + m.len()..],
                None => return false,
            }
        }
        r.len() >= last.len() && r.ends_with(last)
    }
}

#[derive(Clone, Debug)]
struct Compiled {
    program: Option<Program>,
    line: Regex,
    /// The line pattern's walk, when it is delimited fields (the same
    /// answers as `line`, several times faster).
    walk: Option<Delimited>,
    addr: usize,
    kind: u16,
    time: Option<(Regex, usize, TimeFormat)>,
    time_walk: Option<Delimited>,
}

/// Group `g`'s span in regex-style slots.
fn span(slots: &[Option<usize>], g: usize) -> Option<(usize, usize)> {
    Some((slots[2 * g]?, slots[2 * g + 1]?))
}

/// What a line is to a source, with where each part was found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No rule's program wrote it (or it has no header and every rule
    /// wants a program).
    Unrelated,
    /// A rule's program wrote it (or a rule reads every line), no pattern
    /// matched.
    NoMatch,
    TooLong,
    /// Rule `rule` matched the text from byte `at` of the line; its groups
    /// are in [`RegexSource::groups`].
    Matched {
        rule: usize,
        at: usize,
        addr: Option<IpAddr>,
        time: Option<i64>,
    },
}

#[derive(Clone)]
pub struct RegexSource {
    pub name: String,
    rules: Vec<Compiled>,
    /// Each rule's capture slots, reused from line to line: the regex's,
    /// or the walk's for a rule that has one.
    locs: Vec<CaptureLocations>,
    slots: Vec<Vec<Option<usize>>>,
    time_slots: Vec<Vec<Option<usize>>>,
    /// Each rule's first look at a line, before its regex.
    pre: Vec<Prefilter>,
    /// Each rule's `time` capture slots (none without a `time`), reused.
    time_locs: Vec<Option<CaptureLocations>>,
    /// Each rule's last `time` text and what it read: a log's lines share
    /// their second in runs, and chrono's parse is a third of a matched
    /// line's cost (one line's text, as long as the readers let a line be).
    time_memo: Vec<(Vec<u8>, Option<i64>)>,
    /// Some rule has a `program` or no `time` of its own: the syslog header
    /// is split for every line (otherwise only when a `time` fails).
    needs_head: bool,
    /// The kinds, in rule order without repeats: a hit's `dport` indexes it.
    pub kinds: Vec<String>,
    /// A rule reads lines of every program (no `program`).
    every_line: bool,
    stamps: Stamps,
    /// RFC 3339 without a zone (`2026-11-21T10:00:01 host prog: ...`):
    /// local time.
    iso: TimeFormat,
    zone: Zone,
    now: i64,
    window: (i64, i64),
}

impl RegexSource {
    /// The source's rules compiled (checked at config load already: an
    /// error here is a built-in's bug or a config changed since).
    pub fn new(
        def: &Def,
        zone: Zone,
        now: i64,
        window: (i64, i64),
    ) -> Result<RegexSource, Invalid> {
        let mut kinds: Vec<String> = Vec::new();
        let mut rules = Vec::new();
        for r in &def.rules {
            r.check()
                .map_err(|e| Invalid(format!("source {}: {e}", def.name)))?;
            let line = super::compile("line", &r.line)?;
            let addr = line
                .capture_names()
                .position(|n| n == Some("addr"))
                .expect("checked");
            let time = match (&r.time, &r.time_format) {
                (Some(t), Some(f)) => {
                    let re = super::compile("time", t)?;
                    let i = re
                        .capture_names()
                        .position(|n| n == Some("time"))
                        .expect("checked");
                    Some((re, i, TimeFormat::new(f)?))
                }
                _ => None,
            };
            let kind = match kinds.iter().position(|k| *k == r.kind) {
                Some(i) => i,
                None => {
                    kinds.push(r.kind.clone());
                    kinds.len() - 1
                }
            };
            rules.push(Compiled {
                program: r.program.as_deref().map(Program::new),
                walk: Delimited::new(&r.line),
                line,
                addr,
                kind: kind as u16,
                time_walk: time
                    .as_ref()
                    .and(r.time.as_deref())
                    .and_then(Delimited::new),
                time,
            });
        }
        Ok(RegexSource {
            name: def.name.clone(),
            locs: rules.iter().map(|r| r.line.capture_locations()).collect(),
            slots: rules
                .iter()
                .map(|r| vec![None; r.walk.as_ref().map_or(0, Delimited::slots)])
                .collect(),
            time_slots: rules
                .iter()
                .map(|r| vec![None; r.time_walk.as_ref().map_or(0, Delimited::slots)])
                .collect(),
            pre: def.rules.iter().map(|r| Prefilter::new(&r.line)).collect(),
            time_locs: rules
                .iter()
                .map(|r| r.time.as_ref().map(|(re, _, _)| re.capture_locations()))
                .collect(),
            time_memo: vec![(Vec::new(), None); rules.len()],
            needs_head: rules
                .iter()
                .any(|r| r.program.is_some() || r.time.is_none()),
            every_line: rules.iter().any(|r| r.program.is_none()),
            rules,
            kinds,
            stamps: Stamps::new(zone.clone(), now),
            iso: TimeFormat::new("%Y-%m-%dT%H:%M:%S%.f").expect("a valid format"),
            zone,
            now,
            window,
        })
    }

    pub fn window(&self) -> (i64, i64) {
        self.window
    }

    /// Move the window (a follower's slides as time goes on).
    pub fn set_window(&mut self, window: (i64, i64)) {
        self.window = window;
    }

    /// The text a rule reads: the message of its program's line, or the
    /// whole line.
    fn text<'a>(rule: &Compiled, line: &'a [u8], head: Option<&Head<'a>>) -> Option<&'a [u8]> {
        match &rule.program {
            None => Some(line),
            Some(p) => head.filter(|h| p.matches(h.program)).map(|h| h.msg),
        }
    }

    /// A line's time: the first rule's `time` group that matches, else the
    /// syslog header's or the RFC 3339 / syslog prefix's.
    fn time_of(
        &mut self,
        rules: std::ops::Range<usize>,
        line: &[u8],
        head: Option<&Head>,
    ) -> Option<i64> {
        for i in rules {
            let r = &self.rules[i];
            let Some((re, g, fmt)) = &r.time else {
                continue;
            };
            let Some(text) = Self::text(r, line, head) else {
                continue;
            };
            // No match: the next rule's time; a match whose `time` group
            // took no part (an alternation's other branch): no time.
            let (a, b) = match &r.time_walk {
                Some(w) => {
                    let slots = &mut self.time_slots[i];
                    if !w.captures(text, slots) {
                        continue;
                    }
                    span(slots, *g)?
                }
                None => {
                    let locs = self.time_locs[i].as_mut().expect("a rule with a time");
                    if re.captures_read(locs, text).is_none() {
                        continue;
                    }
                    locs.get(*g)?
                }
            };
            let text = &text[a..b];
            let memo = &mut self.time_memo[i];
            if memo.0 != text {
                let t = std::str::from_utf8(text).ok();
                memo.1 = t.and_then(|t| fmt.read(t, &self.zone, self.now));
                memo.0.clear();
                memo.0.extend_from_slice(text);
            }
            return memo.1;
        }
        // Not split by find (see needs_head): only now that it is read.
        let split;
        let head = match head {
            None if !self.needs_head => {
                split = header::split_any(line);
                split.as_ref()
            }
            h => h,
        };
        let t = match head {
            Some(h) => header::time(&mut self.stamps, line, h.stamp),
            None => self.stamps.syslog(line),
        };
        t.or_else(|| {
            let word = &line[..memchr::memchr(b' ', line)?];
            (word.len() >= 19 && word[10] == b'T')
                .then(|| {
                    self.iso
                        .read(std::str::from_utf8(word).ok()?, &self.zone, self.now)
                })
                .flatten()
        })
    }

    /// The time of any line of the log, to seek the window by.
    #[inline(never)]
    pub fn timestamp(&mut self, line: &[u8]) -> Option<i64> {
        let head = header::split_any(line);
        self.time_of(0..self.rules.len(), line, head.as_ref())
    }

    /// Which rule matches, where, and what it read.
    pub fn find(&mut self, line: &[u8]) -> Found {
        let head = if self.needs_head {
            header::split_any(line)
        } else {
            None
        };
        let mut related = self.every_line;
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            let Some(text) = Self::text(r, line, head.as_ref()) else {
                continue;
            };
            related = true;
            if line.len() > MAX_LINE {
                return Found::TooLong;
            }
            if !self.pre[i].admits(text) {
                continue;
            }
            let found = match &r.walk {
                Some(w) => w
                    .captures(text, &mut self.slots[i])
                    .then(|| span(&self.slots[i], r.addr)),
                None => r
                    .line
                    .captures_read(&mut self.locs[i], text)
                    .map(|_| self.locs[i].get(r.addr)),
            };
            let Some(addr) = found else {
                continue;
            };
            let at = text.as_ptr() as usize - line.as_ptr() as usize;
            let addr = addr.and_then(|(s, e)| parse_addr(&text[s..e]));
            let time = self.time_of(i..i + 1, line, head.as_ref());
            return Found::Matched {
                rule: i,
                at,
                addr,
                time,
            };
        }
        if related {
            Found::NoMatch
        } else {
            Found::Unrelated
        }
    }

    /// Rule `rule`'s groups of the last line it matched: name, span in the
    /// line (from `at`), text.
    pub fn groups(&self, rule: usize, at: usize) -> Vec<(String, usize, usize)> {
        let names = self.rules[rule].line.capture_names();
        names
            .enumerate()
            .filter_map(|(i, n)| {
                let (s, e) = match self.rules[rule].walk {
                    Some(_) => span(&self.slots[rule], i)?,
                    None => self.locs[rule].get(i)?,
                };
                Some((
                    n.map_or_else(|| i.to_string(), str::to_string),
                    at + s,
                    at + e,
                ))
            })
            .collect()
    }

    /// Where rule `rule` reads a line's time: its `time` group's span in
    /// the line, or None for the syslog / RFC 3339 prefix.
    pub fn time_span(&self, rule: usize, line: &[u8]) -> Option<(usize, usize)> {
        let r = &self.rules[rule];
        let (re, g, _) = r.time.as_ref()?;
        let head = header::split_any(line);
        let text = Self::text(r, line, head.as_ref())?;
        let at = text.as_ptr() as usize - line.as_ptr() as usize;
        let m = re.captures(text)?.get(*g)?;
        Some((at + m.start(), at + m.end()))
    }

    /// The kind of rule `rule`.
    pub fn kind_of(&self, rule: usize) -> &str {
        &self.kinds[usize::from(self.rules[rule].kind)]
    }

    /// The regex of rule `rule`, with its program.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    // Kept out of the line loop's dispatch, which the fixed readers share.
    #[inline(never)]
    pub fn parse(&mut self, line: &[u8]) -> Line {
        match self.find(line) {
            Found::Unrelated | Found::NoMatch => Line::Other,
            Found::TooLong => Line::Malformed(Malformed::TooLong),
            Found::Matched {
                rule, addr, time, ..
            } => {
                let Some(time) = time else {
                    return Line::Malformed(Malformed::Timestamp);
                };
                if time < self.window.0 || time > self.window.1 {
                    return Line::Outside;
                }
                let Some(src) = addr else {
                    return Line::Malformed(Malformed::NoAddr);
                };
                Line::Hit(Hit {
                    time,
                    prefix: 0,
                    src,
                    proto: Proto::Tcp,
                    dport: Some(self.rules[rule].kind),
                    marks: 0,
                    n: 1,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::logs::Rule;

    // 2026-11-21T10:00:01Z
    const T: i64 = 1_795_255_201;

    fn src(rules: Vec<Rule>) -> RegexSource {
        let def = Def {
            name: "t".into(),
            default_log: None,
            rules,
            builtin: false,
        };
        RegexSource::new(&def, Zone::fixed(0), T + 60, (T - 600, T + 600)).unwrap()
    }

    /// The issue's example, as written.
    fn postfix() -> Rule {
        Rule {
            program: Some("postfix/smtpd".into()),
            line: r"warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL \w+ authentication failed"
                .into(),
            kind: "sasl-failed".into(),
            time: None,
            time_format: None,
        }
    }

    #[test]
    fn only_the_programs_lines_count_and_the_address_is_the_groups() {
        let mut s = src(vec![postfix()]);
        let l = b"Nov 21 10:00:01 mx postfix/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: x";
        match s.parse(l) {
            Line::Hit(h) => assert_eq!(
                (h.src, h.time, h.dport),
                ("203.0.113.5".parse().unwrap(), T, Some(0))
            ),
            o => panic!("{o:?}"),
        }
        for other in [
            // Another program writing the same words.
            &b"Nov 21 10:00:01 mx myapp[7]: postfix/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed"[..],
            b"Nov 21 10:00:01 mx postfix/smtpdx[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed",
            b"warning: unknown[203.0.113.5]: SASL LOGIN authentication failed",
        ] {
            assert_eq!(s.parse(other), Line::Other);
        }
        assert_eq!(
            s.parse(b"Nov 21 10:00:01 mx postfix/smtpd[7]: warning: mx.example[host]: SASL LOGIN authentication failed"),
            Line::Other
        );
        assert_eq!(
            s.parse(b"Nov 21 10:00:01 mx postfix/smtpd[7]: warning: mx.example[1.2.3.4.5]: SASL LOGIN authentication failed"),
            Line::Malformed(Malformed::NoAddr)
        );
        assert_eq!(
            s.parse(b"Nov 21 08:00:01 mx postfix/smtpd[7]: warning: x[203.0.113.5]: SASL LOGIN authentication failed"),
            Line::Outside
        );
        let long = format!("Nov 21 10:00:01 mx postfix/smtpd[7]: warning: x[203.0.113.5]: SASL LOGIN authentication failed {}", "x".repeat(MAX_LINE));
        assert_eq!(
            s.parse(long.as_bytes()),
            Line::Malformed(Malformed::TooLong)
        );
    }

    #[test]
    fn a_program_pattern_and_a_time_group() {
        let mut s = src(vec![
            Rule {
                program: Some("postfix*/smtpd".into()),
                ..postfix()
            },
            Rule {
                program: None,
                line: r#"^\S+ \S+ \[error\] \d+#\d+: \*\d+ limiting requests, excess: [\d.]+ by zone "[^"]*", client: (?P<addr>[0-9a-fA-F:.]+), server: "#.into(),
                kind: "limited".into(),
                time: Some(r"^(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) ".into()),
                time_format: Some("%Y/%m/%d %H:%M:%S".into()),
            },
        ]);
        assert_eq!(s.kinds, ["sasl-failed", "limited"]);
        for (l, kind) in [
            ("Nov 21 10:00:01 mx postfix/submission/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed", 0),
            ("Nov 21 10:00:01 mx postfix-in/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed", 0),
            ("2026/11/21 10:00:01 [error] 1#0: *9 limiting requests, excess: 1.5 by zone \"one\", client: 203.0.113.5, server: x", 1),
        ] {
            match s.parse(l.as_bytes()) {
                Line::Hit(h) => assert_eq!((h.time, h.dport), (T, Some(kind)), "{l}"),
                o => panic!("{o:?}: {l}"),
            }
        }
        assert_eq!(
            s.timestamp(b"2026/11/21 10:00:01 [notice] 1#0: start"),
            Some(T)
        );
        assert_eq!(s.timestamp(b"Nov 21 10:00:01 mx cron[1]: x"), Some(T));
        assert_eq!(s.timestamp(b"2026-11-21T10:00:01 mx cron[1]: x"), Some(T));
        assert_eq!(s.timestamp(b"2026-11-21T10:00:01.5 mx cron[1]: x"), Some(T));
        assert!(!Program::new("postfix*/smtpd").matches(b"postfix/smtpd/x"));
        assert!(!Program::new("a*b*c").matches(b"abc/"));
        assert!(Program::new("a*b*c").matches(b"a-b-c"));
        assert!(!Program::new("ab*ba").matches(b"aba"));
        assert!(Program::new("dovecot|*-login").matches(b"imap-login"));
        assert!(Program::new("dovecot|*-login").matches(b"dovecot"));
        assert!(!Program::new("dovecot|*-login").matches(b"dovecot-auth"));
    }
}

#[cfg(test)]
mod walk_tests {
    use super::*;
    use crate::core::logs::Rule;

    // 2026-11-21T11:00:00Z
    const T: i64 = 1_795_258_800;

    /// A rule the walk takes reads what the regex would, groups included
    /// (test-source shows them), and a rule it leaves still matches.
    #[test]
    fn walked_and_regex_rules_read_the_same() {
        let rule = |line: &str| Rule {
            program: None,
            line: line.into(),
            kind: "client-error".into(),
            time: Some(r"^\S+ \S+ \S+ \[(?P<time>[^\]]+)\]".into()),
            time_format: Some("%d/%b/%Y:%H:%M:%S %z".into()),
        };
        let walked = r#"^(?P<addr>[0-9a-fA-F:.]+) \S+ \S+ \[[^\]]+\] "(?P<req>[^"]*)" 4\d\d "#;
        // The same, with an optional part the walk leaves to the regex.
        let regex =
            r#"^(?P<addr>[0-9a-fA-F:.]+) \S+ \S+ \[[^\]]+\] "(?P<req>[^"]*)" 4\d\d (?:x|yz)?"#;
        let def = |line| Def {
            name: "t".into(),
            default_log: None,
            rules: vec![rule(line)],
            builtin: false,
        };
        let mut a = RegexSource::new(&def(walked), Zone::fixed(0), T, (T - 60, T + 60)).unwrap();
        let mut b = RegexSource::new(&def(regex), Zone::fixed(0), T, (T - 60, T + 60)).unwrap();
        assert!(a.rules[0].walk.is_some() && a.rules[0].time_walk.is_some());
        assert!(b.rules[0].walk.is_none() && b.rules[0].time_walk.is_some());
        let line = b"203.0.113.9 - - [21/Nov/2026:11:00:00 +0000] \"GET /x HTTP/1.1\" 404 12 \"-\"";
        let (fa, fb) = (a.find(line), b.find(line));
        assert_eq!(fa, fb);
        assert_eq!(
            fa,
            Found::Matched {
                rule: 0,
                at: 0,
                addr: Some("203.0.113.9".parse().unwrap()),
                time: Some(T)
            }
        );
        let g = a.groups(0, 0);
        assert_eq!(g, b.groups(0, 0));
        assert!(g.contains(&("req".into(), 46, 61)), "{g:?}");
        assert_eq!(
            a.find(b"203.0.113.9 - - [x] \"GET /\" 200 1 "),
            Found::NoMatch
        );
    }
}

#[cfg(test)]
mod time_group_tests {
    use super::*;
    use crate::core::logs::Rule;

    /// A rule's `time` that matches with its group left out (the other
    /// branch of an alternation) gives the line no time, as before the
    /// walk: neither the next rule's nor the syslog header's.
    #[test]
    fn a_time_match_without_its_group_is_no_time() {
        let def = Def {
            name: "t".into(),
            default_log: None,
            rules: vec![Rule {
                program: None,
                line: r"(?P<addr>\d+\.\d+\.\d+\.\d+)".into(),
                kind: "k".into(),
                time: Some(r"(?:\[(?P<time>\d\d/[^\]]+)\]|nodate)".into()),
                time_format: Some("%d/%b/%Y:%H:%M:%S %z".into()),
            }],
            builtin: false,
        };
        let t = 1_795_255_201;
        let mut s = RegexSource::new(&def, Zone::fixed(0), t, (t - 60, t + 60)).unwrap();
        let line = b"Nov 21 10:00:01 mx app[1]: nodate 203.0.113.5";
        assert!(matches!(s.find(line), Found::Matched { time: None, .. }));
        assert_eq!(s.timestamp(line), None);
    }
}
