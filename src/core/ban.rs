//! Which kernel set a ban goes into, whether the ban sets are fit to take
//! bans, and what a set's members are with their time left (pure: the
//! config, the kernel's sets as data and the state file are inputs).

use super::config::Config;
use super::history::Record;
use super::ruleset::{Family, Plan, SetKind};
use super::sets::{Member, SetHead};
use crate::units::addr::member;
use crate::units::names::V6_SUFFIX;
use crate::units::time::utc;
use crate::units::Invalid;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::units::names::BAN_ROLES;

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
pub fn sets_named(cfg: &Config, name: &str) -> Result<Vec<String>, Invalid> {
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

fn unknown(cfg: &Config, name: &str) -> Invalid {
    let names: Vec<String> = roles(cfg, false).into_iter().map(|r| r.1).collect();
    Invalid(format!(
        "unknown set \"{name}\"; fix: name one of fwctl's sets: {} (or their _v6 twins)",
        names.join(", ")
    ))
}

/// The kernel set a ban of `addr` goes into: `set` (a role or kernel name,
/// default blacklist) for the address's family.
pub fn ban_set(
    cfg: &Config,
    plan: &Plan,
    set: Option<&str>,
    addr: &IpNet,
) -> Result<String, Invalid> {
    let name = set.unwrap_or("blacklist");
    let v6 = matches!(addr, IpNet::V6(_));
    let shown = member(addr);
    let (role, pinned) = role_of(cfg, name).ok_or_else(|| unknown(cfg, name))?;
    if role == "whitelist" {
        return Err(Invalid(format!(
            "the {name} set holds trusted sources and refuses bans; fix: ban into {} (--set)",
            BAN_ROLES.join(", ")
        )));
    }
    if pinned.is_some_and(|p| p != v6) {
        return Err(Invalid(format!(
            "{name} is the IPv{} set but {shown} is IPv{}; fix: leave the family to fwctl (--set {role})",
            if v6 { 4 } else { 6 },
            if v6 { 6 } else { 4 }
        )));
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
        return Err(Invalid(format!(
            "{kernel} holds single addresses (hash:ip), not networks like {addr}; fix: ban the network into blacklist, or ban single addresses"
        )));
    }
    Ok(kernel)
}

/// The ban sets (IPv4, IPv6) must exist, be of the right family and type and
/// take timeouts. `other` ends the "does not exist" fix with the caller's
/// own way of naming another set.
/// `apply` is the command that creates them, as the fix says it.
pub fn check_ban_sets(
    sets: &[String; 2],
    headers: &BTreeMap<String, SetHead>,
    apply: &str,
    other: &str,
) -> Result<(), Invalid> {
    for (i, name) in sets.iter().enumerate() {
        let (family, what) = if i == 0 {
            (Family::V4, "IPv4")
        } else {
            (Family::V6, "IPv6")
        };
        let Some(h) = headers.get(name) else {
            return Err(Invalid(format!(
                "ipset {name} does not exist; fix: run `{apply}` (it creates {} and {}) {other}",
                sets[0], sets[1]
            )));
        };
        if h.family != family {
            return Err(Invalid(format!(
                "ipset {name} has family {} but takes the {what} offenders; fix: {} must be family inet and {} family inet6 (as `fwctl apply` creates them)",
                h.family.ipset_family(), sets[0], sets[1]
            )));
        }
        if !h.holds.takes_addresses() {
            return Err(Invalid(format!("ipset {name} is of type {}, which cannot take single addresses; fix: use a hash:ip or hash:net set", h.holds)));
        }
        if !h.timeout {
            return Err(Invalid(format!(
                "ipset {name} was created without timeout support, so bans cannot expire; fix: recreate it with `timeout 0` (`{apply}` does)"
            )));
        }
    }
    Ok(())
}

/// One member of a set, as `list` shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub set: String,
    pub address: String,
    /// Seconds left; None: permanent (a config member).
    pub expires_in: Option<u64>,
    /// From the state file: how many bans, and when this one started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offences: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The fleet host whose ban this is (sync applied it here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The entries of `sets` from their members, bans soonest expiry first,
/// then the permanent ones.
pub fn entries(sets: &BTreeMap<String, Vec<Member>>, records: &[Record]) -> Vec<Entry> {
    let by_addr: BTreeMap<(IpNet, &str), &Record> = records
        .iter()
        .map(|r| ((r.addr, r.set.as_str()), r))
        .collect();
    let mut out = Vec::new();
    for (name, members) in sets {
        for m in members {
            let secs = m.left.map(u64::from);
            let rec = by_addr.get(&(m.net, name.as_str()));
            out.push(Entry {
                set: name.clone(),
                address: member(&m.net),
                expires_in: secs,
                offences: rec.filter(|_| secs.is_some()).map(|r| r.offences),
                since: rec.filter(|_| secs.is_some()).map(|r| utc(r.since)),
                from: rec.filter(|_| secs.is_some()).and_then(|r| r.from.clone()),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.expires_in.is_none(), a.expires_in, &a.set, &a.address).cmp(&(
            b.expires_in.is_none(),
            b.expires_in,
            &b.set,
            &b.address,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::addr::parse_addr;
    use std::path::Path;

    fn cfg(extra: &str) -> (Config, Plan) {
        let text =
            format!("[trusted]\nnetworks = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]\n{extra}");
        let c = Config::parse(&text, Path::new("/etc/fwctl/fwctl.toml"), &|_| {
            Ok(String::new())
        })
        .unwrap();
        let p = crate::core::ruleset::build(&c);
        (c, p)
    }

    fn net(s: &str) -> IpNet {
        parse_addr(s).unwrap()
    }

    #[test]
    fn the_family_picks_the_twin() {
        let (c, p) = cfg("");
        let v4 = net("203.0.113.5");
        let v6 = net("2001:db8:9::5");
        assert_eq!(ban_set(&c, &p, None, &v4).unwrap(), "blacklist");
        assert_eq!(ban_set(&c, &p, None, &v6).unwrap(), "blacklist_v6");
        let mapped = net("::ffff:198.51.100.77");
        assert_eq!(ban_set(&c, &p, None, &mapped).unwrap(), "blacklist");
        assert_eq!(
            ban_set(&c, &p, Some("throttle-hard"), &v6).unwrap(),
            "throttle-hard_v6"
        );
        assert_eq!(
            ban_set(&c, &p, Some("throttle-soft_v6"), &v6).unwrap(),
            "throttle-soft_v6"
        );
        let e = ban_set(&c, &p, Some("blacklist_v6"), &v4).unwrap_err().0;
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
            .0
            .contains("refuses bans"));
        assert_eq!(sets_named(&c, "blacklist").unwrap(), ["bl", "bl_v6"]);
        assert_eq!(sets_named(&c, "bl_v6").unwrap(), ["bl_v6"]);
        assert!(sets_named(&c, "nosuch")
            .unwrap_err()
            .0
            .contains("bl, throttle-hard"));
    }

    #[test]
    fn whitelist_unknown_sets_and_networks_in_hash_ip_are_refused() {
        let (c, p) = cfg("");
        let a = net("203.0.113.5");
        for name in ["whitelist", "whitelist_v6"] {
            let e = ban_set(&c, &p, Some(name), &a).unwrap_err().0;
            assert!(e.contains("refuses bans"), "{e}");
        }
        let e = ban_set(&c, &p, Some("nosuch"), &a).unwrap_err().0;
        assert!(
            e.starts_with("unknown set \"nosuch\"") && e.contains("fix:"),
            "{e}"
        );
        let e = ban_set(&c, &p, Some("throttle-hard"), &net("203.0.113.0/24"))
            .unwrap_err()
            .0;
        assert!(e.contains("hash:ip"), "{e}");
        assert_eq!(
            ban_set(&c, &p, None, &net("203.0.113.0/24")).unwrap(),
            "blacklist"
        );
    }

    #[test]
    fn entries_join_the_kernel_and_the_state_file() {
        let m = |s: &str, left| Member { net: net(s), left };
        let mut saves = BTreeMap::new();
        saves.insert(
            "blacklist".to_string(),
            vec![
                m("192.0.2.0/24", None),
                m("203.0.113.5", Some(300)),
                m("203.0.113.6", Some(30)),
            ],
        );
        let mut h = crate::core::history::History::default();
        h.record(
            "203.0.113.5/32".parse().unwrap(),
            "blacklist",
            3,
            1_795_262_400,
            600,
        );
        let got = entries(&saves, &h.records());
        let brief: Vec<(&str, Option<u64>, Option<u32>)> = got
            .iter()
            .map(|e| (e.address.as_str(), e.expires_in, e.offences))
            .collect();
        assert_eq!(
            brief,
            [
                ("203.0.113.6", Some(30), None),
                ("203.0.113.5", Some(300), Some(3)),
                ("192.0.2.0/24", None, None)
            ]
        );
        assert_eq!(got[1].since.as_deref(), Some("2026-11-21T12:00:00Z"));
    }
}
