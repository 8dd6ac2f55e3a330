//! `[[source]]`: a log source described by a regex, for `scan --source
//! NAME` and `test-source`. Tables of one name are one source's rules; a
//! name of a built-in source replaces it (`core::logs`).

use crate::core::logs::{self, Rule};
use crate::units::Invalid;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    name: String,
    program: Option<String>,
    line: String,
    kind: String,
    time: Option<String>,
    time_format: Option<String>,
}

impl RawSource {
    pub fn validate(self) -> Result<(String, Rule), Invalid> {
        logs::check_name(&self.name).map_err(|e| Invalid(format!("[[source]] {e}")))?;
        let rule = Rule {
            program: self.program,
            line: self.line,
            kind: self.kind,
            time: self.time,
            time_format: self.time_format,
        };
        rule.check()
            .map_err(|e| Invalid(format!("[[source]] {}: {e}", self.name)))?;
        Ok((self.name, rule))
    }
}
