//! The logs `scan` reads (`--source`): the kernel's LOG lines, nginx's and
//! Apache's access logs, sshd's, and the regex sources of [`super::logs`]
//! (built in, or the config's `[[source]]`). One line parser for the window
//! reader and the tally, whatever the source: they ask it for a line's time
//! (to seek the window), for the needle a candidate line holds, and for the
//! line's hit.

use super::logline::{self, Line};
use super::logs::regex_source::RegexSource;
use super::ssh_log::SshParser;
use super::web_log::WebParser;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The kernel's LOG lines as rsyslog writes them (fwctl's rules).
    Kernel,
    /// nginx's access log (combined or common format).
    Nginx,
    /// Apache's access log (combined or common format).
    Apache,
    /// sshd's lines in auth.log (or the journal with --journal).
    Sshd,
    /// A regex source by name: built in or the config's `[[source]]`
    /// (which one, `scan` finds once the config is read).
    Regex(String),
}

impl Source {
    /// `--source NAME`: one of the fixed four, or any well-formed name
    /// (checked against the built-in and config sources once the config is
    /// read).
    pub fn parse(s: &str) -> Result<Source, crate::units::Invalid> {
        Ok(match s {
            "kernel" => Source::Kernel,
            "nginx" => Source::Nginx,
            "apache" => Source::Apache,
            "sshd" => Source::Sshd,
            name => {
                super::logs::check_name(name)?;
                Source::Regex(name.to_string())
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Source::Kernel => "kernel",
            Source::Nginx => "nginx",
            Source::Apache => "apache",
            Source::Sshd => "sshd",
            Source::Regex(n) => n,
        }
    }

    /// Where the source logs by default (Debian's paths; fwctl's RAM disk);
    /// a regex source's is its definition's.
    pub fn default_log(&self) -> Option<&'static str> {
        match self {
            Source::Kernel => Some("/ram/iptables.log"),
            Source::Nginx => Some("/var/log/nginx/access.log"),
            Source::Apache => Some("/var/log/apache2/access.log"),
            Source::Sshd => Some("/var/log/auth.log"),
            Source::Regex(_) => None,
        }
    }

    pub fn is_web(&self) -> bool {
        matches!(self, Source::Nginx | Source::Apache)
    }

    /// What a report's top column counts.
    pub fn top_label(&self) -> &'static str {
        match self {
            Source::Kernel => "TOP PORTS",
            Source::Nginx | Source::Apache => "TOP STATUS",
            Source::Sshd | Source::Regex(_) => "TOP KINDS",
        }
    }
}

/// One per run (and per reading thread): the variants' sizes do not matter,
/// a pointer to chase on every line would.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum LineParser {
    Kernel(logline::Parser),
    Web(WebParser),
    Ssh(SshParser),
    Regex(RegexSource),
}

impl LineParser {
    pub fn needle(&self) -> &[u8] {
        match self {
            LineParser::Kernel(p) => p.needle(),
            LineParser::Web(p) => p.needle(),
            LineParser::Ssh(p) => p.needle(),
            // Unused: every line is handed to it (below).
            LineParser::Regex(_) => b"\n",
        }
    }

    /// Whether nearly every line holds the needle, so that the tally
    /// hands the parser every line rather than search for the needle
    /// first. Only for a parser that finds the needle itself and answers
    /// `Other` without it: auth.log's lines are mostly sshd's.
    pub fn needle_on_most_lines(&self) -> bool {
        matches!(self, LineParser::Ssh(_) | LineParser::Regex(_))
    }

    pub fn window(&self) -> (i64, i64) {
        match self {
            LineParser::Kernel(p) => p.window(),
            LineParser::Web(p) => p.window(),
            LineParser::Ssh(p) => p.window(),
            LineParser::Regex(p) => p.window(),
        }
    }

    /// Move the window: `fwctl watch` slides it as time goes on.
    pub fn set_window(&mut self, window: (i64, i64)) {
        match self {
            LineParser::Kernel(p) => p.set_window(window),
            LineParser::Web(p) => p.set_window(window),
            LineParser::Ssh(p) => p.set_window(window),
            LineParser::Regex(p) => p.set_window(window),
        }
    }

    /// The time of a line of the log (the source's or not), to seek by.
    pub fn timestamp(&mut self, line: &[u8]) -> Option<i64> {
        match self {
            LineParser::Kernel(p) => p.timestamp(line),
            LineParser::Web(p) => p.timestamp(line),
            LineParser::Ssh(p) => p.timestamp(line),
            LineParser::Regex(p) => p.timestamp(line),
        }
    }

    /// The timestamps this source's lines have, and where to look when a
    /// file has none.
    pub fn timestamp_hint(&self) -> (&'static str, &'static str) {
        match self {
            LineParser::Kernel(_) => (
                "RFC 3339 like 2026-11-21T10:00:01+00:00, or Nov 21 10:00:01",
                "check that --log names the log rsyslog writes (see rsyslog/10-iptables.conf)",
            ),
            LineParser::Web(_) => (
                "the access log form [21/Nov/2026:10:00:01 +0000]",
                "check that --log names the server's access log in the combined or common format",
            ),
            LineParser::Ssh(_) => (
                "RFC 3339 like 2026-11-21T10:00:01+00:00, or Nov 21 10:00:01",
                "check that --log names auth.log, or read the journal with --journal",
            ),
            LineParser::Regex(_) => (
                "the source's time group, or RFC 3339 like 2026-11-21T10:00:01+00:00, or Nov 21 10:00:01",
                "check that --log names the source's log, and try it with fwctl test-source",
            ),
        }
    }

    pub fn parse(&mut self, line: &[u8]) -> Line {
        match self {
            LineParser::Kernel(p) => p.parse(line),
            LineParser::Web(p) => p.parse(line),
            LineParser::Ssh(p) => p.parse(line),
            LineParser::Regex(p) => p.parse(line),
        }
    }
}
