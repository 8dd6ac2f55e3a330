//! Kernel test (issue 29; root, namespaces): fwctl leaves other firewalls
//! byte-identical, whichever backend runs. Before fwctl, the target holds
//! another tool's `table inet other` (a set, a base chain on input at another
//! priority, a rule with a counter and a comment), Docker-style iptables-nft
//! chains (filter and nat), foreign rules in INPUT and raw PREROUTING, and
//! another tool's ipset. After every step (apply, re-apply, apply with a ban,
//! `apply --confirm` rolled back, remove, remove --sets) what is not fwctl's
//! reads back exactly as before.

mod common;
use common::*;
use std::collections::BTreeSet;

/// Another tool's ipset and its members.
const OTHER_SET: &str = "othertool-allow";
const OTHER_MEMBERS: [&str; 2] = ["192.0.2.5", "192.0.2.6"];

/// The other tool's nftables table. Its counter rule matches only
/// 192.0.2.0/24 to port 8443, which no packet of this test is, so the
/// counter reads 0 throughout and the listing compares byte for byte.
const OTHER_TABLE: &str = r#"table inet other {
    set allowed {
        type ipv4_addr
        elements = { 192.0.2.7, 192.0.2.8 }
    }
    chain in {
        type filter hook input priority filter - 5; policy accept;
        ip saddr 192.0.2.0/24 tcp dport 8443 counter accept comment "other tool"
        ip saddr @allowed accept
    }
}
"#;

fn cfg_text(backend: &str) -> String {
    format!(
        r#"
[firewall]
backend = "{backend}"
[trusted]
networks = ["198.51.100.12", "2001:db8:100::12"]
[blacklist]
entries = ["198.51.100.11", "2001:db8:100::11"]
[[service]]
name = "ssh"
port = 22
[throttle.hard]
rate = "1/minute"
burst = 3
"#
    )
}

/// Everything of other tools, as `Lab::new` leaves the target plus (a) the
/// other table, (b) Docker's iptables-nft state, foreign INPUT and raw rules,
/// (c) another ipset.
fn other_firewalls(lab: &Lab) {
    let v = lab.exec_ok(&lab.target, &["iptables", "-V"]);
    assert!(v.contains("nf_tables"), "iptables is not iptables-nft: {v}");
    exec_input_ok(&lab.target, &["nft", "-f", "-"], OTHER_TABLE);
    let ipt = |args: &[&str]| {
        let mut v = vec!["iptables"];
        v.extend_from_slice(args);
        lab.exec_ok(&lab.target, &v);
    };
    for chain in ["DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"] {
        ipt(&["-t", "filter", "-N", chain]);
    }
    ipt(&["-A", "FORWARD", "-j", "DOCKER-USER"]);
    ipt(&["-A", "FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1"]);
    ipt(&["-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"]);
    ipt(&["-A", "DOCKER-USER", "-j", "RETURN"]);
    ipt(&["-A", "DOCKER-ISOLATION-STAGE-1", "-j", "RETURN"]);
    ipt(&["-t", "nat", "-N", "DOCKER"]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "DOCKER",
    ]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "!",
        "-d",
        "127.0.0.0/8",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "DOCKER",
    ]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "192.0.2.0/24",
        "!",
        "-o",
        "docker0",
        "-j",
        "MASQUERADE",
    ]);
    ipt(&["-A", "INPUT", "-s", "192.0.2.99", "-j", "ACCEPT"]);
    ipt(&[
        "-t",
        "raw",
        "-A",
        "PREROUTING",
        "-s",
        "192.0.2.98",
        "-j",
        "NOTRACK",
    ]);
    lab.exec_ok(
        &lab.target,
        &[
            "ip6tables",
            "-A",
            "INPUT",
            "-s",
            "2001:db8:ffff::99",
            "-j",
            "ACCEPT",
        ],
    );
    lab.exec_ok(
        &lab.target,
        &[
            "ip6tables",
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-s",
            "2001:db8:ffff::98",
            "-j",
            "NOTRACK",
        ],
    );
    lab.exec_ok(
        &lab.target,
        &["ipset", "create", OTHER_SET, "hash:ip", "family", "inet"],
    );
    for m in OTHER_MEMBERS {
        lab.exec_ok(&lab.target, &["ipset", "add", OTHER_SET, m]);
    }
}

/// fwctl's ipsets: the plan's, and its temporary ones (`fwctl-*`).
fn fwctl_sets(cfg: &std::path::Path) -> BTreeSet<String> {
    let plan = fwctl::core::ruleset::build(&fwctl::sys::configfile::load(cfg).unwrap());
    plan.sets.into_iter().map(|s| s.name).collect()
}

/// `nft list table` text of a table the iptables backend shares (through
/// iptables-nft) without fwctl's chains (`chain FWCTL...` blocks), lines
/// naming FWCTL and the blank lines between chains; with `own_policy`, also
/// without the input base chain's header (the iptables backend sets the
/// filter table's INPUT policy: that line is fwctl's).
fn foreign_nft(text: &str, own_policy: bool) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim();
        if skipping {
            if line == "\t}" {
                skipping = false;
            }
            continue;
        }
        if t.starts_with("chain FWCTL") {
            skipping = true;
            continue;
        }
        if t.is_empty()
            || line.contains("FWCTL")
            || (own_policy && t.starts_with("type filter hook input"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// What is not fwctl's in the target, as text that compares byte for byte.
/// The nftables backend owns `table inet fwctl` and nothing else, so only
/// the iptables backend's chains, INPUT policy and ipsets are left out.
fn foreign(lab: &Lab, own: &BTreeSet<String>, iptables_backend: bool) -> String {
    let mut s = String::new();
    let tables = lab.exec_ok(&lab.target, &["nft", "list", "tables"]);
    for t in tables.lines() {
        let w: Vec<&str> = t.split_whitespace().collect();
        assert_eq!(w.len(), 3, "{t}");
        if w[1] == "inet" && w[2] == "fwctl" {
            continue;
        }
        let filter = matches!(w[1], "ip" | "ip6") && w[2] == "filter";
        let listed = lab.exec_ok(&lab.target, &["nft", "list", "table", w[1], w[2]]);
        s += &format!("## nft {t}\n");
        s += &if iptables_backend {
            foreign_nft(&listed, filter)
        } else {
            listed
        };
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        s += &format!("## {tool}\n");
        let saved = normalize_save(&lab.exec_ok(&lab.target, &[tool]));
        let mut table = "";
        for line in saved.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t;
            }
            // The iptables backend sets the filter table's INPUT policy.
            let policy = iptables_backend && table == "filter" && line.starts_with(":INPUT ");
            if (iptables_backend && line.contains("FWCTL")) || policy {
                continue;
            }
            s += line;
            s.push('\n');
        }
    }
    s += "## ipset list -n\n";
    for name in lab.set_names() {
        let ours = own.contains(&name) || name.starts_with("fwctl");
        if !(iptables_backend && ours) {
            s += &name;
            s.push('\n');
        }
    }
    s += &format!("## ipset list {OTHER_SET}\n");
    s += &lab.exec_ok(&lab.target, &["ipset", "list", OTHER_SET]);
    s
}

/// A line diff of two snapshots (longest common subsequence; `-` only
/// before, `+` only now), so a moved or repeated line shows too.
fn diff(before: &str, after: &str) -> String {
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let mut lcs = vec![vec![0usize; a.len() + 1]; b.len() + 1];
    for i in (0..b.len()).rev() {
        for j in (0..a.len()).rev() {
            lcs[i][j] = if b[i] == a[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut d) = (0, 0, String::new());
    while i < b.len() || j < a.len() {
        if i < b.len() && j < a.len() && b[i] == a[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < a.len() && (i == b.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            d += &format!("+ {}\n", a[j]);
            j += 1;
        } else {
            d += &format!("- {}\n", b[i]);
            i += 1;
        }
    }
    d
}

fn ok(step: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{step}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fwctl_is_there(lab: &Lab, step: &str, iptables_backend: bool) {
    if iptables_backend {
        let out = lab.exec(&lab.target, &["iptables", "-S", "FWCTL-INPUT"]);
        ok(&format!("{step}: FWCTL-INPUT"), &out);
        let out = lab.exec(&lab.target, &["ip6tables", "-S", "FWCTL-INPUT"]);
        ok(&format!("{step}: ip6tables FWCTL-INPUT"), &out);
    } else {
        let out = lab.exec(&lab.target, &["nft", "list", "table", "inet", "fwctl"]);
        ok(&format!("{step}: table inet fwctl"), &out);
    }
}

fn scenario(backend: &str) {
    let iptables_backend = backend == "iptables";
    let host_before = host_firewall();
    let lab = Lab::new();
    let (_d, cfg) = config(&cfg_text(backend));
    let c = cfg.to_str().unwrap();
    let own = fwctl_sets(&cfg);
    other_firewalls(&lab);
    let before = foreign(&lab, &own, iptables_backend);
    // The snapshot holds what it should (a broken reader cannot pass).
    for want in [
        "table inet other",
        "comment \"other tool\"",
        "-A FORWARD -j DOCKER-USER",
        ":DOCKER-ISOLATION-STAGE-1",
        "-A POSTROUTING -s 192.0.2.0/24 ! -o docker0 -j MASQUERADE",
        "-A INPUT -s 192.0.2.99/32 -j ACCEPT",
        "-A PREROUTING -s 192.0.2.98/32 -j NOTRACK",
        "-A INPUT -s 2001:db8:ffff::99/128 -j ACCEPT",
        "192.0.2.6",
    ] {
        assert!(before.contains(want), "no {want:?} in\n{before}");
    }
    let check = |step: &str| {
        let now = foreign(&lab, &own, iptables_backend);
        assert!(
            now == before,
            "backend {backend}, after {step}: another firewall changed:\n{}\n---- now ----\n{now}",
            diff(&before, &now)
        );
    };
    let state = lab.state_path();
    let st = state.to_str().unwrap();
    let fw = |args: &[&str]| {
        let mut v = vec!["--config", c, "--state", st];
        v.extend_from_slice(args);
        lab.fwctl(&v, &[])
    };

    ok("apply", &fw(&["apply"]));
    fwctl_is_there(&lab, "apply", iptables_backend);
    check("apply");
    ok("re-apply", &fw(&["apply"]));
    fwctl_is_there(&lab, "re-apply", iptables_backend);
    check("re-apply");
    ok("ban", &fw(&["ban", "203.0.113.9", "--for", "10m"]));
    check("ban");
    ok("apply with a ban", &fw(&["apply"]));
    fwctl_is_there(&lab, "apply with a ban", iptables_backend);
    let banned = if iptables_backend {
        lab.exec_ok(&lab.target, &["ipset", "list", "blacklist"])
    } else {
        lab.exec_ok(
            &lab.target,
            &["nft", "list", "set", "inet", "fwctl", "blacklist"],
        )
    };
    assert!(banned.contains("203.0.113.9"), "ban kept: {banned}");
    check("apply with a ban");

    // A changed config, not confirmed: apply waits 1s, rolls back, exits
    // (output() returns once the process has ended).
    let (_d2, cfg2) = config(&format!(
        "{}[[service]]\nname = \"alt\"\nport = 8080\n",
        cfg_text(backend)
    ));
    let out = lab.fwctl(
        &[
            "--config",
            cfg2.to_str().unwrap(),
            "--state",
            st,
            "apply",
            "--confirm",
            "1s",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "not confirmed, yet: {err}");
    assert!(err.contains("no confirmation within 1s"), "{err}");
    fwctl_is_there(&lab, "apply --confirm rolled back", iptables_backend);
    check("apply --confirm 1s rolled back");

    ok("remove", &fw(&["remove"]));
    check("remove");
    ok("remove --sets", &fw(&["remove", "--sets"]));
    check("remove --sets");

    // Nothing of fwctl's is left anywhere.
    let ruleset = lab.exec_ok(&lab.target, &["nft", "list", "ruleset"]);
    assert!(!ruleset.contains("fwctl"), "{ruleset}");
    assert!(!ruleset.contains("FWCTL"), "{ruleset}");
    let rules = lab.rules();
    assert!(!rules.contains("FWCTL"), "{rules}");
    let left: Vec<String> = lab
        .set_names()
        .into_iter()
        .filter(|s| own.contains(s) || s.starts_with("fwctl"))
        .collect();
    assert!(left.is_empty(), "fwctl's ipsets left: {left:?}");
    assert_eq!(lab.set_names(), [OTHER_SET]);
    drop(lab);
    assert_eq!(
        host_firewall(),
        host_before,
        "the host namespace's firewall changed"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn iptables_backend_leaves_other_firewalls_byte_identical() {
    scenario("iptables");
}

#[test]
#[ignore = "needs root: kernel test"]
fn nftables_backend_leaves_other_firewalls_byte_identical() {
    scenario("nftables");
}
