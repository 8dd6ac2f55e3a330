//! nginx's error log: HTTP basic authentication failures
//! (ngx_http_auth_basic_module: `user "U" was not found in "FILE"`, `user
//! "U": password mismatch`), and TLS handshakes that failed on garbage
//! (`SSL_do_handshake() failed (SSL: ...) while SSL handshaking`).
//!
//! The client writes both before the address (the user name, as it came)
//! and after it (the request line, the Host and Referer headers). So the
//! pattern reads the whole line: nginx's fields from the start to the end,
//! every client field as text without a double quote. A client that writes
//! one gives no address (which is the price: such a line is not counted),
//! never another one.

use super::rule::{Builtin, BuiltinRule};

const TIME: Option<(&str, &str)> = Some((
    r"^(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) ",
    "%Y/%m/%d %H:%M:%S",
));

pub const SOURCE: Builtin = Builtin {
    name: "nginx-http-auth",
    about: "nginx error.log: basic authentication failed",
    default_log: "/var/log/nginx/error.log",
    caveat: Some("nginx writes a basic-auth user name to error.log as the client sent it, newlines too, so a client can write whole error.log lines naming any address (only never-ban addresses are safe); prefer --source nginx --status 401 (or 429/503 for limit_req) on the access log, which nginx escapes"),
    rules: &[
        BuiltinRule {
            program: None,
            line: r#"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: \*\d+ user "[^"]*"(?: was not found in "[^"]*"|: password mismatch), client: (?P<addr>[0-9a-fA-F:.]+), server: [^,"]*(?:, request: "[^"]*")?(?:, subrequest: "[^"]*")?(?:, upstream: "[^"]*")?(?:, host: "[^"]*")?(?:, referrer: "[^"]*")?$"#,
            kind: "auth-failed",
            time: TIME,
        },
        BuiltinRule {
            program: None,
            line: r#"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: \*\d+ SSL_do_handshake\(\) failed \(SSL: [^()]*\) while SSL handshaking, client: (?P<addr>[0-9a-fA-F:.]+), server: [^,"]*$"#,
            kind: "tls-failed",
            time: TIME,
        },
    ],
};

#[cfg(test)]
mod tests {
    const T: i64 = 1_795_255_201;

    #[test]
    fn user_not_found_password_mismatch_and_tls_garbage() {
        super::super::check::lines(
            &super::SOURCE,
            &[
                ("2026/11/21 10:00:01 [error] 2865#0: *66647 user \"xyz\" was not found in \"/etc/nginx/.htpasswd\", client: 203.0.113.5, server: www.example.com, request: \"GET / HTTP/1.1\", host: \"www.example.com\"", "203.0.113.5", "auth-failed", T),
                ("2026/11/21 10:00:01 [error] 30708#0: *3 user \"scriben dio\": password mismatch, client: 2001:db8::5, server: , request: \"GET /?a=,+client:+192.0.2.9 HTTP/1.1\", host: \"localhost:8443\", referrer: \"https://example.com/\"", "2001:db8::5", "auth-failed", T),
                ("2026/11/21 10:00:01 [crit] 76952#76952: *2454307 SSL_do_handshake() failed (SSL: error:1408F0C6:SSL routines:ssl3_get_record:packet length too long) while SSL handshaking, client: 203.0.113.5, server: 0.0.0.0:443", "203.0.113.5", "tls-failed", T),
            ],
            &[
                // A user name that writes nginx's fields: no address at all.
                "2026/11/21 10:00:01 [error] 30708#0: *3 user \"test\": password mismatch, client: 192.0.2.9, server: test, request: \"GET / HTTP/1.1\", host: \"x\"\" was not found in \"/etc/nginx/.htpasswd\", client: 203.0.113.5, server: , request: \"GET / HTTP/1.1\", host: \"x\"",
                "2026/11/21 10:00:01 [error] 1#0: *3 user \"a\": password mismatch, client: 203.0.113.5, server: x, request: \"GET /\", client: 192.0.2.9, server: x HTTP/1.1\", host: \"x\"",
                "2026/11/21 10:00:01 [error] 1#0: *1 no user/password was provided for basic authentication, client: 203.0.113.5, server: x",
            ],
        );
    }
}
