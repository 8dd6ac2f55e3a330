//! vsftpd: a failed login, in vsftpd's own log (logging.c:
//! `Fri Jan 19 12:20:33 2007 [pid 27202] [USER] FAIL LOGIN: Client
//! "ADDR"`, with `, "REASON"` after it when vsftpd says why) or through
//! syslog (`vsftpd[PID]: [USER] FAIL LOGIN: ...`), and PAM's
//! `authentication failure` for the vsftpd service.
//!
//! The client's user name comes before the address: the address is read
//! where only vsftpd's own text follows it to the end of the line (PAM's
//! `user=` field excepted, after two spaces, with no space in `ruser=`).

use super::rule::{Builtin, BuiltinRule};

pub const SOURCE: Builtin = Builtin {
    name: "vsftpd",
    about: "vsftpd: failed FTP logins",
    default_log: "/var/log/vsftpd.log",
    caveat: None,
    rules: &[
        // Anchored at vsftpd's own start: another program's line (postfix
        // logs an SMTP client's forbidden command at its end) or vsftpd's
        // protocol log (`FTP command: Client "ADDR", "USER TEXT"`) may end
        // in the client's `] FAIL LOGIN: Client "ADDR"`. The user is read up
        // to its first `]`: vsftpd's other lines end in a path the client
        // names (`[bob] FAIL MKDIR: Client "ADDR", "/x] FAIL LOGIN: ...`), so
        // a user name holding `]` is not counted rather than that.
        BuiltinRule {
            program: None,
            line: r#"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} \[pid \d+\] \[[^\]]*\] FAIL LOGIN: Client "(?P<addr>[0-9a-fA-F:.]+)"(?:, "[^"]*")?$"#,
            kind: "login-failed",
            time: Some((
                r"^(?P<time>\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}) \[pid \d+\] ",
                "%a %b %e %H:%M:%S %Y",
            )),
        },
        BuiltinRule {
            program: Some("vsftpd"),
            line: r#"^(?:\[pid \d+\] )?\[[^\]]*\] FAIL LOGIN: Client "(?P<addr>[0-9a-fA-F:.]+)"(?:, "[^"]*")?$"#,
            kind: "login-failed",
            time: None,
        },
        BuiltinRule {
            program: Some("vsftpd"),
            line: r"^(?:\(pam_unix\)|pam_unix\(vsftpd:auth\):) authentication failure; logname=\S* uid=\d+ euid=\d+ tty=\S* ruser=\S* rhost=(?P<addr>[0-9a-fA-F:.]+)(?: |  user=.*)?$",
            kind: "login-failed",
            time: None,
        },
    ],
};

#[cfg(test)]
mod tests {
    const T: i64 = 1_795_255_201;

    #[test]
    fn fail_login_in_its_own_log_and_syslog_and_pam() {
        super::super::check::lines(
            &super::SOURCE,
            &[
                ("Sat Nov 21 10:00:01 2026 [pid 27202] [anonymous] FAIL LOGIN: Client \"203.0.113.5\"", "203.0.113.5", "login-failed", T),
                ("Sat Nov 21 10:00:01 2026 [pid 2] [guest] FAIL LOGIN: Client \"::ffff:203.0.113.5\", \"User is not in the allow user list.\"", "203.0.113.5", "login-failed", T),
                ("Nov 21 10:00:01 ftp vsftpd[7]: [bob] FAIL LOGIN: Client \"2001:db8::5\"", "2001:db8::5", "login-failed", T),
                ("Nov 21 10:00:01 ftp vsftpd: pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=bob rhost=203.0.113.5  user=bob", "203.0.113.5", "login-failed", T),
            ],
            &[
                // A user name shaped like vsftpd's line: not counted.
                "Sat Nov 21 10:00:01 2026 [pid 2] [x] FAIL LOGIN: Client \"192.0.2.9\", \"a\"] FAIL LOGIN: Client \"203.0.113.5\"",
                "Sat Nov 21 10:00:01 2026 [pid 2] [bob] OK LOGIN: Client \"203.0.113.5\"",
                "Sat Nov 21 10:00:01 2026 [pid 2] [x] FAIL LOGIN: Client \"192.0.2.9\"] OK LOGIN: Client \"203.0.113.5\"",
                "Nov 21 10:00:01 ftp sshd[7]: pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=bob rhost=203.0.113.5",
            ],
        );
    }
}
