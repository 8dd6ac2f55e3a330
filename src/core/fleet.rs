//! Bans shared by a fleet (pure): the entry every host appends to the Redis
//! stream for each ban and unban it makes, its fields on the wire and their
//! validation (an entry is data from another machine: anything malformed is
//! skipped with the reason), and what `fwctl sync` does with a remote entry
//! here: add it with the time it has left, or why not (its own, expired, a
//! role not accepted, the never-ban policy, a longer ban already here).

use crate::core::config::fleet::{Fleet, ORIGINS};
use crate::core::policy::{Policy, Refusal};
use crate::units::addr::{member, parse_addr};
use crate::units::duration::{human, MAX_TIMEOUT};
use crate::units::names::BAN_ROLES;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of the entry's fields; a newer one is skipped, not guessed at.
pub const VERSION: &str = "1";
/// The stream keeps about this many entries (`XADD MAXLEN ~`); the active
/// index keeps every running ban whatever the stream has dropped.
pub const STREAM_MAXLEN: u64 = 1_000_000;
/// No ban lasts ten years: a longer one is not a ban but a mistake.
const ABSURD: u64 = 10 * 365 * 86_400;
const MAX_REASON: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Ban,
    Unban,
}

/// One ban or unban, as every host publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unique per event (16 hex digits): a host that has applied an id
    /// skips it when it comes again (a publish retried after a lost answer).
    pub id: String,
    pub op: Op,
    #[serde(with = "net_text")]
    pub addr: IpNet,
    /// blacklist, throttle-hard or throttle-soft: roles, not kernel names
    /// (each host names its sets as it likes).
    pub role: String,
    /// When it was made and when it ends (Unix seconds; an unban: at).
    pub at: i64,
    pub until: i64,
    /// Its length as made.
    pub secs: u64,
    pub reason: String,
    pub offence: u32,
    /// Which host made it, and how: capture, scan or manual.
    pub host: String,
    pub origin: String,
    pub fwctl: String,
}

mod net_text {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::units::addr::member(n))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let t = String::deserialize(d)?;
        crate::units::addr::parse_addr(&t).map_err(serde::de::Error::custom)
    }
}

impl Entry {
    /// The member of the active index: "role address".
    pub fn key(&self) -> String {
        format!("{} {}", self.role, member(&self.addr))
    }

    /// The stream entry's fields, in order.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("v", VERSION.to_string()),
            ("id", self.id.clone()),
            (
                "op",
                match self.op {
                    Op::Ban => "ban",
                    Op::Unban => "unban",
                }
                .to_string(),
            ),
            ("addr", member(&self.addr)),
            ("role", self.role.clone()),
            ("at", self.at.to_string()),
            ("until", self.until.to_string()),
            ("secs", self.secs.to_string()),
            ("reason", self.reason.clone()),
            ("offence", self.offence.to_string()),
            ("host", self.host.clone()),
            ("origin", self.origin.clone()),
            ("fwctl", self.fwctl.clone()),
        ]
    }

    /// The names of [`Entry::fields`], in their order.
    pub const NAMES: [&'static str; 13] = [
        "v", "id", "op", "addr", "role", "at", "until", "secs", "reason", "offence", "host",
        "origin", "fwctl",
    ];

    /// The fields' values as one line, tab-separated in the order of
    /// [`Entry::NAMES`] (tabs and line ends in a value become spaces): the
    /// fleet outbox's line, read back through [`Entry::from_line`].
    pub fn write_line(&self, out: &mut String) {
        use crate::units::addr::{push_member, push_u64};
        let clean = |out: &mut String, v: &str| {
            if v.contains(['\t', '\n', '\r']) {
                out.push_str(&v.replace(['\t', '\n', '\r'], " "));
            } else {
                out.push_str(v);
            }
        };
        out.push_str(VERSION);
        out.push('\t');
        clean(out, &self.id);
        out.push_str(match self.op {
            Op::Ban => "\tban\t",
            Op::Unban => "\tunban\t",
        });
        push_member(out, &self.addr);
        out.push('\t');
        clean(out, &self.role);
        // Times are after 1970: no sign to write.
        for n in [self.at.max(0) as u64, self.until.max(0) as u64, self.secs] {
            out.push('\t');
            push_u64(out, n);
        }
        out.push('\t');
        clean(out, &self.reason);
        out.push('\t');
        push_u64(out, u64::from(self.offence));
        out.push('\t');
        clean(out, &self.host);
        out.push('\t');
        clean(out, &self.origin);
        out.push('\t');
        clean(out, &self.fwctl);
        out.push('\n');
    }

    /// An entry from a line of [`Entry::write_line`], validated as any.
    pub fn from_line(line: &str) -> Result<Entry, String> {
        let fields: Vec<(String, String)> = Self::NAMES
            .iter()
            .zip(line.trim_end_matches(['\n', '\r']).split('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Entry::from_fields(&fields)
    }

    /// An entry from another host's fields, or why it is skipped.
    pub fn from_fields(fields: &[(String, String)]) -> Result<Entry, String> {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| format!("no \"{k}\" field"))
        };
        let v = get("v")?;
        if v != VERSION {
            return Err(format!(
                "entry version {v:?} (this fwctl reads {VERSION}; a newer fwctl wrote it?)"
            ));
        }
        let num = |k: &str| -> Result<i64, String> {
            let t = get(k)?;
            t.parse::<i64>()
                .map_err(|_| format!("\"{k}\" = {t:?} is not a number"))
        };
        let id = get("id")?;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("\"id\" = {id:?} is not an id"));
        }
        let op = match get("op")? {
            "ban" => Op::Ban,
            "unban" => Op::Unban,
            o => return Err(format!("\"op\" = {o:?} is neither ban nor unban")),
        };
        let a = get("addr")?;
        let addr = parse_addr(a).map_err(|e| format!("\"addr\" = {a:?}: {e}"))?;
        let role = get("role")?;
        if !BAN_ROLES.contains(&role) {
            return Err(format!(
                "\"role\" = {role:?} is not one of {}",
                BAN_ROLES.join(", ")
            ));
        }
        let (at, until, secs) = (num("at")?, num("until")?, num("secs")?);
        if op == Op::Ban {
            if secs < 1 || secs as u64 > ABSURD || until - at != secs || at <= 0 {
                return Err(format!(
                    "an absurd duration (at {at}, until {until}, {secs} s)"
                ));
            }
        } else if at <= 0 {
            return Err(format!("an absurd time (at {at})"));
        }
        let offence = num("offence")?;
        if !(0..=1_000_000).contains(&offence) {
            return Err(format!("\"offence\" = {offence} is out of range"));
        }
        let host = get("host")?;
        if host.is_empty() || host.len() > 128 || !host.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!("\"host\" = {host:?} is not a host name"));
        }
        let origin = get("origin")?;
        if !ORIGINS.contains(&origin) {
            return Err(format!(
                "\"origin\" = {origin:?} is not one of {}",
                ORIGINS.join(", ")
            ));
        }
        let reason: String = get("reason")?.chars().take(MAX_REASON).collect();
        Ok(Entry {
            id: id.to_string(),
            op,
            addr,
            role: role.to_string(),
            at,
            until,
            secs: secs as u64,
            reason,
            offence: offence as u32,
            host: host.to_string(),
            origin: origin.to_string(),
            fwctl: get("fwctl").unwrap_or("?").chars().take(32).collect(),
        })
    }
}

/// What this host has of an address in a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    Absent,
    /// In the set until then (Unix seconds).
    Until(i64),
    /// In the set for good (a config member, or added without a timeout).
    Permanent,
}

/// This host, as a remote entry meets it.
pub trait Local {
    /// The kernel set of a role for a family.
    fn set_for(&self, role: &str, v6: bool) -> String;
    fn known(&self, set: &str, net: &IpNet) -> Known;
    /// Whether the ban of `net` in `set` came from the fleet (sync put it
    /// there), not from this host's own scan, capture or admin.
    fn by_fleet(&self, set: &str, net: &IpNet) -> bool;
}

/// What to do with a remote entry here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Into `set` for `secs` (its time left, capped), ending at `until`.
    Add {
        set: String,
        net: IpNet,
        secs: u64,
        until: i64,
    },
    Remove {
        set: String,
        net: IpNet,
    },
    Skip(Skip),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// This host's own entry, back from the stream.
    Own,
    /// A ban that ended before it got here.
    Expired {
        until: i64,
    },
    NotAccepted {
        role: String,
    },
    /// The never-ban policy.
    Refused(Refusal),
    /// A network into a set of single addresses.
    Network {
        set: String,
    },
    /// A ban here already lasts as long or longer.
    Longer {
        set: String,
        until: Option<i64>,
    },
    /// An unban of what is not banned here.
    NotBanned {
        set: String,
    },
    /// An unban of this host's own ban: its own evidence stands.
    LocalBan {
        set: String,
    },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Own => write!(f, "this host's own entry"),
            Skip::Expired { until } => write!(f, "expired at {}", crate::units::time::utc(*until)),
            Skip::NotAccepted { role } => write!(f, "role {role} is not in [fleet] accept"),
            Skip::Refused(r) => write!(f, "never banned here: {r}"),
            Skip::Network { set } => write!(
                f,
                "a network cannot go into {set}, a set of single addresses"
            ),
            Skip::Longer {
                set,
                until: Some(u),
            } => write!(
                f,
                "already in {set} until {}, longer",
                crate::units::time::utc(*u)
            ),
            Skip::Longer { set, until: None } => write!(f, "already in {set} for good"),
            Skip::NotBanned { set } => write!(f, "not in {set} here"),
            Skip::LocalBan { set } => write!(f, "banned in {set} by this host itself: kept"),
        }
    }
}

/// What `fwctl sync` does with remote entry `e` at `now` on host `me`.
pub fn decide(
    e: &Entry,
    me: &str,
    now: i64,
    fleet: &Fleet,
    policy: &Policy,
    local: &impl Local,
) -> Action {
    if e.host == me {
        return Action::Skip(Skip::Own);
    }
    if !fleet.accepts(&e.role) {
        return Action::Skip(Skip::NotAccepted {
            role: e.role.clone(),
        });
    }
    let set = local.set_for(&e.role, e.addr.addr().is_ipv6());
    let known = local.known(&set, &e.addr);
    match e.op {
        Op::Unban => match known {
            Known::Absent => Action::Skip(Skip::NotBanned { set }),
            _ if !local.by_fleet(&set, &e.addr) => Action::Skip(Skip::LocalBan { set }),
            _ => Action::Remove { set, net: e.addr },
        },
        Op::Ban => {
            if let Some(why) = policy.check(&e.addr) {
                return Action::Skip(Skip::Refused(why));
            }
            if e.role != "blacklist" && e.addr.prefix_len() != e.addr.max_prefix_len() {
                return Action::Skip(Skip::Network { set });
            }
            let left = e.until - now;
            if left <= 0 {
                return Action::Skip(Skip::Expired { until: e.until });
            }
            let secs = (left as u64).min(fleet.max_ban).min(MAX_TIMEOUT);
            let until = now + secs as i64;
            match known {
                Known::Permanent => Action::Skip(Skip::Longer { set, until: None }),
                // A second of slack: the same ban seen twice is not "longer".
                Known::Until(u) if u + 1 >= until => Action::Skip(Skip::Longer {
                    set,
                    until: Some(u),
                }),
                _ => Action::Add {
                    set,
                    net: e.addr,
                    secs,
                    until,
                },
            }
        }
    }
}

/// One line for sync's log.
pub fn describe(e: &Entry) -> String {
    match e.op {
        Op::Ban => format!(
            "{} ban of {} in {} for {} from {} ({})",
            e.origin,
            member(&e.addr),
            e.role,
            human(e.secs),
            e.host,
            e.reason
        ),
        Op::Unban => format!("unban of {} in {} from {}", member(&e.addr), e.role, e.host),
    }
}

/// The entries of recent ids, to skip one seen twice; bounded.
#[derive(Default)]
pub struct Seen {
    order: std::collections::VecDeque<String>,
    ids: std::collections::HashSet<String>,
}

impl Seen {
    const MAX: usize = 200_000;

    /// Whether `id` is new (and remember it).
    pub fn first(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.ids.insert(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn fleet() -> Fleet {
        toml::from_str::<crate::core::config::fleet::RawFleet>(
            "redis = \"redis://203.0.113.100/\"\naccept = [\"blacklist\", \"throttle-hard\"]\nmax_ban = \"1d\"",
        )
        .unwrap()
        .validate()
        .unwrap()
    }

    fn ban(addr: &str, host: &str, at: i64, secs: u64) -> Entry {
        Entry {
            id: "00000000000000a1".into(),
            op: Op::Ban,
            addr: parse_addr(addr).unwrap(),
            role: "blacklist".into(),
            at,
            until: at + secs as i64,
            secs,
            reason: "SYN scan".into(),
            offence: 1,
            host: host.into(),
            origin: "capture".into(),
            fwctl: "0.1.0".into(),
        }
    }

    #[derive(Default)]
    struct Here {
        known: HashMap<(String, IpNet), Known>,
        fleet: Vec<IpNet>,
    }

    impl Local for Here {
        fn set_for(&self, role: &str, v6: bool) -> String {
            if v6 {
                format!("{role}_v6")
            } else {
                role.to_string()
            }
        }
        fn known(&self, set: &str, net: &IpNet) -> Known {
            self.known
                .get(&(set.to_string(), *net))
                .copied()
                .unwrap_or(Known::Absent)
        }
        fn by_fleet(&self, _: &str, net: &IpNet) -> bool {
            self.fleet.contains(net)
        }
    }

    #[test]
    fn fields_round_trip_and_garbage_is_skipped_with_the_reason() {
        let e = ban("2001:db8:bad::/64", "web-1", 1_796_000_000, 3600);
        let f: Vec<(String, String)> = e
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(Entry::from_fields(&f).unwrap(), e);
        let mut line = String::new();
        e.write_line(&mut line);
        assert_eq!(Entry::from_line(&line).unwrap(), e);
        let mut odd = e.clone();
        odd.reason = "a\tb\nc".into();
        let mut line = String::new();
        odd.write_line(&mut line);
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(Entry::from_line(&line).unwrap().reason, "a b c");
        let with = |k: &str, v: &str| {
            let mut g = f.clone();
            match g.iter_mut().find(|(f, _)| f == k) {
                Some(x) => x.1 = v.to_string(),
                None => g.push((k.into(), v.into())),
            }
            Entry::from_fields(&g).unwrap_err()
        };
        for (k, v, want) in [
            ("addr", "not-an-ip", "\"addr\""),
            ("role", "whitelist", "\"role\""),
            ("secs", "0", "absurd duration"),
            ("until", "1", "absurd duration"),
            ("secs", "x", "not a number"),
            ("op", "nuke", "neither ban nor unban"),
            ("v", "2", "newer fwctl"),
            ("origin", "feed", "\"origin\""),
            ("host", "", "not a host name"),
            ("id", "a b", "not an id"),
        ] {
            let err = with(k, v);
            assert!(err.contains(want), "{k}={v}: {err}");
        }
        let missing: Vec<(String, String)> =
            f.iter().filter(|(k, _)| k != "until").cloned().collect();
        assert_eq!(
            Entry::from_fields(&missing).unwrap_err(),
            "no \"until\" field"
        );
        assert!(Entry::from_fields(&[]).is_err());
    }

    #[test]
    fn a_remote_ban_is_added_with_the_time_it_has_left_or_skipped_with_why() {
        let (f, now) = (fleet(), 1_796_000_100);
        let policy = Policy {
            trusted: vec!["192.0.2.0/24".parse().unwrap()],
            own: vec!["198.51.100.1".parse().unwrap()],
            ..Policy::default()
        };
        let mut here = Here::default();
        let d = |e: &Entry, here: &Here| decide(e, "web-2", now, &f, &policy, here);
        // 100 s of its hour gone: 3500 s left.
        assert_eq!(
            d(&ban("203.0.113.5", "web-1", now - 100, 3600), &here),
            Action::Add {
                set: "blacklist".into(),
                net: parse_addr("203.0.113.5").unwrap(),
                secs: 3500,
                until: now + 3500
            }
        );
        // Capped by max_ban (1 day).
        match d(&ban("203.0.113.5", "web-1", now, 30 * 86400), &here) {
            Action::Add { secs, .. } => assert_eq!(secs, 86_400),
            a => panic!("{a:?}"),
        }
        let skip = |a: Action| match a {
            Action::Skip(s) => s.to_string(),
            a => panic!("not skipped: {a:?}"),
        };
        assert_eq!(
            skip(d(&ban("203.0.113.5", "web-2", now, 60), &here)),
            "this host's own entry"
        );
        assert!(
            skip(d(&ban("203.0.113.5", "web-1", now - 7200, 3600), &here))
                .starts_with("expired at")
        );
        assert!(skip(d(&ban("192.0.2.9", "web-1", now, 60), &here)).contains("trusted"));
        assert!(skip(d(&ban("198.51.100.1", "web-1", now, 60), &here)).contains("own address"));
        assert!(skip(d(&ban("127.0.0.1", "web-1", now, 60), &here)).contains("loopback"));
        let mut soft = ban("203.0.113.6", "web-1", now, 60);
        soft.role = "throttle-soft".into();
        assert_eq!(
            skip(d(&soft, &here)),
            "role throttle-soft is not in [fleet] accept"
        );
        let mut net = ban("203.0.113.0/28", "web-1", now, 60);
        net.role = "throttle-hard".into();
        assert!(skip(d(&net, &here)).contains("a set of single addresses"));
        // Never shortened; lengthened.
        let a = parse_addr("203.0.113.7").unwrap();
        here.known
            .insert(("blacklist".into(), a), Known::Until(now + 7200));
        assert!(skip(d(&ban("203.0.113.7", "web-1", now, 3600), &here)).contains("longer"));
        assert!(matches!(
            d(&ban("203.0.113.7", "web-1", now, 9000), &here),
            Action::Add { secs: 9000, .. }
        ));
        here.known.insert(("blacklist".into(), a), Known::Permanent);
        assert!(skip(d(&ban("203.0.113.7", "web-1", now, 9000), &here)).contains("for good"));
        // The same ban twice: the second finds the first.
        here.known
            .insert(("blacklist".into(), a), Known::Until(now + 3600));
        assert!(skip(d(&ban("203.0.113.7", "web-1", now, 3600), &here)).contains("longer"));
    }

    #[test]
    fn a_remote_unban_removes_only_what_the_fleet_put_here() {
        let (f, now) = (fleet(), 1_796_000_100);
        let policy = Policy::default();
        let mut here = Here::default();
        let a = parse_addr("203.0.113.8").unwrap();
        let mut un = ban("203.0.113.8", "web-1", now, 60);
        un.op = Op::Unban;
        let d = |here: &Here| decide(&un, "web-2", now, &f, &policy, here);
        assert_eq!(
            d(&here),
            Action::Skip(Skip::NotBanned {
                set: "blacklist".into()
            })
        );
        here.known
            .insert(("blacklist".into(), a), Known::Until(now + 60));
        assert_eq!(
            d(&here),
            Action::Skip(Skip::LocalBan {
                set: "blacklist".into()
            })
        );
        here.fleet.push(a);
        assert_eq!(
            d(&here),
            Action::Remove {
                set: "blacklist".into(),
                net: a
            }
        );
    }

    #[test]
    fn an_id_is_seen_once() {
        let mut s = Seen::default();
        assert!(s.first("a") && s.first("b"));
        assert!(!s.first("a"));
    }
}
