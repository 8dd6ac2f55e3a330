//! The state file's journal (`state.json.journal`): what a long-running
//! writer (watch) appends instead of writing the whole state file for each
//! second's bans. The state file holds up to megabytes of records and
//! evidence; rewriting it once a second while an attack goes on cost more
//! CPU and disk than everything else watch does. A journal line is one
//! record's worth.
//!
//! Its first line names the state file it extends (a digest of that file's
//! bytes): a journal whose base is not the file beside it is stale (a
//! writer wrote the whole file and was stopped before removing the
//! journal, or an older fwctl wrote it) and is not applied, so nothing is
//! ever applied twice. A last line without its newline (a crash mid-append)
//! is not applied. Everything here is pure: the bytes in, the state out.

use crate::core::history::Why;
use crate::core::state::State;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What is appended: one change to the state, as its writer made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A ban made at `at` for `removeafter_s`, its offence counted from the
    /// history as it stood (a repeat offender's number goes up), with why;
    /// `keep`: the pieces of evidence kept.
    Ban {
        addr: IpNet,
        set: String,
        at: i64,
        removeafter_s: u64,
        why: Why,
        keep: usize,
    },
    /// `[aggregate]`'s gathering at `at` of `members` into one ban of
    /// `prefix` until `until` (the members' own bans end).
    Gather {
        prefix: IpNet,
        set: String,
        until: i64,
        members: Vec<IpNet>,
        why: Why,
        at: i64,
    },
}

impl Op {
    /// Apply to `st`; for a ban, the offence it was.
    pub fn apply(&self, st: &mut State) -> u32 {
        match self {
            Op::Ban {
                addr,
                set,
                at,
                removeafter_s,
                why,
                keep,
            } => {
                let (n, _) = st.history.next_ban(addr, *at, &[*removeafter_s]);
                st.history.record(*addr, set, n, *at, *removeafter_s);
                st.history.explain(addr, why.clone(), *keep);
                n
            }
            Op::Gather {
                prefix,
                set,
                until,
                members,
                why,
                at,
            } => {
                st.history
                    .gather(*prefix, set, *until, members, why.clone(), *at);
                0
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    journal: u32,
    base: String,
}

const VERSION: u32 = 1;

/// The digest a journal names its base by: SHA-256 of the state file's
/// bytes, hex (stable across builds, unlike std's hasher); "" when there is
/// no state file.
pub fn digest(state_file: Option<&[u8]>) -> String {
    use sha2::{Digest, Sha256};
    match state_file {
        None => String::new(),
        Some(b) => Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect(),
    }
}

/// A new journal's first line.
pub fn header(base: &str) -> Vec<u8> {
    let mut v = serde_json::to_vec(&Header {
        journal: VERSION,
        base: base.to_string(),
    })
    .expect("a header serializes");
    v.push(b'\n');
    v
}

/// Ops as journal lines.
pub fn lines(ops: &[Op]) -> Vec<u8> {
    let mut v = Vec::new();
    for op in ops {
        serde_json::to_writer(&mut v, op).expect("an op serializes");
        v.push(b'\n');
    }
    v
}

/// What replaying a journal did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Ops applied.
    pub applied: usize,
    /// Not applied: the journal extends another state file.
    pub stale: bool,
    /// Why the rest was not applied (a line that is no op), for a warning.
    pub bad: Option<String>,
}

/// Apply the journal `text` to `st`, the state parsed from the file whose
/// digest is `base`. The evidence is trimmed after, as the writer trims it.
pub fn replay(text: &[u8], base: &str, st: &mut State) -> Replayed {
    let mut out = Replayed::default();
    // Only whole lines: a crash mid-append leaves a part of one.
    let whole = match memchr::memrchr(b'\n', text) {
        Some(i) => &text[..=i],
        None => return out,
    };
    let mut it = whole.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    match it.next().map(serde_json::from_slice::<Header>) {
        Some(Ok(h)) if h.journal == VERSION && h.base == base => {}
        Some(Ok(_)) => {
            out.stale = true;
            return out;
        }
        Some(Err(e)) => {
            out.bad = Some(format!("its first line is no journal header ({e})"));
            return out;
        }
        None => return out,
    }
    for (n, line) in it.enumerate() {
        match serde_json::from_slice::<Op>(line) {
            Ok(op) => {
                op.apply(st);
                out.applied += 1;
            }
            Err(e) => {
                out.bad = Some(format!("line {} is no record ({e})", n + 2));
                break;
            }
        }
    }
    st.history.trim_evidence();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(addr: &str, at: i64) -> Op {
        Op::Ban {
            addr: addr.parse().unwrap(),
            set: "blacklist".into(),
            at,
            removeafter_s: 3600,
            why: Why {
                origin: "watch".into(),
                rule: "ssh (sshd ssh)".into(),
                hits: 6,
                window_s: 600,
                first: at - 5,
                last: at,
                evidence: vec!["sshd[1]: Failed password for \"x\" from 203.0.113.9".into()],
            },
            keep: 5,
        }
    }

    fn applied(ops: &[Op]) -> State {
        let mut st = State::default();
        for op in ops {
            op.apply(&mut st);
        }
        st.history.trim_evidence();
        st
    }

    #[test]
    fn a_journal_replays_to_what_its_writer_holds() {
        let ops = [
            ban("203.0.113.7/32", 1000),
            ban("2001:db8::/64", 1001),
            ban("203.0.113.7/32", 5000),
        ];
        let mut text = header("abc");
        text.extend(lines(&ops));
        let mut st = State::default();
        let r = replay(&text, "abc", &mut st);
        assert_eq!(
            r,
            Replayed {
                applied: 3,
                ..Default::default()
            }
        );
        assert_eq!(st, applied(&ops));
        // The repeat offender's second ban counted as its second.
        let rec = st.history.records();
        let again = rec
            .iter()
            .find(|r| r.addr.to_string() == "203.0.113.7/32")
            .unwrap();
        assert_eq!(again.offences, 2);
    }

    #[test]
    fn a_journal_of_another_state_file_is_not_applied() {
        let mut text = header("old");
        text.extend(lines(&[ban("203.0.113.7/32", 1000)]));
        let mut st = State::default();
        let r = replay(&text, "new", &mut st);
        assert!(r.stale);
        assert_eq!(st, State::default());
        // No state file: the journal of an empty state only.
        assert!(replay(&text, &digest(None), &mut st).stale);
        assert_ne!(digest(Some(b"")), digest(None));
    }

    #[test]
    fn a_torn_last_line_and_a_bad_line_stop_the_replay() {
        let mut text = header("b");
        text.extend(lines(&[ban("203.0.113.1/32", 1000)]));
        let whole = text.len();
        text.extend(lines(&[ban("203.0.113.2/32", 1001)]));
        // Cut inside the second record: only the first is applied.
        let mut st = State::default();
        assert_eq!(replay(&text[..text.len() - 3], "b", &mut st).applied, 1);
        assert_eq!(st, applied(&[ban("203.0.113.1/32", 1000)]));
        // A line that is no record: what came before it is applied, a
        // warning says why the rest is not.
        let mut bad = text[..whole].to_vec();
        bad.extend_from_slice(b"{\"op\":\"unknown\"}\n");
        bad.extend(lines(&[ban("203.0.113.3/32", 1002)]));
        let mut st = State::default();
        let r = replay(&bad, "b", &mut st);
        assert_eq!(r.applied, 1);
        assert!(r.bad.unwrap().contains("line 3"));
        // Not even a header.
        let mut st = State::default();
        assert!(replay(b"garbage\n", "b", &mut st).bad.is_some());
        assert_eq!(replay(b"", "b", &mut st), Replayed::default());
    }

    #[test]
    fn evidence_from_the_journal_is_kept_as_the_file_keeps_it() {
        // Attacker-written evidence with control characters and a long
        // line is cut and escaped on replay, exactly as when written.
        let mut op = ban("203.0.113.8/32", 1000);
        if let Op::Ban { why, .. } = &mut op {
            why.evidence = vec![format!("\x1b[2J{}", "A".repeat(5000))];
        }
        let mut text = header("");
        text.extend(lines(std::slice::from_ref(&op)));
        let mut st = State::default();
        replay(&text, "", &mut st);
        let records = st.history.records();
        let kept = &records[0].why.as_ref().unwrap().evidence[0];
        assert!(!kept.contains('\x1b'), "{kept}");
        assert!(
            kept.len() <= crate::core::history::EVIDENCE_LINE + 16,
            "{}",
            kept.len()
        );
    }
}
