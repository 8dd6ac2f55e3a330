//! `fwctl scan --source nginx|apache|sshd` on generated logs (no root: dry
//! runs, as an unprivileged user when the suite runs as root): the exact
//! offenders for a request rate, `--status`, `--match`, and sshd's failures
//! in both timestamp forms; X-Forwarded-For lies never count; bad flag
//! combinations are one-line errors.

use fwctl::testing::loggen::{self, Format, Kind, Spec, WebQuery, VICTIM};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fwctl(args: &[&str]) -> Output {
    fwctl_env(args, &[])
}

fn fwctl_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
    c.args(args)
        .envs(env.iter().copied())
        .env_remove("FWCTL_CONFIG")
        .env_remove("FWCTL_STATE")
        .env("TZ", "UTC")
        .env(
            "FWCTL_RUN_DIR",
            std::env::temp_dir().join(format!("fwctl-src-{}", std::process::id())),
        );
    if unsafe { libc::geteuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    c.output().unwrap()
}

/// A directory anybody may read (the scan runs as nobody under root).
fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.path().join("fwctl.toml"), "").unwrap();
    d
}

fn write(d: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = d.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// Generate, scan, and return (wanted, found) offender addresses.
fn run(
    kind: Kind,
    format: Format,
    flags: &[&str],
) -> (Vec<String>, Vec<String>, serde_json::Value) {
    let d = dir();
    let spec = Spec {
        kind,
        format,
        bytes: 2 << 20,
        offenders: 9,
        howmany: 30,
        within: 600,
        ..Spec::default()
    };
    let mut text = Vec::new();
    let m = loggen::generate(&spec, &mut text).unwrap();
    let log = write(d.path(), "log", &text);
    let cfg = d.path().join("fwctl.toml");
    let mut args = vec![
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
        "30",
        "--within",
        "10m",
        "--ipset",
        "blacklist",
        "--removeafter",
        "1h",
    ];
    args.extend_from_slice(flags);
    let out = fwctl(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found: Vec<String> = v["offenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["address"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    // IPv6 offenders are counted per /64 ([aggregate] v6_count_prefix's
    // default): the generator's, all in one /64, are one offender.
    let mut want: Vec<String> = m
        .offenders
        .iter()
        .map(|(a, _)| match a {
            std::net::IpAddr::V6(_) => ipnet::IpNet::new(*a, 64).unwrap().trunc().to_string(),
            a => a.to_string(),
        })
        .collect();
    want.sort();
    want.dedup();
    (want, found, v)
}

#[test]
fn nginx_offenders_by_rate_by_status_and_by_pattern() {
    let (want, found, v) = run(
        Kind::Web(WebQuery::All),
        Format::Rfc3339,
        &["--source", "nginx"],
    );
    assert_eq!(found, want);
    assert_eq!(
        (v["source"].as_str(), v["rule"].as_str(), v["type"].as_str()),
        (Some("nginx"), Some("nginx"), Some("all"))
    );
    assert!(
        v["lines_malformed"].as_u64().unwrap() > 0,
        "cut lines are counted"
    );
    assert!(!found.contains(&VICTIM.to_string()));

    let (want, found, v) = run(
        Kind::Web(WebQuery::Status4xx),
        Format::Rfc3339,
        &["--source", "nginx", "--status", "4xx"],
    );
    assert_eq!(found, want);
    assert!(
        v["lines_other_type"].as_u64().unwrap() > 0,
        "2xx and 3xx are not counted"
    );
    // Every top status of an offender is a 4xx.
    for o in v["offenders"].as_array().unwrap() {
        for p in o["top_ports"].as_array().unwrap() {
            assert!((400..500).contains(&p["port"].as_u64().unwrap()), "{o}");
        }
    }

    let (want, found, v) = run(
        Kind::Web(WebQuery::Attacks),
        Format::Rfc3339,
        &["--source", "apache", "--match", "all"],
    );
    assert_eq!(found, want);
    let o = &v["offenders"][0];
    assert!(
        !o["patterns"].as_array().unwrap().is_empty() && o["severity"].is_string(),
        "{o}"
    );
    assert!(
        v["type"]
            .as_str()
            .unwrap()
            .starts_with("all match:path-traversal,"),
        "{v}"
    );
}

#[test]
fn sshd_failures_in_both_timestamp_forms() {
    for format in [Format::Rfc3339, Format::Bsd(0)] {
        let (want, found, v) = run(Kind::Sshd, format, &["--source", "sshd"]);
        assert_eq!(found, want, "{format:?}");
        let kinds = v["offenders"][0]["kinds"].as_array().unwrap();
        assert!(!kinds.is_empty(), "{v}");
        assert!(v["lines_other_type"].as_u64().unwrap() == 0);
    }
}

/// `scan --dryrun --json` of `text` as `source`'s log, with `extra` flags
/// (and `config` as the config file's text): the output and the offenders.
fn scan_text(
    source: &str,
    text: &str,
    config: &str,
    extra: &[&str],
) -> (Output, Option<serde_json::Value>, Vec<String>) {
    let d = dir();
    let log = write(d.path(), "log", text.as_bytes());
    let cfg = write(d.path(), "fwctl.toml", config.as_bytes());
    let mut args = vec![
        "--config",
        cfg.to_str().unwrap(),
        "scan",
        "--source",
        source,
        "--dryrun",
        "--json",
        "--log",
        log.to_str().unwrap(),
        "--now",
        "2026-11-21T12:00:00Z",
        "--howmany",
        "30",
        "--within",
        "10m",
        "--ipset",
        "blacklist",
        "--removeafter",
        "1h",
    ];
    args.extend_from_slice(extra);
    let out = fwctl(&args);
    let v: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
    let mut found: Vec<String> = v
        .iter()
        .flat_map(|v| v["offenders"].as_array().unwrap().iter())
        .map(|o| o["address"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    (out, v, found)
}

#[test]
fn forwarded_for_is_read_only_from_a_trusted_proxy_walking_past_it() {
    let mut text = String::new();
    for i in 0..40 {
        // Through our proxies (10.0.0.2, then 10.0.0.3): the client lies
        // about the first address; the first proxy appended the real one,
        // the second the first's.
        text += &format!(
            "10.0.0.2 - - [21/Nov/2026:11:55:{:02} +0000] \"GET /x{i} HTTP/1.1\" 404 1 \"-\" \"ua\" \"{VICTIM}, 203.0.113.66, 10.0.0.3\"\n",
            i % 60
        );
        // A client straight to the server names the victim: it counts
        // against itself.
        text += &format!(
            "203.0.113.77 - - [21/Nov/2026:11:56:{:02} +0000] \"GET /y{i} HTTP/1.1\" 404 1 \"-\" \"ua\" \"{VICTIM}\"\n",
            i % 60
        );
    }
    let ok = |r: &(Output, Option<serde_json::Value>, Vec<String>)| {
        assert!(
            r.0.status.success(),
            "{}",
            String::from_utf8_lossy(&r.0.stderr)
        );
        r.2.clone()
    };
    let remote = scan_text("nginx", &text, "", &["--client", "remote"]);
    assert_eq!(ok(&remote), ["10.0.0.2", "203.0.113.77"]);
    let fwd = [
        "--client",
        "forwarded",
        "--trusted-proxy",
        "10.0.0.2",
        "--trusted-proxy",
        "10.0.0.3/32",
    ];
    assert_eq!(
        ok(&scan_text("nginx", &text, "", &fwd)),
        ["203.0.113.66", "203.0.113.77"]
    );
    // The same from the config's [web] trusted_proxies.
    let cfg = "[web]\ntrusted_proxies = [\"10.0.0.0/30\"]\n";
    let r = scan_text("apache", &text, cfg, &["--client", "forwarded"]);
    assert_eq!(ok(&r), ["203.0.113.66", "203.0.113.77"]);
    // Only the peer proxy trusted: the second proxy is the client.
    let r = scan_text(
        "nginx",
        &text,
        "",
        &["--client", "forwarded", "--trusted-proxy", "10.0.0.2"],
    );
    assert_eq!(ok(&r), ["10.0.0.3", "203.0.113.77"]);
}

#[test]
fn forwarded_without_a_trusted_proxy_is_refused_naming_the_fix() {
    let line = "203.0.113.77 - - [21/Nov/2026:11:56:00 +0000] \"GET / HTTP/1.1\" 404 1 \"-\" \"ua\" \"192.0.2.1\"\n";
    for (extra, want) in [
        (
            vec!["--client", "forwarded"],
            "--client forwarded: no trusted proxy",
        ),
        (
            vec!["--trusted-proxy", "10.0.0.2"],
            "--trusted-proxy is for --client forwarded",
        ),
        (
            vec!["--client", "forwarded", "--trusted-proxy", "10.0.0.1/8"],
            "did you mean 10.0.0.0/8",
        ),
    ] {
        let (out, _, _) = scan_text("nginx", line, "", &extra);
        assert!(!out.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(err.contains("fix:"), "{err}");
    }
    let (out, _, _) = scan_text("nginx", line, "", &["--client", "forwarded"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--trusted-proxy CIDR") && err.contains("[web] trusted_proxies"),
        "{err}"
    );
}

#[test]
fn web_client_fields_neither_hide_lines_nor_move_them_out_of_the_window() {
    let mut text = String::new();
    // A few real requests, then the attacker's, whose user field holds a
    // time long past or a lone bracket, and whose request holds what a
    // status looks like.
    for i in 0..5 {
        text += &format!("198.51.100.20 - - [21/Nov/2026:11:51:{i:02} +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"ua\"\n");
    }
    for i in 0..40 {
        text += &format!("203.0.113.7 - [01/Jan/2000:00:00:00 +0000] [21/Nov/2026:11:55:{:02} +0000] \"GET /a\\x22 200 1 \\x22 HTTP/1.1\" 404 1 \"-\" \"ua\"\n", i % 60);
        text += &format!("203.0.113.8 - [x [21/Nov/2026:11:56:{:02} +0000] \"GET /[x] HTTP/1.1\" 401 1 \"-\" \"x\\x22 200 [01/Jan/2000:00:00:00 +0000]\"\n", i % 60);
    }
    let (out, v, found) = scan_text("nginx", &text, "", &["--status", "4xx"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(found, ["203.0.113.7", "203.0.113.8"]);
    let v = v.unwrap();
    assert_eq!(v["lines_malformed"], 0, "{v}");
    assert_eq!(v["lines_outside_window"], 0, "{v}");
}

#[test]
fn a_tail_of_lines_whose_time_the_seek_cannot_read_is_still_read() {
    // Two hours of real requests, then the attacker's, each with a user
    // field so long that no timestamp is in the part of a line the window
    // seek looks at: they are read all the same.
    let mut text = String::new();
    for i in 0..7200 {
        text += &format!(
            "198.51.100.{} - - [21/Nov/2026:{:02}:{:02}:{:02} +0000] \"GET /page/{i} HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0\"\n",
            i % 200,
            9 + i / 3600,
            i / 60 % 60,
            i % 60
        );
    }
    let user = "u".repeat(2000);
    for i in 0..40 {
        text += &format!("203.0.113.7 - {user} [21/Nov/2026:11:55:{:02} +0000] \"GET / HTTP/1.1\" 404 1 \"-\" \"ua\"\n", i % 60);
    }
    assert!(text.len() > 512 << 10);
    let (out, v, found) = scan_text("nginx", &text, "", &["--status", "4xx"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(found, ["203.0.113.7"], "{v:?}");
}

#[test]
fn sshd_user_names_and_other_programs_never_steer_a_ban() {
    let mut text = String::new();
    for i in 0..16 {
        for msg in [
            "Invalid user x from 198.51.100.9 port 22 from 203.0.113.5 port 4444".to_string(),
            format!("Failed password for invalid user a from 127.0.0.1 port 22 ssh2 from 203.0.113.5 port {i} ssh2"),
            "Connection closed by invalid user b 198.51.100.9 port 22 203.0.113.5 port 1 [preauth]".to_string(),
        ] {
            text += &format!("2026-11-21T11:55:{i:02}+00:00 host sshd[7]: {msg}\n");
        }
        // Another program's message that quotes sshd's, and a program
        // whose name starts like sshd's.
        text += &format!("2026-11-21T11:55:{i:02}+00:00 host myapp[3]: sshd[1]: Invalid user a from 198.51.100.77 port 1\n");
        text += &format!("2026-11-21T11:55:{i:02}+00:00 host sshd-foo[3]: Invalid user a from 198.51.100.78 port 1\n");
    }
    let (out, v, found) = scan_text("sshd", &text, "", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(found, ["203.0.113.5"], "{v:?}");
    assert_eq!(v.unwrap()["offenders"][0]["hits"], 48);
}

#[test]
fn a_human_report_says_what_it_counted() {
    let d = dir();
    let lines: String = (0..12)
        .map(|i| format!("203.0.113.9 - - [21/Nov/2026:11:58:{i:02} +0000] \"GET /static/..%2f..%2fetc/passwd HTTP/1.1\" 400 0 \"-\" \"x\"\n"))
        .collect();
    let log = write(d.path(), "access.log", lines.as_bytes());
    let cfg = d.path().join("fwctl.toml");
    let out = fwctl(&[
        "--config",
        cfg.to_str().unwrap(),
        "scan",
        "--source",
        "nginx",
        "--match",
        "path-traversal",
        "--dryrun",
        "--log",
        log.to_str().unwrap(),
        "--now",
        "2026-11-21T12:00:00Z",
        "--howmany",
        "10",
        "--within",
        "10m",
        "--ipset",
        "blacklist",
        "--removeafter",
        "1h",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.contains("source nginx, counting all match:path-traversal"),
        "{s}"
    );
    assert!(s.contains("TOP STATUS") && s.contains("400:12"), "{s}");
    assert!(s.contains("matched path-traversal (high)"), "{s}");
}

#[test]
fn flags_of_another_source_are_refused_in_one_line() {
    let d = dir();
    let cfg = d.path().join("fwctl.toml");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "--config",
            cfg.to_str().unwrap(),
            "scan",
            "--dryrun",
            "--howmany",
            "1",
            "--within",
            "1m",
            "--ipset",
            "blacklist",
            "--removeafter",
            "1h",
        ];
        a.extend_from_slice(extra);
        fwctl(&a)
    };
    for (extra, want) in [
        (
            vec!["--source", "nginx", "--rule", "blocked"],
            "--rule is for --source kernel",
        ),
        (
            vec!["--source", "sshd", "--status", "4xx"],
            "--status is for --source nginx or apache",
        ),
        (
            vec!["--source", "kernel", "--match", "xss"],
            "--match is for --source nginx or apache",
        ),
        (
            vec!["--source", "nginx", "--journal"],
            "--journal is for --source sshd or a regex source",
        ),
        (
            vec!["--source", "nginx", "--match", "nope"],
            "no such pattern",
        ),
        (
            vec!["--source", "nginx", "--status", "6xx"],
            "--status \"6xx\"",
        ),
    ] {
        let out = base(&extra);
        assert!(!out.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{extra:?}: {err}");
    }
}

/// rules/sample-access.log and rules/sample-auth.log, the samples the README
/// scans, are what the generator writes (regenerate with the commands below).
#[test]
fn the_shipped_web_and_auth_samples_are_what_the_generator_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, kind, howmany, cmd) in [
        (
            "rules/sample-access.log",
            Kind::Web(WebQuery::Status4xx),
            100,
            "--source nginx --query 4xx --howmany 100",
        ),
        (
            "rules/sample-auth.log",
            Kind::Sshd,
            10,
            "--source sshd --howmany 10",
        ),
    ] {
        let spec = Spec {
            kind,
            bytes: 128 << 10,
            end: 1_795_262_400,
            span: 6 * 3600,
            sources: 200,
            offenders: 4,
            howmany,
            within: 600,
            seed: 7,
            ..Spec::default()
        };
        let mut text = Vec::new();
        loggen::generate(&spec, &mut text).unwrap();
        assert!(
            text == std::fs::read(root.join(file)).unwrap(),
            "{file} is stale; fix: cargo run --release --example loggen -- {cmd} --size 128K --sources 200 --offenders 4 --within 10m --span 6h --end 2026-11-21T12:00:00Z --seed 7 --out {file}"
        );
    }
}

/// A trusted proxy's own requests (health checks: X-Forwarded-For "-") count
/// against the proxy, the connection's peer; banning it would take the
/// site down, so it is never banned (an attacker's probe of issue 28).
#[test]
fn a_trusted_proxy_is_counted_but_never_banned() {
    let mut text = String::new();
    for i in 0..40 {
        text += &format!(
            "10.0.0.2 - - [21/Nov/2026:11:55:{:02} +0000] \"GET /health HTTP/1.1\" 404 1 \"-\" \"lb\" \"-\"\n",
            i % 60
        );
    }
    let (out, v, found) = scan_text(
        "nginx",
        &text,
        "",
        &["--client", "forwarded", "--trusted-proxy", "10.0.0.2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(found, ["10.0.0.2"]);
    let o = &v.unwrap()["offenders"][0];
    assert_eq!(o["action"], "skipped", "{o}");
    assert!(
        o["reason"]
            .as_str()
            .unwrap()
            .contains("trusted network 10.0.0.2/32"),
        "{o}"
    );
}

/// The issue's `[[source]]`, as written (README shows it).
const POSTFIX_SOURCE: &str = r#"
[[source]]
name = "postfix-sasl"
program = "postfix/smtpd"
line = 'warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\]: SASL \w+ authentication failed'
kind = "sasl-failed"
"#;

/// `n` SASL failures of `addr` a second apart ending at 11:55, and a line
/// of another program naming another address.
fn mail_log(addrs: &[(&str, usize)]) -> String {
    let mut text = String::new();
    for (addr, n) in addrs {
        for i in 0..*n {
            text.push_str(&format!(
                "2026-11-21T11:55:{:02}+00:00 mx postfix/smtpd[7]: warning: unknown[{addr}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n",
                i % 60
            ));
        }
    }
    for i in 0..40 {
        text.push_str(&format!("2026-11-21T11:56:{:02}+00:00 mx myapp[9]: postfix/smtpd[7]: warning: unknown[198.51.100.9]: SASL LOGIN authentication failed: x\n", i));
    }
    text
}

#[test]
fn a_config_source_and_a_built_in_one_scan_as_the_built_in_sources_do() {
    let text = mail_log(&[
        ("203.0.113.5", 31),
        ("2001:db8::5", 40),
        ("203.0.113.6", 30),
    ]);
    // The built-in postfix-sasl, then the config's of the same name
    // replacing it; both through the same dry run, JSON and report.
    for config in ["", POSTFIX_SOURCE] {
        let (out, v, found) = scan_text("postfix-sasl", &text, config, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = v.unwrap();
        // IPv6 per /64 ([aggregate] v6_count_prefix's default).
        assert_eq!(found, ["2001:db8::/64", "203.0.113.5"], "{config}");
        assert_eq!(
            (v["source"].as_str(), v["rule"].as_str(), v["type"].as_str()),
            (
                Some("postfix-sasl"),
                Some("postfix-sasl"),
                Some("sasl-failed")
            )
        );
        assert_eq!(v["lines_matched"].as_u64(), Some(101));
        assert_eq!(v["offenders"][0]["kinds"][0].as_str(), Some("sasl-failed"));
    }
    // A source of the config's own name.
    let mine = POSTFIX_SOURCE.replace("name = \"postfix-sasl\"", "name = \"my-mail\"");
    let (out, _, found) = scan_text("my-mail", &text, &mine, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(found, ["2001:db8::/64", "203.0.113.5"]);
    // The human report says what it counted.
    let d = dir();
    let log = write(d.path(), "mail.log", text.as_bytes());
    let cfg = d.path().join("fwctl.toml");
    let out = fwctl(&[
        "--config",
        cfg.to_str().unwrap(),
        "scan",
        "--source",
        "postfix-sasl",
        "--dryrun",
        "--log",
        log.to_str().unwrap(),
        "--now",
        "2026-11-21T12:00:00Z",
        "--howmany",
        "30",
        "--within",
        "10m",
        "--ipset",
        "blacklist",
        "--removeafter",
        "1h",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("source postfix-sasl, counting sasl-failed"),
        "{s}"
    );
    assert!(s.contains("sasl-failed:40"), "{s}");
}

#[test]
fn an_unknown_source_or_a_bad_source_table_is_one_line_naming_the_fix() {
    let text = mail_log(&[("203.0.113.5", 3)]);
    for (source, config, want) in [
        ("nope", "", "--source nope: no such source; fix: use one of kernel, nginx, apache, sshd, postfix-sasl, dovecot"),
        ("x", "[[source]]\nname = \"x\"\nline = 'warning: (\\S+)'\nkind = \"k\"\n", "has no (?P<addr>...) group"),
        ("x", "[[source]]\nname = \"x\"\nline = '(?P<addr>[0-9.]+'\nkind = \"k\"\n", "is not a regex"),
        ("x", "[[source]]\nname = \"x\"\nline = '(?P<addr>\\w{500}){500}'\nkind = \"k\"\n", "size limit"),
        ("x", "[[source]]\nname = \"x\"\nline = '(?P<addr>\\S+)'\nkind = \"k\"\ntime = '^(?P<time>\\S+)'\n", "time and time_format come together"),
        ("sshd", "[[source]]\nname = \"sshd\"\nline = '(?P<addr>\\S+)'\nkind = \"k\"\n", "cannot replace"),
    ] {
        let (out, _, _) = scan_text(source, &text, config, &[]);
        assert!(!out.status.success(), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(want) && err.contains("fix:"), "{want}: {err}");
    }
    // A config source has no default log.
    let d = dir();
    let cfg = write(
        d.path(),
        "fwctl.toml",
        POSTFIX_SOURCE.replace("postfix-sasl", "mine").as_bytes(),
    );
    let out = fwctl(&[
        "--config",
        cfg.to_str().unwrap(),
        "scan",
        "--source",
        "mine",
        "--dryrun",
        "--howmany",
        "1",
        "--within",
        "1m",
        "--ipset",
        "blacklist",
        "--removeafter",
        "1h",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fix: pass --log PATH"), "{err}");
}

/// `fwctl test-source` with `args`, the config's text `config`.
fn test_source(config: &str, args: &[&str]) -> Output {
    let d = dir();
    let cfg = write(d.path(), "fwctl.toml", config.as_bytes());
    let mut a = vec!["--config", cfg.to_str().unwrap(), "test-source"];
    a.extend_from_slice(args);
    fwctl(&a)
}

#[test]
fn test_source_summarises_a_log_and_explains_a_line() {
    let d = dir();
    let mut text = mail_log(&[("203.0.113.5", 3), ("2001:db8::5", 2)]);
    text.push_str(
        "2026-11-21T11:57:00+00:00 mx postfix/smtpd[7]: connect from unknown[203.0.113.7]\n",
    );
    text.push_str(
        "2026-11-21T11:57:01+00:00 mx postfix/smtpd[7]: connect from unknown[203.0.113.8]\n",
    );
    let log = write(d.path(), "mail.log", text.as_bytes());
    let out = test_source(
        "",
        &[
            "--source",
            "postfix-sasl",
            "--log",
            log.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lines_read"].as_u64(), Some(47));
    assert_eq!(v["lines_matched"].as_u64(), Some(5));
    assert_eq!(v["kinds"][0]["kind"].as_str(), Some("sasl-failed"));
    assert_eq!(v["addresses"][0]["address"].as_str(), Some("203.0.113.5"));
    assert_eq!(v["addresses"][0]["lines"].as_u64(), Some(3));
    assert_eq!(v["unmatched"].as_u64(), Some(2));
    assert_eq!(
        v["unmatched_shapes"][0]["shape"].as_str(),
        Some("connect from unknown[<ADDR>]")
    );
    assert_eq!(v["unmatched_shapes"][0]["lines"].as_u64(), Some(2));
    assert_eq!(v["unanchored"].as_array().unwrap().len(), 0);

    // The issue's example has no ^: test-source says a planted address moves it.
    let out = test_source(
        POSTFIX_SOURCE,
        &["--source", "postfix-sasl", "--log", log.to_str().unwrap()],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        s.contains("WARNING: rule 1's addr is not anchored")
            && s.contains("read 192.0.2.99 instead of"),
        "{s}"
    );

    // One line: which group took what.
    let line = "2026-11-21 10:00:01 7 [Warning] Access denied for user 'root'@'203.0.113.5' (using password: YES)";
    let out = test_source("", &["--source", "mariadb", "--line", line, "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["matched"].as_bool(),
            v["address"].as_str(),
            v["kind"].as_str()
        ),
        (Some(true), Some("203.0.113.5"), Some("access-denied"))
    );
    let groups = v["groups"].as_array().unwrap();
    let addr = groups.iter().find(|g| g["name"] == "addr").unwrap();
    assert_eq!(
        &line[addr["start"].as_u64().unwrap() as usize..addr["end"].as_u64().unwrap() as usize],
        "203.0.113.5"
    );
    assert!(groups
        .iter()
        .any(|g| g["name"] == "time" && g["text"] == "2026-11-21 10:00:01"));

    // Standard input, as `-` or `--log -`.
    for args in [
        &["--source", "postfix-sasl", "-", "--json"][..],
        &["--source", "postfix-sasl", "--log", "-", "--json"],
    ] {
        let d = dir();
        let cfg = write(d.path(), "fwctl.toml", b"");
        let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
        c.args(["--config", cfg.to_str().unwrap(), "test-source"])
            .args(args);
        let out = c
            .stdin(std::fs::File::open(&log).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["lines_matched"].as_u64(), Some(5));
    }

    // Nothing matched: exit 1, and still the report.
    let out = test_source("", &["--source", "dovecot", "--log", log.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("47 lines read, 0 matched"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no line matched source dovecot"));
    let out = test_source("", &["--source", "mariadb", "--line", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    let out = test_source("", &["--source", "sshd", "--line", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("test-source reads regex sources"));
}

/// nginx's error.log holds a basic-auth user name raw, newlines too
/// (tests/probe_sources.rs): every scan of the two error.log sources says
/// so and names the access log instead; the other built-ins say nothing.
#[test]
fn the_error_log_sources_warn_that_a_client_writes_whole_lines() {
    let line = "2026/11/21 11:59:00 [error] 7#7: *1 user \"a\": password mismatch, client: 203.0.113.5, server: x, request: \"GET / HTTP/1.1\", host: \"x\"\n";
    for source in ["nginx-http-auth", "nginx-limit-req"] {
        let (out, v, _) = scan_text(source, line, "", &[]);
        assert!(out.status.success(), "{out:?}");
        assert!(v.is_some());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "warning: --source {source}: nginx writes a basic-auth user name"
            )) && err.contains("--source nginx --status 401"),
            "{err}"
        );
    }
    let (out, _, _) = scan_text("postfix-sasl", &mail_log(&[("203.0.113.5", 3)]), "", &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

/// `scan --journal` for a regex source: journalctl is asked for the
/// entries of the source's programs (one `--identifier=` each, so a name
/// cannot become an option), or for every entry when a program has a `*`;
/// the source's parser still picks its program's lines. A stand-in
/// journalctl (journald does not run here) records its arguments and
/// prints `-o short-iso-precise` lines.
#[test]
fn a_regex_source_reads_its_programs_from_the_journal() {
    let d = dir();
    let args = d.path().join("args");
    let now = "2026-11-21T12:00:00";
    let lines: String = ["203.0.113.7", "203.0.113.7", "203.0.113.7", "203.0.113.8"]
        .iter()
        .map(|a| format!("{now}.000001+00:00 web1 myapp[9]: login failed from {a}\n"))
        // Another program writing the same words never counts.
        .chain(std::iter::once(format!(
            "{now}.000002+00:00 web1 other[9]: login failed from 192.0.2.9\n"
        )))
        .collect();
    let fake = write(
        d.path(),
        "journalctl",
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" --- >> {}\ncat <<'EOF'\n{lines}EOF\n",
            args.display()
        )
        .as_bytes(),
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&args, "").unwrap();
    std::fs::set_permissions(&args, std::fs::Permissions::from_mode(0o666)).unwrap();
    let cfg = write(
        d.path(),
        "fwctl.toml",
        br#"
[[source]]
name = "myapp"
program = "myapp|-v"
line = 'login failed from (?P<addr>[0-9.]+)$'
kind = "login-failed"

[[source]]
name = "anyapp"
program = "my*"
line = 'login failed from (?P<addr>[0-9.]+)$'
kind = "login-failed"
"#,
    );
    for source in ["myapp", "anyapp"] {
        let out = fwctl_env(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "scan",
                "--source",
                source,
                "--journal",
                "--now",
                "2026-11-21T12:01:00Z",
                "--howmany",
                "2",
                "--within",
                "10m",
                "--ipset",
                "blacklist",
                "--removeafter",
                "1h",
                "--dryrun",
                "--json",
            ],
            &[("FWCTL_JOURNALCTL", &fake)],
        );
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let found: Vec<&str> = v["offenders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["address"].as_str().unwrap())
            .collect();
        assert_eq!(found, ["203.0.113.7"], "{source}: {v}");
        assert_eq!(v["lines_matched"], 4, "{source}: {v}");
    }
    // One argument a line, each run ended by ---.
    let called = std::fs::read_to_string(&args).unwrap();
    let runs: Vec<Vec<&str>> = called
        .split("---\n")
        .filter(|r| !r.is_empty())
        .map(|r| r.lines().collect())
        .collect();
    assert_eq!(runs.len(), 2, "{called}");
    assert_eq!(
        runs[0][..4],
        [
            "--identifier=myapp",
            "--identifier=-v",
            "-o",
            "short-iso-precise"
        ],
        "{called}"
    );
    assert_eq!(runs[1][..2], ["-o", "short-iso-precise"], "{called}");
}
