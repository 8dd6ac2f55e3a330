//! `[[capture.signature]]`: a literal or regex looked for in the first data
//! segment of each connection to the listed ports (opt-in). High severity
//! bans the sender; other severities are reported only.

use crate::core::config::pattern::Severity;
use crate::units::Invalid;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// What a signature looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needle {
    /// Bytes, matched with every other literal in one pass.
    Contains(String),
    /// A regex on the payload bytes (it compiles: checked at load).
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub proto: Proto,
    pub ports: Vec<u16>,
    pub needle: Needle,
    pub nocase: bool,
    pub severity: Severity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignature {
    name: String,
    #[serde(default = "tcp")]
    proto: String,
    #[serde(default)]
    ports: Vec<i64>,
    contains: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    nocase: bool,
    #[serde(default = "medium")]
    severity: Severity,
}

fn tcp() -> String {
    "tcp".into()
}

fn medium() -> Severity {
    Severity::Medium
}

/// Most signatures, and most distinct ports per protocol over all of them:
/// each port is a test in the kernel's filter, whose jumps reach at most
/// 255 instructions.
pub const MAX_SIGNATURES: usize = 256;
pub const MAX_PORTS: usize = 8;

impl RawSignature {
    fn validate(self) -> Result<Signature, Invalid> {
        let at = |what: String| Invalid(format!("[[capture.signature]] {}: {what}", self.name));
        crate::core::config::pattern::check_name(&self.name)
            .map_err(|e| Invalid(e.0.replace("[[pattern]]", "[[capture.signature]]")))?;
        let proto = match self.proto.as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            p => return Err(at(format!("proto = \"{p}\"; fix: \"tcp\" or \"udp\""))),
        };
        if self.ports.is_empty() {
            return Err(at(
                "no ports; fix: the ports whose payloads it looks at, e.g. ports = [80, 3306]"
                    .into(),
            ));
        }
        let mut ports = Vec::new();
        for &p in &self.ports {
            let port = u16::try_from(p)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| at(format!("ports: {p} is not a port; fix: 1-65535")))?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let needle = match (self.contains, self.regex) {
            (Some(c), None) if !c.is_empty() => Needle::Contains(c),
            (None, Some(r)) => {
                regex(&r, self.nocase).map_err(|e| {
                        let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
                        at(format!("regex = '{r}' is not a regex ({first}); fix: correct it (a literal dot is \\.)"))
                    })?;
                Needle::Regex(r)
            }
            (Some(_), None) => {
                return Err(at("contains = \"\"; fix: the bytes to look for".into()))
            }
            _ => {
                return Err(at(
                    "needs one of contains or regex; fix: e.g. contains = \"UNION SELECT\"".into(),
                ))
            }
        };
        if proto == Proto::Udp && self.severity == Severity::High {
            return Err(at("proto = \"udp\" with severity = \"high\": a UDP sender can be forged, so UDP signatures only report; fix: severity = \"medium\" or \"low\"".into()));
        }
        Ok(Signature {
            name: self.name,
            proto,
            ports,
            needle,
            nocase: self.nocase,
            severity: self.severity,
        })
    }
}

/// Validate every `[[capture.signature]]`: names unique, the ports within
/// what the kernel filter can test.
pub fn validate(raw: Vec<RawSignature>) -> Result<Vec<Signature>, Invalid> {
    if raw.len() > MAX_SIGNATURES {
        return Err(Invalid(format!(
            "[[capture.signature]]: {} signatures; fix: at most {MAX_SIGNATURES}",
            raw.len()
        )));
    }
    let sigs = raw
        .into_iter()
        .map(RawSignature::validate)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, s) in sigs.iter().enumerate() {
        if sigs[..i].iter().any(|o| o.name == s.name) {
            return Err(Invalid(format!(
                "[[capture.signature]] {}: the name is used twice; fix: give each signature its own name",
                s.name
            )));
        }
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        let n = ports(&sigs, proto).len();
        if n > MAX_PORTS {
            return Err(Invalid(format!(
                "[[capture.signature]]: {n} distinct {} ports; fix: at most {MAX_PORTS} over all signatures",
                proto.as_str()
            )));
        }
    }
    Ok(sigs)
}

/// A signature's regex as capture runs it: `nocase` folds ASCII case, and
/// the compiled size is capped (validation and the matcher build it alike).
pub fn regex(pattern: &str, nocase: bool) -> Result<regex::bytes::Regex, regex::Error> {
    let folded;
    let pattern = if nocase {
        folded = format!("(?i){pattern}");
        &folded
    } else {
        pattern
    };
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
}

/// The distinct ports the signatures of `proto` watch, sorted.
pub fn ports(sigs: &[Signature], proto: Proto) -> Vec<u16> {
    let mut p: Vec<u16> = sigs
        .iter()
        .filter(|s| s.proto == proto)
        .flat_map(|s| s.ports.iter().copied())
        .collect();
    p.sort_unstable();
    p.dedup();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Signature>, String> {
        #[derive(Deserialize)]
        struct T {
            signature: Vec<RawSignature>,
        }
        let t: T = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(t.signature).map_err(|e| e.0)
    }

    #[test]
    fn the_issue_s_example_parses_with_defaults() {
        let s = parse("[[signature]]\nname = \"sql-union\"\nproto = \"tcp\"\nports = [3306, 80]\ncontains = \"UNION SELECT\"\nnocase = true\nseverity = \"high\"\n[[signature]]\nname = \"shell\"\nports = [80]\nregex = 'cmd=[a-z]+'\n").unwrap();
        assert_eq!(s[0].ports, vec![3306, 80]);
        assert_eq!(s[0].needle, Needle::Contains("UNION SELECT".into()));
        assert!(s[0].nocase);
        assert_eq!(s[0].severity, Severity::High);
        assert_eq!(
            (s[1].proto, s[1].severity, s[1].nocase),
            (Proto::Tcp, Severity::Medium, false)
        );
        assert_eq!(ports(&s, Proto::Tcp), vec![80, 3306]);
        assert!(ports(&s, Proto::Udp).is_empty());
    }

    #[test]
    fn bad_signatures_are_refused_with_the_fix() {
        let sig = |body: &str| format!("[[signature]]\nname = \"s\"\n{body}\n");
        for (text, says) in [
            (sig("ports = [80]"), "needs one of contains or regex"),
            (
                sig("ports = [80]\ncontains = \"a\"\nregex = \"b\""),
                "needs one of contains or regex",
            ),
            (sig("ports = [80]\ncontains = \"\""), "contains = \"\""),
            (sig("contains = \"a\""), "no ports"),
            (sig("ports = [0]\ncontains = \"a\""), "0 is not a port"),
            (
                sig("ports = [70000]\ncontains = \"a\""),
                "70000 is not a port",
            ),
            (
                sig("ports = [80]\nproto = \"icmp\"\ncontains = \"a\""),
                "proto = \"icmp\"",
            ),
            (sig("ports = [80]\nregex = '(unclosed'"), "is not a regex"),
            (
                sig("ports = [80]\ncontains = \"a\"\nseverity = \"urgent\""),
                "severity",
            ),
            (
                sig("ports = [80]\ncontains = \"a\"\nmatch = \"a\""),
                "unknown field",
            ),
            (
                sig("ports = [53]\nproto = \"udp\"\ncontains = \"a\"\nseverity = \"high\""),
                "UDP signatures only report",
            ),
            (
                format!(
                    "{}{}",
                    sig("ports = [80]\ncontains = \"a\""),
                    sig("ports = [81]\ncontains = \"b\"")
                ),
                "used twice",
            ),
            (
                "[[signature]]\nname = \"a b\"\nports = [80]\ncontains = \"a\"\n".to_string(),
                "[[capture.signature]] name",
            ),
            (
                sig(&format!(
                    "ports = [{}]\ncontains = \"a\"",
                    (1..=9).map(|p| p.to_string()).collect::<Vec<_>>().join(",")
                )),
                "9 distinct tcp ports",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
