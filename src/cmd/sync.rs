//! `fwctl sync`: the service that applies the fleet's bans here. At start it
//! catches up from the active index (every running ban, with the time it has
//! left), then follows the stream from the last entry it applied (kept in the
//! state file), so the unbans made while it was away are applied too. Each
//! entry is validated and put through this host's policy (`core::fleet`);
//! what passes goes into the sets in one batch of set changes per batch of entries.
//! It reconnects with backoff, and it publishes what this host's own
//! commands left in the fleet outbox while Redis was away.

use super::fleet::{Member, Publisher};
use super::notify::{Life, NOTIFY_WAIT};
use super::{say, Invocation};
use crate::core::ban::{check_ban_sets, sets_named};
use crate::core::config::Config;
use crate::core::fleet::{self, check_signature, decide, Action, Entry, Known, Local, Seen};
use crate::core::fleetroom::Room;
use crate::core::history::History;
use crate::core::policy::{Members, Policy};
use crate::core::state::FleetCursor;
use crate::ports::{FleetError, FleetLink, SetOp, SetStore, StreamEntry};
use crate::sys::firewall;
use crate::sys::{host, lock, statefile};
use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one XREAD waits for entries (and so how soon a stop is seen).
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries read at a time.
const COUNT: usize = 5000;
/// Entries logged one by one in a batch; a bigger batch is summarised.
const LOG_EACH: usize = 20;

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Runs until SIGTERM; systemd/fwctl-sync.service runs it as a service.
Status: `fwctl status` (connected, lag, last entry, applied, skipped).

Examples:
  fwctl sync
  fwctl --config /etc/fwctl/fwctl.toml sync")]
pub struct Options {}

/// What sync tells `fwctl status`, in the run directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncStatus {
    pub pid: u32,
    pub connected: bool,
    pub redis: String,
    pub stream: String,
    pub host: String,
    /// The last entry applied, when it was written (ms) and how long after.
    pub last_id: String,
    pub last_entry_ms: u64,
    pub lag_ms: u64,
    pub applied: u64,
    pub skipped: u64,
    /// Of the skipped: entries over the size limits, and entries refused
    /// for their signature ([fleet.peers]: unsigned, forged, unknown host).
    #[serde(default)]
    pub oversized: u64,
    #[serde(default)]
    pub unsigned: u64,
    pub catch_ups: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub updated: i64,
}

pub fn status_path() -> PathBuf {
    lock::run_dir().join("sync.json")
}

pub fn lock_path() -> PathBuf {
    lock::run_dir().join("sync.pid")
}

/// The status a running sync left, if one runs.
pub fn read_status() -> Option<(String, SyncStatus)> {
    let pid = lock::holder(&lock_path())?;
    let st = std::fs::read(status_path())
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default();
    Some((pid, st))
}

pub fn run(_o: &Options, inv: &Invocation) -> Result<()> {
    let cfg = inv.load()?;
    let member = Member::of(&cfg)?.ok_or_else(|| {
        anyhow!(
            "{} has no [fleet] section; fix: add one: [fleet] redis = \"redis://HOST:6379/0\" (and password_file)",
            cfg.path.display()
        )
    })?;
    if !host::is_root() {
        bail!(
            "fwctl sync changes the kernel's ipsets and must run as root; fix: {}",
            inv.fix("sync")
        );
    }
    let mut sys = firewall::sets(cfg.firewall.backend)?;
    let headers = sys.heads()?;
    for role in &member.fleet.accept {
        let twins = sets_named(&cfg, role)?;
        let twins = [twins[0].clone(), twins[1].clone()];
        check_ban_sets(
            &twins,
            &headers,
            &inv.fix("apply"),
            "or narrow [fleet] accept",
        )?;
    }
    lock::ensure_run_dir(&lock::run_dir())?;
    let _running = match lock::acquire_file(&lock_path(), Duration::ZERO) {
        Ok(l) => l,
        Err(lock::LockError::Held { pid, .. }) => bail!(
            "fwctl sync is already running{}; fix: stop it first (systemctl stop fwctl-sync)",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Err(e) => return Err(e.into()),
    };
    let state_path = cfg.state_path(inv.state());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
    }
    let publisher = Publisher::with_member(member.clone(), &state_path, Life::Service);
    let mut s = Sync::new(cfg, member, state_path, sys)?;
    say!(
        "fwctl: sync as {} with {} stream {} (accepting {}; remote bans at most {})",
        s.member.host,
        s.member.fleet.redis,
        s.member.fleet.stream,
        s.member.fleet.accept.join(", "),
        crate::units::duration::human(s.member.fleet.max_ban)
    );
    let result = s.run(&stop);
    s.save(true);
    s.status.connected = false;
    s.write_status();
    publisher.finish(NOTIFY_WAIT);
    say!(
        "fwctl: sync stopped: {} applied, {} skipped ({} oversized, {} unsigned or forged)",
        s.status.applied,
        s.status.skipped,
        s.status.oversized,
        s.status.unsigned
    );
    result
}

struct Sync {
    cfg: Config,
    member: Member,
    state_path: PathBuf,
    sys: Box<dyn SetStore + Send>,
    policy: Policy,
    /// What the kernel and the state file say each (set, address) holds.
    known: HashMap<(String, IpNet), Known>,
    /// Each accepted set's (members, maxelem), and when the kernel was last
    /// asked: remote bans leave every set's headroom free.
    fill: HashMap<String, (u64, u64)>,
    last_fill: Option<Instant>,
    history: History,
    dirty: bool,
    seen: Seen,
    cursor: Option<String>,
    status: SyncStatus,
    last_save: Instant,
    last_refresh: Option<Instant>,
    last_status: Instant,
}

/// Each entry's signature checked ([fleet.peers]; this host's own entries
/// pass). A catch-up checks thousands (about 50 µs each): on every core.
fn signatures(entries: &[Entry], m: &Member) -> Vec<Result<(), fleet::Skip>> {
    let check = |e: &Entry| {
        if e.host == m.host {
            Ok(())
        } else {
            check_signature(e, &m.fleet)
        }
    };
    if m.fleet.peers.is_empty() || entries.len() < 256 {
        return entries.iter().map(check).collect();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunk = entries.len().div_ceil(cores);
    std::thread::scope(|s| {
        let parts: Vec<_> = entries
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(check).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("a signature check does not panic"))
            .collect()
    })
}

/// An entry as read: its fields, and what to call it in a message.
trait Read {
    fn fields(&self) -> &[(String, String)];
    fn label(&self) -> String;
}

impl Read for StreamEntry {
    fn fields(&self) -> &[(String, String)] {
        &self.1
    }
    fn label(&self) -> String {
        format!("stream entry {}", self.0)
    }
}

impl Read for Vec<(String, String)> {
    fn fields(&self) -> &[(String, String)] {
        self
    }
    fn label(&self) -> String {
        "an active-index entry".into()
    }
}

/// The view `core::fleet::decide` needs of this host.
struct Here<'a> {
    cfg: &'a Config,
    known: &'a HashMap<(String, IpNet), Known>,
    history: &'a History,
}

impl Local for Here<'_> {
    fn set_for(&self, role: &str, v6: bool) -> String {
        sets_named(self.cfg, role)
            .ok()
            .and_then(|v| v.get(usize::from(v6)).cloned())
            .unwrap_or_else(|| role.to_string())
    }

    fn known(&self, set: &str, net: &IpNet) -> Known {
        self.known
            .get(&(set.to_string(), *net))
            .copied()
            .unwrap_or(Known::Absent)
    }

    fn fleet_host(&self, set: &str, net: &IpNet) -> Option<&str> {
        self.history
            .get(net)
            .filter(|r| r.set == set)
            .and_then(|r| r.from.as_deref())
    }
}

impl Sync {
    fn new(
        cfg: Config,
        member: Member,
        state_path: PathBuf,
        sys: Box<dyn SetStore + Send>,
    ) -> Result<Sync> {
        let loaded = statefile::load(&state_path, host::now()).with_context(|| {
            format!(
                "the state file {} must be readable; fix: check it, or pass --state",
                state_path.display()
            )
        })?;
        if let Some(w) = &loaded.warning {
            say!("fwctl: warning: {w}");
        }
        let cursor = loaded.state.fleet.as_ref().map(|f| f.last_id.clone());
        let counts = loaded.state.fleet.clone().unwrap_or_default();
        let status = SyncStatus {
            pid: std::process::id(),
            redis: member.fleet.redis.clone(),
            stream: member.fleet.stream.clone(),
            host: member.host.clone(),
            last_id: counts.last_id.clone(),
            applied: counts.applied,
            skipped: counts.skipped,
            oversized: counts.oversized,
            unsigned: counts.unsigned,
            ..SyncStatus::default()
        };
        Ok(Sync {
            policy: Policy {
                trusted: cfg.trusted.clone(),
                whitelist_name: cfg.sets.whitelist.to_string(),
                ..Policy::default()
            },
            cfg,
            member,
            state_path,
            sys,
            known: HashMap::new(),
            fill: HashMap::new(),
            last_fill: None,
            history: loaded.state.history,
            dirty: false,
            seen: Seen::default(),
            cursor,
            status,
            last_save: Instant::now(),
            last_refresh: None,
            last_status: Instant::now(),
        })
    }

    /// Until stopped: connect, catch up, follow; reconnect with backoff.
    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut backoff = Duration::from_millis(500);
        let mut first = true;
        let mut down = false;
        while !stop.load(Ordering::Relaxed) {
            match self.member.connect(Duration::from_secs(5)) {
                Ok(mut link) => {
                    if down {
                        say!("fwctl: sync: connected to Redis again");
                    }
                    down = false;
                    backoff = Duration::from_millis(500);
                    self.status.connected = true;
                    self.status.error = None;
                    self.write_status();
                    let r = self.session(&mut link, first, stop);
                    first = false;
                    if let Err(e) = r {
                        say!("fwctl: sync: {e}; reconnecting");
                        down = true;
                        self.status.connected = false;
                        self.status.error = Some(e.0);
                        self.write_status();
                    }
                }
                Err(e) => {
                    if !down {
                        say!("fwctl: sync: {e}; retrying with backoff (up to 30 s)");
                        down = true;
                    }
                    self.status.connected = false;
                    self.status.error = Some(e.0);
                    self.write_status();
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        self.housekeeping();
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        Ok(())
    }

    /// One connection's life: catch up when needed, then follow.
    fn session(
        &mut self,
        link: &mut impl FleetLink,
        first: bool,
        stop: &AtomicBool,
    ) -> Result<(), FleetError> {
        self.refresh();
        let reaches = match &self.cursor {
            Some(c) => link.reaches(c)?,
            None => false,
        };
        if first || !reaches {
            let from = self.catch_up(link)?;
            // From the last entry applied if the stream still holds it
            // (the unbans made meanwhile), else from where the index stood.
            if !reaches {
                self.cursor = Some(from);
            }
        }
        while !stop.load(Ordering::Relaxed) {
            let cursor = self.cursor.clone().unwrap_or_else(|| "0-0".into());
            let entries = link.read_after(&cursor, BLOCK, COUNT)?;
            if !entries.is_empty() {
                self.apply_stream(entries);
            }
            self.housekeeping();
        }
        Ok(())
    }

    /// Every running ban of the index, applied a page at a time; returns
    /// the stream's last id as it was before the index was read.
    fn catch_up(&mut self, link: &mut impl FleetLink) -> Result<String, FleetError> {
        let last = link.last_id()?;
        let now = host::now();
        let (mut running, mut applied, mut skipped) = (0usize, 0u64, 0u64);
        link.active(now, &mut |page| {
            running += page.len();
            let entries = self.valid(&page);
            let (a, s) = self.apply(entries, "catch-up");
            applied += a;
            skipped += s;
        })?;
        self.status.catch_ups += 1;
        say!(
            "fwctl: sync: caught up from the active index: {running} running bans, {applied} applied, {skipped} skipped"
        );
        self.save(true);
        Ok(last)
    }

    /// The entries that parse and fit; each other one is skipped, counted
    /// (oversized ones apart) and, the first few, said.
    fn valid(&mut self, read: &[impl Read]) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(read.len());
        let (mut garbage, mut over) = (0u64, 0u64);
        for r in read {
            match Entry::from_fields(r.fields()) {
                Ok(e) => entries.push(e),
                Err(why) => {
                    garbage += 1;
                    if why.oversized {
                        over += 1;
                    }
                    if garbage <= LOG_EACH as u64 {
                        say!("fwctl: sync: skipped {}: {why}", r.label());
                    }
                }
            }
        }
        if garbage > LOG_EACH as u64 {
            say!("fwctl: sync: skipped {garbage} malformed entries in all ({over} oversized)");
        }
        self.status.skipped += garbage;
        self.status.oversized += over;
        entries
    }

    /// Entries read from the stream: validated, decided, applied.
    fn apply_stream(&mut self, read: Vec<StreamEntry>) {
        let last = read.last().map(|(id, _)| id.clone());
        let entries = self.valid(&read);
        self.apply(entries, "stream");
        if let Some(id) = last {
            let ms: u64 = id
                .split('-')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            self.status.last_entry_ms = ms;
            self.status.lag_ms = (host::now_micros() / 1000).saturating_sub(ms);
            self.status.last_id = id.clone();
            self.cursor = Some(id);
            self.dirty = true;
        }
        // `fwctl status` sees each batch at once (a small file).
        self.write_status();
    }

    /// Decide and apply entries in one kernel change. Returns (applied, skipped).
    fn apply(&mut self, entries: Vec<Entry>, what: &str) -> (u64, u64) {
        let now = host::now();
        self.read_fill(false);
        let mut room = Room::new(self.member.fleet.max_entries_per_host);
        for r in self.history.iter().filter(|r| r.until > now) {
            if let Some(h) = &r.from {
                room.count(h);
            }
        }
        for (set, (n, max)) in &self.fill {
            room.fill(set, *n, *max);
        }
        let mut actions: Vec<(Entry, Action)> = Vec::with_capacity(entries.len());
        {
            let here = Here {
                cfg: &self.cfg,
                known: &self.known,
                history: &self.history,
            };
            let signed = signatures(&entries, &self.member);
            for (e, signed) in entries.into_iter().zip(signed) {
                // Before its id is remembered: a forged entry cannot take
                // the id of a real one to come.
                if let Err(why) = signed {
                    actions.push((e, Action::Skip(why)));
                    continue;
                }
                // The same event again (a retried publish, the index and the
                // stream both): once is enough.
                if !self.seen.first(&e.host, &e.id) {
                    continue;
                }
                let a = decide(
                    &e,
                    &self.member.host,
                    now,
                    &self.member.fleet,
                    &self.policy,
                    &here,
                    &mut room,
                );
                actions.push((e, a));
            }
        }
        let ops: Vec<SetOp> = actions
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Add { set, net, secs, .. } => Some(SetOp::Add {
                    set: set.clone(),
                    net: *net,
                    // decide() caps a fleet ban's time far below this.
                    timeout: Some(u32::try_from(*secs).unwrap_or(u32::MAX)),
                }),
                Action::Remove { set, net } => Some(SetOp::Del {
                    set: set.clone(),
                    net: *net,
                }),
                Action::Skip(_) => None,
            })
            .collect();
        let failed = if ops.is_empty() {
            None
        } else {
            self.sys.change(&ops).err().map(|e| e.to_string())
        };
        if let Some(e) = &failed {
            say!("fwctl: sync: the kernel refused the {what} batch: {e}");
            // Ask the kernel how full the sets are before the next batch.
            self.last_fill = None;
        } else {
            self.fill = room.fills().clone();
        }
        let (mut applied, mut skipped) = (0u64, 0u64);
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let each = actions.len() <= LOG_EACH;
        for (e, a) in &actions {
            match a {
                Action::Skip(fleet::Skip::Own) => {}
                Action::Skip(why) => {
                    skipped += 1;
                    if why.is_unsigned() {
                        self.status.unsigned += 1;
                    }
                    if each {
                        say!("fwctl: sync: skipped {}: {why}", fleet::describe(e));
                    } else {
                        let kind = why.to_string();
                        let kind = kind
                            .split([':', '('])
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        *reasons.entry(kind).or_default() += 1;
                    }
                }
                _ if failed.is_some() => skipped += 1,
                Action::Add {
                    set,
                    net,
                    secs,
                    until,
                } => {
                    applied += 1;
                    self.known.insert((set.clone(), *net), Known::Until(*until));
                    self.history.record_from(
                        *net,
                        set,
                        e.offence.max(1),
                        now,
                        *secs,
                        Some(&e.host),
                    );
                    // The remote host's words, signed by it: kept as its
                    // claim (escaped and cut like any evidence).
                    let why = crate::core::history::Why {
                        origin: "fleet".into(),
                        rule: format!("{} on {}", e.origin, e.host),
                        hits: 0,
                        window_s: 0,
                        first: e.at,
                        last: e.at,
                        evidence: vec![format!("{}: {}", e.host, e.reason)],
                    };
                    self.history.explain(net, why, self.cfg.evidence);
                    self.dirty = true;
                    if each {
                        say!("fwctl: sync: applied {}", fleet::describe(e));
                    }
                }
                Action::Remove { set, net } => {
                    applied += 1;
                    self.known.remove(&(set.clone(), *net));
                    self.history.end(net, now);
                    self.dirty = true;
                    if each {
                        say!("fwctl: sync: applied {}", fleet::describe(e));
                    }
                }
            }
        }
        if !each && (applied > 0 || skipped > 0) {
            let why: Vec<String> = reasons.iter().map(|(k, n)| format!("{n} {k}")).collect();
            say!(
                "fwctl: sync: {what}: {applied} applied, {skipped} skipped{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join(", "))
                }
            );
        }
        self.status.applied += applied;
        self.status.skipped += skipped;
        (applied, skipped)
    }

    /// Now and then: the history to the state file (at most once a second),
    /// the policy's facts and the kernel's sets (every 30 s), the status file.
    fn housekeeping(&mut self) {
        if self.last_save.elapsed() >= Duration::from_secs(1) {
            self.save(false);
        }
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            self.refresh();
        }
        if self.last_status.elapsed() >= Duration::from_secs(2) {
            self.write_status();
        }
    }

    /// How full each accepted set is, from the kernel (at most once a
    /// second unless `force`; between reads the decisions count their adds).
    fn read_fill(&mut self, force: bool) {
        if !force
            && self
                .last_fill
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_fill = Some(Instant::now());
        let Ok(headers) = self.sys.heads() else {
            return;
        };
        let mut fill = HashMap::new();
        for role in &self.member.fleet.accept {
            for set in sets_named(&self.cfg, role).unwrap_or_default() {
                if let Some(h) = headers.get(&set) {
                    // ipset's default when a header names none.
                    fill.insert(set, (h.entries, h.maxelem.unwrap_or(65_536)));
                }
            }
        }
        self.fill = fill;
    }

    /// This host's addresses, the whitelist sets, and what the ban sets hold.
    fn refresh(&mut self) {
        let now = host::now();
        self.policy.own = host::own_addresses();
        let mut wl = Members::default();
        for v6 in [false, true] {
            if let Ok(m) = self.sys.members(&self.cfg.sets.whitelist.for_family(v6)) {
                wl.extend(Members::of(&m));
            }
        }
        self.policy.whitelist = wl;
        let mut known = HashMap::new();
        for role in &self.member.fleet.accept {
            for set in sets_named(&self.cfg, role).unwrap_or_default() {
                let Ok(members) = self.sys.members(&set) else {
                    continue;
                };
                for m in members {
                    let k = match m.left {
                        Some(secs) => Known::Until(now + i64::from(secs)),
                        None => Known::Permanent,
                    };
                    known.insert((set.clone(), m.net), k);
                }
            }
        }
        // And the bans this host's own commands recorded.
        for r in self.history.active(now) {
            let k = (r.set.clone(), r.addr);
            if let Some(Known::Until(u)) = known.get(&k) {
                if *u >= r.until {
                    continue;
                }
            }
            if !matches!(known.get(&k), Some(Known::Permanent)) {
                known.insert(k, Known::Until(r.until));
            }
        }
        self.known = known;
        self.read_fill(true);
        self.last_refresh = Some(Instant::now());
    }

    /// Merge the history with the file's (other commands' bans meanwhile
    /// win where newer) and write it with the cursor. `force`: even if
    /// nothing changed here.
    fn save(&mut self, force: bool) {
        self.last_save = Instant::now();
        if !self.dirty && !force {
            return;
        }
        let now = host::now();
        let cursor = FleetCursor {
            last_id: self.status.last_id.clone(),
            applied: self.status.applied,
            skipped: self.status.skipped,
            oversized: self.status.oversized,
            unsigned: self.status.unsigned,
        };
        let mem = std::mem::take(&mut self.history);
        match statefile::update_state(&self.state_path, now, |st| {
            st.history.merge(&mem);
            st.history.prune(now);
            st.fleet = Some(cursor);
        }) {
            Ok((written, _)) => {
                // Bans other commands made here are longer-lived knowledge.
                for r in written.history.active(now) {
                    let k = (r.set.clone(), r.addr);
                    let longer = match self.known.get(&k) {
                        Some(Known::Until(u)) => r.until > *u,
                        Some(Known::Permanent) => false,
                        _ => true,
                    };
                    if longer {
                        self.known.insert(k, Known::Until(r.until));
                    }
                }
                self.history = written.history;
                self.dirty = false;
            }
            Err(e) => {
                self.history = mem;
                say!("fwctl: sync: warning: {e:#}; the bans are in the kernel, the state file is written when it can be");
            }
        }
    }

    fn write_status(&mut self) {
        self.last_status = Instant::now();
        self.status.updated = host::now();
        let path = status_path();
        let text = serde_json::to_vec_pretty(&self.status).expect("plain data");
        let dir = path.parent().unwrap_or(Path::new("."));
        let r = tempfile::NamedTempFile::new_in(dir).and_then(|mut t| {
            use std::io::Write;
            t.write_all(&text)?;
            t.persist(&path).map(drop).map_err(|e| e.error)
        });
        if let Err(e) = r {
            say!("fwctl: sync: warning: cannot write {}: {e}", path.display());
        }
    }
}
