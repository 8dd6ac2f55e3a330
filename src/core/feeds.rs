//! Threat feeds (pure): a `[[feed]]` list of known-bad networks becomes the
//! members of its own pair of sets (`feed-NAME`, `feed-NAME_v6`), which the
//! ruleset drops like the blacklist. A feed is validated before anything
//! changes (every line an address or network; not over max_entries; never
//! a trusted network, this host, or more than a /8 at once; not empty), and
//! its sets are replaced in one `ipset restore` (build aside, swap): bans
//! live in the blacklist and throttle sets, which an update never touches.

use crate::core::config::intel::Feed;
use crate::core::policy::Refusal;
use crate::units::addr::{member, parse_net};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

/// The shortest prefix a feed may hold (either family): a /8 at once is a
/// mistake, not a threat list.
pub const MIN_PREFIX: u8 = 8;
/// Bytes a feed's body may have per entry it may hold (and at least 1 MB).
pub const BYTES_PER_ENTRY: u64 = 64;

/// The kernel sets of a feed: IPv4, IPv6.
pub fn set_names(name: &str) -> [String; 2] {
    [format!("feed-{name}"), format!("feed-{name}_v6")]
}

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

/// A feed's body as networks, checked; or why it is refused.
pub fn parse(
    f: &Feed,
    body: &[u8],
    refuse: &dyn Fn(&IpNet) -> Option<Refusal>,
) -> Result<Vec<IpNet>, String> {
    if body.len() as u64 > max_bytes(f) {
        return Err(format!(
            "the body is over {} bytes (max_entries {} x {BYTES_PER_ENTRY})",
            max_bytes(f),
            f.max_entries
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| "the body is not text".to_string())?;
    let mut out: BTreeSet<IpNet> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split(['#', ';']).next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let entry = entry.split_whitespace().next().unwrap_or(entry);
        let net = parse_net(entry, true).map_err(|m| format!("line {}: {}", i + 1, m.0))?;
        if net.prefix_len() < MIN_PREFIX {
            return Err(format!(
                "line {}: {} is more than a /{MIN_PREFIX} at once",
                i + 1,
                member(&net)
            ));
        }
        if let Some(why) = refuse(&net) {
            return Err(format!("line {}: {}: {why}", i + 1, member(&net)));
        }
        out.insert(net);
        if out.len() > f.max_entries {
            return Err(format!("more than max_entries = {} entries", f.max_entries));
        }
    }
    if out.is_empty() {
        return Err("no entries (an error page in place of the list?)".into());
    }
    Ok(out.into_iter().collect())
}

/// The `ipset restore` input that replaces a feed's members: both sets
/// built aside, filled, swapped in, the old ones destroyed.
pub fn swap_script(f: &Feed, nets: &[IpNet], temp: [&str; 2]) -> String {
    let names = set_names(&f.name);
    let mut s = String::new();
    for (i, v6) in [false, true].into_iter().enumerate() {
        let mine: Vec<&IpNet> = nets.iter().filter(|n| n.addr().is_ipv6() == v6).collect();
        let _ = writeln!(
            s,
            "create {} hash:net family {} hashsize {} maxelem {} timeout 0",
            temp[i],
            if v6 { "inet6" } else { "inet" },
            mine.len().next_power_of_two().clamp(1024, 1 << 24),
            f.max_entries.max(1024)
        );
        for n in mine {
            let _ = writeln!(s, "add {} {}", temp[i], member(n));
        }
        let _ = writeln!(s, "swap {} {}", temp[i], names[i]);
        let _ = writeln!(s, "destroy {}", temp[i]);
    }
    s
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

/// Refusals of the never-ban kind a feed entry may meet: this host's own
/// addresses and the trusted networks (a feed must not cut either off).
pub fn refusal(net: &IpNet, trusted: &[IpNet], own: &[IpAddr]) -> Option<Refusal> {
    if let Some(t) = trusted
        .iter()
        .find(|t| t.contains(&net.addr()) || net.contains(&t.addr()))
    {
        return Some(Refusal::Trusted(*t));
    }
    own.iter().find(|a| net.contains(*a)).map(|a| Refusal::Own {
        addr: *a,
        covered: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(max: usize) -> Feed {
        toml::from_str::<crate::core::config::intel::RawFeed>(&format!(
            "name = \"drop\"\nurl = \"https://feeds.example.net/drop.txt\"\nmax_entries = {max}"
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
        let s = swap_script(&feed(10), &v, ["fwctl-new-0", "fwctl-new-1"]);
        assert!(s.contains("create fwctl-new-0 hash:net family inet hashsize 1024 maxelem 1024 timeout 0\nadd fwctl-new-0 198.51.100.7\nadd fwctl-new-0 203.0.113.0/24\nswap fwctl-new-0 feed-drop\ndestroy fwctl-new-0\n"), "{s}");
        assert!(
            s.contains("add fwctl-new-1 2001:db8:bad::/48\nswap fwctl-new-1 feed-drop_v6\n"),
            "{s}"
        );
        assert_eq!(parse_list(&list_text(&v)), v);
    }

    #[test]
    fn a_feed_that_would_do_harm_is_refused_whole() {
        let trusted: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        let own: Vec<IpAddr> = vec!["198.51.100.1".parse().unwrap()];
        let policy = |n: &IpNet| refusal(n, &trusted, &own);
        for (body, want) in [
            (
                &b"203.0.113.0/24\n192.0.2.128/25\n"[..],
                "line 2: 192.0.2.128/25: in trusted network 192.0.2.0/24",
            ),
            (b"198.51.100.0/24\n", "line 1: 198.51.100.0/24"),
            (b"10.0.0.0/7\n", "more than a /8 at once"),
            (b"203.0.113.5\nnot-an-address\n", "line 2:"),
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
}
