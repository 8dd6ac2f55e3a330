use super::docker;
use super::twin::{self, addresses, closed_port, scan_ports, trusted_source, twin_config};
use super::*;
use crate::core::logline::{Line, Parser};
use crate::units::time::Zone;
use std::path::Path;

fn rules() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"))
}

fn read(p: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(p)
}

fn shipped() -> Config {
    let path = rules().join("fwctl.toml");
    Config::parse(&read(&path).unwrap(), &path, &read).unwrap()
}

fn cfg(text: &str) -> Config {
    Config::parse(text, Path::new("/etc/fwctl/fwctl.toml"), &read).unwrap()
}

fn skips(p: &[Planned]) -> Vec<(String, Option<String>)> {
    p.iter().map(|r| (r.name.clone(), r.skip.clone())).collect()
}

#[test]
fn the_shipped_config_gets_every_row_and_skips_only_what_it_lacks() {
    let c = shipped();
    let got = skips(&plan(&c, false));
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        got,
        vec![
            ("ruleset applies in the twin".into(), None),
            ("service ssh (tcp/22)".into(), None),
            ("service http (tcp/80)".into(), None),
            ("service https (tcp/443)".into(), None),
            ("closed port dropped and logged".into(), None),
            ("blacklisted address dropped".into(), None),
            ("fed address dropped".into(), s("no [[feed]] configured")),
            ("throttled service refuses over its rate (ssh)".into(), None),
            ("whitelist gets in".into(), None),
            ("IPv6 neighbour discovery works".into(), None),
            ("LOG line reaches scan and bans".into(), None),
            ("capture bans a SYN scan".into(), None),
            (
                "capture bans a decoy handshake".into(),
                s("no [capture] decoy_ports")
            ),
            ("forward chain holds".into(), s("no [forward] protect")),
        ]
    );
    // The forward row runs when the config protects forwarded traffic.
    let fwd = plan(&c, true);
    assert_eq!(fwd.last().unwrap().skip, None);
}

#[test]
fn detection_only_skips_the_drop_rows_with_the_reason() {
    let c = cfg(
        "mode = \"detection_only\"\n[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\n",
    );
    let p = plan(&c, false);
    let reason = |n: &str| {
        p.iter()
            .find(|r| r.name.starts_with(n))
            .unwrap()
            .skip
            .clone()
    };
    let drop = Some("mode = \"detection_only\" drops nothing".to_string());
    assert_eq!(reason("closed port"), drop);
    assert_eq!(reason("LOG line"), drop);
    // No TCP service and no rate: said as such, before the mode.
    assert_eq!(
        reason("throttled"),
        Some("no TCP [[service]] has a rate".into())
    );
    assert_eq!(reason("blacklisted"), drop);
    assert!(reason("capture bans a SYN")
        .unwrap()
        .contains("capture bans nothing"));
    assert_eq!(reason("service dns (udp/53)"), None);
    assert_eq!(
        reason("whitelist"),
        Some("no [trusted] network with an address usable on a link".into())
    );
}

#[test]
fn a_udp_only_config_has_nothing_for_the_drop_checks_to_aim_at() {
    let c = cfg("[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\n");
    let p = plan(&c, false);
    let b = p.iter().find(|r| r.check == Check::Blacklisted).unwrap();
    assert_eq!(b.skip.as_deref(), Some("no TCP [[service]] to aim at"));
}

#[test]
fn addresses_avoid_every_trusted_and_blacklisted_network_and_are_distinct() {
    let c = shipped();
    let a = addresses(&c).unwrap();
    let all = [
        a.twin4,
        a.twin6,
        a.client4,
        a.client6,
        a.throttled,
        a.closed,
        a.banned,
        a.fed,
        a.scan,
        a.syn,
        a.decoy,
        a.gateway,
        a.container,
    ];
    for x in all {
        assert!(
            !c.trusted.iter().chain(&c.blacklist).any(|n| n.contains(&x)),
            "{x}"
        );
    }
    let set: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(set.len(), all.len());
    // A blacklist covering the first documentation network moves them on.
    let c = cfg("[blacklist]\nentries = [\"198.51.100.0/24\"]\n");
    assert_eq!(addresses(&c).unwrap().twin4.to_string(), "203.0.113.1");
}

#[test]
fn the_trusted_source_is_a_host_of_the_first_usable_network() {
    let t = |nets: &str| trusted_source(&cfg(&format!("[trusted]\nnetworks = [{nets}]\n")));
    assert_eq!(t("\"10.20.0.0/16\"").unwrap().to_string(), "10.20.0.1");
    assert_eq!(
        t("\"2001:db8:ffff::/48\", \"192.0.2.10\"")
            .unwrap()
            .to_string(),
        "192.0.2.10"
    );
    assert_eq!(
        t("\"2001:db8:ffff::/48\"").unwrap().to_string(),
        "2001:db8:ffff::1"
    );
    assert_eq!(
        t("\"127.0.0.1\", \"2001:db8::7\"").unwrap().to_string(),
        "2001:db8::7"
    );
    assert_eq!(trusted_source(&cfg("")), None);
}

#[test]
fn the_closed_and_scanned_ports_are_none_the_config_uses() {
    let c = cfg("[[service]]\nname = \"a\"\nport = \"1-3\"\n[[service]]\nname = \"b\"\nport = 4\nprotocol = \"udp\"\n[capture]\ndecoy_ports = [5]\n[capture.port_thresholds]\n6 = 2\n");
    assert_eq!(closed_port(&c), Some(7));
    let c = cfg("[[service]]\nname = \"a\"\nport = \"20000-20002\"\n");
    assert_eq!(scan_ports(&c, 3), vec![20003, 20004, 20005]);
}

#[test]
fn the_twin_config_keeps_the_ruleset_and_drops_what_reaches_outside() {
    let text = read(&rules().join("fwctl.toml")).unwrap()
        + "[[notify]]\nname = \"ops\"\nurl = \"https://hooks.example.net/x\"\n\n[fleet]\nredis = \"redis://203.0.113.100:6379/0\"\n";
    let host = Config::parse(&text, &rules().join("fwctl.toml"), &read).unwrap();
    assert!(!host.notify.is_empty() && host.fleet.is_some());
    let state = Path::new("/tmp/fwst-1/state.json");
    let out = twin_config(&text, rules(), state).unwrap();
    // Parsed from elsewhere: the blacklist file was made absolute.
    let twin = Config::parse(&out, Path::new("/tmp/fwst-1/fwctl.toml"), &read).unwrap();
    assert!(twin.notify.is_empty() && twin.fleet.is_none() && twin.reputation.is_none());
    assert_eq!(twin.metrics.textfile_dir, None);
    assert_eq!(twin.capture.state_file, state);
    assert_eq!(twin.services, host.services);
    assert_eq!(twin.trusted, host.trusted);
    assert_eq!(twin.blacklist, host.blacklist);
    assert_eq!(twin.prefixes, host.prefixes);
    assert_eq!(
        crate::core::ruleset::build(&twin).sets,
        crate::core::ruleset::build(&host).sets
    );
    assert!(twin_config("[[service]\n", rules(), state).is_err());
}

#[test]
fn a_log_line_is_the_twins_only_with_the_prefix_right_before_in() {
    let src = "203.0.113.20".parse().unwrap();
    let msg = "IPTABLES-BLOCKED: IN=fwst1a OUT= MAC=aa SRC=203.0.113.20 DST=198.51.100.1 LEN=60 PROTO=TCP SPT=4000 DPT=7 WINDOW=1 SYN URGP=0 ";
    assert!(twin::is_log_of(msg, "IPTABLES-BLOCKED: ", "fwst1a", src, 7));
    assert!(!twin::is_log_of(
        msg,
        "IPTABLES-ALLOWED: ",
        "fwst1a",
        src,
        7
    ));
    assert!(!twin::is_log_of(msg, "IPTABLES-BLOCKED: ", "eth0", src, 7));
    assert!(!twin::is_log_of(
        msg,
        "IPTABLES-BLOCKED: ",
        "fwst1a",
        src,
        8
    ));
    // Written for scan, the line is one scan counts.
    let t = 1_795_262_400;
    let line = twin::log_file_line(t, msg);
    let mut p = Parser::new(&[b"IPTABLES-BLOCKED: "], Zone::fixed(0), t, (t - 60, t + 1));
    match p.parse(line.trim_end().as_bytes()) {
        Line::Hit(h) => assert_eq!((h.src, h.dport, h.time), (src, Some(7), t)),
        other => panic!("{other:?}: {line}"),
    }
}

fn rows() -> Vec<Row> {
    vec![
        Row::new(
            "service ssh (tcp/22)",
            Verdict::Pass,
            "connected from 198.51.100.2",
        ),
        Row::new(
            "forward chain holds",
            Verdict::Skipped,
            "no [forward] protect",
        ),
    ]
}

#[test]
fn the_table_pads_its_columns_and_the_exit_code_follows_the_rows() {
    let r = rows();
    assert_eq!(
        table(&r),
        "CHECK                 RESULT   DETAIL\n\
         service ssh (tcp/22)  pass     connected from 198.51.100.2\n\
         forward chain holds   skipped  no [forward] protect\n"
    );
    assert_eq!(exit_code(&r), 0, "skipped is not a failure");
    let mut f = r.clone();
    f.push(Row::new("whitelist gets in", Verdict::Fail, "no answer"));
    assert_eq!(exit_code(&f), 1);
    assert!(table(&f).contains("whitelist gets in     FAIL     no answer\n"));
    assert_eq!(
        summary(&f, 4321),
        "selftest: 1 passed, 1 failed, 1 skipped in 4.3 s"
    );
}

#[test]
fn the_json_document_has_ok_the_time_and_one_object_a_row() {
    let v: serde_json::Value = serde_json::from_str(&json(&rows(), 1200)).unwrap();
    // The table's FAIL stands out to a reader; JSON keeps one case.
    let mut f = rows();
    f.push(Row::new("whitelist gets in", Verdict::Fail, "no answer"));
    let w: serde_json::Value = serde_json::from_str(&json(&f, 1)).unwrap();
    assert_eq!(
        (w["ok"].clone(), w["checks"][2]["result"].clone()),
        (false.into(), "fail".into())
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["elapsed_ms"], 1200);
    assert_eq!(v["checks"][0]["check"], "service ssh (tcp/22)");
    assert_eq!(v["checks"][0]["result"], "pass");
    assert_eq!(v["checks"][1]["result"], "skipped");
    assert_eq!(v["checks"][1]["detail"], "no [forward] protect");
}

#[test]
fn a_ban_is_listed_only_in_its_own_set() {
    let doc = r#"{"entries":[{"set":"blacklist","address":"203.0.113.20","expires_in":599},
        {"set":"whitelist","address":"192.0.2.10","expires_in":null}],"missing_sets":[]}"#;
    let a = "203.0.113.20".parse().unwrap();
    assert!(listed(doc, "blacklist", a));
    assert!(!listed(doc, "throttle-hard", a));
    assert!(!listed(doc, "blacklist", "192.0.2.10".parse().unwrap()));
    assert!(!listed("not json", "blacklist", a));
}

const PROC_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0050 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
garbage
";

#[test]
fn the_hosts_listening_ports_come_from_proc_net() {
    // 0x08AE = 2222 listens; 0x0050 = 80 is an established connection.
    assert_eq!(proc_net_ports(PROC_TCP, true), [2222].into());
    assert_eq!(proc_net_ports(PROC_TCP, false), BTreeSet::new());
    let udp = "  sl  local_address rem_address   st\n  5: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 0\n";
    assert_eq!(proc_net_ports(udp, false), [53].into());
}

#[test]
fn a_service_on_the_other_protocol_of_what_the_host_serves_is_named() {
    let c = cfg("[[service]]\nname = \"ssh\"\nport = 2222\nprotocol = \"udp\"\n[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\n[[service]]\nname = \"web\"\nport = \"8000-8080\"\n");
    let l = Listening {
        tcp: [2222, 53, 8080].into(),
        udp: [53].into(),
    };
    assert_eq!(
        wrong_protocol(&c.services[0], &l).as_deref(),
        Some("this host serves tcp/2222, not udp/2222: protocol = \"tcp\"?")
    );
    // DNS on both: fine. A range with a listener inside: fine.
    assert_eq!(wrong_protocol(&c.services[1], &l), None);
    assert_eq!(wrong_protocol(&c.services[2], &l), None);
    // Nothing on the port at all: not this check's business.
    assert_eq!(wrong_protocol(&c.services[0], &Listening::default()), None);
}

#[test]
fn a_rate_too_fast_or_a_burst_too_big_to_exceed_is_skipped_with_the_reason() {
    let reason = |rate: &str, burst: u32| {
        let c = cfg(&format!(
            "[[service]]\nname = \"web\"\nport = 80\nrate = \"{rate}\"\nburst = {burst}\n"
        ));
        plan(&c, false)
            .into_iter()
            .find(|r| r.check == Check::Throttled)
            .unwrap()
            .skip
    };
    assert_eq!(reason("100/second", 200), None);
    assert_eq!(
        reason("101/second", 5).as_deref(),
        Some("rate 101/second is over selftest's 100/second")
    );
    assert_eq!(
        reason("10/minute", 201).as_deref(),
        Some("burst 201 is over selftest's 200")
    );
}

fn forward_row(c: &Config) -> Planned {
    let p = plan(c, docker::protected(c));
    let r = p.last().unwrap().clone();
    assert_eq!(
        (r.check, r.name.as_str()),
        (Check::Forward, "forward chain holds")
    );
    r
}

#[test]
fn the_forward_row_runs_only_where_the_config_names_a_hook() {
    let with = |f: &str| cfg(&format!("[[service]]\nname = \"web\"\nport = 8080\n{f}"));
    // auto (absent) decides by Docker on the host; the twin has none.
    for (f, skip) in [
        ("", Some("no [forward] protect")),
        (
            "[forward]\nprotect = \"off\"\n",
            Some("[forward] protect = \"off\""),
        ),
        ("[forward]\nprotect = \"docker\"\n", None),
        ("[forward]\nprotect = \"all\"\ndefault = \"drop\"\n", None),
        (
            "mode = \"detection_only\"\n[forward]\nprotect = \"docker\"\n",
            Some("mode = \"detection_only\" drops nothing"),
        ),
    ] {
        // `mode` is a top-level key: it goes before every table.
        let c = match f.strip_prefix("mode = \"detection_only\"\n") {
            Some(rest) => cfg(&format!(
                "mode = \"detection_only\"\n[[service]]\nname = \"web\"\nport = 8080\n{rest}"
            )),
            None => with(f),
        };
        assert_eq!(forward_row(&c).skip.as_deref(), skip, "{f}");
    }
    // "drop" needs a TCP service to show that it still passes.
    let c = cfg("[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\n[forward]\nprotect = \"docker\"\ndefault = \"drop\"\n");
    assert_eq!(
        forward_row(&c).skip.as_deref(),
        Some("default = \"drop\" and no TCP [[service]] to publish")
    );
    let c = cfg("[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\n[forward]\nprotect = \"docker\"\n");
    assert_eq!(forward_row(&c).skip, None);
}

#[test]
fn the_forward_row_publishes_the_service_and_a_free_port() {
    let c = cfg("[[service]]\nname = \"web\"\nport = 8080\n[[service]]\nname = \"alt\"\nport = 8081\nprotocol = \"udp\"\n");
    assert_eq!(docker::published(&c), vec![8080, 8082]);
    let c = cfg("[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\n");
    assert_eq!(docker::published(&c), vec![8080]);
    let rules = docker::container("br0", "192.0.2.9".parse().unwrap(), &[8080, 8082]);
    assert!(
        rules.contains(
            "-A DOCKER ! -i br0 -p tcp -m tcp --dport 8082 -j DNAT --to-destination 192.0.2.9:81\n"
        ),
        "{rules}"
    );
    assert!(
        rules.contains(
            "-A DOCKER -d 192.0.2.9/32 ! -i br0 -o br0 -p tcp -m tcp --dport 80 -j ACCEPT\n"
        ),
        "{rules}"
    );
    let d = docker::daemon("br0", "192.0.2.9/32");
    assert!(
        d.contains(":DOCKER-USER - [0:0]\n") && d.contains("-A FORWARD -j DOCKER-USER\n"),
        "{d}"
    );
}

/// The row fails on each way the forward chain can leak or over-block.
#[test]
fn the_forward_verdict_fails_on_a_leak_or_a_blocked_service() {
    let svc = "[[service]]\nname = \"web\"\nport = 8080\n";
    let accept = cfg(&format!("{svc}[forward]\nprotect = \"docker\"\n"));
    let drop = cfg(&format!(
        "{svc}[forward]\nprotect = \"docker\"\ndefault = \"drop\"\n"
    ));
    let ports = [8080, 8081];
    let v = |c: &Config, r: [bool; 2], b: bool| docker::verdict(c, &ports, &r, b).0;
    assert!(v(&accept, [true, true], true));
    assert!(
        !v(&accept, [true, true], false),
        "a banned source got through"
    );
    assert!(!v(&accept, [false, true], true), "the service is blocked");
    assert!(
        !v(&accept, [true, false], true),
        "accept blocked a published port"
    );
    assert!(v(&drop, [true, false], true));
    assert!(
        !v(&drop, [true, true], true),
        "drop let a non-service port through"
    );
    assert!(!v(&drop, [false, false], true));
    let (_, d) = docker::verdict(&drop, &ports, &[true, false], true);
    assert_eq!(
        d,
        "published to the container: tcp/8080 (service, reached), tcp/8081 (not a service, dropped); the banned source to tcp/8080: dropped"
    );
}
