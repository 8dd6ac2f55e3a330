//! A built-in source as data: its rules as written, made a [`Def`].

use crate::core::logs::{Def, Rule};

/// A built-in source as data.
pub struct Builtin {
    pub name: &'static str,
    /// What it counts, for `test-source` and the docs.
    pub about: &'static str,
    pub default_log: &'static str,
    /// Said on every scan of it: a way its log lets a client steer a ban
    /// that no pattern can close.
    pub caveat: Option<&'static str>,
    pub rules: &'static [BuiltinRule],
}

pub struct BuiltinRule {
    pub program: Option<&'static str>,
    pub line: &'static str,
    pub kind: &'static str,
    /// `time` and `time_format`.
    pub time: Option<(&'static str, &'static str)>,
}

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
