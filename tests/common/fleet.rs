//! The fleet lab (root only): a Redis namespace holding a bridge and a real
//! `redis-server` with a password, three host namespaces (A, B, C) with the
//! fwctl ruleset applied and `fwctl sync` runnable in each, and an attacker
//! namespace (X), all on 203.0.113.0/24. Everything is deleted on drop.

use super::{in_ns, probe, Probes};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

static N: AtomicUsize = AtomicUsize::new(0);

pub const REDIS: &str = "203.0.113.100";
pub const ATTACKER: &str = "203.0.113.50";
pub const PASSWORD: &str = "fleet-test-password";
/// The service port every host allows (and listens on), to see drops.
pub const PORT: u16 = 8080;

fn must(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `fwctl sync`, its stderr lines on a channel.
pub struct Sync {
    child: Child,
    lines: Receiver<String>,
    pub log: Vec<String>,
}

pub struct Host {
    pub name: String,
    pub ns: String,
    pub addr: String,
    pub cfg: PathBuf,
    pub run_dir: tempfile::TempDir,
    pub state_dir: tempfile::TempDir,
    _listener: Option<TcpListener>,
    pub sync: Option<Sync>,
}

pub struct FleetLab {
    pub r: String,
    pub x: String,
    pub hosts: Vec<Host>,
    pub dir: tempfile::TempDir,
    redis: Option<Child>,
    /// With TLS: the certificate (PEM) the hosts trust (SSL_CERT_FILE).
    pub tls: Option<PathBuf>,
}

impl FleetLab {
    /// The namespaces, Redis started, and each host's config (`extra`: more
    /// config for a host, by name) applied.
    pub fn new(extra: impl Fn(&str) -> String) -> FleetLab {
        FleetLab::with(extra, false)
    }

    /// `tls`: Redis speaks only TLS (rediss://), with a fresh self-signed
    /// certificate for its address that the hosts are told to trust.
    pub fn with(extra: impl Fn(&str) -> String, tls: bool) -> FleetLab {
        assert!(unsafe { libc::geteuid() } == 0, "kernel tests need root");
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().unwrap();
        let mut lab = FleetLab {
            r: format!("fwtf{id}r"),
            x: format!("fwtf{id}x"),
            hosts: Vec::new(),
            dir,
            redis: None,
            tls: None,
        };
        if tls {
            let ck = rcgen::generate_simple_self_signed(vec![REDIS.to_string()]).unwrap();
            let cert = lab.dir.path().join("redis.pem");
            std::fs::write(&cert, ck.cert.pem()).unwrap();
            std::fs::write(
                lab.dir.path().join("redis.key"),
                ck.key_pair.serialize_pem(),
            )
            .unwrap();
            lab.tls = Some(cert);
        }
        let scheme = if tls { "rediss" } else { "redis" };
        // From here on Drop cleans up.
        must(&["ip", "netns", "add", &lab.r]);
        let ip = |ns: &str, args: &[&str]| {
            let mut v = vec!["ip", "-n", ns];
            v.extend_from_slice(args);
            must(&v);
        };
        ip(&lab.r, &["link", "set", "lo", "up"]);
        ip(&lab.r, &["link", "add", "br0", "type", "bridge"]);
        ip(
            &lab.r,
            &["addr", "add", &format!("{REDIS}/24"), "dev", "br0"],
        );
        ip(&lab.r, &["link", "set", "br0", "up"]);
        let secret = lab.dir.path().join("redis.secret");
        std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let join = |lab: &FleetLab, ns: &str, tag: &str, addr: &str| {
            must(&["ip", "netns", "add", ns]);
            let outer = format!("fw{id}{tag}");
            must(&[
                "ip", "link", "add", &outer, "netns", &lab.r, "type", "veth", "peer", "name",
                "eth0", "netns", ns,
            ]);
            ip(&lab.r, &["link", "set", &outer, "master", "br0", "up"]);
            ip(ns, &["link", "set", "lo", "up"]);
            ip(ns, &["link", "set", "eth0", "up"]);
            ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        };
        join(&lab, &lab.x.clone(), "x", ATTACKER);
        for (i, name) in ["A", "B", "C"].iter().enumerate() {
            let ns = format!("fwtf{id}{}", name.to_lowercase());
            let addr = format!("203.0.113.{}", i + 1);
            join(&lab, &ns, &name.to_lowercase(), &addr);
            let cfg = lab.dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "[[service]]\nname = \"web\"\nport = {PORT}\n[capture]\nprofile = \"aggressive\"\n[metrics]\nlisten = \"\"\n[fleet]\nredis = \"{scheme}://{REDIS}:6379/0\"\npassword_file = \"{}\"\nhost = \"{name}\"\n{}",
                    secret.display(),
                    extra(name)
                ),
            )
            .unwrap();
            let listener = in_ns(&ns, || {
                TcpListener::bind((addr.parse::<IpAddr>().unwrap(), PORT)).unwrap()
            });
            lab.hosts.push(Host {
                name: name.to_string(),
                ns,
                addr,
                cfg,
                run_dir: tempfile::tempdir().unwrap(),
                state_dir: tempfile::tempdir().unwrap(),
                _listener: Some(listener),
                sync: None,
            });
        }
        lab.start_redis();
        for i in 0..3 {
            let out = lab.fwctl(i, &["apply"]);
            assert!(
                out.status.success(),
                "apply on {}: {}",
                lab.hosts[i].name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lab
    }

    /// `redis-server` in its namespace, with a password and an append-only
    /// file (a restart keeps the stream); returns once it answers.
    pub fn start_redis(&mut self) {
        let data = self.dir.path().join("redis");
        std::fs::create_dir_all(&data).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.r, "redis-server", "--bind", REDIS]);
        match &self.tls {
            None => {
                cmd.args(["--port", "6379"]);
            }
            Some(cert) => {
                let key = self.dir.path().join("redis.key");
                cmd.args([
                    "--port",
                    "0",
                    "--tls-port",
                    "6379",
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(cert);
            }
        }
        let child = cmd
            .args([
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.redis = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        let up = |lab: &FleetLab| match lab.tls {
            None => lab.redis(&["PING"]).is_ok(),
            // Listening is enough: the test speaks to it only through fwctl.
            Some(_) => in_ns(&lab.r, || {
                std::net::TcpStream::connect((REDIS, 6379)).is_ok()
            }),
        };
        while !up(self) {
            assert!(Instant::now() < end, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and wait: it writes its append-only file and exits.
    pub fn stop_redis(&mut self) {
        if let Some(mut c) = self.redis.take() {
            // `ip netns exec` execs redis-server: the pid is the server's.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// One Redis command with the password, from inside its namespace.
    pub fn redis(&self, args: &[&str]) -> Result<redis::Value, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        in_ns(&self.r, move || {
            let url = format!("redis://:{PASSWORD}@{REDIS}:6379/0");
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let mut con = client
                .get_connection_with_timeout(Duration::from_secs(2))
                .map_err(|e| e.to_string())?;
            let mut c = redis::cmd(&args[0]);
            for a in &args[1..] {
                c.arg(a);
            }
            c.query::<redis::Value>(&mut con).map_err(|e| e.to_string())
        })
    }

    /// XADD each entry (its fields) to the stream, in one pipeline: what
    /// anyone who can write to Redis can do.
    pub fn xadd(&self, entries: Vec<Vec<(String, String)>>) {
        self.pipe(
            entries
                .into_iter()
                .map(|fields| {
                    let mut c = vec!["XADD".to_string(), "fwctl:bans".into(), "*".into()];
                    for (k, v) in fields {
                        c.push(k);
                        c.push(v);
                    }
                    c
                })
                .collect(),
        );
    }

    /// Redis commands, in one pipeline, with the password, from inside
    /// its namespace.
    pub fn pipe(&self, cmds: Vec<Vec<String>>) {
        in_ns(&self.r, move || {
            let url = format!("redis://:{PASSWORD}@{REDIS}:6379/0");
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut con = client
                .get_connection_with_timeout(Duration::from_secs(2))
                .unwrap();
            con.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut p = redis::pipe();
            for c in &cmds {
                let x = p.cmd(&c[0]);
                for a in &c[1..] {
                    x.arg(a);
                }
                x.ignore();
            }
            p.query::<()>(&mut con).unwrap();
        })
    }

    /// The process id of host `i`'s sync (`ip netns exec` execs fwctl).
    pub fn sync_pid(&self, i: usize) -> u32 {
        self.hosts[i].sync.as_ref().expect("sync runs").child.id()
    }

    pub fn fwctl(&self, i: usize, args: &[&str]) -> Output {
        self.fwctl_cmd(i, args).output().unwrap()
    }

    pub fn fwctl_cmd(&self, i: usize, args: &[&str]) -> Command {
        let h = &self.hosts[i];
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &h.ns, super::fwctl_bin()]);
        // The host's config, unless the test names another.
        if !args.contains(&"--config") {
            c.arg("--config").arg(&h.cfg);
        }
        c.args(args);
        c.env("FWCTL_RUN_DIR", h.run_dir.path());
        c.env("FWCTL_STATE", h.state_dir.path().join("state.json"));
        if let Some(cert) = &self.tls {
            c.env("SSL_CERT_FILE", cert);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Start `fwctl sync` on host `i`; returns once it has caught up.
    pub fn start_sync(&mut self, i: usize) {
        let mut child = self
            .fwctl_cmd(i, &["sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = channel();
        let name = self.hosts[i].name.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("sync {name}: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.hosts[i].sync = Some(Sync {
            child,
            lines: rx,
            log: Vec::new(),
        });
        assert!(
            self.wait_log(
                i,
                "caught up from the active index",
                Duration::from_secs(15)
            ),
            "sync on {} did not catch up: {:?}",
            self.hosts[i].name,
            self.hosts[i].sync.as_ref().map(|s| &s.log)
        );
    }

    /// SIGTERM and a clean exit.
    pub fn stop_sync(&mut self, i: usize) -> Vec<String> {
        let Some(mut s) = self.hosts[i].sync.take() else {
            return Vec::new();
        };
        unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
        let status = s.child.wait().unwrap();
        assert!(status.success(), "sync exited with {status}");
        s.log.extend(s.lines.try_iter());
        s.log
    }

    /// Wait until a line of host `i`'s sync contains `needle`.
    pub fn wait_log(&mut self, i: usize, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let s = self.hosts[i].sync.as_mut().expect("sync runs");
        if s.log.iter().any(|l| l.contains(needle)) {
            return true;
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match s.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    s.log.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Lines host `i`'s sync wrote so far (taking what is waiting).
    pub fn log(&mut self, i: usize) -> Vec<String> {
        let s = self.hosts[i].sync.as_mut().expect("sync runs");
        s.log.extend(s.lines.try_iter());
        s.log.clone()
    }

    /// Members of a set on host `i`, with their timeouts.
    pub fn members(&self, i: usize, set: &str) -> std::collections::HashMap<String, u32> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns, "ipset", "save", set])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"add")).then(|| {
                    let t = w
                        .windows(2)
                        .find(|x| x[0] == "timeout")
                        .map(|x| x[1].parse().unwrap())
                        .unwrap_or(0);
                    (w[2].to_string(), t)
                })
            })
            .collect()
    }

    /// Wait until `addr` is (or is not) in `set` on host `i`.
    pub fn wait_member(
        &self,
        i: usize,
        set: &str,
        addr: &str,
        present: bool,
        limit: Duration,
    ) -> Option<Duration> {
        let t = Instant::now();
        loop {
            if self.members(i, set).contains_key(addr) == present {
                return Some(t.elapsed());
            }
            if t.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A TCP connection attempt from `src` (an address of X) to host `i`.
    pub fn connect_from(&self, src: &str, i: usize) -> Probes {
        let dst = SocketAddr::new(self.hosts[i].addr.parse().unwrap(), PORT);
        let src: IpAddr = src.parse().unwrap();
        in_ns(&self.x, move || {
            probe(src, dst, 1, Duration::from_millis(800))
        })
    }

    /// Another address for X.
    pub fn add_attacker_addr(&self, addr: &str) {
        must(&[
            "ip",
            "-n",
            &self.x,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
    }

    pub fn state_path(&self, i: usize) -> PathBuf {
        self.hosts[i].state_dir.path().join("state.json")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for FleetLab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut s) = h.sync.take() {
                let _ = s.child.kill();
                let _ = s.child.wait();
            }
        }
        if let Some(mut c) = self.redis.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut all = vec![self.r.clone(), self.x.clone()];
        all.extend(self.hosts.iter().map(|h| h.ns.clone()));
        for ns in all {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}
