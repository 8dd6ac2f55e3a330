//! ProFTPD: failed logins (mod_auth: `USER U (Login failed): REASON`,
//! `USER U: no such user found from ...`, `SECURITY VIOLATION: U login
//! attempted`, `Maximum login attempts (N) exceeded`), in its SystemLog
//! (`Nov 21 10:00:01 host proftpd[PID] SERVER (CLIENT[ADDR]): MSG`, or
//! `2026-11-21 10:00:01,121 host proftpd[PID] ...` with milliseconds) or
//! through syslog (`proftpd[PID]: SERVER (CLIENT[ADDR]) - MSG`).
//!
//! The address is read from `(CLIENT[ADDR])`, which ProFTPD writes right
//! after its own fixed header and before any client text (the user name
//! comes later): the pattern is anchored at the start of the line.

use super::rule::{Builtin, BuiltinRule};

/// After the time: the host, the tag, the server name, `(CLIENT[ADDR])`.
macro_rules! after_time {
    () => {
        r" \S+ proftpd\[\d+\]:? \S+ \([^\[\]() ]*\[(?P<addr>[0-9a-fA-F:.]+)\]\)(?::| -) (?:USER .*(?: \(Login failed\):|: no such user found )|SECURITY VIOLATION: .* login attempted|Maximum login attempts \(\d+\) exceeded)"
    };
}

pub const SOURCE: Builtin = Builtin {
    name: "proftpd",
    about: "ProFTPD: failed logins",
    default_log: "/var/log/proftpd/proftpd.log",
    caveat: None,
    rules: &[
        BuiltinRule {
            program: None,
            line: concat!(r"^\w{3} +\d\d? \d\d:\d\d:\d\d", after_time!()),
            kind: "login-failed",
            time: Some((r"^(?P<time>\w{3} +\d\d? \d\d:\d\d:\d\d) ", "%b %d %H:%M:%S")),
        },
        BuiltinRule {
            program: None,
            line: concat!(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+", after_time!()),
            kind: "login-failed",
            time: Some((
                r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),",
                "%Y-%m-%d %H:%M:%S",
            )),
        },
        BuiltinRule {
            program: None,
            line: concat!(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*", after_time!()),
            kind: "login-failed",
            time: None,
        },
    ],
};

#[cfg(test)]
mod tests {
    const T: i64 = 1_795_255_201;

    #[test]
    fn failed_logins_in_both_log_forms() {
        super::super::check::lines(
            &super::SOURCE,
            &[
                ("Nov 21 10:00:01 ftp proftpd[123] ftp.example.com (client.example.net[203.0.113.5]): USER bob (Login failed): Incorrect password.", "203.0.113.5", "login-failed", T),
                ("Nov 21 10:00:01 ftp proftpd[123]: ftp.example.com (::ffff:203.0.113.5[::ffff:203.0.113.5]) - USER god: no such user found from ::ffff:203.0.113.5 [::ffff:203.0.113.5] to ::ffff:192.0.2.1:21", "203.0.113.5", "login-failed", T),
                ("Nov 21 10:00:01 ftp proftpd[123]: ftp.example.com (203.0.113.5[203.0.113.5]) - SECURITY VIOLATION: root login attempted.", "203.0.113.5", "login-failed", T),
                ("Nov  1 10:00:01 ftp proftpd[1]: ftp (2001:db8::5[2001:db8::5]) - Maximum login attempts (3) exceeded", "2001:db8::5", "login-failed", T - 20 * 86_400),
                ("2026-11-21 10:00:01,121 ftp proftpd[25891] localhost (andy[203.0.113.5]): USER kjsad: no such user found from andy [203.0.113.5] to ::ffff:192.0.2.1:21", "203.0.113.5", "login-failed", T),
                ("2026-11-21T10:00:01.1+00:00 ftp proftpd[1]: ftp (x[203.0.113.5]) - USER a (Login failed): Incorrect password.", "203.0.113.5", "login-failed", T),
                // A user name holding ProFTPD's own shape.
                ("Nov 21 10:00:01 ftp proftpd[1] ftp (x[203.0.113.5]): USER ftp proftpd[2] ftp (y[192.0.2.9]): no such user found from 192.0.2.9 [192.0.2.9] to 192.0.2.1:21", "203.0.113.5", "login-failed", T),
            ],
            &[
                "Nov 21 10:00:01 ftp proftpd[123] ftp (x[203.0.113.5]): USER bob: Login successful.",
                "Nov 21 10:00:01 ftp sshd[123] ftp (x[203.0.113.5]): USER bob (Login failed): x",
                "Nov 21 10:00:01 ftp proftpd[123] ftp (x[203.0.113.5]) bob (Login failed):",
            ],
        );
    }
}
