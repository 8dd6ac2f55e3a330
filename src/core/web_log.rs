//! Web servers' access logs (pure): nginx's and Apache's combined and common
//! formats, `203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1"
//! 404 153 "-" "curl/8.0"`. A line becomes a hit for its client address
//! (the first field, or with `Client::Forwarded` the last address of an
//! X-Forwarded-For value the log writes as its last quoted field), its
//! status, and the `[[pattern]]`s its request line matches.
//!
//! The client writes the user and ident fields, the request line, the
//! referer, the user agent and X-Forwarded-For; the server escapes a quote
//! inside any of them (nginx `\x22`, Apache `\"`) but not a space or a
//! bracket. So the fields are found from the format's fixed structure, never
//! by looking for a bracket: the request's opening quote is the line's first
//! unescaped quote (nothing before it can hold one), the time is the
//! bracketed field directly before it, the status the token directly after
//! the request's closing quote. What follows the status is never read but
//! for X-Forwarded-For.
//!
//! X-Forwarded-For is not trusted by default: a client writes what it likes
//! there. Behind a proxy of one's own, the proxy appends the address it saw
//! as the value's last element, the only one nobody else controls.

use super::logline::{digits, parse_addr, Hit, Line, Malformed, Proto, Stamps};
use crate::units::time::Zone;
use regex::bytes::RegexSet;

/// Where the client's address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// The line's first field ($remote_addr, %h): the peer of the connection.
    Remote,
    /// The last address of the X-Forwarded-For value written as the line's
    /// last quoted field (nginx `"$http_x_forwarded_for"`, Apache
    /// `"%{X-Forwarded-For}i"`); the first field when that value is "-".
    Forwarded,
}

/// Which statuses count: a bitmap over 100..=599.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statuses([bool; 600]);

impl Statuses {
    pub fn all() -> Statuses {
        Statuses([true; 600])
    }

    /// `4xx`, `5xx`, `401,403,404,444`, `400-499`, or a mix of them.
    pub fn parse(s: &str) -> Result<Statuses, String> {
        let bad = || format!("--status \"{s}\": fix: e.g. 4xx, 5xx, 401,403,404,444 or 400-499");
        let mut m = [false; 600];
        for part in s.split(',').map(str::trim) {
            let (a, b) = if let Some(c) = part.strip_suffix("xx") {
                let d: usize = c.parse().map_err(|_| bad())?;
                (d * 100, d * 100 + 99)
            } else if let Some((a, b)) = part.split_once('-') {
                (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
            } else {
                let n: usize = part.parse().map_err(|_| bad())?;
                (n, n)
            };
            if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
                return Err(bad());
            }
            for x in &mut m[a..=b] {
                *x = true;
            }
        }
        Ok(Statuses(m))
    }

    fn wants(&self, code: u16) -> bool {
        self.0.get(usize::from(code)).copied().unwrap_or(false)
    }
}

#[derive(Clone)]
pub struct WebParser {
    stamps: Stamps,
    window: (i64, i64),
    client: Client,
    statuses: Statuses,
    /// The request patterns asked for (--match); None: every request counts.
    patterns: Option<RegexSet>,
}

impl WebParser {
    pub fn new(
        zone: Zone,
        now: i64,
        window: (i64, i64),
        client: Client,
        statuses: Statuses,
        patterns: Option<RegexSet>,
    ) -> WebParser {
        WebParser {
            stamps: Stamps::new(zone, now),
            window,
            client,
            statuses,
            patterns,
        }
    }

    pub fn window(&self) -> (i64, i64) {
        self.window
    }

    /// Every line of an access log is a candidate: its timestamp opens with
    /// " [" after the client and user fields.
    pub fn needle(&self) -> &'static [u8] {
        b" ["
    }

    pub fn timestamp(&mut self, line: &[u8]) -> Option<i64> {
        let q = first_quote(line)?;
        self.stamps.web(stamp_before(line, q)?)
    }

    pub fn parse(&mut self, line: &[u8]) -> Line {
        let Some(sp) = memchr::memchr(b' ', line) else {
            return Line::Other;
        };
        // The request's opening quote: nothing before it can hold one.
        let Some(open) = first_quote(&line[sp..]).map(|q| sp + q) else {
            return match memchr::memchr(b'[', line) {
                Some(_) => Line::Malformed(Malformed::NoRequest),
                None => Line::Other,
            };
        };
        let Some(time) = stamp_before(line, open).and_then(|s| self.stamps.web(s)) else {
            return Line::Malformed(Malformed::Timestamp);
        };
        if time < self.window.0 || time > self.window.1 {
            return Line::Outside;
        }
        let q = &line[open + 1..];
        let Some(end) = closing_quote(q) else {
            return Line::Malformed(Malformed::NoRequest);
        };
        let request = &q[..end];
        let rest = &q[end + 1..];
        // The status: the token right after the request, three digits.
        let Some(code) = rest
            .strip_prefix(b" ")
            .filter(|r| r.get(3).is_none_or(|&b| b == b' '))
            .and_then(|r| r.get(..3))
            .and_then(digits)
            .filter(|c| (100..=599).contains(c))
        else {
            return Line::Malformed(Malformed::NoStatus);
        };
        let code = code as u16;
        // What the run does not count is dropped before the address is read.
        if !self.statuses.wants(code) {
            return Line::Unwanted;
        }
        let marks = match &self.patterns {
            None => 0,
            Some(set) => {
                let mut m = 0u64;
                for i in set.matches(request).iter() {
                    m |= 1 << i;
                }
                if m == 0 {
                    return Line::Unwanted;
                }
                m
            }
        };
        let Some(mut src) = parse_addr(&line[..sp]) else {
            return Line::Malformed(Malformed::NoClient);
        };
        if self.client == Client::Forwarded {
            match forwarded(line) {
                Some(Ok(a)) => src = a,
                Some(Err(())) => return Line::Malformed(Malformed::NoClient),
                None => {}
            }
        }
        Line::Hit(Hit {
            time,
            prefix: 0,
            src,
            proto: Proto::Tcp,
            dport: Some(code),
            marks,
            n: 1,
        })
    }
}

/// The first quote that no backslash escapes (both servers write a quote
/// inside a field as `\x22` or `\"`, a backslash as `\x5C` or `\\`).
fn first_quote(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(j) = memchr::memchr2(b'"', b'\\', &s[i..]) {
        let at = i + j;
        if s[at] == b'"' {
            return Some(at);
        }
        i = at + 2;
        if i >= s.len() {
            return None;
        }
    }
    None
}

/// The end of a quoted string that starts at `s`: its closing quote.
fn closing_quote(s: &[u8]) -> Option<usize> {
    first_quote(s)
}

/// `[21/Nov/2026:10:00:01 +0000]`, the field right before the request's
/// opening quote at `q`, after a space: from its bracket on.
fn stamp_before(line: &[u8], q: usize) -> Option<&[u8]> {
    let at = q.checked_sub(29)?;
    (at > 0 && line[at - 1] == b' ' && line[q - 1] == b' ').then(|| &line[at..q - 1])
}

/// The last quoted field's X-Forwarded-For value: its last address. None
/// when the value is "-" (no proxy in the way); Err when it is not an
/// address list.
fn forwarded(line: &[u8]) -> Option<Result<std::net::IpAddr, ()>> {
    let line = line.trim_ascii_end();
    let inner = line.strip_suffix(b"\"")?;
    let start = memchr::memrchr(b'"', inner)? + 1;
    let value = &inner[start..];
    if value == b"-" || value.is_empty() {
        return None;
    }
    let last = value.rsplit(|&b| b == b',').next()?.trim_ascii();
    Some(parse_addr(last).ok_or(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    // 2026-11-21T10:00:01Z
    const T: i64 = 1_795_255_201;

    fn p(client: Client, statuses: &str, patterns: Option<&[&str]>) -> WebParser {
        WebParser::new(
            Zone::fixed(0),
            T + 60,
            (T - 600, T + 600),
            client,
            if statuses == "all" {
                Statuses::all()
            } else {
                Statuses::parse(statuses).unwrap()
            },
            patterns.map(|p| RegexSet::new(p).unwrap()),
        )
    }

    const NGINX: &str = r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET /index.html HTTP/1.1" 404 153 "-" "Mozilla/5.0 (X11; Linux x86_64)""#;
    const APACHE_COMMON: &str =
        r#"2001:db8::5 - frank [21/Nov/2026:11:00:01 +0100] "POST /login HTTP/1.0" 401 2326"#;

    fn hit(l: Line) -> Hit {
        match l {
            Line::Hit(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn combined_and_common_lines_give_client_time_and_status() {
        let h = hit(p(Client::Remote, "all", None).parse(NGINX.as_bytes()));
        assert_eq!(
            (h.src, h.time, h.dport),
            ("203.0.113.5".parse::<IpAddr>().unwrap(), T, Some(404))
        );
        let h = hit(p(Client::Remote, "all", None).parse(APACHE_COMMON.as_bytes()));
        assert_eq!(
            (h.src, h.time, h.dport),
            ("2001:db8::5".parse().unwrap(), T, Some(401))
        );
        assert_eq!(
            p(Client::Remote, "all", None).timestamp(NGINX.as_bytes()),
            Some(T)
        );
    }

    #[test]
    fn statuses_filter_and_their_syntax() {
        let l = NGINX.as_bytes();
        assert!(matches!(
            p(Client::Remote, "4xx", None).parse(l),
            Line::Hit(_)
        ));
        assert_eq!(p(Client::Remote, "5xx", None).parse(l), Line::Unwanted);
        assert!(matches!(
            p(Client::Remote, "401,403,404,444", None).parse(l),
            Line::Hit(_)
        ));
        assert!(matches!(
            p(Client::Remote, "400-499", None).parse(l),
            Line::Hit(_)
        ));
        assert_eq!(p(Client::Remote, "400-403", None).parse(l), Line::Unwanted);
        for bad in ["4x", "600", "499-400", "abc", ""] {
            assert!(Statuses::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_mark_the_request_and_filter() {
        let traversal = r#"198.51.100.7 - - [21/Nov/2026:10:00:01 +0000] "GET /static/..%2f..%2fetc/passwd HTTP/1.1" 400 0 "-" "x""#;
        let pats = [r"(?i)(\.\./|%2e%2e|\.\.%2f)", r"(?i)union\s+select"];
        let mut wp = p(Client::Remote, "all", Some(&pats));
        assert_eq!(hit(wp.parse(traversal.as_bytes())).marks, 0b01);
        assert_eq!(wp.parse(NGINX.as_bytes()), Line::Unwanted);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_used_only_when_asked_and_only_its_last_address() {
        // The client claims to be 192.0.2.1; the proxy appended 203.0.113.9.
        let l = r#"10.0.0.2 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "192.0.2.1, 203.0.113.9""#;
        let remote = hit(p(Client::Remote, "all", None).parse(l.as_bytes()));
        assert_eq!(remote.src, "10.0.0.2".parse::<IpAddr>().unwrap());
        let fwd = hit(p(Client::Forwarded, "all", None).parse(l.as_bytes()));
        assert_eq!(fwd.src, "203.0.113.9".parse::<IpAddr>().unwrap());
        // No proxy in the way: the peer.
        let direct =
            r#"203.0.113.4 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "-""#;
        assert_eq!(
            hit(p(Client::Forwarded, "all", None).parse(direct.as_bytes())).src,
            "203.0.113.4".parse::<IpAddr>().unwrap()
        );
        let junk = r#"10.0.0.2 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "not an ip""#;
        assert_eq!(
            p(Client::Forwarded, "all", None).parse(junk.as_bytes()),
            Line::Malformed(Malformed::NoClient)
        );
    }

    #[test]
    fn client_written_fields_never_give_the_time_or_the_status() {
        let mut wp = p(Client::Remote, "all", None);
        let at = |user: &str, request: &str, rest: &str| {
            format!(r#"203.0.113.5 - {user} [21/Nov/2026:10:00:01 +0000] "{request}" {rest}"#)
        };
        // $remote_user with brackets, a fake time, spaces (nginx and Apache
        // write them as they come).
        for user in [
            "[x",
            "x]",
            "[01/Jan/2000:00:00:00 +0000]",
            "a [01/Jan/2000:00:00:00 +0000] b",
            "[01/Jan/2000:00:00:00 +0000] \\x22GET / HTTP/1.1\\x22 200",
            r#"[01/Jan/2000:00:00:00 +0000] \"GET / HTTP/1.1\" 200"#,
            r#"x\\"#,
        ] {
            let l = at(user, "GET / HTTP/1.1", r#"404 1 "-" "ua""#);
            let h = hit(wp.parse(l.as_bytes()));
            assert_eq!((h.time, h.dport), (T, Some(404)), "{l}");
            assert_eq!(wp.timestamp(l.as_bytes()), Some(T), "{l}");
        }
        // The request path with what a status or a time looks like.
        for request in [
            r#"GET /a\" 200 1 \"b HTTP/1.1"#,
            r#"GET /a\x22 200 1 \x22b HTTP/1.1"#,
            "GET /[01/Jan/2000:00:00:00 +0000] 200 HTTP/1.1",
            r#"GET /a\\"#,
        ] {
            let l = at("-", request, r#"404 1 "-" "ua""#);
            assert_eq!(hit(wp.parse(l.as_bytes())).dport, Some(404), "{l}");
        }
        // A status is three digits and a whole token.
        for rest in ["4040 1", "40 1", "404x 1"] {
            let l = at("-", "GET / HTTP/1.1", rest);
            assert_eq!(
                wp.parse(l.as_bytes()),
                Line::Malformed(Malformed::NoStatus),
                "{l}"
            );
        }
        // The common format ends at the bytes; a cut line at the status.
        assert_eq!(
            hit(wp.parse(at("-", "GET / HTTP/1.1", "404").as_bytes())).dport,
            Some(404)
        );
        // The user agent after the status is never read.
        let l = at(
            "-",
            "GET / HTTP/1.1",
            r#"404 1 "-" "x" 200 [01/Jan/2000:00:00:00 +0000] "#,
        );
        assert_eq!(hit(wp.parse(l.as_bytes())).dport, Some(404));
        // A time that is not directly before the request is no time.
        let l = r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] x "GET / HTTP/1.1" 404 1"#;
        assert_eq!(
            wp.parse(l.as_bytes()),
            Line::Malformed(Malformed::Timestamp)
        );
        assert_eq!(wp.timestamp(l.as_bytes()), None);
    }

    #[test]
    fn broken_lines_are_malformed_not_wrong() {
        let mut wp = p(Client::Remote, "all", None);
        for (l, why) in [
            (
                r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1"#,
                Malformed::NoRequest,
            ),
            (
                r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" abc 1"#,
                Malformed::NoStatus,
            ),
            (
                r#"hostname - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1"#,
                Malformed::NoClient,
            ),
            (
                r#"203.0.113.5 - - [21/Nov/2026:25:00:01 +0000] "GET / HTTP/1.1" 200 1"#,
                Malformed::Timestamp,
            ),
            (
                r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET /a\"b HTTP/1.1"#,
                Malformed::NoRequest,
            ),
        ] {
            assert_eq!(wp.parse(l.as_bytes()), Line::Malformed(why), "{l}");
        }
        // An escaped quote inside the request is part of it.
        let esc =
            r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET /a\"b HTTP/1.1" 200 1 "-" "ua""#;
        assert!(matches!(wp.parse(esc.as_bytes()), Line::Hit(_)));
        assert_eq!(wp.parse(b"garbage"), Line::Other);
        // Outside the window.
        let old = NGINX.replace("10:00:01", "08:00:01");
        assert_eq!(wp.parse(old.as_bytes()), Line::Outside);
    }

    proptest::proptest! {
        /// Whatever the client writes in the fields it controls (the
        /// servers escape only quotes and backslashes there), the time, the
        /// status and the address are the server's.
        #[test]
        fn no_client_field_steers_time_status_or_address(
            user in r#"[ -!#-\[\]-~]{1,40}"#,
            path in r#"[ -!#-\[\]-~]{0,60}"#,
            ua in r#"[ -!#-\[\]-~]{0,60}"#,
            xff in r#"[ -!#-\[\]-~]{0,40}"#,
        ) {
            let l = format!(
                r#"10.0.0.2 - {user} [21/Nov/2026:10:00:01 +0000] "GET /{path} HTTP/1.1" 404 1 "-" "{ua}" "{xff}, 203.0.113.9""#
            );
            let mut wp = p(Client::Forwarded, "all", None);
            let h = hit(wp.parse(l.as_bytes()));
            proptest::prop_assert_eq!((h.time, h.dport, h.src), (T, Some(404), ip("203.0.113.9")));
            proptest::prop_assert_eq!(wp.timestamp(l.as_bytes()), Some(T));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut line = br#"10.0.0.2 - - [21/Nov/2026:10:00:01 +0000] ""#.to_vec();
            line.extend_from_slice(&bytes);
            let mut wp = p(Client::Forwarded, "all", None);
            let _ = wp.parse(&line);
            let _ = wp.parse(&bytes);
            let _ = wp.timestamp(&line);
        }
    }
}
