//! What kind of failure an sshd message reports, and the address in it.
//!
//! A client writes some of every such message: its user name, a
//! certificate's ID, hostbased's client user and host, a GSSAPI name, the
//! text of its disconnect, the algorithms it offered, its version string. So
//! the address is only read where sshd alone writes, in one of three ways:
//! - right after sshd's fixed words at the start (`Unable to negotiate with
//!   ADDR port N: ...`), client text only after it;
//! - at the end, followed by nothing but the shape's fixed suffix (`Invalid
//!   user USER from ADDR port N`), client text only before it;
//! - in the middle, when exactly one `ADDR port N` followed by sshd's fixed
//!   punctuation stands in the message: client text on both sides can add
//!   one (then which is sshd's is not known and none is read), not hide it.
//!
//! Host names (sshd's UseDNS) are not read: fwctl never resolves a name an
//! attacker's DNS answers for. sshd itself refuses a PTR name that looks
//! like an address, so an address here is the peer's.

use crate::core::logline::{digits, parse_addr};
use memchr::memmem::{self, Finder};
use std::net::IpAddr;
use std::sync::LazyLock;

/// Searchers built once: building one per line cost more than the search.
static FROM: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b" from ").into_owned());
static PORT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b" port ").into_owned());

/// The kinds of failure, kept in a hit's `dport` so a report can say which
/// an address ran into most.
pub const KINDS: [&str; 10] = [
    "failed-password",
    "invalid-user",
    "max-attempts",
    "preauth-closed",
    "no-identification",
    "failed-other",
    "refused",
    "pam-failure",
    "negotiation-failed",
    "disconnected",
];

/// The reasons sshd gives for a user it does not allow (auth.c).
const NOT_ALLOWED: [&[u8]; 5] = [
    b" not allowed because not listed in AllowUsers",
    b" not allowed because listed in DenyUsers",
    b" not allowed because not in any group",
    b" not allowed because a group is listed in DenyGroups",
    b" not allowed because none of user's groups are listed in AllowGroups",
];

/// What kind of failure a message reports, by its fixed start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Failed {
        password: bool,
    },
    InvalidUser,
    MaxAttempts,
    /// With the words before the address ("Connection closed by ").
    PreauthClosed(&'static [u8]),
    NoIdentification,
    Banner,
    /// `ROOT LOGIN REFUSED FROM ADDR`.
    RootRefused,
    /// `User USER from ADDR not allowed because ...`.
    NotAllowed,
    /// tcp_wrappers: `refused connect from CLIENT (ADDR)`.
    TcpWrappers,
    /// `error: PAM: Authentication failure for USER from ADDR`.
    Pam,
    /// `Bad protocol version identification 'TEXT' from ADDR port N`.
    BadProtocol,
    /// `Unable to negotiate with ADDR port N: no matching ...`.
    Negotiate,
    /// `Received disconnect from ADDR port N:CODE: TEXT` before login.
    ReceivedDisconnect,
    /// `Disconnecting invalid user USER ADDR port N: REASON`.
    Disconnecting,
}

impl Kind {
    /// Its place in [`KINDS`].
    pub fn index(self) -> usize {
        match self {
            Kind::Failed { password: true } => 0,
            Kind::InvalidUser => 1,
            Kind::MaxAttempts => 2,
            Kind::PreauthClosed(_) => 3,
            Kind::NoIdentification | Kind::Banner => 4,
            Kind::Failed { password: false } => 5,
            Kind::RootRefused | Kind::NotAllowed | Kind::TcpWrappers => 6,
            Kind::Pam => 7,
            Kind::BadProtocol | Kind::Negotiate => 8,
            Kind::ReceivedDisconnect | Kind::Disconnecting => 9,
        }
    }
}

#[inline]
pub fn kind(msg: &[u8]) -> Option<Kind> {
    // By the first byte: most of auth.log is sshd's other words, and a
    // dozen prefix compares a line showed in the scan's profile.
    match *msg.first()? {
        b'F' => {
            let r = msg.strip_prefix(b"Failed ")?;
            Some(Kind::Failed {
                password: r.starts_with(b"password for "),
            })
        }
        b'I' => msg
            .starts_with(b"Invalid user ")
            .then_some(Kind::InvalidUser),
        b'C' | b'D' => {
            if msg.ends_with(b" [preauth]") {
                for lead in [
                    &b"Connection closed by "[..],
                    b"Disconnected from ",
                    b"Connection reset by ",
                ] {
                    if msg.starts_with(lead) {
                        return Some(Kind::PreauthClosed(lead));
                    }
                }
            }
            if msg.starts_with(b"Did not receive identification string from ") {
                return Some(Kind::NoIdentification);
            }
            (msg.starts_with(b"Disconnecting invalid user ")
                || msg.starts_with(b"Disconnecting authenticating user "))
            .then_some(Kind::Disconnecting)
        }
        b'e' => {
            if msg.starts_with(b"error: maximum authentication attempts exceeded for ") {
                return Some(Kind::MaxAttempts);
            }
            if msg.starts_with(b"error: PAM: ") && memmem::find(msg, b" for ").is_some() {
                return Some(Kind::Pam);
            }
            received_disconnect(msg, msg.strip_prefix(b"error: ")?)
        }
        b'R' => {
            if msg.starts_with(b"ROOT LOGIN REFUSED FROM ") {
                return Some(Kind::RootRefused);
            }
            received_disconnect(msg, msg)
        }
        b'b' => msg
            .starts_with(b"banner exchange: ")
            .then_some(Kind::Banner),
        b'U' => {
            if msg.starts_with(b"User ") && NOT_ALLOWED.iter().any(|r| msg.ends_with(r)) {
                return Some(Kind::NotAllowed);
            }
            msg.starts_with(b"Unable to negotiate with ")
                .then_some(Kind::Negotiate)
        }
        b'f' => msg
            .starts_with(b"fatal: Unable to negotiate with ")
            .then_some(Kind::Negotiate),
        b'r' => msg
            .starts_with(b"refused connect from ")
            .then_some(Kind::TcpWrappers),
        b'B' => msg
            .starts_with(b"Bad protocol version identification ")
            .then_some(Kind::BadProtocol),
        _ => None,
    }
}

/// `Received disconnect from ...` (`bare`: without `error: `) as a failure:
/// only before login (`[preauth]`), or with "key exchange failed" (3) or
/// "no more authentication methods" (14). A logged-in user's disconnect is
/// none. The client picks both, so it can only get itself counted.
fn received_disconnect(msg: &[u8], bare: &[u8]) -> Option<Kind> {
    if !bare.starts_with(b"Received disconnect from ") {
        return None;
    }
    if msg.ends_with(b" [preauth]") {
        return Some(Kind::ReceivedDisconnect);
    }
    if msg.ends_with(b": disconnected by user") {
        return None;
    }
    let code = disconnect(bare)?.1;
    (code == 3 || code == 14).then_some(Kind::ReceivedDisconnect)
}

/// The address sshd wrote in a message of this kind.
pub fn address(kind: Kind, msg: &[u8]) -> Option<IpAddr> {
    let preauth = msg.strip_suffix(b" [preauth]").unwrap_or(msg);
    match kind {
        Kind::Failed { .. } => match failed(msg) {
            Found::One(a) => Some(a),
            // More than one: the last is sshd's when only a plain key's
            // type and fingerprint (sshd's text, no room for the client's)
            // follows it, in a publickey line without a certificate. A
            // certificate's ID, hostbased's client user and host and a
            // GSSAPI name are the client's text after sshd's address: cut
            // at 500 bytes, its padding spaces stripped (the journal does),
            // the line ends in whatever the client wrote there.
            Found::Many => {
                let i = memmem::rfind(msg, b" ssh2: ")?;
                let publickey = msg.starts_with(b"Failed publickey for ");
                (publickey && memmem::find(&msg[..i], b"-CERT ").is_none()).then_some(())?;
                plain_key(&msg[i + 7..]).then_some(())?;
                let (a, before) = addr_at_end(&msg[..i], true)?;
                before.ends_with(b" from ").then_some(a)
            }
            // sshd before 7.x: "... from ADDR port N" or "... from ADDR"
            // with nothing after.
            Found::None => {
                let (a, before) = addr_at_end(msg, false)?;
                before.ends_with(b" from ").then_some(a)
            }
        },
        Kind::InvalidUser | Kind::BadProtocol => {
            // "Invalid user USER from ADDR[ port N]", "Bad protocol version
            // identification 'TEXT' from ADDR[ port N]"
            let (a, before) = addr_at_end(preauth, false)?;
            before.ends_with(b" from ").then_some(a)
        }
        Kind::MaxAttempts => {
            // "error: maximum authentication attempts exceeded for
            // [invalid user ]USER from ADDR port N ssh2 [preauth]"
            let (a, before) = addr_at_end(preauth.strip_suffix(b" ssh2")?, true)?;
            before.ends_with(b" from ").then_some(a)
        }
        Kind::PreauthClosed(lead) => {
            // "Connection closed by [authenticating user USER |invalid
            // user USER ]ADDR[ port N] [preauth]", and so on.
            preamble_fits(msg)?;
            let (a, before) = addr_at_end(msg.strip_suffix(b" [preauth]")?, false)?;
            let who = before.strip_prefix(lead)?;
            (who.is_empty()
                || who.starts_with(b"authenticating user ")
                || who.starts_with(b"invalid user "))
            .then_some(a)
        }
        Kind::NoIdentification => {
            let (a, before) = addr_at_end(preauth, false)?;
            (before == b"Did not receive identification string from ").then_some(a)
        }
        Kind::RootRefused => {
            let (a, before) = addr_at_end(preauth, false)?;
            (before == b"ROOT LOGIN REFUSED FROM ").then_some(a)
        }
        Kind::NotAllowed => {
            let body = NOT_ALLOWED.iter().find_map(|r| msg.strip_suffix(*r))?;
            let (a, before) = addr_at_end_bare(body)?;
            before.ends_with(b" from ").then_some(a)
        }
        Kind::TcpWrappers => {
            // "refused connect from USER@HOST (ADDR)": the client's ident
            // answer is in the first part; the address closes the line.
            let body = msg.strip_suffix(b")")?;
            let open = memchr::memrchr(b'(', body)?;
            body[..open].ends_with(b" ").then_some(())?;
            parse_addr(&body[open + 1..])
        }
        Kind::Pam => {
            // "error: PAM: MESSAGE for [illegal user ]USER from ADDR", on
            // macOS followed by " via LOCAL-ADDR".
            let body = match memmem::rfind(msg, b" via ") {
                Some(i) if parse_addr(&msg[i + 5..]).is_some() => &msg[..i],
                _ => msg,
            };
            let (a, before) = addr_at_end_bare(body)?;
            before.ends_with(b" from ").then_some(a)
        }
        Kind::Negotiate => {
            let bare = msg.strip_prefix(b"fatal: ").unwrap_or(msg);
            let (a, rest) = word_addr(bare.strip_prefix(b"Unable to negotiate with ")?)?;
            let rest = rest.strip_prefix(b" port ")?;
            let d = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            (port(&rest[..d]) && rest[d..].starts_with(b": ")).then_some(a)
        }
        Kind::ReceivedDisconnect => {
            let bare = msg.strip_prefix(b"error: ").unwrap_or(msg);
            Some(disconnect(bare)?.0)
        }
        Kind::Disconnecting => {
            preamble_fits(msg)?;
            match addr_port_colon(msg) {
                Found::One(a) => Some(a),
                _ => None,
            }
        }
        Kind::Banner => {
            // "banner exchange: Connection from ADDR port N: REASON": no
            // client text before the address; REASON is ssh_err()'s.
            let rest = msg.strip_prefix(b"banner exchange: Connection from ")?;
            let sp = memchr::memchr(b' ', rest)?;
            let a = parse_addr(&rest[..sp])?;
            let r = rest[sp..].strip_prefix(b" port ")?;
            let colon = memchr::memchr(b':', r)?;
            let reason = r[colon..].strip_prefix(b": ")?;
            (port(&r[..colon])
                && reason
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b" ,'()[]-".contains(&b)))
            .then_some(a)
        }
    }
}

/// sshd cuts its preamble (`invalid user USER`, before the address) at 200
/// bytes, before escaping: without escapes a line with one is shorter than
/// this (Disconnecting's reason, at most 100 bytes, included). A longer one
/// has the client's escapes (`\ooo`, 4 bytes a byte) and may be one cut at
/// 500 bytes inside the user name, its padding spaces stripped by the
/// journal: its end is then the client's (at least 428 bytes).
const PREAMBLE_LINE: usize = 400;

fn preamble_fits(msg: &[u8]) -> Option<()> {
    (msg.len() < PREAMBLE_LINE).then_some(())
}

/// How many of a shape a message holds.
enum Found {
    None,
    One(IpAddr),
    Many,
}

impl Found {
    fn add(self, a: IpAddr) -> Found {
        match self {
            Found::None => Found::One(a),
            _ => Found::Many,
        }
    }
}

/// `from ADDR port N ssh2` (or `ssh1`) ending the message or followed by
/// ": " (sshd's auth info: a key, a certificate, hostbased's client):
/// sshd writes exactly one; a client's user name or certificate ID can
/// add another, never take sshd's away.
fn failed(msg: &[u8]) -> Found {
    let mut found = Found::None;
    for i in FROM.find_iter(msg) {
        let Some((a, r)) = word_addr(&msg[i + 6..]) else {
            continue;
        };
        let Some(r) = r.strip_prefix(b" port ") else {
            continue;
        };
        let d = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if !port(&r[..d]) {
            continue;
        }
        let Some(r) = r[d..]
            .strip_prefix(b" ssh2")
            .or_else(|| r[d..].strip_prefix(b" ssh1"))
        else {
            continue;
        };
        if r.is_empty() || r.starts_with(b": ") {
            found = found.add(a);
        }
    }
    found
}

/// `ADDR port N: ` anywhere in `msg`, where sshd writes `Disconnecting
/// invalid user USER ADDR port N: REASON`.
fn addr_port_colon(msg: &[u8]) -> Found {
    let mut found = Found::None;
    for i in PORT.find_iter(msg) {
        let start = memchr::memrchr(b' ', &msg[..i]).map_or(0, |s| s + 1);
        let Some(a) = parse_addr(&msg[start..i]) else {
            continue;
        };
        let r = &msg[i + 6..];
        let d = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if port(&r[..d]) && r[d..].starts_with(b": ") {
            found = found.add(a);
        }
    }
    found
}

/// "Received disconnect from ADDR[ port N]:CODE: TEXT" (older sshd:
/// "ADDR: CODE: TEXT"): the address, right after sshd's words, and CODE.
fn disconnect(msg: &[u8]) -> Option<(IpAddr, u32)> {
    let r = msg.strip_prefix(b"Received disconnect from ")?;
    let end = r.iter().position(|&b| b == b' ' || b == b':')?;
    let a = parse_addr(&r[..end])?;
    let mut r = &r[end..];
    if let Some(p) = r.strip_prefix(b" port ") {
        let d = p.iter().take_while(|b| b.is_ascii_digit()).count();
        if !port(&p[..d]) {
            return None;
        }
        r = &p[d..];
    }
    let r = r.strip_prefix(b":")?;
    let r = r.strip_prefix(b" ").unwrap_or(r);
    let d = r.iter().take_while(|b| b.is_ascii_digit()).count();
    let code = u32::try_from(digits(&r[..d])?).ok()?;
    r[d..].starts_with(b":").then_some((a, code))
}

/// The address that is `s`'s first word, and what follows it.
fn word_addr(s: &[u8]) -> Option<(IpAddr, &[u8])> {
    let end = memchr::memchr(b' ', s).unwrap_or(s.len());
    Some((parse_addr(&s[..end])?, &s[end..]))
}

/// `ADDR port N` (or, unless `port` is required, a bare `ADDR`) at the
/// very end of `s`: the address, and what comes before it (up to and with
/// the space before the address).
pub fn addr_at_end(s: &[u8], port_required: bool) -> Option<(IpAddr, &[u8])> {
    let sp = memchr::memrchr(b' ', s)?;
    if port(&s[sp + 1..]) {
        if let Some(body) = s[..sp].strip_suffix(b" port") {
            return addr_at_end_bare(body);
        }
    }
    if port_required {
        return None;
    }
    addr_at_end_bare(s)
}

/// The address that is the last word of `s`, and what comes before it.
fn addr_at_end_bare(s: &[u8]) -> Option<(IpAddr, &[u8])> {
    let start = memchr::memrchr(b' ', s).map_or(0, |i| i + 1);
    Some((parse_addr(&s[start..])?, &s[..start]))
}

/// A plain key's `TYPE FINGERPRINT` as sshd writes it after a `Failed`
/// line's "ssh2: " (`RSA SHA256:...`, `ED25519-SK SHA256:..., signature
/// count = 3`): no room for client text.
fn plain_key(s: &[u8]) -> bool {
    let s = match memmem::find(s, b", signature count = ") {
        Some(i) if digits(&s[i + 20..]).is_some() => &s[..i],
        Some(_) => return false,
        None => s,
    };
    let Some(sp) = memchr::memchr(b' ', s) else {
        return false;
    };
    let (ty, fp) = (&s[..sp], &s[sp + 1..]);
    let fp_ok = fp == b"(null)"
        || [&b"SHA256:"[..], b"MD5:"].iter().any(|h| {
            fp.strip_prefix(*h).is_some_and(|v| {
                !v.is_empty()
                    && v.iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b"+/=:".contains(&b))
            })
        });
    !ty.is_empty()
        && ty
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        && fp_ok
}

fn port(s: &[u8]) -> bool {
    s.len() <= 5 && digits(s).is_some_and(|p| p <= 65_535)
}
