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
}

#[test]
fn cron_file_lines_have_a_schedule_a_user_and_a_command() {
    let text = std::fs::read_to_string(root().join("cron/fwctl")).unwrap();
    let mut entries = 0;
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
        assert_eq!(cmd[0], "fwctl", "{line}");
        entries += 1;
    }
    assert!(entries >= 1);
}
