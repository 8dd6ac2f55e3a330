//! sshd's lines in auth.log (RFC 3339, `Nov 21 10:00:01` and the other
//! syslog headers of [`crate::core::logs::header`]) or the journal (`journalctl -o
//! short-iso-precise`), pure. What counts, per address: failed passwords
//! and keys, invalid users and users sshd does not allow, "maximum
//! authentication attempts exceeded", PAM's failures, connections closed,
//! cut or disconnected before authentication (`[preauth]`), clients that
//! never said who they were or could not agree on algorithms. An accepted
//! login never counts; nor does anything else sshd says.
//!
//! Where the address is read, so that no client text can move it, is
//! [`shapes`]'s to say. A message of 500 bytes or more may have been cut
//! there by sshd (`syslog(3)` with `%.500s`), its end then the client's
//! text: its address is not read.
//!
//! rsyslog folds repeats into "message repeated N times: [ ... ]": that line
//! counts N times.

mod shapes;

use super::logline::{digits, Hit, Line, Malformed, Proto, Stamps};
use crate::core::logs::header::{self, Stamp};
use crate::units::time::Zone;
use memchr::memmem::Finder;
pub use shapes::KINDS;
use shapes::{address, kind};

/// sshd cuts a message at 500 bytes: one this long may end in client text.
const CUT: usize = 500;

#[derive(Clone)]
pub struct SshParser {
    stamps: Stamps,
    window: (i64, i64),
    /// Searchers built once: building one per line cost more than the search.
    repeated: Finder<'static>,
}

impl SshParser {
    pub fn new(zone: Zone, now: i64, window: (i64, i64)) -> SshParser {
        SshParser {
            stamps: Stamps::new(zone, now),
            window,
            repeated: Finder::new(b": [ ").into_owned(),
        }
    }

    pub fn window(&self) -> (i64, i64) {
        self.window
    }

    /// Move the window (a follower's slides as time goes on).
    pub fn set_window(&mut self, window: (i64, i64)) {
        self.window = window;
    }

    /// sshd and sshd-session (OpenSSH 9.8 on) both start with it, also as
    /// `[sshd]`.
    pub fn needle(&self) -> &'static [u8] {
        b"sshd"
    }

    pub fn timestamp(&mut self, line: &[u8]) -> Option<i64> {
        match head(line) {
            Some((stamp, _)) => self.time(line, stamp),
            None => self.stamps.syslog(line),
        }
    }

    fn time(&mut self, line: &[u8], stamp: Stamp) -> Option<i64> {
        header::time(&mut self.stamps, line, stamp)
    }

    pub fn parse(&mut self, line: &[u8]) -> Line {
        let Some((stamp, msg)) = head(line) else {
            return Line::Other;
        };
        // A trailing space is the daemon's or a copy's, never sshd's shape;
        // but a message cut at 500 bytes stays one without its spaces.
        let mut cut = msg.len() >= CUT;
        let (mut msg, mut n) = (msg.trim_ascii_end(), 1u32);
        if let Some(r) = msg.strip_prefix(b"message repeated ") {
            let sp = memchr::memchr(b' ', r).unwrap_or(0);
            match (digits(&r[..sp]), self.repeated.find(r)) {
                (Some(k), Some(i)) => {
                    n = u32::try_from(k).unwrap_or(u32::MAX);
                    // rsyslog writes "[ MSG]": the bracket closes MSG.
                    msg = r[i + 4..].strip_suffix(b"]").unwrap_or(&r[i + 4..]);
                    cut = msg.len() >= CUT;
                }
                _ => return Line::Other,
            }
        }
        let Some(kind) = kind(msg) else {
            return Line::Other;
        };
        let Some(time) = self.time(line, stamp) else {
            return Line::Malformed(Malformed::Timestamp);
        };
        if time < self.window.0 || time > self.window.1 {
            return Line::Outside;
        }
        let src = (!cut).then(|| address(kind, msg)).flatten();
        let Some(src) = src else {
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
}

/// The time and message of a line whose program is exactly `sshd` or
/// `sshd-session` (with or without `[PID]`, or as `[sshd]`).
#[inline]
fn head(line: &[u8]) -> Option<(Stamp, &[u8])> {
    header::head(line, b"sshd", |p| p == b"sshd" || p == b"sshd-session")
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
            // Two of sshd's shapes: which one sshd wrote is not known.
            "Failed password for invalid user x ssh2: RSA SHA256:a from 127.0.0.1 port 1 ssh2: RSA SHA256:b from 203.0.113.5 port 4444 ssh2",
            "Failed password for invalid user test from 127.0.0.1 port 58946 ssh2: from 10.10.1.2 port 55555 ssh2",
            "Failed gssapi-with-mic for x from 203.0.113.5 port 1 ssh2: y from 192.0.2.99 port 22 ssh2",
            // Cut by sshd at 500 bytes: the end is the user name's.
            &cut,
            // Not the shape sshd writes.
            "Invalid user x from 203.0.113.5 port 1 and more",
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
            "Nov 21 10:00:01  sshd[1]: ",
            "sshd[1]: ",
        ] {
            assert_eq!(
                p().parse(format!("{head}{msg}").as_bytes()),
                Line::Other,
                "{head}"
            );
        }
        assert!(head(b"Nov  1 10:00:01 host sshd[1]: x").is_some());
    }

    /// The shapes of older sshd, PAM, tcp_wrappers, negotiation and
    /// disconnects (fail2ban's test suite has each), with client text where
    /// sshd lets the client write.
    #[test]
    fn every_shape_gives_sshds_address_whatever_the_client_wrote() {
        let real = "203.0.113.5".parse::<IpAddr>().unwrap();
        for (msg, kind) in [
            ("Failed password for invalid user ROOT from 203.0.113.5 port 50273", 0),
            ("Failed password for invalid user x from 192.0.2.9 port 1 from 203.0.113.5", 0),
            ("Failed password for dan from 203.0.113.5 port 45416 ssh1", 0),
            ("Failed publickey for invalid user g from 203.0.113.5 port 37954 ssh2: RSA SHA256:v3d$4V1", 5),
            ("Failed hostbased for dan from 203.0.113.5 port 1 ssh2: RSA SHA256:a, client user \"x\", client host \"from 192.0.2.99 port 22 ssh2\"", 5),
            ("Failed password for user from 203.0.113.5 port 20000 ssh1: ruser from 192.0.2.99", 0),
            ("Invalid user ftp from 203.0.113.5", 1),
            ("ROOT LOGIN REFUSED FROM 203.0.113.5", 6),
            ("ROOT LOGIN REFUSED FROM 203.0.113.5 port 12345 [preauth]", 6),
            ("ROOT LOGIN REFUSED FROM ::ffff:203.0.113.5", 6),
            ("User root from 203.0.113.5 not allowed because not listed in AllowUsers", 6),
            ("User x from 192.0.2.99 not allowed because listed in DenyUsers from 203.0.113.5 not allowed because listed in DenyUsers", 6),
            ("User root from 203.0.113.5 not allowed because none of user's groups are listed in AllowGroups", 6),
            ("refused connect from x (192.0.2.99)@::ffff:192.0.2.99 (::ffff:203.0.113.5)", 6),
            ("error: PAM: Authentication failure for x from 192.0.2.99 from 203.0.113.5", 7),
            ("error: PAM: authentication error for james from 203.0.113.5 via 192.168.1.201", 7),
            ("error: PAM: User not known to the underlying authentication module for illegal user k from 203.0.113.5", 7),
            ("Bad protocol version identification 'x' from 192.0.2.99' from 203.0.113.5 port 31778", 8),
            ("Unable to negotiate with 203.0.113.5 port 55419: no matching cipher found. Their offer: from 192.0.2.99 port 1: x [preauth]", 8),
            ("fatal: Unable to negotiate with 203.0.113.5 port 1: no matching key exchange method found. Their offer: x", 8),
            ("Received disconnect from 203.0.113.5 port 58846:11: Bye from 192.0.2.99 port 1:11: [preauth]", 9),
            ("error: Received disconnect from 203.0.113.5: 3: com.jcraft.jsch.JSchException: Auth fail [preauth]", 9),
            ("Received disconnect from 203.0.113.5: 3: x: Auth fail", 9),
            ("Disconnecting invalid user admin 203.0.113.5 port 44004: Change of username or service not allowed: (admin,ssh-connection) -> (user,ssh-connection) [preauth]", 9),
            ("Connection closed by 203.0.113.5 [preauth]", 3),
            ("Did not receive identification string from 203.0.113.5", 4),
        ] {
            let h = hit(&format!("Nov 21 10:00:01 host sshd[1]: {msg}"));
            assert_eq!((h.src, h.dport), (real, Some(kind)), "{msg}");
        }
        for msg in [
            // Two addresses where sshd writes one: not known which.
            "Disconnecting invalid user a 192.0.2.99 port 1: x 203.0.113.5 port 2: Change of username or service not allowed: (a,b) -> (c,d) [preauth]",
            // A host name (UseDNS): never resolved.
            "User root from example.com not allowed because not listed in AllowUsers",
            "error: PAM: Authentication failure for x from example.com",
        ] {
            assert_eq!(
                p().parse(format!("Nov 21 10:00:01 host sshd[1]: {msg}").as_bytes()),
                Line::Malformed(Malformed::NoSshAddr),
                "{msg}"
            );
        }
        // A logged-in user's disconnect and sshd's other words count not.
        for msg in [
            "Received disconnect from 198.51.100.7 port 50000:11: disconnected by user",
            "User root not allowed because shell /bin/false is not executable",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7",
        ] {
            assert_eq!(
                p().parse(format!("Nov 21 10:00:01 host sshd[1]: {msg}").as_bytes()),
                Line::Other,
                "{msg}"
            );
        }
        // Headers: unpadded day, no host, RFC 5424.
        for line in [
            "Nov 21 10:00:01 sshd[1]: Invalid user a from 203.0.113.5 port 1",
            "<38>1 2026-11-21T10:00:01Z h.example sshd 57915 - [t x=\"]\"] Invalid user a from 203.0.113.5 port 1",
        ] {
            assert_eq!((hit(line).src, hit(line).time), (real, T), "{line}");
        }
        let mut late = SshParser::new(Zone::fixed(0), T + 60, (i64::MIN, i64::MAX));
        let l = b"Nov 2 10:00:01 host sshd[1]: Invalid user a from 203.0.113.5 port 1";
        assert_eq!(late.timestamp(l), Some(T - 19 * 86_400));
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
        fn no_user_name_steers_the_address(user in "[ -~]{0,100}", shape in 0usize..15) {
            let msg = [
                format!("Invalid user {user} from 203.0.113.5 port 4444"),
                format!("Failed password for invalid user {user} from 203.0.113.5 port 4444 ssh2"),
                format!("Failed publickey for {user} from 203.0.113.5 port 4444 ssh2: ED25519 SHA256:q1w2"),
                format!("error: maximum authentication attempts exceeded for {user} from 203.0.113.5 port 1 ssh2 [preauth]"),
                format!("Connection closed by authenticating user {user} 203.0.113.5 port 1 [preauth]"),
                format!("Disconnected from invalid user {user} 203.0.113.5 port 1 [preauth]"),
                format!("Connection reset by invalid user {user} 203.0.113.5 port 1 [preauth]"),
                format!("Failed keyboard-interactive/pam for {user} from 203.0.113.5 port 4444 ssh2"),
                format!("User {user} from 203.0.113.5 not allowed because listed in DenyUsers"),
                format!("error: PAM: Authentication failure for illegal user {user} from 203.0.113.5"),
                format!("Bad protocol version identification '{user}' from 203.0.113.5 port 1"),
                format!("Unable to negotiate with 203.0.113.5 port 1: no matching cipher found. Their offer: {user} [preauth]"),
                format!("Received disconnect from 203.0.113.5 port 1:11: {user} [preauth]"),
                format!("Disconnecting invalid user {user} 203.0.113.5 port 1: Change of username or service not allowed: ({user},ssh-connection) -> (x,ssh-connection) [preauth]"),
                format!("Failed publickey for root from 203.0.113.5 port 1 ssh2: RSA-CERT SHA256:a ID {user} (serial 1) CA RSA SHA256:c"),
            ][shape].clone();
            let line = format!("Nov 21 10:00:01 host sshd-session[7]: {msg}");
            proptest::prop_assert_eq!(hit(&line).src, "203.0.113.5".parse::<IpAddr>().unwrap());
        }

        /// A client that plants sshd's own shapes around the real address
        /// gets its own address read, or none: never the planted one.
        #[test]
        fn a_planted_address_is_never_read(
            a in "[ -~]{0,20}", b in "[ -~]{0,20}", plant in 0usize..6, shape in 0usize..15,
        ) {
            let planted = [
                " from 192.0.2.99 port 22 ssh2",
                " from 192.0.2.99 port 22 ssh2: ",
                " 192.0.2.99 port 22: ",
                " from 192.0.2.99",
                " (192.0.2.99)",
                " 192.0.2.99 port 22 [preauth]",
            ][plant];
            let user = format!("{a}{planted}{b}");
            let msg = [
                format!("Invalid user {user} from 203.0.113.5 port 4444"),
                format!("Failed password for invalid user {user} from 203.0.113.5 port 4444 ssh2"),
                format!("Failed publickey for {user} from 203.0.113.5 port 4444 ssh2: ED25519 SHA256:q1w2"),
                format!("error: maximum authentication attempts exceeded for {user} from 203.0.113.5 port 1 ssh2 [preauth]"),
                format!("Connection closed by authenticating user {user} 203.0.113.5 port 1 [preauth]"),
                format!("Disconnected from invalid user {user} 203.0.113.5 port 1 [preauth]"),
                format!("refused connect from {user} (203.0.113.5)"),
                format!("Failed hostbased for x from 203.0.113.5 port 1 ssh2: RSA SHA256:a, client user \"{user}\", client host \"{user}\""),
                format!("User {user} from 203.0.113.5 not allowed because listed in DenyUsers"),
                format!("error: PAM: Authentication failure for illegal user {user} from 203.0.113.5"),
                format!("Bad protocol version identification '{user}' from 203.0.113.5 port 1"),
                format!("Unable to negotiate with 203.0.113.5 port 1: no matching cipher found. Their offer: {user} [preauth]"),
                format!("Received disconnect from 203.0.113.5 port 1:11: {user} [preauth]"),
                format!("Disconnecting invalid user {user} 203.0.113.5 port 1: Change of username or service not allowed: ({user},ssh-connection) -> (x,ssh-connection) [preauth]"),
                format!("Failed publickey for root from 203.0.113.5 port 1 ssh2: RSA-CERT SHA256:a ID {user} (serial 1) CA RSA SHA256:c"),
            ][shape].clone();
            let line = format!("Nov 21 10:00:01 host sshd[7]: {msg}");
            if let Line::Hit(h) = p().parse(line.as_bytes()) {
                proptest::prop_assert_eq!(h.src, "203.0.113.5".parse::<IpAddr>().unwrap(), "{}", line);
            }
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
