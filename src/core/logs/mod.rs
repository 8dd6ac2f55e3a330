//! Log sources described by regexes: the config's `[[source]]` tables and
//! the built-in ones (`builtin/`, one file each and one registration line).
//! `scan --source NAME` and `test-source` read them through
//! [`regex_source::RegexSource`], the same window reader, tally, policy and
//! report as the kernel's, the web servers' and sshd's sources.
//!
//! A source is one or more rules: each names the syslog `program` whose lines
//! it reads (read from the header only, [`header`]), the `line` regex whose
//! `addr` group is the address, the `kind` a hit is called, and where the
//! time is (the syslog or RFC 3339 prefix, or a `time` regex with a
//! `time_format`). Safety is the pattern's: `addr` must be anchored where
//! only the program writes (`test-source` plants addresses to check).

pub mod builtin;
pub mod delimited;
pub mod explain;
pub mod header;
pub mod prefilter;
pub mod regex_source;
pub mod registry;
pub mod time;

use crate::units::Invalid;

/// The longest line a regex source reads: a longer one is counted as
/// malformed, never cut (a cut line's end is not the program's end).
pub const MAX_LINE: usize = 8192;
/// The regex crate's size limit for a compiled `line` or `time`.
pub const REGEX_SIZE: usize = 1 << 20;
/// The longest `line` or `time` pattern as written.
pub const MAX_PATTERN: usize = 4096;
/// The sources that are not regex sources (their own readers).
pub const FIXED: [&str; 4] = ["kernel", "nginx", "apache", "sshd"];

/// One rule: a `[[source]]` table, or one line of a built-in, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The syslog program (`*` stands for any part of the name).
    pub program: Option<String>,
    pub line: String,
    pub kind: String,
    pub time: Option<String>,
    pub time_format: Option<String>,
}

/// A source: its name, where it logs by default, and its rules (tried in
/// order; the first that matches a line counts it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Def {
    pub name: String,
    pub default_log: Option<String>,
    pub rules: Vec<Rule>,
    /// Built in (false: the config's `[[source]]`).
    pub builtin: bool,
}

/// A source's name: what `--source` takes.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(Invalid(format!(
            "source name \"{name}\": fix: 1 to 64 of A-Z a-z 0-9 - _ ."
        )));
    }
    if FIXED.contains(&name) {
        return Err(Invalid(format!(
            "source name \"{name}\" is fwctl's own {name} reader, which a [[source]] cannot replace; fix: choose another name"
        )));
    }
    Ok(())
}

/// A regex, compiled with the size limit, or why not.
pub fn compile(key: &str, pattern: &str) -> Result<regex::bytes::Regex, Invalid> {
    if pattern.len() > MAX_PATTERN {
        return Err(Invalid(format!(
            "{key} is {} bytes; fix: at most {MAX_PATTERN}",
            pattern.len()
        )));
    }
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE)
        .dfa_size_limit(REGEX_SIZE)
        .build()
        .map_err(|e| {
            let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
            Invalid(format!("{key} = '{pattern}' is not a regex within fwctl's size limit ({first}); fix: correct or shorten it"))
        })
}

impl Rule {
    /// Every check a config load makes: the regexes compile within the
    /// size limit, `line` has an `addr` group and `time` a `time` group,
    /// `time` and `time_format` come together, the kind is a name.
    pub fn check(&self) -> Result<(), Invalid> {
        let line = compile("line", &self.line)?;
        if !line.capture_names().any(|n| n == Some("addr")) {
            return Err(Invalid::new(format!(
                "line = '{}' has no (?P<addr>...) group; fix: put the address in one, anchored where only the program writes (see test-source)",
                self.line
            )));
        }
        let k = &self.kind;
        if k.is_empty()
            || k.len() > 32
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(Invalid(format!(
                "kind \"{k}\": fix: 1 to 32 of A-Z a-z 0-9 - _"
            )));
        }
        if let Some(p) = &self.program {
            let ok = !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'[' | b']' | b':'));
            if !ok {
                return Err(Invalid(format!(
                    "program \"{p}\": fix: the syslog tag without [PID], e.g. postfix/smtpd (no spaces, brackets or colons)"
                )));
            }
        }
        match (&self.time, &self.time_format) {
            (Some(t), Some(f)) => {
                let re = compile("time", t)?;
                if !re.capture_names().any(|n| n == Some("time")) {
                    return Err(Invalid(format!(
                        "time = '{t}' has no (?P<time>...) group; fix: put the timestamp in one"
                    )));
                }
                time::TimeFormat::new(f)
                    .map_err(|e| Invalid(format!("{e}; fix: use chrono's strftime % sequences")))?;
            }
            (None, None) => {}
            _ => {
                return Err(Invalid::new(
                    "time and time_format come together; fix: give both, or neither (then the syslog or RFC 3339 prefix is the time)",
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(line: &str) -> Rule {
        Rule {
            program: Some("postfix/smtpd".into()),
            line: line.into(),
            kind: "sasl-failed".into(),
            time: None,
            time_format: None,
        }
    }

    #[test]
    fn a_rule_needs_an_addr_group_a_compiling_bounded_regex_and_both_time_keys() {
        assert!(
            rule(r"^warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL")
                .check()
                .is_ok()
        );
        for (r, want) in [
            (
                rule(r"^warning: [-._\w]+\[[0-9a-fA-F:.]+\]: SASL"),
                "no (?P<addr>...) group",
            ),
            (rule(r"(?P<addr>[0-9.]+"), "is not a regex"),
            (rule(r"(?P<addr>\w{1000}){1000}"), "is not a regex"),
            (rule(&"a".repeat(5000)), "at most 4096"),
            (
                Rule {
                    time: Some("^(?P<time>\\S+)".into()),
                    ..rule("(?P<addr>x)")
                },
                "come together",
            ),
            (
                Rule {
                    time: Some("^(\\S+)".into()),
                    time_format: Some("%s".into()),
                    ..rule("(?P<addr>x)")
                },
                "no (?P<time>...) group",
            ),
            (
                Rule {
                    time: Some("^(?P<time>\\S+)".into()),
                    time_format: Some("%Q".into()),
                    ..rule("(?P<addr>x)")
                },
                "unknown % sequence",
            ),
            (
                Rule {
                    kind: "a kind".into(),
                    ..rule("(?P<addr>x)")
                },
                "kind \"a kind\"",
            ),
            (
                Rule {
                    program: Some("postfix[1]".into()),
                    ..rule("(?P<addr>x)")
                },
                "program \"postfix[1]\"",
            ),
        ] {
            let e = r.check().unwrap_err().0;
            assert!(e.contains(want) && e.contains("fix:"), "{e}");
        }
        assert!(check_name("sshd").unwrap_err().0.contains("cannot replace"));
        assert!(check_name("a b").is_err());
    }
}
