//! Kernel test for `[aggregate]` (root, namespaces), on both backends: a
//! /64 rotating through its addresses is banned as one /64 by `fwctl scan`;
//! three /24 offenders become one /24 with the members taken out; a /24
//! holding a trusted address does not aggregate; `fwctl why` lists an
//! aggregate ban's members; `unban` of the prefix leaves sets and state
//! clean. The logs are written by the test (documentation addresses only).

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const CONFIG: &str = r#"
[trusted]
networks = ["192.0.2.77"]
[[service]]
name = "ssh"
port = 22
[aggregate]
v6_count_prefix = 64
v4_prefix = 24
v6_prefix = 48
min_offenders = 3
within = "1h"
"#;

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fwctl::units::time::utc(now as i64).replace('Z', ".000000+00:00")
}

/// A blocked IPv4 line from `src` (an IPv6 source: [`log_line`]).
fn line4(t: &str, src: &str, port: u16) -> String {
    format!(
        "{t} host kernel: [ 100.000000] IPTABLES-BLOCKED: IN=eth0 OUT= MAC=00 SRC={src} DST=198.51.100.1 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=TCP SPT=40000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0 \n"
    )
}

struct Run<'a> {
    lab: &'a Lab,
    cfg: String,
}

impl Run<'_> {
    fn fwctl(&self, args: &[&str]) -> Output {
        let mut v = vec!["--config", self.cfg.as_str()];
        v.extend_from_slice(args);
        self.lab.fwctl(&v, &[])
    }

    fn scan(&self, log: &Path, howmany: &str) -> Output {
        self.fwctl(&blocked_scan(log, howmany, "blacklist", "1h"))
    }

    /// `list --json`: (set, address) -> seconds left, for either backend.
    fn members(&self) -> Vec<(String, String, Option<u64>)> {
        let v: Value = serde_json::from_str(&ok(&self.fwctl(&["list", "--json"]), "list")).unwrap();
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["set"].as_str().unwrap().to_string(),
                    e["address"].as_str().unwrap().to_string(),
                    e["expires_in"].as_u64(),
                )
            })
            .collect()
    }

    fn has(&self, set: &str, addr: &str) -> bool {
        self.members().iter().any(|m| m.0 == set && m.1 == addr)
    }
}

fn scenario(backend: &str) {
    let lab = Lab::new();
    let (dir, cfg) = config(&format!("{CONFIG}[firewall]\nbackend = \"{backend}\"\n"));
    let r = Run {
        lab: &lab,
        cfg: cfg.to_str().unwrap().to_string(),
    };
    ok(&r.fwctl(&["apply"]), "apply");
    let t = stamp();

    // A /64 rotating through 30 addresses, two lines each: no address is
    // over --howmany 5, the /64 is (60 lines).
    let log6 = dir.path().join("rotating.log");
    let mut text = String::new();
    for n in 1..=30u32 {
        let a: std::net::Ipv6Addr = format!("2001:db8:1:2::{n:x}").parse().unwrap();
        let full = fwctl::testing::loggen::full_v6(a);
        for port in [22, 23] {
            text.push_str(&log_line(&t, &full, port));
        }
    }
    std::fs::write(&log6, text).unwrap();
    let out = ok(&r.scan(&log6, "5"), "scan of the rotating /64");
    assert!(out.contains("2001:db8:1:2::/64"), "{out}");
    let v6: Vec<String> = r
        .members()
        .into_iter()
        .filter(|m| m.0 == "blacklist_v6")
        .map(|m| m.1)
        .collect();
    assert_eq!(v6, ["2001:db8:1:2::/64"], "{backend}");

    // Three offenders of 203.0.113.0/24, three of 192.0.2.0/24 (which
    // holds the trusted 192.0.2.77), three lines each over --howmany 2.
    let log4 = dir.path().join("v4.log");
    let mut text = String::new();
    for src in [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
    ] {
        for port in [22, 23, 24] {
            text.push_str(&line4(&t, src, port));
        }
    }
    std::fs::write(&log4, text).unwrap();
    let out = r.scan(&log4, "2");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out, "scan of the IPv4 offenders");
    assert!(
        said.contains("aggregated 3 members into 203.0.113.0/24 (blacklist)"),
        "{said}"
    );
    assert!(
        said.contains("not aggregated into 192.0.2.0/24: in trusted network 192.0.2.77/32"),
        "{said}"
    );
    let m = r.members();
    let prefix = m
        .iter()
        .find(|m| m.0 == "blacklist" && m.1 == "203.0.113.0/24")
        .unwrap_or_else(|| panic!("{backend}: no 203.0.113.0/24 in {m:?}"));
    // The longest time its members had left: the scan's hour, less the
    // seconds the test took.
    let left = prefix.2.unwrap();
    assert!((3500..=3600).contains(&left), "{left}");
    for a in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert!(
            !r.has("blacklist", a),
            "{backend}: member {a} left in {m:?}"
        );
    }
    for a in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert!(
            r.has("blacklist", a),
            "{backend}: {a} not banned alone: {m:?}"
        );
    }
    assert!(!r.has("blacklist", "192.0.2.0/24"), "{m:?}");

    // why: the aggregate ban, its origin and members, and their evidence.
    let why = ok(&r.fwctl(&["why", "203.0.113.0/24", "--json"]), "why");
    let v: Value = serde_json::from_str(&why).unwrap();
    let bans = v["bans"].as_array().unwrap();
    let agg = bans
        .iter()
        .find(|b| b["address"] == "203.0.113.0/24")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(agg["why"]["origin"], "aggregate", "{v}");
    assert_eq!(agg["running"], true);
    assert_eq!(
        agg["members"],
        serde_json::json!(["203.0.113.1", "203.0.113.2", "203.0.113.3"])
    );
    for a in ["203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32"] {
        let b = bans
            .iter()
            .find(|b| b["address"] == a)
            .unwrap_or_else(|| panic!("{a}: {v}"));
        assert_eq!(
            (b["why"]["origin"].as_str(), b["running"].as_bool()),
            (Some("scan"), Some(false))
        );
        assert_eq!(b["why"]["hits"], 3);
    }
    let human = ok(&r.fwctl(&["why", "203.0.113.0/24"]), "why");
    assert!(
        human.contains("members: 203.0.113.1, 203.0.113.2, 203.0.113.3"),
        "{human}"
    );

    // unban of the prefix: nothing of it in the sets, no running ban in
    // the state file.
    ok(&r.fwctl(&["unban", "203.0.113.0/24"]), "unban");
    let m = r.members();
    assert!(
        !m.iter().any(|m| m.1.starts_with("203.0.113.")),
        "{backend}: {m:?}"
    );
    let state: Value = serde_json::from_slice(&std::fs::read(lab.state_path()).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let running: Vec<&Value> = state["bans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["addr"].as_str().unwrap().starts_with("203.0.113."))
        .filter(|b| b["until"].as_i64().unwrap() > now)
        .collect();
    assert!(running.is_empty(), "{running:?}");
    // The rest stands.
    assert!(r.has("blacklist", "192.0.2.1"));
    assert!(r.has("blacklist_v6", "2001:db8:1:2::/64"));
}

#[test]
#[ignore = "needs root: kernel test"]
fn aggregate_iptables() {
    scenario("iptables");
}

#[test]
#[ignore = "needs root: kernel test"]
fn aggregate_nftables() {
    scenario("nftables");
}

/// `fwctl watch` gathers too, after the batch of bans that makes the third
/// offender of a /24; an IPv6 source is followed per /64.
#[test]
#[ignore = "needs root: kernel test"]
fn watch_gathers_its_bans() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.log");
    let (_d, cfg) = config(&format!(
        "{CONFIG}[metrics]\nlisten = \"\"\nwatch_listen = \"\"\n[[watch]]\nsource = \"sshd\"\nlog = \"{}\"\nhowmany = 2\nwithin = \"10m\"\nipset = \"blacklist\"\nremoveafter = \"1h\"\n",
        auth.display()
    ));
    let r = Run {
        lab: &lab,
        cfg: cfg.to_str().unwrap().to_string(),
    };
    ok(&r.fwctl(&["apply", "--force"]), "apply");
    std::fs::write(&auth, "").unwrap();
    /// Killed on drop: a failed assertion leaves no watch running.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Guard(
        lab.fwctl_cmd(&["--config", &r.cfg, "watch", "--json"], &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "watch ended");
        if line.contains("fwctl: watch follows") {
            break;
        }
    }
    let said = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut all);
        all
    });
    // Events on a channel, so each wait is bounded.
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let (tx, events) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&l).unwrap()).is_err() {
                break;
            }
        }
    });
    let now = std::process::Command::new("date")
        .args(["+%b %e %H:%M:%S"])
        .output()
        .unwrap();
    let t = String::from_utf8(now.stdout).unwrap().trim().to_string();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&auth)
        .unwrap();
    for a in [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "2001:db8:1:2::a",
        "2001:db8:1:2::b",
        "2001:db8:1:2::c",
    ] {
        for i in 0..3 {
            writeln!(
                f,
                "{t} web1 sshd[12]: Failed password for root from {a} port {} ssh2",
                40000 + i
            )
            .unwrap();
        }
    }
    drop(f);
    // Each offender's ban event, the /64 once.
    let want = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "2001:db8:1:2::/64",
    ];
    let mut bans = Vec::new();
    let mut seen = Vec::new();
    while bans.len() < want.len() {
        let v = events
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}: bans {bans:?}, events {seen:#?}"));
        if v["event"] == "watch_ban" {
            bans.push(v["address"].as_str().unwrap().to_string());
        }
        seen.push(v);
    }
    bans.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(bans, want);
    // SIGTERM is seen between batches: the gathering after the last one
    // is done when watch exits.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    let said = said.join().unwrap();
    assert!(
        said.contains("aggregated 3 members into 203.0.113.0/24 (blacklist)"),
        "{said}"
    );
    assert!(r.has("blacklist", "203.0.113.0/24"));
    for a in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert!(!r.has("blacklist", a), "{a}");
    }
    assert!(r.has("blacklist_v6", "2001:db8:1:2::/64"));
    let why: Value =
        serde_json::from_str(&ok(&r.fwctl(&["why", "203.0.113.0/24", "--json"]), "why")).unwrap();
    let agg = why["bans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == "203.0.113.0/24")
        .unwrap_or_else(|| panic!("{why}"));
    assert_eq!(agg["why"]["origin"], "aggregate");
    assert_eq!(agg["members"].as_array().unwrap().len(), 3);
}
