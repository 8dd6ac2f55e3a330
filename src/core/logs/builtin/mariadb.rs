//! MariaDB and MySQL: `Access denied for user 'U'@'HOST' (using password:
//! YES|NO)` (sql_acl.cc's ER_ACCESS_DENIED_ERROR, logged with
//! log_warnings >= 2), in the error log (MySQL 5's `130324 17:56:13
//! [Warning] ...`, MariaDB's `2026-11-21 10:00:01 4644 [Warning] ...`,
//! MySQL 8's `2026-11-21T10:00:01.634875Z 113 [Note] [MY-010926] [Server]
//! ...`) or through syslog and the journal (`mysqld[PID]: ...`, `mariadbd`).
//!
//! The client writes the user name, before the address; after it only the
//! server's ` (using password: YES)` ends the line, so the address is the
//! last `'@'ADDR' (using password: ...)` with nothing after. A host name
//! (skip_name_resolve off) is never resolved: not counted.

use super::rule::{Builtin, BuiltinRule};

/// The message, after the error log's time and thread.
macro_rules! denied {
    () => {
        r"(?: +\d+)? +(?:\[[-\w]+\] )+Access denied for user '.*'@'(?P<addr>[0-9a-fA-F:.]+)' \(using password: (?:YES|NO)\)$"
    };
}

const PROGRAMS: &str = "mysqld|mysqld-*|mariadbd|mariadbd-*|mariadb|mysql";

const MARIADB: Option<(&str, &str)> = Some((
    r"^(?P<time>\d{4}-\d\d-\d\d +\d?\d:\d\d:\d\d) ",
    "%Y-%m-%d %H:%M:%S",
));
const MYSQL5: Option<(&str, &str)> =
    Some((r"^(?P<time>\d{6} +\d?\d:\d\d:\d\d) ", "%y%m%d %H:%M:%S"));
const MYSQL8: Option<(&str, &str)> = Some((
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?) ",
    "%Y-%m-%dT%H:%M:%S%.f",
));

pub const SOURCE: Builtin = Builtin {
    name: "mariadb",
    about: "MariaDB / MySQL: access denied",
    default_log: "/var/log/mysql/error.log",
    caveat: None,
    rules: &[
        BuiltinRule {
            program: None,
            line: concat!(r"^\d{4}-\d\d-\d\d +\d?\d:\d\d:\d\d", denied!()),
            kind: "access-denied",
            time: MARIADB,
        },
        BuiltinRule {
            program: None,
            line: concat!(r"^\d{6} +\d?\d:\d\d:\d\d", denied!()),
            kind: "access-denied",
            time: MYSQL5,
        },
        BuiltinRule {
            program: None,
            line: concat!(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?", denied!()),
            kind: "access-denied",
            time: MYSQL8,
        },
        // Through syslog: the server's message only. (Read anywhere after
        // a ": ", a line of any program ending in a client's text, as
        // postfix logs a forbidden SMTP command, would count.)
        BuiltinRule {
            program: Some(PROGRAMS),
            line: concat!(r"^\d{4}-\d\d-\d\d +\d?\d:\d\d:\d\d", denied!()),
            kind: "access-denied",
            time: MARIADB,
        },
        BuiltinRule {
            program: Some(PROGRAMS),
            line: concat!(r"^\d{6} +\d?\d:\d\d:\d\d", denied!()),
            kind: "access-denied",
            time: MYSQL5,
        },
        BuiltinRule {
            program: Some(PROGRAMS),
            line: concat!(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?", denied!()),
            kind: "access-denied",
            time: MYSQL8,
        },
    ],
};

#[cfg(test)]
mod tests {
    const T: i64 = 1_795_255_201;

    #[test]
    fn access_denied_in_every_log_form() {
        super::super::check::lines(
            &super::SOURCE,
            &[
                ("2026-11-21 10:00:01 4644 [Warning] Access denied for user 'root'@'203.0.113.5' (using password: YES)", "203.0.113.5", "access-denied", T),
                ("2026-11-21  9:00:01 139845235329792 [Warning] Access denied for user 'u'@'203.0.113.5' (using password: NO)", "203.0.113.5", "access-denied", T - 3600),
                ("261121 10:00:01 [Warning] Access denied for user 'root'@'2001:db8::5' (using password: NO)", "2001:db8::5", "access-denied", T),
                ("2026-11-21T10:00:01.634875Z 113 [Note] [MY-010926] [Server] Access denied for user 'root'@'203.0.113.5' (using password: NO)", "203.0.113.5", "access-denied", T),
                ("Nov 21 10:00:01 db mysqld[1234]: 2026-11-21 10:00:01 8756 [Warning] Access denied for user 'root'@'203.0.113.5' (using password: YES)", "203.0.113.5", "access-denied", T),
                ("Nov 21 10:00:01 db mysqld: 261121 10:00:01 [Warning] Access denied for user 'x'@'203.0.113.5' (using password: YES)", "203.0.113.5", "access-denied", T),
                // A user name holding the server's shape.
                ("2026-11-21 10:00:01 1 [Warning] Access denied for user 'a'@'192.0.2.9' (using password: YES)'@'203.0.113.5' (using password: YES)", "203.0.113.5", "access-denied", T),
            ],
            &[
                "2026-11-21 10:00:01 1 [Warning] Access denied for user 'root'@'localhost' (using password: YES)",
                "2026-11-21 10:00:01 1 [Note] Access denied for user 'root'@'203.0.113.5' (using password: YES) condition lead to a failure",
                "2026-11-21 10:00:01 1 [Warning] Aborted connection 7 to db: 'x' user: 'y' host: '203.0.113.5' (Got timeout reading communication packets)",
            ],
        );
    }
}
