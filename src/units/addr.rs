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
    let net = match s.parse::<IpNet>() {
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
}
