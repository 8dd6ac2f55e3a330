//! sshd's lines in auth.log (RFC 3339 or `Nov 21 10:00:01`) or the journal
//! (`journalctl -o short-iso-precise`), pure. What counts, per address:
//! failed passwords and keys, invalid users, "maximum authentication
//! attempts exceeded", connections closed or cut before authentication
//! (`[preauth]`) and clients that never said who they were. An accepted
//! login never counts; nor does anything else sshd says.
//!
//! rsyslog folds repeats into "message repeated N times: [ ... ]": that line
//! counts N times.

use super::logline::{digits, parse_addr, Hit, Line, Malformed, Proto, Stamps};
use crate::units::time::Zone;
use memchr::memmem::Finder;

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

#[derive(Clone)]
pub struct SshParser {
    stamps: Stamps,
    window: (i64, i64),
    port: Finder<'static>,
    from: Finder<'static>,
    /// Searchers built once: building one per line cost more than the search.
    sshd: Finder<'static>,
    repeated: Finder<'static>,
}

impl SshParser {
    pub fn new(zone: Zone, now: i64, window: (i64, i64)) -> SshParser {
        SshParser {
            stamps: Stamps::new(zone, now),
            window,
            port: Finder::new(b" port ").into_owned(),
            from: Finder::new(b" from ").into_owned(),
            sshd: Finder::new(b" sshd").into_owned(),
            repeated: Finder::new(b": [ ").into_owned(),
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
        let Some(msg) = self.message(line) else {
            return Line::Other;
        };
        let (mut msg, mut n) = (msg, 1u32);
        if let Some(r) = msg.strip_prefix(b"message repeated ") {
            let sp = memchr::memchr(b' ', r).unwrap_or(0);
            match (digits(&r[..sp]), self.repeated.find(r)) {
                (Some(k), Some(i)) => {
                    n = u32::try_from(k).unwrap_or(u32::MAX);
                    msg = r[i + 4..].strip_suffix(b" ]").unwrap_or(&r[i + 4..]);
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
        let Some(src) = self.address(msg) else {
            return Line::Malformed(Malformed::NoSshAddr);
        };
        Line::Hit(Hit {
            time,
            prefix: 0,
            src,
            proto: Proto::Tcp,
            dport: Some(kind as u16),
            marks: 0,
            n,
        })
    }

    /// The address: the word before " port ", else the word after " from ".
    fn address(&self, msg: &[u8]) -> Option<std::net::IpAddr> {
        if let Some(p) = self.port.find(msg) {
            let before = &msg[..p];
            let start = memchr::memrchr(b' ', before).map_or(0, |i| i + 1);
            if let Some(a) = parse_addr(&before[start..]) {
                return Some(a);
            }
        }
        let f = self.from.find(msg)? + 6;
        let rest = &msg[f..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        parse_addr(&rest[..end])
    }

    /// The message of an sshd line: after "sshd[PID]: " or "sshd-session[PID]: ".
    fn message<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let mut from = 0;
        while let Some(i) = self.sshd.find(&line[from..]) {
            let at = from + i + 5;
            let rest = &line[at..];
            let rest = rest.strip_prefix(b"-session").unwrap_or(rest);
            if let Some(r) = rest.strip_prefix(b"[") {
                let close = memchr::memchr(b']', r)?;
                if let Some(m) = r[close + 1..].strip_prefix(b": ") {
                    return Some(m);
                }
            } else if let Some(m) = rest.strip_prefix(b": ") {
                return Some(m);
            }
            from = at;
        }
        None
    }
}

fn kind(msg: &[u8]) -> Option<usize> {
    if msg.starts_with(b"Accepted ") {
        return None;
    }
    if msg.starts_with(b"Failed password for ") {
        return Some(0);
    }
    if msg.starts_with(b"Failed ") {
        return Some(5);
    }
    if msg.starts_with(b"Invalid user ") {
        return Some(1);
    }
    if msg.starts_with(b"error: maximum authentication attempts exceeded") {
        return Some(2);
    }
    if msg.ends_with(b"[preauth]")
        && (msg.starts_with(b"Connection closed by ")
            || msg.starts_with(b"Disconnected from ")
            || msg.starts_with(b"Connection reset by "))
    {
        return Some(3);
    }
    if msg.starts_with(b"Did not receive identification string from ")
        || msg.starts_with(b"banner exchange: ")
    {
        return Some(4);
    }
    None
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

    #[test]
    fn a_repeated_message_counts_its_repeats() {
        let h = hit("Nov 21 10:00:01 host sshd[9]: message repeated 3 times: [ Failed password for root from 203.0.113.5 port 22 ssh2]");
        assert_eq!((h.n, h.dport), (3, Some(0)));
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
}
