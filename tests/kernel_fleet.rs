//! A fleet sharing its bans through a real Redis (root, namespaces): three
//! hosts with the fwctl ruleset and `fwctl sync`, a `redis-server` with a
//! password, and an attacker. One host bans, the others block; policy,
//! outages, a host away during a thousand bans, and garbage in the stream.

mod common;
use common::fleet::{FleetLab, ATTACKER};
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
    ok(&lab.fwctl(0, &["ban", ATTACKER, "--for", "1h"]));
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
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
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
    let mut lab = FleetLab::new(|_| String::new());
    lab.start_sync(0);
    lab.start_sync(1);
    // C was running, and is stopped before the bans.
    lab.start_sync(2);
    lab.stop_sync(2);
    // 1 000 bans from A's cron scan (an hour each) and 20 of two seconds.
    let log = lab.dir().join("iptables.log");
    let long = common::offenders_log(&log, 1..1001);
    ok(&lab.fwctl(
        0,
        &[
            "scan",
            "--log",
            log.to_str().unwrap(),
            "--rule",
            "blocked",
            "--type",
            "tcp",
            "--howmany",
            "2",
            "--within",
            "10m",
            "--ipset",
            "blacklist",
            "--removeafter",
            "1h",
        ],
    ));
    let short = common::offenders_log(&log, 2001..2021);
    ok(&lab.fwctl(
        0,
        &[
            "scan",
            "--log",
            log.to_str().unwrap(),
            "--rule",
            "blocked",
            "--type",
            "tcp",
            "--howmany",
            "2",
            "--within",
            "10m",
            "--ipset",
            "blacklist",
            "--removeafter",
            "2s",
        ],
    ));
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
