//! Threat feeds (pure): a `[[feed]]` list of known-bad networks becomes the
//! members of its own pair of sets (`feed-NAME`, `feed-NAME_v6`), which the
//! ruleset drops like the blacklist. A feed is written by whoever controls
//! its server, so it is validated whole before anything changes (every line
//! an address or network; not over max_entries; never a trusted network or
//! this host; no entry wider than min_prefix_v4 / min_prefix_v6; all of it
//! together covering no more than max_coverage per family; not empty), and
//! its sets are replaced whole in one batch (ipset: built aside, swapped): bans
//! live in the blacklist and throttle sets, which an update never touches.

use crate::core::config::intel::{amount, Feed};
// Named with the config (the ruleset, which the policy uses, needs them).
pub use crate::core::config::intel::set_names;
use crate::core::policy::{Policy, Refusal};
use crate::core::sets::Refill;
use crate::units::addr::{member, parse_net, Family};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Bytes a feed's body may have per entry it may hold (and at least 1 MB).
pub const BYTES_PER_ENTRY: u64 = 64;

/// The most bytes a feed's body may have.
pub fn max_bytes(f: &Feed) -> u64 {
    (f.max_entries as u64 * BYTES_PER_ENTRY).max(1 << 20)
}

/// What a host keeps of a feed between updates (beside its last good list).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The validators of the last good copy, sent back to get a 304.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// When it was last asked for, and last taken (Unix seconds).
    pub fetched: i64,
    pub ok_at: i64,
    pub entries: usize,
    /// Why the last try failed (None: it did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Meta {
    /// Whether `feeds update` should ask again at `now`.
    pub fn due(&self, f: &Feed, now: i64) -> bool {
        self.fetched == 0 || now - self.fetched >= f.every as i64
    }
}

/// Why a feed's body is refused (the whole body: nothing of it goes in).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("the body is over {max} bytes (max_entries {entries} x {BYTES_PER_ENTRY})")]
    TooBig { max: u64, entries: usize },
    #[error("the body is not text")]
    NotText,
    /// An entry that is no network, too wide or refused by the policy.
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("more than max_entries = {0} entries")]
    TooMany(usize),
    #[error("no entries (an error page in place of the list?)")]
    Empty,
    #[error(
        "its {family} entries cover {has} addresses, over max_coverage {key} = {shown} ({max})"
    )]
    Coverage {
        family: &'static str,
        key: &'static str,
        has: u128,
        max: u128,
        /// `max` as the config may write it (a prefix when it is one).
        shown: String,
    },
}

/// A feed's body as networks, checked; or why it is refused.
pub fn parse(
    f: &Feed,
    body: &[u8],
    refuse: &dyn Fn(&IpNet) -> Option<Refusal>,
) -> Result<Vec<IpNet>, FeedError> {
    if body.len() as u64 > max_bytes(f) {
        return Err(FeedError::TooBig {
            max: max_bytes(f),
            entries: f.max_entries,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| FeedError::NotText)?;
    let mut out: BTreeSet<IpNet> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split(['#', ';']).next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let entry = entry.split_whitespace().next().unwrap_or(entry);
        let at = |why: String| FeedError::Line { line: i + 1, why };
        let net = parse_net(entry, true).map_err(|m| {
            // The server's bytes reach a terminal: short and printable only.
            if entry.len() <= 64 && entry.bytes().all(|b| b.is_ascii_graphic()) {
                at(m.0)
            } else {
                let start: String = entry.chars().take(32).collect();
                at(format!(
                    "\"{}\u{2026}\" is not an IP address or CIDR network",
                    start.escape_default()
                ))
            }
        })?;
        let (key, min) = match net {
            IpNet::V4(_) => ("min_prefix_v4", f.min_prefix_v4),
            IpNet::V6(_) => ("min_prefix_v6", f.min_prefix_v6),
        };
        if net.prefix_len() < min {
            return Err(at(format!("{} is wider than {key} = {min}", member(&net))));
        }
        if let Some(why) = refuse(&net) {
            return Err(at(format!("{}: {why}", member(&net))));
        }
        out.insert(net);
        if out.len() > f.max_entries {
            return Err(FeedError::TooMany(f.max_entries));
        }
    }
    if out.is_empty() {
        return Err(FeedError::Empty);
    }
    let nets: Vec<IpNet> = out.into_iter().collect();
    let (v4, v6) = coverage(&nets);
    for (family, key, bits, has, max) in [
        ("IPv4", "v4", 32, v4, f.max_coverage.v4),
        ("IPv6", "v6", 128, v6, f.max_coverage.v6),
    ] {
        if has > max {
            return Err(FeedError::Coverage {
                family,
                key,
                has,
                max,
                shown: amount(max, bits),
            });
        }
    }
    Ok(nets)
}

/// How many addresses `nets` cover, per family (IPv4, IPv6), overlaps
/// counted once.
pub fn coverage(nets: &[IpNet]) -> (u128, u128) {
    let (mut v4, mut v6) = (0u128, 0u128);
    for n in IpNet::aggregate(&nets.to_vec()) {
        let (sum, bits) = match n {
            IpNet::V4(_) => (&mut v4, 32),
            IpNet::V6(_) => (&mut v6, 128),
        };
        let size = 1u128
            .checked_shl(u32::from(bits - n.prefix_len()))
            .unwrap_or(u128::MAX);
        *sum = sum.saturating_add(size);
    }
    (v4, v6)
}

/// The refill that replaces a feed's members: both sets at once, each with
/// its family's entries.
pub fn refills(f: &Feed, nets: &[IpNet]) -> Vec<Refill> {
    let names = set_names(&f.name);
    [Family::V4, Family::V6]
        .into_iter()
        .map(|family| Refill {
            set: names[usize::from(family.is_v6())].clone(),
            family,
            maxelem: f.max_entries as u64,
            nets: nets
                .iter()
                .filter(|n| Family::of(n) == family)
                .copied()
                .collect(),
        })
        .collect()
}

/// The last good copy as text, one entry a line.
pub fn list_text(nets: &[IpNet]) -> String {
    nets.iter().map(|n| member(n) + "\n").collect()
}

/// A last good copy read back (written by [`list_text`]).
pub fn parse_list(text: &str) -> Vec<IpNet> {
    text.lines()
        .filter_map(|l| parse_net(l.trim(), true).ok())
        .collect()
}

/// The never-ban policy for a feed's entries: this host's own addresses,
/// the trusted networks, and what is never a ban target by its kind
/// (loopback, unspecified, multicast, broadcast: a bogon list's 0.0.0.0/8
/// would drop every DHCP request). The same policy as every other input.
pub fn policy(trusted: &[IpNet], own: &[IpAddr]) -> Policy {
    Policy {
        trusted: trusted.to_vec(),
        own: own.to_vec(),
        ..Policy::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message, as the tests compare it.
    fn parse(
        f: &Feed,
        body: &[u8],
        refuse: &dyn Fn(&IpNet) -> Option<Refusal>,
    ) -> Result<Vec<IpNet>, String> {
        super::parse(f, body, refuse).map_err(|e| e.to_string())
    }

    fn feed(max: usize) -> Feed {
        feed_with(&format!("max_entries = {max}"))
    }

    fn feed_with(keys: &str) -> Feed {
        toml::from_str::<crate::core::config::intel::RawFeed>(&format!(
            "name = \"drop\"\nurl = \"https://feeds.example.net/drop.txt\"\n{keys}"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    fn none(_: &IpNet) -> Option<Refusal> {
        None
    }

    #[test]
    fn a_drop_list_with_comments_and_columns_is_read() {
        let body = b"; Spamhaus DROP List 2026/11/21\n; https://www.spamhaus.org/drop/\n203.0.113.0/24 ; SBL123\n198.51.100.7\n# a comment\n2001:db8:bad::/48\n\n203.0.113.0/24 ; again\n";
        let v = parse(&feed(10), body, &none).unwrap();
        assert_eq!(v.len(), 3);
        let r = refills(&feed(10), &v);
        let shown = |i: usize| -> Vec<String> { r[i].nets.iter().map(member).collect() };
        assert_eq!((r[0].set.as_str(), r[0].maxelem), ("feed-drop", 10));
        assert_eq!(shown(0), ["198.51.100.7", "203.0.113.0/24"]);
        assert_eq!(
            (r[1].set.as_str(), r[1].family),
            ("feed-drop_v6", Family::V6)
        );
        assert_eq!(shown(1), ["2001:db8:bad::/48"]);
        assert_eq!(parse_list(&list_text(&v)), v);
    }

    #[test]
    fn a_feed_that_would_do_harm_is_refused_whole() {
        let trusted: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        let own: Vec<IpAddr> = vec!["198.51.100.1".parse().unwrap()];
        let p = policy(&trusted, &own);
        let policy = |n: &IpNet| p.check(n);
        for (body, want) in [
            (
                &b"203.0.113.0/24\n192.0.2.128/25\n"[..],
                "line 2: 192.0.2.128/25: in trusted network 192.0.2.0/24",
            ),
            (b"198.51.100.0/24\n", "line 1: 198.51.100.0/24"),
            // A bogon list's 0.0.0.0/8 would drop every DHCP request.
            (b"0.0.0.0/8\n", "line 1: 0.0.0.0/8: not a unicast address"),
            (b"239.0.0.0/8\n", "line 1: 239.0.0.0/8: not a unicast address"),
            (b"127.0.0.0/8\n", "line 1: 127.0.0.0/8: loopback address"),
            (b"10.0.0.0/7\n", "line 1: 10.0.0.0/7 is wider than min_prefix_v4 = 8"),
            (
                b"2001:db8::/31\n",
                "line 1: 2001:db8::/31 is wider than min_prefix_v6 = 32",
            ),
            (b"203.0.113.5\nnot-an-address\n", "line 2:"),
            (
                b"\x1b]2\x07pwned\x1b[2JAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
                "line 1: \"\\u{1b}]2\\u{7}pwned\\u{1b}[2JAAAAAAAAAAAAAAAAAAA…\" is not",
            ),
            (b"; nothing here\n", "no entries"),
            (
                b"<html><body>500 Internal Server Error</body></html>\n",
                "line 1:",
            ),
            (
                b"203.0.113.1\n203.0.113.2\n203.0.113.3\n",
                "more than max_entries = 2",
            ),
        ] {
            let e = parse(&feed(2), body, &policy).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let big = vec![b'#'; (2 << 20) + 1];
        assert!(parse(&feed(2), &big, &none)
            .unwrap_err()
            .contains("over 1048576 bytes"));
    }

    /// A feed of 222 IPv4 /8s once went in whole: every entry was "only" a /8.
    #[test]
    fn a_feed_covering_more_than_max_coverage_is_refused() {
        let body: String = (1..=222).map(|a| format!("{a}.0.0.0/8\n")).collect();
        let e = parse(&feed(1000), body.as_bytes(), &none).unwrap_err();
        assert_eq!(
            e,
            "its IPv4 entries cover 3724541952 addresses, over max_coverage v4 = /8 (16777216)"
        );
        // Overlaps count once: a /8 with its own /16 and two halves of it is one /8.
        let one = b"10.0.0.0/8\n10.1.0.0/16\n10.0.0.0/9\n10.128.0.0/9\n2001:db8::/32\n";
        assert_eq!(parse(&feed(10), one, &none).unwrap().len(), 5);
        let e = parse(&feed(10), b"10.0.0.0/8\n203.0.113.7\n", &none).unwrap_err();
        assert!(e.contains("cover 16777217 addresses"), "{e}");
        let e = parse(&feed(10), b"2001:db8::/32\n2001:db9::/48\n", &none).unwrap_err();
        assert!(
            e.contains("IPv6 entries cover") && e.contains("v6 = /32"),
            "{e}"
        );
        // Per feed: narrower entries and a smaller coverage, or a count.
        let strict = feed_with(
            "min_prefix_v4 = 16\nmin_prefix_v6 = 48\nmax_coverage = { v4 = 65536, v6 = \"/40\" }",
        );
        let e = parse(&strict, b"198.51.0.0/15\n", &none).unwrap_err();
        assert!(e.contains("wider than min_prefix_v4 = 16"), "{e}");
        let e = parse(&strict, b"2001:db8::/44\n", &none).unwrap_err();
        assert!(e.contains("wider than min_prefix_v6 = 48"), "{e}");
        let e = parse(&strict, b"198.51.0.0/16\n203.0.113.0/24\n", &none).unwrap_err();
        assert!(e.contains("over max_coverage v4 = /16 (65536)"), "{e}");
        assert!(parse(&strict, b"198.51.0.0/16\n", &none).is_ok());
        assert_eq!(
            coverage(&[
                "2001:db8::/48".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap()
            ]),
            (256, 1 << 80)
        );
    }

    #[test]
    fn bad_prefix_and_coverage_keys_are_refused_with_the_range() {
        for (keys, says) in [
            ("min_prefix_v4 = 7", "min_prefix_v4 = 7; fix: 8 to 32"),
            ("min_prefix_v4 = 33", "min_prefix_v4 = 33; fix: 8 to 32"),
            ("min_prefix_v6 = 8", "min_prefix_v6 = 8; fix: 16 to 128"),
            (
                "max_coverage = { v4 = \"/33\" }",
                "max_coverage v4 = \"/33\"",
            ),
            ("max_coverage = { v4 = \"8\" }", "max_coverage v4 = \"8\""),
            ("max_coverage = { v4 = 0 }", "max_coverage v4 = 0"),
            ("max_coverage = { v4 = 4294967297 }", "from 1 to 2^32"),
        ] {
            let e = toml::from_str::<crate::core::config::intel::RawFeed>(&format!(
                "name = \"drop\"\nurl = \"https://feeds.example.net/drop.txt\"\n{keys}"
            ))
            .unwrap()
            .validate()
            .unwrap_err();
            assert!(e.0.contains(says), "{keys}: {e}");
        }
        for (keys, says) in [
            ("max_coverage = { v5 = \"/8\" }", "unknown field"),
            (
                "max_coverage = { v4 = 1.5 }",
                "\"/N\" (what one /N network covers) or a number",
            ),
        ] {
            let e = toml::from_str::<crate::core::config::intel::RawFeed>(&format!(
                "name = \"d\"\nurl = \"https://x.example.net/\"\n{keys}"
            ))
            .err()
            .unwrap()
            .to_string();
            assert!(e.contains(says), "{keys}: {e}");
        }
        let f = feed_with("max_coverage = { v6 = \"/0\" }");
        assert_eq!((f.max_coverage.v4, f.max_coverage.v6), (1 << 24, u128::MAX));
    }

    #[test]
    fn an_oversized_body_is_refused() {
        let big = vec![b'#'; (2 << 20) + 1];
        assert!(parse(&feed(2), &big, &none)
            .unwrap_err()
            .contains("over 1048576 bytes"));
    }
}
