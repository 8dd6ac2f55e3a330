//! The request patterns a web log is scanned for (pure): the built-in ones,
//! replaced by a config `[[pattern]]` of the same name, and the selection
//! `--match` makes, compiled as one RegexSet (what `[[pattern]]` is checked
//! with, and what answers when their DFA cannot be walked: see
//! web_requests).

use super::config::pattern::{Pattern, Severity};
use crate::units::Invalid;
use regex::bytes::{RegexSet, RegexSetBuilder};

/// At most this many patterns in one run (a hit marks them in 64 bits).
pub const MAX: usize = 64;

/// Name, regex on the request line, severity. Encodings are part of each:
/// a scanner sends `%2e%2e%2f` as readily as `../`.
pub const BUILTIN: [(&str, &str, Severity); 6] = [
    (
        "path-traversal",
        r"(?i)(\.\.(/|\\|%2f|%5c)|%2e%2e(/|\\|%2f|%5c)|%252e%252e|\.\.%c0%af|%c0%ae%c0%ae)",
        Severity::High,
    ),
    (
        "sql-injection",
        r"(?i)(union(\s|\+|%20|/\*.*?\*/)+(all(\s|\+|%20)+)?select|select(\s|\+|%20)+[^ ]*(\s|\+|%20)+from(\s|\+|%20)|(%27|')(\s|\+|%20)*or(\s|\+|%20)+(%27|')?\d+(%27|')?(\s|\+|%20)*(=|%3d)|sleep(\s|%20)*\(\s*\d+|benchmark(\s|%20)*\(|information_schema)",
        Severity::High,
    ),
    (
        "xss",
        r"(?i)(<|%3c)(\s|%20)*script|javascript(:|%3a)|on(error|load)(\s|%20)*(=|%3d)",
        Severity::Medium,
    ),
    (
        "env-file",
        r"(?i)/\.env(\.[a-z]+)?(\s|\?|$|%20)",
        Severity::High,
    ),
    (
        "wp-login",
        r"(?i)/(wp-login\.php|xmlrpc\.php|wp-admin/)",
        Severity::Low,
    ),
    ("cgi-bin", r"(?i)/cgi-bin/", Severity::Medium),
];

/// Every pattern for a source: the built-ins, with the config's replacing
/// those of the same name, then the config's others.
pub fn for_source(config: &[Pattern], source: &str) -> Vec<Pattern> {
    let mine: Vec<&Pattern> = config.iter().filter(|p| p.source == source).collect();
    let mut out: Vec<Pattern> = BUILTIN
        .iter()
        .map(|(n, r, s)| {
            mine.iter()
                .find(|p| p.name == *n)
                .map(|p| (*p).clone())
                .unwrap_or(Pattern {
                    name: n.to_string(),
                    source: source.to_string(),
                    request: r.to_string(),
                    severity: *s,
                })
        })
        .collect();
    for p in mine {
        if !out.iter().any(|o| o.name == p.name) {
            out.push(p.clone());
        }
    }
    out
}

/// `--match` names (or `all`) among `all`.
pub fn select(all: &[Pattern], names: &[String]) -> Result<Vec<Pattern>, Invalid> {
    let mut out: Vec<Pattern> = Vec::new();
    for n in names {
        if n == "all" {
            for p in all {
                if !out.iter().any(|o| o.name == p.name) {
                    out.push(p.clone());
                }
            }
            continue;
        }
        let p = all.iter().find(|p| &p.name == n).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
            Invalid(format!("--match {n}: no such pattern; fix: one of {}, or all (add others as [[pattern]] in the config)", names.join(", ")))
        })?;
        if !out.iter().any(|o| o.name == p.name) {
            out.push(p.clone());
        }
    }
    if out.len() > MAX {
        return Err(Invalid(format!(
            "--match: {} patterns; fix: at most {MAX} in one run",
            out.len()
        )));
    }
    Ok(out)
}

/// The set, with the regex crate's default syntax: request_walk builds the
/// walked DFA from the same strings with the same defaults (a flag set here
/// must be set there too; its tests compare the two).
pub fn compile(patterns: &[Pattern]) -> RegexSet {
    RegexSetBuilder::new(patterns.iter().map(|p| p.request.as_str()))
        .size_limit(8 << 20)
        .build()
        .expect("patterns are checked when the config loads")
}

/// The names and the highest severity of the patterns in `marks`.
pub fn marked(patterns: &[Pattern], marks: u64) -> (Vec<String>, Option<Severity>) {
    let hit: Vec<&Pattern> = patterns
        .iter()
        .enumerate()
        .filter(|(i, _)| marks & (1 << i) != 0)
        .map(|(_, p)| p)
        .collect();
    (
        hit.iter().map(|p| p.name.clone()).collect(),
        hit.iter().map(|p| p.severity).max(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(name: &str) -> (Vec<&'static str>, Vec<&'static str>) {
        match name {
            "path-traversal" => (
                vec![
                    "GET /../../etc/passwd HTTP/1.1",
                    "GET /static/..%2f..%2fetc/passwd HTTP/1.1",
                    "GET /%2e%2e/%2e%2e/boot.ini HTTP/1.0",
                    "GET /a/%252e%252e/b HTTP/1.1",
                    "GET /..\\..\\win.ini HTTP/1.1",
                ],
                vec!["GET /docs/v1.2/index.html HTTP/1.1", "GET /a...b HTTP/1.1"],
            ),
            "sql-injection" => (
                vec![
                    "GET /item?id=1%20UNION%20SELECT%20password%20FROM%20users HTTP/1.1",
                    "GET /?q=1+union+all+select+1,2 HTTP/1.1",
                    "GET /login?u=admin'%20or%201=1-- HTTP/1.1",
                    "GET /?id=1;select+sleep(5) HTTP/1.1",
                    "GET /?x=information_schema.tables HTTP/1.1",
                ],
                vec![
                    "GET /union-station/selected-works HTTP/1.1",
                    "GET /search?q=select+a+car HTTP/1.1",
                ],
            ),
            "xss" => (
                vec![
                    "GET /?q=<script>alert(1)</script> HTTP/1.1",
                    "GET /?q=%3Cscript%3Ealert(1) HTTP/1.1",
                    "GET /?u=javascript:alert(1) HTTP/1.1",
                ],
                vec!["GET /scripts/app.js HTTP/1.1", "GET /description HTTP/1.1"],
            ),
            "env-file" => (
                vec![
                    "GET /.env HTTP/1.1",
                    "GET /api/.env.production HTTP/1.1",
                    "GET /.env?x=1 HTTP/1.1",
                ],
                vec!["GET /.envoy/config HTTP/1.1", "GET /environment HTTP/1.1"],
            ),
            "wp-login" => (
                vec![
                    "POST /wp-login.php HTTP/1.1",
                    "POST /xmlrpc.php HTTP/1.1",
                    "GET /wp-admin/setup-config.php HTTP/1.1",
                ],
                vec!["GET /blog/wp-content/uploads/a.png HTTP/1.1"],
            ),
            "cgi-bin" => (
                vec![
                    "GET /cgi-bin/luci HTTP/1.1",
                    "POST /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.1",
                ],
                vec!["GET /bin/cgi HTTP/1.1"],
            ),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_built_in_matches_real_looking_requests_and_spares_ordinary_ones() {
        let all = for_source(&[], "nginx");
        for p in &all {
            let re = regex::bytes::Regex::new(&p.request).unwrap();
            let (yes, no) = requests(&p.name);
            for r in yes {
                assert!(re.is_match(r.as_bytes()), "{} misses {r}", p.name);
            }
            for r in no {
                assert!(!re.is_match(r.as_bytes()), "{} takes {r}", p.name);
            }
        }
    }

    #[test]
    fn a_config_pattern_replaces_a_built_in_and_match_selects() {
        let mine = Pattern {
            name: "wp-login".into(),
            source: "nginx".into(),
            request: "/wp-login".into(),
            severity: Severity::High,
        };
        let extra = Pattern {
            name: "phpmyadmin".into(),
            source: "nginx".into(),
            request: "(?i)/phpmyadmin".into(),
            severity: Severity::Medium,
        };
        let apache_only = Pattern {
            source: "apache".into(),
            ..extra.clone()
        };
        let all = for_source(&[mine.clone(), extra.clone(), apache_only], "nginx");
        assert_eq!(all.len(), 7);
        assert_eq!(
            all.iter().find(|p| p.name == "wp-login").unwrap().severity,
            Severity::High
        );
        let chosen = select(&all, &["xss".into(), "phpmyadmin".into(), "xss".into()]).unwrap();
        assert_eq!(
            chosen.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["xss", "phpmyadmin"]
        );
        assert_eq!(select(&all, &["all".into()]).unwrap().len(), 7);
        let e = select(&all, &["nope".into()]).unwrap_err().0;
        assert!(
            e.contains("no such pattern") && e.contains("path-traversal"),
            "{e}"
        );
        let set = compile(&chosen);
        let m: Vec<usize> = set
            .matches(b"GET /phpMyAdmin/?q=<script> HTTP/1.1")
            .iter()
            .collect();
        assert_eq!(m, [0, 1]);
        let (names, sev) = marked(&chosen, 0b11);
        assert_eq!(
            (names, sev),
            (
                vec!["xss".to_string(), "phpmyadmin".to_string()],
                Some(Severity::Medium)
            )
        );
    }
}
