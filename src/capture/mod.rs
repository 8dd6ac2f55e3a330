//! `fwctl capture`: live port-scan detection and banning, and the replay of
//! capture files through the same detector.
//!
//! The pure core is `packet` (frame parsing), `table` (bounded tracking),
//! `detect` (the detector), `history` (progressive bans) and `bpf` (the
//! kernel filter as data). The adapters are `live` (AF_PACKET), `replay`
//! (pcap/pcapng), `netlink` (ipset adds) and `state` (the state file);
//! `engine` ties one frame to its decisions and events.

pub mod bpf;
pub mod detect;
pub mod engine;
pub mod events;
pub mod live;
pub mod netlink;
pub mod packet;
pub mod replay;
pub mod settings;
pub mod table;

use crate::config::{Config, Mode as ConfigMode};
use crate::state::{self, history};
use anyhow::{bail, Context, Result};
use engine::{Engine, Mode, Recorder};
use events::Sink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// decided and reported, never applied.
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

fn parse_every(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        _ => Err(format!(
            "\"{s}\" is not a duration of 1s or more (e.g. 30s, 5m)"
        )),
    }
}

/// Resident and peak memory in kB, from /proc/self/status.
pub fn memory_kb() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn open_sink(opts: &Options, eager: bool) -> Result<Sink> {
    let out: Box<dyn std::io::Write> = match &opts.output {
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
            crate::config::parse_net(s, true).map_err(|e| anyhow::anyhow!("--protect {s}: {e}"))?,
        );
    }
    Ok(v)
}

fn engine(
    config: &Config,
    opts: &Options,
    mode: Mode,
    history: history::History,
) -> Result<Engine> {
    let detector = detect::Detector::new(settings::detector_settings(config));
    let mut e = Engine::new(detector, history, settings::ban_sets(config), mode);
    e.trusted = config.trusted.clone();
    e.dests.nets = protected(config, opts)?;
    Ok(e)
}

/// `state`: the global --state (a replay reads and writes one only when given).
pub fn run(opts: &Options, config_path: &Path, state: Option<&Path>) -> Result<()> {
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(iface) = &opts.iface {
        if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ', '\0']) {
            bail!("--iface \"{iface}\" is not an interface name; fix: pick one from `ip -br link`");
        }
    }
    match &opts.pcap {
        Some(p) => run_replay(&config, opts, p, state),
        None => run_live(&config, opts, state),
    }
}

fn run_replay(config: &Config, opts: &Options, path: &Path, state: Option<&Path>) -> Result<()> {
    let now = crate::host::now();
    let (history, warning) = match state {
        Some(p) => {
            let l = state::load(p, now)?;
            (l.state.history, l.warning)
        }
        None => Default::default(),
    };
    if let Some(w) = warning {
        eprintln!("fwctl: warning: {w}");
    }
    let mut e = engine(config, opts, Mode::Replay, history)?;
    e.dests.any = e.dests.nets.is_empty();
    let mut sink = open_sink(opts, false)?;
    let mut banner = Recorder::default();
    let started = Instant::now();
    let mut last = 0;
    let mut result = Ok(());
    let skipped = replay::replay(path, |link, data, t| {
        last = t;
        if result.is_ok() {
            result = e.frame(link, data, t, &mut banner, &mut sink, &|| t);
        }
    })?;
    result.context("writing events")?;
    let secs = started.elapsed().as_secs_f64();
    let mut fields = e.stats();
    fields["replay_seconds"] = serde_json::json!((secs * 1000.0).round() / 1000.0);
    fields["frames_per_second"] =
        serde_json::json!((e.counts.frames as f64 / secs.max(1e-9)) as u64);
    fields["rss_kb"] = serde_json::json!(memory_kb().0);
    if skipped.other_link > 0 {
        fields["skipped_other_link"] = serde_json::json!(skipped.other_link);
        eprintln!(
            "fwctl: warning: skipped {} frames of link types {:?} that capture cannot parse (it reads Ethernet, raw IP and Linux cooked captures)",
            skipped.other_link, skipped.linktypes
        );
    }
    sink.emit(&events::stats(last, fields))?;
    sink.flush()?;
    if let Some(p) = state {
        save_history(p, &mut e.history, (last / 1_000_000) as i64)?;
    }
    Ok(())
}

/// Merge the in-memory history with the file (bans and unbans made by other
/// commands meanwhile win where they are newer) and write it back.
/// `now` is the clock the history was made with (a replay's is the packets').
fn save_history(path: &Path, mem: &mut history::History, now: i64) -> Result<()> {
    // The file takes what changed in memory since (newest change wins);
    // the merged history written is then the one kept in memory.
    let (written, warning) = state::update_state(path, now, |st| {
        st.history.merge(mem);
        st.history.prune(now);
    })?;
    *mem = written.history;
    if let Some(w) = warning {
        eprintln!("fwctl: warning: {w}");
    }
    Ok(())
}

fn run_live(config: &Config, opts: &Options, state: Option<&Path>) -> Result<()> {
    if !crate::commands::is_root() {
        bail!("fwctl capture reads raw packets and changes ipsets, so it must run as root; fix: sudo fwctl capture ... (or replay a file with --pcap)");
    }
    let detect_only = opts.detect_only || config.mode == ConfigMode::DetectionOnly;
    let sets = settings::ban_sets(config);
    if !detect_only {
        let mut sys =
            crate::backend::System::locate_only(&["ipset"]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let text =
            crate::backend::SetStore::headers(&mut sys).map_err(|e| anyhow::anyhow!("{e}"))?;
        let headers = crate::ipset::parse_headers(&text);
        crate::scan::check_sets(&sets, &headers, "or set [capture] ban_set in the config")?;
    }
    let index = match &opts.iface {
        Some(name) => live::ifindex(name)?,
        None => 0,
    };
    let state_path = crate::commands::state_path(state, config);
    // One capture per run directory: a second one would ban twice and fight
    // over the state file. Held until exit; `fwctl status` reads it.
    let _running = crate::lock::acquire_file(&crate::commands::capture_lock(), Duration::ZERO)
        .map_err(|_| {
            anyhow::anyhow!(
                "fwctl capture is already running{}; fix: stop it first (systemctl stop fwctl-capture)",
                crate::lock::holder(&crate::commands::capture_lock())
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default()
            )
        })?;
    // Load the history, and prove the state file can be written now, not at the first ban.
    let mut loaded = history::History::default();
    save_history(&state_path, &mut loaded, crate::host::now()).with_context(|| {
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
    let refresh_own = |e: &mut Engine| {
        e.own = crate::host::own_addresses().into_iter().collect();
        e.dests.exact = e.own.clone();
    };
    refresh_own(&mut e);
    let mut banner = netlink::Ipset::open().context("netlink socket for ipset")?;
    let mut sock = live::Live::open(index).map_err(|err| {
        anyhow::anyhow!("cannot open the packet socket: {err}; fix: run as root (CAP_NET_RAW)")
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
    }
    let mut sink = open_sink(opts, true)?;
    eprintln!(
        "fwctl: capture on {} (profile {}, {}), {} tracked sources at most",
        opts.iface.as_deref().unwrap_or("every interface"),
        config.capture.profile.name,
        if detect_only {
            "detection only".to_string()
        } else {
            format!("banning into {} / {}", sets[0], sets[1])
        },
        config.capture.max_sources
    );
    let clock = crate::host::now_micros;
    let mut last_stats = Instant::now();
    let mut last_save = Instant::now();
    let mut last_own = Instant::now();
    let mut save_failing = false;
    let mut failed: Option<std::io::Error> = None;
    while !stop.load(Ordering::Relaxed) {
        sock.recv(|f| {
            if failed.is_none() {
                if let Err(err) = e.frame(f.link, f.data, f.time, &mut banner, &mut sink, &clock) {
                    failed = Some(err);
                }
            }
        })?;
        if let Some(err) = failed.take() {
            return Err(err).context("writing events");
        }
        if e.dirty && last_save.elapsed() >= Duration::from_secs(1) {
            // A full or read-only disk must not stop the banning: warn once,
            // keep the history in memory and try again every second.
            match save_history(&state_path, &mut e.history, crate::host::now()) {
                Ok(()) => {
                    if save_failing {
                        eprintln!("fwctl: state file {} written again", state_path.display());
                    }
                    save_failing = false;
                    e.dirty = false;
                }
                Err(err) if !save_failing => {
                    eprintln!("fwctl: warning: {err:#}; bans go on, the history is kept in memory and saved when it can be");
                    save_failing = true;
                }
                Err(_) => {}
            }
            last_save = Instant::now();
        }
        if last_own.elapsed() >= Duration::from_secs(30) {
            refresh_own(&mut e);
            last_own = Instant::now();
        }
        if last_stats.elapsed() >= opts.stats_every {
            sink.emit(&live_stats(&e, &mut sock))?;
            last_stats = Instant::now();
        }
    }
    save_history(&state_path, &mut e.history, crate::host::now())?;
    sink.emit(&live_stats(&e, &mut sock))?;
    sink.flush()?;
    eprintln!(
        "fwctl: capture stopped; state saved to {}",
        state_path.display()
    );
    Ok(())
}

fn live_stats(e: &Engine, sock: &mut live::Live) -> serde_json::Value {
    sock.read_stats();
    let mut f = e.stats();
    let (rss, peak) = memory_kb();
    f["kernel_drops"] = serde_json::json!(sock.drops);
    f["kernel_packets"] = serde_json::json!(sock.kernel_packets);
    f["rss_kb"] = serde_json::json!(rss);
    f["peak_rss_kb"] = serde_json::json!(peak);
    events::stats(crate::host::now_micros(), f)
}
