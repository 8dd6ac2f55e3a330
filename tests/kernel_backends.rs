//! One scenario table, two backends (root, namespaces): apply, ban/unban/list,
//! scan, capture, feeds, status and repair, confirm-rollback, boot restore and
//! fleet sync, each written once as `fn NAME(b: Backend)` and run for
//! `backend = "iptables"` and `backend = "nftables"` in its own namespaces.
//! Sets are read back with the real tools (`ipset save`, `nft -j list set`),
//! and every scenario sends real packets.

mod common;
use common::fleet::{FleetLab, ATTACKER};
use common::receiver::{Answer, Receiver, Request};
use common::service::Service;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Iptables,
    Nftables,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

/// Two ignored tests per scenario, one per backend.
macro_rules! both {
    ($($scenario:ident => $ipt:ident, $nft:ident;)*) => {$(
        #[test]
        #[ignore = "needs root: kernel test"]
        fn $ipt() {
            $scenario(Backend::Iptables)
        }
        #[test]
        #[ignore = "needs root: kernel test"]
        fn $nft() {
            $scenario(Backend::Nftables)
        }
    )*};
}

both! {
    apply => apply_iptables, apply_nftables;
    ban_unban_list => ban_unban_list_iptables, ban_unban_list_nftables;
    scan => scan_iptables, scan_nftables;
    capture => capture_iptables, capture_nftables;
    feeds => feeds_iptables, feeds_nftables;
    status => status_iptables, status_nftables;
    confirm_rollback => confirm_rollback_iptables, confirm_rollback_nftables;
    boot_restore => boot_restore_iptables, boot_restore_nftables;
    sync => sync_iptables, sync_nftables;
    remove => remove_iptables, remove_nftables;
    scan_kernel_log => scan_kernel_log_iptables, scan_kernel_log_nftables;
}

/// The config every scenario starts from (`ssh`: whether port 22 is a service).
fn base(ssh: bool) -> String {
    let ssh = if ssh {
        "[[service]]\nname = \"ssh\"\nport = 22\n"
    } else {
        ""
    };
    format!(
        r#"
[trusted]
networks = ["198.51.100.12", "2001:db8:100::12"]
[blacklist]
entries = ["198.51.100.11", "2001:db8:100::11"]
[throttle.hard]
rate = "1/minute"
burst = 3
{ssh}
[[service]]
name = "web"
port = 80
# The lab's IPv6 sources share the target's /64: count each address, as
# these scenarios expect ([aggregate] on both backends: kernel_aggregate.rs).
[aggregate]
v6_count_prefix = 128
min_offenders = 0
"#
    )
}

/// `toml` with `[firewall] backend = ...` appended, written to a temp dir.
fn cfg(b: Backend, toml: &str) -> (tempfile::TempDir, PathBuf) {
    config(&format!("{toml}\n{}", firewall(b)))
}

fn firewall(b: Backend) -> String {
    format!("[firewall]\nbackend = \"{}\"\n", b.name())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(lab: &Lab, cfg: &Path, args: &[&str]) -> Output {
    let mut v = vec!["--config", cfg.to_str().unwrap()];
    v.extend_from_slice(args);
    lab.fwctl(&v, &[])
}

/// Members of `set` in `lab`'s target: member -> seconds left (Some(0):
/// permanent in a set with timeouts; None: the set has no timeouts).
fn members(lab: &Lab, b: Backend, set: &str) -> HashMap<String, Option<u32>> {
    members_in(&lab.target, b, set)
}

fn members_in(ns: &str, b: Backend, set: &str) -> HashMap<String, Option<u32>> {
    let read = |tool: &[&str]| {
        std::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .args(tool)
            .output()
            .unwrap()
    };
    let tool: &[&str] = match b {
        Backend::Iptables => &["ipset", "save", set],
        Backend::Nftables => &["nft", "-j", "list", "set", "inet", "fwctl", set],
    };
    let out = read(tool);
    assert!(out.status.success(), "{tool:?}: {}", text(&out));
    let got = String::from_utf8_lossy(&out.stdout);
    match b {
        Backend::Iptables => ipset_members(&got),
        Backend::Nftables => {
            // A role's networks are in the interval set beside its set of
            // addresses (none for a role of addresses only).
            let mut all = nft_members(&got);
            let nets = format!("{set}/net");
            let out = read(&["nft", "-j", "list", "set", "inet", "fwctl", &nets]);
            if out.status.success() {
                all.extend(nft_members(&String::from_utf8_lossy(&out.stdout)));
            }
            all
        }
    }
}

fn ipset_members(save: &str) -> HashMap<String, Option<u32>> {
    save.lines()
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

/// `nft -j list set` read as `ipset save` reads: a host as its address, a
/// network as addr/len, the time left from `expires`.
fn nft_members(json: &str) -> HashMap<String, Option<u32>> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let set = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("set"))
        .unwrap_or_else(|| panic!("no set in {json}"));
    let timeouts = set["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "timeout"));
    let key = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            _ => format!(
                "{}/{}",
                v["prefix"]["addr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{v}")),
                v["prefix"]["len"]
            ),
        }
    };
    set["elem"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| match e.get("elem") {
            Some(inner) => (
                key(&inner["val"]),
                Some(inner["expires"].as_u64().unwrap_or(0) as u32),
            ),
            None => (key(e), timeouts.then_some(0)),
        })
        .collect()
}

/// The seconds `addr` has left in `set`, if it is there.
fn left(lab: &Lab, b: Backend, set: &str, addr: &str) -> Option<u32> {
    members(lab, b, set).get(addr).copied().flatten()
}

/// A reboot: the kernel forgets every rule and set of the backend.
fn wipe(lab: &Lab, b: Backend) {
    match b {
        Backend::Iptables => {
            for tool in ["iptables", "ip6tables"] {
                for args in [
                    &["-F"][..],
                    &["-X"],
                    &["-P", "INPUT", "ACCEPT"],
                    &["-t", "raw", "-F"],
                    &["-t", "raw", "-X"],
                ] {
                    let mut v = vec![tool];
                    v.extend_from_slice(args);
                    lab.exec_ok(&lab.target, &v);
                }
            }
            lab.exec_ok(&lab.target, &["ipset", "destroy"]);
            assert!(lab.set_names().is_empty());
        }
        Backend::Nftables => {
            lab.exec_ok(&lab.target, &["nft", "flush", "ruleset"]);
            let left = lab.exec_ok(&lab.target, &["nft", "list", "ruleset"]);
            assert!(left.trim().is_empty(), "{left}");
        }
    }
}

/// Another tool's rule on the input hook, which fwctl must leave alone.
fn add_foreign_rule(lab: &Lab, b: Backend) {
    let cmds: &[&[&str]] = match b {
        Backend::Iptables => &[&[
            "iptables",
            "-A",
            "INPUT",
            "-s",
            "192.0.2.99",
            "-j",
            "ACCEPT",
        ]],
        Backend::Nftables => &[
            &["nft", "add", "table", "inet", "other"],
            &[
                "nft",
                "add",
                "chain",
                "inet",
                "other",
                "input",
                "{ type filter hook input priority 10 ; policy accept ; }",
            ],
            &[
                "nft",
                "add",
                "rule",
                "inet",
                "other",
                "input",
                "ip",
                "saddr",
                "192.0.2.99",
                "accept",
            ],
        ],
    };
    for c in cmds {
        lab.exec_ok(&lab.target, c);
    }
}

/// The rules of the target's backend, without counters and set elements.
fn snapshot(lab: &Lab, b: Backend) -> String {
    match b {
        Backend::Iptables => lab.rules(),
        Backend::Nftables => lab.exec_ok(&lab.target, &["nft", "-s", "-t", "list", "ruleset"]),
    }
}

/// Delete one of fwctl's filter rules by hand (the first of FWCTL-INPUT).
fn delete_a_rule(lab: &Lab, b: Backend) {
    match b {
        Backend::Iptables => {
            lab.exec_ok(&lab.target, &["iptables", "-D", "FWCTL-INPUT", "1"]);
        }
        Backend::Nftables => {
            lab.nft_delete_rule("FWCTL-INPUT", "");
        }
    }
}

fn apply(b: Backend) {
    let lab = Lab::new();
    let (_d, c) = cfg(b, &base(true));
    let _l = lab.listen(&[22, 80, 8080]);
    assert_eq!(lab.reach(src("benign").0, 8080), Reply::Connected);
    add_foreign_rule(&lab, b);
    ok(&run(&lab, &c, &["apply"]), "apply");
    for fam in [0, 1] {
        let pick = |role: &str| if fam == 0 { src(role).0 } else { src(role).1 };
        for port in [22, 80] {
            assert_eq!(lab.reach(pick("benign"), port), Reply::Connected, "{port}");
        }
        assert_eq!(lab.reach(pick("benign"), 8080), Reply::Silent, "{fam}");
        assert_eq!(lab.reach(pick("blacklisted"), 80), Reply::Silent, "{fam}");
        assert_eq!(lab.reach(pick("whitelisted"), 8080), Reply::Connected);
    }
    assert_eq!(
        members(&lab, b, "blacklist").get("198.51.100.11"),
        Some(&Some(0)),
        "the config's member, permanent"
    );
    // A re-apply keeps a ban with the time it has left, changes no rule
    // and leaves another tool's rules alone.
    let (a4, _) = src("attacker");
    ok(
        &run(&lab, &c, &["ban", &a4.to_string(), "--for", "10m"]),
        "ban",
    );
    let first = snapshot(&lab, b);
    assert!(first.contains("192.0.2.99"), "{first}");
    ok(&run(&lab, &c, &["apply"]), "re-apply");
    assert_eq!(snapshot(&lab, b), first, "a second apply changed the rules");
    let out = run(&lab, &c, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = left(&lab, b, "blacklist", &a4.to_string()).expect("ban kept");
    assert!((500..=600).contains(&t), "{t}");
    assert_eq!(lab.reach(a4, 80), Reply::Silent);
    assert_eq!(lab.reach(src("benign").0, 80), Reply::Connected);
}

fn ban_unban_list(b: Backend) {
    let lab = Lab::new();
    let (_d, c) = cfg(b, &base(true));
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[22]);
    let (a4, a6) = src("attacker");
    let (b4, _) = src("benign");
    assert_eq!(lab.reach(a4, 22), Reply::Connected);
    assert_eq!(lab.reach(a6, 22), Reply::Connected);

    let out = ok(&run(&lab, &c, &["ban", &a4.to_string()]), "ban v4");
    assert!(
        out.contains("banned 198.51.100.14 in blacklist for 1d"),
        "{out}"
    );
    ok(
        &run(&lab, &c, &["ban", &a6.to_string(), "--for", "2h"]),
        "ban v6",
    );
    assert_eq!(lab.reach(a4, 22), Reply::Silent, "dropped at once");
    assert_eq!(lab.reach(a6, 22), Reply::Silent);
    assert_eq!(lab.reach(b4, 22), Reply::Connected);
    let t = left(&lab, b, "blacklist", "198.51.100.14").unwrap();
    assert!((86_300..=86_400).contains(&t), "{t}");
    let t = left(&lab, b, "blacklist_v6", "2001:db8:100::14").unwrap();
    assert!((7_100..=7_200).contains(&t), "{t}");
    // A ban again sets the new time; a network goes in as a network.
    ok(
        &run(&lab, &c, &["ban", &a4.to_string(), "--for", "10m"]),
        "re-ban",
    );
    assert!(left(&lab, b, "blacklist", "198.51.100.14").unwrap() <= 600);
    // An address first, then the network around it (nft's interval sets
    // refuse overlapping elements; ipset's hash:net holds both).
    ok(
        &run(&lab, &c, &["ban", "2001:db8:bad::5", "--for", "1h"]),
        "ban in net",
    );
    ok(&run(&lab, &c, &["ban", "2001:db8:bad::/64"]), "ban net");
    assert!(left(&lab, b, "blacklist_v6", "2001:db8:bad::/64").is_some());
    ok(
        &run(&lab, &c, &["ban", "2001:db8:bad::6", "--for", "1h"]),
        "ban inside a banned net",
    );
    // Bans a banned network covers are in force: none is missing.
    let v: Value = serde_json::from_slice(&run(&lab, &c, &["status", "--json"]).stdout).unwrap();
    assert_eq!(v["state"]["missing_from_kernel"], 0, "{v}");
    // The longest ban fwctl allows goes into either kernel whole.
    let max = fwctl::units::duration::MAX_TIMEOUT as u32;
    ok(
        &run(
            &lab,
            &c,
            &["ban", "203.0.113.77", "--for", &format!("{max}s")],
        ),
        "longest ban",
    );
    let t = left(&lab, b, "blacklist", "203.0.113.77").unwrap();
    assert!(t + 10 >= max && t <= max, "{t} of {max}");
    assert!(left(&lab, b, "blacklist_v6", "2001:db8:bad::/64").is_some());
    // Refusals change nothing.
    let keys = |set: &str| {
        let mut k: Vec<String> = members(&lab, b, set).into_keys().collect();
        k.sort();
        k
    };
    let before = (keys("blacklist"), keys("blacklist_v6"));
    let (w4, _) = src("whitelisted");
    for (args, want) in [
        (vec!["ban", &w4.to_string() as &str], "whitelisted"),
        (
            vec!["ban", "203.0.113.9", "--set", "whitelist"],
            "refuses bans",
        ),
        (vec!["ban", "198.51.100.1"], "own address"),
        (vec!["ban", "203.0.113.9", "--set", "nosuch"], "unknown set"),
        (
            vec!["ban", "203.0.113.0/24", "--set", "throttle-hard"],
            "hash:ip",
        ),
    ] {
        let out = run(&lab, &c, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
    let after = (keys("blacklist"), keys("blacklist_v6"));
    assert_eq!(before, after, "refused bans change nothing");

    let v: Value = serde_json::from_str(&ok(&run(&lab, &c, &["list", "--json"]), "list")).unwrap();
    let entries = v["entries"].as_array().unwrap();
    let find = |a: &str| {
        entries
            .iter()
            .find(|e| e["address"] == a)
            .unwrap_or_else(|| panic!("{a} not in {v}"))
    };
    let e = find("198.51.100.14");
    assert_eq!(e["set"], "blacklist");
    let t = e["expires_in"].as_u64().unwrap();
    assert!((500..=600).contains(&t), "{e}");
    assert_eq!(find("2001:db8:bad::/64")["set"], "blacklist_v6");
    assert!(
        find("198.51.100.12")["expires_in"].is_null(),
        "trusted: permanent"
    );
    let e = find("2001:db8:100::14");
    assert_eq!(e["set"], "blacklist_v6");
    assert!(e["expires_in"].as_u64().unwrap() <= 7_200, "{e}");

    let out = ok(&run(&lab, &c, &["unban", &a4.to_string()]), "unban");
    assert!(
        out.contains("unbanned 198.51.100.14 from blacklist"),
        "{out}"
    );
    ok(&run(&lab, &c, &["unban", &a6.to_string()]), "unban v6");
    assert!(!members(&lab, b, "blacklist").contains_key("198.51.100.14"));
    assert!(!members(&lab, b, "blacklist_v6").contains_key("2001:db8:100::14"));
    assert_eq!(lab.reach(a4, 22), Reply::Connected);
    assert_eq!(lab.reach(a6, 22), Reply::Connected);
    let out = run(&lab, &c, &["unban", &a4.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not banned"), "{}", text(&out));
    let out = run(&lab, &c, &["unban", "2001:db8:bad::7"]);
    assert!(
        text(&out).contains("inside the banned 2001:db8:bad::/64"),
        "{}",
        text(&out)
    );
}

fn scan(b: Backend) {
    let lab = Lab::new();
    let (d, c) = cfg(b, &base(true));
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[80]);
    let log = d.path().join("iptables.log");
    let offenders = offenders_log(&log, 1..4);
    // The lab's attacker offends three times too, once a below-threshold source.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = fwctl::units::time::utc(now as i64).replace('Z', ".000000+00:00");
    let (_, a6) = src("attacker");
    let full = |a: &str| fwctl::testing::loggen::full_v6(a.parse().unwrap());
    let mut more = String::new();
    for port in [22, 23, 24] {
        more.push_str(&log_line(&t, &full(&a6.to_string()), port));
    }
    more.push_str(&log_line(&t, &full("2001:db8:5::99"), 22));
    let mut text_now = std::fs::read_to_string(&log).unwrap();
    text_now.push_str(&more);
    std::fs::write(&log, text_now).unwrap();

    let out = run(&lab, &c, &blocked_scan(&log, "2", "throttle-hard", "2h"));
    ok(&out, "scan");
    let m = members(&lab, b, "throttle-hard_v6");
    for a in offenders.iter().chain([&a6.to_string()]) {
        let t = m.get(a).copied().flatten();
        assert!(
            t.is_some_and(|t| t > 7_000 && t <= 7_200),
            "{a}: {t:?} in {m:?}"
        );
    }
    assert!(
        !m.contains_key("2001:db8:5::99"),
        "below the threshold: {m:?}"
    );
    // The hard throttle holds the attacker to its burst of 3.
    let p = lab.probe(a6, 80, 20, Duration::from_millis(800));
    assert!((1..=3).contains(&p.connected), "throttled: {p:?}");
    let p = lab.probe(src("benign").1, 80, 20, Duration::from_millis(800));
    assert_eq!(p.connected, 20, "not throttled: {p:?}");
}

/// `fwctl capture --json` in the target namespace. Its first stderr line
/// comes once the socket is open and filtered.
struct Capture;

impl Capture {
    fn start(lab: &Lab, cfg: &Path) -> Service {
        let args = [
            "--config",
            cfg.to_str().unwrap(),
            "capture",
            "--json",
            "--iface",
            &lab.target_if,
        ];
        Service::spawn(lab.fwctl_cmd(&args, &[]), "fwctl: capture on", "capture")
    }
}

fn capture(b: Backend) {
    let lab = Lab::new();
    let (_d, c) = cfg(
        b,
        &format!("{}[capture]\nprofile = \"aggressive\"\n", base(true)),
    );
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[22, 80]);
    let (a4, a6) = src("attacker");
    let (b4, b6) = src("benign");
    assert_eq!(lab.reach(a4, 80), Reply::Connected);
    let mut cap = Capture::start(&lab, &c);
    for src in [b4, b6] {
        let p = lab.probe(src, 80, 10, Duration::from_secs(3));
        assert_eq!(p.connected, 10, "a benign client: {p:?}");
    }
    for a in [a4, a6] {
        nmap_syn(&lab, a);
    }
    let (s4, s6) = (a4.to_string(), a6.to_string());
    let banned = cap.wait_for(Duration::from_secs(20), |seen| {
        [&s4, &s6].iter().all(|a| {
            seen.iter()
                .any(|e| e["event"] == "ip_blocked" && e["src"] == a.as_str())
        })
    });
    assert!(banned, "the scanners were not banned: {:#?}", cap.seen);
    for (set, a) in [("blacklist", &s4), ("blacklist_v6", &s6)] {
        let t = left(&lab, b, set, a);
        assert!(t.is_some_and(|t| t > 250 && t <= 300), "{a}: {t:?}");
    }
    assert_eq!(lab.reach(a4, 80), Reply::Silent, "dropped");
    assert_eq!(lab.reach(a6, 80), Reply::Silent, "dropped");
    assert_eq!(lab.reach(b4, 80), Reply::Connected);
    assert_eq!(lab.reach(b6, 80), Reply::Connected);
    for src in [b4.to_string(), b6.to_string()] {
        assert!(!cap.seen.iter().any(|e| e["src"] == src.as_str()), "{src}");
    }
    // A re-apply while capture runs (the table or sets replaced under it):
    // the bans stay, and the next scanner is banned as the first was.
    ok(&run(&lab, &c, &["apply"]), "re-apply");
    assert!(left(&lab, b, "blacklist", &s4).is_some_and(|t| t > 200));
    let (t4, _) = src("throttled");
    let s = t4.to_string();
    nmap_syn(&lab, t4);
    let banned = cap.wait_for(Duration::from_secs(20), |seen| {
        seen.iter()
            .any(|e| e["event"] == "ip_blocked" && e["src"] == s.as_str())
    });
    assert!(banned, "not banned after the re-apply: {:#?}", cap.seen);
    assert!(left(&lab, b, "blacklist", &s).is_some_and(|t| t > 250));
    assert_eq!(lab.reach(t4, 80), Reply::Silent, "dropped");
}

/// An nmap SYN scan of five closed ports from `a` (one of the client's).
fn nmap_syn(lab: &Lab, a: std::net::IpAddr) {
    let s = a.to_string();
    let mut args = vec![
        "nmap",
        "-n",
        "-Pn",
        "--max-retries",
        "0",
        "--host-timeout",
        "20s",
        "-e",
        &lab.client_if,
        "-S",
        &s,
        "-sS",
        "-p",
        "1000-1004",
    ];
    if a.is_ipv6() {
        args.extend(["-6", TARGET6]);
    } else {
        args.push(TARGET4);
    }
    lab.exec_ok(&lab.client, &args);
}

fn feeds(b: Backend) {
    let lab = Lab::new();
    let (t4, t6) = src("throttled");
    let (a4, _) = src("attacker");
    let served = Arc::new(Mutex::new(format!(
        "; test DROP list\n{t4}/32 ; SBL1\n203.0.113.0/28\n203.0.113.5\n{t6}\n"
    )));
    let rx = {
        let served = Arc::clone(&served);
        Receiver::start_fn(&lab.target, move |_: &Request| -> Answer {
            let body = served.lock().unwrap().clone();
            (200, vec![], body.into_bytes())
        })
    };
    let (_d, c) = cfg(
        b,
        &format!(
            "{}[[feed]]\nname = \"drop\"\nurl = \"http://127.0.0.1:{}/drop.txt\"\nevery = \"1h\"\nmax_entries = 100\n",
            base(true),
            rx.port
        ),
    );
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[80]);
    let (b4, _) = src("benign");
    ok(&run(&lab, &c, &["ban", "192.0.2.7", "--for", "1h"]), "ban");
    assert_eq!(lab.reach(t4, 80), Reply::Connected);
    let said = ok(&run(&lab, &c, &["feeds", "update"]), "feeds update");
    assert!(
        said.contains("feed drop: 4 entries (was 0): 4 added"),
        "{said}"
    );
    let m = members(&lab, b, "feed-drop");
    assert!(
        m.contains_key(&t4.to_string()) && m.contains_key("203.0.113.0/28"),
        "{m:?}"
    );
    assert!(members(&lab, b, "feed-drop_v6").contains_key(&t6.to_string()));
    assert_eq!(lab.reach(t4, 80), Reply::Silent, "the feed's source");
    assert_eq!(lab.reach(t6, 80), Reply::Silent, "the feed's source");
    assert_eq!(lab.reach(b4, 80), Reply::Connected);

    // A new list: one address out, another in; the ban is untouched.
    *served.lock().unwrap() = format!("{a4}\n203.0.113.0/28\n203.0.113.5\n{t6}\n");
    let said = ok(&run(&lab, &c, &["feeds", "update", "--force"]), "again");
    assert!(said.contains("1 added, 1 removed"), "{said}");
    assert_eq!(lab.reach(t4, 80), Reply::Connected, "out of the feed");
    assert_eq!(lab.reach(a4, 80), Reply::Silent, "into the feed");
    assert!(left(&lab, b, "blacklist", "192.0.2.7").is_some_and(|t| t > 3_500));
    assert_eq!(rx.requests().len(), 2);

    // A reboot: the apply brings the feed's last copy back.
    wipe(&lab, b);
    ok(&run(&lab, &c, &["apply"]), "boot apply");
    assert!(members(&lab, b, "feed-drop").contains_key(&a4.to_string()));
    assert_eq!(lab.reach(a4, 80), Reply::Silent);
    assert_eq!(lab.reach(t6, 80), Reply::Silent);
    assert_eq!(lab.reach(t4, 80), Reply::Connected);
}

fn status(b: Backend) {
    let lab = Lab::new();
    let (_d, c) = cfg(b, &base(true));
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[22]);
    let (a4, _) = src("attacker");
    ok(
        &run(&lab, &c, &["ban", &a4.to_string(), "--for", "1h"]),
        "ban",
    );
    // Packets the ban dropped (counted by nft's raw chain) are no drift.
    assert_eq!(lab.reach(a4, 22), Reply::Silent);
    let out = run(&lab, &c, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).starts_with("fwctl status: OK"), "{}", text(&out));
    let v: Value = serde_json::from_slice(&run(&lab, &c, &["status", "--json"]).stdout).unwrap();
    let sets = v["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 8, "{v}");
    let count = |name: &str| {
        let s = sets.iter().find(|s| s["name"] == name).unwrap();
        (s["entries"].as_u64(), s["bans"].as_u64())
    };
    assert_eq!(count("blacklist"), (Some(2), Some(1)), "{v}");
    assert_eq!(count("whitelist_v6"), (Some(1), Some(0)), "{v}");
    assert_eq!(v["state"]["active_bans"], 1, "{v}");

    delete_a_rule(&lab, b);
    let out = run(&lab, &c, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("DRIFT"), "{}", text(&out));
    let v: Value = serde_json::from_slice(&run(&lab, &c, &["status", "--json"]).stdout).unwrap();
    assert_eq!(v["healthy"], false, "{v}");
    assert!(
        v["problems"].to_string().contains("fwctl's rules changed"),
        "{v}"
    );

    assert!(
        v["rules"][0]["missing"].to_string().contains("FWCTL-INPUT"),
        "{v}"
    );
    assert_eq!(
        v["rules"][1]["missing"],
        serde_json::json!([]),
        "IPv6 as applied"
    );
    // The ban's set flushed by hand: the state file's ban is missing.
    let flush: &[&str] = match b {
        Backend::Iptables => &["ipset", "flush", "blacklist"],
        Backend::Nftables => &["nft", "flush", "set", "inet", "fwctl", "blacklist"],
    };
    lab.exec_ok(&lab.target, flush);
    assert_eq!(
        lab.reach(a4, 22),
        Reply::Connected,
        "the flush lifted the ban"
    );
    let v: Value = serde_json::from_slice(&run(&lab, &c, &["status", "--json"]).stdout).unwrap();
    assert_eq!(v["state"]["missing_from_kernel"], 1, "{v}");

    let out = run(&lab, &c, &["status", "--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&lab, &c, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = left(&lab, b, "blacklist", &a4.to_string());
    assert!(t.is_some_and(|t| t > 3_500 && t <= 3_600), "{t:?}");
    assert_eq!(
        members(&lab, b, "blacklist").get("198.51.100.11"),
        Some(&Some(0)),
        "the config's member is back"
    );
    assert_eq!(lab.reach(a4, 22), Reply::Silent);
    assert_eq!(lab.reach(src("benign").0, 22), Reply::Connected);
}

fn confirm_rollback(b: Backend) {
    let lab = Lab::new();
    let (_d, a) = cfg(b, &base(true));
    // B: no ssh service, and another static blacklist.
    let (_d2, bcfg) = cfg(b, &base(false).replace("198.51.100.11\"", "203.0.113.66\""));
    ok(&run(&lab, &a, &["apply"]), "apply A");
    let _l = lab.listen(&[22, 80]);
    let (b4, b6) = src("benign");
    let (a4, _) = src("attacker");
    assert_eq!(lab.reach(b4, 22), Reply::Connected);

    let (mut child, lines) = apply_waiting(&lab, &bcfg, "4s");
    // B is in: port 22 is no service. A ban is made during the window.
    assert_eq!(lab.reach(b4, 22), Reply::Silent, "B's rules");
    assert!(members(&lab, b, "blacklist").contains_key("203.0.113.66"));
    ok(
        &run(&lab, &bcfg, &["ban", &a4.to_string(), "--for", "1h"]),
        "ban",
    );
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(!status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("no confirmation within 4s")),
        "{rest:?}"
    );
    // A is back, and the ban is kept.
    assert_eq!(lab.reach(b4, 22), Reply::Connected, "A's rules are back");
    assert_eq!(lab.reach(b6, 22), Reply::Connected);
    let t = left(&lab, b, "blacklist", &a4.to_string());
    assert!(t.is_some_and(|t| t > 3_500), "{t:?}");
    assert_eq!(lab.reach(a4, 22), Reply::Silent);
    let m = members(&lab, b, "blacklist");
    assert!(
        m.get("198.51.100.11") == Some(&Some(0)) && !m.contains_key("203.0.113.66"),
        "A's static members: {m:?}"
    );
    assert_eq!(lab.reach(src("blacklisted").0, 80), Reply::Silent);
    let out = run(&lab, &a, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Confirmed from another process: B stays.
    let (mut child, _lines) = apply_waiting(&lab, &bcfg, "60s");
    ok(&lab.fwctl(&["confirm"], &[]), "confirm");
    assert!(child.wait().unwrap().success());
    assert_eq!(lab.reach(b4, 22), Reply::Silent, "B stays");
    assert_eq!(lab.reach(b4, 80), Reply::Connected);
    assert!(left(&lab, b, "blacklist", &a4.to_string()).is_some_and(|t| t > 3_500));
}

/// `apply --confirm WINDOW` in the background, once it waits for the
/// confirmation (it said so on stderr); the rest of its stderr follows.
#[allow(clippy::zombie_processes)]
fn apply_waiting(
    lab: &Lab,
    cfg: &Path,
    window: &str,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStderr>>) {
    let mut child = lab
        .fwctl_cmd(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "apply",
                "--confirm",
                window,
            ],
            &[],
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("apply ended before waiting").unwrap();
        if line.contains("waiting") {
            return (child, lines);
        }
    }
}

fn boot_restore(b: Backend) {
    let lab = Lab::new();
    let (_d, c) = cfg(b, &base(true));
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[22]);
    let (a4, a6) = src("attacker");
    ok(
        &run(&lab, &c, &["ban", &a4.to_string(), "--for", "1h"]),
        "ban",
    );
    ok(
        &run(&lab, &c, &["ban", &a6.to_string(), "--for", "30m"]),
        "ban",
    );
    let (t4, _) = src("throttled");
    ok(
        &run(&lab, &c, &["ban", &t4.to_string(), "--for", "5m"]),
        "ban",
    );
    // A network and a ban inside it (nft's interval sets hold no element
    // inside another): the boot apply restores them all the same.
    ok(
        &run(&lab, &c, &["ban", "2001:db8:bad::5", "--for", "2h"]),
        "ban",
    );
    ok(
        &run(&lab, &c, &["ban", "2001:db8:bad::/64", "--for", "1h"]),
        "ban net",
    );
    // Shut down, and come back 10 minutes later: the 5-minute ban has ended.
    let mut st: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.state_path()).unwrap()).unwrap();
    for r in st["bans"].as_array_mut().unwrap() {
        for k in ["since", "until", "updated"] {
            r[k] = (r[k].as_i64().unwrap() - 600).into();
        }
    }
    std::fs::write(lab.state_path(), st.to_string()).unwrap();

    wipe(&lab, b);
    assert_eq!(
        lab.reach(a4, 22),
        Reply::Connected,
        "the reboot forgot the ban"
    );
    let out = run(&lab, &c, &["apply"]);
    ok(&out, "boot apply");
    assert!(
        text(&out).contains("4 restored from the state file"),
        "{}",
        text(&out)
    );
    let t = left(&lab, b, "blacklist", &a4.to_string()).expect("restored");
    assert!((2_900..=3_000).contains(&t), "1h ban, 10 min later: {t}");
    let t = left(&lab, b, "blacklist_v6", &a6.to_string()).expect("restored");
    assert!((1_100..=1_200).contains(&t), "30m ban, 10 min later: {t}");
    assert!(
        !members(&lab, b, "blacklist").contains_key(&t4.to_string()),
        "expired: not restored"
    );
    assert_eq!(lab.reach(t4, 22), Reply::Connected);
    assert!(left(&lab, b, "blacklist_v6", "2001:db8:bad::/64").is_some());
    let out = run(&lab, &c, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lab.reach(a4, 22), Reply::Silent);
    assert_eq!(lab.reach(a6, 22), Reply::Silent);
    assert_eq!(lab.reach(src("benign").0, 22), Reply::Connected);
}

fn sync(b: Backend) {
    let mut lab = FleetLab::new(|_| firewall(b));
    lab.start_sync(0);
    lab.start_sync(1);
    assert_eq!(lab.connect_from(ATTACKER, 1).connected, 1);
    let banned = lab.fwctl(0, &["ban", ATTACKER, "--for", "1h"]);
    ok(&banned, "ban on A");
    let ns = lab.hosts[1].ns.clone();
    // A deadline, not a latency target: on a loaded CI machine the ban's
    // own connection can time out (1 s), and its entry then waits in A's
    // outbox for A's sync (a 10 s check).
    let end = Instant::now() + Duration::from_secs(20);
    let t = loop {
        if let Some(t) = members_in(&ns, b, "blacklist").get(ATTACKER) {
            break *t;
        }
        assert!(
            Instant::now() < end,
            "the ban did not reach B; the ban said: {}",
            text(&banned)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(t.is_some_and(|t| (3_575..=3_600).contains(&t)), "{t:?}");
    let p = lab.connect_from(ATTACKER, 1);
    assert_eq!((p.connected, p.refused, p.silent), (0, 0, 1), "B drops it");
    ok(&lab.fwctl(0, &["unban", ATTACKER]), "unban on A");
    let end = Instant::now() + Duration::from_secs(3);
    while members_in(&ns, b, "blacklist").contains_key(ATTACKER) {
        assert!(Instant::now() < end, "the unban did not reach B");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lab.connect_from(ATTACKER, 1).connected, 1);

    // B bans the attacker itself; then A's ban of a network around it
    // reaches B all the same (nft: it takes the address's place).
    ok(&lab.fwctl(1, &["ban", ATTACKER, "--for", "1h"]), "ban on B");
    ok(
        &lab.fwctl(0, &["ban", "203.0.113.48/29", "--for", "1h"]),
        "ban net on A",
    );
    let end = Instant::now() + Duration::from_secs(3);
    while !members_in(&ns, b, "blacklist").contains_key("203.0.113.48/29") {
        assert!(
            Instant::now() < end,
            "the network did not reach B: {:?}",
            lab.log(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = lab.connect_from(ATTACKER, 1);
    assert_eq!((p.connected, p.refused, p.silent), (0, 0, 1), "B drops it");
}

/// Which of fwctl's rules and sets are in the kernel: (rules, sets).
fn ours(lab: &Lab, b: Backend) -> (bool, usize) {
    match b {
        Backend::Iptables => (lab.rules().contains("FWCTL"), lab.set_names().len()),
        Backend::Nftables => {
            let t = lab.exec_ok(&lab.target, &["nft", "list", "ruleset"]);
            let sets = ["whitelist", "blacklist", "throttle-hard", "throttle-soft"]
                .iter()
                .flat_map(|s| [format!("\tset {s} {{"), format!("\tset {s}_v6 {{")])
                .filter(|s| t.contains(s.as_str()))
                .count();
            (t.contains("chain FWCTL"), sets)
        }
    }
}

fn remove(b: Backend) {
    let lab = Lab::new();
    let (_d, c) = cfg(b, &base(true));
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[8080]);
    let (b4, b6) = src("benign");
    assert_eq!(lab.reach(b4, 8080), Reply::Silent);
    assert_eq!(ours(&lab, b), (true, 8));
    add_foreign_rule(&lab, b);
    ok(&run(&lab, &c, &["remove"]), "remove");
    assert_eq!(ours(&lab, b), (false, 8), "sets kept without --sets");
    assert!(
        snapshot(&lab, b).contains("192.0.2.99"),
        "another tool's rule stays"
    );
    assert_eq!(lab.reach(b4, 8080), Reply::Connected, "nothing drops now");
    assert_eq!(lab.reach(b6, 8080), Reply::Connected);
    // Removed by fwctl: not installed, and no drift (the record went too).
    let out = run(&lab, &c, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["installed"] == false),
        "{v}"
    );
    assert_eq!(v["drift"], serde_json::json!([]), "{v}");
    ok(&run(&lab, &c, &["remove", "--sets"]), "remove --sets");
    assert_eq!(ours(&lab, b), (false, 0));
}

/// The LOG lines the backend's own rules write (read from /dev/kmsg, as
/// rsyslog writes them) ban the source that offends over the threshold.
fn scan_kernel_log(b: Backend) {
    let lab = Lab::new();
    let tag = format!("FW{}{}", std::process::id() % 100_000, &b.name()[..1]);
    let (d, c) = cfg(
        b,
        &format!(
            "{}[logging]\nrate = \"1000/second\"\nburst = 1000\n[logging.prefixes]\n\
             allowed = {{ v4 = \"{tag}IPTABLES-ALLOWED: \", v6 = \"{tag}IP6TABLES-ALLOWED: \" }}\n\
             blocked = {{ v4 = \"{tag}IPTABLES-BLOCKED: \", v6 = \"{tag}IP6TABLES-BLOCKED: \" }}\n",
            base(true)
        ),
    );
    ok(&run(&lab, &c, &["apply"]), "apply");
    let _l = lab.listen(&[80]);
    let mut kmsg = Kmsg::open();
    let (a4, a6) = src("attacker");
    let (b4, b6) = src("benign");
    // Four blocked SYNs from the attacker, two from the benign source
    // (--howmany 2: not over it), both families.
    for (s, n) in [(a4, 4), (a6, 4), (b4, 2), (b6, 2)] {
        let p = lab.probe(s, 8081, n, Duration::from_millis(300));
        assert_eq!(p.connected + p.refused, 0, "{s}: {p:?}");
    }
    let lines = kmsg.wait_for(&tag, Duration::from_secs(10), |got| {
        got.iter().filter(|l| l.contains("-BLOCKED: ")).count() >= 12
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = fwctl::units::time::utc(now as i64).replace('Z', ".000000+00:00");
    let log = d.path().join("iptables.log");
    let written: String = lines
        .iter()
        .map(|m| format!("{t} host kernel: [ 100.000000] {m}\n"))
        .collect();
    std::fs::write(&log, &written).unwrap();
    let out = run(&lab, &c, &blocked_scan(&log, "2", "blacklist", "1h"));
    let said = ok(&out, "scan");
    assert!(said.contains("added: 2"), "{said}\n{written}");
    for (set, a) in [("blacklist", a4), ("blacklist_v6", a6)] {
        let t = left(&lab, b, set, &a.to_string());
        assert!(
            t.is_some_and(|t| (3_590..=3_600).contains(&t)),
            "{a}: {t:?}"
        );
        assert_eq!(lab.reach(a, 80), Reply::Silent, "{a}");
    }
    for (set, a) in [("blacklist", b4), ("blacklist_v6", b6)] {
        assert!(!members(&lab, b, set).contains_key(&a.to_string()), "{a}");
        assert_eq!(lab.reach(a, 80), Reply::Connected, "{a}");
    }
}
