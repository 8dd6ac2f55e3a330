//! `fwctl watch`: the cron scan in real time. Follows the logs of the
//! config's `[[watch]]` entries as they are written (inotify), keeps a
//! sliding window per entry and source, and bans the moment a source
//! crosses the threshold, through the same netlink banner as capture.
//!
//! Each entry is checked as the `fwctl scan` line with its flags would be
//! (the same plan), so an entry reads what that scan line reads. A cron
//! scan and watch on the same log and rule do not ban twice: whoever comes
//! second finds the address in the set ("already listed") and neither
//! records, notifies nor shares it again; both change the state file only
//! under its lock.

use super::notify::{Life, Notifier, NOTIFY_WAIT};
use super::scan::{Options as ScanOptions, Plan};
use super::{say, Invocation};
use crate::core::config::Config;
use crate::core::logline::Line;
use crate::core::logsource::LineParser;
use crate::core::notify::{Notice, Origin};
use crate::core::policy::{Members, Policy};
use crate::core::scan::abuse::{self, Ban};
use crate::core::scan::count::Minutes;
use crate::core::statejournal::Op;
use crate::core::watch::events::{Event, Kind, Stats};
use crate::core::watch::positions::{self, Positions};
use crate::core::watch::{pacing, series, Counter, Crossed, BUDGET};
use crate::ports::{Banner, SetStore};
use crate::sys::follow::{Follower, Said, Wakeup};
use crate::sys::journal::JournalFollower;
use crate::sys::{firewall, host, lock, statefile};
use crate::units::time::utc;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Each [[watch]] entry of the config takes the flags of a cron scan line, as config keys:
  [[watch]]
  source = \"sshd\"              # kernel (default), nginx, apache, sshd, a built-in or [[source]]
  log = \"/var/log/auth.log\"    # or journal = true (sshd, regex sources); default: the source's log
  howmany = 5                  # more than this many lines within `within` bans
  within = \"10m\"
  ipset = \"blacklist\"
  removeafter = \"1d\"
  # rule, type, status, match, client: as scan's --rule, --type, --status, --match, --client
A first start reads each log from its end (what is there already is the cron scan's); a restart
goes on where the last run stopped (positions in watch-positions.json beside the state file).

Examples:
  fwctl watch --check          check the entries and show what would be followed
  fwctl watch --json           run as a service (systemd/fwctl-watch.service), events as JSON lines
  fwctl watch --dryrun         report who would be banned, ban nothing")]
pub struct Options {
    /// Report the sources that cross a threshold, ban nothing (no root
    /// needed; no state or positions written).
    #[arg(long)]
    pub dryrun: bool,
    /// Write each event as one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Check the [[watch]] entries as scan would check their lines, print
    /// what would be followed, and exit.
    #[arg(long)]
    pub check: bool,
    /// Follow only the entries of this name (repeatable).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// How often to write a watch_stats event.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_every)]
    pub stats_every: Duration,
}

fn parse_every(s: &str) -> Result<Duration, crate::units::Invalid> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        _ => Err(crate::units::Invalid(format!(
            "\"{s}\" is not a duration of 1s or more (e.g. 30s, 5m)"
        ))),
    }
}

/// Lines stamped up to this far after the clock still count (a writer's
/// clock a little ahead, the second a batch straddles).
const AHEAD: i64 = 5;

/// How often a parser is made anew (the local time zone's offset and the
/// year of yearless stamps follow the clock).
const REMAKE_EVERY: Duration = Duration::from_secs(600);

/// Every log gets every check (shrunk, replaced) at least this often,
/// whatever inotify says: a lost event delays a line by at most this.
/// Positions and metrics are written at most this often.
const TICK: Duration = Duration::from_secs(1);

/// A log read again with new lines within this of its last lines is busy:
/// from then on it is read every `pacing::pace` rather than at each write, until
/// a reading finds nothing new. An isolated line is read at once.
const BUSY_GAP: Duration = Duration::from_millis(10);

/// How often the lines and bans are counted into the baseline (whole
/// minutes; the one still being written waits for the next time).
const COUNT_EVERY: Duration = Duration::from_secs(60);

/// A line read up to this many seconds after its minute ended is still
/// counted in the baseline (rsyslog's buffering, a batch's delay).
const LATE: i64 = 10;

/// One `[[watch]]` entry at work.
struct Entry {
    name: String,
    plan: Plan,
    parser: LineParser,
    made: Instant,
    counter: Counter,
    from: From,
    stats: Stats,
    /// What inotify said of its log since it was last read.
    said: Said,
    /// The prefix its IPv6 sources are counted and banned by
    /// ([aggregate] v6_count_prefix; 128 into a set of single addresses).
    v6_count: u8,
    /// Matching lines per minute and bans made, not in the baseline yet;
    /// the minute it started in is not counted.
    minutes: Minutes,
    bans_uncounted: u64,
    started_minute: i64,
}

/// `addr` as its source key: an IPv6 address masked to `len`.
fn counted(addr: std::net::IpAddr, len: u8) -> ipnet::IpNet {
    match addr {
        std::net::IpAddr::V6(_) if len < 128 => {
            ipnet::IpNet::new(addr, len).expect("prefix <= 128").trunc()
        }
        a => ipnet::IpNet::from(a),
    }
}

enum From {
    File(Box<Follower>),
    Journal(JournalFollower),
}

/// The plans of the entries, checked as their scan lines would be.
pub fn plans(cfg: &Config, only: &[String], inv: &Invocation, dryrun: bool) -> Result<Vec<Plan>> {
    if cfg.watch.is_empty() {
        bail!(
            "{} has no [[watch]] entry; fix: add one (fwctl watch --help shows the keys)",
            cfg.path.display()
        );
    }
    for o in only {
        if !cfg.watch.iter().any(|w| w.name == *o) {
            bail!(
                "--only {o}: no [[watch]] entry of that name; fix: one of {}",
                cfg.watch
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let mut out = Vec::new();
    for w in cfg
        .watch
        .iter()
        .filter(|w| only.is_empty() || only.contains(&w.name))
    {
        let opts = ScanOptions {
            source: w.source.clone(),
            log: w.log.clone(),
            journal: w.journal,
            rule: w.rule.clone(),
            kind: w
                .kind
                .as_deref()
                .map(|k| {
                    <crate::core::scan::count::TypeFilter as clap::ValueEnum>::from_str(k, false)
                })
                .transpose()
                .map_err(|e| anyhow!("[[watch]] {}: type: {e}", w.name))?,
            status: w.status.clone(),
            patterns: w.patterns.clone(),
            client: w.client,
            trusted_proxies: Vec::new(),
            howmany: w.howmany,
            within: w.within,
            ipset: w.ipset.clone(),
            removeafter: w.removeafter,
            dryrun,
            json: false,
            now: None,
            explain: None,
        };
        let mut plan = Plan::new(&opts, cfg.clone()).map_err(|e| {
            // The plan speaks of scan's flags; the entry has keys.
            let msg = format!("{e:#}").replace("--", "");
            anyhow!("[[watch]] {}: {msg}", w.name)
        })?;
        plan.apply_fix = inv.fix("apply");
        out.push(plan);
    }
    Ok(out)
}

fn describe(p: &Plan, name: &str) -> String {
    let o = &p.opts;
    let from = match &p.log {
        Some(l) => l.display().to_string(),
        None => format!("the {}", p.journal_matches().shown()),
    };
    format!(
        "{name}: {} lines of {from} ({} {}): more than {} within {} bans into {} / {} for {}",
        o.source.name(),
        p.rule,
        p.kind_name,
        o.howmany,
        crate::units::duration::human(o.within),
        p.sets[0],
        p.sets[1],
        crate::units::duration::human(o.removeafter)
    )
}

pub fn run(opts: &Options, inv: &Invocation) -> Result<()> {
    let cfg = inv.load()?;
    let plans = plans(&cfg, &opts.only, inv, opts.dryrun)?;
    if opts.check {
        let mut text = String::new();
        for (p, w) in plans.iter().zip(
            cfg.watch
                .iter()
                .filter(|w| opts.only.is_empty() || opts.only.contains(&w.name)),
        ) {
            text.push_str(&describe(p, &w.name));
            text.push('\n');
        }
        return super::out(text);
    }
    if !opts.dryrun && !host::is_root() {
        bail!("fwctl watch adds bans to the kernel's sets and must run as root; fix: sudo fwctl watch (or add --dryrun to only report)");
    }
    let names: Vec<String> = cfg
        .watch
        .iter()
        .filter(|w| opts.only.is_empty() || opts.only.contains(&w.name))
        .map(|w| w.name.clone())
        .collect();
    // One watch per run directory: a second would read the same lines and
    // fight over the positions.
    lock::ensure_run_dir(&lock::run_dir())?;
    let _running = match lock::acquire_file(&lock::watch_lock(), Duration::ZERO) {
        Ok(l) => l,
        Err(lock::LockError::Held { pid, .. }) => bail!(
            "fwctl watch is already running{}; fix: stop it first (systemctl stop fwctl-watch)",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Err(e) => return Err(e.into()),
    };
    let state_path = cfg.state_path(inv.state());
    Service::start(cfg, plans, names, opts, &state_path)?.run()
}

/// What the running service holds.
struct Service<'a> {
    cfg: Config,
    opts: &'a Options,
    state_path: PathBuf,
    positions_path: PathBuf,
    entries: Vec<Entry>,
    sets: Option<Box<dyn SetStore + Send>>,
    banner: Option<firewall::Bans>,
    policy: Policy,
    notifier: Option<Notifier>,
    publisher: Option<super::fleet::Publisher>,
    /// What the metrics endpoint shows, rendered when it is asked (a
    /// scrape every 15 s or so), not at each tick.
    metrics: Arc<Mutex<Vec<crate::core::watch::events::Row>>>,
    /// Bans in the kernel, to be recorded (state file, notify, fleet) at
    /// the next tick: one state file update a second at most, not one per
    /// ban.
    pending: Vec<(usize, Event, crate::core::history::Why)>,
    started: i64,
    out: std::io::BufWriter<std::io::Stdout>,
    /// `[geo]`: the country and AS of each event's address.
    geo: Option<crate::sys::geodb::Db>,
    /// `[reputation] report = true`: the bans go to AbuseIPDB.
    reporter: Option<super::reporter::Reporter>,
    /// The state as watch last wrote it: read again only when another
    /// writer changed it (a state of many bans costs milliseconds to parse).
    state_cache: statefile::Cached,
}

impl<'a> Service<'a> {
    fn start(
        cfg: Config,
        plans: Vec<Plan>,
        names: Vec<String>,
        opts: &'a Options,
        state_path: &Path,
    ) -> Result<Service<'a>> {
        let dir = state_path.parent().unwrap_or(Path::new("."));
        let positions_path = dir.join(positions::FILE);
        let mut sets = None;
        let mut banner = None;
        // Which IPv6 target sets hold networks (a dry run without the
        // kernel goes by the set's role: the throttle sets are hash:ip).
        let mut v6_counts: Vec<u8> = plans
            .iter()
            .map(|p| {
                let addresses_only = matches!(
                    crate::core::ban::role_of(&cfg, &p.sets[1]),
                    Some(("throttle-hard" | "throttle-soft", _))
                );
                if addresses_only {
                    128
                } else {
                    cfg.aggregate.v6_count_prefix
                }
            })
            .collect();
        if !opts.dryrun {
            let mut s = firewall::sets(cfg.firewall.backend).map_err(|e| anyhow!("{e}"))?;
            let heads = s.heads()?;
            for (p, count) in plans.iter().zip(&mut v6_counts) {
                crate::core::ban::check_ban_sets(
                    &p.sets,
                    &heads,
                    &p.apply_fix,
                    "or name an existing set in the [[watch]] entry's ipset",
                )?;
                if heads
                    .get(&p.sets[1])
                    .is_some_and(|h| h.holds != crate::core::sets::Holds::Networks)
                {
                    *count = 128;
                }
            }
            sets = Some(s);
            banner = Some(firewall::banner(cfg.firewall.backend).with_context(|| {
                format!(
                    "netlink socket for the {} sets",
                    cfg.firewall.backend.as_str()
                )
            })?);
            // Prove the state file can be written now, not at the first ban.
            statefile::update(state_path, host::now(), |_| ()).with_context(|| {
                format!(
                    "the state file {} must be writable; fix: create its directory or pass --state",
                    state_path.display()
                )
            })?;
        }
        let saved = match std::fs::read_to_string(&positions_path) {
            Ok(t) => Positions::parse(&t).unwrap_or_else(|e| {
                say!(
                    "fwctl: warning: {}: {e}; every log is read from its end",
                    positions_path.display()
                );
                Positions::default()
            }),
            Err(_) => Positions::default(),
        };
        let now = host::now();
        let mut entries = Vec::new();
        for ((plan, name), v6_count) in plans.into_iter().zip(names).zip(v6_counts) {
            let within = plan.opts.within;
            let parser = plan.parser(
                host::local_zone(now),
                now,
                (now - within as i64, now + AHEAD),
            )?;
            let from = match &plan.log {
                Some(l) => From::File(Box::new(Follower::new(
                    l.clone(),
                    saved.files.get(&name).cloned(),
                ))),
                None => From::Journal(JournalFollower::new(
                    plan.journal_matches(),
                    saved.journal.get(&name).cloned(),
                )),
            };
            entries.push(Entry {
                counter: Counter::new(plan.opts.howmany, within, cfg.capture.max_sources, BUDGET)
                    .keep_lines(cfg.evidence),
                stats: Stats::default(),
                said: Said::default(),
                name,
                plan,
                parser,
                made: Instant::now(),
                from,
                v6_count,
                minutes: Minutes::default(),
                bans_uncounted: 0,
                started_minute: now.div_euclid(60),
            });
        }
        let mut policy = Policy {
            trusted: cfg.trusted.clone(),
            whitelist_name: cfg.sets.whitelist.to_string(),
            ..Policy::default()
        };
        for e in &entries {
            policy.trusted.extend(e.plan.proxies.iter().copied());
        }
        let (notifier, publisher, reporter) = if opts.dryrun {
            (None, None, None)
        } else {
            (
                Notifier::start(&cfg, state_path, Life::Service)?,
                super::fleet::Publisher::start(&cfg, state_path, Life::Service)?,
                super::reporter::Reporter::start(&cfg, state_path)?,
            )
        };
        let metrics = Arc::new(Mutex::new(Vec::new()));
        let geo = super::geo::lookup(&cfg);
        let mut svc = Service {
            geo,
            cfg,
            opts,
            state_path: state_path.to_path_buf(),
            positions_path,
            entries,
            sets,
            banner,
            policy,
            notifier,
            publisher,
            reporter,
            state_cache: statefile::Cached::default(),
            metrics,
            pending: Vec::new(),
            started: host::now(),
            out: std::io::BufWriter::new(std::io::stdout()),
        };
        svc.refresh();
        Ok(svc)
    }

    /// The never-ban facts that change: this host's addresses and the
    /// kernel's whitelist.
    fn refresh(&mut self) {
        self.policy.own = host::own_addresses();
        let mut m = Members::default();
        if let Some(s) = self.sets.as_mut() {
            for v6 in [false, true] {
                if let Ok(members) = s.members(&self.cfg.sets.whitelist.for_family(v6)) {
                    m.extend(Members::of(&members));
                }
            }
        }
        self.policy.whitelist = m;
    }

    fn run(mut self) -> Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
        }
        let paths: Vec<PathBuf> = self
            .entries
            .iter()
            .filter_map(|e| match &e.from {
                From::File(f) => Some(f.path().to_path_buf()),
                From::Journal(_) => None,
            })
            .collect();
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        self.publish_metrics();
        let mut wake = Wakeup::new(&refs).context("inotify")?;
        let serving = match (self.opts.dryrun, self.cfg.metrics.watch_listen) {
            (false, Some(addr)) => {
                let shared = Arc::clone(&self.metrics);
                let started = self.started;
                let render = Arc::new(move || {
                    crate::core::watch::events::render(&shared.lock().expect("metrics"), started)
                });
                match crate::sys::http::serve_metrics(addr, render) {
                    Ok(a) => format!("; metrics at http://{a}/metrics"),
                    Err(e) => {
                        say!("fwctl: warning: cannot serve watch's metrics on {addr}: {e}; watch goes on without them; fix: free the port or change [metrics] watch_listen (\"\" turns it off)");
                        String::new()
                    }
                }
            }
            _ => String::new(),
        };
        // The first reading places each log's start (its end, or the
        // saved position): only then is watch following, and says so.
        let mut crossings: Vec<(usize, Crossed)> = Vec::new();
        self.poll_all(&mut crossings, true, Instant::now());
        say!(
            "fwctl: watch follows {} log(s){}{}",
            self.entries.len(),
            if self.opts.dryrun {
                ", banning nothing (--dryrun)"
            } else {
                ""
            },
            serving
        );
        for e in &self.entries {
            say!("fwctl:   {}", describe(&e.plan, &e.name));
        }
        let mut last_tick = Instant::now();
        let mut last_refresh = Instant::now();
        let mut last_stats = Instant::now();
        let mut last_count = Instant::now();
        let mut saved = self.positions();
        // Lines read since the positions and metrics were last written.
        let mut unsaved = false;
        // The last reading that found lines, and whether the logs are busy
        // (read on a timer, see COALESCE).
        let mut last_lines: Option<Instant> = None;
        let mut busy = false;
        let mut pace = pacing::COALESCE;
        while !stop.load(Ordering::Relaxed) {
            // One clock reading for the checks of this round, one more
            // before sleeping (a wake-up is watch's CPU at low rates, and
            // each reading of a cold clock a microsecond of it).
            let t = Instant::now();
            let full = t - last_tick >= TICK;
            let got = self.poll_all(&mut crossings, full, t);
            busy = got > 0 && (busy || last_lines.is_some_and(|p| t - p < BUSY_GAP));
            if busy {
                pace = pacing::pace(got, last_lines.map(|p| t - p));
            }
            if got > 0 {
                last_lines = Some(t);
                unsaved = true;
            }
            if !crossings.is_empty() {
                let batch = std::mem::take(&mut crossings);
                self.act(batch)?;
            }
            if full {
                // Each log's file as its name points now (a symlinked
                // log's target rotated elsewhere, a watch refused before).
                if let Some(w) = wake.rewatch() {
                    say!("fwctl: warning: {w}");
                }
                if !self.pending.is_empty() {
                    let p = std::mem::take(&mut self.pending);
                    self.record(&p);
                    self.gather();
                }
                if unsaved {
                    let p = self.positions();
                    if p != saved && !self.opts.dryrun {
                        self.save_positions(&p);
                        saved = p;
                    }
                    self.publish_metrics();
                    unsaved = false;
                }
            }
            if t - last_refresh >= Duration::from_secs(30) {
                self.refresh();
                last_refresh = t;
            }
            if t - last_count >= COUNT_EVERY {
                self.count();
                last_count = t;
            }
            if t - last_stats >= self.opts.stats_every {
                self.stats_events()?;
                last_stats = t;
            }
            let fds: Vec<std::os::fd::BorrowedFd> = self
                .entries
                .iter()
                .filter_map(|e| match &e.from {
                    From::Journal(j) => j.fd(),
                    From::File(_) => None,
                })
                .collect();
            let done = Instant::now();
            if full {
                // A second from the end of this round's work (a slow one
                // is not followed by another at once).
                last_tick = done;
            }
            let to_tick = TICK.saturating_sub(done - last_tick);
            if busy {
                // inotify is not even read: the busy logs are read as if
                // written (a rotation meanwhile is seen when a reading
                // finds nothing and inotify is read again, or at the tick).
                wake.sleep(pace.saturating_sub(done - t).min(to_tick), &fds);
                for e in &mut self.entries {
                    e.said.written = true;
                }
            } else {
                wake.wait(to_tick, &fds);
                let mut slot = 0;
                for e in &mut self.entries {
                    if let From::File(_) = e.from {
                        e.said = wake.take(slot);
                        slot += 1;
                    }
                }
            }
        }
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            self.record(&p);
            self.gather();
        }
        if !self.opts.dryrun {
            let p = self.positions();
            self.save_positions(&p);
            // The records whole in the state file, for whatever reads it
            // next (an older fwctl does not read the journal).
            if let Err(e) = statefile::fold(&self.state_path, host::now(), &mut self.state_cache) {
                say!("fwctl: warning: cannot fold the state journal into the state file ({e}); the next fwctl run that writes the state does");
            }
        }
        self.count();
        self.stats_events()?;
        self.out.flush()?;
        if let Some(n) = self.notifier.take() {
            n.finish(NOTIFY_WAIT);
        }
        if let Some(p) = self.publisher.take() {
            p.finish(NOTIFY_WAIT);
        }
        if let Some(r) = self.reporter.take() {
            r.finish(NOTIFY_WAIT);
        }
        if self.opts.dryrun {
            say!("fwctl: watch stopped");
        } else {
            say!(
                "fwctl: watch stopped; positions saved to {}",
                self.positions_path.display()
            );
        }
        Ok(())
    }

    /// Read every log on from where it was, counting each line's hit;
    /// the sources that crossed go to `crossings`. `full`: every check on
    /// every log; otherwise only what inotify said. Returns the lines read.
    fn poll_all(&mut self, crossings: &mut Vec<(usize, Crossed)>, full: bool, t: Instant) -> u64 {
        let now = host::now();
        let mut got = 0;
        for (i, e) in self.entries.iter_mut().enumerate() {
            let before = e.stats.lines;
            let within = e.plan.opts.within as i64;
            if t - e.made >= REMAKE_EVERY {
                if let Ok(p) =
                    e.plan
                        .parser(host::local_zone(now), now, (now - within, now + AHEAD))
                {
                    e.parser = p;
                    e.made = t;
                }
            }
            e.parser.set_window((now - within, now + AHEAD));
            let (parser, counter, stats, minutes, filter, count) = (
                &mut e.parser,
                &mut e.counter,
                &mut e.stats,
                &mut e.minutes,
                e.plan.kind,
                e.v6_count,
            );
            let mut sink = |line: &[u8]| {
                stats.lines += 1;
                match parser.parse(line) {
                    Line::Hit(h) if filter.wants(h.proto) => {
                        stats.hits += u64::from(h.n);
                        minutes.add(h.time, u64::from(h.n));
                        let src = counted(h.src, count).network();
                        if let Some(c) = counter.hit_line(src, h.time, h.n, now, line) {
                            crossings.push((i, c));
                        }
                    }
                    Line::Malformed(_) => stats.malformed += 1,
                    _ => {}
                }
            };
            let notes = match &mut e.from {
                From::File(f) if full => f.poll(&mut sink),
                From::File(f) => f.read_said(std::mem::take(&mut e.said), &mut sink),
                From::Journal(j) => j.poll(&mut sink),
            };
            if !notes.is_empty() {
                // Said once, and the positions after it written.
                got += 1;
            }
            for n in notes {
                say!("fwctl: {}: {n}", e.name);
            }
            got += e.stats.lines - before;
        }
        got
    }

    fn positions(&self) -> Positions {
        let mut p = Positions::default();
        for e in &self.entries {
            match &e.from {
                From::File(f) => {
                    if let Some(pos) = f.position() {
                        p.files.insert(e.name.clone(), pos);
                    }
                }
                From::Journal(j) => {
                    if let Some(c) = j.cursor() {
                        p.journal.insert(e.name.clone(), c.to_string());
                    }
                }
            }
        }
        p
    }

    fn save_positions(&self, p: &Positions) {
        let dir = self.positions_path.parent().unwrap_or(Path::new("."));
        let r = (|| -> std::io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(p.text().as_bytes())?;
            tmp.persist(&self.positions_path).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(e) = r {
            say!(
                "fwctl: warning: cannot write {} ({e}); a restart would read the logs from their end",
                self.positions_path.display()
            );
        }
    }

    /// Ban (or report) the sources that crossed; their records (state
    /// file, notify, fleet) wait for the next tick (within a second).
    fn act(&mut self, batch: Vec<(usize, Crossed)>) -> Result<()> {
        let mut added = Vec::new();
        for (i, c) in batch {
            let e = &mut self.entries[i];
            let o = &e.plan.opts;
            let set = e.plan.sets[usize::from(c.addr.is_ipv6())].clone();
            let net = counted(c.addr, e.v6_count);
            let mut ev = Event {
                event: Kind::Ban,
                time: utc(host::now()),
                watch: e.name.clone(),
                address: crate::units::addr::member(&net),
                set: set.clone(),
                hits: c.hits,
                within_s: o.within,
                first: utc(c.first),
                last: utc(c.last),
                removeafter_s: o.removeafter,
                reason: None,
                at_us: None,
            };
            if let Some(why) = self.policy.check(&net) {
                ev.event = Kind::Skipped;
                ev.reason = Some(why.to_string());
                e.stats.refused += 1;
            } else if let Some(n) = self.cfg.blacklist.iter().find(|n| n.contains(&net)) {
                ev.event = Kind::AlreadyBlocked;
                ev.reason = Some(format!("blacklist {n} (config)"));
            } else if self.opts.dryrun {
                ev.event = Kind::WouldBan;
            } else {
                let banner = self.banner.as_mut().expect("a banning run has a banner");
                match Banner::add(
                    banner,
                    &set,
                    net,
                    o.removeafter.min(u64::from(u32::MAX)) as u32,
                ) {
                    Ok(crate::core::capture::engine::Added::Added) => {
                        ev.at_us = Some(host::now_micros());
                        *e.stats.bans.entry(set.clone()).or_default() += 1;
                        e.bans_uncounted += 1;
                        let why = crate::core::history::Why {
                            origin: "watch".into(),
                            rule: format!("{} ({} {})", e.name, e.plan.rule, e.plan.kind_name),
                            hits: c.hits,
                            window_s: o.within,
                            first: c.first,
                            last: c.last,
                            evidence: c
                                .lines
                                .iter()
                                .map(|l| crate::core::history::evidence_text(l))
                                .collect(),
                        };
                        added.push((i, ev.clone(), why));
                    }
                    Ok(crate::core::capture::engine::Added::AlreadyListed) => {
                        ev.event = Kind::AlreadyListed;
                    }
                    Err(err) => {
                        ev.event = Kind::Failed;
                        ev.reason = Some(err.0.clone());
                        e.stats.failed += 1;
                    }
                }
            }
            self.emit(&ev)?;
        }
        // The counters before the events: whoever reads an event finds
        // its ban counted at /metrics.
        self.publish_metrics();
        self.out.flush()?;
        self.pending.extend(added);
        Ok(())
    }

    /// After a batch of bans: `[aggregate]` gathers bans of one prefix. A
    /// failure warns; the bans made stand.
    fn gather(&mut self) {
        let Some(sets) = self.sets.as_mut() else {
            return;
        };
        let extra: Vec<ipnet::IpNet> = self
            .entries
            .iter()
            .flat_map(|e| e.plan.proxies.iter().copied())
            .collect();
        let now = host::now();
        let own = self.policy.own.clone();
        match super::aggregate::after_bans_cached(
            &self.cfg,
            sets.as_mut(),
            (&self.state_path, &mut self.state_cache),
            &own,
            &extra,
            now,
        ) {
            Ok(done) => {
                for l in super::aggregate::lines(&done) {
                    say!("fwctl: {l}");
                }
                if let Some(n) = &self.notifier {
                    n.send_all(super::aggregate::notices(&done, &self.cfg, now));
                }
                if let Some(p) = &self.publisher {
                    p.share(super::aggregate::fleet_entries(
                        p.member(),
                        &self.cfg,
                        &done,
                        "scan",
                        now,
                    ));
                }
            }
            Err(e) => say!("fwctl: warning: aggregating the bans: {e:#}"),
        }
    }

    fn emit(&mut self, ev: &Event) -> Result<()> {
        let line = if self.opts.json {
            ev.json()
        } else {
            ev.human()
        };
        let look = self.geo.as_ref().map(|g| g as &dyn crate::ports::GeoLookup);
        let line = super::geo::tag(line, self.opts.json, look, Some(&ev.address));
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// The bans in the state file (a reboot's apply restores them; repeat
    /// offences count), then to notify and the fleet.
    fn record(&mut self, added: &[(usize, Event, crate::core::history::Why)]) {
        let now = host::now();
        let keep = self.cfg.evidence;
        let ops: Vec<Op> = added
            .iter()
            .map(|(_, ev, why)| Op::Ban {
                addr: crate::units::addr::parse_addr(&ev.address).expect("ours"),
                set: ev.set.clone(),
                at: now,
                removeafter_s: ev.removeafter_s,
                why: why.clone(),
                keep,
            })
            .collect();
        let result = statefile::update_cached(&self.state_path, now, &mut self.state_cache, &ops);
        let offences = match result {
            Ok((o, warning)) => {
                if let Some(w) = warning {
                    say!("fwctl: warning: {w}");
                }
                o
            }
            Err(e) => {
                say!("fwctl: warning: the bans are in, but the state file was not written ({e}); they will not be restored after a reboot");
                vec![1; added.len()]
            }
        };
        if self.reporter.is_some() {
            let bans = self.reports(added);
            if let Some(r) = self.reporter.as_mut() {
                r.send(bans);
            }
        }
        if let Some(n) = &self.notifier {
            let notices = added
                .iter()
                .zip(&offences)
                .map(|((i, ev, _), offence)| Notice::IpBlocked {
                    address: ev.address.clone(),
                    set: ev.set.clone(),
                    reason: format!(
                        "watch {}: {} {} lines within {} (more than {})",
                        ev.watch,
                        ev.hits,
                        self.entries[*i].plan.kind_name,
                        crate::units::duration::human(ev.within_s),
                        self.entries[*i].plan.opts.howmany
                    ),
                    offence: *offence,
                    duration_s: ev.removeafter_s,
                    until: utc(now + ev.removeafter_s as i64),
                    origin: Origin::Scan,
                })
                .collect();
            n.send_all(notices);
        }
        if let Some(p) = &self.publisher {
            let items: Vec<(ipnet::IpNet, &'static str, u64, String, u32)> = added
                .iter()
                .zip(&offences)
                .filter_map(|((_, ev, _), offence)| {
                    let role = crate::core::ban::role_of(&self.cfg, &ev.set)?.0;
                    let addr = crate::units::addr::parse_addr(&ev.address).ok()?;
                    Some((
                        addr,
                        role,
                        ev.removeafter_s,
                        format!(
                            "watch {}: {} lines within {}",
                            ev.watch,
                            ev.hits,
                            crate::units::duration::human(ev.within_s)
                        ),
                        *offence,
                    ))
                })
                .collect();
            p.share_later(move |m| {
                items
                    .iter()
                    .map(|(addr, role, secs, why, offence)| {
                        m.entry(
                            crate::core::fleet::Op::Ban,
                            *addr,
                            role,
                            *secs,
                            why,
                            *offence,
                            "scan",
                        )
                    })
                    .collect()
            });
        }
    }

    /// Each entry's whole minutes of matching lines and its bans into the
    /// baseline (as a cron scan of the same rule does: each minute is
    /// counted once, by whichever comes first), judged, anomalies told.
    fn count(&mut self) {
        if self.opts.dryrun {
            return;
        }
        let now = host::now();
        // A line read up to LATE after its minute ended still counts.
        let until = now - LATE;
        let froms: Vec<String> = self.entries.iter().map(|e| e.plan.read_from()).collect();
        let entries: Vec<series::Entry> = self
            .entries
            .iter()
            .zip(&froms)
            .map(|(e, from)| series::Entry {
                rule: &e.plan.rule,
                kind: &e.plan.kind_name,
                from,
                // The minute watch started in was read in part: a cron
                // scan (or nobody) counts it, never a part of it.
                minutes: {
                    let mut m = e.minutes.counts();
                    m.remove(&e.started_minute);
                    m
                },
                bans: e.bans_uncounted,
            })
            .filter(|e| !e.minutes.is_empty() || e.bans > 0)
            .collect();
        let shares = series::gather(&entries);
        let runs: Vec<super::afterscan::Counted> = shares
            .iter()
            .map(|share| super::afterscan::Counted {
                rule: &share.rule,
                kind: &share.kind,
                log: &share.log,
                minutes: &share.minutes,
                lines_until: until,
                bans: share.bans,
            })
            .collect();
        if !runs.is_empty() {
            super::afterscan::count_series(
                &self.cfg,
                &self.state_path,
                &runs,
                now,
                self.notifier.as_ref(),
            );
        }
        for e in &mut self.entries {
            e.minutes.forget_before(until.div_euclid(60));
            e.bans_uncounted = 0;
        }
    }

    /// The single addresses of a batch of bans, for AbuseIPDB (a prefix
    /// is not an address the API takes; scan skips them too). Only
    /// fwctl's words go in the comment.
    fn reports(&self, added: &[(usize, Event, crate::core::history::Why)]) -> Vec<Ban> {
        added
            .iter()
            .filter_map(|(i, ev, _)| {
                let p = &self.entries[*i].plan;
                Some(Ban {
                    ip: ev.address.parse().ok()?,
                    categories: abuse::watch_categories(
                        p.opts.source.name(),
                        &p.rule,
                        !p.patterns.is_empty(),
                    ),
                    comment: abuse::comment_by(
                        "watch",
                        &p.rule,
                        &p.kind_name,
                        ev.hits,
                        &crate::units::duration::human(ev.within_s),
                    ),
                })
            })
            .collect()
    }

    fn publish_metrics(&self) {
        let rows: Vec<crate::core::watch::events::Row> = self
            .entries
            .iter()
            .map(|e| {
                let (rotations, truncations) = match &e.from {
                    From::File(f) => (f.stats.rotations, f.stats.truncations),
                    From::Journal(_) => (0, 0),
                };
                crate::core::watch::events::Row {
                    watch: e.name.clone(),
                    stats: e.stats.clone(),
                    tracked: e.counter.tracked() as u64,
                    evicted: e.counter.evicted(),
                    rotations,
                    truncations,
                }
            })
            .collect();
        *self.metrics.lock().expect("metrics") = rows;
    }

    fn stats_events(&mut self) -> Result<()> {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            let s = e.stats.clone();
            let line = crate::core::watch::events::stats_line(
                &e.name,
                &s,
                e.counter.tracked() as u64,
                e.counter.evicted(),
                &utc(host::now()),
                self.opts.json,
            );
            self.out.write_all(line.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(())
    }
}
