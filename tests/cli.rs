//! CLI tests that need no root: the binary's arguments, messages and exit codes.
//! When the suite itself runs as root (CI), commands that must behave as for
//! an ordinary user run as `nobody`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn fwctl(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("FWCTL_CONFIG").env_remove("FWCTL_STATE");
    c.env(
        "FWCTL_RUN_DIR",
        std::env::temp_dir().join(format!("fwctl-cli-{}", std::process::id())),
    );
    c
}

/// The same command, as an unprivileged user even when the tests run as root.
fn as_user(mut c: Command) -> Output {
    if unsafe { libc::geteuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "error must be one line: {err:?}"
    );
    assert!(err.starts_with("fwctl: error: "), "{err}");
    err
}

#[test]
fn dry_run_of_the_example_needs_no_root() {
    let out = as_user(fwctl(&[
        "apply",
        "--dry-run",
        "--config",
        "rules/fwctl.toml",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("not root: the kernel was not read"), "{s}");
    for needle in [
        "# ---- ipset restore ----",
        "add fwctl-new-1 203.0.113.0/28",
        "add fwctl-new-5 2001:db8:bad::/48",
        "-I INPUT 1 -j FWCTL-INPUT",
        "--dport 22 -m hashlimit --hashlimit-upto 10/min",
        "--log-prefix \"IP6TABLES-BLOCKED: \"",
    ] {
        assert!(s.contains(needle), "missing {needle:?}");
    }
    // The dry-run output is exactly the pinned golden text (less the state note).
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fwctl.txt"),
    )
    .unwrap();
    let strip = |t: &str| t.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&s), strip(&golden));
}

#[test]
fn apply_without_root_says_so_and_changes_nothing() {
    let out = as_user(fwctl(&["apply", "--config", "rules/fwctl.toml"]));
    let err = one_line_error(&out);
    assert!(
        err.contains("must run as root") && err.contains("fix: sudo"),
        "{err}"
    );
}

#[test]
fn bad_config_names_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[[service]]\nname = \"x\"\nport = 0\n", ":3:", "port"),
        ("mode = \"firewall\"\nfoo = 1\n", ":2:", "unknown field"),
        ("[trusted]\nnetworks = [\"192.0.2.1/33\"]\n", ":2:", "not an IP address"),
        ("[sets]\nwhitelist = \"name with space\"\n", ":2:", "fix:"),
        ("[logging.prefixes]\nblocked = { v4 = \"A-VERY-LONG-LOG-PREFIX-THAT-WONT-FIT: \", v6 = \"x\" }\n", ":2:", "29"),
        ("[icmp]\nrate = \"5 per second\"\n", ":2:", "rate"),
        ("this is not toml\n", ":1:", ""),
    ];
    for (i, (body, line, word)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&p, body).unwrap();
        let out = fwctl(&["apply", "--dry-run", "--config", p.to_str().unwrap()])
            .output()
            .unwrap();
        let err = one_line_error(&out);
        assert!(err.contains(&format!("c{i}.toml{line}")), "case {i}: {err}");
        assert!(err.contains(word), "case {i}: {err}");
        assert!(out.stdout.is_empty(), "nothing printed to install on error");
    }
}

#[test]
fn missing_config_says_how_to_fix() {
    let out = fwctl(&["apply", "--dry-run", "--config", "/nonexistent/fwctl.toml"])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("/nonexistent/fwctl.toml") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn unreadable_blacklist_feed_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[blacklist]\nfiles = [\"feed.txt\"]\n").unwrap();
    let out = fwctl(&["apply", "--dry-run", "--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("feed.txt") && err.contains("cannot read blacklist feed"),
        "{err}"
    );
    std::fs::write(dir.path().join("feed.txt"), "192.0.2.1\n192.0.2.999\n").unwrap();
    let out = fwctl(&["apply", "--dry-run", "--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("feed.txt:2:"), "{err}");
}

#[test]
fn confirm_window_is_validated() {
    for bad in ["0s", "banana", "2h"] {
        let out = fwctl(&["apply", "--confirm", bad, "--config", "rules/fwctl.toml"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(bad), "{}", text(&out.stderr));
    }
}

#[test]
fn confirm_with_nothing_waiting_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = fwctl(&["confirm"])
        .env("FWCTL_RUN_DIR", dir.path())
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("nothing to confirm"), "{err}");
}

#[test]
fn help_explains_the_commands() {
    let out = fwctl(&["--help"]).output().unwrap();
    let s = text(&out.stdout);
    for cmd in ["apply", "confirm", "remove"] {
        assert!(s.contains(cmd), "{s}");
    }
    let out = fwctl(&["apply", "--help"]).output().unwrap();
    let s = text(&out.stdout);
    assert!(
        s.contains("--dry-run") && s.contains("--confirm") && s.contains("Docker"),
        "{s}"
    );
}

const SAMPLE: &str = "rules/sample-iptables.log";

/// The scan of the shipped sample that the README's first command runs,
/// with some flags' values replaced and more arguments added.
fn scan_with(set: &[(&str, &str)], extra: &[&str]) -> Command {
    let mut args: Vec<(&str, &str)> = vec![
        ("--config", "rules/fwctl.toml"),
        ("--log", SAMPLE),
        ("--now", "2026-11-21T12:00:00Z"),
        ("--rule", "blocked"),
        ("--type", "tcp"),
        ("--howmany", "50"),
        ("--within", "30m"),
        ("--ipset", "throttle-hard"),
        ("--removeafter", "2h"),
    ];
    for (flag, value) in set {
        match args.iter_mut().find(|(f, _)| f == flag) {
            Some(a) => a.1 = value,
            None => args.push((flag, value)),
        }
    }
    let mut all = vec!["scan"];
    for (f, v) in &args {
        all.extend([*f, *v]);
    }
    all.extend_from_slice(extra);
    fwctl(&all)
}

fn sample_scan(extra: &[&str]) -> Command {
    scan_with(&[], extra)
}

/// The spec the shipped sample was written with (see README).
fn sample_spec() -> fwctl::testing::loggen::Spec {
    fwctl::testing::loggen::Spec {
        bytes: 256 << 10,
        end: 1_795_262_400,
        span: 6 * 3600,
        sources: 300,
        offenders: 4,
        howmany: 50,
        within: 1800,
        seed: 7,
        ..Default::default()
    }
}

#[test]
fn the_shipped_sample_is_what_the_generator_writes() {
    let mut log = Vec::new();
    fwctl::testing::loggen::generate(&sample_spec(), &mut log).unwrap();
    let shipped = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE)).unwrap();
    assert!(
        log == shipped,
        "{SAMPLE} is stale; regenerate it with: cargo run --release --example loggen -- --size 256K --sources 300 --offenders 4 --howmany 50 --within 30m --span 6h --end 2026-11-21T12:00:00Z --seed 7 --out {SAMPLE}"
    );
}

/// The offenders of a scan's JSON report: (address, hits, action).
fn offender_actions(v: &serde_json::Value) -> Vec<(String, u64, String)> {
    let mut got: Vec<(String, u64, String)> = v["offenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["address"].as_str().unwrap().to_string(),
                o["hits"].as_u64().unwrap(),
                o["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    got
}

/// The shipped config blacklists the networks the sample's attackers come
/// from: they are dropped already, and a scan says so instead of adding them
/// to another set.
#[test]
fn sample_offenders_inside_the_shipped_blacklist_are_already_blocked() {
    let mut log = Vec::new();
    let m = fwctl::testing::loggen::generate(&sample_spec(), &mut log).unwrap();
    let out = as_user(sample_scan(&["--dryrun", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut want: Vec<(String, u64, String)> = m
        .offenders
        .iter()
        .map(|(a, n)| (a.to_string(), *n, "already blocked".to_string()))
        .collect();
    want.sort();
    assert_eq!(offender_actions(&v), want);
    let s = text(&as_user(sample_scan(&["--dryrun"])).stdout);
    assert!(
        s.contains("already blocked by blacklist 203.0.113.0/28"),
        "{s}"
    );
    assert!(
        s.contains("already blocked by blacklist_v6 2001:db8:bad::/48"),
        "{s}"
    );
    assert!(!s.contains("would add"), "{s}");
}

/// `scan --explain ADDRESS` prints exactly the lines the run counted for
/// an address (its count is the report's), and for a network its members'.
#[test]
fn scan_explain_prints_the_lines_that_counted() {
    let out = as_user(sample_scan(&["--dryrun", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &v["offenders"][0];
    let (addr, hits) = (
        first["address"].as_str().unwrap(),
        first["hits"].as_u64().unwrap(),
    );
    let out = as_user(sample_scan(&["--explain", addr, "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["hits"].as_u64(), Some(hits), "{e:#}");
    let lines = e["lines"].as_array().unwrap();
    assert_eq!(lines.len() as u64, hits);
    assert!(lines
        .iter()
        .all(|l| l.as_str().unwrap().contains(&format!("SRC={addr} "))
            && l.as_str().unwrap().contains("PROTO=TCP")));
    let out = as_user(sample_scan(&["--explain", "2001:db8:ffff::/48"]));
    assert!(text(&out.stdout).starts_with("2001:db8:ffff::/48: 0 hits within 2026-11-21T11:30:00Z .. 2026-11-21T12:00:00Z (not over --howmany 50)"), "{}", text(&out.stdout));
    let out = as_user(sample_scan(&["--explain", "nonsense"]));
    assert!(!out.status.success() && one_line_error(&out).contains("--explain nonsense"));
}

#[test]
fn scan_dryrun_of_the_sample_needs_no_root_and_finds_exactly_the_offenders() {
    let mut log = Vec::new();
    let m = fwctl::testing::loggen::generate(&sample_spec(), &mut log).unwrap();
    // The shipped config without its blacklist.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fwctl.toml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/fwctl.toml"))
            .unwrap();
    let start = shipped.find("[blacklist]").unwrap();
    let end = start + shipped[start..].find("\n[[service]]").unwrap();
    std::fs::write(&cfg, format!("{}{}", &shipped[..start], &shipped[end..])).unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = as_user(scan_with(&[("--config", cfg)], &["--dryrun", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = offender_actions(&v);
    let mut want: Vec<(String, u64, String)> = m
        .offenders
        .iter()
        .map(|(a, n)| (a.to_string(), *n, "would add".to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Only the window's part of the file is read.
    let read = v["lines_read"].as_u64().unwrap();
    assert!(read > 0 && read < m.lines, "{read} of {}", m.lines);
    assert!(v["notes"][0]
        .as_str()
        .unwrap()
        .contains("not read (not root"));

    // The human summary says the same, one offender a line.
    let out = as_user(scan_with(&[("--config", cfg)], &["--dryrun"]));
    let s = text(&out.stdout);
    for (a, n) in &m.offenders {
        let row = s
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{a} ")))
            .unwrap_or_else(|| panic!("{a} in {s}"));
        assert!(
            row.contains(&n.to_string()) && row.contains("would add to throttle-hard"),
            "{row}"
        );
    }
    assert!(s.contains("lines: ") && s.contains("matched"), "{s}");
}

#[test]
fn scan_reads_stdin_and_the_same_offenders_come_out() {
    let file = as_user(sample_scan(&["--dryrun", "--json"]));
    let mut c = scan_with(&[("--log", "-")], &["--dryrun", "--json"]);
    c.stdin(std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE)).unwrap());
    let piped = as_user(c);
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    let a: serde_json::Value = serde_json::from_slice(&file.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&piped.stdout).unwrap();
    assert_eq!(a["offenders"], b["offenders"]);
}

#[test]
fn scan_without_root_or_dryrun_is_refused() {
    let out = as_user(sample_scan(&[]));
    let err = one_line_error(&out);
    assert!(
        err.contains("must run as root") && err.contains("--dryrun"),
        "{err}"
    );
}

#[test]
fn scan_refuses_bad_durations_and_names() {
    for (flag, value, want) in [
        ("--within", "0s", "is zero"),
        ("--removeafter", "30d", "largest ipset timeout, 2147483s"),
        ("--within", "soon", "not a duration"),
        ("--howmany", "many", "invalid value"),
        ("--type", "sctp", "invalid value"),
    ] {
        let out = as_user(scan_with(&[(flag, value)], &["--dryrun"]));
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{flag} {value}: {err}");
    }
    for (flag, value, want) in [
        ("--rule", "nosuch", "no such rule"),
        ("--ipset", "whitelist", "whitelist set"),
        ("--ipset", "bad name", "--ipset bad name"),
        ("--now", "yesterday", "not a timestamp"),
        ("--log", "/nonexistent/iptables.log", "rsyslog"),
        ("--log", "/", "is a directory"),
        ("--config", "/nonexistent.toml", "nonexistent.toml"),
    ] {
        let err = one_line_error(&as_user(scan_with(&[(flag, value)], &["--dryrun"])));
        assert!(err.contains(want), "{flag} {value}: {err}");
    }
}

#[test]
fn scan_survives_garbage_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.log");
    let mut bytes: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    bytes.extend_from_slice(
        b"\n2026-11-21T11:59:00Z h kernel: IPTABLES-BLOCKED: IN=e OUT= SRC=203.0.113.9\n",
    );
    bytes.extend_from_slice(b"2026-11-21T11:59:00Z h kernel: IPTABLES-BLOCKED: IN=e OUT= SRC=203.0.113.9 DST=192.0.2.1 PROTO=TCP SPT=1 DPT=22 \xff\n");
    std::fs::write(&path, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = path.to_string_lossy().into_owned();
    let out = as_user(scan_with(
        &[("--log", &log), ("--howmany", "0")],
        &["--dryrun", "--json"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["offenders"].as_array().unwrap().len(), 0);
    assert_eq!(v["lines_malformed"].as_u64(), Some(2), "{v}");
    let reasons: Vec<&str> = v["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"not UTF-8") && reasons.iter().any(|r| r.contains("SRC")),
        "{reasons:?}"
    );
}

/// Bad input to the day-to-day commands is refused with one line naming the
/// problem and the fix, before root or the kernel is needed.
#[test]
fn ban_unban_list_refuse_bad_input_before_touching_anything() {
    let long = "x".repeat(201);
    let cases: [(&[&str], &str); 12] = [
        (&["ban", "203.0.113.300"], "is not an IPv4 or IPv6 address"),
        (
            &["ban", "203.0.113.5", "--reason", &long],
            "--reason is longer than 200 bytes; fix:",
        ),
        (&["ban", "example.com"], "fix: write e.g. 203.0.113.5"),
        (
            &["ban", "203.0.113.5/24"],
            "host bits set; fix: write the network as 203.0.113.0/24",
        ),
        (
            &["ban", "203.0.113.5", "--set", "nosuch"],
            "unknown set \"nosuch\"; fix:",
        ),
        (
            &["ban", "203.0.113.5", "--set", "whitelist"],
            "refuses bans",
        ),
        (
            &["ban", "2001:db8::5", "--set", "whitelist_v6"],
            "refuses bans",
        ),
        (
            &["ban", "203.0.113.5", "--set", "blacklist_v6"],
            "is the IPv6 set but 203.0.113.5 is IPv4",
        ),
        (&["ban", "127.0.0.1"], "loopback"),
        (&["unban", "nonsense"], "is not an IPv4 or IPv6 address"),
        (&["list", "nosuch"], "unknown set"),
        (
            &["ban", "203.0.113.5", "--for", "30d"],
            "largest ipset timeout",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["--config", "rules/fwctl.toml"];
        all.extend_from_slice(args);
        let out = as_user(fwctl(&all));
        let err = if args.contains(&"--for") {
            // clap's own message for a bad value: several lines, exit 2.
            assert_eq!(out.status.code(), Some(2));
            text(&out.stderr)
        } else {
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            one_line_error(&out)
        };
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// An address in the config's trusted networks is never banned.
#[test]
fn a_whitelisted_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[trusted]\nnetworks = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]\n",
    )
    .unwrap();
    for addr in [
        "192.0.2.44",
        "2001:db8:1::9",
        "192.0.0.0/16",
        "::ffff:192.0.2.44",
    ] {
        let out = as_user(fwctl(&["--config", cfg.to_str().unwrap(), "ban", addr]));
        let err = one_line_error(&out);
        assert!(err.contains("is whitelisted (trusted network"), "{err}");
    }
}

/// Commands that read or change the kernel say how to get root.
#[test]
fn status_ban_list_doctor_without_root() {
    for args in [
        &["status"][..],
        &["ban", "203.0.113.5"],
        &["unban", "203.0.113.5"],
        &["list"],
    ] {
        let mut all = vec!["--config", "rules/fwctl.toml"];
        all.extend_from_slice(args);
        let err = one_line_error(&as_user(fwctl(&all)));
        assert!(
            err.contains("root") && err.contains("fix: sudo fwctl"),
            "{err}"
        );
    }
    // doctor runs every check anyway and says root is missing.
    let out = as_user(fwctl(&["--config", "rules/fwctl.toml", "doctor"]));
    assert_eq!(out.status.code(), Some(2));
    let s = text(&out.stdout);
    assert!(
        s.contains("FAIL  root") && s.contains("fix: sudo fwctl --config rules/fwctl.toml doctor"),
        "{s}"
    );
    assert!(s.contains("ok    config"), "{s}");
    // The next step after doctor: selftest, with the same files.
    assert!(
        s.contains("hint: sudo fwctl --config rules/fwctl.toml selftest proves the rules"),
        "{s}"
    );
    // selftest needs root to build its namespaces: exit 2 (it could not
    // run), one line with the fix, nothing on stdout.
    let out = as_user(fwctl(&["--config", "rules/fwctl.toml", "selftest"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = one_line_error(&out);
    assert!(
        err.contains("selftest could not run")
            && err.contains("fix: sudo fwctl --config rules/fwctl.toml selftest"),
        "{err}"
    );
    let out = as_user(fwctl(&[
        "--config",
        "/nonexistent.toml",
        "doctor",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "config")
        .unwrap();
    assert_eq!(config["level"], "fail");
}

/// Completions and man pages come from the clap definitions: every
/// subcommand is in them.
#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    let subs = [
        "apply", "scan", "capture", "status", "ban", "unban", "list", "doctor", "selftest",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let out = fwctl(&["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let s = text(&out.stdout);
        for sub in subs {
            assert!(s.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(s.contains("removeafter") && s.contains("repair"), "{shell}");
    }
    let out = fwctl(&["man"]).output().unwrap();
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH fwctl 8"),
        "{page}"
    );
    for sub in subs {
        assert!(
            page.contains(&format!("fwctl\\-{sub}")),
            "man page lacks {sub}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = fwctl(&["man", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for sub in subs {
        let p = dir.path().join(format!("fwctl-{sub}.8"));
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.contains(&format!(".TH fwctl-{sub} 8")), "{}", p.display());
    }
    // man(1) renders it without complaint, where man is installed.
    if let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("fwctl-ban.8"))
        .env("MANWIDTH", "80")
        .output()
    {
        if out.status.success() {
            assert!(text(&out.stdout).contains("whitelist"));
        }
    }
}

/// The design card's own command, on a host without /etc/fwctl/fwctl.toml:
/// it runs on the built-in defaults, says so in one line, finds the sample's
/// offenders, and says the window lies after the log with the --now to use.
#[test]
fn the_design_cards_command_runs_on_a_fresh_host() {
    assert!(
        !Path::new("/etc/fwctl/fwctl.toml").exists(),
        "this test needs a host without /etc/fwctl/fwctl.toml"
    );
    let args = [
        "scan",
        "--rule",
        "blocked",
        "--howmany",
        "500",
        "--within",
        "30m",
        "--ipset",
        "blacklist",
        "--removeafter",
        "1h",
        "--dryrun",
        "--log",
        SAMPLE,
    ];
    let out = as_user(fwctl(&args));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("built-in defaults"), "{err}");
    let s = text(&out.stdout);
    let note = s
        .lines()
        .find(|l| l.starts_with("note: the log ends at"))
        .unwrap_or_else(|| panic!("{s}"));
    // The sample's last line is at 2026-11-21T11:59:56Z.
    let end = "2026-11-21T11:59:56Z";
    assert!(
        note.starts_with(&format!("note: the log ends at {end}, "))
            && note.ends_with(&format!(
                " days before the window; to audit an old log add --now {end}"
            )),
        "{note}"
    );
    // With that --now, the built-in defaults (no blacklist) would ban the
    // sample's four offenders.
    let mut args = args.to_vec();
    args[4] = "50";
    args.extend(["--now", "2026-11-21T12:00:00Z", "--json"]);
    let out = as_user(fwctl(&args));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = offender_actions(&v);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|o| o.2 == "would add"), "{got:?}");
}

#[test]
fn apply_without_a_config_shows_the_defaults_but_installs_nothing() {
    assert!(!Path::new("/etc/fwctl/fwctl.toml").exists());
    let out = as_user(fwctl(&["apply", "--dry-run"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("built-in defaults"), "{err}");
    assert!(
        err.contains("no [[service]] and no [trusted] networks"),
        "the lock-out warning: {err}"
    );
    let s = text(&out.stdout);
    assert!(
        s.contains("-A FWCTL-INPUT -j FWCTL-BLOCK") && !s.contains("--dport"),
        "{s}"
    );
    // A real apply refuses (as root too: it checks before anything else).
    for user in [true, false] {
        let c = fwctl(&["apply"]);
        let out = if user {
            as_user(c)
        } else {
            {
                let mut c = c;
                c.output().unwrap()
            }
        };
        let err = one_line_error(&out);
        assert!(
            err.contains("no config")
                && err.contains("fix: cp rules/fwctl.toml /etc/fwctl/fwctl.toml"),
            "{err}"
        );
    }
}

#[test]
fn fwctl_config_names_the_config_and_a_named_file_must_exist() {
    let by_flag = as_user(fwctl(&[
        "apply",
        "--dry-run",
        "--config",
        "rules/fwctl.toml",
    ]));
    let mut c = fwctl(&["apply", "--dry-run"]);
    c.env("FWCTL_CONFIG", "rules/fwctl.toml");
    let by_env = as_user(c);
    assert!(by_env.status.success(), "{}", text(&by_env.stderr));
    assert_eq!(by_env.stdout, by_flag.stdout);
    let mut c = fwctl(&["apply", "--dry-run"]);
    c.env("FWCTL_CONFIG", "/nonexistent/fw.toml");
    let err = one_line_error(&as_user(c));
    assert!(err.contains("/nonexistent/fw.toml"), "{err}");
}

/// Output piped into a reader that stops early ends the run quietly: no
/// "Broken pipe", no panic, exit 0.
#[test]
fn output_piped_into_head_never_errors() {
    use std::io::Read;
    for args in [
        &["man"][..],
        &["completions", "fish"],
        &["completions", "bash"],
        &["apply", "--dry-run", "--config", "rules/fwctl.toml"],
    ] {
        for _ in 0..10 {
            let mut c = fwctl(args);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().unwrap();
            let mut first = [0u8; 16];
            child
                .stdout
                .as_mut()
                .unwrap()
                .read_exact(&mut first)
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            assert_eq!(text(&out.stderr), "", "{args:?}");
            assert!(out.status.success(), "{args:?}: {:?}", out.status);
        }
    }
}

#[test]
fn help_and_man_pages_keep_each_example_on_its_line() {
    let out = fwctl(&["ban", "--help"]).output().unwrap();
    let s = text(&out.stdout);
    for ex in [
        "  fwctl ban 203.0.113.5\n",
        "  fwctl ban 2001:db8:bad::/64 --for 7d\n",
        "  fwctl ban 203.0.113.5 --set throttle-hard --for 2h\n",
    ] {
        assert!(s.contains(ex), "{ex:?} in {s}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = fwctl(&["man", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = std::fs::read_to_string(dir.path().join("fwctl-ban.8")).unwrap();
    let ex = page.find(".SH EXAMPLES").expect("an EXAMPLES section");
    let lines: Vec<&str> = page[ex..].lines().collect();
    assert!(lines.contains(&".nf"), "{page}");
    assert!(lines.contains(&"fwctl ban 203.0.113.5"), "{page}");
    assert!(
        lines.contains(&"fwctl ban 2001:db8:bad::/64 \\-\\-for 7d"),
        "{page}"
    );
    // The synopsis shows the global options.
    let syn = &page[page.find(".SH SYNOPSIS").unwrap()..page.find(".SH DESCRIPTION").unwrap()];
    assert!(syn.contains("config") && syn.contains("state"), "{syn}");
}

#[test]
fn refusals_read_right() {
    let err = one_line_error(&as_user(fwctl(&[
        "--config",
        "rules/fwctl.toml",
        "ban",
        "224.0.0.1",
    ])));
    assert!(
        err.contains("224.0.0.1 is never banned (not a unicast address)"),
        "{err}"
    );
    assert!(!err.contains("is a not"), "{err}");
}

/// `fwctl fleet keygen`: a private key file (mode 600, never over another)
/// and the public half with the lines to paste; a key file others may read,
/// a peer key that is not a key, a minimum prefix out of range or this
/// host's own peer key not matching its key file are refused with the fix.
#[test]
fn fleet_keys_are_made_private_and_bad_fleet_settings_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    let out = fwctl(&["fleet", "keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let public = said
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .to_string();
    assert_eq!(public.len(), 44, "{said}");
    assert!(said.contains(&format!("= \"{public}\"")), "{said}");
    assert!(
        said.contains(&format!("key_file = \"{}\"", key.display())),
        "{said}"
    );
    let secret = std::fs::read_to_string(&key).unwrap();
    assert!(
        !said.contains(secret.trim()),
        "the private key is never printed"
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = fwctl(&["fleet", "keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(one_line_error(&again).contains("exists; fix:"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), secret);

    let config = |extra: &str| {
        let p = dir.path().join("fleet.toml");
        std::fs::write(
            &p,
            format!(
                "[fleet]\nredis = \"redis://203.0.113.100:6379/0\"\nhost = \"web-1\"\nkey_file = \"{}\"\n{extra}",
                key.display()
            ),
        )
        .unwrap();
        p
    };
    let err = |args: &[&str], extra: &str| {
        let p = config(extra);
        let mut a = vec!["--config", p.to_str().unwrap()];
        a.extend_from_slice(args);
        one_line_error(&fwctl(&a).output().unwrap())
    };
    let e = err(&["apply", "--dry-run"], "min_prefix_v6 = 200\n");
    assert!(
        e.contains("min_prefix_v6 = 200; fix: a prefix length from 0 to 128"),
        "{e}"
    );
    let e = err(
        &["apply", "--dry-run"],
        "[fleet.peers]\n\"web-2\" = \"AAAA\"\n",
    );
    assert!(
        e.contains("\"web-2\" is 3 bytes") && e.contains("fix:"),
        "{e}"
    );
    // This host listed with another key than its own.
    let other = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=";
    let e = err(
        &["sync"],
        &format!("[fleet.peers]\n\"web-1\" = \"{other}\"\n"),
    );
    assert!(e.contains(&format!("set it to \"{public}\"")), "{e}");
    // A key file the group may read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = err(&["sync"], "");
    assert!(e.contains("chmod 600") && !e.contains(secret.trim()), "{e}");
    // purge needs a fleet.
    let none = dir.path().join("none.toml");
    std::fs::write(&none, "").unwrap();
    let e = one_line_error(
        &fwctl(&[
            "--config",
            none.to_str().unwrap(),
            "fleet",
            "purge",
            "--host",
            "web-3",
        ])
        .output()
        .unwrap(),
    );
    assert!(e.contains("has no [fleet] section"), "{e}");
}

/// `[aggregate]`: a bad value is one line naming the key and the fix.
#[test]
fn bad_aggregate_settings_are_one_line_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (body, want)) in [
        ("[aggregate]\nv4_prefix = 16\n", "[aggregate] v4_prefix = 16 is wider than [fleet] min_prefix_v4 = 24; fix: a v4_prefix of 24 or more"),
        ("[aggregate]\nv6_count_prefix = 200\n", "[aggregate] v6_count_prefix = 200; fix: 32 to 128"),
        ("[aggregate]\nwithin = \"soon\"\n", "[aggregate] within ="),
        ("[capture]\nipv6_prefix = 128\n[aggregate]\nv6_count_prefix = 64\n", "fix: remove [capture] ipv6_prefix"),
    ]
    .iter()
    .enumerate()
    {
        let p = dir.path().join(format!("a{i}.toml"));
        std::fs::write(&p, body).unwrap();
        let out = fwctl(&["apply", "--dry-run", "--config", p.to_str().unwrap()])
            .output()
            .unwrap();
        let err = one_line_error(&out);
        assert!(err.contains(want), "case {i}: {err}");
    }
}

/// A /64 rotating through 30 addresses, two lines each: per address no
/// one is over --howmany 5; per /64 (the default) the /64 is.
#[test]
fn scan_counts_ipv6_per_64_by_default_and_per_address_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rotating.log");
    let mut text_log = String::new();
    for n in 1..=30u32 {
        let a: std::net::Ipv6Addr = format!("2001:db8:1:2::{n:x}").parse().unwrap();
        let full = fwctl::testing::loggen::full_v6(a);
        for port in [22, 23] {
            text_log.push_str(&format!(
                "2026-11-21T11:59:00.000000+00:00 host kernel: [ 1.0] IP6TABLES-BLOCKED: IN=eth0 OUT= MAC=00 SRC={full} DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=TCP SPT=40000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0 \n"
            ));
        }
    }
    std::fs::write(&log, text_log).unwrap();
    // Readable by the unprivileged user the scan runs as.
    use std::os::unix::fs::PermissionsExt;
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(dir.path(), open.clone()).unwrap();
    std::fs::set_permissions(&log, open.clone()).unwrap();
    let run = |cfg_body: &str| {
        let cfg = dir.path().join("fwctl.toml");
        std::fs::write(&cfg, cfg_body).unwrap();
        std::fs::set_permissions(&cfg, open.clone()).unwrap();
        let out = as_user(fwctl(&[
            "--config",
            cfg.to_str().unwrap(),
            "scan",
            "--dryrun",
            "--json",
            "--log",
            log.to_str().unwrap(),
            "--now",
            "2026-11-21T12:00:00Z",
            "--howmany",
            "5",
            "--within",
            "10m",
            "--ipset",
            "blacklist",
            "--removeafter",
            "1h",
        ]));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        offender_actions(&v)
    };
    assert_eq!(
        run(""),
        [("2001:db8:1:2::/64".to_string(), 60, "would add".to_string())]
    );
    assert!(run("[aggregate]\nv6_count_prefix = 128\nmin_offenders = 0\n").is_empty());
    // The old name of the key still works.
    assert!(run("[capture]\nipv6_prefix = 128\n").is_empty());
}
