//! The ports: small traits the commands drive, each implemented by the real
//! system in `sys` and by recording fakes in tests (`testing`). Nothing here
//! touches the system itself.

use crate::core::apply::Ban;
use crate::core::capture::detect::Micros;
use crate::core::capture::engine::{Added, BanFailed};
use crate::core::capture::packet::Link;
use crate::core::ruleset::Plan;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt;
use std::io;

/// A step that failed, with the tool's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub step: String,
    pub detail: String,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail.trim().replace('\n', " | ");
        write!(f, "{} failed: {detail}", self.step)
    }
}

impl std::error::Error for StepError {}

pub type StepResult<T> = Result<T, StepError>;

/// A failed install or removal: which step failed, and whether putting
/// things back worked (`check` says where to look by hand if not).
#[derive(Debug)]
pub struct ApplyError {
    pub failed: StepError,
    pub rollback: Result<(), StepError>,
    /// What to check by hand when the rollback failed too.
    pub check: &'static str,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.failed)?;
        match &self.rollback {
            Ok(()) => write!(f, "; the previous rules and sets were put back"),
            Err(e) => write!(
                f,
                "; ROLLBACK ALSO FAILED ({e}): check {} by hand",
                self.check
            ),
        }
    }
}

impl std::error::Error for ApplyError {}

/// fwctl's rules as a backend reads them back from the kernel, one family's
/// in a backend-neutral line form that drift detection compares:
/// `policy INPUT DROP`, `:CHAIN` (a chain of fwctl's exists), `jump at INPUT
/// N` (where the jump to fwctl's main chain sits), `-A CHAIN rule` (each
/// rule of fwctl's chains in order, as the backend's tool prints it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub v4: Vec<String>,
    pub v6: Vec<String>,
    /// What the install found and fixed on its way, for the command to say.
    pub warnings: Vec<String>,
}

/// What an apply will do, worked out from the kernel before anything changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// What a dry run prints: the scripts, in the order they run.
    pub script: String,
    /// Bans in fwctl's sets carried over (kernel and state file), and how
    /// many of them came from the state file.
    pub carried: usize,
    pub restored: usize,
    /// Sets kept as they were without reading their members (nftables:
    /// their config members did not change); their bans, not counted in
    /// `carried`, stay with them.
    pub unread: Vec<String>,
}

/// The kernel's firewall as `apply`, `confirm`, `remove` and `status` drive
/// it, whatever the backend (iptables and ipset, or one nftables table).
/// An install either takes whole or leaves the kernel as it was.
pub trait Firewall {
    /// The backend's name in messages: `iptables` or `nftables`.
    fn name(&self) -> &'static str;
    /// Read the kernel (keeping what was there for [`Firewall::roll_back`])
    /// and work out what installing `plan` runs, carrying the bans the
    /// kernel's sets hold and restoring `bans` they lack. Changes nothing.
    fn prepare(&mut self, plan: &Plan, bans: &[Ban]) -> Result<Prepared, StepError>;
    /// Say, before `prepare`, that a [`Firewall::roll_back`] may follow the
    /// install (`--confirm`): a backend whose snapshot is slow to read
    /// (nft lists every set element) takes it only then.
    fn expect_rollback(&mut self) {}
    /// Say, before `prepare`, that every set is to be read back whole
    /// (`status --repair`: a set was flushed or changed by hand), not
    /// kept unread because its config members did not change (nftables).
    fn read_whole_sets(&mut self) {}
    /// Install what the last `prepare` worked out; on failure put back what
    /// it read. Returns fwctl's rules as the kernel has them now.
    fn install(&mut self, plan: &Plan) -> Result<Installed, ApplyError>;
    /// Put back fwctl's part as the last `prepare` read it, keeping the bans
    /// made since (a confirmation that did not come).
    fn roll_back(&mut self, plan: &Plan) -> Result<(), StepError>;
    /// Take fwctl's rules out (its sets too with `destroy_sets`), leaving
    /// everything else as it is; on failure put back what was there.
    fn remove(&mut self, plan: &Plan, destroy_sets: bool) -> Result<(), ApplyError>;
    /// fwctl's rules as the kernel has them now.
    fn installed(&mut self) -> Result<Installed, StepError>;
}

pub use crate::core::sets::{Holds, Member, Refill, SetHead, SetOp};

/// What the commands ask of the kernel's sets, as data: the store reads and
/// writes its tool's own language (ipset's, nft's) behind this, so no
/// command parses a tool's output or builds its input.
pub trait SetStore {
    /// Every set's header, by name.
    fn heads(&mut self) -> StepResult<BTreeMap<String, SetHead>>;
    /// One set's members with their time left (an error when it is missing).
    fn members(&mut self, set: &str) -> StepResult<Vec<Member>>;
    /// Apply every op in one batch (one process, one transaction): all of
    /// them or, on an error, as the store's tool leaves it. Adding a member
    /// that is there refreshes it; deleting one not there is no error.
    fn change(&mut self, ops: &[SetOp]) -> StepResult<()>;
    /// Replace each set's members whole, all in one batch (a feed's update).
    fn refill(&mut self, fills: &[Refill]) -> StepResult<()>;
}

/// The backend's store, boxed as `sys::firewall::sets` opens it.
impl<S: SetStore + ?Sized> SetStore for Box<S> {
    fn heads(&mut self) -> StepResult<BTreeMap<String, SetHead>> {
        (**self).heads()
    }
    fn members(&mut self, set: &str) -> StepResult<Vec<Member>> {
        (**self).members(set)
    }
    fn change(&mut self, ops: &[SetOp]) -> StepResult<()> {
        (**self).change(ops)
    }
    fn refill(&mut self, fills: &[Refill]) -> StepResult<()> {
        (**self).refill(fills)
    }
}

/// Capture's ban path: one ban, as fast as the kernel takes it.
pub trait Banner {
    fn add(&mut self, set: &str, net: IpNet, secs: u32) -> Result<Added, BanFailed>;
}

/// One received frame.
pub struct Frame<'a> {
    pub link: Link,
    pub data: &'a [u8],
    /// When the kernel received it (µs since the epoch), or the capture
    /// file's timestamp.
    pub time: Micros,
    /// A frame that comes a few after this one (`AHEAD`), empty when the
    /// source has none at hand: for `Engine::warm`.
    pub ahead: &'a [u8],
}

/// How many frames ahead `Frame::ahead` looks: far enough for a cache miss
/// to be done when its frame comes, near enough that the line is still there.
/// A miss to memory is about 170 ns on this VM, two to three frames of a
/// flood: 4 left part of it showing (2 was 85 ns a packet, 4 was 71, 8 69
/// in one run of the live spoofed flood; with the ring's prefetch moved
/// out to match, 8 is 63-67).
pub const AHEAD: usize = 8;

/// What one receive call brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// This many frames (possibly none: the wait timed out).
    Frames(usize),
    /// The source has no more (the end of a capture file).
    End,
}

/// Where capture's frames come from: the live packet socket or a capture file.
pub trait PacketSource {
    /// Hand the next frames to `f`.
    fn recv(&mut self, f: &mut dyn FnMut(Frame)) -> io::Result<Received>;
}

/// The wall clock, in microseconds since the epoch.
pub trait Clock {
    fn now_micros(&self) -> Micros;
}

/// Where notifications go: one HTTP POST, answered (or not) within `timeout`.
pub trait Transport: Send {
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: std::time::Duration,
    ) -> crate::core::notify::Attempt;
}

/// The fleet's link to Redis failed (unreachable, refused, wrong password,
/// a reply that makes no sense); said in words, never with the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(pub String);

/// A stream entry as read: its id and its fields.
pub type StreamEntry = (String, Vec<(String, String)>);

/// The fleet's shared record of bans: an append-only stream of entries and
/// an index of the bans still running.
pub trait FleetLink: Send {
    /// Append each entry to the stream and update the active index (a ban
    /// adds or lengthens its member, an unban removes it).
    fn publish(&mut self, entries: &[crate::core::fleet::Entry]) -> Result<(), FleetError>;
    /// The newest entry's id ("0-0" for an empty stream).
    fn last_id(&mut self) -> Result<String, FleetError>;
    /// Whether the stream still reaches back to `id` (not trimmed past it).
    fn reaches(&mut self, id: &str) -> Result<bool, FleetError>;
    /// Up to `count` entries after `id`, waiting up to `block` for the first.
    fn read_after(
        &mut self,
        id: &str,
        block: std::time::Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, FleetError>;
    /// The fields of every ban the index holds that ends after `now`,
    /// handed to `page` a bounded page at a time (one written meanwhile
    /// may come twice).
    fn active(
        &mut self,
        now: i64,
        page: &mut dyn FnMut(Vec<Vec<(String, String)>>),
    ) -> Result<(), FleetError>;
    /// Take every ban whose entry names `host` out of the index; returns
    /// how many.
    fn purge_host(&mut self, host: &str) -> Result<u64, FleetError>;
}

/// A reputation service's verdict on an address: its score (0-100), or why
/// there is none; `fatal` when asking again this run is pointless (the
/// service is down, refuses the key, or rate-limits).
pub trait ReputationCheck {
    fn check(&mut self, addr: std::net::IpAddr) -> Verdict;
}

/// A score, or why none and whether it is worth asking again this run.
pub type Verdict = Result<u8, (String, bool)>;

/// The kernel's socket table could not be read, nor the session's
/// `SSH_CONNECTION`; said in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConnError(pub String);

/// The established TCP connections into this host (to a port something
/// listens on), in the caller's network namespace.
pub trait Connections {
    /// Every such connection, or only those to `ports` when given.
    fn established(
        &mut self,
        ports: Option<&[u16]>,
    ) -> Result<crate::core::conns::Established, ConnError>;
}

/// What the `[geo]` databases say of an address (`sys::geodb::Db`); an
/// address neither holds, or a lookup that fails, is an empty `Info`.
pub trait GeoLookup {
    fn lookup(&self, addr: std::net::IpAddr) -> crate::core::geo::Info;
}
