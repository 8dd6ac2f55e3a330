//! CLI tests that need no root: the binary's arguments, messages and exit codes.
//! When the suite itself runs as root (CI), commands that must behave as for
//! an ordinary user run as `nobody`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn fwctl(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
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
