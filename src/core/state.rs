//! The state file's contents (pure): what must outlive a reboot or a
//! restart, since the tmpfs log and the kernel's sets do not. It holds the
//! ban history (every ban with its set and end time, and repeat-offender
//! counts), the last run of each scan rule, and what the last apply
//! installed (to tell drift from a changed config). Reading and writing the
//! file (atomically, under its lock) is the system layer's part.

use super::history::{History, Record};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::core::config::capture::STATE_PATH as DEFAULT_PATH;
pub const STATE_VERSION: u32 = 1;
/// How many distinct scan rules keep their last run.
const MAX_SCAN_RULES: usize = 32;
/// The last run of one scan rule (rule, type and target set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRun {
    pub at: i64,
    pub rule: String,
    pub kind: String,
    pub ipset: String,
    pub lines_matched: u64,
    pub offenders: u64,
    pub added: u64,
    /// (Files written before these existed read them as 0.)
    #[serde(default)]
    pub lines_read: u64,
    #[serde(default)]
    pub lines_malformed: u64,
    #[serde(default)]
    pub duration_ms: u64,
}

/// What the last `fwctl apply` installed: the config it read, a digest of
/// the rules it rendered, and fwctl's rules as the kernel printed them back
/// right after (`iptables-save` form, so a later save compares line by line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub at: i64,
    pub config: PathBuf,
    pub digest: String,
    pub v4: Vec<String>,
    pub v6: Vec<String>,
    /// How many sets it installed.
    #[serde(default)]
    pub sets: usize,
    /// The line form `v4` and `v6` are in ([`crate::core::ruleset::drift::FORM`]):
    /// 0, a record made before nftables' forward base chain was read back,
    /// 1 before its prerouting one was; the lines such a record lacks are
    /// added to it as that apply put them before a comparison
    /// ([`crate::core::ruleset::drift::unrecorded`]).
    #[serde(default)]
    pub form: u32,
}

/// What the last `fwctl status` found, for the metrics (a host that runs
/// no capture still has its set fill and drift in the textfile) and so a
/// drift is told once, not at every check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    pub at: i64,
    pub problems: Vec<String>,
    /// Drift per family (IPv4, IPv6).
    pub drift: [bool; 2],
    /// The drift last notified (its lines), so the same drift is not sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<String>,
    /// fwctl's sets in the kernel: (name, entries, capacity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<(String, u64, u64)>,
}

/// Where `fwctl sync` is in the fleet's stream: the last entry it applied
/// (it goes on from there after a restart, or catches up from the active
/// index when the stream no longer holds it), and its counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCursor {
    pub last_id: String,
    pub applied: u64,
    pub skipped: u64,
    /// Of the skipped: oversized, and refused for their signature.
    #[serde(default)]
    pub oversized: u64,
    #[serde(default)]
    pub unsigned: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub history: History,
    pub scans: Vec<ScanRun>,
    pub applied: Option<Applied>,
    pub status: Option<Checked>,
    pub fleet: Option<FleetCursor>,
    /// AbuseIPDB scores, kept for [reputation] cache.
    pub reputation: crate::core::scan::reputation::Cache,
}

/// The file body.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    bans: Vec<Record>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scans: Vec<ScanRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied: Option<Applied>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Checked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fleet: Option<FleetCursor>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    reputation: crate::core::scan::reputation::Cache,
}

impl State {
    /// Keep `run` as its rule's last run.
    pub fn note_scan(&mut self, run: ScanRun) {
        self.scans
            .retain(|s| (&s.rule, &s.kind, &s.ipset) != (&run.rule, &run.kind, &run.ipset));
        self.scans.push(run);
        if self.scans.len() > MAX_SCAN_RULES {
            self.scans.sort_by_key(|s| std::cmp::Reverse(s.at));
            self.scans.truncate(MAX_SCAN_RULES);
        }
    }
}

/// Why a state file's text is not a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    #[error("{0}")]
    Json(String),
    #[error("unknown version {0}")]
    Version(u32),
}

/// Parse a state file's text.
pub fn parse(text: &[u8]) -> Result<State, Corrupt> {
    let f: StateFile = serde_json::from_slice(text).map_err(|e| Corrupt::Json(e.to_string()))?;
    if f.version != STATE_VERSION {
        return Err(Corrupt::Version(f.version));
    }
    Ok(State {
        history: History::from_records(f.bans),
        scans: f.scans,
        applied: f.applied,
        status: f.status,
        fleet: f.fleet,
        reputation: f.reputation,
    })
}

/// The file's text for a state.
pub fn to_text(state: &State) -> Vec<u8> {
    let body = StateFile {
        version: STATE_VERSION,
        bans: state.history.records(),
        scans: state.scans.clone(),
        applied: state.applied.clone(),
        status: state.status.clone(),
        fleet: state.fleet.clone(),
        reputation: state.reputation.clone(),
    };
    let mut text = serde_json::to_vec_pretty(&body).expect("state serializes");
    text.push(b'\n');
    text
}
