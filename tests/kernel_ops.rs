//! Kernel tests for day-to-day operation (root, namespaces): `status`,
//! `ban`/`unban`/`list`, drift found and repaired, the reboot path (flush
//! everything, boot apply, bans back with the time they had left), and
//! `doctor` on the real backends.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};

const CONFIG: &str = r#"
[trusted]
networks = ["198.51.100.12", "2001:db8:100::12"]
[[service]]
name = "ssh"
port = 22
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

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Ops {
    lab: Lab,
    _dir: tempfile::TempDir,
    cfg: String,
}

impl Ops {
    fn new() -> Ops {
        let lab = Lab::new();
        let (dir, path) = config(CONFIG);
        let ops = Ops {
            lab,
            _dir: dir,
            cfg: path.to_str().unwrap().to_string(),
        };
        ok(&ops.run(&["apply"]), "apply");
        ops
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut v = vec!["--config", self.cfg.as_str()];
        v.extend_from_slice(args);
        self.lab.fwctl(&v, &[])
    }

    /// `status --json`, and its exit code.
    fn status(&self, extra: &[&str]) -> (Value, i32) {
        let mut args = vec!["status", "--json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status json: {e}: {}", text(&out)));
        (v, out.status.code().unwrap())
    }

    fn timeout(&self, set: &str, member: &str) -> Option<u32> {
        self.lab.set_members(set).get(member).copied().flatten()
    }

    /// `capture --detect-only` running in the background, and the first
    /// line it wrote to stderr.
    fn capture(&self, env: &[(&str, &str)]) -> (std::process::Child, String) {
        let mut child = self
            .lab
            .fwctl_cmd(&["--config", &self.cfg, "capture", "--detect-only"], env)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        (child, line)
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.lab.state_path()).unwrap()).unwrap()
    }
}

fn problems(v: &Value) -> String {
    v["problems"].to_string()
}

#[test]
#[ignore = "needs root: kernel test"]
fn ban_unban_and_list_on_both_families() {
    let host_before = host_firewall();
    let o = Ops::new();
    let _l = o.lab.listen(&[22]);
    let (a4, a6) = src("attacker");
    let (b4, _) = src("benign");
    let (w4, w6) = src("whitelisted");
    assert_eq!(o.lab.reach(a4, 22), Reply::Connected);

    // IPv4 into the default set (blacklist) for the default day.
    let out = ok(&o.run(&["ban", &a4.to_string()]), "ban v4");
    assert!(
        out.contains("banned 198.51.100.14 in blacklist for 1d (until"),
        "{out}"
    );
    let t = o.timeout("blacklist", "198.51.100.14").unwrap();
    assert!((86_300..=86_400).contains(&t), "{t}");
    assert_eq!(o.lab.reach(a4, 22), Reply::Silent);
    assert_eq!(o.lab.reach(b4, 22), Reply::Connected);
    // IPv6: the role name picks the _v6 twin.
    ok(
        &o.run(&[
            "ban",
            &a6.to_string(),
            "--set",
            "throttle-hard",
            "--for",
            "2h",
        ]),
        "ban v6",
    );
    let t = o.timeout("throttle-hard_v6", "2001:db8:100::14").unwrap();
    assert!((7_100..=7_200).contains(&t), "{t}");
    // A ban again sets the new time (it does not keep the old one).
    ok(&o.run(&["ban", &a4.to_string(), "--for", "10m"]), "re-ban");
    assert!(o.timeout("blacklist", "198.51.100.14").unwrap() <= 600);
    // A network into blacklist_v6.
    ok(&o.run(&["ban", "2001:db8:bad::/64"]), "ban net");
    assert!(o
        .lab
        .set_members("blacklist_v6")
        .contains_key("2001:db8:bad::/64"));

    // Refusals: whitelisted addresses (config), the whitelist set, bad input.
    let before: Vec<_> = ["blacklist", "blacklist_v6", "throttle-hard"]
        .iter()
        .map(|s| o.lab.set_members(s))
        .collect();
    for (args, want) in [
        (vec!["ban", &w4.to_string() as &str], "whitelisted"),
        (
            vec!["ban", &w6.to_string() as &str, "--set", "blacklist"],
            "whitelisted",
        ),
        (
            vec!["ban", "203.0.113.9", "--set", "whitelist"],
            "refuses bans",
        ),
        (vec!["ban", "203.0.113.9", "--set", "nosuch"], "unknown set"),
        (
            vec!["ban", "203.0.113.0/24", "--set", "throttle-hard"],
            "hash:ip",
        ),
        (vec!["ban", "not-an-ip"], "not an IPv4 or IPv6"),
        (vec!["ban", "198.51.100.1"], "own address"),
    ] {
        let out = o.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
    let after: Vec<_> = ["blacklist", "blacklist_v6", "throttle-hard"]
        .iter()
        .map(|s| o.lab.set_members(s))
        .collect();
    assert_eq!(before, after, "refused bans change nothing");

    // list: every ban with its time left and its offence count.
    let out = ok(&o.run(&["list", "--json"]), "list");
    let v: Value = serde_json::from_str(&out).unwrap();
    let entries = v["entries"].as_array().unwrap();
    let find = |a: &str| entries.iter().find(|e| e["address"] == a).cloned();
    let e = find("198.51.100.14").unwrap();
    assert_eq!(
        (e["set"].as_str(), e["offences"].as_u64()),
        (Some("blacklist"), Some(2))
    );
    assert!(e["expires_in"].as_u64().unwrap() <= 600);
    let e = find("2001:db8:100::14").unwrap();
    assert_eq!(e["set"], "throttle-hard_v6");
    // The trusted networks show as permanent whitelist members.
    assert!(find("198.51.100.12").unwrap()["expires_in"].is_null());
    let out = ok(&o.run(&["list", "blacklist"]), "list blacklist");
    assert!(
        out.contains("198.51.100.14") && out.contains("2001:db8:bad::/64"),
        "{out}"
    );
    assert!(!out.contains("2001:db8:100::14"), "{out}");
    assert!(text(&o.run(&["list", "nosuch"])).contains("unknown set"));

    // unban: out of the kernel, ended in the state file; twice is an error.
    let out = ok(&o.run(&["unban", &a4.to_string()]), "unban");
    assert!(
        out.contains("unbanned 198.51.100.14 from blacklist"),
        "{out}"
    );
    assert_eq!(o.timeout("blacklist", "198.51.100.14"), None);
    assert_eq!(o.lab.reach(a4, 22), Reply::Connected);
    let out = o.run(&["unban", &a4.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not banned"), "{}", text(&out));
    let out = o.run(&["unban", "2001:db8:bad::5"]);
    assert!(
        text(&out).contains("inside the banned 2001:db8:bad::/64"),
        "{}",
        text(&out)
    );
    let st = o.state();
    let rec = st["bans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addr"] == "198.51.100.14/32")
        .unwrap();
    assert!(rec["until"].as_i64() <= rec["updated"].as_i64(), "{rec}");
    assert_eq!(rec["offences"], 2, "the history stays");
    drop(o);
    assert_eq!(
        host_firewall(),
        host_before,
        "the host firewall is untouched"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn status_reports_drift_and_repair_puts_rules_and_bans_back() {
    let o = Ops::new();
    let _l = o.lab.listen(&[22]);
    let (a4, a6) = src("attacker");
    let (b4, b6) = src("benign");
    ok(&o.run(&["ban", &a4.to_string(), "--for", "1h"]), "ban");
    ok(&o.run(&["ban", &a6.to_string(), "--for", "1h"]), "ban");

    let (v, code) = o.status(&[]);
    assert_eq!((code, v["healthy"].as_bool()), (0, Some(true)), "{v}");
    for r in v["rules"].as_array().unwrap() {
        assert_eq!(r["installed"], true);
        assert_eq!(r["policy"], "DROP");
    }
    let sets = v["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 8);
    let bl = sets.iter().find(|s| s["name"] == "blacklist").unwrap();
    assert_eq!(
        (bl["entries"].as_u64(), bl["bans"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(bl["capacity"].as_u64().unwrap() >= 65_536);
    let wl = sets.iter().find(|s| s["name"] == "whitelist").unwrap();
    assert_eq!(
        (wl["entries"].as_u64(), wl["bans"].as_u64()),
        (Some(1), Some(0)),
        "a config member is no ban"
    );
    assert_eq!(v["soonest_expiries"].as_array().unwrap().len(), 2);
    assert_eq!(v["state"]["active_bans"], 2);
    assert_eq!(v["capture"]["running"], false);
    assert!(v["last_apply"]["at"].is_string());
    let human = ok(&o.run(&["status"]), "status");
    assert!(human.starts_with("fwctl status: OK"), "{human}");

    // Someone runs `iptables -F` (every chain, fwctl's too) and flushes a set.
    o.lab.exec_ok(&o.lab.target, &["iptables", "-F"]);
    o.lab
        .exec_ok(&o.lab.target, &["ipset", "flush", "blacklist"]);
    // The policy stays DROP: the flush cut everyone off, ssh included.
    assert_eq!(o.lab.reach(b4, 22), Reply::Silent);
    let (v, code) = o.status(&[]);
    assert_eq!((code, v["healthy"].as_bool()), (2, Some(false)), "{v}");
    let v4 = &v["rules"][0];
    let missing = v4["missing"].to_string();
    assert!(
        missing.contains("jump at INPUT 1") && missing.contains("-A FWCTL-INPUT"),
        "{missing}"
    );
    assert_eq!(
        v["rules"][1]["missing"].as_array().unwrap().len(),
        0,
        "IPv6 untouched"
    );
    assert_eq!(v["state"]["missing_from_kernel"], 1);
    let p = problems(&v);
    assert!(
        p.contains("IPv4: fwctl's rules changed") && p.contains("status --repair"),
        "{p}"
    );
    // A corrupt state file needs attention too (exit 2), with its fix.
    let good_state = std::fs::read(o.lab.state_path()).unwrap();
    std::fs::write(o.lab.state_path(), b"{ not json").unwrap();
    let (cv, code) = o.status(&[]);
    assert_eq!(code, 2, "{cv}");
    assert!(problems(&cv).contains("is corrupt"), "{cv}");
    std::fs::write(o.lab.state_path(), good_state).unwrap();
    // The fix acts on the same files: the --config given and the state file
    // (named through FWCTL_STATE, which sudo would drop).
    let fix = format!(
        "fix: sudo fwctl --config {} --state {} status --repair",
        o.cfg,
        o.lab.state_path().display()
    );
    assert!(p.contains(&fix), "{fix} in {p}");
    let human = text(&o.run(&["status"]));
    assert!(
        human.contains("DRIFT") && human.contains("- jump at INPUT 1"),
        "{human}"
    );

    // An edit of the rules (not a flush) is drift too.
    let (v, _) = {
        ok(&o.run(&["status", "--repair"]), "repair");
        o.lab.exec_ok(
            &o.lab.target,
            &[
                "ip6tables",
                "-I",
                "FWCTL-INPUT",
                "1",
                "-s",
                "2001:db8:100::14",
                "-j",
                "ACCEPT",
            ],
        );
        o.status(&[])
    };
    assert!(
        v["rules"][1]["extra"]
            .to_string()
            .contains("2001:db8:100::14"),
        "{v}"
    );

    // Repair: an apply that also restores the state file's bans.
    let (v, code) = o.status(&["--repair"]);
    assert_eq!((code, v["healthy"].as_bool()), (0, Some(true)), "{v}");
    let t = o.timeout("blacklist", "198.51.100.14").unwrap();
    assert!(
        (3_500..=3_600).contains(&t),
        "restored with its time left: {t}"
    );
    assert_eq!(o.lab.reach(a4, 22), Reply::Silent);
    assert_eq!(o.lab.reach(a6, 22), Reply::Silent);
    assert_eq!(o.lab.reach(b4, 22), Reply::Connected);
    assert_eq!(o.lab.reach(b6, 22), Reply::Connected);

    // A config edited since the last apply is told apart from drift.
    std::fs::write(
        &o.cfg,
        format!("{CONFIG}[[service]]\nname = \"web\"\nport = 80\n"),
    )
    .unwrap();
    let (v, code) = o.status(&[]);
    assert_eq!(code, 2);
    assert_eq!(v["last_apply"]["config_changed"], true);
    assert!(problems(&v).contains("changed since the last apply"), "{v}");
}

#[test]
#[ignore = "needs root: kernel test"]
fn reboot_path_restores_unexpired_bans_with_their_remaining_time() {
    let o = Ops::new();
    let _l = o.lab.listen(&[22]);
    let (a4, a6) = src("attacker");
    let (t4, _) = src("throttled");
    ok(&o.run(&["ban", &a4.to_string(), "--for", "1h"]), "ban");
    ok(
        &o.run(&[
            "ban",
            &a6.to_string(),
            "--set",
            "throttle-soft",
            "--for",
            "30m",
        ]),
        "ban",
    );
    ok(&o.run(&["ban", &t4.to_string(), "--for", "5m"]), "ban");

    // Shut down, and come back 10 minutes later: the 5-minute ban has ended.
    let mut st = o.state();
    for r in st["bans"].as_array_mut().unwrap() {
        for k in ["since", "until", "updated"] {
            r[k] = (r[k].as_i64().unwrap() - 600).into();
        }
    }
    std::fs::write(o.lab.state_path(), st.to_string()).unwrap();
    // The reboot: the kernel forgets every rule and set.
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
            o.lab.exec_ok(&o.lab.target, &v);
        }
    }
    o.lab.exec_ok(&o.lab.target, &["ipset", "destroy"]);
    assert!(o.lab.set_names().is_empty());
    assert_eq!(o.lab.reach(a4, 22), Reply::Connected);

    // The boot apply (what fwctl-apply.service runs).
    let out = o.run(&["apply"]);
    let err = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("0 bans kept, 2 restored from the state file"),
        "{err}"
    );
    let t = o.timeout("blacklist", "198.51.100.14").unwrap();
    assert!((2_900..=3_000).contains(&t), "1h ban, 10 min later: {t}");
    let t = o.timeout("throttle-soft_v6", "2001:db8:100::14").unwrap();
    assert!((1_100..=1_200).contains(&t), "30m ban, 10 min later: {t}");
    assert_eq!(
        o.timeout("blacklist", "198.51.100.13"),
        None,
        "expired: not restored"
    );
    assert_eq!(o.lab.reach(a4, 22), Reply::Silent);
    let (v, code) = o.status(&[]);
    assert_eq!(code, 0, "{v}");

    // A state file that cannot be read does not stop the boot apply: the
    // ruleset goes in (with a warning), the host is never left open.
    std::fs::remove_file(o.lab.state_path()).unwrap();
    std::fs::create_dir(o.lab.state_path()).unwrap();
    o.lab.exec_ok(&o.lab.target, &["iptables", "-F"]);
    let out = o.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("applying without restoring its bans"),
        "{}",
        text(&out)
    );
    assert_eq!(o.lab.reach(a4, 22), Reply::Silent);
}

#[test]
#[ignore = "needs root: kernel test"]
fn status_shows_the_last_scan_and_a_running_capture() {
    let o = Ops::new();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/sample-iptables.log");
    let scan = [
        "scan",
        "--log",
        sample.to_str().unwrap(),
        "--now",
        "2026-11-21T12:00:00Z",
        "--type",
        "tcp",
        "--howmany",
        "50",
        "--within",
        "30m",
        "--ipset",
        "throttle-hard",
        "--removeafter",
        "2h",
    ];
    ok(&o.run(&scan), "scan");
    let (v, _) = o.status(&[]);
    let s = &v["scans"][0];
    assert_eq!(
        (s["rule"].as_str(), s["ipset"].as_str()),
        (Some("blocked"), Some("throttle-hard"))
    );
    assert!(s["added"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["ago_secs"].as_i64().unwrap() < 60);
    // The scan's bans are in the state file too, for the reboot path.
    assert_eq!(v["state"]["active_bans"].as_u64(), s["added"].as_u64());

    let (mut child, line) = o.capture(&[]);
    assert!(line.contains("fwctl: capture on"), "{line}");
    let (v, _) = o.status(&[]);
    assert_eq!(v["capture"]["running"], true, "{v}");
    // A second capture is refused while the first runs.
    let out = o.run(&["capture", "--detect-only"]);
    assert!(text(&out).contains("already running"), "{}", text(&out));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let (v, _) = o.status(&[]);
    assert_eq!(v["capture"]["running"], false);

    // A run directory that does not exist yet is made (it once read as
    // "already running").
    let fresh = o.lab.run_dir.path().join("not/yet");
    let (mut child, line) = o.capture(&[("FWCTL_RUN_DIR", fresh.to_str().unwrap())]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert!(line.contains("fwctl: capture on"), "{line}");
    assert!(fresh.join("capture.pid").exists());
}

#[test]
#[ignore = "needs root: kernel test"]
fn doctor_reads_the_backends_and_the_log_mount() {
    let lab = Lab::new();
    let (_d, cfg) = config(CONFIG);
    let cfg = cfg.to_str().unwrap();
    // A log on tmpfs (/dev/shm) that was just written.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let log = shm.path().join("iptables.log");
    std::fs::write(&log, "x\n").unwrap();
    let doctor = |log: &Path, env: &[(&str, &str)]| -> (Value, i32) {
        let out = lab.fwctl(
            &[
                "--config",
                cfg,
                "doctor",
                "--json",
                "--log",
                log.to_str().unwrap(),
            ],
            env,
        );
        (
            serde_json::from_slice(&out.stdout).unwrap(),
            out.status.code().unwrap(),
        )
    };
    let level = |v: &Value, name: &str| -> (String, String) {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        (
            c["level"].as_str().unwrap().to_string(),
            c["detail"].as_str().unwrap().to_string(),
        )
    };
    let (v, code) = doctor(&log, &[]);
    assert_eq!(
        code, 2,
        "rsyslog rule, cron and boot apply are not installed on this host"
    );
    let version = lab.exec_ok(&lab.target, &["iptables", "-V"]);
    let want = if version.contains("nf_tables") {
        "nf_tables"
    } else {
        "legacy"
    };
    let (l, d) = level(&v, "backend");
    assert_eq!(l, "ok", "{d}");
    assert!(d.contains(&format!("iptables is {want}")), "{d}");
    for name in [
        "root",
        "config",
        "tools",
        "ipset",
        "tmpfs",
        "log",
        "state file",
    ] {
        assert_eq!(level(&v, name).0, "ok", "{name}: {}", level(&v, name).1);
    }
    // A log directory that is not tmpfs fails the check.
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fstype = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(disk.path())
        .output()
        .unwrap();
    if String::from_utf8_lossy(&fstype.stdout).trim() != "tmpfs" {
        let (v, _) = doctor(&disk.path().join("iptables.log"), &[]);
        assert_eq!(level(&v, "tmpfs").0, "fail");
        assert_eq!(level(&v, "log").0, "fail", "no log file");
    }
    // Rules of another tool in the other backend: a warning naming it.
    if want == "nf_tables" && which::which("iptables-legacy").is_ok() {
        lab.exec_ok(
            &lab.target,
            &[
                "iptables-legacy",
                "-A",
                "INPUT",
                "-s",
                "192.0.2.7",
                "-j",
                "ACCEPT",
            ],
        );
        let (v, _) = doctor(&log, &[]);
        let (l, d) = level(&v, "backend");
        assert_eq!(l, "warn", "{d}");
        assert!(d.contains("legacy backend also has 1 rules"), "{d}");
        // fwctl installed with the legacy tools while the system uses nft:
        // its bans would go where nothing reads them. Doctor says so.
        let legacy = [
            ("FWCTL_IPTABLES_SAVE", "iptables-legacy-save"),
            ("FWCTL_IPTABLES_RESTORE", "iptables-legacy-restore"),
            ("FWCTL_IP6TABLES_SAVE", "ip6tables-legacy-save"),
            ("FWCTL_IP6TABLES_RESTORE", "ip6tables-legacy-restore"),
        ];
        let out = lab.fwctl(&["--config", cfg, "apply"], &legacy);
        assert!(out.status.success(), "{}", text(&out));
        let (v, _) = doctor(&log, &[]);
        let (l, d) = level(&v, "backend");
        assert_eq!(l, "fail", "{d}");
        assert!(d.contains("chains are in the legacy backend"), "{d}");
    }
}
