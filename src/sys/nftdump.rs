//! fwctl's nftables sets and their elements read over netlink (GETSET and
//! GETSETELEM dumps of `table inet fwctl`), not through `nft`: nft 1.0
//! reads every element of every set into its cache and prints it, about
//! 2 s for 100 000 members; the dump and this parse take a few hundred
//! milliseconds at most. The messages are those of uapi
//! linux/netfilter/nf_tables.h.

use super::netlink::Netfilter;
use crate::core::ruleset::nftmark::{COMMENT_PREFIX, LOADED_SUFFIX};
use crate::units::addr::{unmap, Family};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;

const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_SIZE: u16 = 1;
const NFTA_SET_USERDATA: u16 = 13;

const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_DATA_VALUE: u16 = 1;

const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// nfgenmsg, before a message's attributes.
const NFGEN: usize = 4;

/// A dump request for `kind` in `table` (and `set`, for elements).
pub fn request(seq: u32, kind: u16, table: &str, set: Option<&str>) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[libc::NFPROTO_INET as u8, 0, 0, 0]);
    let cstr = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    // NFTA_SET_TABLE and NFTA_SET_ELEM_LIST_TABLE are both 1.
    super::netlink::attr(&mut m, NFTA_SET_TABLE, &cstr(table));
    if let Some(s) = set {
        super::netlink::attr(&mut m, NFTA_SET_ELEM_LIST_SET, &cstr(s));
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// The attributes in `b`: (type without the nested / byte-order bits,
/// payload). Stops at the first one that runs past the end.
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= b.len() {
        let len = usize::from(u16::from_ne_bytes([b[at], b[at + 1]]));
        let kind = u16::from_ne_bytes([b[at + 2], b[at + 3]]) & 0x3fff;
        if len < 4 || at + len > b.len() {
            break;
        }
        out.push((kind, &b[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

/// The first attribute `kind` in `b` (a walk, no allocation: it runs
/// several times for each of 100 000 elements).
fn get(b: &[u8], kind: u16) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= b.len() {
        let len = usize::from(u16::from_ne_bytes([b[at], b[at + 1]]));
        let k = u16::from_ne_bytes([b[at + 2], b[at + 3]]) & 0x3fff;
        if len < 4 || at + len > b.len() {
            return None;
        }
        if k == kind {
            return Some(&b[at + 4..at + len]);
        }
        at += (len + 3) & !3;
    }
    None
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn be64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn name(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|&b| b == 0).next().unwrap_or(v)).into_owned()
}

/// One of fwctl's sets as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftSet {
    pub name: String,
    pub family: Family,
    pub size: Option<u32>,
    /// Whether its members can carry a timeout (`flags timeout`).
    pub timeout: bool,
    /// An interval set (networks), not a hash set (addresses).
    pub interval: bool,
    /// Members, with the seconds they have left (None: no timeout, a
    /// member of the config).
    pub members: Vec<(IpNet, Option<u64>)>,
}

/// A set as GETSET describes it (members read next).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub name: String,
    pub family: Family,
    pub interval: bool,
    pub timeout: bool,
    pub size: Option<u32>,
}

/// One GETSET answer's payload (after nfgenmsg); None for a set that does
/// not hold addresses.
fn head(p: &[u8]) -> Option<Head> {
    let family = match be32(get(p, NFTA_SET_KEY_LEN)?)? {
        4 => Family::V4,
        16 => Family::V6,
        _ => return None,
    };
    let flags = get(p, NFTA_SET_FLAGS).and_then(be32).unwrap_or(0);
    Some(Head {
        name: name(get(p, NFTA_SET_NAME)?),
        family,
        interval: flags & NFT_SET_INTERVAL != 0,
        timeout: flags & NFT_SET_TIMEOUT != 0,
        size: get(p, NFTA_SET_DESC).and_then(|d| get(d, NFTA_SET_DESC_SIZE).and_then(be32)),
    })
}

/// One element: its key (an address as a number), whether it ends an
/// interval, and the milliseconds it has left (None: no timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Elem {
    key: u128,
    end: bool,
    left_ms: Option<u64>,
}

/// The elements of one GETSETELEM answer's payload, into `out`.
fn elems(p: &[u8], out: &mut Vec<Elem>) {
    let Some(list) = get(p, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return;
    };
    for (_, e) in attrs(list) {
        let Some(v) = get(e, NFTA_SET_ELEM_KEY).and_then(|k| get(k, NFTA_DATA_VALUE)) else {
            continue;
        };
        let key = match v.len() {
            4 => u128::from(u32::from_be_bytes(v.try_into().expect("4"))),
            16 => u128::from_be_bytes(v.try_into().expect("16")),
            _ => continue,
        };
        out.push(Elem {
            key,
            end: get(e, NFTA_SET_ELEM_FLAGS)
                .and_then(be32)
                .is_some_and(|f| f & NFT_SET_ELEM_INTERVAL_END != 0),
            left_ms: get(e, NFTA_SET_ELEM_EXPIRATION).and_then(be64),
        });
    }
}

fn addr(family: Family, key: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(key as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(key)),
    }
}

/// The networks covering [first, last], widest first-fitting blocks.
fn cidrs(family: Family, first: u128, last: u128, out: &mut Vec<IpNet>) {
    let bits: u32 = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let mut at = first;
    loop {
        // The widest block starting at `at` (aligned) that ends by `last`.
        let mut len = bits;
        while len > 0 {
            let size_bits = bits - (len - 1);
            let mask = if size_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << size_bits) - 1
            };
            if at & mask != 0 || at.checked_add(mask).is_none_or(|end| end > last) {
                break;
            }
            len -= 1;
        }
        out.push(IpNet::new(addr(family, at), len as u8).expect("a prefix length within bits"));
        let size_bits = bits - len;
        let block_last = if size_bits >= 128 {
            u128::MAX
        } else {
            at + ((1u128 << size_bits) - 1)
        };
        if block_last >= last {
            break;
        }
        at = block_last + 1;
    }
}

/// A set's members from its elements: each with the seconds it has left.
/// An interval set holds each network as its first address and the first
/// address past it (flagged as an end; none when the network reaches the
/// top of the address space).
fn members(h: &Head, mut es: Vec<Elem>) -> Vec<(IpNet, Option<u64>)> {
    let secs = |e: &Elem| e.left_ms.map(|ms| ms.div_ceil(1000));
    let top = match h.family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    };
    let mut out = Vec::new();
    if !h.interval {
        for e in &es {
            let bits = if h.family == Family::V4 { 32 } else { 128 };
            let net = IpNet::new(addr(h.family, e.key), bits).expect("a full prefix");
            out.push((unmap(net), secs(e)));
        }
        return out;
    }
    // Ends before starts at the same key: one network ends where the next
    // begins.
    es.sort_by_key(|e| (e.key, !e.end));
    let mut i = 0;
    while i < es.len() {
        let e = es[i];
        i += 1;
        if e.end {
            continue;
        }
        let last = match es.get(i) {
            Some(n) if n.end => {
                i += 1;
                n.key - 1
            }
            _ => top,
        };
        if last < e.key {
            continue;
        }
        let mut nets = Vec::new();
        cidrs(h.family, e.key, last, &mut nets);
        out.extend(nets.into_iter().map(|n| (unmap(n), secs(&e))));
    }
    out
}

/// The payloads (after nlmsghdr and nfgenmsg) of every answer to the dump
/// `req`; Err(ENOENT) when the table or set is not there.
fn dump(sock: &mut Netfilter, req: &[u8], seq: u32) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let done = sock.dump(req, seq, &mut |kind, payload| {
        if kind >> 8 == NFNL_SUBSYS_NFTABLES && payload.len() >= NFGEN {
            out.push(payload[NFGEN..].to_vec());
        }
    });
    done.map(|()| out)
}

/// The address sets of `table` without their members (one GETSET dump,
/// however many members); None without the table.
pub fn heads(table: &str) -> io::Result<Option<Vec<Head>>> {
    let mut sock = Netfilter::open()?;
    heads_on(&mut sock, table)
}

fn heads_on(sock: &mut Netfilter, table: &str) -> io::Result<Option<Vec<Head>>> {
    match dump(sock, &request(1, NFT_MSG_GETSET, table, None), 1) {
        Ok(p) => Ok(Some(p.iter().filter_map(|p| head(p)).collect())),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The comments of `table`'s marker sets (`core::ruleset::nftmark`), by
/// the set each marks; None without the table. One GETSET dump.
pub fn marks(table: &str) -> io::Result<Option<BTreeMap<String, String>>> {
    let mut sock = Netfilter::open()?;
    let answers = match dump(&mut sock, &request(1, NFT_MSG_GETSET, table, None), 1) {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(answers.iter().filter_map(|p| mark(p)).collect()))
}

/// One GETSET answer's (marked set, comment), if it is a marker set. The
/// comment is one of the userdata's TLVs (type, length, value), a string
/// ending in NUL; found by what it says rather than by nft's type number.
fn mark(p: &[u8]) -> Option<(String, String)> {
    let name = name(get(p, NFTA_SET_NAME)?);
    let set = name.strip_suffix(LOADED_SUFFIX)?.to_string();
    let mut ud = get(p, NFTA_SET_USERDATA)?;
    while ud.len() >= 2 {
        let len = usize::from(ud[1]);
        let value = ud.get(2..2 + len)?;
        let text = String::from_utf8_lossy(value.split(|&b| b == 0).next().unwrap_or(value));
        if text.starts_with(COMMENT_PREFIX) {
            return Some((set, text.into_owned()));
        }
        ud = &ud[2 + len..];
    }
    None
}

/// Every address set of `table` with its members (those `only` names, when
/// given); None without the table.
pub fn sets(table: &str, only: Option<&[&str]>) -> io::Result<Option<Vec<NftSet>>> {
    let keep = |name: &str| only.is_none_or(|o| o.contains(&name));
    read_sets(table, &keep, &|_| true)
}

/// Every address set of `table`, the members of those `read` says yes to
/// (the others with none); None without the table.
pub fn sets_reading(table: &str, read: &dyn Fn(&str) -> bool) -> io::Result<Option<Vec<NftSet>>> {
    read_sets(table, &|_| true, read)
}

fn read_sets(
    table: &str,
    keep: &dyn Fn(&str) -> bool,
    read: &dyn Fn(&str) -> bool,
) -> io::Result<Option<Vec<NftSet>>> {
    let mut sock = Netfilter::open()?;
    let Some(heads) = heads_on(&mut sock, table)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (i, h) in heads.into_iter().enumerate() {
        if !keep(&h.name) {
            continue;
        }
        let seq = 2 + i as u32;
        let req = request(seq, NFT_MSG_GETSETELEM, table, Some(&h.name));
        let mut es = Vec::new();
        if read(&h.name) {
            for p in dump(&mut sock, &req, seq)? {
                elems(&p, &mut es);
            }
        }
        out.push(NftSet {
            name: h.name.clone(),
            family: h.family,
            size: h.size,
            timeout: h.timeout,
            interval: h.interval,
            members: members(&h, es),
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netlink::{attr, nest_end, nest_start};

    fn elem(m: &mut Vec<u8>, key: &[u8], end: bool, left_ms: Option<u64>) {
        let e = nest_start(m, 1);
        let k = nest_start(m, NFTA_SET_ELEM_KEY);
        attr(m, NFTA_DATA_VALUE, key);
        nest_end(m, k);
        if end {
            attr(m, NFTA_SET_ELEM_FLAGS, &1u32.to_be_bytes());
        }
        if let Some(ms) = left_ms {
            attr(m, 4, &(ms + 1000).to_be_bytes());
            attr(m, NFTA_SET_ELEM_EXPIRATION, &ms.to_be_bytes());
        }
        nest_end(m, e);
    }

    /// A marker's comment is read from its userdata (nft's TLVs: a byte
    /// order entry, then the comment); any other set is no marker.
    #[test]
    fn a_markers_comment_is_read_from_its_userdata() {
        let payload = |name: &[u8], ud: &[u8]| {
            let mut p = Vec::new();
            attr(&mut p, NFTA_SET_TABLE, b"fwctl\0");
            attr(&mut p, NFTA_SET_NAME, name);
            attr(&mut p, NFTA_SET_KEY_LEN, &2u32.to_be_bytes());
            attr(&mut p, NFTA_SET_USERDATA, ud);
            p
        };
        let text = b"fwctl config members 00000000000000ab 3\0";
        let mut ud = vec![0u8, 4, 2, 0, 0, 0, 7, text.len() as u8];
        ud.extend_from_slice(text);
        assert_eq!(
            mark(&payload(b"blacklist_v6/loaded\0", &ud)),
            Some((
                "blacklist_v6".to_string(),
                "fwctl config members 00000000000000ab 3".to_string()
            ))
        );
        assert_eq!(mark(&payload(b"blacklist_v6\0", &ud)), None);
        // A comment of someone else's, or a TLV running past the end.
        assert_eq!(mark(&payload(b"x/loaded\0", &[7, 3, b'h', b'i', 0])), None);
        assert_eq!(mark(&payload(b"x/loaded\0", &[7, 40, b'f'])), None);
    }

    #[test]
    fn a_set_head_is_read_from_its_attributes() {
        let mut p = Vec::new();
        attr(&mut p, NFTA_SET_TABLE, b"fwctl\0");
        attr(&mut p, NFTA_SET_NAME, b"blacklist_v6\0");
        attr(
            &mut p,
            NFTA_SET_FLAGS,
            &(NFT_SET_INTERVAL | NFT_SET_TIMEOUT).to_be_bytes(),
        );
        attr(&mut p, 4, &8u32.to_be_bytes());
        attr(&mut p, NFTA_SET_KEY_LEN, &16u32.to_be_bytes());
        let d = nest_start(&mut p, NFTA_SET_DESC);
        attr(&mut p, NFTA_SET_DESC_SIZE, &262_144u32.to_be_bytes());
        nest_end(&mut p, d);
        assert_eq!(
            head(&p),
            Some(Head {
                name: "blacklist_v6".into(),
                family: Family::V6,
                interval: true,
                timeout: true,
                size: Some(262_144)
            })
        );
        let r = request(7, NFT_MSG_GETSETELEM, "fwctl", Some("blacklist"));
        assert_eq!(
            u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize,
            r.len()
        );
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), (10 << 8) | 13);
    }

    #[test]
    fn interval_elements_become_the_networks_they_hold() {
        let mut p = Vec::new();
        let list = nest_start(&mut p, NFTA_SET_ELEM_LIST_ELEMENTS);
        // The kernel dumps an rbtree from the top down.
        elem(&mut p, &[203, 0, 113, 6], true, None);
        elem(&mut p, &[203, 0, 113, 5], false, Some(299_500));
        elem(&mut p, &[192, 0, 3, 0], true, None);
        elem(&mut p, &[192, 0, 2, 0], false, None);
        // A network reaching the top: no end element.
        elem(&mut p, &[255, 255, 255, 0], false, Some(10));
        // Two networks that touch: one's end is the next one's start.
        elem(&mut p, &[198, 51, 100, 128], true, None);
        elem(&mut p, &[198, 51, 100, 64], false, None);
        elem(&mut p, &[198, 51, 100, 64], true, None);
        elem(&mut p, &[198, 51, 100, 0], false, None);
        nest_end(&mut p, list);
        let mut es = Vec::new();
        elems(&p, &mut es);
        let h = Head {
            name: "blacklist".into(),
            family: Family::V4,
            interval: true,
            timeout: true,
            size: None,
        };
        let got: Vec<(String, Option<u64>)> = members(&h, es)
            .into_iter()
            .map(|(n, l)| (n.to_string(), l))
            .collect();
        let want: Vec<(String, Option<u64>)> = [
            ("192.0.2.0/24", None),
            ("198.51.100.0/26", None),
            ("198.51.100.64/26", None),
            ("203.0.113.5/32", Some(300)),
            ("255.255.255.0/24", Some(1)),
        ]
        .iter()
        .map(|(n, l)| (n.to_string(), *l))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_range_that_is_no_network_is_the_networks_covering_it() {
        let mut out = Vec::new();
        cidrs(Family::V4, 0xC000_0201, 0xC000_0206, &mut out);
        let s: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "192.0.2.1/32",
                "192.0.2.2/31",
                "192.0.2.4/31",
                "192.0.2.6/32"
            ]
        );
        out.clear();
        cidrs(Family::V6, 0, u128::MAX, &mut out);
        assert_eq!(out[0].to_string(), "::/0");
        out.clear();
        cidrs(Family::V4, 0, u128::from(u32::MAX), &mut out);
        assert_eq!(out[0].to_string(), "0.0.0.0/0");
    }

    #[test]
    fn hash_elements_are_addresses() {
        let mut p = Vec::new();
        let list = nest_start(&mut p, NFTA_SET_ELEM_LIST_ELEMENTS);
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        elem(&mut p, &v6.octets(), false, Some(1));
        nest_end(&mut p, list);
        let mut es = Vec::new();
        elems(&p, &mut es);
        let h = Head {
            name: "s".into(),
            family: Family::V6,
            interval: false,
            timeout: true,
            size: None,
        };
        assert_eq!(
            members(&h, es),
            [("2001:db8::1/128".parse().unwrap(), Some(1))]
        );
    }
}
