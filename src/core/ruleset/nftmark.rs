//! What `apply` loaded into each of fwctl's nftables sets, kept in the
//! kernel beside it (pure). The kernel's set dump starts its walk over for
//! every 32 KB batch, hash sets too (kernel 6.18: `rhashtable_walk_next`
//! was most of a re-apply, 1-1.6 s for 100 000 members), so a re-apply does
//! not read a set whose config members are those it loaded last time.
//!
//! Each set `S` has an empty marker set `S/loaded` (`type inet_service`:
//! no address set, so listing, counting and banning never see it) whose
//! comment names the digest of the config members (those without a
//! timeout) the set held when the marker was written. Every apply writes
//! the markers again in its rules' transaction; fwctl's own changes that
//! take members out (unban, a refill) delete the set's marker in the same
//! batch, so the next apply reads that set whole. A set changed by hand
//! with `nft` keeps its marker: `status --repair` reads every set whole.

use crate::units::addr::Family;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

/// One set as the kernel holds it: a role's addresses (hash) or its
/// networks (interval), with the members it starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSet {
    pub name: String,
    pub family: Family,
    pub interval: bool,
    /// `flags timeout` (all of fwctl's have it).
    pub timeout: bool,
    pub size: u32,
    /// Members, with their timeout (None: the config's).
    pub members: Vec<(IpNet, Option<u32>)>,
}

impl KernelSet {
    /// Whether `other` is the same set but for its members.
    pub fn same_kind(&self, other: &KernelSet) -> bool {
        (
            &self.name,
            self.family,
            self.interval,
            self.timeout,
            self.size,
        ) == (
            &other.name,
            other.family,
            other.interval,
            other.timeout,
            other.size,
        )
    }
}

/// How a marker's comment starts.
pub const COMMENT_PREFIX: &str = "fwctl config members ";

/// What [`loaded_set`] appends.
pub const LOADED_SUFFIX: &str = "/loaded";

/// The marker set of kernel set `set` (`blacklist_v6/loaded`).
pub fn loaded_set(set: &str) -> String {
    format!("{set}{LOADED_SUFFIX}")
}

/// The comment a marker carries for `set`'s config members: their digest
/// (independent of order: an FNV-1a hash of each member, summed) and count.
pub fn comment(set: &KernelSet) -> String {
    let config = set.members.iter().filter(|(_, t)| t.is_none());
    let (sum, count) = members_digest(config.map(|(net, _)| net));
    format!("{COMMENT_PREFIX}{sum:016x} {count}")
}

/// An order-independent digest of `members`: each one's address bytes and
/// prefix length hashed (FNV-1a, 64 bits), the hashes summed; and how many.
pub fn members_digest<'a>(members: impl Iterator<Item = &'a IpNet>) -> (u64, usize) {
    let mut sum: u64 = 0;
    let mut count = 0usize;
    for net in members {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut step = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        match net.addr() {
            std::net::IpAddr::V4(a) => a.octets().into_iter().for_each(&mut step),
            std::net::IpAddr::V6(a) => a.octets().into_iter().for_each(&mut step),
        }
        step(net.prefix_len());
        sum = sum.wrapping_add(h);
        count += 1;
    }
    (sum, count)
}

/// The sets of `have` (as the kernel describes them, members not read)
/// that a re-apply keeps without reading: the plan wants them as they are
/// (`fresh`: the plan's sets with the config's members only), and their
/// marker (`marks`: set → comment) names the config members the plan has.
pub fn unread(
    fresh: &[KernelSet],
    have: &[KernelSet],
    marks: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    fresh
        .iter()
        .filter(|w| have.iter().any(|h| w.same_kind(h)))
        .filter(|w| marks.get(&w.name) == Some(&comment(w)))
        .map(|w| w.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::addr::{parse_addr, Family};

    fn set(name: &str, members: &[(&str, Option<u32>)]) -> KernelSet {
        KernelSet {
            name: name.into(),
            family: Family::V4,
            interval: false,
            timeout: true,
            size: 65536,
            members: members
                .iter()
                .map(|(m, t)| (parse_addr(m).unwrap(), *t))
                .collect(),
        }
    }

    #[test]
    fn the_comment_names_the_config_members_whatever_their_order_and_the_bans() {
        let a = set("blacklist", &[("192.0.2.1", None), ("192.0.2.2", None)]);
        let b = set(
            "blacklist",
            &[
                ("192.0.2.2", None),
                ("203.0.113.9", Some(60)),
                ("192.0.2.1", None),
            ],
        );
        assert_eq!(comment(&a), comment(&b));
        assert!(comment(&a).ends_with(" 2"), "{}", comment(&a));
        let c = set("blacklist", &[("192.0.2.1", None), ("192.0.2.3", None)]);
        assert_ne!(comment(&a), comment(&c));
        // Less than nft's 128 characters.
        assert!(comment(&a).len() < 128);
    }

    #[test]
    fn a_set_is_left_unread_only_when_its_marker_names_the_plans_members() {
        let fresh = vec![
            set("blacklist", &[("192.0.2.1", None)]),
            set("whitelist", &[("198.51.100.1", None)]),
        ];
        let have: Vec<KernelSet> = fresh
            .iter()
            .map(|s| KernelSet {
                members: vec![],
                ..s.clone()
            })
            .collect();
        let mut marks = BTreeMap::from([
            ("blacklist".to_string(), comment(&fresh[0])),
            (
                "whitelist".to_string(),
                "fwctl config members 0 0".to_string(),
            ),
        ]);
        assert_eq!(
            unread(&fresh, &have, &marks),
            BTreeSet::from(["blacklist".to_string()])
        );
        // A set whose kind changed is made again, so read.
        let mut resized = have.clone();
        resized[0].size = 1024;
        assert!(unread(&fresh, &resized, &marks).is_empty());
        // No marker (deleted by an unban): read.
        marks.remove("blacklist");
        assert!(unread(&fresh, &have, &marks).is_empty());
    }
}
