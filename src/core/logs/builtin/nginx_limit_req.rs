//! nginx's error log: a request over a `limit_req` zone's rate
//! (ngx_http_limit_req_module: `limiting requests, excess: E by zone "Z"`,
//! then the log handler's `, client: ADDR, server: ...`).
//!
//! Everything before the client is nginx's (the zone name is the
//! config's); the request and headers after it are the client's: the
//! pattern is anchored at the start of the line.

use super::rule::{Builtin, BuiltinRule};

pub const SOURCE: Builtin = Builtin {
    name: "nginx-limit-req",
    about: "nginx error.log: limiting requests",
    default_log: "/var/log/nginx/error.log",
    caveat: Some("nginx writes a basic-auth user name to error.log as the client sent it, newlines too, so a client can write whole error.log lines naming any address (only never-ban addresses are safe); prefer --source nginx --status 401 (or 429/503 for limit_req) on the access log, which nginx escapes"),
    rules: &[BuiltinRule {
        program: None,
        line: r#"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: \*\d+ limiting requests, excess: [\d.]+ by zone "[^"]*", client: (?P<addr>[0-9a-fA-F:.]+), server: "#,
        kind: "limited",
        time: Some((
            r"^(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) ",
            "%Y/%m/%d %H:%M:%S",
        )),
    }],
};

#[cfg(test)]
mod tests {
    const T: i64 = 1_795_255_201;

    #[test]
    fn limited_requests() {
        super::super::check::lines(
            &super::SOURCE,
            &[
                ("2026/11/21 10:00:01 [error] 256554#0: *99927 limiting requests, excess: 1.852 by zone \"one\", client: 203.0.113.5, server: example.com, request: \"POST /index.htm HTTP/1.0\", host: \"example.com\"", "203.0.113.5", "limited", T),
                ("2026/11/21 10:00:01 [warn] 1#1: *2 limiting requests, excess: 0.5 by zone \"api\", client: 2001:db8::5, server: , request: \"GET /?, client: 192.0.2.9, server: x HTTP/1.1\", host: \"a\", referrer: \"client: 192.0.2.9\"", "2001:db8::5", "limited", T),
            ],
            &[
                "2026/11/21 10:00:01 [error] 1#0: *2 open() \"/srv/limiting requests, excess: 1 by zone \"one\", client: 192.0.2.9, server: \" failed (2: No such file or directory), client: 203.0.113.5, server: x",
                "2026/11/21 10:00:01 [error] 1#0: *1 delaying request, excess: 0.5, by zone \"one\", client: 203.0.113.5, server: x",
            ],
        );
    }
}
