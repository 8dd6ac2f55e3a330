//! The built-in regex sources: one file each, registered in [`ALL`]. Each
//! file's tests hold lines in the shapes the program writes (its source or
//! documentation), with client text planted where the client writes.
//! `tests/fail2ban_corpus.rs` runs fail2ban's annotated lines through them.

use super::{Def, Rule};

mod dovecot;
mod mariadb;
mod nginx_http_auth;
mod nginx_limit_req;
mod postfix_sasl;
mod proftpd;
mod vsftpd;

/// A built-in source as data.
pub struct Builtin {
    pub name: &'static str,
    /// What it counts, for `test-source` and the docs.
    pub about: &'static str,
    pub default_log: &'static str,
    pub rules: &'static [BuiltinRule],
}

pub struct BuiltinRule {
    pub program: Option<&'static str>,
    pub line: &'static str,
    pub kind: &'static str,
    /// `time` and `time_format`.
    pub time: Option<(&'static str, &'static str)>,
}

/// Every built-in source: one line each.
pub const ALL: &[&Builtin] = &[
    &postfix_sasl::SOURCE,
    &dovecot::SOURCE,
    &vsftpd::SOURCE,
    &proftpd::SOURCE,
    &mariadb::SOURCE,
    &nginx_limit_req::SOURCE,
    &nginx_http_auth::SOURCE,
];

impl Builtin {
    pub fn def(&self) -> Def {
        Def {
            name: self.name.to_string(),
            default_log: Some(self.default_log.to_string()),
            rules: self
                .rules
                .iter()
                .map(|r| Rule {
                    program: r.program.map(str::to_string),
                    line: r.line.to_string(),
                    kind: r.kind.to_string(),
                    time: r.time.map(|t| t.0.to_string()),
                    time_format: r.time.map(|t| t.1.to_string()),
                })
                .collect(),
            builtin: true,
        }
    }
}

/// The address group, for the patterns below: an IPv4 or IPv6 address's
/// characters (parse_addr decides whether they are one).
#[cfg(test)]
pub(crate) mod check {
    use crate::core::logline::Line;
    use crate::core::logs::explain::plant_in;
    use crate::core::logs::regex_source::RegexSource;
    use crate::units::time::Zone;
    use std::net::IpAddr;

    pub fn source(name: &str) -> RegexSource {
        let def = super::ALL.iter().find(|b| b.name == name).unwrap().def();
        // 2026-11-21T10:00:01Z is now; the window is every time.
        RegexSource::new(&def, Zone::fixed(0), 1_795_255_201, (i64::MIN, i64::MAX)).unwrap()
    }

    /// Each line gives its address and kind, at its time, and no address
    /// planted in its text moves the pattern off it; the others give none.
    pub fn lines(name: &str, hits: &[(&str, &str, &str, i64)], others: &[&str]) {
        lines_planted(name, hits, others, false)
    }

    /// [`lines`], planting only before the address when `tail_is_programs`.
    pub fn lines_planted(name: &str, hits: &[(&str, &str, &str, i64)], others: &[&str], tail_is_programs: bool) {
        let mut s = source(name);
        for (line, addr, kind, time) in hits {
            match s.parse(line.as_bytes()) {
                Line::Hit(h) => {
                    assert_eq!(h.src, addr.parse::<IpAddr>().unwrap(), "{line}");
                    assert_eq!(s.kinds[usize::from(h.dport.unwrap())], *kind, "{line}");
                    assert_eq!(h.time, *time, "{line}");
                }
                other => panic!("{other:?}: {line}"),
            }
            let moved = plant_in(&mut s, line.as_bytes(), tail_is_programs);
            assert!(moved.is_empty(), "{line}: {moved:?}");
        }
        for line in others {
            assert!(!matches!(s.parse(line.as_bytes()), Line::Hit(_)), "{line}");
        }
    }
}
