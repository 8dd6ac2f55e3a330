//! Reading `ipset save` output (pure), and rendering the script that puts sets
//! back as a snapshot had them.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One set as `ipset save` printed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedSet {
    /// The `create` line's words after the name: type, family, options.
    pub params: Vec<String>,
    /// `add` lines' words after the name: member and options (timeout ...).
    pub members: Vec<Vec<String>>,
}

impl SavedSet {
    pub fn kind(&self) -> &str {
        self.params.first().map(String::as_str).unwrap_or("")
    }

    pub fn family(&self) -> &str {
        self.option("family").unwrap_or("inet")
    }

    pub fn has_timeout(&self) -> bool {
        self.option("timeout").is_some()
    }

    fn option(&self, key: &str) -> Option<&str> {
        self.params
            .windows(2)
            .find(|w| w[0] == key)
            .map(|w| w[1].as_str())
    }

    /// Members with a running timeout, as (member, seconds left).
    pub fn timed(&self) -> Vec<(String, u32)> {
        self.members
            .iter()
            .filter_map(|m| {
                let secs = SavedSet::timeout_of(m).filter(|s| *s > 0)?;
                Some((m.first()?.clone(), secs))
            })
            .collect()
    }

    fn timeout_of(m: &[String]) -> Option<u32> {
        m.windows(2).find(|w| w[0] == "timeout")?[1].parse().ok()
    }

    /// Members with a running timeout (bans), as ipset printed them.
    pub fn timed_words(&self) -> impl Iterator<Item = &Vec<String>> {
        self.members
            .iter()
            .filter(|m| SavedSet::timeout_of(m).is_some_and(|s| s > 0))
    }

    /// Members without one (the config's), as ipset printed them.
    pub fn untimed_words(&self) -> impl Iterator<Item = &Vec<String>> {
        self.members
            .iter()
            .filter(|m| SavedSet::timeout_of(m).is_none_or(|s| s == 0))
    }
}

/// Parse `ipset save` (all sets). Unknown lines are ignored.
pub fn parse_save(text: &str) -> BTreeMap<String, SavedSet> {
    let mut sets: BTreeMap<String, SavedSet> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("create"), Some(name)) => {
                sets.entry(name.to_string()).or_default().params =
                    words.map(str::to_string).collect();
            }
            (Some("add"), Some(name)) => {
                sets.entry(name.to_string())
                    .or_default()
                    .members
                    .push(words.map(str::to_string).collect());
            }
            _ => {}
        }
    }
    sets
}

/// `ipset restore` input that puts each of `ours` back as it was in
/// `before`, keeping every ban it holds `now`: the config's members (no
/// timeout) of then, and the bans of now with the time they have left (a ban
/// that scan or capture made meanwhile is kept; one that ended meanwhile
/// stays ended). A set that existed is rebuilt through a temporary set and
/// swapped; one that was gone is created; one this apply created is
/// destroyed, unless bans went into it meanwhile. Temporary sets left by a
/// failed step are destroyed too. Run after the rules that reference the
/// sets have been rolled back, so destroying is allowed.
pub fn render_rollback(
    ours: &[String],
    before: &BTreeMap<String, SavedSet>,
    now: &BTreeMap<String, SavedSet>,
    temp_name: impl Fn(usize) -> String,
) -> String {
    let mut out = String::new();
    for i in 0..ours.len() {
        if now.contains_key(&temp_name(i)) {
            writeln!(out, "destroy {}", temp_name(i)).expect("write");
        }
    }
    let fill = |out: &mut String, into: &str, then: &SavedSet, kept: Option<&SavedSet>| {
        writeln!(out, "create {into} {}", then.params.join(" ")).expect("write");
        for m in then.untimed_words() {
            writeln!(out, "add {into} {}", m.join(" ")).expect("write");
        }
        for m in kept.into_iter().flat_map(SavedSet::timed_words) {
            writeln!(out, "add {into} {}", m.join(" ")).expect("write");
        }
    };
    for (i, name) in ours.iter().enumerate() {
        match (before.get(name), now.get(name)) {
            (Some(then), Some(current)) => {
                let tmp = temp_name(i);
                fill(&mut out, &tmp, then, Some(current));
                writeln!(out, "swap {tmp} {name}\ndestroy {tmp}").expect("write");
            }
            (Some(then), None) => fill(&mut out, name, then, None),
            (None, Some(current)) if current.timed_words().next().is_none() => {
                writeln!(out, "destroy {name}").expect("write")
            }
            (None, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "create blacklist hash:net family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x1\n\
add blacklist 203.0.113.7 timeout 0\n\
add blacklist 198.51.100.9 timeout 293\n\
create other hash:ip family inet6 hashsize 1024 maxelem 65536\n\
add other 2001:db8::1\n";

    #[test]
    fn parses_sets_and_timed_members() {
        let s = parse_save(SAVE);
        let bl = &s["blacklist"];
        assert_eq!(bl.kind(), "hash:net");
        assert_eq!(bl.family(), "inet");
        assert!(bl.has_timeout());
        assert_eq!(bl.timed(), vec![("198.51.100.9".to_string(), 293)]);
        assert!(!s["other"].has_timeout());
        assert_eq!(s["other"].family(), "inet6");
    }

    #[test]
    fn rollback_rebuilds_existing_and_destroys_new() {
        let before = parse_save(SAVE);
        // Now: the blacklist lost its old ban (it expired) and gained a new
        // one; this apply made the whitelist (empty) and throttle (a ban in it).
        let now = parse_save(
            "create blacklist hash:net family inet hashsize 1024 maxelem 65536 timeout 0\n\
             add blacklist 203.0.113.7 timeout 0\n\
             add blacklist 203.0.113.60 timeout 500\n\
             create whitelist hash:net family inet\n\
             create throttle hash:ip family inet timeout 0\n\
             add throttle 203.0.113.61 timeout 40\n\
             create tmp-0 hash:net family inet\n",
        );
        let ours: Vec<String> = ["blacklist", "whitelist", "throttle"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let text = render_rollback(&ours, &before, &now, |i| format!("tmp-{i}"));
        assert!(text.starts_with("destroy tmp-0\n"));
        assert!(text
            .contains("create tmp-0 hash:net family inet hashsize 1024 maxelem 65536 timeout 0"));
        assert!(text.contains("add tmp-0 203.0.113.7 timeout 0\n"), "{text}");
        assert!(
            text.contains("add tmp-0 203.0.113.60 timeout 500\n"),
            "the ban of now: {text}"
        );
        assert!(
            !text.contains("198.51.100.9"),
            "the ban that ended stays ended: {text}"
        );
        assert!(text.contains("swap tmp-0 blacklist\ndestroy tmp-0\n"));
        assert!(text.contains("destroy whitelist\n"));
        assert!(
            !text.contains("destroy throttle"),
            "a set with bans is kept: {text}"
        );
    }
}
