//! Kernel tests for `fwctl watch` (root, namespaces): watch runs in the
//! target namespace, follows logs the test writes, and bans into the real
//! sets, across rotation by rename and by copytruncate, a log that does not
//! exist yet, a log deleted and created again, and a restart. Decoys stay
//! at the threshold across each of them: a line counted twice would ban
//! them. Every wait is for an event (the sentinel attacker whose crossing
//! line is written last), or for a record in the state (re-read until it is
//! there, bounded), never a sleep.

mod common;
use common::receiver::Receiver as Http;
use common::service::LIMIT;
use common::watch::Watch;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The lab's firewall from `cfg`, whatever runs on the host.
fn apply_force(lab: &Lab, cfg: &Path) {
    let out = lab.fwctl(
        &["--config", cfg.to_str().unwrap(), "apply", "--force"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stand-in program the test wrote, made runnable.
fn executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn now_stamp() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6N+00:00"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn append(p: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn ssh(addr: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{} web1 sshd[12]: Failed password for root from {addr} port {} ssh2\n",
                now_stamp(),
                40000 + i
            )
        })
        .collect()
}

fn sasl(addr: &str, n: usize) -> String {
    (0..n)
        .map(|_| {
            format!(
                "{} mx postfix/smtpd[7]: warning: unknown[{addr}]: SASL LOGIN authentication failed: authentication failure\n",
                now_stamp()
            )
        })
        .collect()
}

/// README's `[[source]]` example, as written there.
fn readme_source() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("```toml\n[[source]]")
        .expect("README has a [[source]] example")
        + 8;
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_string()
}

fn config(dir: &Path, port: u16) -> PathBuf {
    let text = format!(
        r#"
[trusted]
networks = ["192.0.2.77"]
[[service]]
name = "ssh"
port = 22
[metrics]
listen = ""
watch_listen = "127.0.0.1:{port}"
{source}
[[watch]]
source = "sshd"
log = "{dir}/auth.log"
howmany = 3
within = "10m"
ipset = "throttle-hard"
removeafter = "1h"

[[watch]]
source = "postfix-sasl"
log = "{dir}/later/mail.log"
howmany = 2
within = "10m"
ipset = "blacklist"
removeafter = "1d"
"#,
        source = readme_source(),
        dir = dir.display()
    );
    let p = dir.join("fwctl.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Wait until `fwctl why` shows watch's record of `addr`. A record comes
/// within a second of its ban and no event says when: the state is read
/// again until it is there, for at most [`LIMIT`].
fn recorded(lab: &Lab, cfg: &Path, addr: &str) {
    let end = std::time::Instant::now() + LIMIT;
    loop {
        let out = lab.fwctl(
            &["--config", cfg.to_str().unwrap(), "why", addr, "--json"],
            &[],
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v["bans"][0]["why"]["origin"] == "watch" {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{addr} never recorded: {v:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn scrape(lab: &Lab, port: u16) -> String {
    in_ns(&lab.target, || {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
}

#[test]
#[ignore = "needs root: kernel test"]
fn watch_bans_as_lines_are_written_across_rotations_and_restarts() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, 19470);
    apply_force(&lab, &cfg);
    let log = d.join("auth.log");
    let old = d.join("auth.log.1");
    append(&log, &ssh("203.0.113.99", 10)); // before the start: the cron scan's
    lab.ban("throttle-hard", "203.0.113.28", 600);
    let mut w = Watch::start(&lab, &cfg, &[]);

    // Rotation by rename; the writer keeps writing to the old file a while.
    append(&log, &ssh("203.0.113.31", 2)); // decoy: 3 lines in all
    append(&log, &ssh("203.0.113.21", 2));
    std::fs::rename(&log, &old).unwrap();
    append(&log, &ssh("203.0.113.31", 1));
    append(&log, &ssh("203.0.113.21", 2));
    let a = w.wait("watch_ban", "203.0.113.21");
    assert_eq!(a["hits"], 4);
    assert_eq!(a["set"], "throttle-hard");
    append(&old, &ssh("203.0.113.22", 4));
    w.wait("watch_ban", "203.0.113.22");

    // copytruncate, with lines the follower may not have read before it.
    append(&log, &ssh("203.0.113.32", 2)); // decoy
    append(&log, &ssh("203.0.113.23", 2));
    std::fs::copy(&log, &old).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &ssh("203.0.113.32", 1));
    append(&log, &ssh("203.0.113.23", 2));
    assert_eq!(w.wait("watch_ban", "203.0.113.23")["hits"], 4);

    // A log (and its directory) that did not exist when watch started,
    // read by README's [[source]] example.
    std::fs::create_dir(d.join("later")).unwrap();
    append(&d.join("later/mail.log"), &sasl("203.0.113.41", 3));
    let p = w.wait("watch_ban", "203.0.113.41");
    assert_eq!(
        (p["set"].as_str(), p["watch"].as_str()),
        (Some("blacklist"), Some("postfix-sasl"))
    );

    // The same README [[source]] works for scan and test-source.
    let mail = d.join("later/mail.log");
    let out = lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "test-source",
            "--source",
            "postfix-sasl",
            "--log",
            mail.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("203.0.113.41"));
    let out = lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "scan",
            "--source",
            "postfix-sasl",
            "--log",
            mail.to_str().unwrap(),
            "--howmany",
            "2",
            "--within",
            "10m",
            "--ipset",
            "blacklist",
            "--removeafter",
            "1d",
            "--json",
            "--dryrun",
        ],
        &[],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["offenders"][0]["address"], "203.0.113.41",
        "{report:#}"
    );

    // One watch at a time; status tells it runs.
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "watch"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already running") && err.contains("fix:"),
        "{err}"
    );
    let out = lab.fwctl(
        &["--config", cfg.to_str().unwrap(), "status", "--json"],
        &[],
    );
    let st: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(st["watch"]["running"], true, "{st:#}");

    // Deleted and created again.
    append(&log, &ssh("203.0.113.33", 2)); // decoy
    std::fs::remove_file(&log).unwrap();
    append(&log, &ssh("203.0.113.33", 1));
    append(&log, &ssh("203.0.113.24", 4));
    w.wait("watch_ban", "203.0.113.24");

    // In the set already (a cron scan was first); never banned (trusted).
    append(&log, &ssh("203.0.113.28", 4));
    w.wait("watch_already_listed", "203.0.113.28");
    append(&log, &ssh("192.0.2.77", 4));
    let t = w.wait("watch_skipped", "192.0.2.77");
    assert!(t["reason"].as_str().unwrap().contains("trusted"), "{t}");

    // The endpoint, in Prometheus' format.
    let m = scrape(&lab, 19470);
    assert!(
        m.contains("fwctl_watch_bans_total{watch=\"sshd\",set=\"throttle-hard\"} 4\n"),
        "{m}"
    );
    assert!(
        m.contains("fwctl_watch_bans_total{watch=\"postfix-sasl\",set=\"blacklist\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("fwctl_watch_truncations_total{watch=\"sshd\"} 1\n"),
        "{m}"
    );
    if let Ok(promtool) = which("promtool") {
        let body = m.split("\r\n\r\n").nth(1).unwrap().to_string();
        let out = exec_input_out(&promtool, &["check", "metrics"], &body);
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A restart: a decoy's lines before it are not read again, lines
    // written while stopped are read once.
    append(&log, &ssh("203.0.113.35", 3)); // decoy: 3 now, 1 after the restart
                                           // The state file's records while watch runs: the first after another
                                           // writer (status above) writes the whole file; the next is appended to
                                           // its journal, the file left as it was, and every reader applies it.
    let state = lab.state_path();
    let journal = state.with_file_name("state.json.journal");
    recorded(&lab, &cfg, "203.0.113.24");
    let before = std::fs::read(&state).unwrap();
    append(&log, &ssh("203.0.113.25", 4));
    w.wait("watch_ban", "203.0.113.25");
    recorded(&lab, &cfg, "203.0.113.25");
    assert!(journal.exists());
    assert_eq!(std::fs::read(&state).unwrap(), before);
    let seen = w.stop();
    // Folded in at stop: the file whole for whatever reads it next.
    assert!(!journal.exists());
    assert!(std::fs::read_to_string(&state)
        .unwrap()
        .contains("203.0.113.25"));
    for decoy in [
        "203.0.113.31",
        "203.0.113.32",
        "203.0.113.33",
        "203.0.113.35",
        "203.0.113.99",
    ] {
        assert!(
            !seen.iter().any(|e| e["address"] == decoy),
            "{decoy} was counted past the threshold: {seen:#?}"
        );
    }
    let positions =
        std::fs::read_to_string(lab.state_dir.path().join("watch-positions.json")).unwrap();
    assert!(
        positions.contains("\"sshd\"") && positions.contains("\"postfix-sasl\""),
        "{positions}"
    );
    append(&log, &ssh("203.0.113.26", 2));
    let mut w = Watch::start(&lab, &cfg, &[]);
    append(&log, &ssh("203.0.113.35", 1));
    append(&log, &ssh("203.0.113.26", 2));
    assert_eq!(w.wait("watch_ban", "203.0.113.26")["hits"], 4);
    assert!(w.about("203.0.113.35").is_empty(), "{:#?}", w.seen);

    // A cron scan of the same log and rule after watch: nothing twice.
    let out = lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "scan",
            "--source",
            "sshd",
            "--log",
            log.to_str().unwrap(),
            "--howmany",
            "3",
            "--within",
            "10m",
            "--ipset",
            "throttle-hard",
            "--removeafter",
            "1h",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = |a: &str| {
        report["offenders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["address"] == a)
            .map(|o| o["action"].as_str().unwrap().to_string())
    };
    for banned in ["203.0.113.24", "203.0.113.25", "203.0.113.26"] {
        assert_eq!(
            action(banned).as_deref(),
            Some("already listed"),
            "{report:#}"
        );
    }
    // The restart's decoy: watch's windows start afresh, the cron scan's
    // spans the restart and sees 4 lines within 10 minutes.
    assert_eq!(
        action("203.0.113.35").as_deref(),
        Some("added"),
        "{report:#}"
    );
    assert_eq!(report["added"], 1, "{report:#}");
    let _ = w.stop();

    // The kernel's sets and the state file.
    let throttled = lab.set_members("throttle-hard");
    for banned in [
        "203.0.113.21",
        "203.0.113.22",
        "203.0.113.23",
        "203.0.113.24",
        "203.0.113.25",
        "203.0.113.26",
    ] {
        let t = throttled.get(banned).copied().flatten();
        assert!(
            t.is_some_and(|t| t > 0 && t <= 3600),
            "{banned}: {throttled:?}"
        );
    }
    for decoy in [
        "203.0.113.31",
        "203.0.113.32",
        "203.0.113.33",
        "203.0.113.99",
        "192.0.2.77",
    ] {
        assert!(!throttled.contains_key(decoy), "{decoy}: {throttled:?}");
    }
    assert!(lab.set_members("blacklist").contains_key("203.0.113.41"));
    let state = std::fs::read_to_string(lab.state_path()).unwrap();
    let st: Value = serde_json::from_str(&state).unwrap();
    let records = st["bans"].as_array().unwrap_or_else(|| panic!("{st:#}"));
    let of = |a: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| {
                r["addr"]
                    .as_str()
                    .is_some_and(|x| x.split('/').next() == Some(a))
            })
            .collect()
    };
    let r = of("203.0.113.26");
    assert_eq!((r.len(), r[0]["offences"].as_u64()), (1, Some(1)), "{st:#}");
    assert!(
        of("203.0.113.28").is_empty(),
        "already listed is not recorded: {st:#}"
    );

    // fwctl why: the set and time left, the ban with its rule and the lines
    // that crossed (watch), or what the scan counted; and the verdict.
    let why = |a: &str| -> Value {
        let out = lab.fwctl(
            &["--config", cfg.to_str().unwrap(), "why", a, "--json"],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let w = why("203.0.113.26");
    assert_eq!(w["sets"][0]["set"], "throttle-hard", "{w:#}");
    let ban = &w["bans"][0];
    assert_eq!(
        (ban["why"]["origin"].as_str(), ban["why"]["hits"].as_u64()),
        (Some("watch"), Some(4)),
        "{w:#}"
    );
    let evidence = ban["why"]["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 4, "{w:#}");
    assert!(
        evidence.iter().all(|e| e
            .as_str()
            .unwrap()
            .contains("Failed password for root from 203.0.113.26")),
        "{w:#}"
    );
    let w = why("203.0.113.35");
    assert_eq!(w["bans"][0]["why"]["origin"], "scan", "{w:#}");
    assert_eq!(
        w["bans"][0]["why"]["evidence"][0], "kinds: failed-password",
        "{w:#}"
    );
    let w = why("192.0.2.77");
    assert_eq!(w["never_ban"], true, "{w:#}");
    assert!(w["bans"].as_array().unwrap().is_empty());
}

fn which(tool: &str) -> Result<String, ()> {
    let out = std::process::Command::new("which")
        .arg(tool)
        .output()
        .map_err(|_| ())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(())
    }
}

fn exec_input_out(prog: &str, args: &[&str], input: &str) -> std::process::Output {
    let mut c = std::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

/// journald does not run on this machine (no systemd as PID 1), so the
/// journal is a stand-in journalctl that prints entries as `journalctl -f
/// -o json` does and records how it was started: watch must resume after
/// the last entry it read.
#[test]
#[ignore = "needs root: kernel test"]
fn the_journal_is_followed_and_resumed_after_its_cursor() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args_file = d.join("args");
    let fake = d.join("journalctl");
    std::fs::write(
        &fake,
        format!(
            r#"#!/usr/bin/python3
import json, sys, time, os
with open("{args}", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
n = sum(1 for _ in open("{args}"))
for i in range(2):
    e = {{"__CURSOR": "s=run%d;i=%d" % (n, i), "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)),
         "_HOSTNAME": "web1", "SYSLOG_IDENTIFIER": "sshd", "_PID": "12",
         "MESSAGE": "Failed password for root from 203.0.113.%d port 4242 ssh2" % (50 + n)}}
    print(json.dumps(e), flush=True)
os.execvp("sleep", ["sleep", "600"])
"#,
            args = args_file.display()
        ),
    )
    .unwrap();
    executable(&fake);
    // Its bans go to [[notify]] as scan's do (a real HTTP receiver).
    let rx = Http::start_in(&lab.target, 0);
    let cfg = d.join("fwctl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[metrics]\nlisten = \"\"\nwatch_listen = \"\"\n[[notify]]\nname = \"ops\"\nurl = \"{}\"\n[[watch]]\nsource = \"sshd\"\njournal = true\nhowmany = 1\nwithin = \"10m\"\nipset = \"blacklist\"\nremoveafter = \"1h\"\n",
            rx.url()
        ),
    )
    .unwrap();
    apply_force(&lab, &cfg);
    let env = [("FWCTL_JOURNALCTL", fake.to_str().unwrap())];
    let mut w = Watch::start(&lab, &cfg, &env);
    w.wait("watch_ban", "203.0.113.51");
    w.stop();
    let mut w = Watch::start(&lab, &cfg, &env);
    w.wait("watch_ban", "203.0.113.52");
    w.stop();
    let args = std::fs::read_to_string(&args_file).unwrap();
    let runs: Vec<&str> = args.lines().collect();
    assert_eq!(runs.len(), 2, "{args}");
    assert!(
        runs[0].contains("-f -o json") && runs[0].contains("--lines=0"),
        "{args}"
    );
    assert!(runs[1].contains("--after-cursor=s=run1;i=1"), "{args}");
    assert!(lab.set_members("blacklist").contains_key("203.0.113.52"));
    let blocked = |r: &[common::receiver::Request]| -> Vec<Value> {
        r.iter()
            .flat_map(|q| q.events())
            .filter(|e| e["event"] == "ip_blocked")
            .collect()
    };
    assert!(
        rx.wait_for(LIMIT, |r| blocked(r).len() >= 2),
        "{:?}",
        rx.requests()
    );
    let evs = blocked(&rx.requests());
    let e = evs.iter().find(|e| e["address"] == "203.0.113.51").unwrap();
    assert_eq!(
        (e["origin"].as_str(), e["set"].as_str()),
        (Some("scan"), Some("blacklist"))
    );
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("watch sshd: 2 ssh lines within 10m"),
        "{e}"
    );
}

/// `journal = true` for regex sources: a stand-in journalctl that keeps
/// to the `--identifier=` arguments it is given gives entries of postfix's
/// smtpd and of another program writing the same words. A `[[source]]` of
/// the exact program asks journalctl for it alone; the built-in
/// `postfix-sasl` (`postfix*/smtpd`) asks for every entry and its parser
/// picks smtpd's. Either way only smtpd's offender is banned.
#[test]
#[ignore = "needs root: kernel test"]
fn a_regex_source_is_followed_in_the_journal() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fake = d.join("journalctl");
    let args = d.join("args");
    std::fs::write(
        &fake,
        format!(
            r#"#!/usr/bin/python3
import json, time, os, sys
with open("{args}", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
ids = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--identifier=")]
def entry(i, ident, addr):
    return {{"__CURSOR": "s=x;i=%d" % i, "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)),
            "_HOSTNAME": "mx", "SYSLOG_IDENTIFIER": ident, "_PID": "7",
            "MESSAGE": "warning: unknown[%s]: SASL LOGIN authentication failed: authentication failure" % addr}}
# The other program's lines first: by the time smtpd's offender is banned,
# they were read.
for i, (ident, addr) in enumerate([("evil", "203.0.113.61"), ("evil", "203.0.113.61"),
                                   ("postfix/smtpd", "203.0.113.60"), ("postfix/smtpd", "203.0.113.60")]):
    if not ids or ident in ids:
        print(json.dumps(entry(i, ident, addr)), flush=True)
os.execvp("sleep", ["sleep", "600"])
"#,
            args = args.display()
        ),
    )
    .unwrap();
    executable(&fake);
    let cfg = d.join("fwctl.toml");
    let entry = |source: &str, set: &str| {
        format!("[[watch]]\nsource = \"{source}\"\njournal = true\nhowmany = 1\nwithin = \"10m\"\nipset = \"{set}\"\nremoveafter = \"1h\"\n")
    };
    std::fs::write(
        &cfg,
        format!(
            "[metrics]\nlisten = \"\"\nwatch_listen = \"\"\n[[source]]\nname = \"smtp-auth\"\nprogram = \"postfix/smtpd\"\nline = 'warning: [-._\\w]+\\[(?P<addr>[0-9a-fA-F:.]+)\\]: SASL \\w+ authentication failed'\nkind = \"sasl-failed\"\n{}{}",
            entry("postfix-sasl", "blacklist"),
            entry("smtp-auth", "throttle-hard")
        ),
    )
    .unwrap();
    apply_force(&lab, &cfg);
    let env = [("FWCTL_JOURNALCTL", fake.to_str().unwrap())];
    let mut w = Watch::start(&lab, &cfg, &env);
    let both = |seen: &[Value]| {
        ["blacklist", "throttle-hard"].iter().all(|set| {
            seen.iter().any(|e| {
                e["event"] == "watch_ban" && e["address"] == "203.0.113.60" && e["set"] == *set
            })
        })
    };
    assert!(w.wait_for(LIMIT, both), "{:#?}", w.seen);
    let seen = w.stop();
    assert!(
        !seen.iter().any(|e| e["address"] == "203.0.113.61"),
        "{seen:#?}"
    );
    for set in ["blacklist", "throttle-hard"] {
        let members = lab.set_members(set);
        assert!(members.contains_key("203.0.113.60"), "{set}: {members:?}");
        assert!(!members.contains_key("203.0.113.61"), "{set}: {members:?}");
    }
    let runs: Vec<Vec<String>> = std::fs::read_to_string(&args)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let ids = |r: &Vec<String>| -> Vec<String> {
        r.iter()
            .filter(|a| a.starts_with("--identifier=") || a.starts_with("--unit="))
            .cloned()
            .collect()
    };
    let mut asked: Vec<Vec<String>> = runs.iter().map(ids).collect();
    asked.sort();
    assert_eq!(
        asked,
        [vec![], vec!["--identifier=postfix/smtpd".to_string()]],
        "{runs:?}"
    );
}
