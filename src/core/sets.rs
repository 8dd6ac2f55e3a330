//! A kernel set as data: its header, its members with their time left, and
//! the changes a command asks for. The set-store port (`ports::SetStore`)
//! speaks these, so neither core nor the commands ever read a tool's text;
//! they live in core because core's decisions (ban, status, policy) take
//! them as input.

use crate::units::addr::Family;
use ipnet::IpNet;
use std::fmt;

/// What a set holds, as far as fwctl cares: single addresses, networks, or
/// something it cannot put a ban into (kept by the store's own name for it,
/// so a message can say what the set is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holds {
    /// Single addresses (ipset `hash:ip`).
    Addresses,
    /// Addresses and networks (ipset `hash:net`, an nft interval set).
    Networks,
    /// Anything else, e.g. `bitmap:port` or `hash:ip,port`.
    Other(String),
}

impl Holds {
    /// Whether a single address can be added (a ban of one host).
    pub fn takes_addresses(&self) -> bool {
        !matches!(self, Holds::Other(_))
    }
}

impl fmt::Display for Holds {
    /// ipset's name of the type: what people see in `ipset list`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Holds::Addresses => "hash:ip",
            Holds::Networks => "hash:net",
            Holds::Other(s) => s,
        })
    }
}

/// One set's header: what it holds, its family, its capacity, whether its
/// members can carry a timeout (bans need one), and how many it holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetHead {
    pub holds: Holds,
    pub family: Family,
    /// The most members it takes (None: the store named no limit).
    pub maxelem: Option<u64>,
    pub timeout: bool,
    pub entries: u64,
}

/// One member with the seconds it has left; None: no timeout, a member the
/// config put there (a timeout of 0 in a timeout set means the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    pub net: IpNet,
    pub left: Option<u32>,
}

/// One change to a set. A batch of them is applied in one go; adding a
/// member that is there refreshes its timeout, deleting one that is not
/// there is no error (another tool, or its timeout, got there first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// Add `net`, with a timeout in seconds (None: permanent).
    Add {
        set: String,
        net: IpNet,
        timeout: Option<u32>,
    },
    Del {
        set: String,
        net: IpNet,
    },
}

/// A set's whole membership replaced at once (a threat feed's new list):
/// readers see the old members or the new ones, never a half-filled set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refill {
    pub set: String,
    pub family: Family,
    /// The capacity the set is (re)built with.
    pub maxelem: u64,
    pub nets: Vec<IpNet>,
}
