//! Bans shared by a fleet (pure): the entry every host appends to the Redis
//! stream for each ban and unban it makes, its fields on the wire and their
//! validation (an entry is data from another machine: anything malformed is
//! skipped with the reason), and what `fwctl sync` does with a remote entry
//! here: add it with the time it has left, or why not (its own, expired, a
//! role not accepted, the never-ban policy, a network wider than the minimum
//! prefix, no room left for remote bans, a longer ban already here). Every
//! field and the whole entry are bounded (an oversized entry is skipped and
//! counted apart), and with [fleet.peers] an entry must carry the signature
//! of the host it names.

use crate::core::config::fleet::{Fleet, ORIGINS};
use crate::core::fleetroom::{NoRoom, Room};
use crate::core::fleetsig::{SigningKey, SIG_TEXT_LEN};
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
/// The longest reason (bytes); this host cuts its own to fit.
pub const MAX_REASON: usize = 256;
/// The most bytes of an entry (its field names and values together) and the
/// most fields: every field at its longest fits with room to spare.
pub const MAX_ENTRY: usize = 1024;
pub const MAX_FIELDS: usize = 32;
/// The field a bounded read puts in place of an entry too big to fetch:
/// its value is the entry's size in bytes.
pub const OVERSIZED: &str = "fwctl-oversized";

/// The longest value of each field (bytes); an unknown field is bounded by
/// [`MAX_ENTRY`] alone.
fn max_len(field: &str) -> usize {
    match field {
        "v" | "op" | "origin" => 16,
        "id" | "addr" | "role" => 64,
        "at" | "until" | "secs" | "offence" => 20,
        "reason" => MAX_REASON,
        "host" => 128,
        "fwctl" => 32,
        "sig" => SIG_TEXT_LEN,
        _ => MAX_ENTRY,
    }
}

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
    /// The host's Ed25519 signature of [`Entry::signed_bytes`], base64
    /// (empty: unsigned).
    #[serde(default)]
    pub sig: String,
}

/// Why another host's entry is skipped before it is looked at: malformed,
/// or (counted apart) bigger than any entry fwctl writes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct Reject {
    pub oversized: bool,
    pub why: String,
}

impl From<String> for Reject {
    fn from(why: String) -> Reject {
        Reject {
            oversized: false,
            why,
        }
    }
}

fn oversized(why: String) -> Reject {
    Reject {
        oversized: true,
        why: format!("oversized: {why}"),
    }
}

/// An entry's size limits, checked before anything of it is read.
fn check_size(fields: &[(String, String)]) -> Result<(), Reject> {
    if let Some((_, n)) = fields.iter().find(|(k, _)| k == OVERSIZED) {
        return Err(oversized(format!(
            "{n} bytes (at most {MAX_ENTRY}); not fetched"
        )));
    }
    if fields.len() > MAX_FIELDS {
        return Err(oversized(format!(
            "{} fields (at most {MAX_FIELDS})",
            fields.len()
        )));
    }
    let total: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ENTRY {
        return Err(oversized(format!("{total} bytes (at most {MAX_ENTRY})")));
    }
    if let Some((k, v)) = fields.iter().find(|(k, v)| v.len() > max_len(k)) {
        return Err(oversized(format!(
            "\"{k}\" is {} bytes (at most {})",
            v.len(),
            max_len(k)
        )));
    }
    Ok(())
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
            ("sig", self.sig.clone()),
        ]
    }

    /// The names of [`Entry::fields`], in their order.
    pub const NAMES: [&'static str; 14] = [
        "v", "id", "op", "addr", "role", "at", "until", "secs", "reason", "offence", "host",
        "origin", "fwctl", "sig",
    ];

    /// What the signature covers: every field but `sig`, each as
    /// `name=length:value` on a line of its own (so no value can pass for
    /// another), the values as this fwctl writes them (the address in its
    /// canonical form, numbers in decimal).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(b"fwctl fleet entry\n");
        for (k, v) in self.fields() {
            if k == "sig" {
                continue;
            }
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Sign it with this host's key.
    pub fn sign(&mut self, key: &SigningKey) {
        self.sig = key.sign(&self.signed_bytes());
    }

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
        out.push('\t');
        clean(out, &self.sig);
        out.push('\n');
    }

    /// An entry from a line of [`Entry::write_line`], validated as any.
    pub fn from_line(line: &str) -> Result<Entry, Reject> {
        let fields: Vec<(String, String)> = Self::NAMES
            .iter()
            .zip(line.trim_end_matches(['\n', '\r']).split('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Entry::from_fields(&fields)
    }

    /// An entry from another host's fields, or why it is skipped.
    pub fn from_fields(fields: &[(String, String)]) -> Result<Entry, Reject> {
        check_size(fields)?;
        Entry::parse_fields(fields)
    }

    fn parse_fields(fields: &[(String, String)]) -> Result<Entry, Reject> {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| Reject::from(format!("no \"{k}\" field")))
        };
        let v = get("v")?;
        if v != VERSION {
            return Err(format!(
                "entry version {v:?} (this fwctl reads {VERSION}; a newer fwctl wrote it?)"
            )
            .into());
        }
        let num = |k: &str| -> Result<i64, Reject> {
            let t = get(k)?;
            t.parse::<i64>()
                .map_err(|_| format!("\"{k}\" = {t:?} is not a number").into())
        };
        let id = get("id")?;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("\"id\" = {id:?} is not an id").into());
        }
        let op = match get("op")? {
            "ban" => Op::Ban,
            "unban" => Op::Unban,
            o => return Err(format!("\"op\" = {o:?} is neither ban nor unban").into()),
        };
        let a = get("addr")?;
        let addr = parse_addr(a).map_err(|e| Reject::from(format!("\"addr\" = {a:?}: {e}")))?;
        let role = get("role")?;
        if !BAN_ROLES.contains(&role) {
            return Err(
                format!("\"role\" = {role:?} is not one of {}", BAN_ROLES.join(", ")).into(),
            );
        }
        let (at, until, secs) = (num("at")?, num("until")?, num("secs")?);
        if op == Op::Ban {
            if secs < 1 || secs as u64 > ABSURD || until - at != secs || at <= 0 {
                return Err(
                    format!("an absurd duration (at {at}, until {until}, {secs} s)").into(),
                );
            }
        } else if at <= 0 {
            return Err(format!("an absurd time (at {at})").into());
        }
        let offence = num("offence")?;
        if !(0..=1_000_000).contains(&offence) {
            return Err(format!("\"offence\" = {offence} is out of range").into());
        }
        let host = get("host")?;
        if host.is_empty() || host.len() > 128 || !host.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!("\"host\" = {host:?} is not a host name").into());
        }
        let origin = get("origin")?;
        if !ORIGINS.contains(&origin) {
            return Err(format!(
                "\"origin\" = {origin:?} is not one of {}",
                ORIGINS.join(", ")
            )
            .into());
        }
        let reason = get("reason")?;
        let fwctl = get("fwctl").unwrap_or("?");
        // Printed in sync's log: a line end there would forge a line.
        for (k, v) in [("reason", reason), ("fwctl", fwctl)] {
            if v.chars().any(char::is_control) {
                return Err(format!("\"{k}\" holds control characters").into());
            }
        }
        let sig = get("sig").unwrap_or("");
        Ok(Entry {
            id: id.to_string(),
            op,
            addr,
            role: role.to_string(),
            at,
            until,
            secs: secs as u64,
            reason: reason.to_string(),
            offence: offence as u32,
            host: host.to_string(),
            origin: origin.to_string(),
            fwctl: fwctl.to_string(),
            sig: sig.to_string(),
        })
    }
}

/// A reason as this host publishes it: on one line, cut to [`MAX_REASON`]
/// bytes (at a character's edge), so that every host reads back, from the
/// stream or the index, the bytes that were signed.
pub fn publishable_reason(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// With `[fleet.peers]`: whether `e` carries the signature of the host it
/// names (without peers every entry passes: whoever can write to Redis is
/// trusted).
pub fn check_signature(e: &Entry, fleet: &Fleet) -> Result<(), Skip> {
    if fleet.peers.is_empty() {
        return Ok(());
    }
    let Some(key) = fleet.peers.get(&e.host) else {
        return Err(Skip::UnknownHost {
            host: e.host.clone(),
        });
    };
    if e.sig.is_empty() {
        return Err(Skip::Unsigned {
            host: e.host.clone(),
        });
    }
    if !key.verifies(&e.signed_bytes(), &e.sig) {
        return Err(Skip::Forged {
            host: e.host.clone(),
        });
    }
    Ok(())
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
    /// The fleet host whose ban of `net` in `set` this is (sync put it
    /// there); None for this host's own scan, capture or admin.
    fn fleet_host(&self, set: &str, net: &IpNet) -> Option<&str>;
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
    /// A network wider than [fleet] min_prefix_v4 / min_prefix_v6.
    TooWide {
        min: u8,
        v6: bool,
    },
    /// The origin host's quota is used, or the set is as full as remote
    /// bans may make it.
    NoRoom(NoRoom),
    /// With [fleet.peers]: a host not among them, an entry without a
    /// signature, one whose signature is not its host's.
    UnknownHost {
        host: String,
    },
    Unsigned {
        host: String,
    },
    Forged {
        host: String,
    },
}

impl Skip {
    /// Refused for its signature (counted apart).
    pub fn is_unsigned(&self) -> bool {
        matches!(
            self,
            Skip::UnknownHost { .. } | Skip::Unsigned { .. } | Skip::Forged { .. }
        )
    }
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
            Skip::TooWide { min, v6 } => write!(
                f,
                "wider than /{min} ([fleet] min_prefix_{})",
                if *v6 { "v6" } else { "v4" }
            ),
            Skip::NoRoom(why) => write!(f, "{why}"),
            Skip::UnknownHost { host } => {
                write!(f, "unsigned: {host} is not in [fleet.peers]")
            }
            Skip::Unsigned { host } => {
                write!(f, "unsigned: no signature, and {host} is in [fleet.peers]")
            }
            Skip::Forged { host } => write!(f, "unsigned: the signature is not {host}'s key's"),
        }
    }
}

/// What `fwctl sync` does with remote entry `e` at `now` on host `me` (its
/// signature is checked before: [`check_signature`]); an add or a removal
/// takes or gives back `room`.
pub fn decide(
    e: &Entry,
    me: &str,
    now: i64,
    fleet: &Fleet,
    policy: &Policy,
    local: &impl Local,
    room: &mut Room,
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
        Op::Unban => match (known, local.fleet_host(&set, &e.addr)) {
            (Known::Absent, _) => Action::Skip(Skip::NotBanned { set }),
            (_, None) => Action::Skip(Skip::LocalBan { set }),
            (_, Some(owner)) => {
                room.give_back(Some(owner), Some(&set));
                Action::Remove { set, net: e.addr }
            }
        },
        Op::Ban => {
            let v6 = e.addr.addr().is_ipv6();
            let min = fleet.min_prefix(v6);
            if e.addr.prefix_len() < min {
                return Action::Skip(Skip::TooWide { min, v6 });
            }
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
                _ => {
                    let owner = match known {
                        Known::Absent => None,
                        _ => local.fleet_host(&set, &e.addr),
                    };
                    if let Err(why) = room.take(&e.host, &set, known == Known::Absent, owner) {
                        return Action::Skip(Skip::NoRoom(why));
                    }
                    Action::Add {
                        set,
                        net: e.addr,
                        secs,
                        until,
                    }
                }
            }
        }
    }
}

/// What `fwctl fleet purge --host NAME` takes out: every running ban the
/// history says `host` published here, in one of `sets` (fwctl's ban sets;
/// a record naming another set is left alone).
pub fn purge_targets(
    history: &crate::core::history::History,
    host: &str,
    now: i64,
    sets: &[String],
) -> Vec<(String, IpNet)> {
    let mut out: Vec<(String, IpNet)> = history
        .iter()
        .filter(|r| r.until > now && r.from.as_deref() == Some(host))
        .filter(|r| sets.contains(&r.set))
        .map(|r| (r.set.clone(), r.addr))
        .collect();
    out.sort();
    out
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

    /// Whether host's event `id` is new (and remember it). Keyed by both:
    /// a peer cannot use up another's ids.
    pub fn first(&mut self, host: &str, id: &str) -> bool {
        let id = format!("{host} {id}");
        if self.ids.contains(&id) {
            return false;
        }
        if self.order.len() >= Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.ids.insert(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fleetsig::SigningKey;
    use std::collections::HashMap;

    fn fleet_with(extra: &str) -> Fleet {
        toml::from_str::<crate::core::config::fleet::RawFleet>(&format!(
            "redis = \"redis://203.0.113.100/\"\naccept = [\"blacklist\", \"throttle-hard\"]\nmax_ban = \"1d\"\n{extra}"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    fn fleet() -> Fleet {
        fleet_with("")
    }

    fn room() -> Room {
        Room::new(1_000_000)
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
            sig: String::new(),
        }
    }

    fn fields_of(e: &Entry) -> Vec<(String, String)> {
        e.fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[derive(Default)]
    struct Here {
        known: HashMap<(String, IpNet), Known>,
        fleet: HashMap<IpNet, String>,
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
        fn fleet_host(&self, _: &str, net: &IpNet) -> Option<&str> {
            self.fleet.get(net).map(String::as_str)
        }
    }

    fn skip(a: Action) -> String {
        match a {
            Action::Skip(s) => s.to_string(),
            a => panic!("not skipped: {a:?}"),
        }
    }

    #[test]
    fn fields_round_trip_and_garbage_is_skipped_with_the_reason() {
        let e = ban("2001:db8:bad::/64", "web-1", 1_796_000_000, 3600);
        let f = fields_of(&e);
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
        // A line of before signatures (13 fields) still reads, unsigned.
        let old = line.trim_end().rsplit_once('\t').unwrap().0.to_string();
        assert_eq!(Entry::from_line(&old).unwrap().sig, "");
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
            (
                "reason",
                "x\nfwctl: sync: applied",
                "\"reason\" holds control characters",
            ),
            ("fwctl", "1\u{1b}[2J", "\"fwctl\" holds control characters"),
        ] {
            let err = with(k, v);
            assert!(err.why.contains(want) && !err.oversized, "{k}={v}: {err}");
        }
        let missing: Vec<(String, String)> =
            f.iter().filter(|(k, _)| k != "until").cloned().collect();
        assert_eq!(
            Entry::from_fields(&missing).unwrap_err().why,
            "no \"until\" field"
        );
        assert!(Entry::from_fields(&[]).is_err());
    }

    /// Ten entries with a 20 MB reason took sync to 451 MB: every field and
    /// the whole entry are bounded, and what is over is skipped as oversized.
    #[test]
    fn an_oversized_field_or_entry_is_skipped_and_said_oversized() {
        let e = ban("203.0.113.5", "web-1", 1_796_000_000, 3600);
        let f = fields_of(&e);
        let with = |k: &str, v: String| {
            let mut g = f.clone();
            match g.iter_mut().find(|(f, _)| f == k) {
                Some(x) => x.1 = v,
                None => g.push((k.into(), v)),
            }
            Entry::from_fields(&g)
        };
        let huge = with("reason", "x".repeat(20 << 20)).unwrap_err();
        assert!(huge.oversized, "{huge}");
        assert!(huge.why.contains("bytes (at most 1024)"), "{huge}");
        let long = with("reason", "x".repeat(MAX_REASON + 1)).unwrap_err();
        assert!(
            long.oversized && long.why.contains("\"reason\" is 257 bytes (at most 256)"),
            "{long}"
        );
        assert_eq!(
            with("reason", "x".repeat(MAX_REASON)).unwrap().reason.len(),
            256
        );
        let host = with("host", "h".repeat(129)).unwrap_err();
        assert!(host.oversized && host.why.contains("\"host\""), "{host}");
        // Many small fields, and a big unknown one.
        let mut many = f.clone();
        for i in 0..40 {
            many.push((format!("x{i}"), String::new()));
        }
        assert!(Entry::from_fields(&many)
            .unwrap_err()
            .why
            .contains("fields (at most 32)"));
        assert!(with("junk", "j".repeat(900)).unwrap_err().oversized);
        // What a bounded read did not fetch.
        let marker = vec![(OVERSIZED.to_string(), "20971700".to_string())];
        let m = Entry::from_fields(&marker).unwrap_err();
        assert!(m.oversized && m.why.contains("20971700 bytes"), "{m}");
        // This host's own reasons are cut to fit, on a character's edge.
        let mine = publishable_reason(&format!("{}\tend", "é".repeat(200)));
        assert!(mine.len() <= MAX_REASON && !mine.contains('\t'));
        assert!(mine.starts_with("éé"));
        assert_eq!(publishable_reason("SYN\nscan"), "SYN scan");
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
        let d = |e: &Entry, here: &Here| decide(e, "web-2", now, &f, &policy, here, &mut room());
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

    /// A remote `2000::/3` or `1.0.0.0/8` was applied: all global IPv6
    /// dropped. Networks wider than the minimum prefix are refused, and so is
    /// any network that covers an address never banned here.
    #[test]
    fn a_network_wider_than_the_minimum_prefix_or_over_a_never_ban_address_is_refused() {
        let now = 1_796_000_100;
        let policy = Policy {
            own: vec!["198.51.100.1".parse().unwrap()],
            trusted: vec!["2001:db8:1::/48".parse().unwrap()],
            ..Policy::default()
        };
        let here = Here::default();
        let d = |f: &Fleet, addr: &str| {
            decide(
                &ban(addr, "web-1", now, 60),
                "web-2",
                now,
                f,
                &policy,
                &here,
                &mut room(),
            )
        };
        let f = fleet();
        assert_eq!(
            skip(d(&f, "2000::/3")),
            "wider than /48 ([fleet] min_prefix_v6)"
        );
        assert_eq!(
            skip(d(&f, "1.0.0.0/8")),
            "wider than /24 ([fleet] min_prefix_v4)"
        );
        assert!(skip(d(&f, "203.0.112.0/23")).contains("wider than /24"));
        assert!(matches!(d(&f, "203.0.113.0/24"), Action::Add { .. }));
        assert!(matches!(d(&f, "2001:db8:bad::/48"), Action::Add { .. }));
        // Wider minimums let wider networks through, never over a never-ban address.
        let wide = fleet_with("min_prefix_v4 = 0\nmin_prefix_v6 = 0");
        assert!(matches!(d(&wide, "3000::/4"), Action::Add { .. }));
        assert!(
            skip(d(&wide, "2000::/3")).contains("trusted"),
            "covers 2001:db8:1::/48"
        );
        assert!(matches!(d(&wide, "1.0.0.0/8"), Action::Add { .. }));
        assert!(skip(d(&wide, "198.51.0.0/16")).contains("covers 198.51.100.1"));
        assert!(skip(d(&wide, "2001:db8::/32")).contains("trusted"));
        assert!(
            skip(d(&wide, "96.0.0.0/3")).contains("loopback"),
            "covers 127.0.0.0/8"
        );
        assert!(
            skip(d(&wide, "192.0.0.0/2")).contains("not a unicast"),
            "covers 224.0.0.0/4"
        );
        assert!(
            skip(d(&wide, "fe00::/7")).contains("not a unicast"),
            "covers ff00::/8"
        );
    }

    /// 1 100 remote entries filled a set of maxelem 1 024, and then a local
    /// ban failed "Hash is full": remote bans keep to a quota per origin host
    /// and never fill the last quarter of a set.
    #[test]
    fn remote_bans_keep_to_their_host_quota_and_leave_a_quarter_of_each_set() {
        let (f, now, policy) = (fleet(), 1_796_000_100, Policy::default());
        let mut here = Here::default();
        let mut room = Room::new(3);
        room.fill("blacklist", 2, 8);
        assert_eq!(Room::cap(8), 6);
        assert_eq!(Room::cap(1024), 768);
        let d = |e: &Entry, here: &Here, room: &mut Room| {
            decide(e, "web-2", now, &f, &policy, here, room)
        };
        let b = |n: u8, host: &str| ban(&format!("203.0.113.{n}"), host, now, 600);
        for n in 1..=3 {
            assert!(matches!(
                d(&b(n, "x"), &here, &mut room),
                Action::Add { .. }
            ));
        }
        assert_eq!(
            skip(d(&b(4, "x"), &here, &mut room)),
            "over quota: x has 3 running bans here ([fleet] max_entries_per_host)"
        );
        // Another host fills the set to three quarters (2 + 3 + 1 = 6 of 8).
        assert!(matches!(
            d(&b(5, "y"), &here, &mut room),
            Action::Add { .. }
        ));
        assert!(skip(d(&b(6, "y"), &here, &mut room)).starts_with("no room: blacklist holds 6"));
        assert_eq!(room.fills()["blacklist"], (6, 8));
        // Lengthening a member the set holds takes no new room; an unban
        // of a fleet ban gives its room back.
        let a5 = parse_addr("203.0.113.5").unwrap();
        here.known
            .insert(("blacklist".into(), a5), Known::Until(now + 10));
        here.fleet.insert(a5, "y".into());
        assert!(matches!(
            d(&b(5, "y"), &here, &mut room),
            Action::Add { .. }
        ));
        let mut un = b(5, "y");
        un.op = Op::Unban;
        assert!(matches!(d(&un, &here, &mut room), Action::Remove { .. }));
        assert_eq!(room.fills()["blacklist"], (5, 8));
        assert!(matches!(
            d(&b(6, "y"), &here, &mut room),
            Action::Add { .. }
        ));
        // The running bans a host has here already count.
        let mut r = Room::new(1);
        r.count("z");
        assert!(skip(d(&b(9, "z"), &here, &mut r)).starts_with("over quota"));
    }

    /// Anyone who can write to Redis could claim any host name: with
    /// [fleet.peers] an entry must carry the signature of the host it names.
    #[test]
    fn with_peers_only_entries_signed_by_the_host_they_name_pass() {
        let k1 = SigningKey::from_seed(&[1u8; 32]).unwrap();
        let k2 = SigningKey::from_seed(&[2u8; 32]).unwrap();
        let f = fleet_with(&format!(
            "[peers]\n\"web-1\" = \"{}\"\n\"web-3\" = \"{}\"",
            k1.public().to_text(),
            k2.public().to_text()
        ));
        let mut e = ban("203.0.113.5", "web-1", 1_796_000_000, 3600);
        // Without peers every entry passes (today's trust in Redis's writers).
        assert_eq!(check_signature(&e, &fleet()), Ok(()));
        let why = |e: &Entry| check_signature(e, &f).unwrap_err().to_string();
        assert_eq!(
            why(&e),
            "unsigned: no signature, and web-1 is in [fleet.peers]"
        );
        e.sign(&k1);
        assert_eq!(check_signature(&e, &f), Ok(()));
        // Through the stream's fields and the index's line, it still verifies.
        let back = Entry::from_fields(&fields_of(&e)).unwrap();
        assert_eq!(check_signature(&back, &f), Ok(()));
        let mut line = String::new();
        e.write_line(&mut line);
        assert_eq!(
            check_signature(&Entry::from_line(&line).unwrap(), &f),
            Ok(())
        );
        // Any field changed after signing: forged.
        for change in [
            |e: &mut Entry| e.addr = parse_addr("203.0.113.6").unwrap(),
            |e: &mut Entry| e.until += 1,
            |e: &mut Entry| e.secs += 1,
            |e: &mut Entry| e.role = "throttle-hard".into(),
            |e: &mut Entry| e.op = Op::Unban,
            |e: &mut Entry| e.reason.push('!'),
            |e: &mut Entry| e.id = "00000000000000a2".into(),
        ] {
            let mut g = e.clone();
            change(&mut g);
            assert_eq!(why(&g), "unsigned: the signature is not web-1's key's");
        }
        // Signed by a peer's key, claiming another peer's name: forged.
        let mut claim = ban("203.0.113.5", "web-1", 1_796_000_000, 3600);
        claim.sign(&k2);
        assert!(why(&claim).contains("not web-1's key's"));
        // A host that is not a peer, signed or not.
        let mut stranger = ban("203.0.113.5", "web-9", 1_796_000_000, 3600);
        stranger.sign(&k1);
        assert_eq!(why(&stranger), "unsigned: web-9 is not in [fleet.peers]");
        assert!(Skip::Forged { host: "a".into() }.is_unsigned());
        assert!(!Skip::Own.is_unsigned());
    }

    #[test]
    fn a_remote_unban_removes_only_what_the_fleet_put_here() {
        let (f, now) = (fleet(), 1_796_000_100);
        let policy = Policy::default();
        let mut here = Here::default();
        let a = parse_addr("203.0.113.8").unwrap();
        let mut un = ban("203.0.113.8", "web-1", now, 60);
        un.op = Op::Unban;
        let d = |here: &Here| decide(&un, "web-2", now, &f, &policy, here, &mut room());
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
        here.fleet.insert(a, "web-1".into());
        assert_eq!(
            d(&here),
            Action::Remove {
                set: "blacklist".into(),
                net: a
            }
        );
    }

    #[test]
    fn a_purge_takes_the_running_bans_one_host_published() {
        use crate::core::history::History;
        let now = 1_796_000_000;
        let mut h = History::default();
        let n = |s: &str| parse_addr(s).unwrap();
        h.record_from(n("203.0.113.1"), "blacklist", 1, now, 600, Some("web-3"));
        h.record_from(n("2001:db8::1"), "blacklist_v6", 1, now, 600, Some("web-3"));
        h.record_from(n("203.0.113.2"), "blacklist", 1, now, 600, Some("web-1"));
        h.record(n("203.0.113.3"), "blacklist", 1, now, 600);
        h.record_from(
            n("203.0.113.4"),
            "blacklist",
            1,
            now - 900,
            600,
            Some("web-3"),
        );
        h.record_from(n("203.0.113.5"), "odd set", 1, now, 600, Some("web-3"));
        let sets: Vec<String> = ["blacklist", "blacklist_v6"].map(String::from).to_vec();
        assert_eq!(
            purge_targets(&h, "web-3", now, &sets),
            vec![
                ("blacklist".to_string(), n("203.0.113.1")),
                ("blacklist_v6".to_string(), n("2001:db8::1")),
            ]
        );
        assert!(purge_targets(&h, "web-9", now, &sets).is_empty());
    }

    #[test]
    fn an_id_is_seen_once_per_host() {
        let mut s = Seen::default();
        assert!(s.first("h", "a") && s.first("h", "b"));
        assert!(!s.first("h", "a"));
        assert!(s.first("other", "a"));
    }
}
