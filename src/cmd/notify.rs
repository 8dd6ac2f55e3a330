//! Notifications on their way: every command that bans, unbans, applies or
//! finds drift hands its events to a [`Notifier`], which never makes the
//! caller wait. Each sink has a bounded queue (full: the oldest go, counted)
//! served by a thread of its own, which gathers bursts into summaries,
//! signs, posts, retries, and keeps what it could not deliver in the outbox
//! for a later run. Also `fwctl notify test`.

use super::{out, Invocation};
use crate::core::config::notify::NotifySink;
use crate::core::config::Config;
use crate::core::metrics::SinkCounts;
use crate::core::notify::{self, Aggregator, Attempt, Envelope, Next, Notice};
use crate::ports::Transport;
use crate::sys::{host, http::Http, outbox, secret};
use crate::units::time::utc;
use anyhow::{bail, Result};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Events a sink's queue holds before the oldest are dropped.
pub const QUEUE_MAX: usize = 10_000;
/// How long a command that ends (scan, ban, apply, status) waits for its
/// notifications at most: a cron run never hangs on a dead endpoint, and
/// what is not delivered by then waits in the outbox.
pub const NOTIFY_WAIT: Duration = Duration::from_secs(3);
/// Attempts per batch while the process runs on.
const ATTEMPTS: u32 = 5;

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  fwctl notify test
  fwctl notify test --sink ops")]
pub struct TestOptions {
    /// Only this sink (a [[notify]] name); default: every sink.
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum NotifyCommand {
    /// Send a test event to the [[notify]] sinks and show each one's HTTP
    /// status and latency.
    Test(TestOptions),
}

/// How a run ends its deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// A service (capture): batches are retried at leisure.
    Service,
    /// A command that ends (scan, ban, apply): what is not delivered by its
    /// deadline waits in the outbox.
    Run,
}

/// A sink's shared side: what waits, what is on its way, and the counts.
/// Everything not yet delivered is here (never only in the worker), so
/// that at the deadline `finish` can put it in the outbox even while the
/// worker hangs in a POST.
struct Queue {
    events: VecDeque<Envelope>,
    agg: Aggregator,
    /// The batch being posted, with its id.
    inflight: Option<(u64, Arc<Vec<Envelope>>)>,
    /// Set at shutdown: deliver what is left by then.
    deadline: Option<Instant>,
}

impl Queue {
    /// Everything undelivered, taken out (for the outbox): the batch in
    /// flight with its id (should the worker's POST succeed after all, it
    /// takes that batch back out by the id), and the rest.
    fn rescue(&mut self) -> (Option<(u64, Vec<Envelope>)>, Vec<Envelope>) {
        let inflight = self
            .inflight
            .take()
            .map(|(id, b)| (id, b.iter().cloned().collect()));
        let mut rest = self.agg.flush().unwrap_or_default();
        rest.extend(self.events.drain(..));
        (inflight, rest)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    counts: Mutex<SinkCounts>,
}

/// A sink ready to send: its config, key and transport.
pub struct Sink {
    pub cfg: NotifySink,
    secret: Option<Vec<u8>>,
    transport: Box<dyn Transport>,
}

impl Sink {
    /// The real transport; the key read (and checked) now, before anything.
    pub fn open(cfg: &NotifySink) -> Result<Sink> {
        Sink::with_transport(cfg, Box::new(Http::new()))
    }

    pub fn with_transport(cfg: &NotifySink, transport: Box<dyn Transport>) -> Result<Sink> {
        let secret = match &cfg.secret_file {
            Some(p) => Some(secret::read(p)?),
            None => None,
        };
        Ok(Sink {
            cfg: cfg.clone(),
            secret,
            transport,
        })
    }

    /// One POST of `batch`, signed when there is a key.
    fn post(&mut self, batch: &[Envelope]) -> Attempt {
        let body = notify::body(self.cfg.format, batch);
        let ts = host::now();
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("X-Fwctl-Timestamp", ts.to_string()),
        ];
        if let Some(key) = &self.secret {
            headers.push(("X-Fwctl-Signature", notify::sign(key, ts, &body)));
        }
        self.transport
            .post(&self.cfg.url, &headers, &body, self.cfg.timeout)
    }
}

/// The envelope of a notice, now, from this host.
pub fn envelope(notice: Notice, host: &str) -> Envelope {
    let us = host::now_micros();
    Envelope {
        id: format!("{:016x}", random()),
        time: crate::units::time::utc_micros(us),
        host: host.to_string(),
        fwctl: env!("CARGO_PKG_VERSION").to_string(),
        notice,
        geo: None,
    }
}

/// The notification queues of one process.
pub struct Notifier {
    sinks: Vec<(NotifySink, Arc<Shared>, JoinHandle<()>)>,
    host: String,
    state_file: PathBuf,
    /// `[geo]`: the country and AS of each event's address.
    geo: Option<Box<dyn crate::ports::GeoLookup + Send + Sync>>,
}

impl Notifier {
    /// The config's sinks (None when it has none), their keys read now: a
    /// bad secret file is an error before the command changes anything.
    pub fn start(cfg: &Config, state_file: &Path, life: Life) -> Result<Option<Notifier>> {
        let sinks = cfg
            .notify
            .iter()
            .map(Sink::open)
            .collect::<Result<Vec<_>>>()?;
        Ok(Notifier::with_sinks(sinks, state_file, life).map(|mut n| {
            n.geo = super::geo::lookup(cfg)
                .map(|db| Box::new(db) as Box<dyn crate::ports::GeoLookup + Send + Sync>);
            n
        }))
    }

    pub fn with_sinks(sinks: Vec<Sink>, state_file: &Path, life: Life) -> Option<Notifier> {
        if sinks.is_empty() {
            return None;
        }
        let outbox = outbox::path_for(state_file);
        let mut all = Vec::new();
        for sink in sinks {
            let shared = Arc::new(Shared {
                queue: Mutex::new(Queue {
                    events: VecDeque::new(),
                    agg: Aggregator::default(),
                    inflight: None,
                    deadline: None,
                }),
                wake: Condvar::new(),
                counts: Mutex::new(SinkCounts::default()),
            });
            let cfg = sink.cfg.clone();
            let worker = Worker {
                sink,
                shared: Arc::clone(&shared),
                outbox: outbox.clone(),
                life,
                started: Instant::now(),
                random: random(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("fwctl-notify-{}", cfg.name))
                .spawn(move || worker.run())
                .expect("a thread for a notification sink");
            all.push((cfg, shared, handle));
        }
        Some(Notifier {
            sinks: all,
            host: host::hostname(),
            state_file: state_file.to_path_buf(),
            geo: None,
        })
    }

    /// Hand an event to every sink that takes it; never blocks for long
    /// (a full queue drops its oldest event and counts it).
    pub fn send(&self, notice: Notice) {
        self.send_all(vec![notice]);
    }

    /// Hand over events that belong together (a scan and its ban): a quiet
    /// sink sends them as one message.
    pub fn send_all(&self, notices: Vec<Notice>) {
        let envs: Vec<Envelope> = notices
            .into_iter()
            .map(|n| {
                let mut e = envelope(n, &self.host);
                e.geo = self.geo.as_ref().and_then(|g| {
                    let a = crate::units::addr::parse_addr(e.notice.address()?).ok()?;
                    Some(g.lookup(a.addr())).filter(|i| !i.is_empty())
                });
                e
            })
            .collect();
        for (cfg, shared, _) in &self.sinks {
            let mut q = shared.queue.lock().expect("queue");
            let mut dropped = 0;
            for env in envs.iter().filter(|e| e.notice.wanted_by(|n| cfg.wants(n))) {
                if q.events.len() >= QUEUE_MAX {
                    q.events.pop_front();
                    dropped += 1;
                }
                q.events.push_back(env.clone());
            }
            drop(q);
            if dropped > 0 {
                shared.counts.lock().expect("counts").dropped += dropped;
            }
            shared.wake.notify_one();
        }
    }

    /// Per sink: sent, failed, dropped.
    pub fn counts(&self) -> BTreeMap<String, SinkCounts> {
        self.sinks
            .iter()
            .map(|(c, s, _)| (c.name.clone(), *s.counts.lock().expect("counts")))
            .collect()
    }

    /// Deliver what is left within `within` and stop. What is not
    /// delivered by then (a hung endpoint, retries still due) goes to the
    /// outbox for the next run.
    pub fn finish(self, within: Duration) -> BTreeMap<String, SinkCounts> {
        let deadline = Instant::now() + within;
        for (_, shared, _) in &self.sinks {
            shared.queue.lock().expect("queue").deadline = Some(deadline);
            shared.wake.notify_one();
        }
        let outbox = outbox::path_for(&self.state_file);
        let mut counts = BTreeMap::new();
        for (cfg, shared, handle) in self.sinks {
            // The worker gives up on retries at the deadline; a POST that
            // hangs past it is left to the process exit.
            while !handle.is_finished() && Instant::now() < deadline + Duration::from_millis(200) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                let (inflight, rest) = shared.queue.lock().expect("queue").rescue();
                let mut kept = 0;
                let mut result = Ok(());
                for (id, batch) in inflight.into_iter().chain([(random(), rest)]) {
                    if !batch.is_empty() && result.is_ok() {
                        kept += batch.len();
                        result = outbox::put(&outbox, &cfg.name, id, &batch);
                    }
                }
                let n = crate::units::duration::count(kept as u64, "event", "events");
                match result {
                    Ok(()) => super::say!(
                        "fwctl: notify {}: no answer by the deadline; {n} kept in the outbox for the next run",
                        cfg.name
                    ),
                    Err(e) => super::say!("fwctl: notify {}: {e}; events lost", cfg.name),
                }
            }
            counts.insert(cfg.name.clone(), *shared.counts.lock().expect("counts"));
        }
        counts
    }
}

/// A random number (jitter, event ids), from the standard library's random
/// keys, a clock and a counter: distinct within a process and across them.
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(host::now_micros());
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

struct Worker {
    sink: Sink,
    shared: Arc<Shared>,
    outbox: PathBuf,
    life: Life,
    started: Instant,
    random: u64,
}

impl Worker {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn run(mut self) {
        // What earlier runs could not deliver goes first, as one batch.
        match outbox::take(&self.outbox, &self.sink.cfg.name) {
            Ok(old) if !old.is_empty() => self.deliver(old),
            Ok(_) => {}
            Err(e) => super::say!("fwctl: notify {}: {e}", self.sink.cfg.name),
        }
        loop {
            let (batch, last) = self.next();
            if let Some(b) = batch {
                self.deliver(b);
            }
            if last {
                return;
            }
        }
    }

    /// Wait for the next batch to send: events to a quiet sink, a summary
    /// that is due, or, at the deadline, everything left (then stop).
    fn next(&self) -> (Option<Vec<Envelope>>, bool) {
        let mut q = self.shared.queue.lock().expect("queue");
        loop {
            let now = self.now_ms();
            if !q.events.is_empty() {
                let events = Vec::from(std::mem::take(&mut q.events));
                if let Some(b) = q.agg.push_all(events, now) {
                    return (Some(b), false);
                }
            }
            if let Some(b) = q.agg.due(now) {
                return (Some(b), false);
            }
            if q.deadline.is_some() {
                return (q.agg.flush(), true);
            }
            let wait = match q.agg.next_due() {
                Some(at) => Duration::from_millis(at.saturating_sub(now).max(1)),
                None => Duration::from_secs(3600),
            };
            q = self.shared.wake.wait_timeout(q, wait).expect("queue").0;
        }
    }

    /// Post one batch with the retry policy. It is "in flight" meanwhile
    /// (where `finish` finds it at the deadline); what cannot be delivered
    /// now goes to the outbox.
    fn deliver(&mut self, batch: Vec<Envelope>) {
        let name = self.sink.cfg.name.clone();
        self.random = self.random.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        let id = self.random;
        let batch = Arc::new(batch);
        self.shared.queue.lock().expect("queue").inflight = Some((id, Arc::clone(&batch)));
        let mut tries = 0;
        let result = loop {
            tries += 1;
            let attempt = self.sink.post(&batch);
            let deadline = self.shared.queue.lock().expect("queue").deadline;
            let attempts = match (self.life, deadline) {
                (_, Some(d)) if Instant::now() >= d => tries,
                _ => ATTEMPTS,
            };
            self.random = self
                .random
                .rotate_left(5)
                .wrapping_mul(0x2545_f491_4f6c_dd1d);
            match notify::next(&attempt, tries, attempts, self.random) {
                Next::Retry(ms) => {
                    let wait = Duration::from_millis(ms);
                    if deadline.is_some_and(|d| Instant::now() + wait > d) {
                        break Next::GiveUp {
                            keep: true,
                            why: format!("{attempt:?} and no time left to retry"),
                        };
                    }
                    std::thread::sleep(wait);
                }
                other => break other,
            }
        };
        // Still ours, or did `finish` put it in the outbox meanwhile?
        let ours = self
            .shared
            .queue
            .lock()
            .expect("queue")
            .inflight
            .take()
            .is_some_and(|(i, _)| i == id);
        let n = crate::units::duration::count(batch.len() as u64, "event", "events");
        let mut counts = self.shared.counts.lock().expect("counts");
        match result {
            Next::Delivered => {
                counts.sent += batch.len() as u64;
                drop(counts);
                if !ours {
                    // Delivered after all: not again from the outbox.
                    let _ = outbox::remove(&self.outbox, id);
                }
            }
            Next::GiveUp { keep, why } => {
                counts.failed += batch.len() as u64;
                drop(counts);
                if !ours {
                    return;
                }
                if keep {
                    match outbox::put(&self.outbox, &name, id, &batch) {
                        Ok(()) => super::say!(
                            "fwctl: notify {name}: {why}; {n} kept in the outbox for the next run"
                        ),
                        Err(e) => super::say!("fwctl: notify {name}: {why}; {e}; {n} lost"),
                    }
                } else {
                    super::say!("fwctl: notify {name}: {why}; {n} dropped");
                }
            }
            Next::Retry(_) => unreachable!("the loop retries"),
        }
    }
}

/// `fwctl notify test`: one test event to each sink (or one), with the
/// answer and the time it took.
pub fn test(o: &TestOptions, inv: &Invocation) -> Result<()> {
    let cfg = inv.load()?;
    if cfg.notify.is_empty() {
        bail!(
            "{} has no [[notify]] sinks; fix: add one (name, url, and optionally format, secret_file, events, timeout)",
            cfg.path.display()
        );
    }
    let chosen: Vec<&NotifySink> = match &o.sink {
        Some(n) => {
            let s = cfg.notify.iter().find(|s| &s.name == n).ok_or_else(|| {
                let names: Vec<&str> = cfg.notify.iter().map(|s| s.name.as_str()).collect();
                anyhow::anyhow!(
                    "no [[notify]] sink named \"{n}\"; fix: one of {}",
                    names.join(", ")
                )
            })?;
            vec![s]
        }
        None => cfg.notify.iter().collect(),
    };
    let host = host::hostname();
    let mut failed = 0;
    for c in chosen {
        // Never the path or query: a webhook's secret token lives there.
        let url = notify::redact(&c.url);
        let mut sink = Sink::open(c)?;
        let env = envelope(
            Notice::Test {
                message: format!(
                    "fwctl test notification from {host} at {}",
                    utc(host::now())
                ),
            },
            &host,
        );
        let t = Instant::now();
        let attempt = sink.post(&[env]);
        let ms = t.elapsed().as_millis();
        let line = match &attempt {
            Attempt::Status { code, .. } if (200..300).contains(code) => {
                format!("{}: HTTP {code} in {ms} ms ({url})\n", c.name)
            }
            Attempt::Status { code, .. } => {
                failed += 1;
                format!(
                    "{}: HTTP {code} in {ms} ms ({url}): the receiver refused it\n",
                    c.name
                )
            }
            Attempt::Timeout => {
                failed += 1;
                format!(
                    "{}: no answer within {} ({url})\n",
                    c.name,
                    crate::units::duration::human(c.timeout.as_secs().max(1)),
                )
            }
            Attempt::Connect(e) => {
                failed += 1;
                format!("{}: cannot connect ({url}): {e}\n", c.name)
            }
        };
        out(line)?;
    }
    if failed > 0 {
        bail!(
            "{} failed; fix: check the url and that the receiver runs",
            crate::units::duration::count(failed as u64, "sink", "sinks")
        );
    }
    Ok(())
}
