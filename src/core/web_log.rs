//! Web servers' access logs (pure): nginx's and Apache's combined and common
//! formats, `203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1"
//! 404 153 "-" "curl/8.0"`. A line becomes a hit for its client address
//! (the first field, or with `Client::Forwarded` what the trusted proxies'
//! X-Forwarded-For says), its status, and the `[[pattern]]`s its request
//! line matches.
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
//! there. With trusted proxies, it is read only on a line whose peer (the
//! first field) is one of them, walked from its right end past the trusted
//! proxies' own addresses (nginx's `real_ip_recursive`): the first address
//! that is not one is the client.

use super::logline::{digits, parse_addr, Hit, Line, Malformed, Proto, Stamps};
use super::web_requests::Requests;
use crate::units::time::Zone;
use crate::units::Invalid;
use ipnet::IpNet;
use regex::bytes::RegexSet;
use std::net::IpAddr;

/// Where the client's address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// The line's first field ($remote_addr, %h): the peer of the connection.
    Remote,
    /// On a line whose peer is a trusted proxy, X-Forwarded-For written as
    /// the line's last quoted field (nginx `"$http_x_forwarded_for"`, Apache
    /// `"%{X-Forwarded-For}i"`), walked from the right past trusted proxies;
    /// the peer on any other line, or when that value is "-".
    Forwarded,
}

/// How many X-Forwarded-For addresses are walked at most: a chain of
/// trusted proxies is short; the rest of a longer value is the client's.
pub const MAX_HOPS: usize = 16;
/// Which statuses count: a bitmap over 100..=599.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statuses([bool; 600]);

impl Statuses {
    pub fn all() -> Statuses {
        Statuses([true; 600])
    }

    /// `4xx`, `5xx`, `401,403,404,444`, `400-499`, or a mix of them.
    pub fn parse(s: &str) -> Result<Statuses, Invalid> {
        let bad = || {
            Invalid(format!(
                "--status \"{s}\": fix: e.g. 4xx, 5xx, 401,403,404,444 or 400-499"
            ))
        };
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
    /// The trusted proxies (--trusted-proxy, [web] trusted_proxies).
    proxies: Vec<IpNet>,
    statuses: Statuses,
    /// The request patterns asked for (--match); None: every request counts.
    patterns: Option<Requests>,
}

impl WebParser {
    pub fn new(
        zone: Zone,
        now: i64,
        window: (i64, i64),
        (client, proxies): (Client, Vec<IpNet>),
        statuses: Statuses,
        patterns: Option<RegexSet>,
    ) -> WebParser {
        WebParser {
            stamps: Stamps::new(zone, now),
            window,
            client,
            proxies,
            statuses,
            patterns: patterns.map(Requests::new),
        }
    }

    pub fn window(&self) -> (i64, i64) {
        self.window
    }

    /// Move the window (a follower's slides as time goes on).
    pub fn set_window(&mut self, window: (i64, i64)) {
        self.window = window;
    }

    /// Every line of an access log is a candidate: its timestamp opens with
    /// " [" after the client and user fields.
    pub fn needle(&self) -> &'static [u8] {
        b" ["
    }

    pub fn timestamp(&mut self, line: &[u8]) -> Option<i64> {
        let q = request_open(line, memchr::memchr(b' ', line)?)?;
        self.stamps.web(stamp_before(line, q)?)
    }

    pub fn parse(&mut self, line: &[u8]) -> Line {
        self.parse_line(line, false)
    }

    /// What [`Self::parse`] gives a line holding the needle, and `Other`
    /// for a line without it, without searching every line for the needle
    /// first (the scan hands every line here): a line whose time is read
    /// holds it (the space before the bracket), so only a line that fails
    /// before that is searched.
    pub fn parse_candidate(&mut self, line: &[u8]) -> Line {
        self.parse_line(line, true)
    }

    fn parse_line(&mut self, line: &[u8], unsearched: bool) -> Line {
        let malformed = |why| {
            if unsearched && memchr::memmem::find(line, b" [").is_none() {
                Line::Other
            } else {
                Line::Malformed(why)
            }
        };
        let Some(sp) = memchr::memchr(b' ', line) else {
            return Line::Other;
        };
        // The request's opening quote: nothing before it can hold one.
        let Some(open) = request_open(line, sp) else {
            return match memchr::memchr(b'[', line) {
                Some(_) => malformed(Malformed::NoRequest),
                None => Line::Other,
            };
        };
        let Some(time) = stamp_before(line, open).and_then(|s| self.stamps.web(s)) else {
            return malformed(Malformed::Timestamp);
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
        let marks = match &mut self.patterns {
            None => 0,
            Some(set) => match set.marks(request) {
                0 => return Line::Unwanted,
                m => m,
            },
        };
        let Some(peer) = parse_addr(&line[..sp]) else {
            return Line::Malformed(Malformed::NoClient);
        };
        let src = match self.client {
            Client::Forwarded if self.trusted(peer) => {
                match last_quoted(&rest[4..]).and_then(|v| walk(v, &self.proxies)) {
                    Some(Some(a)) => a,
                    Some(None) => peer,
                    None => return Line::Malformed(Malformed::NoForwarded),
                }
            }
            _ => peer,
        };
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

    fn trusted(&self, a: IpAddr) -> bool {
        self.proxies.iter().any(|n| n.contains(&a))
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

/// The request's opening quote, searched from the first space `sp`: the
/// first unescaped quote, but for Apache's empty user name (Basic auth
/// with none), which it writes as `""` right before the time, the only
/// quotes that can stand before the request.
fn request_open(line: &[u8], sp: usize) -> Option<usize> {
    let at = sp + first_quote(&line[sp..])?;
    if line[at - 1] == b' ' && line[at..].starts_with(b"\"\" [") {
        return Some(at + 2 + first_quote(&line[at + 2..])?);
    }
    Some(at)
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

/// After the status: the content of the last of the quoted fields, which
/// must be at least three (referer, user agent, X-Forwarded-For), so that
/// a combined line without X-Forwarded-For never has its user agent read
/// as one. None when they are not well formed.
fn last_quoted(mut s: &[u8]) -> Option<&[u8]> {
    let (mut n, mut last) = (0, None);
    while let Some(open) = first_quote(s) {
        let q = &s[open + 1..];
        let end = closing_quote(q)?;
        last = Some(&q[..end]);
        n += 1;
        s = &q[end + 1..];
    }
    (n >= 3).then_some(last?)
}

/// X-Forwarded-For walked from its right end: the first address that is
/// not a trusted proxy's is the client; when every address walked is one,
/// the leftmost of them. Some(None) when the value is "-" or empty (no
/// header: the peer sent the request itself); None when its last element is
/// not an address.
fn walk(value: &[u8], proxies: &[IpNet]) -> Option<Option<IpAddr>> {
    if value == b"-" || value.is_empty() {
        return Some(None);
    }
    let mut leftmost = None;
    for part in value.rsplit(|&b| b == b',').take(MAX_HOPS) {
        // An address that does not parse ends the walk, as in nginx: the
        // trusted proxies write addresses, so it came from the client.
        let Some(a) = parse_addr(part.trim_ascii()) else {
            break;
        };
        if !proxies.iter().any(|n| n.contains(&a)) {
            return Some(Some(a));
        }
        leftmost = Some(a);
    }
    leftmost.map(Some)
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
            (
                client,
                vec![
                    "10.0.0.0/24".parse().unwrap(),
                    "2001:db8:a::/48".parse().unwrap(),
                ],
            ),
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

    fn src(wp: &mut WebParser, l: &str) -> IpAddr {
        hit(wp.parse(l.as_bytes())).src
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies_walking_past_them() {
        let line = |peer: &str, xff: &str| {
            format!(
                r#"{peer} - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "{xff}""#
            )
        };
        let mut fwd = p(Client::Forwarded, "all", None);
        let mut remote = p(Client::Remote, "all", None);
        // The client claims 192.0.2.1; our proxy appended 203.0.113.9.
        let l = line("10.0.0.2", "192.0.2.1, 203.0.113.9");
        assert_eq!(src(&mut remote, &l), ip("10.0.0.2"));
        assert_eq!(src(&mut fwd, &l), ip("203.0.113.9"));
        // Two proxies of ours: walked past, right to left.
        let l = line("10.0.0.2", "192.0.2.1, 203.0.113.9, 10.0.0.7");
        assert_eq!(src(&mut fwd, &l), ip("203.0.113.9"));
        let l = line(
            "10.0.0.2",
            "192.0.2.1,203.0.113.9 ,2001:db8:a::3, ::ffff:10.0.0.7",
        );
        assert_eq!(src(&mut fwd, &l), ip("203.0.113.9"));
        // Every address a trusted proxy's: the leftmost.
        let l = line("10.0.0.2", "10.0.0.9, 10.0.0.7");
        assert_eq!(src(&mut fwd, &l), ip("10.0.0.9"));
        // A direct client (not a trusted proxy) counts against itself,
        // whatever it writes.
        let l = line("203.0.113.4", "192.0.2.1");
        assert_eq!(src(&mut fwd, &l), ip("203.0.113.4"));
        let l = line("203.0.113.4", "not an ip");
        assert_eq!(src(&mut fwd, &l), ip("203.0.113.4"));
        // No header through the proxy: the proxy's own request.
        let l = line("10.0.0.2", "-");
        assert_eq!(src(&mut fwd, &l), ip("10.0.0.2"));
        // An address list the walk cannot start on.
        for xff in ["not an ip", "192.0.2.1, garbage", "192.0.2.1:80"] {
            let l = line("10.0.0.2", xff);
            assert_eq!(
                fwd.parse(l.as_bytes()),
                Line::Malformed(Malformed::NoForwarded),
                "{xff}"
            );
        }
        // Garbage further left ends the walk at the last proxy passed.
        let l = line("10.0.0.2", "garbage, 10.0.0.8");
        assert_eq!(src(&mut fwd, &l), ip("10.0.0.8"));
        // Bounded: past MAX_HOPS addresses of our proxies, the walk stops.
        let many = vec!["10.0.0.5"; MAX_HOPS + 5].join(", ");
        let l = line("10.0.0.2", &format!("192.0.2.1, {many}"));
        assert_eq!(src(&mut fwd, &l), ip("10.0.0.5"));
    }

    #[test]
    fn a_user_agent_is_never_read_as_x_forwarded_for() {
        let mut fwd = p(Client::Forwarded, "all", None);
        // A plain combined line from the proxy: its last quoted field is the
        // user agent, which the client wrote.
        let combined =
            r#"10.0.0.2 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "192.0.2.1""#;
        assert_eq!(
            fwd.parse(combined.as_bytes()),
            Line::Malformed(Malformed::NoForwarded)
        );
        // Quotes in the user agent are escaped: still four fields, the last
        // the header.
        let esc = r#"10.0.0.2 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "a\" \"192.0.2.1" "203.0.113.9""#;
        assert_eq!(src(&mut fwd, esc), ip("203.0.113.9"));
        let esc = r#"10.0.0.2 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "a\x22 \x22192.0.2.1" "203.0.113.9""#;
        assert_eq!(src(&mut fwd, esc), ip("203.0.113.9"));
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

    /// Addresses an attacker plants in the fields it writes (the odd log of
    /// benches/scan-shapes.sh has each of these) never become the client,
    /// whichever form the client's own address takes.
    #[test]
    fn planted_addresses_never_become_the_client() {
        let mut wp = p(Client::Remote, "all", None);
        for client in [
            "198.51.100.7",
            "2001:db8::7",
            "2001:db8:1:2:3:4:5:6",
            "2001:0DB8:0000:0000:0000:0000:0000:0007",
        ] {
            for l in [
                format!(
                    r#"{client} - 203.0.113.250 [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 404 1 "-" "ua""#
                ),
                format!(
                    r#"{client} - - [21/Nov/2026:10:00:01 +0000] "GET /203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] HTTP/1.1" 404 1 "http://192.0.2.1/" "sqlmap \"203.0.113.9\" 2001:db8::1""#
                ),
                format!(
                    r#"{client} - "" [21/Nov/2026:10:00:01 +0000] "GET /a\" 200 1 \"b HTTP/1.1" 404 1 "-" "x\x22 198.51.100.1 \x22y" "203.0.113.8, 2001:db8::9""#
                ),
            ] {
                let h = hit(wp.parse(l.as_bytes()));
                assert_eq!((h.src, h.dport), (ip(client), Some(404)), "{l}");
            }
        }
    }

    /// Apache writes an empty user name (`Authorization: Basic Og==`) as
    /// `""`: the client chose it, and it does not hide the line.
    #[test]
    fn an_apache_empty_user_name_neither_hides_nor_steers_a_line() {
        let mut wp = p(Client::Remote, "all", None);
        let l = r#"203.0.113.5 - "" [21/Nov/2026:10:00:01 +0000] "GET /admin HTTP/1.1" 401 381 "-" "ua""#;
        let h = hit(wp.parse(l.as_bytes()));
        assert_eq!((h.src, h.time, h.dport), (ip("203.0.113.5"), T, Some(401)));
        assert_eq!(wp.timestamp(l.as_bytes()), Some(T));
        // An empty request line (nginx's `""` after a client sent nothing)
        // is still the request.
        let l = r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "" 400 0 "-" "-""#;
        assert_eq!(hit(wp.parse(l.as_bytes())).dport, Some(400));
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

    #[test]
    fn ipv6_clients_in_every_form_web_servers_write() {
        let mut wp = p(Client::Remote, "all", None);
        for a in [
            "2001:db8::5",
            "::1",
            "2001:db8:a:b:c:d:e:f",
            "2001:DB8:0:0:1::7",
            "2001:db8::ffff:1",
            "::ffff:203.0.113.7",
            "2001:0db8:0000:0000:0000:0000:0000:0009",
        ] {
            let l = NGINX.replacen("203.0.113.5", a, 1);
            let want: IpAddr = match a.parse().unwrap() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            assert_eq!(src(&mut wp, &l), want, "{a}");
        }
        for bad in [
            "2001:db8:::5",
            "2001:db8::5::1",
            "12345::1",
            "2001:db8::g",
            ":",
            "1:2:3:4:5:6:7:8:9",
        ] {
            let l = NGINX.replacen("203.0.113.5", bad, 1);
            assert_eq!(
                wp.parse(l.as_bytes()),
                Line::Malformed(Malformed::NoClient),
                "{bad}"
            );
        }
    }

    /// The scan hands every line to `parse_candidate` without searching for
    /// the needle: it answers as `parse` on a line holding the needle, and
    /// `Other` on one without it, malformed or not.
    #[test]
    fn every_line_handed_over_unsearched_reads_as_a_searched_one() {
        let lines = [
            NGINX,
            APACHE_COMMON,
            r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET /a\"b\x22 [c] HTTP/1.1" 404 1 "-" "x\" [1/Jan/2020:00:00:00 +0000] 200""#,
            r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 4040 1"#,
            r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1 404 1"#,
            r#"203.0.113.5 - - [21/Nov/2026:10:00:01 +0000]"#,
            r#"203.0.113.5 - - [garbage] "GET / HTTP/1.1" 404 1"#,
            r#"203.0.113.5 - - 21/Nov/2026:10:00:01 "GET / HTTP/1.1" 404 1"#,
            r#"nginx: [emerg] bind() failed "x""#,
            "2026/11/21 10:00:01 [error] 12#12: *1 open() failed",
            "",
            " [",
            "no spaces",
            r#""[21/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 404 1"#,
        ];
        for l in lines {
            let searched = memchr::memmem::find(l.as_bytes(), b" [").is_some();
            for st in ["all", "4xx", "5xx"] {
                let mut a = p(Client::Remote, st, None);
                let mut b = p(Client::Remote, st, None);
                let want = if searched {
                    a.parse(l.as_bytes())
                } else {
                    Line::Other
                };
                assert_eq!(b.parse_candidate(l.as_bytes()), want, "{l}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn unsearched_lines_read_as_searched_ones(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), head in proptest::bool::ANY) {
            let mut line = if head { br#"10.0.0.2 - - [21/Nov/2026:10:00:01 +0000] ""#.to_vec() } else { Vec::new() };
            line.extend_from_slice(&bytes);
            let searched = memchr::memmem::find(&line, b" [").is_some();
            let want = if searched { p(Client::Remote, "all", None).parse(&line) } else { Line::Other };
            proptest::prop_assert_eq!(p(Client::Remote, "all", None).parse_candidate(&line), want);
        }

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
