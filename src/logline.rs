//! Parsing the kernel's LOG lines as rsyslog writes them (pure, no allocation
//! per line). Groundwork for `fwctl scan`: a line becomes a [`Hit`] (time,
//! rule prefix, source, protocol, destination port), is recognised as some
//! other program's line, or is reported malformed; it never panics and never
//! yields a wrong address.
//!
//! Two timestamp forms: RFC 3339 (`2026-11-21T10:00:01.123456+00:00`, what
//! Debian 12's rsyslog writes with RSYSLOG_FileFormat) and the traditional
//! `Nov 21 10:00:01` (local time, no year: the caller supplies the offset and
//! a reference time, and the year is the one that puts the line at or before
//! the reference, so a log spanning New Year comes out right).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Other(u8),
}

impl Proto {
    fn parse(s: &[u8]) -> Option<Proto> {
        Some(match s {
            b"TCP" => Proto::Tcp,
            b"UDP" => Proto::Udp,
            b"ICMP" => Proto::Icmp,
            b"ICMPv6" => Proto::Icmpv6,
            _ => match std::str::from_utf8(s).ok()?.parse::<u8>().ok()? {
                6 => Proto::Tcp,
                17 => Proto::Udp,
                1 => Proto::Icmp,
                58 => Proto::Icmpv6,
                n => Proto::Other(n),
            },
        })
    }
}

/// One fwctl LOG line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Seconds since the Unix epoch (UTC).
    pub time: i64,
    /// Index into the prefixes the caller asked for.
    pub prefix: usize,
    pub src: IpAddr,
    pub proto: Proto,
    /// Destination port (TCP/UDP only).
    pub dport: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Hit(Hit),
    /// Not a line of any wanted prefix (another program, another rule).
    Other,
    /// Has a wanted prefix but cannot be read: counted and reported.
    Malformed(&'static str),
}

/// How to read traditional (yearless, local-time) timestamps.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The moment the log is read "as of" (seconds since the epoch, UTC).
    pub now: i64,
    /// Local time minus UTC, in seconds, for traditional timestamps.
    pub utc_offset: i64,
}

pub fn parse(line: &[u8], prefixes: &[&[u8]], clock: &Clock) -> Line {
    // Find the prefix first: most lines of a busy log are ours, but a cheap
    // rejection of other programs' lines matters just as much.
    let Some((prefix, at)) = find_prefix(line, prefixes) else {
        return Line::Other;
    };
    let Some(time) = timestamp(line, clock) else {
        return Line::Malformed("unreadable timestamp");
    };
    let fields = &line[at + prefixes[prefix].len()..];
    // ICMP errors quote the offending packet in brackets with its own SRC=:
    // only the part before the bracket describes the sender.
    let fields = match fields.iter().position(|&b| b == b'[') {
        Some(i) => &fields[..i],
        None => fields,
    };
    let Some(src) = field(fields, b"SRC=") else {
        return Line::Malformed("no SRC= field (truncated line?)");
    };
    let Some(src) = parse_addr(src) else {
        return Line::Malformed("SRC= is not an IP address");
    };
    let Some(proto) = field(fields, b"PROTO=").and_then(Proto::parse) else {
        return Line::Malformed("no readable PROTO= field");
    };
    let dport = match proto {
        Proto::Tcp | Proto::Udp => match field(fields, b"DPT=").map(parse_u16) {
            Some(Some(p)) => Some(p),
            // A fragment has no ports; anything else without DPT= is cut short.
            _ if find(fields, b" FRAG:").is_some() || find(fields, b"MF ").is_some() => None,
            _ => return Line::Malformed("TCP/UDP line without a readable DPT="),
        },
        _ => None,
    };
    Line::Hit(Hit {
        time,
        prefix,
        src,
        proto,
        dport,
    })
}

fn find_prefix(line: &[u8], prefixes: &[&[u8]]) -> Option<(usize, usize)> {
    // The kernel message starts after "kernel: " and an optional "[uptime] ".
    let start = find(line, b" kernel: ")? + 9;
    let mut msg = &line[start..];
    let mut at = start;
    if msg.first() == Some(&b'[') {
        let close = msg.iter().position(|&b| b == b']')?;
        let skip = close + 1 + usize::from(msg.get(close + 1) == Some(&b' '));
        msg = &msg[skip..];
        at += skip;
    }
    prefixes
        .iter()
        .position(|p| msg.starts_with(p))
        .map(|i| (i, at))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of ` KEY=` (or KEY= at the start), up to the next space.
fn field<'a>(fields: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(i) = find(&fields[from..], key) {
        let i = from + i;
        if i == 0 || fields[i - 1] == b' ' {
            let rest = &fields[i + key.len()..];
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
        from = i + 1;
    }
    None
}

fn parse_u16(s: &[u8]) -> Option<u16> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// IPv4, or IPv6 in the kernel's full form; IPv4-mapped IPv6 becomes IPv4.
pub fn parse_addr(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?;
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    let v6 = s.parse::<Ipv6Addr>().ok()?;
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')))
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn timestamp(line: &[u8], clock: &Clock) -> Option<i64> {
    if line.len() >= 19 && line[4] == b'-' && line[10] == b'T' {
        return rfc3339(line);
    }
    traditional(line, clock)
}

fn hms(s: &[u8]) -> Option<i64> {
    if s.len() < 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&s[0..2])?, digits(&s[3..5])?, digits(&s[6..8])?);
    (h < 24 && m < 60 && sec < 61).then_some(h * 3600 + m * 60 + sec)
}

fn rfc3339(line: &[u8]) -> Option<i64> {
    let (y, mo, d) = (
        digits(&line[0..4])?,
        digits(&line[5..7])?,
        digits(&line[8..10])?,
    );
    if line[7] != b'-' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let secs = hms(&line[11..19])?;
    // Skip fractional seconds, then read the zone.
    let mut i = 19;
    if line.get(i) == Some(&b'.') {
        i += 1;
        while line.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match line.get(i)? {
        b'Z' => 0,
        &sign @ (b'+' | b'-') => {
            let z = line.get(i + 1..i + 6)?;
            if z[2] != b':' {
                return None;
            }
            let o = digits(&z[0..2])? * 3600 + digits(&z[3..5])? * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + secs - offset)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn traditional(line: &[u8], clock: &Clock) -> Option<i64> {
    // "Nov 21 10:00:01" or "Nov  1 10:00:01"
    if line.len() < 15 || line[3] != b' ' {
        return None;
    }
    let mo = MONTHS.iter().position(|m| &line[0..3] == *m)? as i64 + 1;
    let d = digits(line[4..6].trim_ascii_start())?;
    if line[6] != b' ' || !(1..=31).contains(&d) {
        return None;
    }
    let secs = hms(&line[7..15])?;
    let local_now = clock.now + clock.utc_offset;
    let year_now = civil_year(local_now.div_euclid(86_400));
    // The year that puts the line at or before now (allowing a day of clock
    // skew): a December line read in January belongs to last year.
    [year_now + 1, year_now, year_now - 1]
        .into_iter()
        .map(|y| days_from_civil(y, mo, d) * 86_400 + secs - clock.utc_offset)
        .find(|&t| t <= clock.now + 86_400)
}

fn civil_year(days: i64) -> i64 {
    // Inverse of days_from_civil, year only.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: [&[u8]; 2] = [b"IPTABLES-BLOCKED: ", b"IP6TABLES-BLOCKED: "];
    // 2026-11-21T12:00:00Z
    const CLOCK: Clock = Clock {
        now: 1_795_262_400,
        utc_offset: 0,
    };

    /// Every prefix in the shared samples.
    const ALL: [&[u8]; 3] = [
        b"IPTABLES-BLOCKED: ",
        b"IP6TABLES-BLOCKED: ",
        b"IPTABLES-ALLOWED: ",
    ];

    fn hit(line: &str) -> Hit {
        match parse(line.as_bytes(), &ALL, &CLOCK) {
            Line::Hit(h) => h,
            other => panic!("{other:?} for {line}"),
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2026, 11, 21) * 86_400 + 12 * 3600,
            CLOCK.now
        );
        assert_eq!(civil_year(days_from_civil(2024, 2, 29)), 2024);
        assert_eq!(civil_year(days_from_civil(2025, 12, 31)), 2025);
        assert_eq!(civil_year(days_from_civil(2026, 1, 1)), 2026);
    }

    #[test]
    fn shared_rfc3339_samples() {
        let text = include_str!("../tests/data/iptables-rfc3339.log");
        let hits: Vec<Hit> = text.lines().map(hit).collect();
        assert_eq!(hits.len(), text.lines().count());
        let h = hits[0];
        assert_eq!(h.time, days_from_civil(2026, 11, 21) * 86_400 + 36_001);
        assert_eq!(h.src, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!((h.proto, h.dport), (Proto::Udp, Some(123)));
        // The ICMP port-unreachable is sent by 192.0.2.1; the quoted packet's SRC is not the sender.
        let icmp_err = hits
            .iter()
            .find(|h| h.src == "192.0.2.1".parse::<IpAddr>().unwrap())
            .unwrap();
        assert_eq!((icmp_err.proto, icmp_err.dport), (Proto::Icmp, None));
        let v6 = hits.iter().find(|h| h.prefix == 1).unwrap();
        assert_eq!(v6.src, "2001:db8:5::2".parse::<IpAddr>().unwrap());
        assert_eq!((v6.proto, v6.dport), (Proto::Tcp, Some(443)));
    }

    #[test]
    fn shared_bsd_samples_match_rfc3339() {
        let a = include_str!("../tests/data/iptables-rfc3339.log");
        let b = include_str!("../tests/data/iptables-bsd.log");
        for (x, y) in a.lines().zip(b.lines()) {
            let (x, y) = (hit(x), hit(y));
            assert_eq!(
                (x.src, x.proto, x.dport, x.prefix),
                (y.src, y.proto, y.dport, y.prefix)
            );
            assert_eq!(x.time, y.time, "same second");
        }
    }

    #[test]
    fn traditional_year_is_inferred_across_new_year() {
        let jan2 = Clock {
            now: days_from_civil(2027, 1, 2) * 86_400,
            utc_offset: 3600,
        };
        let l = |d: &str| {
            format!("{d} host kernel: IPTABLES-BLOCKED: IN=e SRC=192.0.2.2 DST=192.0.2.1 PROTO=TCP SPT=1 DPT=2 SYN ")
        };
        let Line::Hit(dec) = parse(l("Dec 31 23:59:59").as_bytes(), &P, &jan2) else {
            panic!()
        };
        assert_eq!(
            dec.time,
            days_from_civil(2026, 12, 31) * 86_400 + 86_399 - 3600
        );
        let Line::Hit(jan) = parse(l("Jan  1 00:00:01").as_bytes(), &P, &jan2) else {
            panic!()
        };
        assert_eq!(jan.time, days_from_civil(2027, 1, 1) * 86_400 + 1 - 3600);
    }

    #[test]
    fn uptime_is_optional_and_proto_may_be_numeric() {
        let h = hit("2026-11-21T10:00:01+01:00 host kernel: IPTABLES-BLOCKED: IN=e OUT= SRC=::ffff:192.0.2.9 DST=192.0.2.1 LEN=40 PROTO=6 SPT=1 DPT=22 SYN URGP=0 ");
        assert_eq!(h.src, "192.0.2.9".parse::<IpAddr>().unwrap());
        assert_eq!((h.proto, h.dport), (Proto::Tcp, Some(22)));
        assert_eq!(
            h.time,
            days_from_civil(2026, 11, 21) * 86_400 + 9 * 3600 + 1
        );
        let h = hit("2026-11-21T10:00:01Z host kernel: IPTABLES-BLOCKED: SRC=192.0.2.9 DST=192.0.2.1 PROTO=47 ");
        assert_eq!(h.proto, Proto::Other(47));
    }

    #[test]
    fn other_and_malformed_lines() {
        let other = [
            "2026-11-21T10:00:01Z host sshd[1]: Accepted publickey for root",
            "2026-11-21T10:00:01Z host kernel: IPTABLES-ALLOWED: SRC=192.0.2.2 PROTO=TCP DPT=22",
            "",
            "garbage",
        ];
        for l in other {
            assert_eq!(parse(l.as_bytes(), &P, &CLOCK), Line::Other, "{l}");
        }
        let bad = [
            "2026-11-21T10:00:01Z host kernel: [ 1.0] IPTABLES-BLOCKED: IN=eth0 OUT= MAC=00:",
            "2026-11-21T10:00:01Z host kernel: IPTABLES-BLOCKED: SRC=192.0.2.300 PROTO=TCP DPT=1",
            "2026-11-21T10:00:01Z host kernel: IPTABLES-BLOCKED: SRC=192.0.2.3 DST=192.0.2.1 PROTO=TCP SPT=5",
            "2026-13-21T10:00:01Z host kernel: IPTABLES-BLOCKED: SRC=192.0.2.3 PROTO=UDP DPT=1",
            "Foo 21 10:00:01 host kernel: IPTABLES-BLOCKED: SRC=192.0.2.3 PROTO=UDP DPT=1",
        ];
        for l in bad {
            assert!(
                matches!(parse(l.as_bytes(), &P, &CLOCK), Line::Malformed(_)),
                "{l}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every truncation and many byte flips of real lines, plus random bytes
        // (xorshift: deterministic, so a failure reproduces).
        let samples = include_str!("../tests/data/iptables-rfc3339.log");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for line in samples
            .lines()
            .chain(include_str!("../tests/data/iptables-bsd.log").lines())
        {
            let b = line.as_bytes();
            for cut in 0..=b.len() {
                let _ = parse(&b[..cut], &P, &CLOCK);
            }
            for _ in 0..2000 {
                let mut m = b.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                if let Line::Hit(h) = parse(&m, &P, &CLOCK) {
                    // A hit's source is always an address that was in the line.
                    let s = h.src.to_string();
                    assert!(
                        std::str::from_utf8(&m).map_or(true, |t| t.contains("SRC=")),
                        "{s}"
                    );
                }
            }
        }
        for _ in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                m.splice(
                    0..0,
                    b"2026-11-21T10:00:01Z h kernel: IPTABLES-BLOCKED: "
                        .iter()
                        .copied(),
                );
            }
            let _ = parse(&m, &P, &CLOCK);
        }
    }
}
