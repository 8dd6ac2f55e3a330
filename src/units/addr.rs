//! Addresses and networks: the two families, parsing what people and feeds
//! write, the form ipset prints members in, and the addresses that can never
//! be anyone's source (loopback, multicast, ...).

use super::Invalid;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn is_v6(self) -> bool {
        self == Family::V6
    }

    /// ipset's name of the family.
    pub fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// "IPv4" or "IPv6", for people.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// `::ffff:a.b.c.d` is an IPv4 address in IPv6 clothing: the kernel sees
/// IPv4, so fwctl treats it as IPv4 everywhere (a /96 or longer prefix maps
/// to the IPv4 prefix).
pub fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) => match n.addr().to_ipv4_mapped() {
            Some(v4) if n.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), n.prefix_len() - 96).expect("prefix fits")
            }
            _ => net,
        },
        v4 => v4,
    }
}

/// Parse one IP or CIDR entry of a config or feed. Host bits are an error in
/// the config itself (a likely typo) but are masked in feeds, which are
/// written by other people.
pub fn parse_net(s: &str, mask_host_bits: bool) -> Result<IpNet, Invalid> {
    let fix =
        "fix: write an address or network such as 192.0.2.1, 198.51.100.0/24 or 2001:db8::/32";
    // A bare address (most lines of a 100 000-entry feed) is parsed as
    // one, not first tried as a network and failed.
    let parsed = match s.contains('/') {
        true => s.parse::<IpNet>(),
        false => s.parse::<IpAddr>().map(IpNet::from).or_else(|_| s.parse()),
    };
    let net = match parsed {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(Invalid(format!(
                    "\"{s}\" is not an IP address or CIDR network; {fix}"
                )))
            }
        },
    };
    let net = unmap(net);
    if net.prefix_len() == 0 {
        return Err(Invalid(format!(
            "\"{s}\" covers every address; an ipset hash:net cannot hold a /0, and it would match everyone"
        )));
    }
    if net.trunc() != net {
        if mask_host_bits {
            return Ok(net.trunc());
        }
        return Err(Invalid(format!(
            "\"{s}\" has host bits set; fix: did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// An address or network typed by the admin: `203.0.113.5`, `2001:db8::/64`.
/// A host route (/32, /128) is kept as the address itself; `::ffff:a.b.c.d`
/// is the IPv4 address it stands for.
pub fn parse_addr(s: &str) -> Result<IpNet, Invalid> {
    let net = match s.parse::<IpAddr>() {
        Ok(a) => IpNet::from(a),
        Err(_) => s.parse::<IpNet>().map_err(|_| {
            Invalid(format!("\"{s}\" is not an IPv4 or IPv6 address or network; fix: write e.g. 203.0.113.5, 2001:db8::5 or 203.0.113.0/24"))
        })?,
    };
    let net = unmap(net);
    if net.trunc() != net {
        return Err(Invalid(format!(
            "\"{s}\" has host bits set; fix: write the network as {}",
            net.trunc()
        )));
    }
    Ok(net)
}

/// How ipset prints a member, and how people read one: a single host
/// without its /32 or /128.
pub fn member(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// A number in decimal, without the formatting machinery (hot paths write
/// a hundred thousand of these).
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("digits"));
}

/// [`member`] written onto `out`, the same text without allocating
/// (RFC 5952 for IPv6, as the standard library prints it).
pub fn push_member(out: &mut String, net: &IpNet) {
    match net.addr() {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(*o));
            }
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                out.push_str("::ffff:");
                push_member(out, &IpNet::from(IpAddr::V4(v4)));
            } else {
                let g = a.segments();
                // The longest run of two or more zero groups (the first of
                // equals) becomes "::".
                let (mut best, mut best_len, mut i) = (0, 0, 0);
                while i < 8 {
                    if g[i] == 0 {
                        let start = i;
                        while i < 8 && g[i] == 0 {
                            i += 1;
                        }
                        if i - start > best_len {
                            (best, best_len) = (start, i - start);
                        }
                    } else {
                        i += 1;
                    }
                }
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hex = |out: &mut String, v: u16| {
                    let mut started = false;
                    for shift in [12, 8, 4, 0] {
                        let d = (v >> shift) & 0xf;
                        if d != 0 || started || shift == 0 {
                            out.push(HEX[d as usize] as char);
                            started = true;
                        }
                    }
                };
                let mut k = 0;
                while k < 8 {
                    if best_len >= 2 && k == best {
                        out.push_str("::");
                        k += best_len;
                        continue;
                    }
                    if k > 0 && !(best_len >= 2 && k == best + best_len) {
                        out.push(':');
                    }
                    hex(out, g[k]);
                    k += 1;
                }
            }
        }
    }
    if net.prefix_len() != net.max_prefix_len() {
        out.push('/');
        push_u64(out, u64::from(net.prefix_len()));
    }
}

/// Why `a` can never be a ban target by its kind alone.
pub fn special(a: &IpAddr) -> Option<&'static str> {
    if a.is_loopback() {
        return Some("loopback address");
    }
    let special = match a {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    special.then_some("not a unicast address")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        parse_addr(s).unwrap()
    }

    #[test]
    fn host_bits_and_mapped_addresses() {
        assert!(parse_net("192.0.2.5/24", false)
            .unwrap_err()
            .as_str()
            .contains("192.0.2.0/24"));
        assert_eq!(
            parse_net("192.0.2.5/24", true).unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            parse_net("::ffff:192.0.2.7", false).unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert!(parse_net("0.0.0.0/0", true).is_err());
        assert!(parse_net("::/0", true).is_err());
    }

    #[test]
    fn addresses_parse_and_print_as_ipset_does() {
        assert_eq!(member(&net("203.0.113.5")), "203.0.113.5");
        assert_eq!(member(&net("203.0.113.5/32")), "203.0.113.5");
        assert_eq!(member(&net("2001:db8::/64")), "2001:db8::/64");
        assert!(parse_addr("203.0.113.5/24")
            .unwrap_err()
            .as_str()
            .contains("203.0.113.0/24"));
        for bad in [
            "",
            "300.1.1.1",
            "example.com",
            "-x",
            "203.0.113.5 x",
            "1.2.3.4/33",
        ] {
            assert!(
                parse_addr(bad).unwrap_err().as_str().contains("fix:"),
                "{bad}"
            );
        }
    }

    /// `fwctl ban ::ffff:192.0.2.10` once slipped past the trusted 192.0.2.10
    /// and `ban ::ffff:198.51.100.77` went into blacklist_v6, where no IPv4
    /// packet ever meets it.
    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert_eq!(net("::ffff:198.51.100.77"), net("198.51.100.77"));
        assert_eq!(net("::ffff:192.0.2.0/120"), net("192.0.2.0/24"));
        assert_eq!(Family::of(&net("::ffff:198.51.100.77")), Family::V4);
        assert_eq!(Family::of(&net("2001:db8::1")), Family::V6);
    }

    #[test]
    fn special_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(special(&ip("127.0.0.1")), Some("loopback address"));
        assert_eq!(special(&ip("::1")), Some("loopback address"));
        assert_eq!(
            special(&ip("255.255.255.255")),
            Some("not a unicast address")
        );
        assert_eq!(special(&ip("ff02::1")), Some("not a unicast address"));
        assert_eq!(special(&ip("203.0.113.5")), None);
    }

    #[test]
    fn push_member_writes_what_member_does() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases: Vec<IpNet> = [
            "::",
            "::1",
            "2001:db8::",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1::1",
            "1::",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "2001:db8:1:2:3:4:5:6",
            "0:0:1::",
            "fe80::1:0:0:0",
            "203.0.113.5",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::/32",
            "203.0.113.0/24",
            "2001:db8:0:1::/64",
        ]
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .unwrap()
        })
        .collect();
        for _ in 0..20_000 {
            let r = next();
            // Zero groups often, to exercise the "::" choice.
            let mut g = [0u16; 8];
            for (i, x) in g.iter_mut().enumerate() {
                if (r >> (i * 3)) & 3 != 0 {
                    *x = (next() & 0xffff) as u16 >> ((r >> (i + 24)) & 15);
                }
            }
            cases.push(IpNet::from(IpAddr::V6(std::net::Ipv6Addr::from(g))));
            cases.push(IpNet::from(IpAddr::V4(std::net::Ipv4Addr::from(r as u32))));
        }
        for n in cases {
            let mut s = String::new();
            push_member(&mut s, &n);
            assert_eq!(s, member(&n), "{n:?}");
        }
        let mut s = String::new();
        push_u64(&mut s, 0);
        push_u64(&mut s, 18_446_744_073_709_551_615);
        assert_eq!(s, "018446744073709551615");
    }
}
