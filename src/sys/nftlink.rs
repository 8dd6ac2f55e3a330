//! Adding bans to an nftables set over netlink: one nf_tables batch and its
//! acknowledgement per ban, as [`super::netlink`] does for ipset, so that
//! capture's hot path never starts a process.
//!
//! The batch is what `nft add element inet fwctl SET { NET timeout Ns }`
//! sends (uapi linux/netfilter/nf_tables.h): BATCH_BEGIN for subsystem
//! NFTABLES, one NEWSETELEM naming the table and set with a list of
//! elements, BATCH_END. A single address goes into the role's hash set
//! (`blacklist`), one element; a network into its interval set
//! (`blacklist/net`, see `core::ruleset::nft::net_set`), where it is two
//! elements: its first address, and the first address past it flagged
//! INTERVAL_END (left out when the network ends at the top of the address
//! space). With NLM_F_EXCL an element that is there already, or a network
//! that overlaps one, is reported back rather than silently merged.

use super::netlink::{attr, nest_end, nest_start};
use crate::core::capture::engine::{Added, BanFailed};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::io;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_DELSET: u16 = 11;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// An element's key bytes: an IPv4 address's four or an IPv6 address's
/// sixteen, in a buffer of the stack (100 000 elements, no allocation each).
struct Key([u8; 16], usize);

impl Key {
    fn v4(a: u32) -> Key {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&a.to_be_bytes());
        Key(k, 4)
    }

    fn v6(a: u128) -> Key {
        Key(a.to_be_bytes(), 16)
    }

    fn bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

/// The first address past `net`, or None when it reaches the top.
fn past(net: IpNet) -> Option<Key> {
    match net {
        IpNet::V4(n) => u32::from(n.broadcast()).checked_add(1).map(Key::v4),
        IpNet::V6(n) => u128::from(n.broadcast()).checked_add(1).map(Key::v6),
    }
}

fn key(net: IpNet) -> Key {
    match net {
        IpNet::V4(n) => Key::v4(n.network().into()),
        IpNet::V6(n) => Key::v6(n.network().into()),
    }
}

fn header(m: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
    let at = m.len();
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version, res_id (big endian).
    m.push(family);
    m.push(0);
    m.extend_from_slice(&res_id.to_be_bytes());
    at
}

fn finish(m: &mut [u8], at: usize) {
    let len = (m.len() - at) as u32;
    m[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The batch that adds `net` to `table`'s `set` for `timeout` seconds
/// (pure, so its layout is unit-tested). The element message is `seq`,
/// the batch markers `seq - 1` and `seq + 1`.
pub fn add_request(
    seq: u32,
    table: &str,
    set: &str,
    interval: bool,
    net: IpNet,
    timeout: u32,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(160);
    let req = libc::NLM_F_REQUEST as u16;
    let at = header(
        &mut m,
        NFNL_MSG_BATCH_BEGIN,
        req,
        seq.wrapping_sub(1),
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    finish(&mut m, at);
    let flags = req | (libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let at = header(
        &mut m,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM,
        flags,
        seq,
        libc::NFPROTO_INET as u8,
        0,
    );
    attr(&mut m, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
    attr(&mut m, NFTA_SET_ELEM_LIST_SET, &cstr(set));
    let list = nest_start(&mut m, NFTA_SET_ELEM_LIST_ELEMENTS);
    element(&mut m, interval, net, Some(timeout));
    nest_end(&mut m, list);
    finish(&mut m, at);
    let at = header(
        &mut m,
        NFNL_MSG_BATCH_END,
        req,
        seq.wrapping_add(1),
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    finish(&mut m, at);
    m
}

/// Elements per NEWSETELEM/DELSETELEM message of a batch: each message
/// stays well under a page, as nft's own batches do.
const PER_MESSAGE: usize = 256;

/// What a [`batch_request`] does with one set's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Delete,
    /// Take out every element (the items are ignored).
    Flush,
    /// Delete the set itself (an empty marker set; the items are ignored).
    DropSet,
}

/// One set's elements to add or delete in a [`batch_request`]: each
/// (network, timeout in seconds; None: none). An interval set holds a
/// network as two elements, a hash set an address as one.
pub struct Elements<'a> {
    pub set: &'a str,
    pub verb: Verb,
    pub interval: bool,
    pub items: &'a [(IpNet, Option<u32>)],
}

/// One element (and in an interval set its end) into an open element list.
fn element(m: &mut Vec<u8>, interval: bool, net: IpNet, timeout: Option<u32>) {
    let elem = nest_start(m, NFTA_LIST_ELEM);
    let k = nest_start(m, NFTA_SET_ELEM_KEY);
    attr(m, NFTA_DATA_VALUE, key(net).bytes());
    nest_end(m, k);
    if let Some(t) = timeout {
        attr(
            m,
            NFTA_SET_ELEM_TIMEOUT,
            &(u64::from(t) * 1000).to_be_bytes(),
        );
    }
    nest_end(m, elem);
    if let Some(end) = past(net).filter(|_| interval) {
        let elem = nest_start(m, NFTA_LIST_ELEM);
        attr(
            m,
            NFTA_SET_ELEM_FLAGS,
            &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
        );
        let k = nest_start(m, NFTA_SET_ELEM_KEY);
        attr(m, NFTA_DATA_VALUE, end.bytes());
        nest_end(m, k);
        nest_end(m, elem);
    }
}

/// One nf_tables batch (one transaction: all of it or nothing) adding and
/// deleting `lists` in order, [`PER_MESSAGE`] elements a message, each
/// message acknowledged. Sequence numbers run from `seq`; returns the
/// request and the numbers of the messages to be acknowledged.
pub fn batch_request(seq: u32, table: &str, lists: &[Elements]) -> (Vec<u8>, Vec<u32>) {
    // Sized once (100 000 elements are some 4 MB: grown by doubling, each
    // step a copy into fresh pages): an IPv6 element with its timeout is
    // 44 bytes, its interval end 32 more; each message some 80 of its own.
    let size: usize = lists
        .iter()
        .map(|l| {
            let each = if l.interval { 76 } else { 44 };
            l.items.len() * each + (l.items.len() / PER_MESSAGE + 1) * (80 + l.set.len())
        })
        .sum();
    let mut m = Vec::with_capacity(size + 64);
    let req = libc::NLM_F_REQUEST as u16;
    let at = header(
        &mut m,
        NFNL_MSG_BATCH_BEGIN,
        req,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    finish(&mut m, at);
    let mut seqs = Vec::new();
    let mut next = seq;
    for l in lists {
        let flush: &[&[(IpNet, Option<u32>)]] = &[&[]];
        let chunks: Vec<&[(IpNet, Option<u32>)]> = match l.verb {
            Verb::Flush | Verb::DropSet => flush.to_vec(),
            _ => l.items.chunks(PER_MESSAGE).collect(),
        };
        for chunk in chunks {
            next = next.wrapping_add(1);
            seqs.push(next);
            let (kind, flags) = match l.verb {
                Verb::Add => (NFT_MSG_NEWSETELEM, libc::NLM_F_ACK | libc::NLM_F_CREATE),
                Verb::Delete | Verb::Flush => (NFT_MSG_DELSETELEM, libc::NLM_F_ACK),
                Verb::DropSet => (NFT_MSG_DELSET, libc::NLM_F_ACK),
            };
            let at = header(
                &mut m,
                (NFNL_SUBSYS_NFTABLES << 8) | kind,
                req | flags as u16,
                next,
                libc::NFPROTO_INET as u8,
                0,
            );
            attr(&mut m, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
            attr(&mut m, NFTA_SET_ELEM_LIST_SET, &cstr(l.set));
            // A DELSETELEM without a list flushes the set; a DELSET names
            // the set as these two attributes do (NFTA_SET_TABLE, _NAME).
            if !matches!(l.verb, Verb::Flush | Verb::DropSet) {
                let list = nest_start(&mut m, NFTA_SET_ELEM_LIST_ELEMENTS);
                for (net, timeout) in chunk {
                    let t = if l.verb == Verb::Add { *timeout } else { None };
                    element(&mut m, l.interval, *net, t);
                }
                nest_end(&mut m, list);
            }
            finish(&mut m, at);
        }
    }
    let at = header(
        &mut m,
        NFNL_MSG_BATCH_END,
        req,
        next.wrapping_add(1),
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    finish(&mut m, at);
    (m, seqs)
}

/// A batch the kernel refused (then nothing changed), or the socket's
/// failure, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BatchFailed(pub String);

/// Run `lists` as one batch on `sock`; Err names the set of the first
/// message the kernel refused.
pub fn run_batch(
    sock: &mut super::netlink::Netfilter,
    table: &str,
    lists: &[Elements],
) -> Result<(), BatchFailed> {
    let (req, seqs) = batch_request(1, table, lists);
    if seqs.is_empty() {
        return Ok(());
    }
    match sock.ask_all(&req, &seqs).map_err(BatchFailed)? {
        None => Ok(()),
        Some((seq, errno)) => {
            // Which list the refused message belongs to.
            let mut n = 0;
            let mut set = "";
            for l in lists {
                n += match l.verb {
                    Verb::Flush | Verb::DropSet => 1,
                    _ => l.items.len().div_ceil(PER_MESSAGE),
                };
                if (seq as usize) <= 1 + n {
                    set = l.set;
                    break;
                }
            }
            Err(BatchFailed(explain(-errno, set)))
        }
    }
}

/// What a kernel error code means here, with the fix.
pub fn explain(errno: i32, set: &str) -> String {
    match errno {
        libc::ENOENT => {
            format!("nftables set {set} (table inet fwctl) does not exist; fix: run `fwctl apply`")
        }
        libc::EPERM => {
            "not permitted to change nftables sets; fix: run as root (or with CAP_NET_ADMIN)".into()
        }
        libc::ENFILE => {
            format!("nftables set {set} is full; fix: raise [sets] maxelem and run `fwctl apply`")
        }
        e => format!("nftables set {set}: {}", io::Error::from_raw_os_error(e)),
    }
}

/// fwctl's nftables sets, over a netlink socket to the kernel's nf_tables.
pub struct NftSets {
    sock: super::netlink::Netfilter,
    seq: u32,
    table: String,
    /// The table's sets: name → whether it is an interval set (read on the
    /// first ban, and again when the kernel refuses one: an apply between
    /// may have changed them).
    kinds: Option<BTreeMap<String, bool>>,
}

impl NftSets {
    pub fn open(table: &str) -> io::Result<NftSets> {
        Ok(NftSets {
            sock: super::netlink::Netfilter::open()?,
            seq: 1,
            table: table.to_string(),
            kinds: None,
        })
    }

    fn kinds(&mut self) -> Result<&BTreeMap<String, bool>, BanFailed> {
        if self.kinds.is_none() {
            let heads = super::nftdump::heads(&self.table)
                .map_err(|e| BanFailed(format!("reading table inet fwctl's sets: {e}")))?;
            self.kinds = Some(
                heads
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| (h.name, h.interval))
                    .collect(),
            );
        }
        Ok(self.kinds.as_ref().expect("read above"))
    }

    /// Add `net` to `set` with `timeout` seconds: an address to the set
    /// itself, a network to its interval set (or to the set itself, when
    /// it is an interval set: a table from before the split).
    pub fn add(&mut self, set: &str, net: IpNet, timeout: u32) -> Result<Added, BanFailed> {
        let fresh = self.kinds.is_none();
        match self.try_add(set, net, timeout) {
            Err(_) if !fresh => {
                self.kinds = None;
                self.try_add(set, net, timeout)
            }
            r => r,
        }
    }

    fn try_add(&mut self, set: &str, net: IpNet, timeout: u32) -> Result<Added, BanFailed> {
        let (name, interval) = route(self.kinds()?, set, &net)?;
        self.seq = self.seq.wrapping_add(3);
        let req = add_request(self.seq, &self.table, &name, interval, net, timeout);
        match self.sock.ask(&req, self.seq).map_err(BanFailed)? {
            0 => Ok(Added::Added),
            // There already, or inside a network that is.
            e if e == -libc::EEXIST || e == -libc::ENOTEMPTY => Ok(Added::AlreadyListed),
            e => Err(BanFailed(explain(-e, &name))),
        }
    }
}

/// The kernel set `net` goes to in role `set`, and whether it is an
/// interval set, given the table's sets (`kinds`: name → interval).
pub fn route(
    kinds: &BTreeMap<String, bool>,
    set: &str,
    net: &IpNet,
) -> Result<(String, bool), BanFailed> {
    use crate::core::ruleset::nft::{is_address, net_set};
    let own = kinds.get(set).copied();
    if is_address(net) {
        return Ok((set.to_string(), own.unwrap_or(false)));
    }
    let nets = net_set(set);
    if kinds.get(&nets) == Some(&true) {
        return Ok((nets, true));
    }
    match own {
        Some(true) => Ok((set.to_string(), true)),
        Some(false) => Err(BanFailed(format!(
            "nftables set {set} holds single addresses, not networks like {net}; \
             fix: ban a single address into it, or a network into a set of networks (blacklist)"
        ))),
        None => Err(BanFailed(explain(libc::ENOENT, set))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_transaction_of_messages_of_at_most_256_elements() {
        let items: Vec<(IpNet, Option<u32>)> = (0..600u32)
            .map(|i| {
                (
                    IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                        0xc000_0200 + i,
                    ))),
                    Some(60),
                )
            })
            .collect();
        let gone = [("203.0.113.0/24".parse().unwrap(), None)];
        let (m, seqs) = batch_request(
            1,
            "fwctl",
            &[
                Elements {
                    set: "blacklist/net",
                    verb: Verb::Delete,
                    interval: true,
                    items: &gone,
                },
                Elements {
                    set: "blacklist",
                    verb: Verb::Add,
                    interval: false,
                    items: &items,
                },
                Elements {
                    set: "feed",
                    verb: Verb::Flush,
                    interval: false,
                    items: &[],
                },
            ],
        );
        let msgs = messages(&m);
        let kinds: Vec<u16> = msgs.iter().map(|x| x.0).collect();
        assert_eq!(
            kinds,
            [
                0x10,
                10 << 8 | 14,
                10 << 8 | 12,
                10 << 8 | 12,
                10 << 8 | 12,
                10 << 8 | 14,
                0x11
            ]
        );
        assert_eq!(seqs, [2, 3, 4, 5, 6]);
        // The flush names the set and lists no element.
        assert!(msgs[5].2.windows(5).any(|w| w == b"feed\0"));
        assert_eq!(msgs[5].2.len(), 16 + 4 + 12 + 12);
        // A hash set's address is one element (key and timeout), no
        // interval end: headers, table, set, the list, 256 elements.
        assert_eq!(msgs[2].2.len(), 16 + 4 + 12 + 16 + 4 + 256 * 28);
        // The delete carries no timeout; each add does.
        let has = |b: &[u8], w: &[u8]| b.windows(w.len()).any(|x| x == w);
        assert!(!has(msgs[1].2, &60_000u64.to_be_bytes()));
        assert!(has(msgs[2].2, &60_000u64.to_be_bytes()));
        let (_, none) = batch_request(1, "fwctl", &[]);
        assert!(none.is_empty());
    }

    fn messages(m: &[u8]) -> Vec<(u16, u32, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < m.len() {
            let len = u32::from_ne_bytes(m[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes([m[at + 4], m[at + 5]]);
            let seq = u32::from_ne_bytes(m[at + 8..at + 12].try_into().unwrap());
            out.push((kind, seq, &m[at..at + len]));
            at += len;
        }
        out
    }

    #[test]
    fn a_ban_is_one_batch_with_the_interval_end_past_the_network() {
        let m = add_request(
            9,
            "fwctl",
            "blacklist/net",
            true,
            "203.0.113.8/29".parse().unwrap(),
            600,
        );
        let msgs = messages(&m);
        let kinds: Vec<u16> = msgs.iter().map(|x| x.0).collect();
        assert_eq!(kinds, [0x10, 10 << 8 | 12, 0x11]);
        assert_eq!(msgs[1].1, 9);
        let elem = msgs[1].2;
        assert_eq!(elem[16], libc::NFPROTO_INET as u8);
        let find = |w: &[u8]| elem.windows(w.len()).position(|x| x == w);
        assert!(find(b"fwctl\0").is_some() && find(b"blacklist/net\0").is_some());
        let start = find(&[203, 0, 113, 8]).unwrap();
        let end = find(&[203, 0, 113, 16]).unwrap();
        assert!(start < end);
        assert!(find(&600_000u64.to_be_bytes()).is_some());
        // The batch markers address the nftables subsystem.
        assert_eq!(&msgs[0].2[16..20], &[0, 0, 0, 10]);
    }

    #[test]
    fn a_network_at_the_top_has_no_end_element() {
        let top = add_request(
            1,
            "fwctl",
            "b",
            true,
            "255.255.255.0/24".parse().unwrap(),
            5,
        );
        let mid = add_request(1, "fwctl", "b", true, "203.0.113.0/24".parse().unwrap(), 5);
        let hash = add_request(1, "fwctl", "b", false, "203.0.113.9/32".parse().unwrap(), 5);
        assert_eq!(top.len(), hash.len(), "one element each");
        assert!(top.len() < mid.len());
        let v6 = add_request(
            1,
            "fwctl",
            "b_v6",
            true,
            "2001:db8::/64".parse().unwrap(),
            5,
        );
        let end: [u8; 16] = "2001:db8:0:1::"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        assert!(v6.windows(16).any(|w| w == end));
    }

    /// An address goes to the role's hash set, a network to its interval
    /// set; a table from before the split (one interval set) takes both.
    #[test]
    fn a_ban_goes_to_the_set_that_holds_its_kind() {
        let split = BTreeMap::from([
            ("blacklist".to_string(), false),
            ("blacklist/net".to_string(), true),
            ("throttle-hard".to_string(), false),
        ]);
        let a: IpNet = "203.0.113.9/32".parse().unwrap();
        let n: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(
            route(&split, "blacklist", &a).unwrap(),
            ("blacklist".into(), false)
        );
        assert_eq!(
            route(&split, "blacklist", &n).unwrap(),
            ("blacklist/net".into(), true)
        );
        let e = route(&split, "throttle-hard", &n).unwrap_err();
        assert!(e.0.contains("single addresses"), "{}", e.0);
        assert!(route(&split, "nope", &n)
            .unwrap_err()
            .0
            .contains("fwctl apply"));
        let old = BTreeMap::from([("blacklist".to_string(), true)]);
        assert_eq!(
            route(&old, "blacklist", &a).unwrap(),
            ("blacklist".into(), true)
        );
        assert_eq!(
            route(&old, "blacklist", &n).unwrap(),
            ("blacklist".into(), true)
        );
    }

    #[test]
    fn errors_name_the_fix() {
        assert!(explain(libc::ENOENT, "blacklist").contains("fwctl apply"));
        assert!(explain(libc::ENFILE, "b").contains("maxelem"));
    }
}
