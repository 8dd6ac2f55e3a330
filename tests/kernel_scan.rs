//! Kernel tests for `fwctl scan` (root, namespaces): real packets from the
//! client namespace hit the fwctl ruleset, the kernel's LOG lines go through
//! a private rsyslogd running the shipped rsyslog/10-iptables.conf (its output
//! path pointed at a temp file), and `fwctl scan` bans into the real sets.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// LOG prefixes unique to this run (old runs' lines may still sit in the
/// kernel's ring buffer, which rsyslog reads from the start), and matched
/// by the shipped rsyslog rule (they contain IPTABLES- / IP6TABLES-).
fn tag() -> String {
    format!("FW{}", std::process::id() % 100_000)
}

fn cfg_text(tag: &str) -> String {
    format!(
        r#"
[trusted]
networks = ["198.51.100.12", "2001:db8:100::12"]
[[service]]
name = "web"
port = 80
# The lab's IPv6 sources share the target's /64: count each address
# (and aggregate nothing).
[aggregate]
v6_count_prefix = 128
min_offenders = 0
[logging]
rate = "1000/second"
burst = 1000
[logging.prefixes]
allowed = {{ v4 = "{tag}IPTABLES-ALLOWED: ", v6 = "{tag}IP6TABLES-ALLOWED: " }}
blocked = {{ v4 = "{tag}IPTABLES-BLOCKED: ", v6 = "{tag}IP6TABLES-BLOCKED: " }}
"#
    )
}

/// A private rsyslogd reading /dev/kmsg (imkmsg: it does not consume the
/// messages, unlike imklog on /proc/kmsg) with the shipped rule.
struct Rsyslog {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("iptables.log");
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("rsyslog/10-iptables.conf"),
        )
        .unwrap();
        assert!(shipped.contains("/ram/iptables.log"));
        let rule = shipped.replace("/ram/iptables.log", log.to_str().unwrap());
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{}\")\nmodule(load=\"imkmsg\")\n{rule}\n*.* stop\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f", conf.to_str().unwrap(), "-i"])
            .arg(dir.path().join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog)");
        Rsyslog {
            child,
            log,
            _dir: dir,
        }
    }

    /// Wait until the log holds `n` lines containing every needle.
    fn wait_lines(&self, needles: &[&str], n: usize) -> usize {
        self.wait_lines_within(needles, n, Duration::from_secs(15))
    }

    /// Wait until rsyslogd reads the kernel's log: it logs what comes after
    /// it is up, and once came up after a test's packets (no line at all).
    /// Probes from `src` to a closed port until their blocked line (prefix
    /// `tag`) is in the log; bounded to 50 probes.
    fn ready(&self, lab: &Lab, src: std::net::IpAddr, tag: &str) {
        let needle = format!("{tag}IP");
        for _ in 0..50 {
            lab.probe(src, 9, 1, Duration::from_millis(50));
            if self.wait_lines_within(
                &[&needle, "TABLES-BLOCKED: "],
                1,
                Duration::from_millis(200),
            ) > 0
            {
                return;
            }
        }
        panic!("rsyslogd logged none of 50 blocked probes from {src}");
    }

    fn wait_lines_within(&self, needles: &[&str], n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let count = text
                .lines()
                .filter(|l| needles.iter().all(|s| l.contains(s)))
                .count();
            if count >= n || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scan(lab: &Lab, cfg: &Path, log: &Path, set: &str, extra: &[&str]) -> Output {
    scan_rule(
        lab,
        cfg,
        log,
        set,
        &["--rule", "blocked", "--type", "tcp"],
        extra,
    )
}

/// `fwctl scan` of `log` for more than 10 lines within 10m into `set` for 1h,
/// counting the lines `rule` selects.
fn scan_rule(
    lab: &Lab,
    cfg: &Path,
    log: &Path,
    set: &str,
    rule: &[&str],
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "--config",
        cfg.to_str().unwrap(),
        "scan",
        "--log",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(rule);
    args.extend_from_slice(&[
        "--howmany",
        "10",
        "--within",
        "10m",
        "--ipset",
        set,
        "--removeafter",
        "1h",
    ]);
    args.extend_from_slice(extra);
    lab.fwctl(&args, &[])
}

/// Fire `n` SYNs from `src` at a closed port and wait for their LOG lines.
fn attack(lab: &Lab, rs: &Rsyslog, src: std::net::IpAddr, port: u16, n: usize) {
    let p = lab.probe(src, port, n, Duration::from_millis(300));
    assert_eq!(
        p.connected + p.refused,
        0,
        "port {port} must be closed and dropped"
    );
    let needle = src_field(src);
    let port = format!("DPT={port} ");
    let got = rs.wait_lines(&[&needle, &port, &tag()], n);
    assert!(got >= n, "rsyslog wrote {got} of {n} lines for {needle}");
}

/// The `SRC=` field the kernel writes for an address (IPv6 in full).
fn src_field(a: std::net::IpAddr) -> String {
    if a.is_ipv4() {
        format!("SRC={a} ")
    } else {
        format!("SRC={} ", full_v6(a))
    }
}

fn full_v6(a: std::net::IpAddr) -> String {
    let std::net::IpAddr::V6(v6) = a else {
        unreachable!()
    };
    fwctl::testing::loggen::full_v6(v6)
}

#[test]
#[ignore = "needs root: kernel test"]
fn real_log_lines_ban_the_attacker_and_spare_the_benign_source() {
    let host_before = host_firewall();
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text(&tag()));
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
    let _listeners = lab.listen(&[80]);
    let _kmsg = Kmsg::open(); // sets nf_log_all_netns=1
    let rs = Rsyslog::start();

    let (att4, att6) = src("attacker");
    let (ben4, ben6) = src("benign");
    let (tru4, _) = src("whitelisted");
    // 15 blocked SYNs from the attacker (over the threshold of 10), 10 from
    // the benign source (exactly the threshold: not over it), both families.
    // The trusted source never reaches the blocked rule: it is accepted.
    for (a, b) in [(att4, ben4), (att6, ben6)] {
        attack(&lab, &rs, a, 8081, 15);
        attack(&lab, &rs, b, 8082, 10);
    }
    assert_eq!(
        lab.reach(tru4, 8083),
        Reply::Refused,
        "trusted: let in, port closed"
    );

    // A dry run (as root: the sets are read) changes nothing.
    let before = (
        lab.set_members("blacklist"),
        lab.set_members("blacklist_v6"),
    );
    let out = scan(&lab, &cfg, &rs.log, "blacklist", &["--dryrun", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acts: Vec<(String, String)> = v["offenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["address"].as_str().unwrap().into(),
                o["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            (att4.to_string(), "would add".to_string()),
            (att6.to_string(), "would add".to_string())
        ],
        "{v}"
    );
    assert_eq!(
        before,
        (
            lab.set_members("blacklist"),
            lab.set_members("blacklist_v6")
        )
    );

    // The real run bans both families with the right timeout.
    let out = scan(&lab, &cfg, &rs.log, "blacklist", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(summary.contains("added: 2"), "{summary}");
    let v4 = lab.set_members("blacklist");
    let v6 = lab.set_members("blacklist_v6");
    for (set, a) in [(&v4, att4), (&v6, att6)] {
        let t = set
            .get(&a.to_string())
            .copied()
            .flatten()
            .unwrap_or_else(|| panic!("{a} not in {set:?}"));
        assert!((3590..=3600).contains(&t), "timeout {t}");
    }
    for a in [ben4, ben6] {
        assert!(
            !v4.contains_key(&a.to_string()) && !v6.contains_key(&a.to_string()),
            "{a} banned"
        );
    }
    let listed = lab.exec_ok(&lab.target, &["ipset", "list", "blacklist"]);
    assert!(listed.contains(&format!("{att4} timeout")), "{listed}");

    // The attacker's next packets are dropped, even to the open service; the
    // benign source still gets through.
    for (a, b) in [(att4, ben4), (att6, ben6)] {
        assert_eq!(lab.reach(a, 80), Reply::Silent, "{a}");
        assert_eq!(lab.reach(b, 80), Reply::Connected, "{b}");
    }

    // A second run finds the attacker already listed and keeps its timeout.
    lab.exec_ok(
        &lab.target,
        &[
            "ipset",
            "add",
            "-exist",
            "blacklist",
            &att4.to_string(),
            "timeout",
            "100",
        ],
    );
    let out = scan(&lab, &cfg, &rs.log, "blacklist", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("already listed") && s.contains("added: 0"),
        "{s}"
    );
    let t = lab.set_members("blacklist")[&att4.to_string()].unwrap();
    assert!(t <= 100, "timeout reset to {t}");

    drop(rs);
    drop(lab);
    assert_eq!(
        host_firewall(),
        host_before,
        "the host's own firewall changed"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn refusals_change_nothing() {
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTR"));
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/sample-iptables.log");
    // The sample's offenders, with its own prefixes and "now".
    let (_d2, cfg2) = config(&cfg_text(""));
    let sets_before = lab.exec_ok(&lab.target, &["ipset", "save"]);
    let now = [
        "--now",
        "2026-11-21T12:00:00Z",
        "--howmany",
        "50",
        "--within",
        "30m",
    ];

    // No such set.
    let mut args = vec![
        "--config",
        cfg2.to_str().unwrap(),
        "scan",
        "--log",
        sample.to_str().unwrap(),
        "--ipset",
        "nosuch",
        "--removeafter",
        "1h",
        "--rule",
        "blocked",
    ];
    args.extend_from_slice(&now);
    let out = lab.fwctl(&args, &[]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("ipset nosuch does not exist")
            && err.contains("fix:"),
        "{err}"
    );

    // A set of the wrong family.
    lab.exec_ok(
        &lab.target,
        &["ipset", "create", "mixed", "hash:ip", "timeout", "0"],
    );
    lab.exec_ok(
        &lab.target,
        &["ipset", "create", "mixed_v6", "hash:ip", "timeout", "0"],
    );
    args[6] = "mixed";
    let out = lab.fwctl(&args, &[]);
    assert!(
        text(&out.stderr).contains("has family inet but takes the IPv6"),
        "{}",
        text(&out.stderr)
    );

    // No ipset binary.
    args[6] = "blacklist";
    let out = lab.fwctl(&args, &[("FWCTL_IPSET", "/nonexistent/ipset")]);
    assert!(
        text(&out.stderr).contains("apt-get install ipset"),
        "{}",
        text(&out.stderr)
    );

    // Another run holds the lock: a clear message, nothing added.
    let lock = fwctl::sys::lock::acquire(lab.run_dir.path(), Duration::ZERO).unwrap();
    let out = lab.fwctl(&args, &[]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("another fwctl run")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(lock);

    let mut sets_now = lab.exec_ok(&lab.target, &["ipset", "save"]);
    sets_now = sets_now
        .lines()
        .filter(|l| !l.contains("mixed"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(sets_now, sets_before);

    // And with the lock free, the sample's offenders go in.
    let out = lab.fwctl(&args, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("added: 4"),
        "{}",
        text(&out.stdout)
    );
    assert!(lab.set_members("blacklist").contains_key("203.0.113.1"));
    assert!(lab
        .set_members("blacklist_v6")
        .contains_key("2001:db8:bad::2"));
}

/// Send `bytes` from `src` to the target's port 80 over one connection (the
/// listener in `accept` reads it all), and wait until the peer has it.
fn upload(lab: &Lab, src: std::net::IpAddr, bytes: usize) {
    use std::io::Write;
    let dst: std::net::IpAddr = if src.is_ipv4() { TARGET4 } else { TARGET6 }
        .parse()
        .unwrap();
    in_ns(&lab.client, move || {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(std::net::SocketAddr::new(dst, 80)),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        s.bind(&std::net::SocketAddr::new(src, 0).into()).unwrap();
        s.connect_timeout(
            &std::net::SocketAddr::new(dst, 80).into(),
            Duration::from_secs(2),
        )
        .unwrap_or_else(|e| panic!("{src} -> {dst}:80: {e}"));
        let mut t: std::net::TcpStream = s.into();
        t.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let chunk = vec![b'x'; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            t.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        t.shutdown(std::net::Shutdown::Write).unwrap();
        // The reader closes when it has read everything.
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut end = [0u8; 1];
        let _ = std::io::Read::read(&mut t, &mut end);
    })
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_bandwidth_hog_is_logged_by_the_kernel_and_banned_by_scan_rule_bandwidth() {
    let host_before = host_firewall();
    let lab = Lab::new();
    // A tag of its own: the other tests of this process log blocked lines
    // with tag() at the same time, and each rsyslogd reads them all.
    let t = format!("{}B", tag());
    // LOG lines at 50 a second per source (burst 50), not the other tests'
    // 1000: a hog's thousands of packets would otherwise overrun the kernel's
    // log ring before rsyslogd reads it, while the parallel tests log too.
    let base = cfg_text(&t).replace(
        "rate = \"1000/second\"\nburst = 1000",
        "rate = \"50/second\"\nburst = 50",
    );
    assert!(base.contains("burst = 50"));
    let (_d, cfg) = config(&format!(
        "{base}bandwidth = {{ v4 = \"{t}IPTABLES-BANDWIDTH: \", v6 = \"{t}IP6TABLES-BANDWIDTH: \" }}\n\
         [bandwidth]\nabove = \"256kb/s\"\n"
    ));
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
    assert!(
        lab.rules().contains("--hashlimit-above 256kb/s"),
        "{}",
        lab.rules()
    );
    // The service reads each connection to its end, then closes it.
    let listeners = lab.listen(&[80]);
    let mut readers = Vec::new();
    for l in listeners {
        readers.push(std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut c, _) = l.accept().unwrap();
                let _ = std::io::copy(&mut c, &mut std::io::sink());
            }
        }));
    }
    let _kmsg = Kmsg::open(); // sets nf_log_all_netns=1
    let rs = Rsyslog::start();

    let (hog4, hog6) = src("attacker");
    let (ben4, ben6) = src("benign");
    rs.ready(&lab, ben4, &t);
    // The hog sends 8 MB at veth speed, 30 times the rate; the benign client
    // a 16 KB request, within what a new source may send at once.
    for (hog, ben) in [(hog4, ben4), (hog6, ben6)] {
        upload(&lab, ben, 16 << 10);
        upload(&lab, hog, 8 << 20);
        let needle = src_field(hog);
        let got = rs.wait_lines(&[&needle, &format!("{t}IP"), "TABLES-BANDWIDTH: "], 20);
        if got < 20 {
            let all = std::fs::read_to_string(&rs.log).unwrap_or_default();
            let bw = all.lines().filter(|l| l.contains("BANDWIDTH")).count();
            panic!(
                "{got} bandwidth lines for {hog} ({bw} bandwidth lines, {} in all, in the log); rules:\n{}",
                all.lines().count(),
                lab.rules()
            );
        }
    }
    for r in readers {
        r.join().unwrap();
    }
    let log = std::fs::read_to_string(&rs.log).unwrap();
    for ben in [ben4, ben6] {
        let needle = src_field(ben);
        assert!(
            !log.lines()
                .any(|l| l.contains("BANDWIDTH") && l.contains(&needle)),
            "the benign client {ben} was logged as a hog"
        );
    }

    // --rule blocked does not count the hog's lines: they are not drops.
    let out = scan_rule(
        &lab,
        &cfg,
        &rs.log,
        "blacklist",
        &["--rule", "blocked"],
        &["--dryrun"],
    );
    assert!(
        text(&out.stdout).contains("offenders: none"),
        "{}",
        text(&out.stdout)
    );
    let out = scan_rule(
        &lab,
        &cfg,
        &rs.log,
        "blacklist",
        &["--rule", "bandwidth"],
        &["--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found: Vec<&str> = v["offenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["address"].as_str().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, [hog4.to_string(), hog6.to_string()], "{v}");
    assert!(lab.set_members("blacklist").contains_key(&hog4.to_string()));
    assert!(lab
        .set_members("blacklist_v6")
        .contains_key(&hog6.to_string()));
    for ben in [ben4, ben6] {
        assert!(!lab.set_members("blacklist").contains_key(&ben.to_string()));
        assert!(!lab
            .set_members("blacklist_v6")
            .contains_key(&ben.to_string()));
    }
    // Banned: its new connections get no answer.
    assert_eq!(lab.reach(hog4, 80), Reply::Silent);
    drop(rs);
    drop(lab);
    assert_eq!(
        host_firewall(),
        host_before,
        "the host's own firewall changed"
    );
}
