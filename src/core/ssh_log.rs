//! sshd's lines in auth.log (RFC 3339 or `Nov 21 10:00:01`) or the journal
//! (`journalctl -o short-iso-precise`), pure. What counts, per address:
//! failed passwords and keys, invalid users, "maximum authentication
//! attempts exceeded", connections closed or cut before authentication
//! (`[preauth]`) and clients that never said who they were. An accepted
//! login never counts; nor does anything else sshd says.
//!
//! A client writes some of every such message: its user name (and, in a
//! `Failed` line, a certificate's ID or hostbased's client user and host).
//! So the address is only read where sshd alone writes: the `ADDR port N`
//! at the end of the message, followed by nothing but the fixed suffix of
//! its shape (` ssh2`, ` [preauth]`, a plain key's type and fingerprint).
//! And only from lines whose program is `sshd` or `sshd-session`, in the
//! program field itself, not anywhere in the line. A message of 500 bytes
//! or more may have been cut there by sshd (`syslog(3)` with `%.500s`), its
//! end then the client's text: its address is not read either.
//!
//! rsyslog folds repeats into "message repeated N times: [ ... ]": that line
//! counts N times.

use super::logline::{digits, parse_addr, Hit, Line, Malformed, Proto, Stamps};
use crate::units::time::Zone;
use memchr::memmem::{Finder, FinderRev};
use std::net::IpAddr;

/// The kinds of failure, kept in a hit's `dport` so a report can say which
/// an address ran into most.
pub const KINDS: [&str; 6] = [
    "failed-password",
    "invalid-user",
    "max-attempts",
    "preauth-closed",
    "no-identification",
    "failed-other",
];

/// sshd cuts a message at 500 bytes: one this long may end in client text.
const CUT: usize = 500;

#[derive(Clone)]
pub struct SshParser {
    stamps: Stamps,
    window: (i64, i64),
    /// Searchers built once: building one per line cost more than the search.
    repeated: Finder<'static>,
    key: FinderRev<'static>,
}

impl SshParser {
    pub fn new(zone: Zone, now: i64, window: (i64, i64)) -> SshParser {
        SshParser {
            stamps: Stamps::new(zone, now),
            window,
            repeated: Finder::new(b": [ ").into_owned(),
            key: FinderRev::new(b" ssh2: ").into_owned(),
        }
    }

    pub fn window(&self) -> (i64, i64) {
        self.window
    }

    /// sshd and sshd-session (OpenSSH 9.8 on) both start with it.
    pub fn needle(&self) -> &'static [u8] {
        b" sshd"
    }

    pub fn timestamp(&mut self, line: &[u8]) -> Option<i64> {
        self.stamps.syslog(line)
    }

    pub fn parse(&mut self, line: &[u8]) -> Line {
        let Some(msg) = message(line) else {
            return Line::Other;
        };
        let (mut msg, mut n) = (msg, 1u32);
        if let Some(r) = msg.strip_prefix(b"message repeated ") {
            let sp = memchr::memchr(b' ', r).unwrap_or(0);
            match (digits(&r[..sp]), self.repeated.find(r)) {
                (Some(k), Some(i)) => {
                    n = u32::try_from(k).unwrap_or(u32::MAX);
                    // rsyslog writes "[ MSG]": the bracket closes MSG.
                    msg = r[i + 4..].strip_suffix(b"]").unwrap_or(&r[i + 4..]);
                }
                _ => return Line::Other,
            }
        }
        let Some(kind) = kind(msg) else {
            return Line::Other;
        };
        let Some(time) = self.stamps.syslog(line) else {
            return Line::Malformed(Malformed::Timestamp);
        };
        if time < self.window.0 || time > self.window.1 {
            return Line::Outside;
        }
        let Some(src) = self.address(kind, msg) else {
            return Line::Malformed(Malformed::NoSshAddr);
        };
        Line::Hit(Hit {
            time,
            prefix: 0,
            src,
            proto: Proto::Tcp,
            dport: Some(kind.index() as u16),
            marks: 0,
            n,
        })
    }

    /// The address sshd wrote at the end of a message of this kind, with
    /// nothing after it but the shape's fixed suffix.
    fn address(&self, kind: Kind, msg: &[u8]) -> Option<IpAddr> {
        if msg.len() >= CUT {
            return None;
        }
        match kind {
            Kind::Failed { .. } => {
                // "Failed METHOD for [invalid user ]USER from ADDR port N
                // ssh2[: KEY]": only a plain key's type and fingerprint may
                // follow; a certificate's ID, hostbased's client user and
                // host or a GSSAPI name are text the client chose, in which
                // another " from ADDR port N ssh2" could stand. METHOD is
                // sshd's own word; GSSAPI's name may follow a bare "ssh2".
                if msg[7..].starts_with(b"gssapi") {
                    return None;
                }
                let body = match msg.strip_suffix(b" ssh2") {
                    Some(b) => b,
                    None => {
                        let i = self.key.rfind(msg)?;
                        plain_key(&msg[i + 7..]).then_some(&msg[..i])?
                    }
                };
                let (a, before) = addr_port_at_end(body)?;
                before.ends_with(b" from ").then_some(a)
            }
            Kind::InvalidUser => {
                // "Invalid user USER from ADDR port N"
                let body = msg.strip_suffix(b" [preauth]").unwrap_or(msg);
                let (a, before) = addr_port_at_end(body)?;
                before.ends_with(b" from ").then_some(a)
            }
            Kind::MaxAttempts => {
                // "error: maximum authentication attempts exceeded for
                // [invalid user ]USER from ADDR port N ssh2 [preauth]"
                let body = msg.strip_suffix(b" [preauth]").unwrap_or(msg);
                let (a, before) = addr_port_at_end(body.strip_suffix(b" ssh2")?)?;
                before.ends_with(b" from ").then_some(a)
            }
            Kind::PreauthClosed(lead) => {
                // "Connection closed by [authenticating user USER |invalid
                // user USER ]ADDR port N [preauth]", and so on.
                let (a, before) = addr_port_at_end(msg.strip_suffix(b" [preauth]")?)?;
                let who = before.strip_prefix(lead)?;
                (who.is_empty()
                    || who.starts_with(b"authenticating user ")
                    || who.starts_with(b"invalid user "))
                .then_some(a)
            }
            Kind::NoIdentification => {
                // "Did not receive identification string from ADDR port N"
                let body = msg.strip_suffix(b" [preauth]").unwrap_or(msg);
                let (a, before) = addr_port_at_end(body)?;
                (before == b"Did not receive identification string from ").then_some(a)
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
}

/// What kind of failure a message reports, by its fixed start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Failed {
        password: bool,
    },
    InvalidUser,
    MaxAttempts,
    /// With the words before the address ("Connection closed by ").
    PreauthClosed(&'static [u8]),
    NoIdentification,
    Banner,
}

impl Kind {
    /// Its place in [`KINDS`].
    fn index(self) -> usize {
        match self {
            Kind::Failed { password: true } => 0,
            Kind::InvalidUser => 1,
            Kind::MaxAttempts => 2,
            Kind::PreauthClosed(_) => 3,
            Kind::NoIdentification | Kind::Banner => 4,
            Kind::Failed { password: false } => 5,
        }
    }
}

fn kind(msg: &[u8]) -> Option<Kind> {
    if let Some(r) = msg.strip_prefix(b"Failed ") {
        return Some(Kind::Failed {
            password: r.starts_with(b"password for "),
        });
    }
    if msg.starts_with(b"Invalid user ") {
        return Some(Kind::InvalidUser);
    }
    if msg.starts_with(b"error: maximum authentication attempts exceeded for ") {
        return Some(Kind::MaxAttempts);
    }
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
    if msg.starts_with(b"banner exchange: ") {
        return Some(Kind::Banner);
    }
    None
}

/// The message of a line whose program is exactly `sshd` or `sshd-session`
/// (with or without `[PID]`): `STAMP HOST PROGRAM[PID]: MESSAGE`, the
/// program read where the syslog header puts it, after the stamp and the
/// host, so that no other program's message can pass for sshd's.
fn message(line: &[u8]) -> Option<&[u8]> {
    let stamp_end = if line.len() >= 20 && line[4] == b'-' && line[10] == b'T' {
        // RFC 3339, or journalctl's short-iso-precise: one word.
        memchr::memchr(b' ', line)?
    } else if line.len() >= 16 && line[3] == b' ' && line[6] == b' ' && line[15] == b' ' {
        // "Nov 21 10:00:01", "Nov  1 10:00:01".
        15
    } else {
        return None;
    };
    let rest = &line[stamp_end + 1..];
    let host = memchr::memchr(b' ', rest)?;
    if host == 0 {
        return None;
    }
    let tag = rest[host + 1..].strip_prefix(b"sshd")?;
    let tag = tag.strip_prefix(b"-session").unwrap_or(tag);
    let tag = match tag.strip_prefix(b"[") {
        Some(r) => {
            let close = memchr::memchr(b']', r)?;
            if close == 0 || !r[..close].iter().all(u8::is_ascii_digit) {
                return None;
            }
            &r[close + 1..]
        }
        None => tag,
    };
    tag.strip_prefix(b": ")
}

/// `ADDR port N` at the very end of `s`: the address, and what comes
/// before it (up to and with the space before the address).
fn addr_port_at_end(s: &[u8]) -> Option<(IpAddr, &[u8])> {
    let sp = memchr::memrchr(b' ', s)?;
    if !port(&s[sp + 1..]) {
        return None;
    }
    let s = s[..sp].strip_suffix(b" port")?;
    let start = memchr::memrchr(b' ', s).map_or(0, |i| i + 1);
    Some((parse_addr(&s[start..])?, &s[..start]))
}

fn port(s: &[u8]) -> bool {
    s.len() <= 5 && digits(s).is_some_and(|p| p <= 65_535)
}

/// A plain key's `TYPE FINGERPRINT` as sshd writes it after a `Failed`
/// line's "ssh2: " (`RSA SHA256:...`, `ED25519-SK SHA256:..., signature
/// count = 3`): no room for client text.
fn plain_key(s: &[u8]) -> bool {
    let s = match memchr::memmem::find(s, b", signature count = ") {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    // 2026-11-21T10:00:01Z
    const T: i64 = 1_795_255_201;

    fn p() -> SshParser {
        SshParser::new(Zone::fixed(0), T + 60, (T - 600, T + 600))
    }

    fn hit(line: &str) -> Hit {
        match p().parse(line.as_bytes()) {
            Line::Hit(h) => h,
            other => panic!("{other:?}: {line}"),
        }
    }

    #[test]
    fn failures_count_in_both_timestamp_forms_and_logins_never() {
        let rfc = "2026-11-21T10:00:01.123456+00:00 host sshd[1234]: ";
        let bsd = "Nov 21 10:00:01 host sshd[1234]: ";
        let journal = "2026-11-21T10:00:01.123456+0000 host sshd-session[77]: ";
        for head in [rfc, bsd, journal] {
            for (msg, k, a) in [
                ("Failed password for root from 203.0.113.5 port 22 ssh2", 0, "203.0.113.5"),
                ("Failed password for invalid user admin from 2001:db8::7 port 2222 ssh2", 0, "2001:db8::7"),
                ("Invalid user admin from 203.0.113.6 port 44444", 1, "203.0.113.6"),
                ("error: maximum authentication attempts exceeded for root from 203.0.113.8 port 22 ssh2 [preauth]", 2, "203.0.113.8"),
                ("Connection closed by authenticating user root 203.0.113.9 port 40000 [preauth]", 3, "203.0.113.9"),
                ("Disconnected from invalid user x 203.0.113.10 port 1 [preauth]", 3, "203.0.113.10"),
                ("Connection closed by 203.0.113.11 port 5555 [preauth]", 3, "203.0.113.11"),
                ("Did not receive identification string from 203.0.113.12 port 9", 4, "203.0.113.12"),
                ("Failed publickey for git from 203.0.113.13 port 1 ssh2: RSA SHA256:abc", 5, "203.0.113.13"),
            ] {
                let h = hit(&format!("{head}{msg}"));
                assert_eq!((h.time, h.dport, h.src), (T, Some(k), a.parse::<IpAddr>().unwrap()), "{head}{msg}");
            }
        }
        for other in [
            "Nov 21 10:00:01 host sshd[1]: Accepted password for alice from 198.51.100.7 port 50000 ssh2",
            "Nov 21 10:00:01 host sshd[1]: Accepted publickey for alice from 198.51.100.7 port 50000 ssh2: ED25519",
            "Nov 21 10:00:01 host sshd[1]: Server listening on 0.0.0.0 port 22.",
            "Nov 21 10:00:01 host sshd[1]: Connection closed by 198.51.100.7 port 50000",
            "Nov 21 10:00:01 host CRON[2]: pam_unix(cron:session): session opened for user root",
            "Nov 21 10:00:01 host kernel: IPTABLES-BLOCKED: SRC=203.0.113.5",
        ] {
            assert_eq!(p().parse(other.as_bytes()), Line::Other, "{other}");
        }
    }

    fn src(line: &str) -> IpAddr {
        hit(line).src
    }

    #[test]
    fn the_address_is_the_last_one_anchored_at_the_end_of_the_message() {
        // The user name, which the client chooses, names another address:
        // the one sshd wrote, at the end, counts.
        let real = "203.0.113.5".parse::<IpAddr>().unwrap();
        for msg in [
            "Invalid user x from 192.0.2.99 port 22 from 203.0.113.5 port 4444",
            "Invalid user 127.0.0.1 port 22 from 203.0.113.5 port 4444",
            "Invalid user  from 203.0.113.5 port 4444",
            "Failed password for invalid user x from 127.0.0.1 port 22 ssh2 from 203.0.113.5 port 4444 ssh2",
            "Failed password for invalid user x ssh2: RSA SHA256:a from 127.0.0.1 port 1 ssh2: RSA SHA256:b from 203.0.113.5 port 4444 ssh2",
            "Failed publickey for invalid user a from 192.0.2.99 port 1 ssh2: RSA SHA256:x from 203.0.113.5 port 4444 ssh2: ED25519 SHA256:q1w2/e+3=",
            "Failed publickey for git from 203.0.113.5 port 4444 ssh2: ECDSA-SK SHA256:abc, signature count = 7",
            "error: maximum authentication attempts exceeded for invalid user x from 127.0.0.1 port 22 ssh2 from 203.0.113.5 port 1 ssh2 [preauth]",
            "Connection closed by authenticating user test 127.0.0.1 port 12345 203.0.113.5 port 46039 [preauth]",
            "Connection closed by invalid user  203.0.113.5 port 34916 [preauth]",
            "Connection reset by authenticating user root 203.0.113.5 port 1558 [preauth]",
            "Disconnected from invalid user 192.0.2.99 port 1 203.0.113.5 port 2 [preauth]",
            "Did not receive identification string from 203.0.113.5 port 9",
            "banner exchange: Connection from 203.0.113.5 port 44105: invalid format",
        ] {
            assert_eq!(src(&format!("Nov 21 10:00:01 host sshd[1]: {msg}")), real, "{msg}");
        }
        let v6 = "Invalid user a from 2001:db8::99 port 22 from 2001:db8::5 port 4444";
        assert_eq!(
            src(&format!("Nov 21 10:00:01 host sshd[1]: {v6}")),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        let v6 = "banner exchange: Connection from 2001:db8::5 port 4: Connection timed out";
        assert_eq!(
            src(&format!("Nov 21 10:00:01 host sshd[1]: {v6}")),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn client_text_after_the_address_or_a_cut_message_gives_no_address() {
        let cut = format!(
            "Connection closed by invalid user {}{} 192.0.2.99 port 22 [preauth]",
            "\\001".repeat(108),
            "xxxxx"
        );
        assert_eq!(cut.len(), 500);
        for msg in [
            // A certificate's ID, hostbased's client user and host, a
            // GSSAPI name: the client's text after the real address.
            "Failed publickey for root from 203.0.113.5 port 1 ssh2: RSA-CERT SHA256:a ID x from 192.0.2.99 port 22 ssh2: RSA SHA256:b (serial 1) CA RSA SHA256:c",
            "Failed publickey for root from 203.0.113.5 port 1 ssh2: RSA-CERT SHA256:a ID x from 192.0.2.99 port 22 ssh2: RSA SHA256:b, signature count = 1 (serial 1) CA RSA SHA256:c",
            "Failed hostbased for dan from 203.0.113.5 port 1 ssh2: RSA SHA256:a, client user \"x\", client host \"from 192.0.2.99 port 22 ssh2\"",
            "Failed gssapi-with-mic for x from 203.0.113.5 port 1 ssh2: y from 192.0.2.99 port 22 ssh2",
            // Cut by sshd at 500 bytes: the end is the user name's.
            &cut,
            // Not the shape sshd writes.
            "Invalid user x from 203.0.113.5 port 1 and more",
            "Invalid user x from 203.0.113.5",
            "Invalid user x from 203.0.113.5 port 70000",
            "Failed password for x from 203.0.113.5 port 1 ssh2 x",
            "Connection closed by someone 203.0.113.5 port 1 [preauth]",
            "banner exchange: Connection from 203.0.113.5 port 1: \"from 192.0.2.99\"",
        ] {
            assert_eq!(
                p().parse(format!("Nov 21 10:00:01 host sshd[1]: {msg}").as_bytes()),
                Line::Malformed(Malformed::NoSshAddr),
                "{msg}"
            );
        }
    }

    #[test]
    fn only_the_program_field_sshd_or_sshd_session_counts() {
        let msg = "Invalid user a from 203.0.113.5 port 1";
        for head in [
            "Nov 21 10:00:01 host sshd[1]: ",
            "Nov 21 10:00:01 host sshd: ",
            "Nov 21 10:00:01 host sshd-session[22]: ",
            "2026-11-21T10:00:01Z host sshd-session: ",
            "2026-11-21T10:00:01.5+00:00 host sshd[1]: ",
        ] {
            assert!(
                matches!(p().parse(format!("{head}{msg}").as_bytes()), Line::Hit(_)),
                "{head}"
            );
        }
        for head in [
            "Nov 21 10:00:01 host sshd-foo[1]: ",
            "Nov 21 10:00:01 host sshd-sessionx[1]: ",
            "Nov 21 10:00:01 host sshdx: ",
            "Nov 21 10:00:01 host sshd[1x]: ",
            "Nov 21 10:00:01 host sshd[]: ",
            "Nov 21 10:00:01 host sshd[1] ",
            "Nov 21 10:00:01 host myapp[7]: sshd[1]: ",
            "Nov 21 10:00:01 host myapp[7]: user said sshd: ",
            "2026-11-21T10:00:01Z host logger: sshd-session[1]: ",
            "2026-11-21T10:00:01Z sshd[1]: ",
            "Nov 21 10:00:01  sshd[1]: ",
            "sshd[1]: ",
        ] {
            assert_eq!(
                p().parse(format!("{head}{msg}").as_bytes()),
                Line::Other,
                "{head}"
            );
        }
        assert_eq!(message(b"Nov  1 10:00:01 host sshd[1]: x"), Some(&b"x"[..]));
    }

    #[test]
    fn a_repeated_message_counts_its_repeats() {
        let h = hit("Nov 21 10:00:01 host sshd[9]: message repeated 3 times: [ Failed password for root from 203.0.113.5 port 22 ssh2]");
        assert_eq!((h.n, h.dport), (3, Some(0)));
        let h = hit("Nov 21 10:00:01 host sshd[9]: message repeated 2 times: [ Connection closed by 203.0.113.5 port 1 [preauth]]");
        assert_eq!(
            (h.n, h.dport, h.src),
            (2, Some(3), "203.0.113.5".parse().unwrap())
        );
    }

    #[test]
    fn broken_and_old_lines() {
        assert_eq!(
            p().parse(
                b"Nov 21 10:00:01 host sshd[9]: Failed password for root from nowhere port x ssh2"
            ),
            Line::Malformed(Malformed::NoSshAddr)
        );
        assert_eq!(
            p().parse(b"Nov 21 08:00:01 host sshd[9]: Invalid user a from 203.0.113.5 port 1"),
            Line::Outside
        );
        assert_eq!(
            p().parse(b"Nox 21 10:00:01 host sshd[9]: Invalid user a from 203.0.113.5 port 1"),
            Line::Malformed(Malformed::Timestamp)
        );
    }

    proptest::proptest! {
        /// Whatever printable text (what sshd's escaping leaves) the client
        /// chose as its user name, the address is the one sshd wrote.
        #[test]
        fn no_user_name_steers_the_address(user in "[ -~]{0,100}", shape in 0usize..8) {
            let msg = [
                format!("Invalid user {user} from 203.0.113.5 port 4444"),
                format!("Failed password for invalid user {user} from 203.0.113.5 port 4444 ssh2"),
                format!("Failed publickey for {user} from 203.0.113.5 port 4444 ssh2: ED25519 SHA256:q1w2"),
                format!("error: maximum authentication attempts exceeded for {user} from 203.0.113.5 port 1 ssh2 [preauth]"),
                format!("Connection closed by authenticating user {user} 203.0.113.5 port 1 [preauth]"),
                format!("Disconnected from invalid user {user} 203.0.113.5 port 1 [preauth]"),
                format!("Connection reset by invalid user {user} 203.0.113.5 port 1 [preauth]"),
                format!("Failed keyboard-interactive/pam for {user} from 203.0.113.5 port 4444 ssh2"),
            ][shape].clone();
            let line = format!("Nov 21 10:00:01 host sshd-session[7]: {msg}");
            proptest::prop_assert_eq!(hit(&line).src, "203.0.113.5".parse::<IpAddr>().unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut line = b"Nov 21 10:00:01 host sshd[1]: ".to_vec();
            line.extend_from_slice(&bytes);
            let _ = p().parse(&line);
            let _ = p().parse(&bytes);
        }
    }
}
