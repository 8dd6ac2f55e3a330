//! Frame parsing (pure): from the bytes of one captured frame to the probe it
//! carries, if any. A probe is a TCP segment without ACK or RST (SYN, FIN,
//! NULL, XMAS and other odd flag sets: what opens a connection or what port
//! scanners send), a UDP datagram, an SCTP INIT or COOKIE-ECHO, or a packet
//! of a protocol no bulk traffic uses (nmap -sO). Everything else (replies,
//! established traffic, ICMP, later fragments) is `None`. ACK-flagged probes
//! come only from the kernel's conntrack (NFLOG frames, `Link::Nflog`): it
//! alone knows which connections exist. TCP fragments are `fragment`'s.

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
    /// A bare ACK to no connection (conntrack's word): -sA and -sW send
    /// the same probe, so which one it was cannot be told.
    Ack = 6,
    /// FIN+ACK to no connection: -sM (Maimon).
    Maimon = 7,
    /// SCTP INIT (-sY), COOKIE-ECHO (-sZ).
    SctpInit = 8,
    SctpCookie = 9,
    /// A packet of an IP protocol that no bulk traffic uses (-sO): its
    /// "port" is the protocol number.
    Proto = 10,
    /// A TCP first fragment too short to hold the flags (RFC 1858's tiny
    /// fragment, nmap -f): no stack sends one, so it is a scan on its own.
    Frag = 11,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Syn,
        Kind::Fin,
        Kind::Null,
        Kind::Xmas,
        Kind::Odd,
        Kind::Udp,
        Kind::Ack,
        Kind::Maimon,
        Kind::SctpInit,
        Kind::SctpCookie,
        Kind::Proto,
        Kind::Frag,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Syn => "SYN",
            Kind::Fin => "FIN",
            Kind::Null => "NULL",
            Kind::Xmas => "XMAS",
            Kind::Odd => "ODD-FLAGS",
            Kind::Udp => "UDP",
            Kind::Ack => "ACK",
            Kind::Maimon => "MAIMON",
            Kind::SctpInit => "SCTP-INIT",
            Kind::SctpCookie => "SCTP-COOKIE-ECHO",
            Kind::Proto => "IP-PROTOCOL",
            Kind::Frag => "TINY-FRAGMENT",
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
            Kind::Ack => "-sA/-sW",
            Kind::Maimon => "-sM",
            Kind::SctpInit => "-sY",
            Kind::SctpCookie => "-sZ",
            Kind::Proto => "-sO",
            Kind::Frag => "-f",
        }
    }

    pub fn is_udp(self) -> bool {
        self == Kind::Udp
    }

    /// Which numbers its "port" is one of: TCP ports, UDP ports, SCTP
    /// ports, IP protocol numbers (the detector counts each apart).
    pub fn space(self) -> u8 {
        match self {
            Kind::Udp => SPACE_UDP,
            Kind::SctpInit | Kind::SctpCookie => SPACE_SCTP,
            Kind::Proto => SPACE_PROTO,
            _ => SPACE_TCP,
        }
    }

    pub fn from_index(i: u8) -> Kind {
        Kind::ALL[usize::from(i) % Kind::ALL.len()]
    }
}

pub const SPACE_TCP: u8 = 0;
pub const SPACE_UDP: u8 = 1;
pub const SPACE_SCTP: u8 = 2;
pub const SPACE_PROTO: u8 = 3;

/// A set of kinds, as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kinds(pub u16);

impl Kinds {
    pub fn add(&mut self, k: Kind) {
        self.0 |= 1 << k as u8;
    }

    pub fn of(k: Kind) -> Kinds {
        Kinds(1 << k as u8)
    }

    pub fn has(self, k: Kind) -> bool {
        self.0 & (1 << k as u8) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL
            .into_iter()
            .filter(move |k| self.0 & (1 << *k as u8) != 0)
    }

    /// "SYN", "UDP", ... or "mixed" when more than one kind was seen. A
    /// protocol scan (-sO) sends real TCP, UDP and SCTP headers among its
    /// other protocols: with any unusual protocol, it is that.
    pub fn label(self) -> &'static str {
        if self.has(Kind::Proto) {
            return Kind::Proto.name();
        }
        let mut it = self.iter();
        match (it.next(), it.next()) {
            (Some(k), None) => k.name(),
            (None, _) => "none",
            _ => "mixed",
        }
    }

    /// The nmap options that would produce this mix, e.g. "-sS" or "-sS -sU".
    pub fn nmap(self) -> String {
        if self.has(Kind::Proto) {
            return Kind::Proto.nmap().to_string();
        }
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
    /// An NFLOG message (LINKTYPE_NFLOG 239, or what capture reads from its
    /// NFLOG group): a packet the kernel's conntrack handed over because
    /// it belongs to no connection (`apply`'s rule), as raw IP in TLVs.
    Nflog,
}

impl Link {
    /// From a pcap link type number.
    pub fn from_linktype(n: i32) -> Option<Link> {
        match n {
            1 => Some(Link::Ethernet),
            101 | 228 | 229 | 12 | 14 => Some(Link::Raw),
            113 => Some(Link::LinuxSll),
            276 => Some(Link::LinuxSll2),
            239 => Some(Link::Nflog),
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
    if link == Link::Nflog {
        return conntracked(&n);
    }
    transport(&n)
}

/// A TCP fragment: what capture needs to put a tiny first fragment and the
/// fragment holding its flags back together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub src: Addr,
    pub dst: Addr,
    /// The IP identification (IPv4: 16 bits; IPv6: the fragment header's 32).
    pub id: u32,
    /// Where this fragment's bytes start in the TCP segment.
    pub offset: usize,
    /// The fragment's TCP bytes (as far as the IP length says and the
    /// capture holds).
    pub l4: &'a [u8],
}

/// The TCP fragment a frame carries, if it is one (first or later).
pub fn fragment(link: Link, frame: &[u8]) -> Option<Fragment<'_>> {
    let (ethertype, ip, outgoing) = layer3(link, frame)?;
    if outgoing || link == Link::Nflog {
        return None;
    }
    let (src, dst, id, offset, more, proto, l4, len) = match ethertype {
        ETH_IPV4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
                return None;
            }
            let fo = be16(ip, 6)?;
            (
                Addr::v4(ip[12..16].try_into().ok()?),
                Addr::v4(ip[16..20].try_into().ok()?),
                u32::from(be16(ip, 4)?),
                usize::from(fo & 0x1fff) * 8,
                fo & 0x2000 != 0,
                ip[9],
                &ip[ihl..],
                usize::from(be16(ip, 2)?).saturating_sub(ihl),
            )
        }
        ETH_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let (mut next, mut at) = (ip[6], 40);
            // The headers before the fragment header (hop-by-hop, routing,
            // destination), as `ipv6` walks them.
            for _ in 0..8 {
                if !matches!(next, 0 | 43 | 60) {
                    break;
                }
                next = *ip.get(at)?;
                at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
            }
            if next != 44 {
                return None;
            }
            let fo = be16(ip, at + 2)?;
            let id = u32::from_be_bytes(ip.get(at + 4..at + 8)?.try_into().ok()?);
            (
                Addr::v6(ip[8..24].try_into().ok()?),
                Addr::v6(ip[24..40].try_into().ok()?),
                id,
                usize::from(fo & 0xfff8),
                fo & 1 != 0,
                *ip.get(at)?,
                ip.get(at + 8..)?,
                (40 + usize::from(be16(ip, 4)?)).saturating_sub(at + 8),
            )
        }
        _ => return None,
    };
    if proto != 6 || (offset == 0 && !more) {
        return None;
    }
    Some(Fragment {
        src,
        dst,
        id,
        offset,
        l4: &l4[..l4.len().min(len)],
    })
}

/// The fewest TCP bytes a first fragment holds for its flags to be in it.
pub const FLAGS_END: usize = 14;

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
        Link::Nflog => return nflog_payload(frame),
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

/// The NFLOG header (family, version, resource id) and its TLVs, each a
/// length and a type in the host's byte order (little-endian here, as
/// netlink and libpcap's LINKTYPE_NFLOG write them), padded to 4 bytes:
/// the IP bytes are the NFULA_PAYLOAD one.
fn nflog_payload(frame: &[u8]) -> Option<(u16, &[u8], bool)> {
    const NFULA_PAYLOAD: u16 = 9;
    let ethertype = match *frame.first()? {
        2 => ETH_IPV4,
        10 => ETH_IPV6,
        _ => return None,
    };
    let mut at = 4;
    // A bounded walk: a message has a dozen attributes at most.
    for _ in 0..32 {
        let len = usize::from(u16::from_le_bytes(frame.get(at..at + 2)?.try_into().ok()?));
        let kind = u16::from_le_bytes(frame.get(at + 2..at + 4)?.try_into().ok()?) & 0x7fff;
        if len < 4 {
            return None;
        }
        if kind == NFULA_PAYLOAD {
            return Some((ethertype, frame.get(at + 4..at + len)?, false));
        }
        at += (len + 3) & !3;
    }
    None
}

/// Protocols whose every packet is ordinary (ICMP, IGMP, tunnels, IPsec,
/// OSPF, PIM, VRRP): never an -sO probe, and the kernel filter drops them.
pub fn bulk_protocol(p: u8) -> bool {
    matches!(p, 1 | 2 | 4 | 41 | 47 | 50 | 51 | 58 | 89 | 103 | 112)
}

/// The transport bytes the IP header says there are (a capture cut
/// shorter gives what it holds; a length of 0, as a GRO super-packet may
/// carry, leaves them whole).
fn bounded<'a>(n: &Net<'a>) -> &'a [u8] {
    if n.l4_len == 0 {
        n.l4
    } else {
        &n.l4[..n.l4.len().min(n.l4_len)]
    }
}

fn transport(n: &Net<'_>) -> Option<Probe> {
    let l4 = bounded(n);
    let kind = match n.proto {
        6 => classify(*l4.get(13)?)?,
        17 => Kind::Udp,
        132 => match *l4.get(12)? {
            1 => Kind::SctpInit,
            10 => Kind::SctpCookie,
            _ => return None,
        },
        p if bulk_protocol(p) => return None,
        p => {
            return Some(Probe {
                src: n.src,
                dst: n.dst,
                sport: 0,
                dport: u16::from(p),
                kind: Kind::Proto,
            })
        }
    };
    Some(Probe {
        src: n.src,
        dst: n.dst,
        sport: be16(l4, 0)?,
        dport: be16(l4, 2)?,
        kind,
    })
}

/// A TCP segment conntrack handed over as belonging to no connection
/// (NFLOG): the ACK-flagged probes, which only it can tell from a
/// connection's traffic. Without ACK, or with SYN or RST (a SYN-ACK or RST
/// answering someone who forged this host's address), it is not one:
/// the packet socket sees the others.
fn conntracked(n: &Net<'_>) -> Option<Probe> {
    if n.proto != 6 {
        return None;
    }
    let l4 = bounded(n);
    let flags = *l4.get(13)?;
    if flags & ACK == 0 || flags & (SYN | RST) != 0 {
        return None;
    }
    let kind = match flags & 0x3f & !PSH {
        ACK => Kind::Ack,
        x if x == ACK | FIN => Kind::Maimon,
        _ => Kind::Odd,
    };
    Some(Probe {
        src: n.src,
        dst: n.dst,
        sport: be16(l4, 0)?,
        dport: be16(l4, 2)?,
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

    /// A raw IPv4 packet of protocol `proto` from 203.0.113.5 to
    /// 198.51.100.1 carrying `l4`.
    fn ip4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = (20 + l4.len()) as u16;
        let mut f = vec![0x45, 0];
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0, 203, 0, 113, 5, 198, 51, 100, 1]);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn sctp_init_and_cookie_echo_and_unusual_protocols_are_probes() {
        let sctp = |chunk: u8| {
            let mut l4 = vec![
                0x9c, 0x40, 0x03, 0xe8, 0, 0, 0, 0, 0, 0, 0, 0, chunk, 0, 0, 20,
            ];
            l4.extend_from_slice(&[0; 16]);
            parse(Link::Raw, &ip4(132, &l4)).map(|p| (p.kind, p.dport))
        };
        assert_eq!(sctp(1), Some((Kind::SctpInit, 1000)));
        assert_eq!(sctp(10), Some((Kind::SctpCookie, 1000)));
        assert_eq!(sctp(0), None, "DATA: an association's traffic");
        let p = parse(Link::Raw, &ip4(77, &[])).unwrap();
        assert_eq!(
            (p.kind, p.dport, p.kind.space()),
            (Kind::Proto, 77, SPACE_PROTO)
        );
        for bulk in [1, 2, 4, 41, 47, 50, 51, 58, 89, 103, 112] {
            assert_eq!(parse(Link::Raw, &ip4(bulk, &[0; 8])), None, "{bulk}");
        }
        // Kinds with an unusual protocol are a protocol scan, whatever
        // real headers it sent among them.
        let mut k = Kinds::of(Kind::SctpInit);
        k.add(Kind::Proto);
        assert_eq!((k.label(), k.nmap().as_str()), ("IP-PROTOCOL", "-sO"));
    }

    #[test]
    fn a_tiny_first_fragment_is_no_probe_but_a_fragment_and_ipv6_too() {
        // 8 bytes of TCP: ports and sequence number, no flags.
        let tiny = {
            let mut f = ip4(6, &[0x0f, 0xa0, 0, 22, 0, 0, 0, 1]);
            f[6] = 0x20; // more fragments
            f
        };
        assert_eq!(parse(Link::Raw, &tiny), None);
        // Frame padding past the IP length is not read as the flags.
        let mut padded = tiny.clone();
        padded.extend_from_slice(&[0; 18]);
        padded[20 + 13] = SYN;
        assert_eq!(parse(Link::Raw, &padded), None);
        let f = fragment(Link::Raw, &tiny).unwrap();
        assert_eq!((f.offset, f.l4.len(), f.id), (0, 8, 0));
        let f = fragment(Link::Raw, &padded).unwrap();
        assert_eq!(f.l4.len(), 8);
        // Not a fragment: a whole packet.
        assert_eq!(fragment(Link::Raw, &syn()), None);
        // IPv6: a fragment header (id 0x01020304) at byte 8 of TCP.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        v6.extend_from_slice(&"2001:db8::5".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[6, 0, 0, 9, 1, 2, 3, 4]);
        v6.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 4, 0]);
        let f = fragment(Link::Raw, &v6).unwrap();
        assert_eq!((f.offset, f.id, f.l4[5]), (8, 0x0102_0304, 0x02));
        assert_eq!(parse(Link::Raw, &v6), None);
    }

    #[test]
    fn an_nflog_message_gives_its_payload_and_only_ack_probes() {
        let msg = |flags: u8| {
            let mut l4 = vec![
                0x9c, 0x40, 0x03, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, flags, 4, 0,
            ];
            l4.extend_from_slice(&[0; 4]);
            let ip = ip4(6, &l4);
            let mut m = vec![2, 0, 0, 33];
            m.extend_from_slice(&((4 + ip.len()) as u16).to_le_bytes());
            m.extend_from_slice(&9u16.to_le_bytes());
            m.extend_from_slice(&ip);
            m
        };
        let kind = |flags| parse(Link::Nflog, &msg(flags)).map(|p| p.kind);
        assert_eq!(kind(ACK), Some(Kind::Ack));
        assert_eq!(kind(ACK | PSH), Some(Kind::Ack));
        assert_eq!(kind(ACK | FIN), Some(Kind::Maimon));
        assert_eq!(kind(ACK | URG), Some(Kind::Odd));
        for no in [SYN, SYN | ACK, RST, RST | ACK, FIN, 0] {
            assert_eq!(kind(no), None, "{no:#x}");
        }
        assert_eq!(
            source(Link::Nflog, &msg(ACK)),
            Some(Addr::v4([203, 0, 113, 5]))
        );
        // A message cut anywhere, or with a zero-length attribute, is none.
        let m = msg(ACK);
        for len in 0..m.len() {
            assert_eq!(parse(Link::Nflog, &m[..len]), None, "{len}");
        }
        assert_eq!(parse(Link::Nflog, &[2, 0, 0, 33, 0, 0, 9, 0]), None);
        assert_eq!(Link::from_linktype(239), Some(Link::Nflog));
    }
}
