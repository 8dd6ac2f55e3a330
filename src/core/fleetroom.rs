//! The room remote bans have on this host (pure): a quota of running bans
//! per origin host (`[fleet] max_entries_per_host`), and headroom in every
//! set that remote bans never take, so a local ban always finds room
//! whatever the fleet sends (rather than separate sets for remote bans:
//! one set per role keeps the ruleset and what list, unban and status know).

use std::collections::HashMap;
use std::fmt;

/// Why a remote ban finds no room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRoom {
    /// The origin host has `max` running bans here already.
    HostQuota { host: String, max: usize },
    /// The set is as full as remote bans may make it.
    Headroom { set: String, cap: u64 },
}

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoRoom::HostQuota { host, max } => write!(
                f,
                "over quota: {host} has {max} running bans here ([fleet] max_entries_per_host)"
            ),
            NoRoom::Headroom { set, cap } => write!(
                f,
                "no room: {set} holds {cap} members, as many as remote bans may fill ({HEADROOM_PERCENT}% is kept for local bans)"
            ),
        }
    }
}

/// Share of each set that remote bans never take: they stop going in once
/// a set is this full, so a local ban always finds room.
pub const HEADROOM_PERCENT: u64 = 25;

/// The room remote bans have here: a quota of running bans per origin host
/// (`[fleet] max_entries_per_host`), and every set's headroom.
#[derive(Clone, Debug, Default)]
pub struct Room {
    per_host: usize,
    hosts: HashMap<String, usize>,
    /// Per set: (members now, maxelem).
    sets: HashMap<String, (u64, u64)>,
}

impl Room {
    pub fn new(per_host: usize) -> Room {
        Room {
            per_host,
            ..Room::default()
        }
    }

    /// One running ban of `host` here.
    pub fn count(&mut self, host: &str) {
        match self.hosts.get_mut(host) {
            Some(n) => *n += 1,
            None => {
                self.hosts.insert(host.to_string(), 1);
            }
        }
    }

    /// How full a set is (a set not given has no limit here: the kernel's).
    pub fn fill(&mut self, set: &str, members: u64, maxelem: u64) {
        self.sets.insert(set.to_string(), (members, maxelem));
    }

    /// The sets' fill, as the decisions left it.
    pub fn fills(&self) -> &HashMap<String, (u64, u64)> {
        &self.sets
    }

    /// The members a set may hold for a remote ban to still go in.
    pub fn cap(maxelem: u64) -> u64 {
        maxelem - maxelem * HEADROOM_PERCENT / 100
    }

    /// Room for a ban of `host` in `set`: `new_member` when the set does not
    /// hold the address yet, `owner` the fleet host whose ban it is now.
    pub fn take(
        &mut self,
        host: &str,
        set: &str,
        new_member: bool,
        owner: Option<&str>,
    ) -> Result<(), NoRoom> {
        let moves = owner != Some(host);
        if moves && self.hosts.get(host).copied().unwrap_or(0) >= self.per_host {
            return Err(NoRoom::HostQuota {
                host: host.to_string(),
                max: self.per_host,
            });
        }
        if new_member {
            if let Some(&(n, max)) = self.sets.get(set) {
                if n >= Room::cap(max) {
                    return Err(NoRoom::Headroom {
                        set: set.to_string(),
                        cap: Room::cap(max),
                    });
                }
            }
            if let Some(f) = self.sets.get_mut(set) {
                f.0 += 1;
            }
        }
        if moves {
            self.count(host);
            self.give_back(owner, None);
        }
        Ok(())
    }

    /// A ban of `owner` (None: this host's) gone from `set` (None: stays).
    pub fn give_back(&mut self, owner: Option<&str>, set: Option<&str>) {
        if let Some(n) = owner.and_then(|o| self.hosts.get_mut(o)) {
            *n = n.saturating_sub(1);
        }
        if let Some(f) = set.and_then(|s| self.sets.get_mut(s)) {
            f.0 = f.0.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_keeps_to_its_quota_and_a_set_keeps_its_headroom() {
        let mut r = Room::new(2);
        r.fill("s", 0, 4);
        assert_eq!(Room::cap(4), 3);
        assert_eq!(r.take("a", "s", true, None), Ok(()));
        assert_eq!(r.take("a", "s", true, None), Ok(()));
        assert!(matches!(
            r.take("a", "s", true, None),
            Err(NoRoom::HostQuota { max: 2, .. })
        ));
        assert_eq!(r.take("b", "s", true, None), Ok(()));
        let full = r.take("c", "s", true, None).unwrap_err();
        assert_eq!(
            full,
            NoRoom::Headroom {
                set: "s".into(),
                cap: 3
            }
        );
        assert!(full.to_string().contains("25% is kept for local bans"));
        // Taking over a's ban moves it to c and takes no new member.
        assert_eq!(r.take("c", "s", false, Some("a")), Ok(()));
        assert_eq!(
            r.take("a", "t", true, None),
            Ok(()),
            "a has room again; t: no limit"
        );
        r.give_back(Some("b"), Some("s"));
        assert_eq!(r.fills()["s"], (2, 4));
        assert_eq!(r.take("b", "s", true, None), Ok(()));
    }
}
