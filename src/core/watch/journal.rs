//! The journal's entries as the log lines sshd's parser reads (pure).
//! `journalctl -o json` gives one object per entry; the line is built from
//! the fields journald itself writes (the receive time, the host, the
//! process id) and the message, which is sshd's text and so partly the
//! client's: it is cut at [`MAX_MESSAGE`] and its line breaks become
//! spaces, so one entry is one line whatever a client sent.

use serde_json::Value;

/// Which entries of the journal a source reads (`journal = true`,
/// `scan --journal`): sshd by its units (a field journald sets itself); a
/// regex source by the syslog programs of its rules (`SYSLOG_IDENTIFIER`,
/// which a local process names itself, as it does in the syslog files:
/// the same trust as the files), or every entry when a rule has no
/// program or a `*` in it (its parser then picks the lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matches {
    Units(&'static [&'static str]),
    Identifiers(Vec<String>),
    Everything,
}

/// The units sshd runs as: `ssh` on Debian, `sshd` elsewhere.
pub const SSH_UNITS: [&str; 2] = ["ssh.service", "sshd.service"];

impl Matches {
    pub fn ssh() -> Matches {
        Matches::Units(&SSH_UNITS)
    }

    /// The entries a regex source's rules can match.
    pub fn of(def: &crate::core::logs::Def) -> Matches {
        let mut ids: Vec<String> = Vec::new();
        for r in &def.rules {
            // `a|b`: either program; `*` is not a journal match.
            let Some(alternatives) = &r.program else {
                return Matches::Everything;
            };
            for p in alternatives.split('|') {
                if p.is_empty() || p.contains('*') {
                    return Matches::Everything;
                }
                if !ids.iter().any(|i| i == p) {
                    ids.push(p.to_string());
                }
            }
        }
        if ids.is_empty() {
            Matches::Everything
        } else {
            Matches::Identifiers(ids)
        }
    }

    /// What the reports call it.
    pub fn shown(&self) -> String {
        match self {
            Matches::Units(u) => format!("journal ({})", u.join(", ")),
            Matches::Identifiers(i) => format!("journal ({})", i.join(", ")),
            Matches::Everything => "journal (every entry)".into(),
        }
    }
}

pub const MAX_MESSAGE: usize = 8 * 1024;

/// One entry: the line, and the cursor that resumes after it.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub line: Vec<u8>,
    pub cursor: String,
}

/// A field's bytes: journald writes text as a string and anything else as
/// an array of byte values.
fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => None,
    }
}

/// A header word: what journald or the process named itself, with nothing
/// that could split the header into other words.
fn word(v: Option<&Value>, default: &str) -> String {
    let b = v
        .and_then(bytes)
        .unwrap_or_else(|| default.as_bytes().to_vec());
    let s: String = String::from_utf8_lossy(&b[..b.len().min(128)])
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == ':' || c == '[' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() {
        default.to_string()
    } else {
        s
    }
}

/// The entry of one line of `journalctl -o json`; None for a line that is
/// not an entry with a time and a cursor.
pub fn entry(json: &[u8]) -> Option<Entry> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let cursor = v.get("__CURSOR")?.as_str()?;
    if cursor.len() > 512 {
        return None;
    }
    let us: u64 = v.get("__REALTIME_TIMESTAMP")?.as_str()?.parse().ok()?;
    let host = word(v.get("_HOSTNAME"), "localhost");
    let ident = word(v.get("SYSLOG_IDENTIFIER"), "unknown");
    let pid: u32 = v
        .get("_PID")
        .and_then(Value::as_str)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mut msg = v.get("MESSAGE").and_then(bytes).unwrap_or_default();
    msg.truncate(MAX_MESSAGE);
    for b in &mut msg {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    let secs = (us / 1_000_000) as i64;
    let stamp = crate::units::time::utc(secs);
    let mut line = format!(
        "{}.{:06}+00:00 {host} {ident}[{pid}]: ",
        stamp.trim_end_matches('Z'),
        us % 1_000_000
    )
    .into_bytes();
    line.extend_from_slice(&msg);
    Some(Entry {
        line,
        cursor: cursor.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_reads_the_entries_of_its_programs_or_every_entry() {
        let def = |programs: &[Option<&str>]| crate::core::logs::Def {
            name: "x".into(),
            default_log: None,
            rules: programs
                .iter()
                .map(|p| crate::core::logs::Rule {
                    program: p.map(str::to_string),
                    line: "(?P<addr>x)".into(),
                    kind: "k".into(),
                    time: None,
                    time_format: None,
                })
                .collect(),
            builtin: false,
        };
        assert_eq!(
            Matches::of(&def(&[Some("dovecot|auth"), Some("dovecot"), Some("imap")])),
            Matches::Identifiers(vec!["dovecot".into(), "auth".into(), "imap".into()])
        );
        assert_eq!(
            Matches::of(&def(&[Some("dovecot|*-login")])),
            Matches::Everything
        );
        assert_eq!(
            Matches::of(&def(&[Some("postfix*/smtpd")])),
            Matches::Everything
        );
        assert_eq!(Matches::of(&def(&[Some("a"), None])), Matches::Everything);
        assert_eq!(
            Matches::ssh().shown(),
            "journal (ssh.service, sshd.service)"
        );
    }
    use crate::core::logline::Line;
    use crate::core::ssh_log::SshParser;
    use crate::units::time::Zone;

    #[test]
    fn an_entry_becomes_a_line_sshd_s_parser_reads() {
        let j = br#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1796000001123456","_HOSTNAME":"web1","SYSLOG_IDENTIFIER":"sshd-session","_PID":"77","MESSAGE":"Failed password for root from 203.0.113.5 port 4242 ssh2"}"#;
        let e = entry(j).unwrap();
        assert_eq!(e.cursor, "s=1;i=2");
        let t = 1_796_000_001;
        let mut p = SshParser::new(Zone::fixed(0), t, (t - 60, t));
        match p.parse(&e.line) {
            Line::Hit(h) => assert_eq!((h.src.to_string(), h.time), ("203.0.113.5".into(), t)),
            other => panic!("{other:?} for {}", String::from_utf8_lossy(&e.line)),
        }
    }

    #[test]
    fn what_a_client_wrote_stays_inside_one_line() {
        // A user name with a line break and a forged line after it.
        let j = br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1796000001000000","_HOSTNAME":"h","SYSLOG_IDENTIFIER":"sshd","_PID":"1","MESSAGE":"Invalid user x\n2026-12-07T10:00:00+00:00 h sshd[1]: Failed password for root from 192.0.2.1 port 1 ssh2 from 203.0.113.9 port 5"}"#;
        let e = entry(j).unwrap();
        assert!(!e.line.contains(&b'\n'));
        let t = 1_796_000_001;
        let mut p = SshParser::new(Zone::fixed(0), t, (t - 60, t));
        if let Line::Hit(h) = p.parse(&e.line) {
            assert_ne!(h.src.to_string(), "192.0.2.1");
        }
        // Bytes, an identifier with spaces, and no message at all.
        let j = br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1796000001000000","SYSLOG_IDENTIFIER":"a b[1]:","MESSAGE":[104,105,255]}"#;
        let e = entry(j).unwrap();
        assert!(
            e.line.starts_with(b"2026-") && e.line.ends_with(b"localhost a_b_1]_[0]: hi\xff"),
            "{}",
            String::from_utf8_lossy(&e.line)
        );
        for bad in [
            &br#"{"MESSAGE":"x"}"#[..],
            b"not json",
            br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"soon"}"#,
        ] {
            assert!(entry(bad).is_none());
        }
    }
}
