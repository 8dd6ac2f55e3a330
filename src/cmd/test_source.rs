//! `fwctl test-source`: what a regex source (built in or `[[source]]`)
//! makes of a log or of one line, as fail2ban-regex and `cscli explain` do.
//! Reads only; needs no root; exits 1 when nothing matched.

use super::Invocation;
use crate::core::logs::explain::{self, LineReport, LogReport, Summary};
use crate::core::logs::regex_source::RegexSource;
use crate::core::logs::{self, MAX_LINE};
use crate::sys::{host, logfile};
use anyhow::{anyhow, bail, Result};
use std::fmt::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
#[command(
    group(clap::ArgGroup::new("input").required(true).args(["log", "line", "stdin"])),
    after_help = "\
Examples:
  fwctl test-source --source postfix-sasl --log /var/log/mail.log
  journalctl -u dovecot -o short-iso-precise | fwctl test-source --source dovecot -
  fwctl test-source --source mariadb --line \"2026-11-21 10:00:01 7 [Warning] Access denied for user 'root'@'203.0.113.5' (using password: YES)\" --json
The anchoring check ([[source]]s; the built-ins' tests check theirs): on the first line each rule
matches (and on --line), a documentation address
is planted in the line's free text (the text the pattern matched, inserted at every space and put
in place of every word but the first and the last); a pattern that then reads the planted address
lets a client choose the address, and test-source warns.")]
pub struct Options {
    /// The source: a built-in one (postfix-sasl, dovecot, vsftpd, proftpd,
    /// mariadb, nginx-limit-req, nginx-http-auth) or a [[source]] of the config.
    #[arg(long, value_name = "NAME")]
    pub source: String,
    /// The log to read (`-`: standard input), whole.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// `-`: read the log from standard input (as `--log -`).
    #[arg(value_name = "-", value_parser = clap::builder::PossibleValuesParser::new(["-"]))]
    pub stdin: Option<String>,
    /// One line to explain: matched or not, address, time, kind, and which
    /// part of the pattern took each.
    #[arg(long, value_name = "TEXT")]
    pub line: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
    /// How many addresses and unmatched shapes to list.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
}

/// Nothing matched: exit 1 after the report.
#[derive(Debug, thiserror::Error)]
#[error("no line matched source {0}")]
pub struct NothingMatched(String);

pub fn run(opts: &Options, inv: &Invocation) -> Result<bool> {
    let cfg = inv.load()?;
    let name = opts.source.as_str();
    if logs::FIXED.contains(&name) {
        bail!(
            "--source {name}: test-source reads regex sources; fix: use scan --dryrun for {name}, or one of {}",
            known(&cfg.sources)
        );
    }
    let def = logs::registry::find(&cfg.sources, name).ok_or_else(|| {
        anyhow!(
            "--source {name}: no such source; fix: use one of {}, or add a [[source]] named {name} to {}",
            known(&cfg.sources),
            cfg.path.display()
        )
    })?;
    let now = host::now();
    let mut src = RegexSource::new(&def, host::local_zone(now), now, (i64::MIN, i64::MAX))
        .map_err(|e| anyhow!(e))?;
    let matched = match &opts.line {
        Some(l) => {
            let r = explain::line(&mut src, l.as_bytes(), !def.builtin);
            let text = if opts.json {
                serde_json::to_string_pretty(&r)? + "\n"
            } else {
                human_line(&r)
            };
            super::out(text)?;
            r.matched
        }
        None => {
            let path = opts.log.clone().unwrap_or_else(|| PathBuf::from("-"));
            let mut sum = Summary::default();
            sum.check_anchoring = !def.builtin;
            logfile::each_line(&path, MAX_LINE, |l| sum.feed(&mut src, l))?;
            let r = sum.report(name, opts.top);
            let text = if opts.json {
                serde_json::to_string_pretty(&r)? + "\n"
            } else {
                human_log(&r, &path.display().to_string())
            };
            super::out(text)?;
            r.lines_matched > 0
        }
    };
    if !matched {
        return Err(NothingMatched(name.to_string()).into());
    }
    Ok(true)
}

fn known(cfg: &[logs::Def]) -> String {
    logs::registry::known(cfg)
        .into_iter()
        .filter(|n| !logs::FIXED.contains(&n.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn warn_unanchored(o: &mut String, rule: usize, m: &explain::Moved) {
    let _ = writeln!(
        o,
        "WARNING: rule {rule}'s addr is not anchored: with an address planted in the line's text it read {} instead of {}:\n    {}\n  fix: anchor it where only the program writes (^ and fixed text before it, or $ and fixed text after it; see docs/scan.md)",
        m.read, m.instead_of, m.line
    );
}

fn human_line(r: &LineReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "source {}: {}", r.source, r.line);
    if r.matched {
        let _ = writeln!(
            o,
            "matched rule {}: kind {}, address {}, time {} (from {})",
            r.rule.unwrap_or(0),
            r.kind.as_deref().unwrap_or("-"),
            r.address.as_deref().unwrap_or("-"),
            r.time.as_deref().unwrap_or("-"),
            r.time_from.unwrap_or("-")
        );
    } else {
        let _ = writeln!(o, "not matched: {}", r.why_not.as_deref().unwrap_or("-"));
    }
    for g in &r.groups {
        let _ = writeln!(
            o,
            "  {:<8} bytes {:>4}..{:<4} {}",
            g.name, g.start, g.end, g.text
        );
    }
    for m in &r.unanchored {
        warn_unanchored(&mut o, r.rule.unwrap_or(0), m);
    }
    o
}

fn human_log(r: &LogReport, path: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "source {} on {path}: {} lines read, {} matched",
        r.source, r.lines_read, r.lines_matched
    );
    for k in &r.kinds {
        let _ = writeln!(o, "  {:<24} {}", k.kind, k.lines);
    }
    for (n, what) in [
        (
            r.no_address,
            "matched, but the addr group is not an IP address (host names are never resolved)",
        ),
        (r.no_time, "matched, but no time could be read"),
        (
            r.too_long,
            "of the source's program, longer than 8 KiB: not read",
        ),
    ] {
        if n > 0 {
            let _ = writeln!(o, "  {n} {what}");
        }
    }
    let _ = writeln!(
        o,
        "addresses: {}{}",
        r.distinct_addresses,
        if r.addresses_not_kept > 0 {
            format!(
                " (and {} lines of addresses past the first {} not kept)",
                r.addresses_not_kept,
                explain::MAX_ADDRS
            )
        } else {
            String::new()
        }
    );
    for a in &r.addresses {
        let _ = writeln!(o, "  {:<39} {}", a.address, a.lines);
    }
    let _ = writeln!(
        o,
        "not matched ({} lines of the source's program, or of any program for a rule without one):",
        r.unmatched
    );
    for s in &r.unmatched_shapes {
        let _ = writeln!(
            o,
            "  {:>6}  {}\n          e.g. {}",
            s.lines, s.shape, s.example
        );
    }
    if r.shapes_not_kept > 0 {
        let _ = writeln!(
            o,
            "  ({} lines of shapes past the first {} not kept)",
            r.shapes_not_kept,
            explain::MAX_SHAPES
        );
    }
    for u in &r.unanchored {
        warn_unanchored(&mut o, u.rule, &u.moved);
    }
    o
}
