//! Frame parsing (pure): from the bytes of one captured frame to the probe it
//! carries, if any. A probe is a TCP segment without ACK or RST (SYN, FIN,
//! NULL, XMAS and other odd flag sets: what opens a connection or what port
//! scanners send) or a UDP datagram. Everything else (replies, established
//! traffic, ICMP, later fragments) is `None`.

use std::net::{IpAddr, Ipv6Addr};

/// How a probe's flags classify it. The discriminants are bit positions in a
/// [`Kinds`] mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Syn = 0,
    Fin = 1,
    Null = 2,
    Xmas = 3,
    /// Any other flag set without ACK (SYN+FIN, FIN+PSH, ...): nmap --scanflags.
    Odd = 4,
    Udp = 5,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Syn,
        Kind::Fin,
        Kind::Null,
        Kind::Xmas,
        Kind::Odd,
        Kind::Udp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Syn => "SYN",
            Kind::Fin => "FIN",
            Kind::Null => "NULL",
            Kind::Xmas => "XMAS",
            Kind::Odd => "ODD-FLAGS",
            Kind::Udp => "UDP",
        }
    }

    /// The nmap option that sends this kind of probe.
    pub fn nmap(self) -> &'static str {
        match self {
            Kind::Syn => "-sS",
            Kind::Fin => "-sF",
            Kind::Null => "-sN",
            Kind::Xmas => "-sX",
            Kind::Odd => "--scanflags",
            Kind::Udp => "-sU",
        }
    }

    pub fn is_udp(self) -> bool {
        self == Kind::Udp
    }
}

/// A set of kinds, as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kinds(pub u8);

impl Kinds {
    pub fn add(&mut self, k: Kind) {
        self.0 |= 1 << k as u8;
    }

    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL
            .into_iter()
            .filter(move |k| self.0 & (1 << *k as u8) != 0)
    }

    /// "SYN", "UDP", ... or "mixed" when more than one kind was seen.
    pub fn label(self) -> &'static str {
        let mut it = self.iter();
        match (it.next(), it.next()) {
            (Some(k), None) => k.name(),
            (None, _) => "none",
            _ => "mixed",
        }
    }

    /// The nmap options that would produce this mix, e.g. "-sS" or "-sS -sU".
    pub fn nmap(self) -> String {
        self.iter().map(Kind::nmap).collect::<Vec<_>>().join(" ")
    }
}

/// An IP address as one 16-byte integer: IPv6 as it is, IPv4 mapped
/// (::ffff:a.b.c.d), which is how the detector keys sources anyway. A probe
/// goes from the parser to the engine and the detector through memory, and
/// an `IpAddr` there (17 bytes, align 1) was stored in small pieces and
/// loaded in wider ones: a failed store-to-load forwarding on every frame
/// (perf: 40 % of Engine::frame's samples on one load, then as much of
/// Detector::probe's once the parser was inlined). A u128 goes whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Addr(pub u128);

impl Addr {
    const V4_MAPPED: u128 = 0xffff << 32;

    pub fn v4(octets: [u8; 4]) -> Addr {
        Addr(Self::V4_MAPPED | u128::from(u32::from_be_bytes(octets)))
    }

    pub fn v6(octets: [u8; 16]) -> Addr {
        Addr(u128::from_be_bytes(octets))
    }

    /// An IPv4 address (or an IPv6 one in the mapped range, which no
    /// sender puts on the wire: RFC 4291 2.5.5.2).
    pub fn is_v4(self) -> bool {
        self.0 >> 32 == 0xffff
    }

    pub fn ip(self) -> IpAddr {
        Ipv6Addr::from(self.0).to_canonical()
    }
}

impl std::str::FromStr for Addr {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Addr, Self::Err> {
        s.parse::<IpAddr>().map(Addr::from)
    }
}

impl From<IpAddr> for Addr {
    fn from(a: IpAddr) -> Addr {
        match a {
            IpAddr::V4(v4) => Addr::v4(v4.octets()),
            IpAddr::V6(v6) => Addr::v6(v6.octets()),
        }
    }
}

/// What one probe says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub kind: Kind,
}

/// The link layer a frame starts with (pcap LINKTYPE_* values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Raw IP, version from the first nibble (LINKTYPE_RAW 101, IPV4 228, IPV6 229).
    Raw,
    /// Linux cooked capture v1 (`tcpdump -i any` on older libpcap).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
}

impl Link {
    /// From a pcap link type number.
    pub fn from_linktype(n: i32) -> Option<Link> {
        match n {
            1 => Some(Link::Ethernet),
            101 | 228 | 229 | 12 | 14 => Some(Link::Raw),
            113 => Some(Link::LinuxSll),
            276 => Some(Link::LinuxSll2),
            _ => None,
        }
    }
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
/// 802.1Q, 802.1ad (QinQ) and the older QinQ tag, matched in place: a
/// slice's `contains` was a call per frame (perf: 5 % of a replay).
fn is_vlan(ethertype: u16) -> bool {
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
}
/// Linux packet type "outgoing": our own packets, never probes against us.
const PACKET_OUTGOING: u16 = 4;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parse one frame. `None` for anything that is not a probe.
pub fn parse(link: Link, frame: &[u8]) -> Option<Probe> {
    let (n, outgoing) = network(link, frame)?;
    if outgoing {
        return None;
    }
    transport(n.proto, n.l4, n.src, n.dst)
}

/// The source address of an IP frame, and nothing else: what `Engine::warm`
/// needs of a frame a few ahead (a full parse there was a tenth of a
/// replay). Any IP frame answers, probe or not: a prefetch for a frame that
/// turns out not to be a probe costs nothing.
pub fn source(link: Link, frame: &[u8]) -> Option<Addr> {
    let (ethertype, ip, _) = layer3(link, frame)?;
    match ethertype {
        ETH_IPV4 => Some(Addr::v4(ip.get(12..16)?.try_into().ok()?)),
        ETH_IPV6 => Some(Addr::v6(ip.get(8..24)?.try_into().ok()?)),
        _ => None,
    }
}

/// A TCP segment or UDP datagram with its payload (as far as captured), in
/// either direction: what payload signatures read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub udp: bool,
    /// TCP only (0 for UDP).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: &'a [u8],
}

pub const TCP_SYN: u8 = SYN;
pub const TCP_ACK: u8 = ACK;
pub const TCP_RST: u8 = RST;

/// Parse one frame as a segment. The payload ends where the IP length says
/// (not at the link's padding) or where the capture cut it.
pub fn segment(link: Link, frame: &[u8]) -> Option<Segment<'_>> {
    let (n, _) = network(link, frame)?;
    let l4 = &n.l4[..n.l4.len().min(n.l4_len)];
    let (udp, flags, seq, ack, head) = match n.proto {
        6 => {
            let doff = usize::from(*l4.get(12)? >> 4) * 4;
            let word = |at: usize| Some(u32::from_be_bytes(l4.get(at..at + 4)?.try_into().ok()?));
            (false, *l4.get(13)?, word(4)?, word(8)?, doff.max(20))
        }
        17 => (true, 0, 0, 0, 8),
        _ => return None,
    };
    Some(Segment {
        src: n.src.ip(),
        dst: n.dst.ip(),
        sport: be16(l4, 0)?,
        dport: be16(l4, 2)?,
        udp,
        flags,
        seq,
        ack,
        payload: l4.get(head..).unwrap_or(&[]),
    })
}

/// The network layer of a frame: addresses, the transport protocol, its
/// bytes as captured and its length as the IP header says.
struct Net<'a> {
    src: Addr,
    dst: Addr,
    proto: u8,
    l4: &'a [u8],
    l4_len: usize,
}

/// The network layer of a frame, and whether the frame is our own outgoing one.
fn network(link: Link, frame: &[u8]) -> Option<(Net<'_>, bool)> {
    let (ethertype, ip, outgoing) = layer3(link, frame)?;
    let n = match ethertype {
        ETH_IPV4 => ipv4(ip)?,
        ETH_IPV6 => ipv6(ip)?,
        _ => return None,
    };
    Some((n, outgoing))
}

/// The ethertype, the IP bytes, and whether the frame is our own outgoing one.
fn layer3(link: Link, frame: &[u8]) -> Option<(u16, &[u8], bool)> {
    let mut outgoing = false;
    let (ethertype, l3) = match link {
        Link::Ethernet => {
            let mut at = 12;
            let mut et = be16(frame, at)?;
            // Up to two tags (802.1Q, QinQ); the kernel usually strips the
            // outer one into metadata, a capture file may keep both.
            for _ in 0..2 {
                if !is_vlan(et) {
                    break;
                }
                at += 4;
                et = be16(frame, at)?;
            }
            (et, at + 2)
        }
        Link::Raw => match frame.first()? >> 4 {
            4 => (ETH_IPV4, 0),
            6 => (ETH_IPV6, 0),
            _ => return None,
        },
        Link::LinuxSll => {
            outgoing = be16(frame, 0)? == PACKET_OUTGOING;
            (be16(frame, 14)?, 16)
        }
        Link::LinuxSll2 => {
            outgoing = u16::from(*frame.get(10)?) == PACKET_OUTGOING;
            (be16(frame, 0)?, 20)
        }
    };
    Some((ethertype, frame.get(l3..)?, outgoing))
}

fn ipv4(ip: &[u8]) -> Option<Net<'_>> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    // Only the first fragment carries the ports.
    if be16(ip, 6)? & 0x1fff != 0 {
        return None;
    }
    let src = Addr::v4(ip[12..16].try_into().ok()?);
    let dst = Addr::v4(ip[16..20].try_into().ok()?);
    Some(Net {
        src,
        dst,
        proto: ip[9],
        l4: &ip[ihl..],
        l4_len: usize::from(be16(ip, 2)?).saturating_sub(ihl),
    })
}

fn ipv6(ip: &[u8]) -> Option<Net<'_>> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let src = Addr::v6(ip[8..24].try_into().ok()?);
    let dst = Addr::v6(ip[24..40].try_into().ok()?);
    let mut next = ip[6];
    let mut at = 40;
    // Walk the extension headers (hop-by-hop, routing, fragment,
    // destination): up to eight, more than any sender needs, so that a
    // chain of them hides no probe.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let len = (usize::from(*ip.get(at + 1)?) + 1) * 8;
                next = *ip.get(at)?;
                at += len;
            }
            44 => {
                if be16(ip, at + 2)? & 0xfff8 != 0 {
                    return None;
                }
                next = *ip.get(at)?;
                at += 8;
            }
            _ => break,
        }
    }
    Some(Net {
        src,
        dst,
        proto: next,
        l4: ip.get(at..)?,
        l4_len: (40 + usize::from(be16(ip, 4)?)).saturating_sub(at),
    })
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;

/// Classify TCP flags; `None` for what is not a probe (ACK or RST set).
pub fn classify(flags: u8) -> Option<Kind> {
    if flags & (ACK | RST) != 0 {
        return None;
    }
    // ECE and CWR (0xc0) ride along with ECN-capable SYNs; ignore them.
    let f = flags & 0x3f;
    Some(match f {
        SYN => Kind::Syn,
        FIN => Kind::Fin,
        0 => Kind::Null,
        x if x == FIN | PSH | URG => Kind::Xmas,
        _ => Kind::Odd,
    })
}

fn transport(proto: u8, l4: &[u8], src: Addr, dst: Addr) -> Option<Probe> {
    let sport = be16(l4, 0)?;
    let dport = be16(l4, 2)?;
    let kind = match proto {
        6 => classify(*l4.get(13)?)?,
        17 => Kind::Udp,
        _ => return None,
    };
    Some(Probe {
        src,
        dst,
        sport,
        dport,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addrs_are_one_integer_and_give_their_ip_back() {
        for text in ["198.51.100.7", "0.0.0.0", "2001:db8::7", "::", "::1"] {
            let ip: IpAddr = text.parse().unwrap();
            let a = Addr::from(ip);
            assert_eq!((a.ip(), a.is_v4()), (ip, ip.is_ipv4()), "{text}");
            assert_eq!(text.parse::<Addr>(), Ok(a));
        }
        assert_eq!(Addr::v4([198, 51, 100, 7]).0, 0xffff_c633_6407);
        // A mapped IPv6 address is the IPv4 one.
        let mapped: Addr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(mapped, Addr::v4([198, 51, 100, 7]));
        assert_eq!(mapped.ip(), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn flags_classify_like_nmap_scan_types() {
        assert_eq!(classify(SYN), Some(Kind::Syn));
        assert_eq!(classify(SYN | 0xc0), Some(Kind::Syn));
        assert_eq!(classify(FIN), Some(Kind::Fin));
        assert_eq!(classify(0), Some(Kind::Null));
        assert_eq!(classify(FIN | PSH | URG), Some(Kind::Xmas));
        assert_eq!(classify(SYN | FIN), Some(Kind::Odd));
        assert_eq!(classify(SYN | ACK), None);
        assert_eq!(classify(FIN | ACK), None);
        assert_eq!(classify(RST), None);
        assert_eq!(classify(ACK), None);
    }

    #[test]
    fn kinds_label_and_nmap() {
        let mut k = Kinds::default();
        assert_eq!(k.label(), "none");
        k.add(Kind::Fin);
        assert_eq!((k.label(), k.nmap().as_str()), ("FIN", "-sF"));
        k.add(Kind::Udp);
        assert_eq!((k.label(), k.nmap().as_str()), ("mixed", "-sF -sU"));
    }

    /// A raw IPv4 SYN from 203.0.113.5:4000 to 198.51.100.1:22.
    fn syn() -> Vec<u8> {
        let mut f = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0];
        f.extend_from_slice(&[203, 0, 113, 5, 198, 51, 100, 1]);
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&22u16.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, SYN, 4, 0, 0, 0, 0, 0]);
        f
    }

    #[test]
    fn garbage_and_short_frames_are_not_probes() {
        // Bytes that follow no header layout are never a probe, on any link.
        for len in 0..80 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            for link in [Link::Ethernet, Link::Raw, Link::LinuxSll, Link::LinuxSll2] {
                assert_eq!(parse(link, &junk), None, "{link:?}, {len} bytes");
            }
        }
        // A real SYN is one, and every cut of it short of its flags byte is not.
        let f = syn();
        let p = parse(Link::Raw, &f).unwrap();
        assert_eq!((p.sport, p.dport, p.kind), (4000, 22, Kind::Syn));
        for len in 0..34 {
            assert_eq!(parse(Link::Raw, &f[..len]), None, "{len} bytes");
        }
        assert_eq!(parse(Link::Raw, &f[..34]), Some(p));
        // An IPv4 header claiming more than the frame holds is not read.
        let mut bad = f.clone();
        bad[0] = 0x4f;
        assert_eq!(parse(Link::Raw, &bad[..40]), None);
    }

    /// `source` (what warm prefetches for) agrees with `parse` wherever a
    /// frame is a probe, and never panics on junk or a cut frame.
    #[test]
    fn source_agrees_with_parse() {
        let f = syn();
        assert_eq!(source(Link::Raw, &f), parse(Link::Raw, &f).map(|p| p.src));
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&f);
        assert_eq!(
            source(Link::Ethernet, &eth),
            Some(parse(Link::Raw, &f).unwrap().src)
        );
        for len in 0..eth.len() {
            let s = source(Link::Ethernet, &eth[..len]);
            assert!(s.is_none() || len >= 14 + 16, "{len} bytes: {s:?}");
        }
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        let a: Ipv6Addr = "2001:db8::66".parse().unwrap();
        v6[8..24].copy_from_slice(&a.octets());
        assert_eq!(source(Link::Raw, &v6), Some(Addr::from(IpAddr::V6(a))));
        assert_eq!(source(Link::Raw, &v6[..23]), None);
        for len in 0..80 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            for link in [Link::Ethernet, Link::Raw, Link::LinuxSll, Link::LinuxSll2] {
                let _ = source(link, &junk);
            }
        }
    }
}
