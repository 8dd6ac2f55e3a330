//! Drift (pure): fwctl's part of a table as the backend's adapter reads it
//! back (lines: `policy INPUT DROP`, `:CHAIN`, `jump at INPUT N`, `-A CHAIN
//! rule`), so the rules right after an apply and the rules now compare line
//! by line, and a digest of the rendered plan, so a config edited since the last
//! apply is told apart from rules changed behind fwctl's back.

use super::{Current, Plan, TableState};

/// How the rules now differ from the rules then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Lines of `then` not in `now`, and lines of `now` not in `then` (as
    /// multisets, in their order).
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    /// Lines in both that are no longer in the same order: the ones outside
    /// the longest common subsequence (a rule moved is drift too: packets
    /// meet the rules in order).
    pub moved: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.moved.is_empty()
    }
}

pub fn diff(then: &[String], now: &[String]) -> Diff {
    let mut left: Vec<Option<&String>> = now.iter().map(Some).collect();
    let mut missing = Vec::new();
    let mut kept_then = Vec::new();
    for l in then {
        match left.iter().position(|x| *x == Some(l)) {
            Some(i) => {
                left[i] = None;
                kept_then.push(l);
            }
            None => missing.push(l.clone()),
        }
    }
    let extra: Vec<String> = left.iter().flatten().map(|s| (*s).clone()).collect();
    // `now` without its extra lines: the same multiset as kept_then.
    let mut extra_left: Vec<&String> = extra.iter().collect();
    let kept_now: Vec<&String> = now
        .iter()
        .filter(|l| match extra_left.iter().position(|x| x == l) {
            Some(i) => {
                extra_left.remove(i);
                false
            }
            None => true,
        })
        .collect();
    Diff {
        missing,
        extra,
        moved: outside_lcs(&kept_then, &kept_now),
    }
}

/// The lines of `b` outside a longest common subsequence of `a` and `b`.
fn outside_lcs(a: &[&String], b: &[&String]) -> Vec<String> {
    if a == b {
        return Vec::new();
    }
    let (n, m) = (a.len(), b.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if a[i] == b[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while j < m {
        if i < n && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < n && t[i + 1][j] >= t[i][j + 1] {
            i += 1;
        } else {
            out.push(b[j].clone());
            j += 1;
        }
    }
    out
}

/// A stable digest (FNV-1a, 64 bits) of what the plan renders on an empty
/// kernel: the same config gives the same digest across runs and builds.
pub fn digest(plan: &Plan) -> String {
    let empty = Current::default();
    // A feed's members change with every update, not with the config; so
    // do a country's (`[geo]`: with its database).
    let mut sets = plan.sets.clone();
    for s in sets
        .iter_mut()
        .filter(|s| s.name.starts_with("feed-") || s.name.starts_with("geo-"))
    {
        s.members.clear();
    }
    // "auto" renders as it would where Docker does not run; an explicit
    // [forward] protect renders its chains.
    let none = TableState::default();
    let plan = &super::resolve(plan, &none, &none);
    let text = [
        super::render_table(&plan.v4, &TableState::default()),
        super::render_table(&plan.v6, &TableState::default()),
        super::render_raw(&plan.v4, &TableState::default()),
        super::render_raw(&plan.v6, &TableState::default()),
        super::render_sets(&sets, &empty),
    ]
    .concat();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The digest an apply records and status compares: [`digest`] for the
/// iptables backend (as before backends existed, so older state files
/// still match), tagged with the backend's name for any other: a switch
/// of backend is a config change to apply, not drift.
pub fn digest_for(backend: &str, plan: &Plan) -> String {
    match backend {
        "iptables" => digest(plan),
        other => format!("{}-{other}", digest(plan)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_countrys_networks_are_no_config_change() {
        let cfg = crate::core::config::Config::parse(
            "[geo]\ncountry_db = \"/x.mmdb\"\nblock_countries = [\"NL\"]\n",
            std::path::Path::new("/t.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap();
        let plan = super::super::build(&cfg);
        let mut filled = plan.clone();
        for s in filled.sets.iter_mut().filter(|s| s.name == "geo-NL") {
            s.members = vec!["198.51.100.0/24".parse().unwrap()];
        }
        assert_eq!(digest(&plan), digest(&filled));
    }
    use crate::sys::iptables::save::{ours, ours_raw};

    const SAVE: &str = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j X\nCOMMIT\n\
        *filter\n:INPUT DROP [10:600]\n:FORWARD ACCEPT [0:0]\n:FWCTL-INPUT - [0:0]\n:DOCKER - [0:0]\n\
        -A INPUT -j FWCTL-INPUT\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\n\
        -A FWCTL-INPUT -i lo -j ACCEPT\n-A DOCKER -j RETURN\nCOMMIT\n";

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_fwctls_part_of_the_filter_table_is_kept() {
        assert_eq!(
            ours(SAVE),
            lines(&[
                "policy INPUT DROP",
                ":FWCTL-INPUT",
                "jump at INPUT 1",
                "-A FWCTL-INPUT -i lo -j ACCEPT"
            ])
        );
        // `iptables -F`: the chains stay, their rules and the jump are gone.
        let flushed = "*filter\n:INPUT DROP [0:0]\n:FWCTL-INPUT - [0:0]\nCOMMIT\n";
        let d = diff(&ours(SAVE), &ours(flushed));
        assert_eq!(
            d.missing,
            lines(&["jump at INPUT 1", "-A FWCTL-INPUT -i lo -j ACCEPT"])
        );
        assert!(d.extra.is_empty() && d.moved.is_empty());
        // A rule inserted above the jump moves it: that is drift too.
        let moved = SAVE.replace(
            "-A INPUT -j FWCTL-INPUT\n",
            "-A INPUT -p tcp -j ACCEPT\n-A INPUT -j FWCTL-INPUT\n",
        );
        let d = diff(&ours(SAVE), &ours(&moved));
        assert_eq!(
            (d.missing, d.extra),
            (lines(&["jump at INPUT 1"]), lines(&["jump at INPUT 2"]))
        );
        assert!(diff(&ours(SAVE), &ours(SAVE)).is_empty());
    }

    #[test]
    fn only_fwctls_part_of_the_raw_table_is_kept() {
        let save = "*raw\n:PREROUTING ACCEPT [3:4]\n:OUTPUT ACCEPT [0:0]\n:FWCTL-RAW - [0:0]\n\
                    -A PREROUTING -p udp -j CT --notrack\n-A PREROUTING -j FWCTL-RAW\n\
                    -A FWCTL-RAW -i lo -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            ours_raw(&format!("{SAVE}{save}")),
            lines(&[
                ":FWCTL-RAW",
                "jump at PREROUTING 2",
                "-A FWCTL-RAW -i lo -j ACCEPT"
            ])
        );
        assert!(ours_raw(SAVE).is_empty());
        assert!(!ours(save).iter().any(|l| l.contains("RAW")));
    }

    #[test]
    fn a_reordering_is_drift_too() {
        let then = lines(&[
            "policy INPUT DROP",
            "-A FWCTL-INPUT -a",
            "-A FWCTL-INPUT -b",
            "-A FWCTL-INPUT -c",
        ]);
        let now = lines(&[
            "policy INPUT DROP",
            "-A FWCTL-INPUT -c",
            "-A FWCTL-INPUT -a",
            "-A FWCTL-INPUT -b",
        ]);
        let d = diff(&then, &now);
        assert!(d.missing.is_empty() && d.extra.is_empty());
        assert_eq!(d.moved, lines(&["-A FWCTL-INPUT -c"]));
        // A moved line and an extra one are told apart.
        let mut now2 = now.clone();
        now2.push("-A FWCTL-INPUT -x".into());
        let d = diff(&then, &now2);
        assert_eq!((d.extra.len(), d.moved.len()), (1, 1));
    }

    #[test]
    fn the_digest_follows_the_rendered_rules_not_the_file_text() {
        let parse = |t: &str| {
            crate::core::config::Config::parse(t, std::path::Path::new("/x.toml"), &|_| {
                Ok(String::new())
            })
            .unwrap()
        };
        let a = digest(&super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n",
        )));
        let b = digest(&super::super::build(&parse(
            "# a comment\n[[service]]\nname = \"ssh\"\nport = 22\n",
        )));
        let c = digest(&super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 2222\n",
        )));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
        // The blacklisted prefix is only in the raw part now.
        let d = digest(&super::super::build(&parse(
            "[[service]]\nname = \"ssh\"\nport = 22\n[logging.prefixes]\nblacklisted = { v4 = \"BL: \", v6 = \"BL6: \" }\n",
        )));
        assert_ne!(a, d);
    }
}
