//! `[[pattern]]`: a named regex on the request line of a web log, with a
//! severity that reports and notifications carry. A config pattern of a
//! built-in's name replaces it (`core::patterns`).

use crate::units::Invalid;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub name: String,
    /// "nginx" or "apache".
    pub source: String,
    /// The regex, as written (it compiles: checked at load).
    pub request: String,
    pub severity: Severity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPattern {
    name: String,
    source: String,
    request: String,
    #[serde(default = "medium")]
    severity: Severity,
}

fn medium() -> Severity {
    Severity::Medium
}

/// A pattern's name: what `--match` takes, so no spaces or commas.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && name != "all" {
        Ok(())
    } else {
        Err(Invalid(format!(
            "[[pattern]] name \"{name}\": fix: 1 to 64 of A-Z a-z 0-9 - _ . (and not \"all\", which --match uses for every pattern)"
        )))
    }
}

impl RawPattern {
    pub fn validate(self) -> Result<Pattern, Invalid> {
        check_name(&self.name)?;
        if !matches!(self.source.as_str(), "nginx" | "apache") {
            return Err(Invalid(format!(
                "[[pattern]] {}: source \"{}\" is not nginx or apache",
                self.name, self.source
            )));
        }
        regex::bytes::RegexBuilder::new(&self.request)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
                Invalid(format!(
                    "[[pattern]] {}: request = '{}' is not a regex ({first}); fix: correct it (a literal dot is \\.)",
                    self.name, self.request
                ))
            })?;
        Ok(Pattern {
            name: self.name,
            source: self.source,
            request: self.request,
            severity: self.severity,
        })
    }
}
