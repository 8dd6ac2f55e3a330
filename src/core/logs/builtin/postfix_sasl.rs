//! postfix's smtpd: a client's SASL authentication failed (smtpd_sasl_glue.c:
//! `msg_warn("%s: SASL %s authentication failed: %s", state->namaddr, ...)`,
//! namaddr being `NAME[ADDR]` or, with smtpd_client_port_logging,
//! `NAME[ADDR]:PORT`). Any master.cf instance: postfix/smtpd,
//! postfix/submission/smtpd, postfix-in/smtpd.
//!
//! The address is anchored at the start of the message: `warning: ` then
//! the client's name, which postfix checks is a valid host name (letters,
//! digits, `-._`, no bracket), then `[ADDR]`. A failure of postfix's own
//! link to the SASL server (`Connection lost to authentication server`) is
//! not the client's and does not count.

use super::rule::{Builtin, BuiltinRule};

pub const SOURCE: Builtin = Builtin {
    name: "postfix-sasl",
    about: "postfix smtpd: SASL authentication failed",
    default_log: "/var/log/mail.log",
    caveat: None,
    rules: &[BuiltinRule {
        program: Some("postfix*/smtpd"),
        line: r"^warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\](?::\d+)?: SASL [-\w]+ authentication failed:(?: ?$| [^C]| C[^o])",
        kind: "sasl-failed",
        time: None,
    }],
};

#[cfg(test)]
mod tests {
    const T: i64 = 1_795_255_201;

    #[test]
    fn sasl_failures_of_any_instance() {
        super::super::check::lines(
            &super::SOURCE,
            &[
                ("Nov 21 10:00:01 mx postfix/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", "203.0.113.5", "sasl-failed", T),
                ("Nov 21 10:00:01 mx postfix/submission/smtpd[7]: warning: mail.example.com[2001:db8::5]: SASL PLAIN authentication failed: authentication failure", "2001:db8::5", "sasl-failed", T),
                ("2026-11-21T10:00:01.5+00:00 mx postfix-in/smtpd[7]: warning: unknown[203.0.113.5]:55729: SASL CRAM-MD5 authentication failed:", "203.0.113.5", "sasl-failed", T),
                ("Nov 21 10:00:01 mx postfix/smtps/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: Invalid authentication mechanism", "203.0.113.5", "sasl-failed", T),
            ],
            &[
                "Nov 21 10:00:01 mx postfix/smtpd[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: Connection lost to authentication server",
                "Nov 21 10:00:01 mx postfix/smtpd[7]: warning: Illegal address syntax from unknown[203.0.113.5] in MAIL command: <warning: x[192.0.2.9]: SASL LOGIN authentication failed:>",
                "Nov 21 10:00:01 mx postfix/cleanup[7]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: x",
                "Nov 21 10:00:01 mx postfix/smtpd[7]: connect from unknown[203.0.113.5]",
            ],
        );
    }
}
