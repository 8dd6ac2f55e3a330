//! Kernel tests for `fwctl apply` (root, namespaces): real rules, real sets,
//! real packets from a client namespace, IPv4 and IPv6. Run with
//! `cargo test -- --include-ignored` as root (see README / .ci/run).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// A config whose LOG prefixes carry `tag`, so this test finds its own lines.
fn cfg_text(tag: &str, extra: &str) -> String {
    format!(
        r#"
[trusted]
networks = ["198.51.100.12", "2001:db8:100::12"]
[blacklist]
entries = ["198.51.100.11", "2001:db8:100::11"]
[[service]]
name = "ssh"
port = 22
[[service]]
name = "web"
port = 80
[[service]]
name = "tls"
port = 443
[throttle.hard]
rate = "1/minute"
burst = 3
[logging.prefixes]
allowed = {{ v4 = "{tag}-ALLOWED: ", v6 = "{tag}6-ALLOWED: " }}
blocked = {{ v4 = "{tag}-BLOCKED: ", v6 = "{tag}6-BLOCKED: " }}
{extra}
"#
    )
}

/// A rule of another tool in INPUT, which fwctl must leave alone.
fn add_foreign_rule(lab: &Lab) {
    lab.exec_ok(
        &lab.target,
        &[
            "iptables",
            "-A",
            "INPUT",
            "-s",
            "192.0.2.99",
            "-j",
            "ACCEPT",
        ],
    );
}

fn apply_ok(lab: &Lab, cfg: &std::path::Path) {
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `apply --confirm WINDOW` in the background, once it waits for the
/// confirmation (it said so on stderr); the rest of its stderr follows.
/// (Should apply end before waiting, the test fails: its child is gone then.)
#[allow(clippy::zombie_processes)]
fn apply_waiting(
    lab: &Lab,
    cfg: &str,
    window: &str,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut child = lab
        .fwctl_cmd(&["--config", cfg, "apply", "--confirm", window], &[])
        .stderr(std::process::Stdio::piped())
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

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs root: kernel test"]
fn packets_follow_the_policy_on_both_families() {
    let host_before = host_firewall();
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTA", ""));
    let _listeners = lab.listen(&[22, 80, 443, 8080]);
    // Before apply everything answers: the lab itself works.
    assert_eq!(lab.reach(src("benign").0, 8080), Reply::Connected);

    let mut kmsg = Kmsg::open();
    apply_ok(&lab, &cfg);
    for fam in [0, 1] {
        let pick = |role: &str| if fam == 0 { src(role).0 } else { src(role).1 };
        for port in [22, 80, 443] {
            assert_eq!(
                lab.reach(pick("benign"), port),
                Reply::Connected,
                "allowed port {port} family {fam}"
            );
        }
        // Other ports: silently dropped, listener or not (no RST, no refusal).
        assert_eq!(
            lab.reach(pick("benign"), 8080),
            Reply::Silent,
            "family {fam}"
        );
        assert_eq!(lab.reach(pick("benign"), 9), Reply::Silent, "family {fam}");
        assert_eq!(
            lab.reach(pick("blacklisted"), 80),
            Reply::Silent,
            "blacklisted, family {fam}"
        );
        assert_eq!(
            lab.reach(pick("whitelisted"), 8080),
            Reply::Connected,
            "whitelisted, family {fam}"
        );
    }

    // LOG lines with the configured prefixes reach the kernel log.
    let want = [
        "FWTA-BLOCKED: ",
        "FWTA-ALLOWED: ",
        "FWTA6-BLOCKED: ",
        "FWTA6-ALLOWED: ",
    ];
    let lines = kmsg.wait_for("FWTA", Duration::from_secs(5), |got| {
        want.iter().all(|w| got.iter().any(|l| l.contains(w)))
            && got.iter().any(|l| {
                l.contains("FWTA-BLOCKED: ")
                    && l.contains("SRC=198.51.100.10 ")
                    && l.contains("DPT=8080 ")
            })
    });
    for w in want {
        assert!(
            lines.iter().any(|l| l.contains(w)),
            "no {w:?} line in {lines:#?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("FWTA-BLOCKED: ")
            && l.contains("SRC=198.51.100.11 ")
            && l.contains("DPT=80 ")),
        "blacklisted source logged as blocked: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("FWTA6-BLOCKED: ")
            && l.contains("SRC=2001:0db8:0100:0000:0000:0000:0000:0010")),
        "IPv6 line with the full address: {lines:#?}"
    );
    drop(lab);
    assert_eq!(
        host_firewall(),
        host_before,
        "the host namespace's firewall changed"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn throttled_source_is_rate_limited() {
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTT", ""));
    let _listeners = lab.listen(&[80]);
    apply_ok(&lab, &cfg);
    let (t4, t6) = src("throttled");
    lab.ban("throttle-hard", &t4.to_string(), 600);
    lab.ban("throttle-hard_v6", &t6.to_string(), 600);
    for (t, b) in [(t4, src("benign").0), (t6, src("benign").1)] {
        // 20 attempts at once; the hard throttle allows a burst of 3.
        let p = lab.probe(t, 80, 20, Duration::from_millis(800));
        assert!(
            p.connected >= 1 && p.connected <= 3,
            "throttled source got {p:?}"
        );
        assert_eq!(p.refused, 0);
        let p = lab.probe(b, 80, 20, Duration::from_millis(800));
        assert_eq!(
            p.connected, 20,
            "an unthrottled source is not limited: {p:?}"
        );
    }
    // Within its rate a throttled source still reaches only allowed services.
    let _more = lab.listen(&[8080]);
    assert_eq!(lab.reach(t4, 8080), Reply::Silent);
}

#[test]
#[ignore = "needs root: kernel test"]
fn reapply_is_idempotent_keeps_bans_and_foreign_rules() {
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTR", ""));
    // Another tool's rules, which fwctl must leave alone.
    lab.exec_ok(&lab.target, &["iptables", "-N", "DOCKER-USER"]);
    add_foreign_rule(&lab);
    lab.exec_ok(
        &lab.target,
        &[
            "ip6tables",
            "-A",
            "INPUT",
            "-s",
            "2001:db8:99::1",
            "-j",
            "ACCEPT",
        ],
    );
    apply_ok(&lab, &cfg);
    let first = lab.rules();
    lab.ban("blacklist", "203.0.113.99", 600);
    lab.ban("throttle-hard_v6", "2001:db8:5::5", 600);
    apply_ok(&lab, &cfg);
    let second = lab.rules();
    assert_eq!(first, second, "a second apply changed iptables-save output");
    assert_eq!(
        second.matches("-A INPUT -j FWCTL-INPUT").count(),
        2,
        "one jump per family:\n{second}"
    );
    assert!(
        second.contains(":DOCKER-USER") && second.contains("-A INPUT -s 192.0.2.99/32 -j ACCEPT")
    );
    assert!(second.contains("-A INPUT -s 2001:db8:99::1/128 -j ACCEPT"));
    assert!(second.contains(":INPUT DROP"));
    let bl = lab.set_members("blacklist");
    let t = bl.get("203.0.113.99").copied().flatten().expect("ban kept");
    assert!(t > 500 && t <= 600, "ban keeps its remaining time, got {t}");
    assert_eq!(
        bl.get("198.51.100.11"),
        Some(&Some(0)),
        "static entry present, permanent"
    );
    assert!(lab
        .set_members("throttle-hard_v6")
        .contains_key("2001:db8:5::5"));
    assert!(
        !lab.set_names().iter().any(|s| s.starts_with("fwctl-new")),
        "temporary sets cleaned up"
    );

    // A changed config replaces static members but still keeps the bans.
    let (_d2, cfg2) = config(&cfg_text("FWTR", "").replace("198.51.100.11\"", "198.51.100.15\""));
    apply_ok(&lab, &cfg2);
    let bl = lab.set_members("blacklist");
    assert!(
        bl.contains_key("198.51.100.15") && !bl.contains_key("198.51.100.11"),
        "{bl:?}"
    );
    assert!(bl.contains_key("203.0.113.99"));
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_failing_step_rolls_everything_back() {
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTF", ""));
    apply_ok(&lab, &cfg);
    let before_rules = lab.rules();
    let before_bl = lab.set_members("blacklist");
    // A second config that differs in rules and sets, with ip6tables-restore failing.
    let (dir, cfg2) = config(
        &cfg_text("FWTF", "[[service]]\nname = \"alt\"\nport = 8080\n")
            .replace("198.51.100.11\"", "198.51.100.15\""),
    );
    let fake = dir.path().join("ip6tables-restore");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'simulated ip6tables failure' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = lab.fwctl(
        &["--config", cfg2.to_str().unwrap(), "apply"],
        &[("FWCTL_IP6TABLES_RESTORE", fake.to_str().unwrap())],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("ip6tables-restore") && err.contains("simulated ip6tables failure"),
        "{err}"
    );
    assert!(err.contains("put back"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert_eq!(lab.rules(), before_rules, "IPv4 rules were not rolled back");
    assert_eq!(
        lab.set_members("blacklist"),
        before_bl,
        "sets were not rolled back"
    );
    assert!(!lab.set_names().iter().any(|s| s.starts_with("fwctl-new")));
}

#[test]
#[ignore = "needs root: kernel test"]
fn confirm_or_roll_back() {
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTC", ""));
    apply_ok(&lab, &cfg);
    let old = lab.rules();
    let (_d2, cfg2) = config(&cfg_text(
        "FWTC",
        "[[service]]\nname = \"alt\"\nport = 8080\n",
    ));
    let c2 = cfg2.to_str().unwrap();

    // No confirmation: the old rules come back.
    let out = lab.fwctl(&["--config", c2, "apply", "--confirm", "2s"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no confirmation within 2s"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.rules(), old);

    // Confirmed from another process: the new rules stay.
    let (mut child, _lines) = apply_waiting(&lab, c2, "60s");
    let out = lab.fwctl(&["confirm"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(child.wait().unwrap().success());
    let new = lab.rules();
    assert_ne!(new, old);
    assert!(new.contains("--dport 8080 -j FWCTL-ALLOW"));
}

/// A rollback once restored the whole filter table from the snapshot taken
/// before the confirm window, wiping what other tools (Docker) and fwctl's
/// own scan or capture added meanwhile. Now it puts back only fwctl's
/// chains, jump and policy, and keeps every ban.
#[test]
#[ignore = "needs root: kernel test"]
fn a_rollback_keeps_what_others_added_during_the_confirm_window() {
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTK", ""));
    apply_ok(&lab, &cfg);
    let ours_before: Vec<String> = lab
        .rules()
        .lines()
        .filter(|l| l.contains("FWCTL"))
        .map(str::to_string)
        .collect();
    let (_d2, cfg2) = config(&cfg_text(
        "FWTK",
        "[[service]]\nname = \"alt\"\nport = 8080\n",
    ));
    let (mut child, lines) = apply_waiting(&lab, cfg2.to_str().unwrap(), "3s");
    // Meanwhile: another tool's chain and rule, and a ban.
    for args in [
        &["iptables", "-N", "OTHER-TOOL"][..],
        &["iptables", "-A", "OTHER-TOOL", "-j", "RETURN"],
        &[
            "iptables",
            "-I",
            "INPUT",
            "1",
            "-s",
            "192.0.2.77",
            "-j",
            "OTHER-TOOL",
        ],
        &[
            "ip6tables",
            "-I",
            "INPUT",
            "1",
            "-s",
            "2001:db8:77::1",
            "-j",
            "ACCEPT",
        ],
        &[
            "ipset",
            "add",
            "blacklist",
            "203.0.113.50",
            "timeout",
            "600",
        ],
    ] {
        lab.exec_ok(&lab.target, args);
    }
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(!status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("no confirmation within 3s")),
        "{rest:?}"
    );
    let rules = lab.rules();
    assert!(rules.contains(":OTHER-TOOL"), "{rules}");
    assert!(
        rules.contains("-A INPUT -s 192.0.2.77/32 -j OTHER-TOOL"),
        "{rules}"
    );
    assert!(
        rules.contains("-A INPUT -s 2001:db8:77::1/128 -j ACCEPT"),
        "{rules}"
    );
    assert!(
        !rules.contains("--dport 8080"),
        "the new rules are gone: {rules}"
    );
    let ours_after: Vec<String> = rules
        .lines()
        .filter(|l| l.contains("FWCTL"))
        .map(str::to_string)
        .collect();
    assert_eq!(ours_after, ours_before, "fwctl's part is as before");
    let bl = lab.set_members("blacklist");
    assert!(
        bl.get("203.0.113.50")
            .is_some_and(|t| t.is_some_and(|t| t > 500)),
        "{bl:?}"
    );
    assert!(
        bl.contains_key("198.51.100.11"),
        "the config's member is back: {bl:?}"
    );
}

/// `FWCTL_IPTABLES_SAVE=/bin/true fwctl apply` once exited 0 with two jumps.
#[test]
#[ignore = "needs root: kernel test"]
fn a_save_tool_that_lies_changes_nothing_and_one_jump_stays_one() {
    let lab = Lab::new();
    let (dir, cfg) = config(&cfg_text("FWTJ", ""));
    apply_ok(&lab, &cfg);
    let before = lab.rules();
    let out = lab.fwctl(
        &["--config", cfg.to_str().unwrap(), "apply"],
        &[("FWCTL_IPTABLES_SAVE", "/bin/true")],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("printed no filter table"), "{err}");
    assert_eq!(lab.rules(), before, "nothing changed");
    // A save that prints an empty filter table hides our jump from the
    // render: apply inserts a second one, and then takes it out again.
    let fake = dir.path().join("iptables-save");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ -e \"$0.used\" ] && exec iptables-save \"$@\"\ntouch \"$0.used\"\nprintf '*filter\\n:INPUT ACCEPT [0:0]\\nCOMMIT\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = lab.fwctl(
        &["--config", cfg.to_str().unwrap(), "apply"],
        &[("FWCTL_IPTABLES_SAVE", fake.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than one jump"),
        "{}",
        stderr(&out)
    );
    let v4 = lab.exec_ok(&lab.target, &["iptables-save", "-t", "filter"]);
    assert_eq!(v4.matches("-A INPUT -j FWCTL-INPUT").count(), 1, "{v4}");
}

/// The kernel takes ipset timeouts up to 2147483 s, not ipset's 4294967.
#[test]
#[ignore = "needs root: kernel test"]
fn the_kernels_largest_timeout_is_what_fwctl_allows() {
    let lab = Lab::new();
    lab.exec_ok(
        &lab.target,
        &["ipset", "create", "fwt-t", "hash:ip", "timeout", "0"],
    );
    let max = fwctl::units::duration::MAX_TIMEOUT;
    lab.exec_ok(
        &lab.target,
        &[
            "ipset",
            "add",
            "fwt-t",
            "203.0.113.1",
            "timeout",
            &max.to_string(),
        ],
    );
    let over = lab.exec(
        &lab.target,
        &[
            "ipset",
            "add",
            "fwt-t",
            "203.0.113.2",
            "timeout",
            &(max + 1).to_string(),
        ],
    );
    assert!(!over.status.success(), "the kernel took {}", max + 1);
}

#[test]
#[ignore = "needs root: kernel test"]
fn remove_takes_fwctl_out_cleanly() {
    let lab = Lab::new();
    add_foreign_rule(&lab);
    let (_d, cfg) = config(&cfg_text("FWTX", ""));
    apply_ok(&lab, &cfg);
    let c = cfg.to_str().unwrap();
    let out = lab.fwctl(&["--config", c, "remove"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rules = lab.rules();
    assert!(!rules.contains("FWCTL"), "{rules}");
    assert!(
        rules.contains(":INPUT ACCEPT") && rules.contains("-A INPUT -s 192.0.2.99/32 -j ACCEPT")
    );
    assert_eq!(lab.set_names().len(), 8, "sets kept without --sets");
    let out = lab.fwctl(&["--config", c, "remove", "--sets"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(lab.set_names().is_empty());
}

#[test]
#[ignore = "needs root: kernel test"]
fn bad_input_changes_nothing() {
    let lab = Lab::new();
    let before = lab.rules();
    let (_d, bad) = config("[trusted]\nnetworks = [\"198.51.100.300\"]\n");
    let out = lab.fwctl(&["--config", bad.to_str().unwrap(), "apply"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("fwctl.toml:2:"), "{}", stderr(&out));

    let (_d, good) = config(&cfg_text("FWTB", ""));
    let g = good.to_str().unwrap();
    let out = lab.fwctl(
        &["--config", g, "apply"],
        &[("FWCTL_IPSET", "/nonexistent/ipset")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("apt-get install ipset"),
        "{}",
        stderr(&out)
    );

    // A set of the right name but the wrong type: refused before anything changes.
    lab.exec_ok(
        &lab.target,
        &["ipset", "create", "throttle-soft", "hash:net"],
    );
    let out = lab.fwctl(&["--config", g, "apply"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("set throttle-soft already exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.rules(), before);
    assert_eq!(lab.set_names(), ["throttle-soft"]);
}

/// A threat feed of 100 000 entries loads through one `ipset restore`. IPv6
/// documentation addresses give room for that many distinct entries.
pub fn write_feed(path: &std::path::Path, n: usize) {
    let mut s = String::with_capacity(n * 24);
    for i in 0..n {
        s.push_str(&format!(
            "2001:db8:{:x}:{:x}::1\n",
            0x1000 + i / 65536,
            i % 65536
        ));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_100k_entry_feed_loads_and_reloads() {
    let lab = Lab::new();
    let (dir, cfg) =
        config("[blacklist]\nfiles = [\"feed.txt\"]\n[[service]]\nname = \"ssh\"\nport = 22\n");
    write_feed(&dir.path().join("feed.txt"), 100_000);
    apply_ok(&lab, &cfg);
    let count = |set: &str| {
        lab.exec_ok(&lab.target, &["ipset", "save", set])
            .lines()
            .filter(|l| l.starts_with("add "))
            .count()
    };
    assert_eq!(count("blacklist_v6"), 100_000);
    lab.ban("blacklist_v6", "2001:db8:ffff::9", 600);
    apply_ok(&lab, &cfg);
    assert_eq!(
        count("blacklist_v6"),
        100_001,
        "feed reloaded and the ban kept"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn detection_only_logs_but_drops_nothing() {
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text("FWTD", "").replacen(
        "\n[trusted]",
        "mode = \"detection_only\"\n[trusted]",
        1,
    ));
    let _listeners = lab.listen(&[80, 8080]);
    let mut kmsg = Kmsg::open();
    apply_ok(&lab, &cfg);
    assert!(lab.rules().contains(":INPUT ACCEPT"));
    for (b, bl) in [
        (src("benign").0, src("blacklisted").0),
        (src("benign").1, src("blacklisted").1),
    ] {
        assert_eq!(lab.reach(b, 8080), Reply::Connected);
        assert_eq!(lab.reach(bl, 80), Reply::Connected);
    }
    let lines = kmsg.wait_for("FWTD", Duration::from_secs(5), |got| {
        got.iter()
            .filter(|l| l.contains("FWTD-BLOCKED: ") || l.contains("FWTD6-BLOCKED: "))
            .count()
            >= 4
    });
    for needle in [
        "SRC=198.51.100.10 ",
        "SRC=198.51.100.11 ",
        "SRC=2001:0db8:0100:0000:0000:0000:0000:0011 ",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("BLOCKED: ") && l.contains(needle)),
            "{needle} not logged as blocked: {lines:#?}"
        );
    }
}

/// Over SSH, a config without the SSH port once installed silently and the
/// next SSH connection timed out. With sessions held open from the client
/// (IPv4 and IPv6 to port 22, and IPv4 to a dual-stack listener on 2222,
/// which the kernel lists with a mapped address), apply refuses, names each
/// peer and port and the fixes, and changes nothing; the dry run says the
/// same and exits 2, doctor fails its lock-out row; --confirm warns; a
/// [[service]] or [trusted] entry passes; --force installs.
#[test]
#[ignore = "needs root: kernel test"]
fn apply_refuses_to_lock_out_a_connected_peer() {
    let lab = Lab::new();
    let listeners = lab.listen(&[22]);
    let _dual = in_ns(&lab.target, || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        s.set_only_v6(false).unwrap();
        s.bind(&"[::]:2222".parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        s.listen(8).unwrap();
        s
    });
    let web = "[[service]]\nname = \"web\"\nport = 80\n";
    let services = format!(
        "{web}[[service]]\nname = \"ssh\"\nport = 22\n[[service]]\nname = \"alt\"\nport = 2222\n"
    );
    let run = |text: &str, args: &[&str]| {
        let (_d, cfg) = config(text);
        let mut v = vec!["--config", cfg.to_str().unwrap()];
        if args.first() != Some(&"doctor") {
            v.push("apply");
        }
        v.extend_from_slice(args);
        let mut c = lab.fwctl_cmd(&v, &[]);
        c.env_remove("SSH_CONNECTION");
        c.output().unwrap()
    };
    // The admin's rules are in (so conntrack follows the sessions from
    // their first packet), then the admin logs in.
    let out = run(&services, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (admin4, admin6) = src("benign");
    let s4 = lab.session(admin4, 22);
    let _s6 = lab.session(admin6, 22);
    let _s2222 = lab.session(admin4, 2222);
    let before = lab.rules();

    let out = run(web, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("fwctl: lock-out: "))
        .collect();
    assert_eq!(lines.len(), 3, "{err}");
    for (peer, port) in [
        ("198.51.100.10", 22),
        ("2001:db8:100::10", 22),
        ("198.51.100.10", 2222),
    ] {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("{peer} is connected to port {port} ")))
            .unwrap_or_else(|| panic!("{peer} port {port}: {err}"));
        assert!(
            line.contains(&format!("a [[service]] with port = {port}"))
                && line.contains("in [trusted] networks"),
            "{line}"
        );
    }
    assert!(
        err.contains(
            "fwctl: error: apply refused: the new ruleset would lock out 3 connected peers"
        ) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(lab.rules(), before, "a refused apply changes nothing");

    // The dry run shows the ruleset, says the same, and exits 2.
    let out = run(web, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--dport 80 -j FWCTL-ALLOW"));
    assert_eq!(stderr(&out).matches("fwctl: lock-out: ").count(), 3);
    assert_eq!(lab.rules(), before);

    // doctor: a problem row with the peers and the fix.
    let out = run(web, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lock-out")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(row["level"], "fail", "{row}");
    let detail = row["detail"].as_str().unwrap();
    for want in [
        "198.51.100.10 to port 22",
        "2001:db8:100::10 to port 22",
        "198.51.100.10 to port 2222",
    ] {
        assert!(detail.contains(want), "{want}: {row}");
    }
    assert!(row["fix"].as_str().unwrap().contains("[trusted]"), "{row}");
    let out = run(&services, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "lock-out" && c["level"] == "ok"),
        "{v:#}"
    );

    // --confirm goes on with warnings (and rolls back by itself).
    let out = run(web, &["--confirm", "1s"]);
    let err = stderr(&out);
    assert_eq!(
        err.matches("fwctl: warning: 198.51.100.10 is connected")
            .count(),
        2,
        "{err}"
    );
    assert!(err.contains("no confirmation within 1s"), "{err}");
    assert_eq!(lab.rules(), before);

    // The fixes: the services, or the peers trusted.
    let out = run(&services, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("lock-out"), "{}", stderr(&out));
    let trusted = format!("{web}[trusted]\nnetworks = [\"198.51.100.10\", \"2001:db8:100::10\"]\n");
    let out = run(&trusted, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // --force installs, with the warnings; the lock-out is real: a new
    // connection to port 22 goes unanswered, while the sessions stay.
    let out = run(web, &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out)
            .matches("fwctl: warning: 198.51.100.10 is connected")
            .count(),
        2
    );
    assert!(!lab.rules().contains("--dport 22 "));
    assert_eq!(lab.reach(admin4, 22), Reply::Silent);
    let (mut held, _) = listeners[0].accept().unwrap();
    held.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    std::io::Write::write_all(&mut &s4, b"still here").unwrap();
    let mut got = [0u8; 10];
    std::io::Read::read_exact(&mut held, &mut got).unwrap();
    assert_eq!(&got, b"still here");
}
