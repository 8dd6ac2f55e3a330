//! What a live capture tells the world besides its event lines: its
//! events to the [[notify]] sinks, its counters at `/metrics`, and, from a
//! watcher thread once a minute, the kernel's set fill and whether fwctl's
//! rules drifted. Nothing here can slow the packet loop: the loop only
//! copies counters under an uncontended lock; posting, serving and the
//! spawns of ipset/iptables-save each run on a thread of their own.

use super::notify::{Life, Notifier, NOTIFY_WAIT};
use crate::core::capture::engine::{forgeable, Engine};
use crate::core::capture::events::Event;
use crate::core::config::Config;
use crate::core::metrics::CaptureMetrics;
use crate::core::notify::{self, Notice};
use crate::core::ruleset;
use crate::core::status::evaluate;
use crate::sys::{host, http};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the watcher reads the sets' fill and the rules.
pub const WATCH_EVERY: Duration = Duration::from_secs(60);

pub struct Telemetry {
    pub metrics: Arc<Mutex<CaptureMetrics>>,
    notifier: Option<Notifier>,
    /// Bans to the fleet, and the role capture bans into.
    publisher: Option<super::fleet::Publisher>,
    role: &'static str,
    /// `[fleet] share_spoofable`: publish bans on forgeable evidence too.
    share_spoofable: bool,
    /// Where /metrics is served, or why it is not (None: turned off).
    serving: Option<Result<std::net::SocketAddr, String>>,
    /// The watcher and the sender whose drop stops it.
    watcher: Option<(JoinHandle<()>, Sender<()>)>,
    /// `[geo]`: the lookup and the configured countries, for the
    /// `country` label of the bans.
    geo: Option<(
        Box<dyn crate::ports::GeoLookup + Send + Sync>,
        Vec<crate::core::geo::Country>,
    )>,
    /// Scans and bans for the baseline, written once a minute.
    baseline: Mutex<(super::afterscan::Pending, std::time::Instant)>,
    state_path: std::path::PathBuf,
}

impl Telemetry {
    /// Start the sinks (a bad secret file is an error now), the /metrics
    /// endpoint (a port in use is a warning: capture bans regardless) and
    /// the watcher.
    pub fn start(cfg: &Config, state_path: &Path, sets: &[String; 2]) -> Result<Telemetry> {
        let notifier = Notifier::start(cfg, state_path, Life::Service)?;
        let publisher = super::fleet::Publisher::start(cfg, state_path, Life::Service)?;
        let role = crate::core::ban::role_of(cfg, &sets[0])
            .map(|r| r.0)
            .unwrap_or("blacklist");
        let mut m = CaptureMetrics {
            started: host::now(),
            ..CaptureMetrics::default()
        };
        // Every series exists from the start at 0, so that rate() sees the
        // first ban and the first probe.
        for p in ["tcp", "udp"] {
            m.probes.insert(p.into(), 0);
        }
        for s in sets {
            m.bans.insert((s.clone(), "capture".into()), 0);
        }
        if let Some(n) = &notifier {
            m.notify = n.counts();
        }
        let geo = super::geo::lookup(cfg).map(|db| {
            let b: Box<dyn crate::ports::GeoLookup + Send + Sync> = Box::new(db);
            (b, cfg.countries.clone())
        });
        if geo.is_some() {
            for l in cfg.countries.iter().map(|c| c.to_string()).chain([
                crate::core::geo::OTHER.to_string(),
                crate::core::geo::UNKNOWN.to_string(),
            ]) {
                m.bans_by_country.insert(l, 0);
            }
        }
        let metrics = Arc::new(Mutex::new(m));
        let serving = cfg.metrics.listen.map(|addr| {
            let shared = Arc::clone(&metrics);
            let render = Arc::new(move || shared.lock().expect("metrics").render());
            http::serve_metrics(addr, render).map_err(|e| {
                format!(
                    "fwctl: warning: cannot serve metrics on {addr}: {e}; capture goes on without them; fix: free the port or change [metrics] listen (\"\" turns it off)"
                )
            })
        });
        let watcher = watch(cfg.clone(), state_path.to_path_buf(), Arc::clone(&metrics));
        Ok(Telemetry {
            metrics,
            notifier,
            publisher,
            role,
            share_spoofable: cfg.fleet.as_ref().is_some_and(|f| f.share_spoofable),
            serving,
            watcher,
            geo,
            baseline: Mutex::new((Default::default(), std::time::Instant::now())),
            state_path: state_path.to_path_buf(),
        })
    }

    /// For capture's first line: where the metrics are. A failure to serve
    /// them is said on a line of its own, after it.
    pub fn announce(&self) -> String {
        match &self.serving {
            Some(Ok(a)) => format!("; metrics at http://{a}/metrics"),
            _ => String::new(),
        }
    }

    /// The warning, if /metrics could not be served.
    pub fn warning(&self) -> Option<&str> {
        match &self.serving {
            Some(Err(w)) => Some(w),
            _ => None,
        }
    }

    /// The loop's events: counted, and handed to the sinks.
    pub fn events(&self, evs: &[Event]) {
        let mut m = self.metrics.lock().expect("metrics");
        for ev in evs {
            m.observe(ev);
            if let (Some((look, countries)), Event::IpBlocked(b)) = (&self.geo, ev) {
                if b.applied {
                    let info = crate::units::addr::parse_addr(&b.src)
                        .map(|a| look.lookup(a.addr()))
                        .unwrap_or_default();
                    *m.bans_by_country
                        .entry(info.label(countries).to_string())
                        .or_default() += 1;
                }
            }
        }
        drop(m);
        let mut b = self.baseline.lock().expect("baseline");
        let now = crate::sys::host::now();
        for ev in evs {
            b.0.note(ev, now);
        }
        drop(b);
        if let Some(n) = &self.notifier {
            n.send_all(evs.iter().filter_map(notify::from_capture).collect());
        }
        if let Some(p) = &self.publisher {
            let entries = evs
                .iter()
                .filter_map(|ev| match ev {
                    // A ban on evidence anyone could forge stays on this
                    // host unless the config shares those too.
                    Event::IpBlocked(b)
                        if b.applied && (self.share_spoofable || !forgeable(b.scan_type)) =>
                    {
                        let addr = crate::units::addr::parse_addr(&b.src).ok()?;
                        Some(p.member().entry(
                            crate::core::fleet::Op::Ban,
                            addr,
                            self.role,
                            b.ban_seconds,
                            &format!("{} scan: {}", b.scan_type, b.reason),
                            b.offence,
                            "capture",
                        ))
                    }
                    _ => None,
                })
                .collect();
            p.share(entries);
        }
    }

    /// Prefixes `[aggregate]` banned: notified, and shared as capture's.
    pub fn aggregated(&self, done: &super::aggregate::Done, cfg: &Config, now: i64) {
        if let Some(n) = &self.notifier {
            n.send_all(super::aggregate::notices(done, cfg, now));
        }
        if let Some(p) = &self.publisher {
            p.share(super::aggregate::fleet_entries(
                p.member(),
                cfg,
                done,
                "capture",
                now,
            ));
        }
    }

    /// The engine's counters, after each batch of frames.
    pub fn counters(&self, e: &Engine) {
        let mut m = self.metrics.lock().expect("metrics");
        m.frames = e.counts.frames;
        // The keys exist from the start: no allocation per batch.
        let tcp = e.counts.probes - e.counts.udp_probes;
        for (proto, v) in [("tcp", tcp), ("udp", e.counts.udp_probes)] {
            if let Some(n) = m.probes.get_mut(proto) {
                *n = v;
            }
        }
        m.ban_failures = e.counts.ban_failures;
        m.spared = e.counts.spared;
        m.tracked = e.detector.tracked() as u64;
    }

    /// Now and then: the kernel's drop counter and the sinks' counts.
    pub fn housekeeping(&self, kernel_drops: u64) {
        let counts = self.notifier.as_ref().map(Notifier::counts);
        let mut m = self.metrics.lock().expect("metrics");
        m.kernel_drops = kernel_drops;
        if let Some(c) = counts {
            m.notify = c;
        }
        drop(m);
        let mut b = self.baseline.lock().expect("baseline");
        if b.1.elapsed() >= std::time::Duration::from_secs(60) {
            b.0.flush(&self.state_path, crate::sys::host::now());
            b.1 = std::time::Instant::now();
        }
    }

    /// Stop: a capture that ends on an error says so (`capture_down`); what
    /// the sinks still hold goes out within a few seconds or waits in the
    /// outbox for the next run.
    pub fn finish(mut self, error: Option<&anyhow::Error>) {
        self.baseline
            .lock()
            .expect("baseline")
            .0
            .flush(&self.state_path, crate::sys::host::now());
        if let Some((handle, stop)) = self.watcher.take() {
            drop(stop);
            let _ = handle.join();
        }
        if let Some(p) = self.publisher.take() {
            p.finish(NOTIFY_WAIT);
        }
        if let Some(n) = self.notifier.take() {
            if let Some(e) = error {
                n.send(Notice::CaptureDown {
                    error: format!("{e:#}"),
                });
            }
            n.finish(NOTIFY_WAIT);
        }
    }
}

/// The watcher: at once, then every [`WATCH_EVERY`], the sets' entries and
/// capacity and each family's drift, as `fwctl status` evaluates them. None
/// when ipset cannot be found (capture then has no set metrics).
fn watch(
    cfg: Config,
    state_path: PathBuf,
    metrics: Arc<Mutex<CaptureMetrics>>,
) -> Option<(JoinHandle<()>, Sender<()>)> {
    let mut sys = crate::sys::firewall::sets(cfg.firewall.backend).ok()?;
    // Opened here, so a backend whose tools are missing means no watcher.
    let backend = cfg.firewall.backend;
    crate::sys::firewall::open(backend).ok()?;
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("fwctl-watch".into())
        .spawn(move || {
            let plan = ruleset::build(&cfg);
            let Ok(mut fw) = crate::sys::firewall::open(backend) else {
                return;
            };
            loop {
                if let Ok(facts) = super::status::gather(
                    &cfg,
                    &plan,
                    &state_path,
                    fw.as_mut(),
                    &mut sys,
                    String::new(),
                    false,
                ) {
                    let status = evaluate(&facts);
                    let mut m = metrics.lock().expect("metrics");
                    m.sets.clear();
                    for s in status.sets.iter().filter(|s| s.exists) {
                        m.sets.insert(s.name.clone(), (s.entries, s.capacity));
                    }
                    for r in &status.rules {
                        m.drift.insert(r.family.to_string(), r.drifted);
                    }
                }
                match rx.recv_timeout(WATCH_EVERY) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            }
        })
        .ok()?;
    Some((handle, tx))
}
