//! dovecot: a login process's failed authentications (`imap-login`,
//! `pop3-login`, `submission-login`, `managesieve-login`; login-common's
//! `Disconnected (auth failed, N attempts in S secs): user=<U>,
//! method=M, rip=ADDR, lip=ADDR, ...`), a client that never authenticated,
//! and the auth process's password database failures
//! (`pam(USER,ADDR): unknown user`, `sql(USER,ADDR,<SESSION>): Password
//! mismatch`), and PAM's `pam_unix(dovecot:auth): authentication failure`.
//! Through syslog (program `dovecot`, `auth`, `dovecot-auth`), dovecot's
//! own log file (`imap-login: Info: ...`, `auth-worker(123): ...`) or
//! multilog (`@TAI64N imap-login: ...`).
//!
//! The client writes its user name before the address, never after it:
//! every pattern reads the address followed by nothing but dovecot's own
//! fields to the end of the line (login: lip, mpid, TLS and OpenSSL's
//! error, without `,` `=` `<` `>` or a second call's parentheses, the
//! cipher, session), or right after fixed text with no space in the user
//! field before it (PAM). And every pattern starts where the message does
//! (the login process's name and its reason, or the auth process's prefixes):
//! a message that ends in client text, such as mail_log's `subject=` of any
//! mail delivered, is not read from its middle.

use super::rule::{Builtin, BuiltinRule};

const PROGRAMS: &str = "dovecot|dovecot-auth|auth|auth-worker*|*-login";

pub const SOURCE: Builtin = Builtin {
    name: "dovecot",
    about: "dovecot: failed logins and authentications",
    default_log: "/var/log/mail.log",
    caveat: None,
    rules: &[
        BuiltinRule {
            program: Some(PROGRAMS),
            line: r"^(?:[-\w]+-login: )?(?:Info: )?[A-Z][^<>]*?\((?:auth failed, \d+ attempts?(?: in \d+ secs?)?|tried to use (?:disallowed|disabled) plaintext auth|proxy dest auth failed)\): (?:user=<.*>, )?(?:method=[-\w]+, )?rip=(?P<addr>[0-9a-fA-F:.]+)(?:, lip=[0-9a-fA-F:.]+)?(?:, mpid=\d+)?(?:, TLS(?: handshaking)?(?:: (?:\w+\([^()]*\) (?:syscall )?failed: )?[^,=<>()]*)?)?(?:, TLSv[\d.]+ with cipher [-\w]+ \(\d+/\d+ bits\))?(?:, session=<[\w+/=]*>)?$",
            kind: "auth-failed",
            time: None,
        },
        BuiltinRule {
            program: Some(PROGRAMS),
            line: r"^(?:[-\w]+-login: )?(?:Info: )?[A-Z][^<>]*?\((?:no auth attempts(?: in \d+ secs?)?|disconnected before auth was ready, waited \d+ secs?|client didn't finish SASL auth, waited \d+ secs?)\): (?:user=<.*>, )?(?:method=[-\w]+, )?rip=(?P<addr>[0-9a-fA-F:.]+)(?:, lip=[0-9a-fA-F:.]+)?(?:, mpid=\d+)?(?:, TLS(?: handshaking)?(?:: (?:\w+\([^()]*\) (?:syscall )?failed: )?[^,=<>()]*)?)?(?:, TLSv[\d.]+ with cipher [-\w]+ \(\d+/\d+ bits\))?(?:, session=<[\w+/=]*>)?$",
            kind: "no-auth",
            time: None,
        },
        BuiltinRule {
            program: Some(PROGRAMS),
            line: r"^(?:[-\w]+(?:\(\w*\))?: )*(?:conn unix:auth-worker \([^()]*\): auth-worker<\d+>: )?[a-z][-\w]*\([^)]*,(?P<addr>[0-9a-fA-F:.]+)(?:,<[\w+/=]*>|,)?\): (?:unknown user|invalid credentials|Password mismatch|pam_authenticate\(\) failed: [\w ?.:()]*)(?: \(for LDAP bind\))?(?: \(SHA1 of given password: [0-9a-f]+\))?$",
            kind: "auth-failed",
            time: None,
        },
        BuiltinRule {
            program: Some(PROGRAMS),
            line: r"^pam_unix\(dovecot:auth\): authentication failure; logname=\S* uid=\d+ euid=\d+ tty=\S* ruser=\S* rhost=(?P<addr>[0-9a-fA-F:.]+)(?: |  user=.*)?$",
            kind: "auth-failed",
            time: None,
        },
    ],
};

#[cfg(test)]
mod tests {
    const T: i64 = 1_795_255_201;

    #[test]
    fn login_auth_and_pam_failures() {
        // After the address: dovecot's fields and OpenSSL's error text,
        // which no client writes.
        super::super::check::lines_planted(
            &super::SOURCE,
            &[
                ("Nov 21 10:00:01 mx dovecot: imap-login: Disconnected (auth failed, 2 attempts in 8 secs): user=<bob>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, TLS, session=<abc+/d>", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 mx dovecot[44]: pop3-login: Aborted login (auth failed, 1 attempts in 2 secs): user=<x>, rip=::ffff:203.0.113.5, lip=192.0.2.1, TLS: Disconnected, TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 imap-login: Info: Aborted login (tried to use disallowed plaintext auth): rip=2001:db8::5, lip=2001:db8::1", "2001:db8::5", "auth-failed", T),
                ("Nov 21 10:00:01 mx dovecot: imap-login: Disconnected (no auth attempts in 4 secs): user=<>, rip=203.0.113.5, lip=192.0.2.1, TLS handshaking: SSL_accept() failed: error:0A00010B:SSL routines::wrong version number", "203.0.113.5", "no-auth", T),
                ("Nov 21 10:00:01 mx dovecot: auth-worker(304): pam(bob,203.0.113.5): pam_authenticate() failed: Authentication failure (password mismatch?)", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 mx dovecot: auth: sql(bob@example.com,203.0.113.5,<6rXunFtu493AqJDi>): Password mismatch", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 auth-worker(80180): Info: conn unix:auth-worker (uid=143): auth-worker<13247>: passwd-file(x,203.0.113.5): unknown user (SHA1 of given password: f638ff)", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=bob rhost=203.0.113.5  user=bob", "203.0.113.5", "auth-failed", T),
                // The client's user names, shaped like dovecot's fields.
                ("Nov 21 10:00:01 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts): user=<a>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, TLS>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 mx dovecot: auth: pam(x,192.0.2.9,<a>,203.0.113.5): unknown user", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 mx dovecot: auth: pam(x,192.0.2.9,<a,203.0.113.5,<b>): unknown user", "203.0.113.5", "auth-failed", T),
                ("Nov 21 10:00:01 mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=rhost=192.0.2.9 rhost=203.0.113.5  user=x rhost=192.0.2.9", "203.0.113.5", "auth-failed", T),
            ],
            &[
                "Nov 21 10:00:01 mx dovecot: imap-login: Login: user=<bob>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, mpid=7, TLS",
                "Nov 21 10:00:01 mx dovecot: auth: pam(x,192.0.2.9): unknown user,203.0.113.5): pam_authenticate() failed: Permission denied",
                "Nov 21 10:00:01 mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=a rhost=192.0.2.9 rhost=203.0.113.5",
                "Nov 21 10:00:01 mx postfix/smtpd[1]: warning: pam(x,203.0.113.5): unknown user",
            ],
            true,
        );
    }
}
