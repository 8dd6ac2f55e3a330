//! Which kernel set a manual ban goes into, and whether the address may be
//! banned at all (pure: the config and the host's addresses are inputs).

use crate::config::Config;
use crate::names::V6_SUFFIX;
use crate::ruleset::{Family, Plan, SetKind};
use ipnet::IpNet;
use std::net::IpAddr;

/// The sets a ban may go into, by their role names.
pub const BAN_ROLES: [&str; 3] = ["blacklist", "throttle-hard", "throttle-soft"];

/// An address or network typed by the admin: `203.0.113.5`, `2001:db8::/64`.
/// A host route (/32, /128) is kept as the address itself.
pub fn parse_addr(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpAddr>() {
        Ok(a) => IpNet::from(a),
        Err(_) => s.parse::<IpNet>().map_err(|_| {
            format!("\"{s}\" is not an IPv4 or IPv6 address or network; fix: write e.g. 203.0.113.5, 2001:db8::5 or 203.0.113.0/24")
        })?,
    };
    if net.trunc() != net {
        return Err(format!(
            "\"{s}\" has host bits set; fix: write the network as {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// How a member is written to ipset: a host without its /32 or /128, the
/// form `ipset save` prints it back in.
pub fn member(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// The kernel sets of each role for one family: (role, kernel name).
fn roles(cfg: &Config, v6: bool) -> [(&'static str, String); 4] {
    let s = &cfg.sets;
    [
        ("whitelist", s.whitelist.for_family(v6)),
        ("blacklist", s.blacklist.for_family(v6)),
        ("throttle-hard", s.throttle_hard.for_family(v6)),
        ("throttle-soft", s.throttle_soft.for_family(v6)),
    ]
}

/// The role of a set named by its role or by its kernel name (either
/// family's), and the family the name pins (None: the role name, both).
pub fn role_of(cfg: &Config, name: &str) -> Option<(&'static str, Option<bool>)> {
    for v6 in [false, true] {
        for (role, kernel) in roles(cfg, v6) {
            if name == kernel {
                // The base name means both families; the _v6 twin pins IPv6.
                return Some((role, v6.then_some(true)));
            }
        }
    }
    let bare = name.strip_suffix(V6_SUFFIX).unwrap_or(name);
    roles(cfg, false)
        .iter()
        .find(|(role, _)| *role == bare)
        .map(|(role, _)| (*role, name.ends_with(V6_SUFFIX).then_some(true)))
}

/// The kernel set names of a role name or set name: both families for a role
/// name, one for a kernel name. Err names the choices.
pub fn sets_named(cfg: &Config, name: &str) -> Result<Vec<String>, String> {
    let (role, pinned) = role_of(cfg, name).ok_or_else(|| unknown(cfg, name))?;
    let kernel = |v6| {
        roles(cfg, v6)
            .into_iter()
            .find(|(r, _)| *r == role)
            .expect("known role")
            .1
    };
    Ok(match pinned {
        Some(v6) => vec![kernel(v6)],
        None => vec![kernel(false), kernel(true)],
    })
}

fn unknown(cfg: &Config, name: &str) -> String {
    let names: Vec<String> = roles(cfg, false).into_iter().map(|r| r.1).collect();
    format!(
        "unknown set \"{name}\"; fix: name one of fwctl's sets: {} (or their _v6 twins)",
        names.join(", ")
    )
}

/// The kernel set a ban of `addr` goes into: `set` (a role or kernel name,
/// default blacklist) for the address's family.
pub fn ban_set(
    cfg: &Config,
    plan: &Plan,
    set: Option<&str>,
    addr: &IpNet,
) -> Result<String, String> {
    let name = set.unwrap_or("blacklist");
    let v6 = matches!(addr, IpNet::V6(_));
    let shown = member(addr);
    let (role, pinned) = role_of(cfg, name).ok_or_else(|| unknown(cfg, name))?;
    if role == "whitelist" {
        return Err(format!(
            "the {name} set holds trusted sources and refuses bans; fix: ban into {} (--set)",
            BAN_ROLES.join(", ")
        ));
    }
    if pinned.is_some_and(|p| p != v6) {
        return Err(format!(
            "{name} is the IPv{} set but {shown} is IPv{}; fix: leave the family to fwctl (--set {role})",
            if v6 { 4 } else { 6 },
            if v6 { 6 } else { 4 }
        ));
    }
    let kernel = roles(cfg, v6)
        .into_iter()
        .find(|(r, _)| *r == role)
        .expect("known role")
        .1;
    let family = if v6 { Family::V6 } else { Family::V4 };
    let plan_set = plan
        .sets
        .iter()
        .find(|s| s.name == kernel && s.family == family)
        .expect("every role has a set in the plan");
    if plan_set.kind == SetKind::HashIp && addr.prefix_len() != addr.max_prefix_len() {
        return Err(format!(
            "{kernel} holds single addresses (hash:ip), not networks like {addr}; fix: ban the network into blacklist, or ban single addresses"
        ));
    }
    Ok(kernel)
}

/// Why `addr` must never be banned: loopback and the like, this host's own
/// addresses, the config's trusted networks (a network overlapping one too).
pub fn refuse(cfg: &Config, own: &[IpAddr], net: &IpNet) -> Option<String> {
    let host = net.addr();
    let addr = member(net);
    let addr = &addr;
    if let Some(why) = crate::scan::decide::special(&host) {
        return Some(format!("{addr} is a {why} and is never banned"));
    }
    if let Some(t) = cfg
        .trusted
        .iter()
        .find(|t| t.contains(net) || net.contains(*t))
    {
        return Some(format!(
            "{addr} is whitelisted (trusted network {t} in {}); fix: remove it from [trusted] first if it really must be banned",
            cfg.path.display()
        ));
    }
    if let Some(a) = own.iter().find(|a| net.contains(*a)) {
        return Some(format!(
            "{addr} covers {a}, this host's own address; banning it would cut the host off from itself"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(extra: &str) -> (Config, Plan) {
        let text =
            format!("[trusted]\nnetworks = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]\n{extra}");
        let c = Config::parse(&text, Path::new("/etc/fwctl/fwctl.toml"), &|_| {
            Ok(String::new())
        })
        .unwrap();
        let p = crate::ruleset::build(&c);
        (c, p)
    }

    fn net(s: &str) -> IpNet {
        parse_addr(s).unwrap()
    }

    #[test]
    fn addresses_parse_and_print_as_ipset_does() {
        assert_eq!(member(&net("203.0.113.5")), "203.0.113.5");
        assert_eq!(member(&net("203.0.113.5/32")), "203.0.113.5");
        assert_eq!(member(&net("2001:db8::/64")), "2001:db8::/64");
        assert!(parse_addr("203.0.113.5/24")
            .unwrap_err()
            .contains("203.0.113.0/24"));
        for bad in [
            "",
            "300.1.1.1",
            "example.com",
            "-x",
            "203.0.113.5 x",
            "1.2.3.4/33",
        ] {
            assert!(parse_addr(bad).unwrap_err().contains("fix:"), "{bad}");
        }
    }

    #[test]
    fn the_family_picks_the_twin() {
        let (c, p) = cfg("");
        let v4 = net("203.0.113.5");
        let v6 = net("2001:db8:9::5");
        assert_eq!(ban_set(&c, &p, None, &v4).unwrap(), "blacklist");
        assert_eq!(ban_set(&c, &p, None, &v6).unwrap(), "blacklist_v6");
        assert_eq!(
            ban_set(&c, &p, Some("throttle-hard"), &v6).unwrap(),
            "throttle-hard_v6"
        );
        assert_eq!(
            ban_set(&c, &p, Some("throttle-soft_v6"), &v6).unwrap(),
            "throttle-soft_v6"
        );
        let e = ban_set(&c, &p, Some("blacklist_v6"), &v4).unwrap_err();
        assert!(
            e.contains("IPv6 set") && e.contains("--set blacklist"),
            "{e}"
        );
    }

    #[test]
    fn renamed_sets_are_found_by_role_and_by_kernel_name() {
        let (c, p) = cfg("[sets]\nblacklist = \"bl\"\nwhitelist = \"wl\"\n");
        let v6 = net("2001:db8:9::5");
        assert_eq!(ban_set(&c, &p, Some("blacklist"), &v6).unwrap(), "bl_v6");
        assert_eq!(ban_set(&c, &p, Some("bl"), &v6).unwrap(), "bl_v6");
        assert!(ban_set(&c, &p, Some("wl_v6"), &v6)
            .unwrap_err()
            .contains("refuses bans"));
        assert_eq!(sets_named(&c, "blacklist").unwrap(), ["bl", "bl_v6"]);
        assert_eq!(sets_named(&c, "bl_v6").unwrap(), ["bl_v6"]);
        assert!(sets_named(&c, "nosuch")
            .unwrap_err()
            .contains("bl, throttle-hard"));
    }

    #[test]
    fn whitelist_unknown_sets_and_networks_in_hash_ip_are_refused() {
        let (c, p) = cfg("");
        let a = net("203.0.113.5");
        for name in ["whitelist", "whitelist_v6"] {
            let e = ban_set(&c, &p, Some(name), &a).unwrap_err();
            assert!(e.contains("refuses bans"), "{e}");
        }
        let e = ban_set(&c, &p, Some("nosuch"), &a).unwrap_err();
        assert!(
            e.starts_with("unknown set \"nosuch\"") && e.contains("fix:"),
            "{e}"
        );
        let e = ban_set(&c, &p, Some("throttle-hard"), &net("203.0.113.0/24")).unwrap_err();
        assert!(e.contains("hash:ip"), "{e}");
        assert_eq!(
            ban_set(&c, &p, None, &net("203.0.113.0/24")).unwrap(),
            "blacklist"
        );
    }

    #[test]
    fn trusted_own_and_special_addresses_are_never_banned() {
        let (c, _) = cfg("");
        let own: Vec<IpAddr> = vec!["198.51.100.1".parse().unwrap()];
        let why = |s: &str| refuse(&c, &own, &net(s));
        assert!(why("192.0.2.7").unwrap().contains("whitelisted"));
        assert!(why("2001:db8:1:2::9").unwrap().contains("whitelisted"));
        assert!(
            why("192.0.0.0/16").unwrap().contains("whitelisted"),
            "covers a trusted network"
        );
        assert!(why("198.51.100.1").unwrap().contains("own address"));
        assert!(why("198.51.100.0/24").unwrap().contains("own address"));
        assert!(why("127.0.0.1").unwrap().contains("loopback"));
        assert!(why("224.0.0.1").unwrap().contains("unicast"));
        assert_eq!(why("203.0.113.5"), None);
    }
}
