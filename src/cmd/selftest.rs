//! `fwctl selftest`: the firewall proves itself on a twin of this host. The
//! rows and their verdicts are `core::selftest`'s; the namespaces, processes
//! and packets `sys::selftest`'s and `sys::probe`'s. The twin gets the
//! config's ruleset through fwctl's own `apply` (and `ban`, `scan`,
//! `capture`, `list`), re-executed inside it with a temp state file and run
//! directory: the host's firewall, /var/lib/fwctl and /run/fwctl are never
//! touched. Exit: 0 every row passed (or was skipped), 1 a row failed, 2 the
//! selftest itself could not run (or was interrupted).

use super::Invocation;
use crate::core::config::{self, Config, Protocol};
use crate::core::selftest::twin::{self, Addrs};
use crate::core::selftest::{self as st, Check, Planned, Row, Verdict};
use crate::sys::probe::{self, Kmsg, Probes};
use crate::sys::selftest::{self as lab, Files, Lab, LabError};
use crate::sys::{dirs, feedstore, host};
use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Print one JSON document ({"ok", "elapsed_ms", "checks": [{"check",
    /// "result", "detail"}]}) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The hidden `selftest-listen`: the twin's services, as selftest starts them.
#[derive(clap::Args, Debug)]
pub struct ListenOptions {
    /// Accept TCP connections on ADDR:PORT (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    pub tcp: Vec<SocketAddr>,
    /// Echo UDP datagrams on ADDR:PORT (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    pub udp: Vec<SocketAddr>,
    /// Write TEXT to each accepted TCP connection (the forward row's
    /// container: a connection answered by the twin itself says nothing).
    #[arg(long, value_name = "TEXT")]
    pub say: Option<String>,
}

pub fn listen(o: &ListenOptions) -> Result<()> {
    Ok(lab::listen(&o.tcp, &o.udp, o.say.as_deref())?)
}

/// What the forward row's container says on each connection.
const CONTAINER_SAYS: &str = "fwctl selftest container";

/// A packet that must be dropped gets this long to be answered anyway;
/// one that must pass gets [`PASS_WAIT`]. Both under the 1 s SYN retry.
const DROP_WAIT: Duration = Duration::from_millis(500);
const PASS_WAIT: Duration = Duration::from_millis(900);
/// fwctl commands run in the twin (apply, ban, scan, list).
const FWCTL_WAIT: Duration = Duration::from_secs(20);
/// A ban by scan or capture, or a LOG line, shows up within this.
const SHOW_WAIT: Duration = Duration::from_secs(4);

pub fn run(o: &Options, inv: &Invocation) -> ExitCode {
    let started = Instant::now();
    match rows(inv) {
        Ok(rows) => {
            let ms = started.elapsed().as_millis() as u64;
            let text = match o.json {
                true => st::json(&rows, ms),
                false => format!("{}{}\n", st::table(&rows), st::summary(&rows, ms)),
            };
            match super::out(text) {
                Ok(()) => ExitCode::from(st::exit_code(&rows)),
                Err(_) => ExitCode::from(2),
            }
        }
        Err(e) => {
            super::say!("fwctl: error: selftest could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The state of one run: the twin and what the checks share.
struct Run<'a> {
    cfg: &'a Config,
    a: Addrs,
    trusted: Option<IpAddr>,
    closed: u16,
    ports: Vec<u16>,
    dir: &'a Path,
    // Dropped in this order: the namespaces and their processes, then the
    // kernel log with nf_log_all_netns put back.
    lab: Lab,
    kmsg: std::result::Result<Kmsg, String>,
    applied: bool,
    /// What this host serves, read before the twin exists.
    listening: st::Listening,
    capture: Option<std::result::Result<(), String>>,
    /// Docker's layout in the twin (the forward row's), built before apply.
    docker: Option<std::result::Result<(), String>>,
    /// Whether the blacklist row's `fwctl ban` of `a.banned` succeeded.
    banned: bool,
}

fn rows(inv: &Invocation) -> Result<Vec<Row>> {
    if !host::is_root() {
        bail!(
            "it builds network namespaces, which needs root; fix: {}",
            inv.fix("selftest")
        );
    }
    let cfg = inv.load()?;
    // The backend's tools, found before anything is built.
    crate::sys::firewall::open(cfg.firewall.backend)?;
    lab::catch_signals().context("cannot catch SIGINT/SIGTERM")?;
    lab::remove_namespaces(&lab::stale_namespaces());
    lab::remove_temp_dirs(&lab::stale_temp_dirs());
    let a = twin::addresses(&cfg).ok_or_else(|| {
        anyhow!("the config's [trusted] and [blacklist] cover nearly every documentation address (198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24, 2001:db8:5e1f::/64); fix: narrow those entries, selftest needs a dozen free ones")
    })?;
    let trusted = twin::trusted_source(&cfg);
    let closed = twin::closed_port(&cfg).ok_or_else(|| anyhow!("the config uses every port"))?;
    let n = cfg.capture.profile.ports.min(st::MAX_SCAN_PORTS) as usize + 4;
    let ports = twin::scan_ports(&cfg, n);
    let tmp = tempfile::Builder::new()
        .prefix(&lab::temp_prefix())
        .tempdir()
        .context("cannot make a temp directory")?;
    let dir = tmp.path();
    let state = dir.join("state.json");
    let run_dir = dir.join("run");
    dirs::create_private(&run_dir).context("temp run directory")?;
    let twin_cfg = dir.join("fwctl.toml");
    let (text, base) = match cfg.is_builtin() {
        true => (config::BUILTIN.to_string(), std::path::PathBuf::from(".")),
        false => {
            let p = inv.config_path();
            let t = crate::sys::configfile::text(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            // The copy lives elsewhere: relative [blacklist] files are
            // resolved against the original's absolute directory.
            let abs = std::path::absolute(p).with_context(|| format!("{}", p.display()))?;
            (t, abs.parent().unwrap_or(Path::new("/")).to_path_buf())
        }
    };
    std::fs::write(&twin_cfg, twin::twin_config(&text, &base, &state)?)
        .context("cannot write the twin's config")?;
    // A feed's sets start with its last good copy: the fed address is it.
    if let Some(f) = cfg.feeds.first() {
        let d = feedstore::dir_for(&state);
        dirs::create_private(&d).context("temp feeds directory")?;
        feedstore::save_list(&d, &f.name, &[ipnet::IpNet::from(a.fed)])
            .context("cannot write the twin's feed list")?;
    }
    let files = Files {
        config: &twin_cfg,
        state: &state,
        run_dir: &run_dir,
    };
    let listening = lab::listening();
    let lab = Lab::new(&a, trusted, files)?;
    // Every LOG line of the twin names one of its links: `fwstPIDh`.
    let keep = format!("IN=fwst{}h", std::process::id());
    let kmsg = Kmsg::open(&keep).map_err(|e| format!("cannot read the kernel log /dev/kmsg: {e}"));
    let mut run = Run {
        cfg: &cfg,
        a,
        trusted,
        closed,
        ports,
        dir,
        lab,
        kmsg,
        applied: false,
        listening,
        capture: None,
        docker: None,
        banned: false,
    };
    let plan = st::plan(&cfg, st::docker::protected(&cfg));
    // What Docker writes exists before apply runs, as on a Docker host:
    // apply finds DOCKER-USER and hooks into it.
    if plan
        .iter()
        .any(|p| p.check == Check::Forward && p.skip.is_none())
    {
        run.docker = Some(match run.docker_host() {
            Ok(()) => Ok(()),
            Err(LabError::Interrupted) => bail!("interrupted (the namespaces are deleted)"),
            Err(e) => Err(e.to_string()),
        });
    }
    let mut out = Vec::new();
    for p in plan {
        if lab::interrupted() {
            bail!("interrupted (the namespaces are deleted)");
        }
        out.push(run.row(&p)?);
    }
    Ok(out)
}

fn reply(p: &Probes) -> &'static str {
    if p.connected > 0 {
        "connected"
    } else if p.refused > 0 {
        "refused (a reset: nothing listens)"
    } else {
        "no answer (dropped)"
    }
}

type Outcome = std::result::Result<(Verdict, String), LabError>;

fn pass(d: impl Into<String>) -> Outcome {
    Ok((Verdict::Pass, d.into()))
}

fn fail(d: impl Into<String>) -> Outcome {
    Ok((Verdict::Fail, d.into()))
}

impl Run<'_> {
    fn row(&mut self, p: &Planned) -> Result<Row> {
        if let Some(why) = &p.skip {
            return Ok(Row::new(&p.name, Verdict::Skipped, why.clone()));
        }
        if p.check != Check::Apply && !self.applied {
            return Ok(Row::new(
                &p.name,
                Verdict::Skipped,
                "the ruleset did not apply",
            ));
        }
        let got = match p.check {
            Check::Apply => self.apply(),
            Check::Service(i) => self.service(i),
            Check::ClosedPort => self.closed_port(),
            Check::Blacklisted => self.banned(),
            Check::Fed => {
                let f = &self.cfg.feeds[0].name;
                let how = format!(
                    "{} (the feed's last copy)",
                    crate::core::feeds::set_names(f)[0]
                );
                self.dropped(self.a.fed, &how)
            }
            Check::Throttled => self.throttled(),
            Check::Whitelist => self.whitelist(),
            Check::Neighbour => self.neighbour(),
            Check::ScanBans => self.scan(),
            Check::CaptureScan => self.capture_scan(),
            Check::CaptureDecoy => self.decoy(),
            Check::Forward => self.forward(),
        };
        match got {
            Ok((v, d)) => Ok(Row::new(&p.name, v, d)),
            Err(LabError::Interrupted) => bail!("interrupted (the namespaces are deleted)"),
            Err(e) => Ok(Row::new(&p.name, Verdict::Fail, format!("error: {e}"))),
        }
    }

    fn io(e: std::io::Error) -> LabError {
        LabError::Step {
            what: "probe".into(),
            detail: e.to_string(),
        }
    }

    /// Connections from `src` (in `ns`) to each of `dsts`.
    fn knock(
        &self,
        ns: &str,
        src: IpAddr,
        dsts: &[SocketAddr],
        wait: Duration,
    ) -> std::result::Result<Probes, LabError> {
        let dsts = dsts.to_vec();
        probe::in_ns(ns, move || probe::connect(src, &dsts, wait)).map_err(Self::io)
    }

    fn twin_of(&self, src: IpAddr) -> IpAddr {
        match src.is_ipv4() {
            true => self.a.twin4,
            false => self.a.twin6,
        }
    }

    fn fwctl_ok(&self, args: &[&str]) -> std::result::Result<Result<String, String>, LabError> {
        self.lab.fwctl(args, FWCTL_WAIT)
    }

    fn apply(&mut self) -> Outcome {
        if let Err(e) = self.fwctl_ok(&["apply", "--force"])? {
            return fail(e);
        }
        self.applied = true;
        // The twin's services answer from here on.
        let mut args: Vec<String> = vec!["selftest-listen".into()];
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.cfg.services {
            let flag = match s.protocol {
                Protocol::Tcp => "--tcp",
                Protocol::Udp => "--udp",
            };
            for t in [self.a.twin4, self.a.twin6] {
                if seen.insert((flag, t, s.ports.first)) {
                    args.push(flag.into());
                    args.push(SocketAddr::new(t, s.ports.first).to_string());
                }
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lab.start(&args, "ready", Duration::from_secs(5))?;
        pass(format!(
            "fwctl apply installed the ruleset ({} backend)",
            self.cfg.firewall.backend.as_str()
        ))
    }

    fn service(&mut self, i: usize) -> Outcome {
        let s = &self.cfg.services[i];
        let mut said = Vec::new();
        let mut ok = true;
        for src in [self.a.client4, self.a.client6] {
            let dst = SocketAddr::new(self.twin_of(src), s.ports.first);
            let fam = if src.is_ipv4() { "IPv4" } else { "IPv6" };
            let got = match s.protocol {
                Protocol::Tcp => {
                    let p = self.knock(&self.lab.client, src, &[dst], PASS_WAIT)?;
                    ok &= p.connected == 1;
                    reply(&p)
                }
                Protocol::Udp => {
                    let e = probe::in_ns(&self.lab.client, move || {
                        probe::udp_echo(src, dst, PASS_WAIT)
                    })
                    .map_err(Self::io)?;
                    ok &= e;
                    if e {
                        "echoed"
                    } else {
                        "no echo (dropped)"
                    }
                }
            };
            said.push(format!("{fam} {got}"));
        }
        let d = format!(
            "from {} and {}: {}",
            self.a.client4,
            self.a.client6,
            said.join(", ")
        );
        // Open in the twin, yet useless if the host serves the other protocol.
        if let Some(wrong) = st::wrong_protocol(s, &self.listening) {
            return fail(format!("{d}; but {wrong}"));
        }
        if ok {
            pass(d)
        } else {
            fail(d)
        }
    }

    fn kmsg(&mut self) -> std::result::Result<&mut Kmsg, String> {
        self.kmsg.as_mut().map_err(|e| e.clone())
    }

    /// A SYN to the closed port over each family (the attacker's IPv4
    /// address, the client's IPv6 one): dropped, and logged with that
    /// family's `blocked` prefix.
    fn closed_port(&mut self) -> Outcome {
        let port = self.closed;
        let p4 = &self.cfg.prefixes.blocked;
        let tries = [
            (
                self.lab.attacker.clone(),
                self.lab.twin_attacker_if.clone(),
                self.a.closed,
                p4.v4.as_str().to_string(),
            ),
            (
                self.lab.client.clone(),
                self.lab.twin_client_if.clone(),
                self.a.client6,
                p4.v6.as_str().to_string(),
            ),
        ];
        for (ns, _, src, _) in &tries {
            let dst = SocketAddr::new(self.twin_of(*src), port);
            let p = self.knock(ns, *src, &[dst], DROP_WAIT)?;
            if p.silent != 1 {
                return fail(format!("tcp/{port} from {src}: {}", reply(&p)));
            }
        }
        let k = match self.kmsg() {
            Ok(k) => k,
            Err(e) => return fail(format!("dropped, but {e}")),
        };
        let logged =
            |seen: &[String], (_, iface, src, prefix): &(String, String, IpAddr, String)| {
                seen.iter()
                    .any(|m| twin::is_log_of(m, prefix, iface, *src, port))
            };
        k.wait_until(SHOW_WAIT, |seen| tries.iter().all(|t| logged(seen, t)))
            .map_err(Self::io)?;
        let missing: Vec<String> = tries
            .iter()
            .filter(|t| !logged(k.seen(), t))
            .map(|(_, _, src, prefix)| format!("no LOG line \"{prefix}\" of {src}"))
            .collect();
        let srcs = format!("tcp/{port} from {} and {}", self.a.closed, self.a.client6);
        match missing.is_empty() {
            true => pass(format!(
                "{srcs} dropped and logged as \"{}\" / \"{}\"",
                tries[0].3, tries[1].3
            )),
            false => fail(format!(
                "{srcs} dropped, but {} within {} s",
                missing.join(", "),
                SHOW_WAIT.as_secs()
            )),
        }
    }

    /// `src` reaches no TCP service.
    fn dropped(&mut self, src: IpAddr, how: &str) -> Outcome {
        let i = st::tcp_service(self.cfg).expect("planned with a TCP service");
        let port = self.cfg.services[i].ports.first;
        let p = self.knock(
            &self.lab.attacker,
            src,
            &[SocketAddr::new(self.a.twin4, port)],
            DROP_WAIT,
        )?;
        let d = format!("{src} in {how}, tcp/{port}: {}", reply(&p));
        if p.silent == 1 {
            pass(d)
        } else {
            fail(d)
        }
    }

    fn banned(&mut self) -> Outcome {
        let addr = self.a.banned.to_string();
        if let Err(e) = self.fwctl_ok(&["ban", &addr, "--for", "10m"])? {
            return fail(e);
        }
        self.banned = true;
        let how = format!("{} (fwctl ban)", self.cfg.sets.blacklist.as_str());
        self.dropped(self.a.banned, &how)
    }

    /// The twin made a Docker host (forwarding on in the twin only).
    fn docker_host(&mut self) -> std::result::Result<(), LabError> {
        let (gw, ctr) = (self.a.gateway, self.a.container);
        let daemon = st::docker::daemon(&self.lab.bridge, &format!("{ctr}/32"));
        self.lab.docker_host(gw, ctr, &daemon)?;
        probe::in_ns(&self.lab.twin, probe::forwarding_on).map_err(|e| LabError::Step {
            what: "forwarding on in the twin".into(),
            detail: e.to_string(),
        })
    }

    /// A container publishes ports through the twin (Docker's DNAT and
    /// ACCEPT, added now, as `docker run -p` would): the client reaches
    /// them as the config says, the banned source does not.
    fn forward(&mut self) -> Outcome {
        match &self.docker {
            Some(Ok(())) => {}
            Some(Err(e)) => return fail(format!("cannot build Docker's layout in the twin: {e}")),
            None => return fail("Docker's layout was not built"),
        }
        let (ctr, twin4) = (self.a.container, self.a.twin4);
        let ports = st::docker::published(self.cfg);
        let rules = st::docker::container(&self.lab.bridge, ctr, &ports);
        self.lab
            .iptables_restore(&rules, "docker-container.rules")?;
        let mut args = vec![
            "selftest-listen".to_string(),
            "--say".into(),
            CONTAINER_SAYS.into(),
        ];
        for i in 0..ports.len() {
            let c = st::docker::CONTAINER_PORT + i as u16;
            args.extend(["--tcp".into(), SocketAddr::new(ctr, c).to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ns = self.lab.container.clone();
        self.lab
            .start_in(&ns, &args, "ready", Duration::from_secs(5))?;
        if !self.banned {
            let addr = self.a.banned.to_string();
            if let Err(e) = self.fwctl_ok(&["ban", &addr, "--for", "10m"])? {
                return fail(e);
            }
            self.banned = true;
        }
        // Reached: the container answered (DNAT and forward), not the
        // twin's own listener on a service port.
        let mut reached = Vec::new();
        for p in &ports {
            let (src, dst) = (self.a.client4, SocketAddr::new(twin4, *p));
            let got = probe::in_ns(&self.lab.client, move || {
                probe::greeting(src, dst, PASS_WAIT)
            })
            .map_err(Self::io)?;
            reached.push(got.as_deref() == Some(CONTAINER_SAYS.as_bytes()));
        }
        let dst = SocketAddr::new(twin4, ports[0]);
        let b = self.knock(&self.lab.attacker, self.a.banned, &[dst], DROP_WAIT)?;
        let (ok, said) = st::docker::verdict(self.cfg, &ports, &reached, b.silent == 1);
        let hook = match self.cfg.forward.protect {
            config::forward::Protect::All => "FORWARD",
            _ => "DOCKER-USER",
        };
        let d = format!(
            "from {} (banned: {}) via {twin4} to the container {ctr} (hook {hook}, default {}): {said}",
            self.a.client4,
            self.a.banned,
            match self.cfg.forward.default {
                config::forward::Fallback::Accept => "accept",
                config::forward::Fallback::Drop => "drop",
            },
        );
        match ok {
            true => pass(d),
            false => fail(d),
        }
    }

    fn throttled(&mut self) -> Outcome {
        let i = st::throttled_service(self.cfg).expect("planned with a rate");
        let s = &self.cfg.services[i];
        let lim = s.limit.expect("a rate");
        let n = (2 * lim.burst as usize + 5).min(200);
        let dst = SocketAddr::new(self.a.twin4, s.ports.first);
        let p = self.knock(&self.lab.client, self.a.throttled, &vec![dst; n], DROP_WAIT)?;
        let d = format!(
            "{n} at once from {}: {} connected, {} dropped ({} burst {})",
            self.a.throttled, p.connected, p.silent, lim.rate, lim.burst
        );
        if p.connected >= 1 && p.silent >= 1 && p.refused == 0 {
            pass(d)
        } else {
            fail(d)
        }
    }

    fn whitelist(&mut self) -> Outcome {
        let t = self.trusted.expect("planned with a trusted source");
        let port = self.closed;
        let p = self.knock(
            &self.lab.client,
            t,
            &[SocketAddr::new(self.twin_of(t), port)],
            PASS_WAIT,
        )?;
        let d = format!("{t} (trusted) to the closed tcp/{port}: {}", reply(&p));
        if p.silent == 0 {
            pass(d)
        } else {
            fail(d)
        }
    }

    fn neighbour(&mut self) -> Outcome {
        let (ns, dev) = (self.lab.client.clone(), self.lab.client_if.clone());
        let t6 = self.a.twin6;
        self.lab.flush_neighbours(&ns, &dev)?;
        let (src, dst) = (self.a.client6, SocketAddr::new(t6, self.closed));
        probe::in_ns(&ns, move || probe::udp_once(src, dst)).map_err(Self::io)?;
        let end = Instant::now() + Duration::from_secs(3);
        let mut last = String::new();
        while Instant::now() < end && !lab::interrupted() {
            let (ok, entry) = self.lab.neighbour(&ns, &dev, t6)?;
            if ok {
                return pass(format!("{t6} resolved from {src}: {entry}"));
            }
            last = entry;
            std::thread::sleep(Duration::from_millis(20));
        }
        let last = if last.is_empty() {
            "no entry".to_string()
        } else {
            last
        };
        fail(format!("{t6} not resolved from {src} within 3 s ({last})"))
    }

    /// Poll `fwctl list SET --json` in the twin until `addr` is in `set`.
    fn wait_listed(&self, set: &str, addr: IpAddr) -> std::result::Result<bool, LabError> {
        let end = Instant::now() + SHOW_WAIT;
        loop {
            if let Ok(text) = self.fwctl_ok(&["list", set, "--json"])? {
                if st::listed(&text, set, addr) {
                    return Ok(true);
                }
            }
            if Instant::now() >= end || lab::interrupted() {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn scan(&mut self) -> Outcome {
        let src = self.a.scan;
        let ports: Vec<u16> = self.ports[..3].to_vec();
        let dsts: Vec<SocketAddr> = ports
            .iter()
            .map(|p| SocketAddr::new(self.a.twin4, *p))
            .collect();
        self.knock(&self.lab.attacker, src, &dsts, Duration::from_millis(200))?;
        let prefix = self.cfg.prefixes.blocked.v4.as_str().to_string();
        let iface = self.lab.twin_attacker_if.clone();
        let mine = |m: &String| {
            ports
                .iter()
                .any(|p| twin::is_log_of(m, &prefix, &iface, src, *p))
        };
        let k = match self.kmsg() {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        k.wait_until(SHOW_WAIT, |seen| {
            seen.iter().filter(|m| mine(m)).count() >= ports.len()
        })
        .map_err(Self::io)?;
        let lines: Vec<String> = k.seen().iter().filter(|m| mine(m)).cloned().collect();
        if lines.len() < ports.len() {
            return fail(format!(
                "{} of {} LOG lines of {src} reached the kernel log",
                lines.len(),
                ports.len()
            ));
        }
        let now = host::now();
        let text: String = lines.iter().map(|m| twin::log_file_line(now, m)).collect();
        let log = self.dir.join("iptables.log");
        std::fs::write(&log, text).map_err(Self::io)?;
        let set = self.cfg.sets.blacklist.as_str().to_string();
        let log = log.to_string_lossy().into_owned();
        let args = [
            "scan",
            "--log",
            &log,
            "--rule",
            "blocked",
            "--type",
            "tcp",
            "--howmany",
            "2",
            "--within",
            "10m",
            "--ipset",
            &set,
            "--removeafter",
            "10m",
        ];
        if let Err(e) = self.fwctl_ok(&args)? {
            return fail(e);
        }
        match self.wait_listed(&set, src)? {
            true => pass(format!(
                "{} LOG lines of {src} -> fwctl scan banned it into {set}",
                lines.len()
            )),
            false => fail(format!(
                "fwctl scan read {} LOG lines of {src} but did not ban it into {set}",
                lines.len()
            )),
        }
    }

    /// `fwctl capture` on the attacker's link, started once.
    fn capture(&mut self) -> std::result::Result<Result<(), String>, LabError> {
        if self.capture.is_none() {
            let iface = self.lab.twin_attacker_if.clone();
            let got = match self.lab.start(
                &["capture", "--iface", &iface, "--json"],
                "fwctl: capture on",
                Duration::from_secs(5),
            ) {
                Ok(_) => Ok(()),
                Err(LabError::Interrupted) => return Err(LabError::Interrupted),
                Err(e) => Err(e.to_string()),
            };
            self.capture = Some(got);
        }
        Ok(self.capture.clone().expect("set above"))
    }

    fn capture_scan(&mut self) -> Outcome {
        if let Err(e) = self.capture()? {
            return fail(e);
        }
        let src = self.a.syn;
        let n = self.cfg.capture.profile.ports as usize + 1;
        let dsts: Vec<SocketAddr> = self.ports[3..3 + n]
            .iter()
            .map(|p| SocketAddr::new(self.a.twin4, *p))
            .collect();
        self.knock(&self.lab.attacker, src, &dsts, Duration::from_millis(200))?;
        let set = config::ban_sets(self.cfg)[0].clone();
        match self.wait_listed(&set, src)? {
            true => pass(format!(
                "SYNs from {src} to {n} closed ports: banned into {set}"
            )),
            false => fail(format!(
                "SYNs from {src} to {n} closed ports: not in {set} within {} s",
                SHOW_WAIT.as_secs()
            )),
        }
    }

    fn decoy(&mut self) -> Outcome {
        if let Err(e) = self.capture()? {
            return fail(e);
        }
        let (src, port) = (self.a.decoy, self.cfg.capture.decoy_ports[0]);
        let p = self.knock(
            &self.lab.attacker,
            src,
            &[SocketAddr::new(self.a.twin4, port)],
            PASS_WAIT,
        )?;
        if p.connected != 1 {
            return fail(format!(
                "decoy tcp/{port} from {src}: {} (capture should answer)",
                reply(&p)
            ));
        }
        let set = config::ban_sets(self.cfg)[0].clone();
        match self.wait_listed(&set, src)? {
            true => pass(format!(
                "a handshake from {src} on decoy tcp/{port}: banned into {set}"
            )),
            false => fail(format!(
                "a handshake from {src} on decoy tcp/{port}: not in {set} within {} s",
                SHOW_WAIT.as_secs()
            )),
        }
    }
}
