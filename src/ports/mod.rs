//! The ports: small traits the commands drive, each implemented by the real
//! system in `sys` and by recording fakes in tests (`testing`). Nothing here
//! touches the system itself.

use crate::core::capture::detect::Micros;
use crate::core::capture::engine::{Added, BanFailed};
use crate::core::capture::packet::Link;
use crate::units::addr::Family;
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

/// The kernel's filter tables and sets, as `apply` reads and replaces them.
pub trait Backend {
    /// `iptables-save -t filter` (or ip6tables-save).
    fn save_table(&mut self, family: Family) -> StepResult<String>;
    /// `iptables-restore` with `input`; `noflush` keeps rules fwctl does not own.
    fn restore_table(&mut self, family: Family, input: &str, noflush: bool) -> StepResult<()>;
    /// `ipset save` (every set).
    fn save_sets(&mut self) -> StepResult<String>;
    /// One `ipset restore` run.
    fn restore_sets(&mut self, input: &str) -> StepResult<()>;
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
