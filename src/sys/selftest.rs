//! `fwctl selftest`'s private network: three namespaces of its own (the
//! twin, which carries the config's ruleset; a client; an attacker), joined
//! by two veth pairs (and, for the forward row, a fourth: a "container"
//! behind a bridge in the twin), and the processes it runs in them (fwctl itself,
//! re-executed under `ip netns exec` with argument vectors, a temp state file
//! and run directory). Nothing here touches the host's namespace beyond
//! creating and deleting these: the namespaces and every child die with the
//! [`Lab`] (Drop), on success, failure, panic and Ctrl-C alike (the signal
//! only sets a flag the checks poll, so the unwinding path runs).

use super::tools::{locate_tool, Missing};
use crate::core::selftest::twin::Addrs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Why the lab could not be built or a process not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Missing(#[from] Missing),
    #[error("{what}: {detail}")]
    Step { what: String, detail: String },
    #[error("interrupted")]
    Interrupted,
}

fn step(what: impl Into<String>, detail: impl ToString) -> LabError {
    LabError::Step {
        what: what.into(),
        detail: detail.to_string(),
    }
}

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// From now on SIGINT and SIGTERM only set a flag ([`interrupted`]): the
/// run stops at its next check and its guards delete the namespaces.
pub fn catch_signals() -> std::io::Result<()> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM came.
pub fn interrupted() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Namespaces of selftest runs whose process is gone (killed with SIGKILL,
/// which no guard survives): `fwst-PID-ROLE` with no live PID.
pub fn stale_namespaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            let Some(rest) = n.strip_prefix("fwst-") else {
                return false;
            };
            let pid = rest.split('-').next().unwrap_or("");
            pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
        })
        .collect()
}

/// The name a run's temp directory starts with: the run's pid in it, so
/// that a later run can tell the directory of a killed one.
pub fn temp_prefix() -> String {
    format!("fwctl-selftest.{}.", std::process::id())
}

/// The temp directories of runs whose process is gone (killed: nothing of
/// theirs ran to remove them): directories (never a link) named by
/// `temp_prefix` in the temp directory and owned by this user (the
/// directory is sticky: no one else can put one of ours in their place).
pub fn stale_temp_dirs() -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let me = nix::unistd::geteuid().as_raw();
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let Some(rest) = name
                .to_str()
                .and_then(|n| n.strip_prefix("fwctl-selftest."))
            else {
                return false;
            };
            let pid = rest.split('.').next().unwrap_or("");
            pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
        })
        .map(|e| e.path())
        .filter(|p| {
            p.symlink_metadata()
                .is_ok_and(|m| m.is_dir() && m.uid() == me)
        })
        .collect()
}

/// Delete the directories `stale_temp_dirs` found.
pub fn remove_temp_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Delete the namespaces `stale_namespaces` found.
pub fn remove_namespaces(names: &[String]) {
    let Ok(ip) = locate_tool("ip", "iproute2") else {
        return;
    };
    for n in names {
        let _ = Command::new(&ip)
            .args(["netns", "del", n])
            .stdin(Stdio::null())
            .output();
    }
}

/// The ports this host serves now (its own namespace: /proc/net is the
/// reading process's); an unreadable table counts as empty.
pub fn listening() -> crate::core::selftest::Listening {
    let read =
        |f: &str| std::fs::read_to_string(Path::new("/proc/net").join(f)).unwrap_or_default();
    let mut l = crate::core::selftest::Listening::default();
    for (f, tcp) in [
        ("tcp", true),
        ("tcp6", true),
        ("udp", false),
        ("udp6", false),
    ] {
        let ports = crate::core::selftest::proc_net_ports(&read(f), tcp);
        match tcp {
            true => l.tcp.extend(ports),
            false => l.udp.extend(ports),
        }
    }
    l
}

/// A child that dies with selftest, even a selftest killed with SIGKILL
/// (whose guards never run): the kernel sends it SIGKILL then. `ip netns
/// exec` execs the program, which keeps the setting.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Run `cmd` to its end within `wait` (then it is killed): its output.
pub fn run_bounded(mut cmd: Command, what: &str, wait: Duration) -> Result<Output, LabError> {
    let mut child = die_with_parent(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| step(what, e))?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(r) = r {
                let _ = r.take(1 << 20).read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let end = Instant::now() + wait;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| step(what, e))? {
            break s;
        }
        if Instant::now() >= end || interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(match interrupted() {
                true => LabError::Interrupted,
                false => step(what, format!("no answer within {} s", wait.as_secs_f32())),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The last non-empty line of a tool's stderr.
fn last_line(b: &[u8]) -> String {
    let t = String::from_utf8_lossy(b);
    t.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The three namespaces, their links, and the processes running in them.
pub struct Lab {
    pub twin: String,
    pub client: String,
    pub attacker: String,
    /// The twin's ends of the links (the LOG lines' `IN=`), and the others'.
    pub twin_client_if: String,
    pub twin_attacker_if: String,
    pub client_if: String,
    pub attacker_if: String,
    /// The forward row's "container" namespace, made by [`Lab::docker_host`]
    /// only, and its "docker0" bridge in the twin.
    pub container: String,
    pub bridge: String,
    ip: PathBuf,
    exe: PathBuf,
    config: PathBuf,
    state: PathBuf,
    run_dir: PathBuf,
    made: Vec<String>,
    children: Vec<Child>,
}

/// The files a lab's fwctl runs use (all in the run's temp directory).
pub struct Files<'a> {
    pub config: &'a Path,
    pub state: &'a Path,
    pub run_dir: &'a Path,
}

fn cidr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}/32"),
        IpAddr::V6(_) => format!("{a}/128"),
    }
}

impl Lab {
    /// Build the lab for `addrs` (and `trusted`, the whitelisted client's
    /// address): names from this process's id, so runs never collide.
    pub fn new(addrs: &Addrs, trusted: Option<IpAddr>, files: Files) -> Result<Lab, LabError> {
        let ip = locate_tool("ip", "iproute2")?;
        let exe = std::env::current_exe().map_err(|e| step("cannot find fwctl's own binary", e))?;
        let pid = std::process::id();
        let mut lab = Lab {
            twin: format!("fwst-{pid}-host"),
            client: format!("fwst-{pid}-client"),
            attacker: format!("fwst-{pid}-attacker"),
            twin_client_if: format!("fwst{pid}hc"),
            twin_attacker_if: format!("fwst{pid}ha"),
            client_if: format!("fwst{pid}c"),
            attacker_if: format!("fwst{pid}a"),
            container: format!("fwst-{pid}-ctr"),
            bridge: format!("fwst{pid}d"),
            ip,
            exe,
            config: files.config.to_path_buf(),
            state: files.state.to_path_buf(),
            run_dir: files.run_dir.to_path_buf(),
            made: Vec::new(),
            children: Vec::new(),
        };
        // Each namespace is recorded before the next step, so Drop deletes
        // what exists whatever fails below.
        for ns in [lab.twin.clone(), lab.client.clone(), lab.attacker.clone()] {
            lab.ip_run(&["netns", "add", &ns])?;
            lab.made.push(ns);
        }
        for (here, there, ns) in [
            (&lab.twin_client_if, &lab.client_if, &lab.client),
            (&lab.twin_attacker_if, &lab.attacker_if, &lab.attacker),
        ] {
            lab.ip_run(&[
                "link", "add", here, "netns", &lab.twin, "type", "veth", "peer", "name", there,
                "netns", ns,
            ])?;
        }
        let (hc, ha) = (&lab.twin_client_if, &lab.twin_attacker_if);
        let mut twin = vec![
            "link set lo up".to_string(),
            format!("link set {hc} up"),
            format!("link set {ha} up"),
            format!("addr add {} dev {hc}", cidr(addrs.twin4)),
            format!("addr add {} dev {hc} nodad", cidr(addrs.twin6)),
        ];
        let client_side: Vec<IpAddr> = [addrs.client4, addrs.client6, addrs.throttled]
            .into_iter()
            .chain(trusted)
            .collect();
        let attacker_side = [
            addrs.closed,
            addrs.banned,
            addrs.fed,
            addrs.scan,
            addrs.syn,
            addrs.decoy,
        ];
        twin.extend(
            client_side
                .iter()
                .map(|a| format!("route add {} dev {hc}", cidr(*a))),
        );
        twin.extend(
            attacker_side
                .iter()
                .map(|a| format!("route add {} dev {ha}", cidr(*a))),
        );
        let peer = |dev: &str, own: &[IpAddr]| {
            let mut v = vec!["link set lo up".to_string(), format!("link set {dev} up")];
            v.extend(
                own.iter()
                    .map(|a| format!("addr add {} dev {dev} nodad", cidr(*a))),
            );
            v.push(format!("route add {} dev {dev}", cidr(addrs.twin4)));
            v.push(format!("route add {} dev {dev}", cidr(addrs.twin6)));
            v
        };
        let client = peer(&lab.client_if, &client_side);
        let attacker = peer(&lab.attacker_if, &attacker_side);
        for (ns, lines) in [
            (lab.twin.clone(), twin),
            (lab.client.clone(), client),
            (lab.attacker.clone(), attacker),
        ] {
            lab.ip_batch(&ns, &lines)?;
        }
        Ok(lab)
    }

    fn ip_run(&self, args: &[&str]) -> Result<String, LabError> {
        let mut c = Command::new(&self.ip);
        c.args(args);
        let out = run_bounded(c, "ip", Duration::from_secs(5))?;
        if !out.status.success() {
            return Err(step(
                format!("ip {}", args.join(" ")),
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -n NS -batch -`: the namespace's commands in one process.
    fn ip_batch(&self, ns: &str, lines: &[String]) -> Result<(), LabError> {
        let mut child = Command::new(&self.ip)
            .args(["-n", ns, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| step("ip -batch", e))?;
        let text = lines.join("\n") + "\n";
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| step("ip -batch", e))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(step(
                format!("setting up namespace {ns}"),
                String::from_utf8_lossy(&out.stderr).trim(),
            )),
        }
    }

    /// `ip -n NS ARGS`, its stdout.
    pub fn ip(&self, ns: &str, args: &[&str]) -> Result<String, LabError> {
        let mut v = vec!["-n", ns];
        v.extend_from_slice(args);
        self.ip_run(&v)
    }

    /// fwctl ARGS in the twin, with the twin's config, state and run
    /// directory, within `wait`: its stdout, or (it failed) a line naming
    /// the command with the last line of its stderr.
    pub fn fwctl(&self, args: &[&str], wait: Duration) -> Result<Result<String, String>, LabError> {
        let out = run_bounded(
            self.fwctl_cmd(&self.twin, args),
            &format!("fwctl {}", args.join(" ")),
            wait,
        )?;
        Ok(match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(format!(
                "fwctl {} failed: {}",
                args.first().unwrap_or(&""),
                last_line(&out.stderr)
            )),
        })
    }

    /// Forget the neighbours of `dev` in `ns` (IPv6), so the next packet
    /// needs a fresh neighbour discovery.
    pub fn flush_neighbours(&self, ns: &str, dev: &str) -> Result<(), LabError> {
        self.ip(ns, &["-6", "neigh", "flush", "dev", dev]).map(drop)
    }

    /// The neighbour entry of `addr` on `dev` in `ns` (`ip neigh show`,
    /// trimmed; empty when none), and whether it is resolved: a link-layer
    /// address in a usable state.
    pub fn neighbour(&self, ns: &str, dev: &str, addr: IpAddr) -> Result<(bool, String), LabError> {
        let a = addr.to_string();
        let e = self.ip(ns, &["-6", "neigh", "show", &a, "dev", dev])?;
        let e = e.trim().to_string();
        let words: Vec<&str> = e.split_whitespace().collect();
        let ok = words.contains(&"lladdr")
            && ["REACHABLE", "STALE", "DELAY", "PROBE"]
                .iter()
                .any(|s| words.contains(s));
        Ok((ok, e))
    }

    fn fwctl_cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", ns])
            .arg(&self.exe)
            .arg("--config")
            .arg(&self.config)
            .arg("--state")
            .arg(&self.state)
            .args(args)
            .env("FWCTL_RUN_DIR", &self.run_dir)
            .env_remove("FWCTL_CONFIG")
            .env_remove("FWCTL_STATE");
        c
    }

    /// Start `fwctl ARGS` in the twin for the length of the lab (killed
    /// with it) and wait up to `wait` for a line on stdout (`on_stdout`)
    /// or stderr that contains `ready`. Returns the line.
    pub fn start(
        &mut self,
        args: &[&str],
        ready: &str,
        wait: Duration,
    ) -> Result<String, LabError> {
        let twin = self.twin.clone();
        self.start_in(&twin, args, ready, wait)
    }

    /// [`Lab::start`] in namespace `ns` (one of the lab's).
    pub fn start_in(
        &mut self,
        ns: &str,
        args: &[&str],
        ready: &str,
        wait: Duration,
    ) -> Result<String, LabError> {
        let what = format!("fwctl {}", args.join(" "));
        let mut cmd = self.fwctl_cmd(ns, args);
        let mut child = die_with_parent(&mut cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| step(&what, e))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out: Option<ChildStdout> = child.stdout.take();
        let err: Option<ChildStderr> = child.stderr.take();
        // Both streams are read to their end, so the child never blocks on
        // a full pipe; the lines go to the waiter while it listens.
        for r in [
            out.map(|o| Box::new(o) as Box<dyn Read + Send>),
            err.map(|e| Box::new(e) as _),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        drop(tx);
        self.children.push(child);
        let end = Instant::now() + wait;
        let mut said = Vec::new();
        loop {
            if interrupted() {
                return Err(LabError::Interrupted);
            }
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(l) if l.contains(ready) => return Ok(l),
                Ok(l) => said.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => {
                    return Err(step(
                        &what,
                        format!(
                            "not ready within {} s{}",
                            wait.as_secs_f32(),
                            said.last().map(|l| format!(": {l}")).unwrap_or_default()
                        ),
                    ))
                }
            }
        }
    }
}

impl Lab {
    /// What Docker builds on a host, in the twin, for the forward row: a
    /// bridge `bridge` holding `gateway`, the "container" namespace at
    /// `container` behind it (its default route through the gateway), and
    /// the daemon's chains `daemon` (iptables-restore input); forwarding is
    /// `probe::forwarding_on`'s. Run before the
    /// twin's `fwctl apply`, which then finds DOCKER-USER.
    pub fn docker_host(
        &mut self,
        gateway: IpAddr,
        container: IpAddr,
        daemon: &str,
    ) -> Result<(), LabError> {
        let ns = self.container.clone();
        self.ip_run(&["netns", "add", &ns])?;
        self.made.push(ns.clone());
        let (br, pid) = (self.bridge.clone(), std::process::id());
        let (here, there) = (format!("fwst{pid}hk"), format!("fwst{pid}k"));
        self.ip_run(&[
            "link", "add", &here, "netns", &self.twin, "type", "veth", "peer", "name", &there,
            "netns", &ns,
        ])?;
        let twin = [
            format!("link add {br} type bridge"),
            format!("addr add {} dev {br}", cidr(gateway)),
            format!("link set {br} up"),
            format!("link set {here} master {br} up"),
            format!("route add {} dev {br}", cidr(container)),
        ];
        let ctr = [
            "link set lo up".to_string(),
            format!("link set {there} up"),
            format!("addr add {} dev {there}", cidr(container)),
            format!("route add {} dev {there}", cidr(gateway)),
            format!("route add default via {gateway} dev {there}"),
        ];
        self.ip_batch(&self.twin, &twin)?;
        self.ip_batch(&ns, &ctr)?;
        self.iptables_restore(daemon, "docker-daemon.rules")
    }

    /// `iptables-restore --noflush` of `rules` in the twin (Docker's own
    /// tool: iptables-nft where the nftables backend runs, as on a Docker
    /// host), from file `name` in the run directory.
    pub fn iptables_restore(&self, rules: &str, name: &str) -> Result<(), LabError> {
        let tool = locate_tool("iptables-restore", "iptables")?;
        let file = self.run_dir.join(name);
        std::fs::write(&file, rules).map_err(|e| step(format!("{}", file.display()), e))?;
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", &self.twin])
            .arg(tool)
            .arg("--noflush")
            .arg(&file);
        let out = run_bounded(c, "iptables-restore", Duration::from_secs(5))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(step(
                "iptables-restore of Docker's rules in the twin",
                last_line(&out.stderr),
            )),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The children first: a process inside keeps its namespace alive.
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.made.iter().rev() {
            let _ = Command::new(&self.ip)
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The hidden `fwctl selftest-listen`: a TCP listener (connections are
/// accepted and closed) and a UDP echo on each ADDR, PORT and protocol, in
/// the namespace it was started in (`say`: written to each TCP connection
/// before it is closed); says "ready" once all are bound and
/// ends when its standard input closes (the selftest ended).
pub fn listen(
    tcp: &[std::net::SocketAddr],
    udp: &[std::net::SocketAddr],
    say: Option<&str>,
) -> std::io::Result<()> {
    for a in tcp {
        let l = std::net::TcpListener::bind(a)?;
        let say = say.unwrap_or("").as_bytes().to_vec();
        std::thread::spawn(move || {
            for mut s in l.incoming().map_while(Result::ok) {
                let _ = s.write_all(&say);
            }
        });
    }
    for a in udp {
        let s = std::net::UdpSocket::bind(a)?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
    }
    let mut o = std::io::stdout().lock();
    writeln!(o, "ready")?;
    o.flush()?;
    drop(o);
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().take(1 << 16).read_to_end(&mut sink);
    Ok(())
}
