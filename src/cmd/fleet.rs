//! Publishing this host's bans to the fleet. Banning never waits on Redis:
//! a [`Publisher`] takes entries into a queue served by a thread of its own,
//! which connects, publishes (oldest first: what waited in the fleet outbox
//! goes before the new), and on any failure puts what it could not publish
//! in the outbox. A command that ends (scan, ban, unban) waits a short
//! deadline for it; a service (capture, sync) reconnects with backoff and
//! drains the outbox when Redis is back.

use super::notify::Life;
use super::say;
use crate::core::config::fleet::Fleet;
use crate::core::config::Config;
use crate::core::fleet::{publishable_reason, Entry, Op};
use crate::core::fleetsig::SigningKey;
use crate::ports::FleetLink;
use crate::sys::{fleetbox, fleetkey, host, redis, secret};
use anyhow::{anyhow, Result};
use ipnet::IpNet;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a command that ends waits for its bans to reach Redis.
pub const FLEET_WAIT: Duration = Duration::from_secs(2);
/// Entries per MULTI/EXEC: a deadline cuts at most this many short.
const CHUNK: usize = 2000;
/// A service's longest wait between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The fleet section, this host's name in it, the Redis password and the
/// key this host signs its entries with.
#[derive(Clone)]
pub struct Member {
    pub fleet: Fleet,
    pub host: String,
    pub password: Option<String>,
    pub key: Option<SigningKey>,
}

impl Member {
    /// None without [fleet]; an error for a bad password file, before
    /// anything is changed.
    pub fn of(cfg: &Config) -> Result<Option<Member>> {
        let Some(fleet) = &cfg.fleet else {
            return Ok(None);
        };
        let password = match &fleet.password_file {
            Some(p) => {
                let raw = secret::read(p)?;
                Some(
                    String::from_utf8(raw)
                        .map_err(|_| anyhow!("{}: the password is not UTF-8 text", p.display()))?,
                )
            }
            None => None,
        };
        let host = fleet.host.clone().unwrap_or_else(host::hostname);
        let key = match &fleet.key_file {
            Some(p) => Some(fleetkey::load(p)?),
            None => None,
        };
        // This host among its own peers with another key: its entries
        // would be refused everywhere.
        if let (Some(k), Some(listed)) = (&key, fleet.peers.get(&host)) {
            if k.public() != *listed {
                return Err(anyhow!(
                    "[fleet.peers] \"{host}\" is not the public key of [fleet] key_file {}; fix: set it to \"{}\" on every host",
                    fleet.key_file.as_deref().unwrap_or(Path::new("")).display(),
                    k.public().to_text()
                ));
            }
        }
        Ok(Some(Member {
            fleet: fleet.clone(),
            host,
            password,
            key,
        }))
    }

    /// A connection (the timeouts bound connecting and every reply).
    pub fn connect(&self, timeout: Duration) -> Result<redis::Redis, crate::ports::FleetError> {
        redis::Redis::connect(&self.fleet, self.password.as_deref(), timeout)
    }

    /// An entry of this host's, now.
    #[allow(clippy::too_many_arguments)]
    pub fn entry(
        &self,
        op: Op,
        addr: IpNet,
        role: &str,
        secs: u64,
        reason: &str,
        offence: u32,
        origin: &str,
    ) -> Entry {
        let at = host::now();
        // 16 hex digits, without the formatting machinery (a scan makes
        // a hundred thousand of these).
        let r = super::notify::random();
        let id: String = (0..16)
            .map(|i| char::from(b"0123456789abcdef"[((r >> (60 - 4 * i)) & 0xf) as usize]))
            .collect();
        let mut e = Entry {
            id,
            op,
            addr,
            role: role.to_string(),
            at,
            until: if op == Op::Ban { at + secs as i64 } else { at },
            secs: if op == Op::Ban { secs } else { 0 },
            reason: publishable_reason(reason),
            offence,
            host: self.host.clone(),
            origin: origin.to_string(),
            fwctl: env!("CARGO_PKG_VERSION").to_string(),
            sig: String::new(),
        };
        if let Some(k) = &self.key {
            e.sign(k);
        }
        e
    }
}

/// Entries to make on the publisher's thread (a scan's: making 100 000 of
/// them is work the command need not wait for).
type Job = Box<dyn FnOnce(&Member) -> Vec<Entry> + Send>;

struct Queue {
    entries: VecDeque<Entry>,
    jobs: Vec<Job>,
    /// The chunk being published.
    inflight: Vec<Entry>,
    deadline: Option<Instant>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Whether the last attempt reached Redis, and the last error.
    link: Mutex<(bool, Option<String>)>,
}

pub struct Publisher {
    member: Member,
    shared: Arc<Shared>,
    handle: JoinHandle<()>,
    outbox: PathBuf,
}

impl Publisher {
    /// Start publishing for this config (None without [fleet]).
    pub fn start(cfg: &Config, state_file: &Path, life: Life) -> Result<Option<Publisher>> {
        let Some(member) = Member::of(cfg)? else {
            return Ok(None);
        };
        Ok(Some(Publisher::with_member(member, state_file, life)))
    }

    pub fn with_member(member: Member, state_file: &Path, life: Life) -> Publisher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                entries: VecDeque::new(),
                jobs: Vec::new(),
                inflight: Vec::new(),
                deadline: None,
            }),
            wake: Condvar::new(),
            link: Mutex::new((false, None)),
        });
        let outbox = fleetbox::path_for(state_file);
        let worker = Worker {
            member: member.clone(),
            shared: Arc::clone(&shared),
            outbox: outbox.clone(),
            life,
            link: None,
        };
        let handle = std::thread::Builder::new()
            .name("fwctl-fleet".into())
            .spawn(move || worker.run())
            .expect("a thread for the fleet publisher");
        Publisher {
            member,
            shared,
            handle,
            outbox,
        }
    }

    /// Who publishes, and what the fleet section says.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Publish an entry of this host's if `origin` is shared.
    pub fn share(&self, entries: Vec<Entry>) {
        let shared: Vec<Entry> = entries
            .into_iter()
            .filter(|e| self.member.fleet.shares(&e.origin))
            .collect();
        self.send(shared);
    }

    /// Hand entries over; never blocks for long.
    pub fn send(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        self.shared
            .queue
            .lock()
            .expect("queue")
            .entries
            .extend(entries);
        self.shared.wake.notify_one();
    }

    /// Entries that `make` makes on the publisher's thread (the shared ones
    /// are published).
    pub fn share_later(&self, make: impl FnOnce(&Member) -> Vec<Entry> + Send + 'static) {
        self.shared
            .queue
            .lock()
            .expect("queue")
            .jobs
            .push(Box::new(make));
        self.shared.wake.notify_one();
    }

    /// Whether the last attempt reached Redis, and the last error.
    pub fn link(&self) -> (bool, Option<String>) {
        self.shared.link.lock().expect("link").clone()
    }

    /// Publish what is left within `within`, then stop; what is not
    /// published by then waits in the fleet outbox.
    pub fn finish(self, within: Duration) {
        let deadline = Instant::now() + within;
        self.shared.queue.lock().expect("queue").deadline = Some(deadline);
        self.shared.wake.notify_one();
        while !self.handle.is_finished() && Instant::now() < deadline + Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.handle.is_finished() {
            let _ = self.handle.join();
            return;
        }
        // Stuck connecting or waiting on a reply: keep the lot for later.
        let (mut left, jobs) = {
            let mut q = self.shared.queue.lock().expect("queue");
            let mut v = std::mem::take(&mut q.inflight);
            v.extend(q.entries.drain(..));
            (v, std::mem::take(&mut q.jobs))
        };
        for job in jobs {
            left.extend(shared_only(&self.member, job(&self.member)));
        }
        keep(&self.outbox, &left, "no answer from Redis by the deadline");
    }
}

fn shared_only(m: &Member, entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .filter(|e| m.fleet.shares(&e.origin))
        .collect()
}

/// Put entries in the fleet outbox, saying so.
fn keep(outbox: &Path, entries: &[Entry], why: &str) {
    if entries.is_empty() {
        return;
    }
    let n = crate::units::duration::count(entries.len() as u64, "ban", "bans");
    match fleetbox::append(outbox, entries) {
        Ok(()) => say!(
            "fwctl: fleet: {why}; {n} wait in {} for the next connection",
            outbox.display()
        ),
        Err(e) => say!("fwctl: fleet: {why}; {e}; {n} not published"),
    }
}

struct Worker {
    member: Member,
    shared: Arc<Shared>,
    outbox: PathBuf,
    life: Life,
    link: Option<redis::Redis>,
}

impl Worker {
    fn timeout(&self) -> Duration {
        match self.life {
            Life::Run => Duration::from_secs(1),
            Life::Service => Duration::from_secs(5),
        }
    }

    fn run(mut self) {
        let mut backoff = Duration::from_millis(500);
        let mut down_since: Option<Instant> = None;
        let mut tried = false;
        loop {
            self.run_jobs();
            let deadline = self.shared.queue.lock().expect("queue").deadline;
            // Connect at once (while the command does its work), and a
            // service again after each failure; a command tries once.
            if self.link.is_none() && deadline.is_none() && (self.life == Life::Service || !tried) {
                tried = true;
                match self.member.connect(self.timeout()) {
                    Ok(l) => {
                        if down_since.take().is_some() {
                            say!("fwctl: fleet: connected to Redis again");
                        }
                        self.link = Some(l);
                        backoff = Duration::from_millis(500);
                        *self.shared.link.lock().expect("link") = (true, None);
                        self.bring_outbox();
                    }
                    Err(e) => {
                        self.down(&e.0, &mut down_since);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if self.link.is_some() {
                if let Err(e) = self.publish_queue() {
                    self.link = None;
                    self.down(&e, &mut down_since);
                }
            }
            // Unreachable: a command's bans (and a service's at its end)
            // wait in the outbox; a service keeps them queued and retries.
            if self.link.is_none() && (self.life == Life::Run || deadline.is_some()) {
                self.keep_queue("Redis is unreachable");
            }
            if deadline.is_some() {
                return;
            }
            self.wait(down_since.is_some(), backoff);
        }
    }

    fn down(&self, e: &str, since: &mut Option<Instant>) {
        if since.is_none() {
            say!("fwctl: fleet: {e}");
            *since = Some(Instant::now());
        }
        *self.shared.link.lock().expect("link") = (false, Some(e.to_string()));
    }

    /// Wait for entries or the deadline, or (a service) the next outbox
    /// check or reconnection.
    fn wait(&self, down: bool, backoff: Duration) {
        let tick = match (self.life, down) {
            (Life::Service, true) => backoff,
            (Life::Service, false) => Duration::from_secs(10),
            (Life::Run, _) => Duration::from_secs(3600),
        };
        let until = Instant::now() + tick;
        let mut q = self.shared.queue.lock().expect("queue");
        loop {
            // New entries wake a connected worker (or a command's, which
            // keeps them in the outbox); a service that is down waits out
            // its backoff whatever comes.
            let work =
                !q.jobs.is_empty() || !q.entries.is_empty() && (!down || self.life == Life::Run);
            if q.deadline.is_some() || work {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = self.shared.wake.wait_timeout(q, left).expect("queue").0;
        }
    }

    /// What earlier runs could not publish goes first.
    fn bring_outbox(&mut self) {
        match fleetbox::take(&self.outbox) {
            Ok((old, dropped)) => {
                if dropped > 0 {
                    say!(
                        "fwctl: fleet: the outbox was full: its {dropped} oldest bans were dropped"
                    );
                }
                if !old.is_empty() {
                    let mut q = self.shared.queue.lock().expect("queue");
                    for e in old.into_iter().rev() {
                        q.entries.push_front(e);
                    }
                }
            }
            Err(e) => say!("fwctl: fleet: {e}"),
        }
    }

    /// Publish the queue chunk by chunk; a failed chunk goes back in front.
    fn publish_queue(&mut self) -> Result<(), String> {
        // A service also takes what other commands left in the outbox.
        if self.life == Life::Service && fleetbox::waiting(&self.outbox) > 0 {
            self.bring_outbox();
        }
        loop {
            let chunk: Vec<Entry> = {
                let mut q = self.shared.queue.lock().expect("queue");
                let n = q.entries.len().min(CHUNK);
                if n == 0 {
                    return Ok(());
                }
                let c: Vec<Entry> = q.entries.drain(..n).collect();
                q.inflight = c.clone();
                c
            };
            let link = self.link.as_mut().expect("connected");
            let result = link.publish(&chunk);
            let mut q = self.shared.queue.lock().expect("queue");
            let taken = std::mem::take(&mut q.inflight);
            if let Err(e) = result {
                // Back in front, unless `finish` kept them already.
                if !taken.is_empty() {
                    for e in taken.into_iter().rev() {
                        q.entries.push_front(e);
                    }
                }
                return Err(e.0);
            }
        }
    }

    /// Make the entries of the jobs handed over, into the queue.
    fn run_jobs(&self) {
        let jobs = std::mem::take(&mut self.shared.queue.lock().expect("queue").jobs);
        for job in jobs {
            let made = shared_only(&self.member, job(&self.member));
            self.shared
                .queue
                .lock()
                .expect("queue")
                .entries
                .extend(made);
        }
    }

    fn keep_queue(&self, why: &str) {
        let left: Vec<Entry> = self
            .shared
            .queue
            .lock()
            .expect("queue")
            .entries
            .drain(..)
            .collect();
        keep(&self.outbox, &left, why);
    }
}
