//! Kernel tests for `fwctl capture` (root, namespaces): fwctl applies its
//! ruleset and runs capture in the target namespace; nmap and hping3 scan it
//! from the client namespace. Every scan must be reported with its type, the
//! scanner must land in the set and then be dropped; a benign client using
//! services must never be banned; a spoofed flood must stay within memory.

mod common;
use common::service::Service;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[service]]
name = "ssh"
port = 22
[[service]]
name = "http"
port = 80
# The lab's IPv6 sources share the target's /64: track each address.
[aggregate]
v6_count_prefix = 128
min_offenders = 0
[capture]
profile = "aggressive"
"#;

/// `fwctl capture --json` in the target namespace. Its first stderr line
/// comes once the socket is open and the filter attached: from then on no
/// probe is missed.
struct Capture;

impl Capture {
    fn start(lab: &Lab, cfg: &Path, state: &Path, extra: &[&str]) -> Service {
        Capture::start_via(lab, &[], cfg, state, extra)
    }

    fn start_via(lab: &Lab, wrapper: &[&str], cfg: &Path, state: &Path, extra: &[&str]) -> Service {
        let mut args = vec![
            "--config",
            cfg.to_str().unwrap(),
            "capture",
            "--json",
            "--state",
            state.to_str().unwrap(),
            "--iface",
            &lab.target_if,
        ];
        args.extend_from_slice(extra);
        let cmd = lab.fwctl_cmd_via(wrapper, &args, &[]);
        Service::spawn(cmd, "fwctl: capture on", "capture stderr")
    }
}

/// The capture_stats event written at exit.
fn last_stats(events: &[Value]) -> &Value {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "capture_stats")
        .expect("a capture_stats event at exit")
}

fn nmap(lab: &Lab, src: &str, args: &[&str]) {
    let dst = if src.contains(':') { TARGET6 } else { TARGET4 };
    let mut v = vec![
        "nmap",
        "-n",
        "-Pn",
        "--max-retries",
        "0",
        "--host-timeout",
        "30s",
    ];
    if src.contains(':') {
        v.push("-6");
    }
    v.extend_from_slice(&["-e", &lab.client_if, "-S", src]);
    v.extend_from_slice(args);
    v.push(dst);
    lab.exec_ok(&lab.client, &v);
}

fn add_sources(lab: &Lab, addrs: &[&str]) {
    for a in addrs {
        let len = if a.contains(':') { "64" } else { "24" };
        let mut args = vec!["addr", "add"];
        let cidr = format!("{a}/{len}");
        args.push(&cidr);
        args.extend_from_slice(&["dev", &lab.client_if]);
        if a.contains(':') {
            args.push("nodad");
        }
        lab.ip(&lab.client, &args);
    }
}

/// SYNs from `src` (one of the client's addresses) to `port` of the target's
/// IPv4 address with hping3 (`extra`: count and interval); what it said.
fn hping3_syns(lab: &Lab, src: IpAddr, port: u16, extra: &[&str]) -> String {
    let (src, port) = (src.to_string(), port.to_string());
    let mut args = vec!["hping3", "-q", "-S", "-p", &port, "-a", &src];
    args.extend_from_slice(extra);
    args.push(TARGET4);
    let out = lab.exec(&lab.client, &args);
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

fn apply(lab: &Lab, cfg: &Path) {
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn every_nmap_scan_type_is_detected_banned_and_then_dropped() {
    let host_before = host_firewall();
    let lab = Lab::new();
    let (dir, cfg) = config(CONFIG);
    apply(&lab, &cfg);
    let _listeners = lab.listen(&[22, 80]);
    // One attacker address per scan, so each is detected and banned on its own.
    let scans: [(&str, &str, &[&str]); 7] = [
        ("198.51.100.21", "SYN", &["-sS", "-p", "1000-1004"]),
        ("198.51.100.22", "FIN", &["-sF", "-p", "1000-1004"]),
        ("198.51.100.23", "NULL", &["-sN", "-p", "1000-1004"]),
        ("198.51.100.24", "XMAS", &["-sX", "-p", "1000-1004"]),
        ("198.51.100.25", "UDP", &["-sU", "-p", "1000-1004"]),
        // Slow: one probe every 2 seconds, one at a time.
        (
            "198.51.100.26",
            "SYN",
            &[
                "-sS",
                "-p",
                "2000-2002",
                "--scan-delay",
                "2s",
                "--max-parallelism",
                "1",
            ],
        ),
        ("2001:db8:100::21", "SYN", &["-sS", "-p", "1000-1004"]),
    ];
    add_sources(&lab, &scans.map(|s| s.0));
    // Before the scan, an attacker can still reach the web service.
    let first: IpAddr = scans[0].0.parse().unwrap();
    assert_eq!(lab.reach(first, 80), Reply::Connected);

    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    // A benign client: repeated connections to ssh and http, in both families.
    let (b4, b6) = src("benign");
    for src in [b4, b6] {
        for port in [22, 80] {
            let p = lab.probe(src, port, 20, Duration::from_secs(3));
            assert_eq!(p.connected, 20, "benign {src} port {port}: {p:?}");
        }
    }
    for (addr, _, args) in &scans {
        nmap(&lab, addr, args);
    }
    let all = scans.map(|s| s.0);
    let ok = cap.wait_for(Duration::from_secs(30), |seen| {
        all.iter().all(|a| {
            seen.iter()
                .any(|e| e["event"] == "ip_blocked" && e["src"] == *a)
        })
    });
    assert!(ok, "not every scanner was banned: {:#?}", cap.seen);
    for (addr, kind, _) in &scans {
        let det = cap.of("scan_detected");
        let d = det.iter().find(|e| e["src"] == *addr).unwrap();
        assert_eq!(d["scan_type"], *kind, "{addr}: {d}");
        assert_eq!(d["profile"], "aggressive");
        let set = if addr.contains(':') {
            "blacklist_v6"
        } else {
            "blacklist"
        };
        let members = lab.set_members(set);
        let t = members
            .get(*addr)
            .unwrap_or_else(|| panic!("{addr} not in {set}"));
        assert!(
            matches!(t, Some(s) if *s > 250 && *s <= 300),
            "{addr}: timeout {t:?}"
        );
    }
    let slow = cap
        .of("scan_detected")
        .into_iter()
        .find(|e| e["src"] == "198.51.100.26")
        .unwrap()
        .clone();
    assert!(
        slow["duration_s"].as_u64().unwrap() >= 3,
        "slow scan: {slow}"
    );
    // Banned: every attacker's packets are now dropped, even to an open service.
    for (addr, _, _) in &scans {
        assert_eq!(
            lab.reach(addr.parse().unwrap(), 80),
            Reply::Silent,
            "{addr}"
        );
    }
    // The benign client was never reported, and still gets in.
    for src in [b4.to_string(), b6.to_string()] {
        assert!(
            !cap.seen.iter().any(|e| e["src"] == src),
            "benign {src} reported"
        );
    }
    assert_eq!(lab.reach(b4, 22), Reply::Connected);

    let events = cap.stop();
    let stats = last_stats(&events);
    assert_eq!(stats["bans"], 7);
    let latencies: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "ip_blocked")
        .map(|e| e["latency_us"].as_u64().unwrap())
        .collect();
    assert!(latencies.iter().all(|&l| l < 1_000_000), "{latencies:?}");
    // The ban history was saved on SIGTERM.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["bans"].as_array().unwrap().len(), 7);
    // `fwctl why` tells each ban's evidence: what capture counted.
    let out = lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "why",
            "198.51.100.22",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("in blacklist as 198.51.100.22"), "{text}");
    assert!(text.contains("by capture: FIN"), "{text}");
    assert!(text.contains("| ports: 100"), "{text}");
    assert!(text.contains("-sF"), "{text}");
    drop(lab);
    assert_eq!(host_firewall(), host_before);
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_spoofed_flood_stays_in_bounds_and_a_scanner_inside_it_is_caught() {
    let lab = Lab::new();
    let (dir, cfg) = config(&format!("{CONFIG}max_sources = 5000\n"));
    apply(&lab, &cfg);
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    // 100 000 SYNs from random spoofed sources to one port, as fast as
    // hping3 sends them; bounded by count.
    let client = lab.client.clone();
    let flood = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &client,
                "hping3",
                "-q",
                "-S",
                "-p",
                "81",
                "--rand-source",
                "-c",
                "100000",
                "-i",
                "u5",
                TARGET4,
            ])
            .output()
            .unwrap()
    });
    // The real scanner, in the middle of the flood.
    let (attacker, _) = src("attacker");
    nmap(&lab, &attacker.to_string(), &["-sS", "-p", "3000-3009"]);
    let ok = cap.wait_for(Duration::from_secs(20), |seen| {
        seen.iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"] == attacker.to_string())
    });
    assert!(ok, "the scanner in the flood was not banned");
    let out = flood.join().unwrap();
    // hping3 exits 1 when nothing answers (the ruleset drops the flood).
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("100000 packets transmitted"),
        "hping3: {said}"
    );
    let events = cap.stop();
    let stats = last_stats(&events);
    let n = |k: &str| stats[k].as_u64().unwrap();
    assert!(n("probes") >= 90_000, "{stats}");
    // One probe per forged source: they stay first sightings and never
    // enter the table (the scanner, with its second probe, does).
    assert!(n("tracked") <= 100, "{stats}");
    assert_eq!(n("evicted"), 0, "{stats}");
    assert!(n("peak_rss_kb") < 100 * 1024, "{stats}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "distributed_scan" && e["port"] == 81),
        "the flood on port 81 is a distributed scan"
    );
    // Spoofed one-packet sources are never banned.
    assert_eq!(n("bans"), 1, "{stats}");
}

#[test]
#[ignore = "needs root: kernel test"]
fn detect_only_bans_nothing_and_a_missing_set_is_refused() {
    let lab = Lab::new();
    let (dir, cfg) = config(CONFIG);
    // No apply yet: the ban set does not exist.
    let state = dir.path().join("state.json");
    let out = lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "capture",
            "--state",
            state.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // The fix names the same config and state file.
    let fix = format!(
        "ipset blacklist does not exist; fix: run `sudo fwctl --config {} --state {} apply`",
        cfg.display(),
        state.display()
    );
    assert!(err.contains(&fix), "{fix} in {err}");
    assert!(!state.exists());

    apply(&lab, &cfg);
    let mut cap = Capture::start(&lab, &cfg, &state, &["--detect-only"]);
    let (attacker, _) = src("attacker");
    nmap(&lab, &attacker.to_string(), &["-sX", "-p", "4000-4004"]);
    let ok = cap.wait_for(Duration::from_secs(20), |seen| {
        seen.iter().any(|e| e["event"] == "scan_detected")
    });
    assert!(ok);
    let d = cap.of("scan_detected")[0].clone();
    assert_eq!(d["action"], "not banned: detection only");
    assert_eq!(d["scan_type"], "XMAS");
    cap.stop();
    assert!(lab.set_members("blacklist").is_empty());
    // The scan is counted in the baseline (written when capture stops).
    use fwctl::core::baseline::{self, Key, What};
    let (b, _) =
        fwctl::sys::sidefile::read(&state.with_file_name("baseline.json"), baseline::parse)
            .unwrap();
    let scans = b.get(&Key::new(What::Scans, "capture", "all"));
    assert!(
        scans.is_some_and(|s| s.counts.iter().sum::<u64>() >= 1),
        "{b:?}"
    );
}

/// fwctl-capture.service keeps only CAP_NET_ADMIN, CAP_NET_RAW and
/// CAP_NET_BIND_SERVICE (decoy ports below 1024): capture
/// run with exactly the unit's capability set (read from the unit file) and
/// no-new-privs still opens its socket, detects a scan and bans it.
#[test]
#[ignore = "needs root: kernel test"]
fn capture_works_with_only_the_service_units_capabilities() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/fwctl-capture.service"),
    )
    .unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap()
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert_eq!(caps, ["+net_admin", "+net_raw", "+net_bind_service"]);
    let bounding = format!("-all,{}", caps.join(","));
    let wrapper = [
        "setpriv",
        "--bounding-set",
        &bounding,
        "--inh-caps",
        "-all",
        "--no-new-privs",
        "--",
    ];
    let lab = Lab::new();
    // A decoy below 1024 needs the third capability.
    let (_d, cfg) = config(&format!("{CONFIG}decoy_ports = [23]\n"));
    apply(&lab, &cfg);
    let state = lab.state_dir.path().join("capture.json");
    let mut cap = Capture::start_via(&lab, &wrapper, &cfg, &state, &[]);
    // The process holds exactly the three capabilities (bits 10, 12, 13).
    let status = std::fs::read_to_string(format!("/proc/{}/status", cap.child.id())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        u64::from_str_radix(&eff, 16).unwrap(),
        (1 << 10) | (1 << 12) | (1 << 13),
        "{eff}"
    );
    let (attacker, _) = src("attacker");
    nmap(&lab, &attacker.to_string(), &["-sS", "-p", "3000-3009"]);
    assert!(
        cap.wait_for(Duration::from_secs(10), |e| e
            .iter()
            .any(|v| v["event"] == "ip_blocked")),
        "no ban: {:?}",
        cap.seen
    );
    assert!(lab
        .set_members("blacklist")
        .contains_key(&attacker.to_string()));
    let evs = cap.stop();
    assert!(evs.iter().any(|e| e["event"] == "capture_stats"));
    assert!(
        state.exists(),
        "the state file is written without CAP_DAC_OVERRIDE"
    );
}

/// GET a path on 127.0.0.1:PORT inside namespace `ns`; the body.
fn get_in(ns: &str, port: u16, path: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    in_ns(ns, move || {
        ureq::get(&url)
            .timeout(Duration::from_secs(5))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
    })
}

/// A Prometheus server, killed on drop.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Capture in a namespace bans an nmap scanner: the receiver gets a signed
/// ip_blocked within 2 s, /metrics passes `promtool check metrics`, and a
/// real Prometheus, with the shipped scrape config and alert rules, scrapes
/// it and answers fwctl_bans_total >= 1.
#[test]
#[ignore = "needs root: kernel test"]
fn a_capture_ban_is_posted_signed_and_prometheus_scrapes_it() {
    use common::receiver::Receiver;
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    let (dir, _) = config("");
    let secret = dir.path().join("webhook.secret");
    std::fs::write(&secret, "k3y\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.path().join("notify.toml");
    std::fs::write(
        &cfg,
        format!(
            "{CONFIG}\n[[notify]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:9469\"\n",
            rx.url(),
            secret.display()
        ),
    )
    .unwrap();
    apply(&lab, &cfg);
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    let (attacker, _) = src("attacker");
    let a = attacker.to_string();
    nmap(&lab, &a, &["-sS", "-p", "3000-3009"]);
    assert!(
        cap.wait_for(Duration::from_secs(10), |seen| seen
            .iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"] == a)),
        "no ban: {:?}",
        cap.seen
    );
    let banned = Instant::now();
    let posted = rx.wait_for(Duration::from_secs(2), |reqs| {
        reqs.iter().any(|r| {
            r.events()
                .iter()
                .any(|e| e["event"] == "ip_blocked" && e["address"] == a.as_str())
        })
    });
    assert!(posted, "no ip_blocked post within 2 s: {:?}", rx.requests());
    eprintln!(
        "ip_blocked posted {:?} after the ban event",
        banned.elapsed()
    );
    let post = rx
        .requests()
        .into_iter()
        .find(|r| r.events().iter().any(|e| e["event"] == "ip_blocked"))
        .unwrap();
    assert!(post.signed_with(b"k3y") && !post.signed_with(b"k3y\n"));
    let b = post
        .events()
        .into_iter()
        .find(|e| e["event"] == "ip_blocked")
        .unwrap();
    assert_eq!(
        (b["origin"].as_str(), b["set"].as_str()),
        (Some("capture"), Some("blacklist"))
    );
    assert!(b["reason"].as_str().unwrap().contains("SYN scan"), "{b}");

    // /metrics: the ban is counted, and promtool finds nothing to lint.
    let text = get_in(&lab.target, 9469, "/metrics").expect("/metrics answers");
    assert!(
        text.contains("fwctl_bans_total{set=\"blacklist\",source=\"capture\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("fwctl_scans_detected_total{type=\"SYN\"} 1\n"),
        "{text}"
    );
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let lint = lint.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real Prometheus with the shipped files, scraping every second.
    let prom_dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus");
    let yml = std::fs::read_to_string(shipped.join("fwctl.yml"))
        .unwrap()
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    std::fs::write(prom_dir.path().join("fwctl.yml"), yml).unwrap();
    std::fs::copy(
        shipped.join("fwctl-alerts.yml"),
        prom_dir.path().join("fwctl-alerts.yml"),
    )
    .unwrap();
    let conf = format!("--config.file={}/fwctl.yml", prom_dir.path().display());
    let data = format!("--storage.tsdb.path={}/data", prom_dir.path().display());
    let _prom = Prometheus(
        std::process::Command::new("ip")
            .args(["netns", "exec", &lab.target, "prometheus", &conf, &data])
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer = get_in(
            &lab.target,
            9090,
            "/api/v1/query?query=sum(fwctl_bans_total%7Bjob%3D%22fwctl-capture%22%7D)",
        );
        let v = answer
            .as_deref()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string)
            });
        if let Some(v) = v {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had fwctl_bans_total: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(value.parse::<f64>().unwrap() >= 1.0, "{value}");
    // The shipped alert rules loaded and evaluate.
    let rules = get_in(&lab.target, 9090, "/api/v1/rules").unwrap();
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"FwctlCaptureDown") && names.len() >= 6,
        "{names:?}"
    );
    cap.stop();
}

/// A capture that ends on an error tells the sinks (capture_down) before it
/// exits: here its event output is a full disk (/dev/full).
#[test]
#[ignore = "needs root: kernel test"]
fn a_capture_that_fails_sends_capture_down() {
    use common::receiver::Receiver;
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    let (dir, cfg) = config(&format!(
        "{CONFIG}\n[[notify]]\nname = \"ops\"\nurl = \"URL\"\nevents = [\"capture_down\"]\n[metrics]\nlisten = \"\"\n"
    ));
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("URL", &rx.url()),
    )
    .unwrap();
    apply(&lab, &cfg);
    let state = dir.path().join("state.json");
    let mut child = lab
        .fwctl_cmd(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "capture",
                "--state",
                state.to_str().unwrap(),
                "--iface",
                &lab.target_if,
                "--output",
                "/dev/full",
            ],
            &[],
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(
        first.contains("fwctl: capture on") && !first.contains("metrics at"),
        "{first}"
    );
    let (attacker, _) = src("attacker");
    nmap(&lab, &attacker.to_string(), &["-sS", "-p", "3000-3009"]);
    let got = rx.wait_for(Duration::from_secs(10), |r| !r.is_empty());
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(got, "no capture_down");
    let v = rx.requests()[0].json();
    assert_eq!(v["event"], "capture_down");
    assert!(
        v["error"].as_str().unwrap().contains("writing events"),
        "{v}"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_connection_flood_to_a_service_is_banned_into_throttle_hard_and_a_client_is_not() {
    let lab = Lab::new();
    let (dir, cfg) = config(&format!(
        "{CONFIG}[capture.flood]\nsyn_rate = \"100/second\"\nover = \"2s\"\nset = \"throttle_hard\"\n"
    ));
    apply(&lab, &cfg);
    let _web = lab.listen(&[80]);
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    let (attacker, _) = src("attacker");
    let (benign, _) = src("benign");
    // The client: 20 HTTP connections at once (the listener's backlog
    // completes them), well under 200 within 2 s.
    let p = lab.probe(benign, 80, 20, Duration::from_secs(2));
    assert_eq!(p.connected, 20, "{p:?}");
    // The flooder: 200 SYNs a second to the web service for 3 s.
    let said = hping3_syns(&lab, attacker, 80, &["-i", "u5000", "-c", "600"]);
    assert!(said.contains("600 packets transmitted"), "hping3: {said}");
    let ok = cap.wait_for(Duration::from_secs(10), |seen| {
        seen.iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"] == attacker.to_string())
    });
    assert!(ok, "the flooder was not banned: {:?}", cap.seen);
    let flood = cap.of("connection_flood");
    assert_eq!(flood.len(), 1, "{flood:?}");
    assert_eq!(flood[0]["src"], attacker.to_string());
    assert_eq!(flood[0]["port"], 80);
    assert!(flood[0]["syns"].as_u64().unwrap() > 200, "{flood:?}");
    let blocked = cap.of("ip_blocked");
    assert_eq!(blocked[0]["set"], "throttle-hard");
    assert_eq!(blocked[0]["scan_type"], "connection-flood");
    let hard = lab.set_members("throttle-hard");
    assert!(hard.contains_key(&attacker.to_string()), "{hard:?}");
    for set in ["throttle-hard", "blacklist", "throttle-soft"] {
        assert!(
            !lab.set_members(set).contains_key(&benign.to_string()),
            "benign in {set}"
        );
    }
    // Service SYNs are never a port scan.
    assert!(
        cap.of("scan_detected").is_empty(),
        "{:?}",
        cap.of("scan_detected")
    );
    let events = cap.stop();
    assert_eq!(last_stats(&events)["bans"], 1);
}

/// `banned` are members of the blacklist set of their family, `spared` is not.
fn in_blacklist_but(lab: &Lab, banned: &[IpAddr], spared: IpAddr) {
    for a in banned {
        let set = if a.is_ipv4() {
            "blacklist"
        } else {
            "blacklist_v6"
        };
        assert!(
            lab.set_members(set).contains_key(&a.to_string()),
            "{a} not in {set}"
        );
    }
    assert!(
        !lab.set_members("blacklist")
            .contains_key(&spared.to_string()),
        "{spared} banned"
    );
}

/// Send `per_source` SYNs to `port` of the target from each of `sources`
/// (raw IPv4 from the client namespace, the source addresses written in),
/// one packet every `gap`: a SYN flood from many forged sources, all of
/// them documentation addresses.
fn forged_syns(
    lab: &Lab,
    sources: &[std::net::Ipv4Addr],
    per_source: u16,
    port: u16,
    gap: Duration,
) -> usize {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let dst: std::net::Ipv4Addr = "198.51.100.1".parse().unwrap();
    in_ns(&lab.client, move || {
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        let to = SockAddr::from(std::net::SocketAddr::new(dst.into(), 0));
        let mut sent = 0;
        for round in 0..per_source {
            for (i, src) in sources.iter().enumerate() {
                let b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
                    .tcp(10_000 + round * 1000 + i as u16, port, 7, 1024)
                    .syn();
                let mut pkt = Vec::with_capacity(b.size(0));
                b.write(&mut pkt, &[]).unwrap();
                s.send_to(&pkt, &to).unwrap();
                sent += 1;
                std::thread::sleep(gap);
            }
        }
        sent
    })
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_syn_flood_from_many_forged_sources_is_reported_and_bans_nobody() {
    let lab = Lab::new();
    let (dir, cfg) = config(&format!(
        "{CONFIG}[capture.flood]\nsyn_rate = \"20/second\"\nover = \"2s\"\nsyn_flood_rate = \"200/second\"\n"
    ));
    apply(&lab, &cfg);
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    // 500 sources from two documentation networks, 3 SYNs each to port 80,
    // about 1 500 a second: each source far below 20/s, together far above 200/s.
    let sources: Vec<std::net::Ipv4Addr> = (0..500u32)
        .map(|i| {
            let net = if i < 250 { [203, 0, 113] } else { [192, 0, 2] };
            std::net::Ipv4Addr::new(net[0], net[1], net[2], (i % 250 + 2) as u8)
        })
        .collect();
    let sent = forged_syns(&lab, &sources, 3, 80, Duration::from_micros(500));
    assert_eq!(sent, 1500);
    let ok = cap.wait_for(Duration::from_secs(5), |seen| {
        seen.iter().any(|e| e["event"] == "syn_flood")
    });
    assert!(ok, "no syn_flood event: {:?}", cap.seen);
    let seen = cap.stop();
    let of = |kind: &str| {
        seen.iter()
            .filter(|e| e["event"] == kind)
            .collect::<Vec<_>>()
    };
    let f = of("syn_flood");
    assert_eq!(f[0]["port"], 80, "{f:?}");
    assert!(f[0]["rate_per_s"].as_u64().unwrap() >= 200, "{f:?}");
    assert!(
        f[0]["syncookies"].is_boolean(),
        "live capture reads the sysctl: {f:?}"
    );
    assert!(
        of("connection_flood").is_empty(),
        "{:?}",
        of("connection_flood")
    );
    assert!(of("ip_blocked").is_empty(), "{:?}", of("ip_blocked"));
    for set in ["blacklist", "throttle-hard", "throttle-soft"] {
        assert!(
            lab.set_members(set).is_empty(),
            "{set}: {:?}",
            lab.set_members(set)
        );
    }
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_union_select_to_a_real_listener_bans_its_sender_and_a_medium_signature_only_reports() {
    let lab = Lab::new();
    let (dir, cfg) = config(&format!(
        "{CONFIG}[[capture.signature]]\nname = \"sql-union\"\nports = [3306, 80]\ncontains = \"UNION SELECT\"\nnocase = true\nseverity = \"high\"\n[[capture.signature]]\nname = \"etc-passwd\"\nports = [80]\ncontains = \"/etc/passwd\"\nseverity = \"medium\"\n"
    ));
    apply(&lab, &cfg);
    let _web = lab.listen(&[80]);
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    let (attacker, attacker6) = src("attacker");
    let (benign, _) = src("benign");
    // A clean request, then one a medium signature matches: reported only.
    lab.send(benign, 80, b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    lab.send(
        benign,
        80,
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let ok = cap.wait_for(Duration::from_secs(5), |seen| {
        seen.iter().any(|e| e["event"] == "signature_matched")
    });
    assert!(ok, "the medium signature was not reported: {:?}", cap.seen);
    // The request with UNION SELECT (case folded): banned, both families.
    for a in [attacker, attacker6] {
        lab.send(
            a,
            80,
            b"GET /item?id=1%20union select password from users HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        let ok = cap.wait_for(Duration::from_secs(5), |seen| {
            seen.iter()
                .any(|e| e["event"] == "ip_blocked" && e["src"] == a.to_string())
        });
        assert!(ok, "{a} was not banned: {:?}", cap.seen);
    }
    let m = cap.of("signature_matched");
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(
        (m[0]["name"].as_str(), m[0]["src"].as_str()),
        (Some("etc-passwd"), Some(benign.to_string().as_str()))
    );
    assert_eq!(m[0]["action"], "reported only (no high-severity signature)");
    assert_eq!(
        (
            m[1]["name"].as_str(),
            m[1]["matched"].as_str(),
            m[1]["port"].as_u64()
        ),
        (Some("sql-union"), Some("union select"), Some(80))
    );
    let blocked = cap.of("ip_blocked");
    assert_eq!(blocked.len(), 2, "{blocked:?}");
    assert!(
        blocked.iter().all(|b| b["scan_type"] == "signature"),
        "{blocked:?}"
    );
    in_blacklist_but(&lab, &[attacker, attacker6], benign);
    // Banned: the web server no longer answers it; the client still gets in.
    assert_eq!(lab.reach(attacker, 80), Reply::Silent);
    assert_eq!(lab.reach(benign, 80), Reply::Connected);
    cap.stop();
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_decoy_handshake_is_banned_at_once_and_a_bare_syn_is_not() {
    let lab = Lab::new();
    let (dir, cfg) = config(&format!("{CONFIG}decoy_ports = [2323]\n"));
    apply(&lab, &cfg);
    assert!(
        lab.rules().contains("--dport 2323 -j FWCTL-ALLOW"),
        "{}",
        lab.rules()
    );
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    let (attacker, attacker6) = src("attacker");
    let (benign, _) = src("benign");
    // A bare SYN (hping3 never completes the handshake): the kernel's
    // SYN-ACK, one probe of one port, no ban.
    let said = hping3_syns(&lab, benign, 2323, &["-c", "1"]);
    assert!(
        said.contains("1 packets received"),
        "the decoy answers a SYN: {said}"
    );
    // A connection (nc -z does the same): banned at once, both families.
    for a in [attacker, attacker6] {
        assert_eq!(lab.reach(a, 2323), Reply::Connected, "{a}");
        let ok = cap.wait_for(Duration::from_secs(5), |seen| {
            seen.iter()
                .any(|e| e["event"] == "ip_blocked" && e["src"] == a.to_string())
        });
        assert!(ok, "{a} was not banned: {:?}", cap.seen);
    }
    let touched = cap.of("decoy_touched");
    assert_eq!(touched.len(), 2, "{touched:?}");
    assert_eq!(touched[0]["port"], 2323);
    let blocked = cap.of("ip_blocked");
    assert!(
        blocked.iter().all(|b| b["scan_type"] == "decoy"),
        "{blocked:?}"
    );
    in_blacklist_but(&lab, &[attacker, attacker6], benign);
    // Banned: the decoy no longer answers it.
    assert_eq!(lab.reach(attacker, 2323), Reply::Silent);
    cap.stop();

    // A decoy port another listener holds is refused, with the fix.
    let _other = in_ns(&lab.target, || {
        std::net::TcpListener::bind("[::]:2324").unwrap()
    });
    let (_d2, cfg2) = config(&format!("{CONFIG}decoy_ports = [2324]\n"));
    let out = lab.fwctl(
        &[
            "--config",
            cfg2.to_str().unwrap(),
            "capture",
            "--state",
            state.to_str().unwrap(),
            "--iface",
            &lab.target_if,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("decoy port 2324 is in use"),
        "{err}"
    );
}

/// Anyone can send SYNs with the address of an admin logged in over SSH,
/// and nine of them once got the admin banned. With the admin's sessions to
/// port 22 (the ssh service's port: the default `[capture] admin_ports`)
/// held open from the client, SYN scans from the admin's addresses (IPv4
/// and IPv6) are reported and ban nobody; the same scan from another
/// address is banned; a completed handshake with a decoy from the admin's
/// address still bans it.
#[test]
#[ignore = "needs root: kernel test"]
fn forged_probes_never_ban_a_peer_logged_in_to_an_admin_port() {
    let lab = Lab::new();
    // The lab's sessions are seconds old: no grace period here (the one
    // that keeps a fresh connection from shielding is tested below).
    let (dir, cfg) = config(&format!(
        "{CONFIG}decoy_ports = [2323]\nadmin_min_age = \"0s\"\n"
    ));
    apply(&lab, &cfg);
    let _ssh = lab.listen(&[22]);
    let (admin, admin6) = src("benign");
    let (attacker, _) = src("attacker");
    let _s4 = lab.session(admin, 22);
    let _s6 = lab.session(admin6, 22);
    let state = dir.path().join("state.json");
    // Capture reads its admin peers before it says it started.
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    for a in [admin, admin6, attacker] {
        nmap(&lab, &a.to_string(), &["-sS", "-p", "1000-1009"]);
    }
    let ok = cap.wait_for(Duration::from_secs(10), |seen| {
        seen.iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"] == attacker.to_string())
    });
    assert!(ok, "the other scanner was not banned: {:?}", cap.seen);
    let scans = cap.of("scan_detected");
    for a in [admin, admin6] {
        let s = scans
            .iter()
            .find(|s| s["src"] == a.to_string())
            .unwrap_or_else(|| panic!("{a}'s scan was not reported: {scans:?}"));
        assert_eq!(
            s["action"],
            format!("not banned: spoofable evidence (SYN) against an admin peer ({a} holds an established connection to port 22)"),
        );
    }
    let blocked = cap.of("ip_blocked");
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    in_blacklist_but(&lab, &[attacker], admin);
    assert!(!lab
        .set_members("blacklist_v6")
        .contains_key(&admin6.to_string()));
    assert_eq!(lab.reach(admin, 22), Reply::Connected, "the admin gets in");
    // A connection to the decoy cannot be forged: the admin peer is banned.
    assert_eq!(lab.reach(admin, 2323), Reply::Connected);
    let ok = cap.wait_for(Duration::from_secs(5), |seen| {
        seen.iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"] == admin.to_string())
    });
    assert!(ok, "the decoy handshake was not banned: {:?}", cap.seen);
    assert_eq!(cap.of("ip_blocked")[1]["scan_type"], "decoy");
    in_blacklist_but(&lab, &[attacker, admin], "198.51.100.99".parse().unwrap());
    cap.stop();
}

/// Opening a connection to port 22 is within anyone's reach (sshd holds it
/// until LoginGraceTime): a scanner that does so before scanning is no
/// admin peer, and is banned as any other (default `admin_min_age`, 150 s).
#[test]
#[ignore = "needs root: kernel test"]
fn a_fresh_connection_to_the_ssh_port_shields_no_scanner() {
    let lab = Lab::new();
    let (dir, cfg) = config(CONFIG);
    apply(&lab, &cfg);
    let _ssh = lab.listen(&[22]);
    let (attacker, _) = src("attacker");
    let _held = lab.session(attacker, 22);
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    nmap(&lab, &attacker.to_string(), &["-sS", "-p", "1000-1009"]);
    let ok = cap.wait_for(Duration::from_secs(10), |seen| {
        seen.iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"] == attacker.to_string())
    });
    assert!(
        ok,
        "the scanner holding a fresh ssh connection was not banned: {:?}",
        cap.seen
    );
    cap.stop();
}

/// `[aggregate]` in capture: a scanner rotating through the addresses of
/// one /64 (a port from each) is one scanner, banned as the /64; three
/// scanners of one /24 become one /24 ban with the members taken out; three
/// of the target's own /24 stay banned one by one (a prefix over this host
/// is never banned). `why` of the /24 names its members.
#[test]
#[ignore = "needs root: kernel test"]
fn capture_bans_a_rotating_64_as_one_and_gathers_a_24_but_never_its_own() {
    let lab = Lab::new();
    let (dir, cfg) = config(
        "[[service]]\nname = \"ssh\"\nport = 22\n[aggregate]\nv6_count_prefix = 64\nv4_prefix = 24\nmin_offenders = 3\nwithin = \"1h\"\n[capture]\nprofile = \"aggressive\"\n",
    );
    apply(&lab, &cfg);
    let rotating = ["2001:db8:200::a", "2001:db8:200::b", "2001:db8:200::c"];
    let gathered = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
    let own = ["198.51.100.31", "198.51.100.32", "198.51.100.33"];
    add_sources(&lab, &rotating);
    add_sources(&lab, &gathered);
    add_sources(&lab, &own);
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state, &[]);
    // One port from each address of the /64: no address alone reaches the
    // profile's 3 ports.
    for (a, port) in rotating.iter().zip(["1001", "1002", "1003"]) {
        nmap(&lab, a, &["-sS", "-p", port]);
    }
    for a in gathered.iter().chain(&own) {
        nmap(&lab, a, &["-sS", "-p", "1000-1004"]);
    }
    let banned = |seen: &[Value], a: &str| {
        seen.iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"].as_str() == Some(a))
    };
    let ok = cap.wait_for(Duration::from_secs(30), |seen| {
        banned(seen, "2001:db8:200::/64") && gathered.iter().chain(&own).all(|a| banned(seen, a))
    });
    assert!(ok, "not every scanner was banned: {:#?}", cap.seen);
    assert!(
        !rotating.iter().any(|a| banned(&cap.seen, a)),
        "an address of the /64 was banned alone: {:#?}",
        cap.seen
    );
    assert!(lab
        .set_members("blacklist_v6")
        .contains_key("2001:db8:200::/64"));
    // Gathered after capture's once-a-second save; it says so.
    let said = cap.wait_said("into 203.0.113.0/24", Duration::from_secs(10));
    assert!(
        said.as_deref()
            .is_some_and(|l| l.contains("aggregated 3 members")),
        "{said:?}"
    );
    assert!(lab.set_members("blacklist").contains_key("203.0.113.0/24"));
    let members = lab.set_members("blacklist");
    for a in gathered {
        assert!(!members.contains_key(a), "{a} left beside its /24");
    }
    for a in own {
        assert!(members.contains_key(a), "{a}: {members:?}");
    }
    assert!(!members.contains_key("198.51.100.0/24"), "{members:?}");
    cap.stop();
    let out = lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "why",
            "203.0.113.0/24",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for a in gathered {
        assert!(text.contains(a), "{text}");
    }
}
