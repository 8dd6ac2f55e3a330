//! The leaf layer: small value types and their parsing, shared by every other
//! layer and importing none of them. Durations (timeouts and windows),
//! timestamps and time zones, addresses, and the validated names that reach a
//! command line (set names, LOG prefixes, rates, ports).

pub mod addr;
pub mod duration;
pub mod names;
pub mod time;

/// A value that does not parse or does not fit: what is wrong and the fix,
/// ready to show as it is (the messages are written for the person who typed
/// the value, so callers only add where it came from).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(msg: impl Into<String>) -> Invalid {
        Invalid(msg.into())
    }

    /// The message, for tests and for callers that wrap it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Invalid {
        Invalid(s.to_string())
    }
}

impl From<String> for Invalid {
    fn from(s: String) -> Invalid {
        Invalid(s)
    }
}
