//! Kernel tests for the raw part of the ruleset (issue 29; root,
//! namespaces): the rendered text is installed directly (ipset restore,
//! iptables-restore/ip6tables-restore --noflush for filter and raw; `nft -f`
//! for nftables), and banned sources are logged and dropped before conntrack:
//! the raw drop rule counts every packet, none reaches the filter table or
//! leaves a conntrack entry, while a benign peer's connection is tracked and a
//! whitelisted one inside a banned network still gets through filter. Removal
//! leaves the raw table as it was, a foreign rule included.

mod common;
use common::*;
use fwctl::core::ruleset::{self, Current, Plan, TableState};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Packets each banned source sends.
const N: usize = 200;

/// The banned, whitelisted (also inside the banned network) and benign
/// roles; a LOG prefix of this test's own for the blacklisted lines.
fn plan(tag: &str) -> Plan {
    let (b4, b6) = src("blacklisted");
    let (w4, w6) = src("whitelisted");
    let (_dir, path) = config(&format!(
        "[[service]]\nname = \"ssh\"\nport = 22\n\
         [trusted]\nnetworks = [\"{w4}\", \"{w6}\"]\n\
         [blacklist]\nentries = [\"{b4}\", \"{b6}\", \"{w4}\", \"{w6}\"]\n\
         [logging.prefixes]\nblacklisted = {{ v4 = \"{tag}-BL: \", v6 = \"{tag}6-BL: \" }}\n"
    ));
    ruleset::build(&fwctl::sys::configfile::load(&path).unwrap())
}

fn tool(v6: bool, name: &str) -> String {
    if v6 {
        name.replacen("ip", "ip6", 1)
    } else {
        name.to_string()
    }
}

fn raw_save(lab: &Lab, v6: bool) -> String {
    lab.exec_ok(&lab.target, &[&tool(v6, "iptables-save"), "-t", "raw"])
}

fn install_iptables(lab: &Lab, plan: &Plan) {
    let now = Current {
        sets: lab.set_names().into_iter().collect(),
        ..Current::default()
    };
    exec_input_ok(
        &lab.target,
        &["ipset", "restore"],
        &ruleset::render_sets(&plan.sets, &now),
    );
    for (t, v6) in [(&plan.v4, false), (&plan.v6, true)] {
        let restore = tool(v6, "iptables-restore");
        // Raw first: the filter table no longer drops banned sources.
        let now = fwctl::sys::iptables::save::raw_state(&raw_save(lab, v6));
        exec_input_ok(
            &lab.target,
            &[&restore, "--noflush"],
            &ruleset::render_raw(t, &now),
        );
        exec_input_ok(
            &lab.target,
            &[&restore, "--noflush"],
            &ruleset::render_table(t, &TableState::default()),
        );
    }
}

/// Send `n` UDP datagrams from `src` (in the client) to the target's port 9.
fn send_udp(lab: &Lab, src: IpAddr, n: usize) {
    let dst: IpAddr = if src.is_ipv4() { TARGET4 } else { TARGET6 }
        .parse()
        .unwrap();
    in_ns(&lab.client, || {
        let s = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
        for _ in 0..n {
            s.send_to(b"fwctl raw test", SocketAddr::new(dst, 9))
                .unwrap();
        }
    });
}

/// The packet counter of the line of `iptables-save -c` output ending so.
fn counted(save: &str, rule: &str) -> u64 {
    let line = save
        .lines()
        .find(|l| l.ends_with(rule))
        .unwrap_or_else(|| panic!("no {rule} in\n{save}"));
    let n = line.trim_start_matches('[').split(':').next().unwrap();
    n.parse().unwrap()
}

/// Conntrack entries in the target whose original source is `src`.
fn tracked(lab: &Lab, src: IpAddr) -> usize {
    let fam = if src.is_ipv4() { "ipv4" } else { "ipv6" };
    let out = lab.exec(
        &lab.target,
        &["conntrack", "-L", "-f", fam, "-s", &src.to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The kernel logged a line with `prefix` for `src`.
fn logged(kmsg: &mut Kmsg, prefix: &str, src: IpAddr) {
    // The kernel writes IPv6 addresses in full.
    let want = match src {
        IpAddr::V4(a) => format!(" SRC={a} "),
        IpAddr::V6(a) => format!(" SRC={} ", fwctl::testing::loggen::full_v6(a)),
    };
    let lines = kmsg.wait_for(prefix, Duration::from_secs(5), |got| {
        got.iter()
            .any(|l| l.starts_with(prefix) && l.contains(&want))
    });
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(&want)),
        "no {prefix} line for {src}: {lines:?}"
    );
}

/// What both backends must show once installed: banned sources counted by
/// `dropped` (the raw drop rule's counter) and logged, never tracked; the
/// benign peer tracked; the whitelisted one through to an unlisted port.
fn check_banned_dropped_before_conntrack(
    lab: &Lab,
    kmsg: &mut Kmsg,
    tag: &str,
    dropped: &dyn Fn(bool) -> u64,
    reached_filter: &dyn Fn(bool) -> u64,
) {
    let _l = lab.listen(&[22, 8080]);
    let (b4, b6) = src("blacklisted");
    let (g4, g6) = src("benign");
    let (w4, w6) = src("whitelisted");
    // A benign connection first: it also resolves the target's neighbour
    // entry, so that no datagram below waits in (or falls off) its queue.
    assert_eq!(lab.reach(g4, 22), Reply::Connected);
    assert_eq!(lab.reach(g6, 22), Reply::Connected);
    for (b, v6) in [(b4, false), (b6, true)] {
        assert_eq!(dropped(v6), 0);
        send_udp(lab, b, N);
        assert_eq!(dropped(v6), N as u64, "raw drop counter, {b}");
        assert_eq!(reached_filter(v6), 0, "{b} reached the filter table");
        assert_eq!(tracked(lab, b), 0, "{b} has a conntrack entry");
        assert_eq!(lab.reach(b, 22), Reply::Silent, "{b} to the ssh service");
    }
    logged(kmsg, &format!("{tag}-BL: "), b4);
    logged(kmsg, &format!("{tag}6-BL: "), b6);
    for g in [g4, g6] {
        assert!(tracked(lab, g) >= 1, "the benign {g} is tracked");
    }
    // Whitelisted inside the banned list: let through raw, then accepted by
    // the filter table's whitelist, also to a port no service opens.
    for w in [w4, w6] {
        assert_eq!(lab.reach(w, 8080), Reply::Connected, "{w}");
        assert!(tracked(lab, w) >= 1, "{w} went on to conntrack");
    }
    assert_eq!(lab.reach(g4, 8080), Reply::Silent, "default drop stays");
}

#[test]
#[ignore = "needs root: kernel test"]
fn iptables_raw_drops_banned_sources_before_conntrack_and_removal_restores_raw() {
    let lab = Lab::new();
    let host = host_firewall();
    let tag = format!("RAW{}", std::process::id() % 100_000);
    let mut kmsg = Kmsg::open();
    // Someone else's rule in raw PREROUTING, which fwctl must not touch.
    for v6 in [false, true] {
        lab.exec_ok(
            &lab.target,
            &[
                &tool(v6, "iptables"),
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-p",
                "udp",
                "--dport",
                "5353",
                "-j",
                "CT",
                "--notrack",
            ],
        );
    }
    let before: Vec<String> = [false, true]
        .map(|v6| normalize_save(&raw_save(&lab, v6)))
        .into();
    let plan = plan(&tag);
    install_iptables(&lab, &plan);
    // A second install over the first keeps one jump, on top.
    install_iptables(&lab, &plan);
    for v6 in [false, true] {
        let save = normalize_save(&raw_save(&lab, v6));
        let jumps: Vec<&str> = save
            .lines()
            .filter(|l| l.starts_with("-A PREROUTING"))
            .collect();
        assert_eq!(
            jumps,
            [
                "-A PREROUTING -j FWCTL-RAW",
                "-A PREROUTING -p udp -m udp --dport 5353 -j CT --notrack"
            ],
            "{save}"
        );
        // A probe rule counting what of the banned source reaches filter.
        let (b4, b6) = src("blacklisted");
        let b = if v6 { b6 } else { b4 };
        lab.exec_ok(
            &lab.target,
            &[
                &tool(v6, "iptables"),
                "-I",
                "INPUT",
                "1",
                "-s",
                &b.to_string(),
            ],
        );
    }
    let save_c = |v6: bool, table: &str| {
        lab.exec_ok(
            &lab.target,
            &[&tool(v6, "iptables-save"), "-c", "-t", table],
        )
    };
    let set = |v6: bool| if v6 { "blacklist_v6" } else { "blacklist" };
    let dropped = |v6: bool| {
        counted(
            &save_c(v6, "raw"),
            &format!("-A FWCTL-RAW -m set --match-set {} src -j DROP", set(v6)),
        )
    };
    let reached = |v6: bool| {
        let (b4, b6) = src("blacklisted");
        let (b, len) = if v6 { (b6, 128) } else { (b4, 32) };
        counted(&save_c(v6, "filter"), &format!("-A INPUT -s {b}/{len}"))
    };
    check_banned_dropped_before_conntrack(&lab, &mut kmsg, &tag, &dropped, &reached);
    // The LOG rule in raw counts the lines it wrote: its per-source limiter
    // (burst 20, 10/s) let about a burst of the flood through, no more.
    let log = counted(
        &save_c(false, "raw"),
        &format!(
            "-A FWCTL-RAW -m set --match-set blacklist src -m hashlimit --hashlimit-upto 10/sec \
             --hashlimit-burst 20 --hashlimit-mode srcip --hashlimit-name fwctl-log-bl \
             -j LOG --log-prefix \"{tag}-BL: \""
        ),
    );
    assert!((20..N as u64 / 4).contains(&log), "{log}");

    for (v6, want) in [false, true].into_iter().zip(&before) {
        let now = fwctl::sys::iptables::save::raw_state(&raw_save(&lab, v6));
        assert_eq!(now.prerouting_jumps, 1);
        let rm = ruleset::render_raw_removal(&now).expect("installed");
        exec_input_ok(
            &lab.target,
            &[&tool(v6, "iptables-restore"), "--noflush"],
            &rm,
        );
        let after = raw_save(&lab, v6);
        assert_eq!(&normalize_save(&after), want, "raw table after removal");
        assert_eq!(
            ruleset::render_raw_removal(&fwctl::sys::iptables::save::raw_state(&after)),
            None
        );
    }
    assert_eq!(host_firewall(), host, "the host's firewall is untouched");
}

#[test]
#[ignore = "needs root: kernel test"]
fn nft_prerouting_at_priority_raw_drops_banned_sources_before_conntrack() {
    let lab = Lab::new();
    let tag = format!("NRAW{}", std::process::id() % 100_000);
    let mut kmsg = Kmsg::open();
    let plan = plan(&tag);
    exec_input_ok(
        &lab.target,
        &["nft", "-f", "-"],
        &ruleset::nft::render_install(&plan, &Current::default()),
    );
    // A probe chain of our own at priority filter + 1 (after fwctl's input
    // chain would have dropped them; before it only if it accepted them):
    // counts what of the banned sources reaches the input hook at all.
    let (b4, b6) = src("blacklisted");
    exec_input_ok(
        &lab.target,
        &["nft", "-f", "-"],
        &format!(
            "table inet probe {{\n\tchain input {{\n\t\ttype filter hook input priority -1; policy accept;\n\
             \t\tip saddr {b4} counter\n\t\tip6 saddr {b6} counter\n\t}}\n}}\n"
        ),
    );
    let packets = |table: &str, chain: &str, needle: &str| -> u64 {
        let text = lab.exec_ok(&lab.target, &["nft", "list", "chain", "inet", table, chain]);
        let line = text
            .lines()
            .find(|l| l.contains(needle) && l.contains("counter packets "))
            .unwrap_or_else(|| panic!("no {needle} counter in\n{text}"));
        line.split("packets ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let dropped = |v6: bool| {
        if v6 {
            packets("fwctl", "FWCTL6-RAW", "ip6 saddr @blacklist_v6 counter")
        } else {
            packets("fwctl", "FWCTL-RAW", "ip saddr @blacklist counter")
        }
    };
    let reached = |v6: bool| {
        if v6 {
            packets("probe", "input", &format!("ip6 saddr {b6} "))
        } else {
            packets("probe", "input", &format!("ip saddr {b4} "))
        }
    };
    check_banned_dropped_before_conntrack(&lab, &mut kmsg, &tag, &dropped, &reached);
    let chain = lab.exec_ok(
        &lab.target,
        &["nft", "list", "chain", "inet", "fwctl", "prerouting"],
    );
    assert!(
        chain.contains("type filter hook prerouting priority raw; policy accept;"),
        "{chain}"
    );
    exec_input_ok(
        &lab.target,
        &["nft", "-f", "-"],
        &ruleset::nft::render_removal(),
    );
    let left = lab.exec_ok(&lab.target, &["nft", "list", "tables"]);
    assert_eq!(
        left.trim(),
        "table inet probe",
        "removal is fwctl's table only"
    );
}
