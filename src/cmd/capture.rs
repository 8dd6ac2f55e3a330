//! `fwctl capture`: live port-scan detection and banning, and the replay of
//! capture files through the same detector. The core engine decides; this
//! file feeds it frames from a [`PacketSource`] (the AF_PACKET socket, or a
//! pcap file), makes its bans through the [`Banner`] (netlink), keeps the
//! state file and writes the events.

use super::telemetry::Telemetry;
use super::{say, Invocation};
use crate::core::capture::detect::{self, Micros};
use crate::core::capture::engine::{Added, BanFailed, Engine, Mode, Signatures};
use crate::core::capture::events::Event;
use crate::core::capture::packet::Link;
use crate::core::config::signature::Proto;
use crate::core::config::{self, Config, Mode as ConfigMode};
use crate::core::conns::Established;
use crate::core::history::History;
use crate::core::policy::Members;
use crate::ports::{Banner, Clock, ConnError, Connections, PacketSource, Received, SetStore};
use crate::sys::firewall;
use crate::sys::host::{self, SystemClock};
use crate::sys::{cpu, lock, nflog, packet, pcap, sockdiag, statefile};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Profiles ([capture] profile in the config): aggressive = 3 ports in 1h, bans 5m/1h/12h/3d;
standard = 7 ports in 2h, bans 10m/2h/1d/7d; lenient = 15 ports in 24h, bans 30m/4h/2d/14d;
custom = your ports, window and bans. Plain SYNs to the config's TCP services (and UDP to
its UDP services) are counted apart and never make a scan on their own.

Examples:
  fwctl capture --iface eth0 --json             run as a service, events as JSON lines
  fwctl capture --detect-only                   watch every interface, ban nothing
  fwctl capture --pcap attack.pcap              replay a capture file; changes nothing")]
pub struct Options {
    /// Interface to watch (default: every interface).
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// Replay a pcap or pcapng file through the detector instead of watching
    /// live traffic, with the packets' own timestamps as the clock. Bans are
    /// decided and reported, never applied; nothing but FILE and --output is
    /// read or written (no state file).
    #[arg(long, value_name = "FILE", conflicts_with = "iface")]
    pub pcap: Option<PathBuf>,
    /// Report scans without banning (the config's mode = "detection_only" does the same).
    #[arg(long)]
    pub detect_only: bool,
    /// Write each event as one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Append events to FILE instead of writing them to stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A destination address or network that counts as this host, beyond its
    /// own addresses (repeatable; adds to [capture] protected). A replay with
    /// none counts every destination.
    #[arg(long = "protect", value_name = "ADDR[/LEN]")]
    pub protect: Vec<String>,
    /// How often to write a capture_stats event.
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

/// Where events are written: one JSON object or one readable line each.
pub struct Sink {
    out: Box<dyn Write>,
    json: bool,
    /// Flush after every event (live: a reader sees it at once).
    eager: bool,
    /// `[geo]`: the country and AS of each event's address.
    geo: Option<Box<dyn crate::ports::GeoLookup>>,
}

impl Sink {
    pub fn new(out: Box<dyn Write>, json: bool, eager: bool) -> Sink {
        Sink {
            out,
            json,
            eager,
            geo: None,
        }
    }

    /// Events name the country and AS of their address.
    pub fn with_geo(mut self, geo: Option<Box<dyn crate::ports::GeoLookup>>) -> Sink {
        self.geo = geo;
        self
    }

    pub fn emit(&mut self, ev: &Event) -> std::io::Result<()> {
        let line = if self.json { ev.json() } else { ev.human() };
        let addr = crate::core::notify::from_capture(ev);
        let line = super::geo::tag(
            line,
            self.json,
            self.geo.as_deref(),
            addr.as_ref().and_then(|n| n.address()),
        );
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        if self.eager {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Write and forget every event in `evs`.
    pub fn drain(&mut self, evs: &mut Vec<Event>) -> std::io::Result<()> {
        for ev in evs.drain(..) {
            self.emit(&ev)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Hand a batch of events to telemetry and the sink (the first write error
/// is kept for the loop to end on), and empty it.
fn deliver(
    out: &mut Vec<Event>,
    telemetry: &Telemetry,
    sink: &mut Sink,
    failed: &mut Option<std::io::Error>,
) {
    if out.is_empty() {
        return;
    }
    telemetry.events(out);
    if failed.is_none() {
        if let Err(err) = sink.drain(out) {
            *failed = Some(err);
        }
    }
    out.clear();
}

/// The `[geo]` lookup for the events (None: not configured or unreadable).
fn geo_of(config: &Config) -> Option<Box<dyn crate::ports::GeoLookup>> {
    super::geo::lookup(config).map(|db| Box::new(db) as Box<dyn crate::ports::GeoLookup>)
}

fn open_sink(opts: &Options, eager: bool) -> Result<Sink> {
    let out: Box<dyn Write> = match &opts.output {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| {
                    format!(
                        "cannot open event file {}; fix: check the directory exists and is writable",
                        p.display()
                    )
                })?,
        ),
        None => Box::new(std::io::stdout()),
    };
    Ok(Sink::new(
        Box::new(std::io::BufWriter::with_capacity(1 << 16, out)),
        opts.json,
        eager,
    ))
}

fn protected(config: &Config, opts: &Options) -> Result<Vec<ipnet::IpNet>> {
    let mut v = config.capture.protected.clone();
    for s in &opts.protect {
        v.push(
            crate::units::addr::parse_net(s, true)
                .map_err(|e| anyhow::anyhow!("--protect {s}: {e}"))?,
        );
    }
    Ok(v)
}

fn engine(config: &Config, opts: &Options, mode: Mode, history: History) -> Result<Engine> {
    let detector = detect::Detector::new(detect::Settings::from_config(config));
    let mut e = Engine::new(detector, history, config::ban_sets(config), mode);
    e.evidence = config.evidence;
    e.policy.trusted = config.trusted.clone();
    e.policy.whitelist_name = config.sets.whitelist.to_string();
    e.dests.nets = protected(config, opts)?;
    if let Some(f) = &config.capture.flood {
        use crate::core::capture::flood::{FloodSettings, FloodTracker};
        e.flood = Some(crate::core::capture::engine::FloodWatch {
            tracker: FloodTracker::new(FloodSettings {
                per_source: f.syn_rate.per_second(),
                per_port: f.syn_flood_rate.per_second(),
                over: f.over * detect::SECOND,
                capacity: config.capture.max_sources,
            }),
            sets: config::sets_of(config, &f.set),
            syn_rate: f.syn_rate.to_string(),
            syn_flood_rate: f.syn_flood_rate.to_string(),
        });
    }
    if !config.capture.signatures.is_empty() {
        e.signatures = Some(Signatures::new(config.capture.signatures.clone()));
    }
    Ok(e)
}

pub fn run(opts: &Options, inv: &Invocation) -> Result<()> {
    let config = inv.load()?;
    let state = inv.state();
    if let Some(iface) = &opts.iface {
        if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ', '\0']) {
            bail!("--iface \"{iface}\" is not an interface name; fix: pick one from `ip -br link`");
        }
    }
    match &opts.pcap {
        Some(p) => run_replay(&config, opts, p, state.is_some()),
        None => run_live(&config, opts, inv),
    }
}

/// Prefetch what the frame AHEAD of `f` will need (`Engine::warm`), for
/// both the replay and the live loop.
fn prefetch_ahead(e: &Engine, f: &crate::ports::Frame) {
    e.warm(f.link, f.ahead)
        .into_iter()
        .flatten()
        .for_each(cpu::prefetch);
}

/// A replay reads and writes nothing but its input and --output: its bans
/// are decisions to look at, so no state file learns of them (an apply would
/// install them, a second replay would count them as repeat offences).
fn run_replay(config: &Config, opts: &Options, path: &Path, state_named: bool) -> Result<()> {
    if state_named {
        say!("fwctl: note: a replay neither reads nor writes the state file; its repeat offences are counted within the file alone");
    }
    let mut e = engine(config, opts, Mode::Replay, History::default())?;
    e.dests.any = e.dests.nets.is_empty();
    let mut source = pcap::Pcap::open(path)?;
    let mut sink = open_sink(opts, false)?.with_geo(geo_of(config));
    let started = Instant::now();
    let mut last: Micros = 0;
    let mut out = Vec::new();
    let mut written = Ok(());
    // A replay decides bans and never makes one, so it never reads a clock
    // for their latency either. (Per frame only what must be done is: the
    // events are written only when there are some.)
    let mut no_ban = |_: &str, _: ipnet::IpNet, _: u32| -> Result<Added, BanFailed> {
        Err(BanFailed("a replay makes no bans".into()))
    };
    let no_clock = || 0;
    loop {
        let got = source.recv(&mut |f| {
            last = f.time;
            prefetch_ahead(&e, &f);
            e.frame(f.link, f.data, f.time, &mut no_ban, &no_clock, &mut out);
            if !out.is_empty() {
                if written.is_ok() {
                    written = sink.drain(&mut out);
                }
                out.clear();
            }
        })?;
        if got == Received::End {
            break;
        }
    }
    written.context("writing events")?;
    let secs = started.elapsed().as_secs_f64();
    let mut stats = e.stats(last);
    stats.replay_seconds = Some((secs * 1000.0).round() / 1000.0);
    stats.frames_per_second = Some((e.counts.frames as f64 / secs.max(1e-9)) as u64);
    stats.rss_kb = Some(host::memory_kb().0);
    if let Some(at) = source.cut_at() {
        say!(
            "fwctl: warning: {} ends inside a record at byte {at} (a capture cut short, as when tcpdump is killed mid-write); the frames before it were replayed",
            path.display()
        );
    }
    let skipped = &source.skipped;
    if skipped.other_link > 0 {
        stats.skipped_other_link = Some(skipped.other_link);
        say!(
            "fwctl: warning: skipped {} frames of link types {:?} that capture cannot parse (it reads Ethernet, raw IP and Linux cooked captures)",
            skipped.other_link, skipped.linktypes
        );
    }
    sink.emit(&Event::CaptureStats(stats))?;
    sink.flush()?;
    Ok(())
}

/// Merge the in-memory history with the file (bans and unbans made by other
/// commands meanwhile win where they are newer) and write it back.
/// `now` is the clock the history was made with (a replay's is the packets').
fn save_history(path: &Path, mem: &mut History, now: i64) -> Result<()> {
    // The file takes what changed in memory since (newest change wins);
    // the merged history written is then the one kept in memory.
    let (written, warning) = statefile::update_state(path, now, |st| {
        st.history.merge(mem);
        st.history.prune(now);
    })?;
    *mem = written.history;
    if let Some(w) = warning {
        say!("fwctl: warning: {w}");
    }
    Ok(())
}

/// The kernel's whitelist sets' members, for the never-ban policy.
fn whitelist(sys: Option<&mut dyn SetStore>, config: &Config) -> Members {
    let mut m = Members::default();
    let Some(sys) = sys else { return m };
    for v6 in [false, true] {
        if let Ok(members) = sys.members(&config.sets.whitelist.for_family(v6)) {
            m.extend(Members::of(&members));
        }
    }
    m
}

/// How often capture re-reads its admin peers.
const ADMIN_EVERY: Duration = Duration::from_secs(1);

/// What capture keeps between readings of the connections to the admin
/// ports: when each was first seen (only one held past `min_age` shields
/// its peer) and whether the last reading failed.
pub struct AdminWatch {
    pub ports: Vec<u16>,
    pub min_age: u64,
    peers: crate::core::conns::AdminPeers,
    failing: bool,
}

impl AdminWatch {
    pub fn new(ports: Vec<u16>, min_age: u64) -> AdminWatch {
        AdminWatch {
            ports,
            min_age,
            peers: Default::default(),
            failing: false,
        }
    }

    /// The engine's admin peers from one reading taken at `now` (seconds):
    /// the peers holding a connection to an admin port for `min_age`, which
    /// it bans only on evidence a forger cannot produce. A failure is said
    /// once and leaves no admin peer: a stale list would shield whoever was
    /// connected once.
    pub fn take(&mut self, reading: Reading, now: i64, e: &mut Engine) {
        match reading {
            Ok(est) => {
                e.admin_peers =
                    self.peers
                        .update(&est.conns, &self.ports, &e.policy.own, now, self.min_age);
                if self.failing {
                    say!("fwctl: admin peers read again");
                }
                self.failing = false;
            }
            Err(err) => {
                e.admin_peers.clear();
                self.peers = Default::default();
                if !self.failing {
                    say!("fwctl: warning: cannot read the connections to [capture] admin_ports ({err}); until it can, probes forged with an admin's address can get the admin banned");
                }
                self.failing = true;
            }
        }
    }

    #[cfg(test)]
    fn failing(&self) -> bool {
        self.failing
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One reading of the connections to the admin ports.
type Reading = Result<Established, ConnError>;

/// A thread that reads the connections to `ports` (sock_diag, filtered on
/// them in the kernel) every [`ADMIN_EVERY`] and hands each reading over,
/// until the returned sender is dropped. Not on the packet loop: a dump
/// walks the kernel's whole TCP hash table (5-7 ms a family with the
/// 262 144-bucket table of this VM, however few sockets match).
fn watch_admins(
    mut conns: Box<dyn Connections + Send>,
    ports: Vec<u16>,
) -> Option<(Receiver<Reading>, Sender<()>)> {
    let (tx, rx) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("fwctl-admins".into())
        .spawn(move || loop {
            match stopped.recv_timeout(ADMIN_EVERY) {
                Err(RecvTimeoutError::Timeout) => {
                    if tx.send(conns.established(Some(&ports))).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        })
        .ok()?;
    Some((rx, stop))
}

fn run_live(config: &Config, opts: &Options, inv: &Invocation) -> Result<()> {
    if !host::is_root() {
        bail!("fwctl capture reads raw packets and changes ipsets, so it must run as root; fix: sudo fwctl capture ... (or replay a file with --pcap)");
    }
    // One capture per run directory: a second one would ban twice and fight
    // over the state file. Held until exit; `fwctl status` reads it.
    // The run directory is made if missing (as for every other lock), and
    // only a lock held by a live capture reads as "already running".
    lock::ensure_run_dir(&lock::run_dir())?;
    let _running = match lock::acquire_file(&lock::capture_lock(), Duration::ZERO) {
        Ok(l) => l,
        Err(lock::LockError::Held { pid, .. }) => bail!(
            "fwctl capture is already running{}; fix: stop it first (systemctl stop fwctl-capture)",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Err(e) => return Err(e.into()),
    };
    let state_path = config.state_path(inv.state());
    let telemetry = Telemetry::start(config, &state_path, &config::ban_sets(config))?;
    // From here on, this is the capture: an error that ends it is told.
    let result = live(config, opts, inv, &state_path, &telemetry);
    telemetry.finish(result.as_ref().err());
    result
}

fn live(
    config: &Config,
    opts: &Options,
    inv: &Invocation,
    state_path: &Path,
    telemetry: &Telemetry,
) -> Result<()> {
    let detect_only = opts.detect_only || config.mode == ConfigMode::DetectionOnly;
    let sets = config::ban_sets(config);
    let mut sys = firewall::sets(config.firewall.backend);
    if !detect_only {
        let sys = sys.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
        let headers = sys.heads()?;
        crate::core::ban::check_ban_sets(
            &sets,
            &headers,
            &inv.fix("apply"),
            "or set [capture] ban_set in the config",
        )?;
        if let Some(f) = &config.capture.flood {
            crate::core::ban::check_ban_sets(
                &config::sets_of(config, &f.set),
                &headers,
                &inv.fix("apply"),
                "or set [capture.flood] set in the config",
            )?;
        }
    }
    let index = match &opts.iface {
        Some(name) => packet::ifindex(name)?,
        None => 0,
    };
    // Load the history, and prove the state file can be written now, not at the first ban.
    let mut loaded = History::default();
    save_history(state_path, &mut loaded, host::now()).with_context(|| {
        format!(
            "the state file {} must be writable; fix: create its directory or pass --state",
            state_path.display()
        )
    })?;
    let mode = if detect_only {
        Mode::DetectOnly
    } else {
        Mode::Ban
    };
    let mut e = engine(config, opts, mode, loaded)?;
    let refresh = |e: &mut Engine, sys: Option<&mut dyn SetStore>| {
        e.set_own(host::own_addresses());
        e.syncookies = host::syncookies();
        e.policy.whitelist = whitelist(sys, config);
    };
    refresh(
        &mut e,
        sys.as_mut().ok().map(|s| &mut **s as &mut dyn SetStore),
    );
    // Admin peers matter only where bans are made: read once now, before
    // the first probe, then by a thread of their own.
    let mut admin = AdminWatch::new(
        config.capture.admin_ports.clone(),
        config.capture.admin_min_age,
    );
    let admins = if mode == Mode::Ban && !admin.ports.is_empty() {
        let mut conns = sockdiag::Host::new();
        let first = conns.established(Some(&admin.ports));
        admin.take(first, unix_now(), &mut e);
        watch_admins(Box::new(conns), admin.ports.clone())
    } else {
        None
    };
    let mut banner = firewall::banner(config.firewall.backend).with_context(|| {
        format!(
            "netlink socket for the {} sets",
            config.firewall.backend.as_str()
        )
    })?;
    let (tcp, udp) = e.signatures.as_ref().map_or((&[][..], &[][..]), |s| {
        (s.matcher.ports(Proto::Tcp), s.matcher.ports(Proto::Udp))
    });
    let mut sock = packet::Live::open(index, tcp, udp).map_err(|err| {
        anyhow::anyhow!("cannot open the packet socket: {err}; fix: run as root (CAP_NET_RAW)")
    })?;
    // The packets conntrack says belong to no connection, from apply's
    // NFLOG rules: the ACK-type scans. Without them capture still sees
    // every other kind, so a failure only warns.
    let mut conntracked = match config.capture.nflog_group {
        0 => None,
        group => match nflog::Nflog::open(group, crate::core::ruleset::NFLOG_SIZE) {
            Ok(n) => {
                sock.wake_on(n.fd());
                Some(n)
            }
            Err(err) => {
                say!("fwctl: warning: {err}; ACK scans (-sA, -sW, -sM) go unseen");
                None
            }
        },
    };
    let decoys = if config.capture.decoy_ports.is_empty() {
        None
    } else {
        let d = crate::sys::decoy::listen(&config.capture.decoy_ports)
            .map_err(|e| anyhow::anyhow!(e))?;
        // A handshake arrives on the listeners, not the packet socket:
        // look at them every 2 ms, so a decoy ban takes milliseconds.
        sock.set_poll_ms(2);
        Some(d)
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
    }
    let mut sink = open_sink(opts, true)?.with_geo(geo_of(config));
    say!(
        "fwctl: capture on {} (profile {}, {}), {} tracked sources at most{}",
        opts.iface.as_deref().unwrap_or("every interface"),
        config.capture.profile.name,
        if detect_only {
            "detection only".to_string()
        } else {
            format!("banning into {} / {}", sets[0], sets[1])
        },
        config.capture.max_sources,
        telemetry.announce()
    );
    if let Some(w) = telemetry.warning() {
        say!("{w}");
    }
    let clock = SystemClock;
    let now_us = || clock.now_micros();
    let mut last_stats = Instant::now();
    let mut last_save = Instant::now();
    let mut last_own = Instant::now();
    let mut last_drops = Instant::now();
    let mut save_failing = false;
    let mut failed: Option<std::io::Error> = None;
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut ban = |set: &str, net, secs| Banner::add(&mut banner, set, net, secs);
        sock.recv(&mut |f: crate::ports::Frame| {
            prefetch_ahead(&e, &f);
            e.frame(f.link, f.data, f.time, &mut ban, &now_us, &mut out);
            deliver(&mut out, telemetry, &mut sink, &mut failed);
        })?;
        if let Some(n) = conntracked.as_mut() {
            // At most 64 datagrams a lap (the rules' limit keeps them few).
            n.drain(64, |msg| {
                let at = nflog::timestamp(msg).unwrap_or_else(|| clock.now_micros());
                e.frame(Link::Nflog, msg, at, &mut ban, &now_us, &mut out);
                deliver(&mut out, telemetry, &mut sink, &mut failed);
            });
        }
        if let Some(d) = &decoys {
            while let Ok((src, port, at)) = d.touches.try_recv() {
                e.decoy(src, port, at, &mut ban, &now_us, &mut out);
                deliver(&mut out, telemetry, &mut sink, &mut failed);
            }
        }
        if let Some(err) = failed.take() {
            return Err(err).context("writing events");
        }
        telemetry.counters(&e);
        if last_drops.elapsed() >= Duration::from_secs(1) {
            sock.read_stats();
            telemetry.housekeeping(sock.drops);
            // The newest reading of the admin peers, if one came.
            if let Some(reading) = admins.as_ref().and_then(|(rx, _)| rx.try_iter().last()) {
                admin.take(reading, unix_now(), &mut e);
            }
            last_drops = Instant::now();
        }
        if e.dirty && last_save.elapsed() >= Duration::from_secs(1) {
            // A full or read-only disk must not stop the banning: warn once,
            // keep the history in memory and try again every second.
            match save_history(state_path, &mut e.history, host::now()) {
                Ok(()) => {
                    if save_failing {
                        say!("fwctl: state file {} written again", state_path.display());
                    }
                    save_failing = false;
                    e.dirty = false;
                    if mode == Mode::Ban {
                        if let Ok(s) = sys.as_mut() {
                            gather(config, &mut **s, state_path, &mut e, telemetry);
                        }
                    }
                }
                Err(err) if !save_failing => {
                    say!("fwctl: warning: {err:#}; bans go on, the history is kept in memory and saved when it can be");
                    save_failing = true;
                }
                Err(_) => {}
            }
            last_save = Instant::now();
        }
        if last_own.elapsed() >= Duration::from_secs(30) {
            refresh(
                &mut e,
                sys.as_mut().ok().map(|s| &mut **s as &mut dyn SetStore),
            );
            last_own = Instant::now();
        }
        if last_stats.elapsed() >= opts.stats_every {
            sink.emit(&live_stats(&e, &mut sock))?;
            last_stats = Instant::now();
        }
    }
    save_history(state_path, &mut e.history, host::now())?;
    sink.emit(&live_stats(&e, &mut sock))?;
    sink.flush()?;
    say!(
        "fwctl: capture stopped; state saved to {}",
        state_path.display()
    );
    Ok(())
}

/// After the bans just saved: `[aggregate]` gathers bans of one prefix
/// (the file then holds the prefix and the ended members; the next save's
/// merge brings them into memory, newest change winning). A failure warns.
fn gather(
    config: &Config,
    sys: &mut dyn SetStore,
    state_path: &Path,
    e: &mut Engine,
    telemetry: &Telemetry,
) {
    let own = host::own_addresses();
    let now = host::now();
    match super::aggregate::after_bans(config, sys, state_path, &own, &[], now) {
        Ok(done) => {
            for l in super::aggregate::lines(&done) {
                say!("fwctl: {l}");
            }
            if !done.gathered.is_empty() {
                // Saved again at once, so memory takes the file's changes.
                e.dirty = true;
                telemetry.aggregated(&done, config, now);
            }
        }
        Err(err) => say!("fwctl: warning: aggregating the bans: {err:#}"),
    }
}

fn live_stats(e: &Engine, sock: &mut packet::Live) -> Event {
    sock.read_stats();
    let mut s = e.stats(host::now_micros());
    let (rss, peak) = host::memory_kb();
    s.kernel_drops = Some(sock.drops);
    s.kernel_packets = Some(sock.kernel_packets);
    s.rss_kb = Some(rss);
    s.peak_rss_kb = Some(peak);
    Event::CaptureStats(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::conns::FakeConns;

    #[test]
    fn admin_peers_come_from_the_admin_ports_and_go_when_unreadable() {
        let cfg = Config::builtin();
        let opts = Options {
            iface: None,
            pcap: None,
            detect_only: false,
            json: false,
            output: None,
            protect: vec![],
            stats_every: Duration::from_secs(60),
        };
        let mut e = engine(&cfg, &opts, Mode::Ban, History::default()).unwrap();
        e.set_own(vec!["198.51.100.1".parse().unwrap()]);
        let mut c = FakeConns::of(&[
            ("198.51.100.1:22", "203.0.113.5:50000"),
            ("198.51.100.1:22", "198.51.100.1:50001"),
            ("198.51.100.1:443", "203.0.113.6:50000"),
        ]);
        let ports = cfg.capture.admin_ports.clone();
        let mut w = AdminWatch::new(ports.clone(), cfg.capture.admin_min_age);
        w.take(c.established(Some(&ports)), 1000, &mut e);
        assert!(e.admin_peers.is_empty(), "not held long enough yet");
        w.take(c.established(Some(&ports)), 1000 + 150, &mut e);
        assert_eq!(e.admin_peers, [("203.0.113.5".parse().unwrap(), 22)]);
        c.fail = Some("netlink: EPERM".into());
        w.take(c.established(Some(&ports)), 1200, &mut e);
        assert!(w.failing() && e.admin_peers.is_empty());
        // The watcher asks about the admin ports alone, each second, until stopped.
        let c = FakeConns::of(&[
            ("198.51.100.1:2222", "203.0.113.5:50000"),
            ("198.51.100.1:443", "203.0.113.6:50000"),
        ]);
        let (rx, stop) = watch_admins(Box::new(c), vec![22, 2222]).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(got.conns.len(), 1, "{got:?}");
        assert_eq!(got.conns[0].local.port(), 2222);
        drop(stop);
        while rx.recv_timeout(Duration::from_secs(5)).is_ok() {}
        assert!(rx.try_recv().is_err(), "it stopped");
    }
}
