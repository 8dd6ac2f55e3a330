//! A fleet sharing its bans through a real Redis (root, namespaces): three
//! hosts with the fwctl ruleset and `fwctl sync`, a `redis-server` with a
//! password, and an attacker. One host bans, the others block; policy,
//! outages, a host away during a thousand bans, and garbage in the stream.

mod common;
use common::fleet::{FleetLab, ATTACKER};
use common::{blocked_scan, secret_file};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn start_all(lab: &mut FleetLab) {
    for i in 0..3 {
        lab.start_sync(i);
    }
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_ban_on_one_host_is_blocked_by_every_host_within_a_second_and_an_unban_lifts_it() {
    let mut lab = FleetLab::new(|_| String::new());
    start_all(&mut lab);
    assert_eq!(
        lab.connect_from(ATTACKER, 1).connected,
        1,
        "B serves the attacker before the ban"
    );
    ok(&lab.fwctl(
        0,
        &["ban", ATTACKER, "--for", "1h", "--reason", "ticket-42"],
    ));
    for i in [1, 2] {
        let took = lab.wait_member(i, "blacklist", ATTACKER, true, SEC);
        assert!(took.is_some(), "not on {} within 1 s", lab.hosts[i].name);
        let left = lab.members(i, "blacklist")[ATTACKER];
        assert!(
            (3590..=3600).contains(&left),
            "{left} s left on {}",
            lab.hosts[i].name
        );
        let p = lab.connect_from(ATTACKER, i);
        assert_eq!(
            (p.connected, p.refused, p.silent),
            (0, 0, 1),
            "{}'s kernel drops it",
            lab.hosts[i].name
        );
    }
    assert!(lab.wait_log(
        1,
        &format!("applied manual ban of {ATTACKER} in blacklist for 1h from A"),
        SEC
    ));
    // A ignores its own entry.
    assert!(!lab.log(0).iter().any(|l| l.contains("applied manual ban")));
    // `list --fleet` on C: the ban, where it came from, and that it is here.
    let listed = ok(&lab.fwctl(2, &["list", "--fleet"]));
    assert!(
        listed.lines().any(|l| l.contains(ATTACKER)
            && l.contains(" A ")
            && l.contains("manual")
            && l.contains("yes")),
        "{listed}"
    );
    // `fwctl why`: on A a ban by hand with its note; on C the fleet's ban,
    // from A, once sync has saved its history (at most a second later).
    let why = ok(&lab.fwctl(0, &["why", ATTACKER]));
    assert!(
        why.contains("by manual: by hand") && why.contains("| reason: ticket-42"),
        "{why}"
    );
    let deadline = std::time::Instant::now() + 5 * SEC;
    let why = loop {
        let why = ok(&lab.fwctl(2, &["why", ATTACKER]));
        if why.contains("by fleet:") || std::time::Instant::now() > deadline {
            break why;
        }
        std::thread::sleep(SEC / 10);
    };
    assert!(
        why.contains("by fleet: manual on A") && why.contains("from fleet host A"),
        "{why}"
    );
    let local = ok(&lab.fwctl(2, &["list", "blacklist"]));
    assert!(
        local.contains("FROM")
            && local
                .lines()
                .any(|l| l.contains(ATTACKER) && l.trim_end().ends_with('A')),
        "{local}"
    );
    // status on B: sync connected, counts.
    let st = lab.fwctl(1, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["fleet"]["sync"]["connected"], true, "{v}");
    assert!(v["fleet"]["sync"]["applied"].as_u64().unwrap() >= 1);

    ok(&lab.fwctl(0, &["unban", ATTACKER]));
    for i in [1, 2] {
        assert!(
            lab.wait_member(i, "blacklist", ATTACKER, false, SEC)
                .is_some(),
            "still on {}",
            lab.hosts[i].name
        );
    }
    assert_eq!(lab.connect_from(ATTACKER, 1).connected, 1);
}

/// Capture on A, an nmap SYN scan from X, until capture says it banned
/// the scanner; then capture is stopped (its publisher flushed).
fn capture_bans_a_syn_scanner(lab: &FleetLab) {
    use std::io::BufRead;
    let mut cap = lab
        .fwctl_cmd(0, &["capture", "--json", "--iface", "eth0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(cap.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("capture on"), "{first}");
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.x,
            "nmap",
            "-n",
            "-Pn",
            "-sS",
            "--max-retries",
            "0",
            "-p",
            "3000-3009",
        ])
        .arg(&lab.hosts[0].addr)
        .output()
        .unwrap();
    assert!(out.status.success());
    let events = std::io::BufReader::new(cap.stdout.take().unwrap());
    let banned = events.lines().map_while(Result::ok).any(|l| {
        l.contains("\"event\":\"ip_blocked\"") && l.contains(&format!("\"src\":\"{ATTACKER}\""))
    });
    assert!(banned, "capture ended without banning the scanner");
    unsafe { libc::kill(cap.id() as i32, libc::SIGTERM) };
    assert!(cap.wait().unwrap().success());
}

/// A SYN scan is evidence anyone can forge (with an admin's address, say):
/// capture's ban of it stays on A unless `[fleet] share_spoofable = true`;
/// with it, the scanner is dropped by the others.
#[test]
#[ignore = "needs root: kernel test"]
fn a_scanner_that_capture_bans_on_one_host_is_dropped_by_the_others() {
    let mut lab = FleetLab::new(|_| String::new());
    start_all(&mut lab);
    capture_bans_a_syn_scanner(&lab);
    assert!(lab.members(0, "blacklist").contains_key(ATTACKER));
    let stream = lab.redis(&["XRANGE", "fwctl:bans", "-", "+"]).unwrap();
    assert_eq!(redis_count(&stream, ATTACKER), 0, "published: {stream:?}");

    ok(&lab.fwctl(0, &["unban", ATTACKER]));
    let cfg = &lab.hosts[0].cfg;
    let text = std::fs::read_to_string(cfg).unwrap();
    assert!(text.trim_end().ends_with("host = \"A\""), "{text}");
    std::fs::write(cfg, text + "share_spoofable = true\n").unwrap();
    capture_bans_a_syn_scanner(&lab);
    for i in [1, 2] {
        assert!(
            lab.wait_member(i, "blacklist", ATTACKER, true, 5 * SEC)
                .is_some(),
            "the scanner is not in {}'s set",
            lab.hosts[i].name
        );
        assert_eq!(lab.connect_from(ATTACKER, i).silent, 1);
    }
    assert!(lab.wait_log(1, &format!("applied capture ban of {ATTACKER}"), SEC));
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_host_that_trusts_an_address_refuses_its_ban_and_says_why() {
    let mut lab = FleetLab::new(|name| {
        if name == "B" {
            format!("[trusted]\nnetworks = [\"{ATTACKER}/32\"]\n")
        } else {
            String::new()
        }
    });
    start_all(&mut lab);
    ok(&lab.fwctl(0, &["ban", ATTACKER, "--for", "1h"]));
    assert!(
        lab.wait_member(2, "blacklist", ATTACKER, true, SEC)
            .is_some(),
        "C applies it"
    );
    assert!(
        lab.wait_log(1, &format!("skipped manual ban of {ATTACKER} in blacklist for 1h from A (banned by hand (fwctl ban)): never banned here"), SEC),
        "{:?}",
        lab.log(1)
    );
    assert!(
        lab.log(1).iter().any(|l| l.contains("trusted")),
        "{:?}",
        lab.log(1)
    );
    assert!(!lab.members(1, "blacklist").contains_key(ATTACKER));
    assert_eq!(lab.connect_from(ATTACKER, 1).connected, 1);

    // doctor asks Redis as sync would: the password works; a wrong one fails with the fix.
    let check = |out: std::process::Output| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "fleet")
            .cloned()
            .unwrap()
    };
    let good = check(lab.fwctl(0, &["doctor", "--json"]));
    assert_eq!(good["level"], "ok", "{good}");
    let wrong = lab.dir().join("wrong.secret");
    secret_file(&wrong, "not-the-password\n");
    let cfg = std::fs::read_to_string(&lab.hosts[0].cfg).unwrap();
    let bad_cfg = lab.dir().join("wrong.toml");
    std::fs::write(&bad_cfg, cfg.replace("redis.secret", "wrong.secret")).unwrap();
    let bad = check(lab.fwctl(
        0,
        &["--config", bad_cfg.to_str().unwrap(), "doctor", "--json"],
    ));
    assert_eq!(bad["level"], "fail", "{bad}");
    assert!(
        bad["fix"]
            .as_str()
            .is_some_and(|f| f.contains("password_file")),
        "{bad}"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn bans_made_while_redis_is_down_arrive_once_it_is_back_exactly_once() {
    let mut lab = FleetLab::new(|_| String::new());
    start_all(&mut lab);
    lab.stop_redis();
    let (a1, a2) = ("203.0.113.61", "203.0.113.62");
    for a in [a1, a2] {
        let t = std::time::Instant::now();
        let said = ok(&lab.fwctl(0, &["ban", a, "--for", "2h"]));
        assert!(
            t.elapsed() < 5 * SEC,
            "a ban with Redis down took {:?}",
            t.elapsed()
        );
        assert!(
            said.contains("wait in") && said.contains("fleet-outbox"),
            "{said}"
        );
    }
    // Status on A tells of them.
    let st = lab.fwctl(0, &["status"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("2 bans made here wait for Redis"), "{text}");
    lab.start_redis();
    // A's sync reconnects (with backoff) and publishes the outbox; B and C apply.
    for i in [1, 2] {
        for a in [a1, a2] {
            assert!(
                lab.wait_member(i, "blacklist", a, true, 45 * SEC).is_some(),
                "{a} not on {}",
                lab.hosts[i].name
            );
        }
    }
    // Exactly once: one entry each in the stream, one "applied" each on B.
    let stream = lab.redis(&["XRANGE", "fwctl:bans", "-", "+"]).unwrap();
    for a in [a1, a2] {
        let bulk = redis_count(&stream, a);
        assert_eq!(bulk, 1, "{a} is in the stream {bulk} times");
        let applied = lab
            .log(1)
            .iter()
            .filter(|l| l.contains(&format!("applied manual ban of {a} ")))
            .count();
        assert_eq!(applied, 1, "{a} applied {applied} times on B");
    }
    let outbox = lab.state_path(0).with_file_name("fleet-outbox.tsv");
    assert!(!outbox.exists() || std::fs::read(&outbox).unwrap().is_empty());
}

/// How many stream entries carry `addr` as their address.
fn redis_count(v: &redis::Value, addr: &str) -> usize {
    let redis::Value::Array(entries) = v else {
        return 0;
    };
    entries
        .iter()
        .filter(|e| {
            let redis::Value::Array(pair) = e else { return false };
            let Some(redis::Value::Array(kv)) = pair.get(1) else { return false };
            kv.chunks(2).any(|c| {
                matches!((&c[0], &c[1]), (redis::Value::BulkString(k), redis::Value::BulkString(v)) if k == b"addr" && v == addr.as_bytes())
            })
        })
        .count()
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_host_away_during_a_thousand_bans_catches_up_and_skips_the_expired() {
    // A thousand addresses of one /64, each its own ban: counted per address.
    let mut lab =
        FleetLab::new(|_| "[aggregate]\nv6_count_prefix = 128\nmin_offenders = 0\n".into());
    lab.start_sync(0);
    lab.start_sync(1);
    // C was running, and is stopped before the bans.
    lab.start_sync(2);
    lab.stop_sync(2);
    // 1 000 bans from A's cron scan (an hour each) and 20 of two seconds.
    let log = lab.dir().join("iptables.log");
    let long = common::offenders_log(&log, 1..1001);
    ok(&lab.fwctl(0, &blocked_scan(&log, "2", "blacklist", "1h")));
    let short = common::offenders_log(&log, 2001..2021);
    ok(&lab.fwctl(0, &blocked_scan(&log, "2", "blacklist", "2s")));
    // B has them all as they come.
    assert!(lab
        .wait_member(1, "blacklist_v6", &long[999], true, 5 * SEC)
        .is_some());
    // Wait until the short bans have ended everywhere (they were 2 s).
    assert!(lab
        .wait_member(0, "blacklist_v6", &short[19], false, 10 * SEC)
        .is_some());
    lab.start_sync(2);
    let caught = lab
        .log(2)
        .into_iter()
        .find(|l| l.contains("caught up from the active index"))
        .unwrap();
    assert!(caught.contains("1000 applied"), "{caught}");
    let c = lab.members(2, "blacklist_v6");
    assert!(
        long.iter().all(|a| c.contains_key(a)),
        "C lacks some of the 1 000"
    );
    assert!(
        short.iter().all(|a| !c.contains_key(a)),
        "an expired ban came back on C"
    );
    assert!(
        long.iter().all(|a| c[a] > 3000),
        "with the time they have left"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn garbage_in_the_stream_is_skipped_and_sync_goes_on() {
    let mut lab = FleetLab::new(|_| String::new());
    lab.start_sync(1);
    for bad in [
        vec!["XADD", "fwctl:bans", "*", "hello", "world"],
        vec![
            "XADD",
            "fwctl:bans",
            "*",
            "v",
            "1",
            "id",
            "abc1",
            "op",
            "ban",
            "addr",
            "not-an-address",
            "role",
            "blacklist",
            "at",
            "1796000000",
            "until",
            "1796003600",
            "secs",
            "3600",
            "reason",
            "x",
            "offence",
            "1",
            "host",
            "Z",
            "origin",
            "manual",
            "fwctl",
            "0",
        ],
        vec![
            "XADD",
            "fwctl:bans",
            "*",
            "v",
            "1",
            "id",
            "abc2",
            "op",
            "ban",
            "addr",
            "203.0.113.77",
            "role",
            "whitelist",
            "at",
            "1796000000",
            "until",
            "1796003600",
            "secs",
            "3600",
            "reason",
            "x",
            "offence",
            "1",
            "host",
            "Z",
            "origin",
            "manual",
            "fwctl",
            "0",
        ],
        vec![
            "XADD",
            "fwctl:bans",
            "*",
            "v",
            "1",
            "id",
            "abc3",
            "op",
            "ban",
            "addr",
            "203.0.113.78",
            "role",
            "blacklist",
            "at",
            "1796000000",
            "until",
            "99999999999",
            "secs",
            "98203999999",
            "reason",
            "x",
            "offence",
            "1",
            "host",
            "Z",
            "origin",
            "manual",
            "fwctl",
            "0",
        ],
        vec!["XADD", "fwctl:bans", "*", "v", "9", "id", "abc4"],
    ] {
        lab.redis(&bad).unwrap();
    }
    for why in [
        "no \"v\" field",
        "\"addr\" = \"not-an-address\"",
        "\"role\" = \"whitelist\"",
        "absurd duration",
        "newer fwctl",
    ] {
        assert!(
            lab.wait_log(1, why, 2 * SEC),
            "no word of {why}: {:?}",
            lab.log(1)
        );
    }
    let said = ok(&lab.fwctl(0, &["ban", ATTACKER, "--for", "10m"]));
    assert!(
        lab.wait_member(1, "blacklist", ATTACKER, true, 5 * SEC)
            .is_some(),
        "sync stopped applying: the ban said {said}; sync: {:?}",
        lab.log(1)
    );
    assert!(!lab.members(1, "blacklist").contains_key("203.0.113.78"));
    let st = lab.fwctl(1, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert!(v["fleet"]["sync"]["skipped"].as_u64().unwrap() >= 5, "{v}");
}

/// rediss://: the same ban crosses over TLS (rustls), and a host that does
/// not trust the server's certificate does not connect.
#[test]
#[ignore = "needs root: kernel test"]
fn bans_cross_a_tls_redis() {
    let mut lab = FleetLab::with(|_| String::new(), true);
    lab.start_sync(0);
    lab.start_sync(1);
    ok(&lab.fwctl(0, &["ban", ATTACKER, "--for", "1h"]));
    assert!(
        lab.wait_member(1, "blacklist", ATTACKER, true, 2 * SEC)
            .is_some(),
        "not on B over TLS: {:?}",
        lab.log(1)
    );
    // Without the certificate trusted: refused, said by doctor.
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.hosts[2].ns,
            common::fwctl_bin(),
            "--config",
        ])
        .arg(&lab.hosts[2].cfg)
        .args(["doctor", "--json"])
        .env("FWCTL_RUN_DIR", lab.hosts[2].run_dir.path())
        .env("FWCTL_STATE", lab.state_path(2))
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fleet = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fleet")
        .unwrap()
        .clone();
    assert_eq!(fleet["level"], "fail", "{fleet}");
}

/// Now, Unix seconds.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The fields of a remote ban of `addr` (an hour long) as host `host`
/// publishes it (unsigned), written out by hand as anyone could XADD them.
fn entry(addr: &str, host: &str, n: usize) -> Vec<(String, String)> {
    let at = now();
    [
        ("v", "1".to_string()),
        ("id", format!("{n:016x}")),
        ("op", "ban".into()),
        ("addr", addr.into()),
        ("role", "blacklist".into()),
        ("at", at.to_string()),
        ("until", (at + 3600).to_string()),
        ("secs", "3600".into()),
        ("reason", "port scan".into()),
        ("offence", "1".into()),
        ("host", host.into()),
        ("origin", "capture".into()),
        ("fwctl", "0.1.0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn with(mut fields: Vec<(String, String)>, k: &str, v: &str) -> Vec<(String, String)> {
    fields.iter_mut().find(|(f, _)| f == k).unwrap().1 = v.to_string();
    fields
}

/// `entry`, signed with `key`.
fn signed(
    addr: &str,
    host: &str,
    n: usize,
    key: &fwctl::core::fleetsig::SigningKey,
) -> fwctl::core::fleet::Entry {
    let mut e = fwctl::core::fleet::Entry::from_fields(&entry(addr, host, n)).unwrap();
    e.sign(key);
    e
}

fn fields(e: &fwctl::core::fleet::Entry) -> Vec<(String, String)> {
    e.fields()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// What `fwctl status --json` on host `i` says of its sync.
fn sync_status(lab: &FleetLab, i: usize) -> serde_json::Value {
    let st = lab.fwctl(i, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    v["fleet"]["sync"].clone()
}

/// `sync_status` once its `key` is `want` (sync writes it after each batch),
/// or as it is after 5 s.
fn wait_status(lab: &FleetLab, i: usize, key: &str, want: u64) -> serde_json::Value {
    let end = std::time::Instant::now() + 5 * SEC;
    loop {
        let st = sync_status(lab, i);
        if st[key].as_u64() == Some(want) || std::time::Instant::now() > end {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A remote `2000::/3` (or `1.0.0.0/8`) was applied: all global IPv6
/// dropped. Networks wider than [fleet] min_prefix_v4 / min_prefix_v6
/// (24 and 48 by default) are refused; narrower ones go in.
#[test]
#[ignore = "needs root: kernel test"]
fn a_remote_network_wider_than_the_minimum_prefix_is_refused() {
    let mut lab = FleetLab::new(|_| String::new());
    lab.start_sync(1);
    lab.xadd(
        [
            "2000::/3",
            "1.0.0.0/8",
            "198.51.0.0/16",
            "2001:db8:bad::/48",
        ]
        .iter()
        .enumerate()
        .map(|(n, a)| entry(a, "Z", n))
        .collect(),
    );
    // The last one is applied: every one before it was decided.
    assert!(
        lab.wait_member(1, "blacklist_v6", "2001:db8:bad::/48", true, 5 * SEC)
            .is_some(),
        "{:?}",
        lab.log(1)
    );
    for (addr, why) in [
        ("2000::/3", "wider than /48 ([fleet] min_prefix_v6)"),
        ("1.0.0.0/8", "wider than /24 ([fleet] min_prefix_v4)"),
        ("198.51.0.0/16", "wider than /24 ([fleet] min_prefix_v4)"),
    ] {
        let line =
            format!("skipped capture ban of {addr} in blacklist for 1h from Z (port scan): {why}");
        assert!(lab.wait_log(1, &line, 2 * SEC), "{line}: {:?}", lab.log(1));
    }
    assert!(!lab.members(1, "blacklist_v6").contains_key("2000::/3"));
    assert!(!lab.members(1, "blacklist").contains_key("1.0.0.0/8"));
    assert!(!lab.members(1, "blacklist").contains_key("198.51.0.0/16"));
}

/// 1 100 remote entries filled a set of maxelem 1 024, and then a local
/// `fwctl ban` failed "Hash is full". Remote bans keep to a quota per origin
/// host and leave a quarter of each set free: the local ban goes in.
#[test]
#[ignore = "needs root: kernel test"]
fn remote_bans_keep_to_a_quota_per_host_and_leave_room_for_a_local_ban() {
    let mut lab = FleetLab::new(|name| {
        if name == "B" {
            "max_entries_per_host = 250\n[sets]\nmaxelem = 1024\n".into()
        } else {
            String::new()
        }
    });
    lab.start_sync(1);
    // Z1 publishes 300, Z2 to Z5 220 each: 1 180 in all.
    let mut all = Vec::new();
    let mut n = 0;
    for (host, count) in [
        ("Z1", 300),
        ("Z2", 220),
        ("Z3", 220),
        ("Z4", 220),
        ("Z5", 220),
    ] {
        for _ in 0..count {
            n += 1;
            all.push(entry(&format!("2001:db8:f00::{n:x}"), host, n));
        }
    }
    // And last, a ban into the other family's set, which has room.
    all.push(entry("198.51.100.77", "Z9", 99_999));
    lab.xadd(all);
    assert!(
        lab.wait_member(1, "blacklist", "198.51.100.77", true, 15 * SEC)
            .is_some(),
        "{:?}",
        lab.log(1)
    );
    let set = lab.members(1, "blacklist_v6");
    // 1 024 less the quarter kept for local bans.
    assert_eq!(set.len(), 768, "remote members of blacklist_v6");
    let z1 = (1..=300)
        .filter(|n| set.contains_key(&format!("2001:db8:f00::{n:x}")))
        .count();
    assert_eq!(z1, 250, "Z1's bans here: its quota");
    assert!(
        lab.wait_log(1, "over quota", 2 * SEC) && lab.wait_log(1, "no room", 2 * SEC),
        "{:?}",
        lab.log(1)
    );
    // The local ban finds room.
    ok(&lab.fwctl(1, &["ban", "2001:db8:bad::1", "--for", "1h"]));
    assert!(lab
        .members(1, "blacklist_v6")
        .contains_key("2001:db8:bad::1"));
}

/// Ten entries with a 20 MB reason took sync to 451 MB. Every read from
/// Redis is bounded: the oversized entries (in the stream and in the active
/// index) are skipped and counted, and sync stays small.
#[test]
#[ignore = "needs root: kernel test"]
fn oversized_entries_are_skipped_and_counted_with_bounded_memory() {
    let mut lab = FleetLab::new(|_| String::new());
    let huge = "x".repeat(20 << 20);
    // Three in the index, for the catch-up.
    for n in 0..3 {
        let addr = format!("203.0.113.{}", 80 + n);
        let e = with(entry(&addr, "Z", 500 + n), "reason", &huge);
        let line: Vec<&str> = e.iter().map(|(_, v)| v.as_str()).collect();
        let until = (now() + 3600).to_string();
        let key = format!("blacklist {addr}");
        lab.redis(&["ZADD", "fwctl:bans:active", &until, &key])
            .unwrap();
        lab.redis(&["HSET", "fwctl:bans:info", &key, &line.join("\t")])
            .unwrap();
    }
    lab.start_sync(1);
    for n in 0..10 {
        let e = with(
            entry(&format!("203.0.113.{}", 60 + n), "Z", n),
            "reason",
            &huge,
        );
        lab.xadd(vec![e]);
    }
    lab.xadd(vec![entry("203.0.113.77", "Z", 77)]);
    assert!(
        lab.wait_member(1, "blacklist", "203.0.113.77", true, 10 * SEC)
            .is_some(),
        "{:?}",
        lab.log(1)
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", lab.sync_pid(1))).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("sync's peak memory: {} MB", peak_kb / 1024);
    assert!(
        peak_kb < 64 * 1024,
        "sync's peak memory is {} MB with 13 entries of 20 MB",
        peak_kb / 1024
    );
    assert!(
        lab.wait_log(1, "oversized: 20971", 2 * SEC),
        "{:?}",
        lab.log(1)
    );
    for n in 0..10 {
        assert!(!lab
            .members(1, "blacklist")
            .contains_key(&format!("203.0.113.{}", 60 + n)));
    }
    let st = wait_status(&lab, 1, "oversized", 13);
    assert_eq!(st["oversized"], 13, "{st}");
    assert!(st["skipped"].as_u64().unwrap() >= 13, "{st}");
    assert!(String::from_utf8_lossy(&lab.fwctl(1, &["status"]).stdout).contains("13 oversized"),);
}

/// `fwctl fleet keygen`: the key file (0600) and the public half (printed).
fn keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let out = std::process::Command::new(common::fwctl_bin())
        .args(["fleet", "keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    let text = ok(&out);
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .to_string();
    (path, public)
}

/// Entries were unsigned: anyone who can write to Redis could claim any host
/// name. With [fleet.peers], B applies only entries signed by the key of the
/// host they name: A's real bans go in; unsigned, forged, re-signed and
/// stranger entries are skipped and counted.
#[test]
#[ignore = "needs root: kernel test"]
fn with_peers_unsigned_and_forged_entries_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (ka, pa) = keygen(keys.path(), "A");
    let (kb, pb) = keygen(keys.path(), "B");
    let (kz, _) = keygen(keys.path(), "Z");
    let (ka2, kb2) = (ka.clone(), kb.clone());
    let mut lab = FleetLab::new(move |name| {
        let key = match name {
            "A" => &ka2,
            "B" => &kb2,
            _ => return String::new(),
        };
        format!(
            "key_file = \"{}\"\n[fleet.peers]\n\"A\" = \"{pa}\"\n\"B\" = \"{pb}\"\n",
            key.display()
        )
    });
    lab.start_sync(1);
    // A real ban by A: signed with A's key, applied on B.
    ok(&lab.fwctl(0, &["ban", "203.0.113.61", "--for", "1h"]));
    assert!(
        lab.wait_member(1, "blacklist", "203.0.113.61", true, 5 * SEC)
            .is_some(),
        "{:?}",
        lab.log(1)
    );
    let load = |p: &std::path::Path| {
        fwctl::core::fleetsig::SigningKey::from_text(&std::fs::read(p).unwrap()).unwrap()
    };
    let (a_key, z_key) = (load(&ka), load(&kz));
    let unsigned = entry("203.0.113.62", "A", 1);
    let resigned = fields(&signed("203.0.113.63", "A", 2, &z_key));
    let forged = with(
        fields(&signed("203.0.113.64", "A", 3, &a_key)),
        "addr",
        "203.0.113.65",
    );
    let stranger = fields(&signed("203.0.113.66", "Z", 4, &z_key));
    let good = fields(&signed("203.0.113.67", "A", 5, &a_key));
    lab.xadd(vec![unsigned, resigned, forged, stranger, good]);
    assert!(
        lab.wait_member(1, "blacklist", "203.0.113.67", true, 5 * SEC)
            .is_some(),
        "{:?}",
        lab.log(1)
    );
    let set = lab.members(1, "blacklist");
    for a in [
        "203.0.113.62",
        "203.0.113.63",
        "203.0.113.64",
        "203.0.113.65",
        "203.0.113.66",
    ] {
        assert!(!set.contains_key(a), "{a} went in");
    }
    for why in [
        "unsigned: no signature, and A is in [fleet.peers]",
        "unsigned: the signature is not A's key's",
        "unsigned: Z is not in [fleet.peers]",
    ] {
        assert!(
            lab.wait_log(1, why, 2 * SEC),
            "no word of {why}: {:?}",
            lab.log(1)
        );
    }
    let st = wait_status(&lab, 1, "unsigned", 4);
    assert_eq!(st["unsigned"], 4, "{st}");
    // A host back from away catches up from the index: 300 signed bans
    // (checked on every core) and one forged among them.
    lab.stop_sync(1);
    let mut cmds = Vec::new();
    for n in 1..302 {
        let addr = format!("2001:db8:5::{n:x}");
        let mut e = fields(&signed(&addr, "A", 1000 + n, &a_key));
        if n == 150 {
            e = with(e, "reason", "forged");
        }
        let line: Vec<String> = e.into_iter().map(|(_, v)| v).collect();
        let key = format!("blacklist {addr}");
        let until = (now() + 3600).to_string();
        cmds.push(vec![
            "ZADD".into(),
            "fwctl:bans:active".into(),
            until,
            key.clone(),
        ]);
        cmds.push(vec![
            "HSET".into(),
            "fwctl:bans:info".into(),
            key,
            line.join("\t"),
        ]);
    }
    lab.pipe(cmds);
    lab.start_sync(1);
    let set = lab.members(1, "blacklist_v6");
    let applied = (1..302)
        .filter(|n| set.contains_key(&format!("2001:db8:5::{n:x}")))
        .count();
    assert_eq!(applied, 300, "{:?}", lab.log(1));
    assert!(
        !set.contains_key("2001:db8:5::96"),
        "the forged one went in"
    );
    assert_eq!(wait_status(&lab, 1, "unsigned", 5)["unsigned"], 5);
    // A key file others may read is refused with the fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ka, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = lab.fwctl(0, &["ban", "203.0.113.68", "--for", "1h"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600") && err.contains("A.key"), "{err}");
}

/// `fwctl fleet purge --host NAME`: every ban NAME published, out of this
/// host's sets and state file and out of the fleet's active index; other
/// hosts' bans and this host's own stay.
#[test]
#[ignore = "needs root: kernel test"]
fn fleet_purge_removes_every_ban_one_host_published() {
    let mut lab = FleetLab::new(|_| String::new());
    lab.start_sync(1);
    let a_bans = ["203.0.113.71", "203.0.113.72", "2001:db8:bad::71"];
    for a in a_bans {
        ok(&lab.fwctl(0, &["ban", a, "--for", "1h"]));
    }
    ok(&lab.fwctl(2, &["ban", "203.0.113.73", "--for", "1h"]));
    ok(&lab.fwctl(1, &["ban", "203.0.113.74", "--for", "1h"]));
    assert!(lab
        .wait_member(1, "blacklist", "203.0.113.73", true, 5 * SEC)
        .is_some());
    for a in a_bans {
        let set = if a.contains(':') {
            "blacklist_v6"
        } else {
            "blacklist"
        };
        assert!(lab.wait_member(1, set, a, true, 5 * SEC).is_some(), "{a}");
    }
    // Sync writes what it applied to the state file within a second or two.
    let from_a = || -> usize {
        std::fs::read_to_string(lab.state_path(1))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map_or(0, |v| {
                v["bans"]
                    .as_array()
                    .map_or(0, |b| b.iter().filter(|r| r["from"] == "A").count())
            })
    };
    let end = std::time::Instant::now() + 10 * SEC;
    while from_a() < 3 {
        assert!(
            std::time::Instant::now() < end,
            "A's bans never reached B's state file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = ok(&lab.fwctl(1, &["fleet", "purge", "--host", "A"]));
    assert!(
        said.contains("purged 3 bans of A here")
            && said.contains("3 bans out of the fleet's active index"),
        "{said}"
    );
    let (v4, v6) = (lab.members(1, "blacklist"), lab.members(1, "blacklist_v6"));
    for a in a_bans {
        assert!(
            !v4.contains_key(a) && !v6.contains_key(a),
            "{a} is still banned on B"
        );
    }
    assert!(v4.contains_key("203.0.113.73"), "C's ban stays");
    assert!(v4.contains_key("203.0.113.74"), "B's own ban stays");
    // The state file ends them: a reboot's apply does not bring them back.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.state_path(1)).unwrap()).unwrap();
    let t = now();
    for b in state["bans"].as_array().unwrap() {
        if b["from"] == "A" {
            assert!(b["until"].as_i64().unwrap() <= t, "{b}");
        }
    }
    // The index holds C's and B's bans, none of A's.
    let members = lab
        .redis(&["ZRANGE", "fwctl:bans:active", "0", "-1"])
        .unwrap();
    let text = format!("{members:?}");
    assert!(
        !text.contains("203.0.113.71") && !text.contains("2001:db8:bad::71"),
        "{text}"
    );
    assert!(
        text.contains("203.0.113.73") && text.contains("203.0.113.74"),
        "{text}"
    );
    // A name that is not a host name is refused.
    let out = lab.fwctl(1, &["fleet", "purge", "--host", "a b"]);
    assert!(!out.status.success());
}
