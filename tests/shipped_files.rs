//! The files shipped for installation are valid for the tools that read them.
//! They need those tools installed (the full suite installs them), hence ignored
//! under a plain `cargo test`.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
#[ignore = "needs root: kernel test"]
fn rsyslog_rule_passes_rsyslogd_check() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("rsyslog.conf");
    let rule = root().join("rsyslog/10-iptables.conf");
    std::fs::write(&main, format!("include(file=\"{}\")\n", rule.display())).unwrap();
    let out = Command::new("rsyslogd")
        .arg("-N1")
        .arg("-f")
        .arg(&main)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("error"), "{err}");
}

#[test]
#[ignore = "needs root: kernel test"]
fn logrotate_rule_parses_and_matches_its_comment() {
    let rule = root().join("logrotate/iptables");
    let text = std::fs::read_to_string(&rule).unwrap();
    let out = Command::new("logrotate")
        .arg("-d")
        .arg(&rule)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("error"), "{err}");
    // The size in the comment and in the directive agree.
    assert!(text.contains("# size 100M:") && text.contains("    size 100M\n"));
    assert!(err.contains("104857600 bytes"), "{err}");
    // No compression: scan reads the rotated copy as plain text.
    assert!(!text.lines().any(|l| l.trim() == "compress"), "{text}");
}

/// The shipped logrotate rule run for real on a copy of the sample log:
/// `fwctl scan` finds the same offenders after the rotation as before.
#[test]
#[ignore = "needs root: kernel test"]
fn scan_reads_across_a_real_logrotate_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("iptables.log");
    std::fs::copy(root().join("rules/sample-iptables.log"), &log).unwrap();
    let scan = || {
        let out = Command::new(env!("CARGO_BIN_EXE_fwctl"))
            .args(["scan", "--config"])
            .arg(root().join("rules/fwctl.toml"))
            .arg("--log")
            .arg(&log)
            .args([
                "--now",
                "2026-11-21T12:00:00Z",
                "--type",
                "tcp",
                "--howmany",
                "50",
                "--within",
                "30m",
            ])
            .args([
                "--ipset",
                "throttle-hard",
                "--removeafter",
                "2h",
                "--dryrun",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["offenders"].clone(), v["files"].as_array().unwrap().len())
    };
    let (before, files) = scan();
    assert_eq!((before.as_array().unwrap().len(), files), (4, 1));

    // Rotate in the middle of the window: keep the last 60 lines in the live file.
    let text = std::fs::read_to_string(&log).unwrap();
    let keep: String = text
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| format!("{l}\n"))
        .collect();
    let conf = std::fs::read_to_string(root().join("logrotate/iptables"))
        .unwrap()
        .replace("/ram/iptables.log", log.to_str().unwrap())
        .replace("size 100M", "size 1k");
    let conf_path = dir.path().join("logrotate.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let out = Command::new("logrotate")
        .arg("-s")
        .arg(dir.path().join("state"))
        .arg(&conf_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        0,
        "copytruncate empties the live file"
    );
    // The rotated copy holds everything; the lines written since go to the live file.
    let rotated = dir.path().join("iptables.log.1");
    let old = std::fs::read_to_string(&rotated).unwrap();
    std::fs::write(&rotated, &old[..old.len() - keep.len()]).unwrap();
    std::fs::write(&log, keep).unwrap();
    let (after, files) = scan();
    assert_eq!(files, 2);
    assert_eq!(after, before);
}

#[test]
fn cron_file_lines_have_a_schedule_a_user_and_a_command() {
    let text = std::fs::read_to_string(root().join("cron/fwctl")).unwrap();
    let (mut entries, mut scans) = (0, 0);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.contains('=') && !line.contains(' ') {
            continue;
        }
        if line
            .split_once('=')
            .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (user, cmd) = if fields[0].starts_with('@') {
            (fields[1], &fields[2..])
        } else {
            (fields[5], &fields[6..])
        };
        if !fields[0].starts_with('@') {
            for f in &fields[..5] {
                assert!(
                    f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)),
                    "bad schedule field {f:?} in {line:?}"
                );
            }
        }
        assert_eq!(user, "root", "{line}");
        assert!(["fwctl", "logrotate"].contains(&cmd[0]), "{line}");
        assert!(!line.contains('%'), "cron turns % into a newline: {line}");
        if cmd[1] == "scan" {
            scans += 1;
            check_scan_entry(cmd);
        }
        entries += 1;
    }
    assert!(
        entries >= 4 && scans >= 3,
        "{entries} entries, {scans} scans"
    );
}

/// A cron scan line's arguments are accepted by the binary: run as a dry run
/// over the shipped sample (as `nobody` when the suite runs as root).
fn check_scan_entry(cmd: &[&str]) {
    let end = cmd.iter().position(|w| *w == ">>").unwrap_or(cmd.len());
    let args = &cmd[1..end];
    let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
    c.args(args)
        .arg("--config")
        .arg(root().join("rules/fwctl.toml"))
        .arg("--log")
        .arg(root().join("rules/sample-iptables.log"))
        .arg("--dryrun");
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        c.uid(65534).gid(65534);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
