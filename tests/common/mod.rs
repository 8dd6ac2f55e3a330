//! The namespace lab for kernel tests (root only). A lab is two network
//! namespaces joined by a veth pair: `target`, where fwctl runs, and `client`,
//! which holds several source addresses (benign, blacklisted, whitelisted,
//! throttled) on one interface. Only documentation addresses are used. Both
//! namespaces are deleted on drop, also when a test fails.
#![allow(dead_code)]

pub mod fleet;
pub mod receiver;
pub mod service;
pub mod watch;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub const TARGET4: &str = "198.51.100.1";
pub const TARGET6: &str = "2001:db8:100::1";

/// The client's source addresses, by role: (IPv4, IPv6).
pub fn src(role: &str) -> (IpAddr, IpAddr) {
    let n = match role {
        "benign" => 10,
        "blacklisted" => 11,
        "whitelisted" => 12,
        "throttled" => 13,
        "attacker" => 14,
        other => panic!("unknown role {other}"),
    };
    (
        format!("198.51.100.{n}").parse().unwrap(),
        format!("2001:db8:100::{n}").parse().unwrap(),
    )
}

pub fn fwctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_fwctl")
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    out
}

fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Lab {
    pub target: String,
    pub client: String,
    /// The veth ends: in the target, in the client.
    pub target_if: String,
    pub client_if: String,
    pub run_dir: tempfile::TempDir,
    /// Holds this lab's state file (FWCTL_STATE), never the host's /var/lib/fwctl.
    pub state_dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        assert!(unsafe { libc::geteuid() } == 0, "kernel tests need root");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let (vt, vc) = (format!("fw{id}a"), format!("fw{id}b"));
        let lab = Lab {
            target: format!("fwt{id}t"),
            client: format!("fwt{id}c"),
            target_if: vt.clone(),
            client_if: vc.clone(),
            run_dir: tempfile::tempdir().unwrap(),
            state_dir: tempfile::tempdir().unwrap(),
        };
        // From here on Drop cleans up, whatever fails below.
        must(&["ip", "netns", "add", &lab.target]);
        must(&["ip", "netns", "add", &lab.client]);
        must(&[
            "ip",
            "link",
            "add",
            &vt,
            "netns",
            &lab.target,
            "type",
            "veth",
            "peer",
            "name",
            &vc,
            "netns",
            &lab.client,
        ]);
        for (ns, dev) in [(&lab.target, &vt), (&lab.client, &vc)] {
            lab.ip(ns, &["link", "set", "lo", "up"]);
            lab.ip(ns, &["link", "set", dev, "up"]);
        }
        lab.ip(
            &lab.target,
            &["addr", "add", &format!("{TARGET4}/24"), "dev", &vt],
        );
        lab.ip(
            &lab.target,
            &["addr", "add", &format!("{TARGET6}/64"), "dev", &vt, "nodad"],
        );
        for role in [
            "benign",
            "blacklisted",
            "whitelisted",
            "throttled",
            "attacker",
        ] {
            let (a4, a6) = src(role);
            lab.ip(
                &lab.client,
                &["addr", "add", &format!("{a4}/24"), "dev", &vc],
            );
            lab.ip(
                &lab.client,
                &["addr", "add", &format!("{a6}/64"), "dev", &vc, "nodad"],
            );
        }
        lab
    }

    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", ns];
        v.extend_from_slice(args);
        must(&v)
    }

    /// Run a program inside a namespace (argument vector, no shell).
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        run(&v)
    }

    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> String {
        let out = self.exec(ns, args);
        assert!(
            out.status.success(),
            "{args:?} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Delete, behind fwctl's back, the first rule of `inet fwctl`'s
    /// `chain` in the target whose listing holds `needle` ("" for any).
    pub fn nft_delete_rule(&self, chain: &str, needle: &str) {
        let listed = self.exec_ok(
            &self.target,
            &["nft", "-a", "list", "chain", "inet", "fwctl", chain],
        );
        let handle = listed
            .lines()
            .filter(|l| !l.contains("chain ") && l.contains(needle))
            .find_map(|l| l.split_once("# handle ").map(|x| x.1.trim().to_string()))
            .unwrap_or_else(|| panic!("no rule with {needle:?} in {listed}"));
        self.exec_ok(
            &self.target,
            &[
                "nft", "delete", "rule", "inet", "fwctl", chain, "handle", &handle,
            ],
        );
    }

    /// `fwctl ARGS` in the target namespace with this lab's run directory.
    pub fn fwctl(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.fwctl_cmd(args, env).output().unwrap()
    }

    pub fn fwctl_cmd(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        self.fwctl_cmd_via(&[], args, env)
    }

    /// `fwctl ARGS` run through `wrapper` (e.g. setpriv with its options).
    pub fn fwctl_cmd_via(&self, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.target])
            .args(wrapper)
            .arg(fwctl_bin())
            .args(args);
        c.env("FWCTL_RUN_DIR", self.run_dir.path());
        c.env("FWCTL_STATE", self.state_path());
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// This lab's state file.
    pub fn state_path(&self) -> PathBuf {
        self.state_dir.path().join("state.json")
    }

    /// `iptables-save` and `ip6tables-save` of the target, with counters and
    /// the dated comment lines taken out so two saves compare by rules alone.
    pub fn rules(&self) -> String {
        ["iptables-save", "ip6tables-save"]
            .iter()
            .map(|tool| normalize_save(&self.exec_ok(&self.target, &[tool])))
            .collect()
    }

    /// Members of a set in the target: member -> timeout (0 = permanent, None = no timeout field).
    pub fn set_members(&self, set: &str) -> HashMap<String, Option<u32>> {
        let out = self.exec_ok(&self.target, &["ipset", "save", set]);
        out.lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"add")).then(|| {
                    let t = w
                        .windows(2)
                        .find(|x| x[0] == "timeout")
                        .map(|x| x[1].parse().unwrap());
                    (w[2].to_string(), t)
                })
            })
            .collect()
    }

    /// Add a member with a timeout to a set in the target, as a ban would.
    pub fn ban(&self, set: &str, addr: &str, secs: u32) {
        self.exec_ok(
            &self.target,
            &["ipset", "add", set, addr, "timeout", &secs.to_string()],
        );
    }

    pub fn set_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .exec_ok(&self.target, &["ipset", "list", "-n"])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// Open TCP listeners in the target on both families (kept open by the caller).
    pub fn listen(&self, ports: &[u16]) -> Vec<TcpListener> {
        in_ns(&self.target, || {
            let mut v = Vec::new();
            for &p in ports {
                v.push(TcpListener::bind((TARGET4.parse::<IpAddr>().unwrap(), p)).unwrap());
                v.push(TcpListener::bind((TARGET6.parse::<IpAddr>().unwrap(), p)).unwrap());
            }
            v
        })
    }

    /// Fire `n` TCP connection attempts at once from `src` in the client and
    /// wait up to `wait` for answers.
    pub fn probe(&self, src: IpAddr, port: u16, n: usize, wait: Duration) -> Probes {
        let dst: IpAddr = if src.is_ipv4() { TARGET4 } else { TARGET6 }
            .parse()
            .unwrap();
        in_ns(&self.client, move || {
            probe(src, SocketAddr::new(dst, port), n, wait)
        })
    }

    /// Connect from `src` in the client to `port` of the target and send
    /// `bytes` (one write: the connection's first data segment).
    #[allow(dead_code)]
    pub fn send(&self, src: IpAddr, port: u16, bytes: &[u8]) -> std::io::Result<()> {
        use socket2::{Domain, Socket, Type};
        let dst: IpAddr = if src.is_ipv4() { TARGET4 } else { TARGET6 }
            .parse()
            .unwrap();
        let dst = SocketAddr::new(dst, port);
        in_ns(&self.client, move || {
            let s = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
            s.bind(&SocketAddr::new(src, 0).into())?;
            s.connect_timeout(&dst.into(), Duration::from_secs(2))?;
            std::io::Write::write_all(&mut &s, bytes)
        })
    }

    /// A connection from `src` in the client to `port` of the target (the
    /// address of `src`'s family), kept open: an SSH session as the
    /// kernel's socket table sees it.
    pub fn session(&self, src: IpAddr, port: u16) -> socket2::Socket {
        use socket2::{Domain, Socket, Type};
        let dst: IpAddr = if src.is_ipv4() { TARGET4 } else { TARGET6 }
            .parse()
            .unwrap();
        let dst = SocketAddr::new(dst, port);
        in_ns(&self.client, move || {
            let s = Socket::new(Domain::for_address(dst), Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::new(src, 0).into()).unwrap();
            s.connect_timeout(&dst.into(), Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("{src} to {dst}: {e}"));
            s
        })
    }

    /// One connection attempt: did it connect, get refused, or get no answer?
    pub fn reach(&self, src: IpAddr, port: u16) -> Reply {
        let p = self.probe(src, port, 1, Duration::from_millis(800));
        if p.connected == 1 {
            Reply::Connected
        } else if p.refused == 1 {
            Reply::Refused
        } else {
            Reply::Silent
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.target, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Reply {
    Connected,
    Refused,
    Silent,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Probes {
    pub connected: usize,
    pub refused: usize,
    pub silent: usize,
}

/// Run `f` on a thread that has joined namespace `ns`. setns(CLONE_NEWNET) is
/// per thread, and sockets stay in the namespace they were made in.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

pub fn probe(src: IpAddr, dst: SocketAddr, n: usize, wait: Duration) -> Probes {
    use socket2::{Domain, Socket, Type};
    let mut socks = Vec::new();
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(dst), Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        s.bind(&SocketAddr::new(src, 0).into()).unwrap();
        match s.connect(&dst.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => panic!("connect {dst}: {e}"),
        }
        socks.push(s);
    }
    let mut result = Probes::default();
    let mut pending: Vec<Socket> = socks;
    let deadline = Instant::now() + wait;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = pending
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            })
            .collect();
        let rc = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                pfds.len() as _,
                left.as_millis().max(1) as i32,
            )
        };
        assert!(rc >= 0);
        let mut still = Vec::new();
        for (s, p) in pending.into_iter().zip(pfds) {
            if p.revents == 0 {
                still.push(s);
            } else if s.take_error().unwrap().is_none() {
                result.connected += 1;
            } else {
                result.refused += 1;
            }
        }
        pending = still;
    }
    result.silent = pending.len();
    result
}

/// Lines the kernel logs from now on (shared by every namespace: filter by a
/// prefix or address that only this test uses).
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    pub fn open() -> Kmsg {
        // LOG from inside a namespace reaches the kernel log only with this on.
        std::fs::write("/proc/sys/net/netfilter/nf_log_all_netns", "1").unwrap();
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .unwrap();
        unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_END) };
        Kmsg { file }
    }

    /// Wait (up to `timeout`) until `enough` returns true for the collected
    /// messages containing `needle`; returns them.
    pub fn wait_for(
        &mut self,
        needle: &str,
        timeout: Duration,
        enough: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let msg = rec
                        .split_once(';')
                        .map(|x| x.1)
                        .unwrap_or(&rec)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if msg.contains(needle) {
                        got.push(msg);
                        if enough(&got) {
                            return got;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return got;
                    }
                    let mut p = libc::pollfd {
                        fd: self.file.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    unsafe { libc::poll(&mut p, 1, left.as_millis().max(1) as i32) };
                }
                // EPIPE: records were overwritten while we read; carry on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) => panic!("/dev/kmsg: {e}"),
            }
        }
    }
}

/// Write a config into a temp dir; returns the dir (keep it alive) and path.
/// `scan` of the kernel log `log`'s blocked TCP lines within 10 minutes:
/// more than `howmany` bans into `set` for `removeafter`.
pub fn blocked_scan<'a>(
    log: &'a Path,
    howmany: &'a str,
    set: &'a str,
    removeafter: &'a str,
) -> Vec<&'a str> {
    vec![
        "scan",
        "--log",
        log.to_str().unwrap(),
        "--rule",
        "blocked",
        "--type",
        "tcp",
        "--howmany",
        howmany,
        "--within",
        "10m",
        "--ipset",
        set,
        "--removeafter",
        removeafter,
    ]
}

/// A secret file the way fwctl takes one: only its owner may read it.
pub fn secret_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fwctl.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// The host namespace's firewall, to prove tests leave it alone.
pub fn host_firewall() -> String {
    let mut s = String::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = Command::new(tool).output() {
            s.push_str(&normalize_save(&String::from_utf8_lossy(&out.stdout)));
        }
    }
    if let Ok(out) = Command::new("ipset").args(["list", "-n"]).output() {
        s.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    s
}

/// iptables-save output without its dated comments and chain counters.
pub fn normalize_save(text: &str) -> String {
    let mut s = String::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let line = match line.find(" [") {
            Some(i) if line.starts_with(':') => &line[..i],
            _ => line,
        };
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// A kernel LOG line of the blocked rule, at `t`, from `src`.
pub fn log_line(t: &str, src: &str, port: u16) -> String {
    format!(
        "{t} host kernel: [ 100.000000] IPTABLES-BLOCKED: IN=eth0 OUT= MAC=ae:9f:06:a7:8e:14:fa:46:c6:e2:9f:50:86:dd SRC={src} DST=2001:0db8:0100:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=TCP SPT=40000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0 \n"
    )
}

/// A log in which each of `sources` (2001:db8:5::N) offends three times,
/// now (more than --howmany 2).
pub fn offenders_log(path: &Path, sources: std::ops::Range<u32>) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = fwctl::units::time::utc(now as i64).replace('Z', ".000000+00:00");
    let mut text = String::new();
    let mut addrs = Vec::new();
    for n in sources {
        let a: std::net::Ipv6Addr = format!("2001:db8:5::{n:x}").parse().unwrap();
        let full = fwctl::testing::loggen::full_v6(a);
        for port in [22, 23, 24] {
            text.push_str(&log_line(&t, &full, port));
        }
        addrs.push(a.to_string());
    }
    std::fs::write(path, text).unwrap();
    addrs
}

/// Run `args` in namespace `ns` with `input` on stdin (e.g. `nft -f -`).
#[allow(dead_code)]
pub fn exec_input(ns: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The same, panicking with its stderr if it fails.
#[allow(dead_code)]
pub fn exec_input_ok(ns: &str, args: &[&str], input: &str) {
    let out = exec_input(ns, args, input);
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
}
