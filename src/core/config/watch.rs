//! `[[watch]]`: the logs `fwctl watch` follows, each with the flags a cron
//! `fwctl scan` line takes. Checked here for form (durations, counts,
//! names); whether the source, rule and flags fit together is the scan
//! plan's check, which `fwctl watch` runs on every entry before it starts.

use crate::core::logsource::Source;
use crate::core::web_log::Client;
use crate::units::duration::{parse_timeout, parse_window};
use crate::units::Invalid;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// What metrics, events and positions call it: `name`, else the source
    /// (and the rule, for kernel lines).
    pub name: String,
    pub source: Source,
    /// None with `journal`, or for the source's default log.
    pub log: Option<PathBuf>,
    pub journal: bool,
    pub rule: Option<String>,
    /// `type`: tcp, udp, icmp or all (checked here, read by the scan plan).
    pub kind: Option<String>,
    pub status: Option<String>,
    pub patterns: Vec<String>,
    pub client: Client,
    pub howmany: u64,
    pub within: u64,
    pub ipset: String,
    pub removeafter: u64,
}

/// `match`: one pattern name or a list of them, as `--match` is repeatable.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    name: Option<String>,
    #[serde(default = "kernel")]
    source: String,
    log: Option<PathBuf>,
    #[serde(default)]
    journal: bool,
    rule: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    status: Option<String>,
    #[serde(rename = "match")]
    patterns: Option<OneOrMany>,
    client: Option<String>,
    howmany: Option<u64>,
    within: Option<String>,
    ipset: Option<String>,
    removeafter: Option<String>,
}

fn kernel() -> String {
    "kernel".into()
}

impl RawWatch {
    /// `n`: the entry's number (1-based), for the errors.
    pub fn validate(self, n: usize) -> Result<Watch, Invalid> {
        let at = |msg: String| Invalid(format!("[[watch]] {n}: {msg}"));
        let source = Source::parse(&self.source).map_err(|e| at(format!("source: {}", e.0)))?;
        let need = |v: Option<String>, key: &str, eg: &str| {
            v.ok_or_else(|| at(format!("{key} is missing; fix: add {key} = \"{eg}\"")))
        };
        let howmany = self.howmany.ok_or_else(|| {
            at("howmany is missing; fix: add howmany = 10 (more than this many lines within `within` bans)".into())
        })?;
        if howmany == 0 {
            return Err(at(
                "howmany = 0 would ban on every line; fix: at least 1".into()
            ));
        }
        let within = need(self.within, "within", "10m")?;
        let within = parse_window(&within).map_err(|e| at(format!("within: {}", e.0)))?;
        let removeafter = need(self.removeafter, "removeafter", "1h")?;
        let removeafter =
            parse_timeout(&removeafter).map_err(|e| at(format!("removeafter: {}", e.0)))?;
        let ipset = need(self.ipset, "ipset", "throttle-hard")?;
        if self.journal && self.log.is_some() {
            return Err(at(
                "log and journal = true both name where to read; fix: keep one".into(),
            ));
        }
        if let Some(l) = &self.log {
            if !l.is_absolute() || l.as_os_str() == "-" {
                return Err(at(format!(
                    "log = \"{}\" is not an absolute path; fix: name the log file, e.g. /var/log/auth.log",
                    l.display()
                )));
            }
        }
        if let Some(k) = self.kind.as_deref() {
            if !["tcp", "udp", "icmp", "all"].contains(&k) {
                return Err(at(format!(
                    "type = \"{k}\"; fix: one of tcp, udp, icmp, all"
                )));
            }
        }
        let kind = self.kind;
        let client = match self.client.as_deref() {
            None => Client::Remote,
            Some(c) => <Client as clap::ValueEnum>::from_str(c, false)
                .map_err(|_| at(format!("client = \"{c}\"; fix: remote or forwarded")))?,
        };
        let patterns = match self.patterns {
            None => Vec::new(),
            Some(OneOrMany::One(p)) => vec![p],
            Some(OneOrMany::Many(v)) => v,
        };
        let name = match self.name {
            Some(n) => {
                crate::core::logs::check_name(&n).map_err(|e| at(format!("name: {}", e.0)))?;
                n
            }
            None => match (&source, &self.rule) {
                (Source::Kernel, r) => format!("kernel-{}", r.as_deref().unwrap_or("blocked")),
                (s, _) => s.name().to_string(),
            },
        };
        Ok(Watch {
            name,
            source,
            log: self.log,
            journal: self.journal,
            rule: self.rule,
            kind,
            status: self.status,
            patterns,
            client,
            howmany,
            within,
            ipset,
            removeafter,
        })
    }
}

/// The entries, each named once (two entries of one source need names).
pub fn validate_all(raw: Vec<RawWatch>) -> Result<Vec<Watch>, Invalid> {
    let mut out: Vec<Watch> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let w = r.validate(i + 1)?;
        if out.iter().any(|o| o.name == w.name) {
            return Err(Invalid(format!(
                "[[watch]] {}: a second entry named \"{}\"; fix: give each its own name = \"...\"",
                i + 1,
                w.name
            )));
        }
        out.push(w);
    }
    if out.len() > 64 {
        return Err(Invalid(
            "more than 64 [[watch]] entries; fix: merge them (one entry per log and rule)".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Watch, String> {
        let r: RawWatch = toml::from_str(text).map_err(|e| e.to_string())?;
        r.validate(1).map_err(|e| e.0)
    }

    #[test]
    fn an_entry_takes_the_flags_of_a_scan_line() {
        let w = one("source = \"sshd\"\nlog = \"/var/log/auth.log\"\nhowmany = 5\nwithin = \"10m\"\nipset = \"blacklist\"\nremoveafter = \"1d\"").unwrap();
        assert_eq!(
            (w.name.as_str(), w.howmany, w.within, w.removeafter),
            ("sshd", 5, 600, 86_400)
        );
        let w = one("rule = \"blocked\"\ntype = \"tcp\"\nhowmany = 500\nwithin = \"30m\"\nipset = \"throttle-hard\"\nremoveafter = \"2h\"").unwrap();
        assert_eq!(
            (w.name.as_str(), w.source.clone(), w.kind),
            ("kernel-blocked", Source::Kernel, Some("tcp".to_string()))
        );
        let w = one("source = \"nginx\"\nmatch = \"all\"\nhowmany = 5\nwithin = \"1h\"\nipset = \"blacklist\"\nremoveafter = \"1d\"").unwrap();
        assert_eq!(w.patterns, ["all"]);
    }

    #[test]
    fn mistakes_name_the_entry_and_the_fix() {
        for (text, want) in [
            ("howmany = 5\nwithin = \"10m\"\nipset = \"blacklist\"", "removeafter is missing"),
            ("within = \"10m\"\nipset = \"b\"\nremoveafter = \"1h\"", "howmany is missing"),
            ("howmany = 0\nwithin = \"10m\"\nipset = \"b\"\nremoveafter = \"1h\"", "howmany = 0"),
            ("howmany = 5\nwithin = \"soon\"\nipset = \"b\"\nremoveafter = \"1h\"", "within:"),
            ("howmany = 5\nwithin = \"1m\"\nipset = \"b\"\nremoveafter = \"99d\"", "removeafter:"),
            ("source = \"sshd\"\njournal = true\nlog = \"/var/log/auth.log\"\nhowmany = 5\nwithin = \"1m\"\nipset = \"b\"\nremoveafter = \"1h\"", "keep one"),
            ("log = \"auth.log\"\nhowmany = 5\nwithin = \"1m\"\nipset = \"b\"\nremoveafter = \"1h\"", "absolute"),
            ("type = \"sctp\"\nhowmany = 5\nwithin = \"1m\"\nipset = \"b\"\nremoveafter = \"1h\"", "tcp, udp"),
            ("source = \"a b\"\nhowmany = 5\nwithin = \"1m\"\nipset = \"b\"\nremoveafter = \"1h\"", "source:"),
        ] {
            let e = one(text).unwrap_err();
            assert!(e.starts_with("[[watch]] 1: ") && e.contains(want), "{e}");
            assert!(e.contains("fix") || e.contains("give") || e.contains("write"), "{e}");
        }
        assert!(
            one("howmany = 5\nwithin = \"1m\"\nipset = \"b\"\nremoveafter = \"1h\"\nfoo = 1")
                .is_err()
        );
    }

    #[test]
    fn two_entries_of_one_source_need_names() {
        let text = "[[watch]]\nsource = \"sshd\"\nhowmany = 5\nwithin = \"1m\"\nipset = \"b\"\nremoveafter = \"1h\"\n";
        #[derive(Deserialize)]
        struct W {
            watch: Vec<RawWatch>,
        }
        let w: W = toml::from_str(&format!("{text}{text}")).unwrap();
        let e = validate_all(w.watch).unwrap_err().0;
        assert!(e.contains("[[watch]] 2") && e.contains("name"), "{e}");
        let w: W = toml::from_str(&format!("{text}{text}name = \"ssh2\"\n")).unwrap();
        assert_eq!(validate_all(w.watch).unwrap()[1].name, "ssh2");
    }
}
