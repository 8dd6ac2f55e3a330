//! `[geo]` on a real kernel (root; namespaces the test makes and deletes):
//! with a country database the test writes (198.51.100.0/24 and
//! 2001:db8:1::/48 are NL, 203.0.113.0/24 DE, 192.0.2.0/24 nobody's), a
//! blocked country's connection is logged and dropped before any service
//! while another country's gets through, and a service's allow_countries
//! lets only those in, on both backends; with a corrupt database `feeds
//! update` leaves the sets and `apply` after a reboot puts the last good
//! networks back (both one error line, exit 2); `list --geo`, `why`, a
//! ban's events and the metrics name the country and AS.

mod common;
#[path = "common/geodb.rs"]
mod geodb;

use common::*;
use std::net::IpAddr;
use std::time::Duration;

const SSH: u16 = 22;
const APP: u16 = 8080;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "fwctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `src` gets no answer on the ssh port, and its LOG lines (prefix `tag`)
/// reach the kernel log. A few tries: the first LOG of a fresh namespace
/// may come before the kernel's logger is bound (nftables), or be lost
/// when other tests fill the kernel log.
fn blocked_and_logged(lab: &Lab, kmsg: &mut Kmsg, src: IpAddr, tag: &str) -> Vec<String> {
    let want = format!("SRC={src} ");
    let mut lines = Vec::new();
    for _ in 0..3 {
        assert_eq!(lab.reach(src, SSH), Reply::Silent, "{src} got through");
        lines.extend(kmsg.wait_for(tag, Duration::from_secs(3), |l| {
            l.iter().any(|m| m.contains(&want))
        }));
        if lines.iter().any(|m| m.contains(&want)) {
            break;
        }
    }
    lines
}

#[test]
#[ignore = "needs root: kernel test"]
fn countries_are_blocked_and_allowed_and_a_corrupt_database_changes_nothing() {
    let host_before = host_firewall();
    let lab = Lab::new();
    // One source per country, all on the veth's link.
    let (nl, de, none): (IpAddr, IpAddr, IpAddr) = (
        "198.51.100.7".parse().unwrap(),
        "203.0.113.7".parse().unwrap(),
        "192.0.2.7".parse().unwrap(),
    );
    for (ns, dev, addrs) in [
        (
            &lab.client,
            &lab.client_if,
            ["198.51.100.7/24", "203.0.113.7/24", "192.0.2.7/24"],
        ),
        (
            &lab.target,
            &lab.target_if,
            ["203.0.113.1/24", "192.0.2.1/24", "192.0.2.2/24"],
        ),
    ] {
        for a in addrs {
            lab.ip(ns, &["addr", "add", a, "dev", dev]);
        }
    }
    // And an IPv6 source in NL (2001:db8:1::/48).
    let nl6: IpAddr = "2001:db8:1::7".parse().unwrap();
    for (ns, dev, a) in [
        (&lab.client, &lab.client_if, "2001:db8:1::7/64"),
        (&lab.target, &lab.target_if, "2001:db8:1::1/64"),
    ] {
        lab.ip(ns, &["addr", "add", a, "dev", dev, "nodad"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let (country, asn) = (dir.path().join("country.mmdb"), dir.path().join("asn.mmdb"));
    geodb::country_db(&country, &[]);
    geodb::asn_db(&asn);
    // A prefix only this run logs with.
    let tag = format!("GEO{}", std::process::id() % 100_000);
    let cfg = dir.path().join("fwctl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\nblock_countries = [\"NL\"]\n\n\
             [[service]]\nname = \"ssh\"\nport = {SSH}\n\n\
             [[service]]\nname = \"app\"\nport = {APP}\nallow_countries = [\"DE\"]\n\n\
             [logging.prefixes]\nblacklisted = {{ v4 = \"{tag}-BL: \", v6 = \"{tag}6-BL: \" }}\n",
            country.display(),
            asn.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let _listeners = lab.listen(&[SSH, APP]);
    let mut kmsg = Kmsg::open();
    let applied = lab.fwctl(&["--config", c, "apply"], &[]);
    ok(&applied);
    let err = String::from_utf8_lossy(&applied.stderr);
    assert!(
        err.contains("fwctl: geo-NL: 2 networks (IPv4 1, IPv6 1)"),
        "{err}"
    );
    assert_eq!(
        lab.set_members("geo-NL").keys().collect::<Vec<_>>(),
        ["198.51.100.0/24"]
    );
    assert!(lab.set_members("geo-DE").contains_key("203.0.113.0/24"));
    // The countries' networks are no config change (no drift either).
    let st =
        String::from_utf8_lossy(&lab.fwctl(&["--config", c, "status"], &[]).stdout).into_owned();
    assert!(st.starts_with("fwctl status: OK"), "{st}");

    // NL: dropped before the open ssh service, and logged.
    let lines = blocked_and_logged(&lab, &mut kmsg, nl, &format!("{tag}-BL: "));
    assert!(
        lines
            .iter()
            .any(|m| m.contains("SRC=198.51.100.7 ") && m.contains(&format!("DPT={SSH} "))),
        "no LOG line for the blocked country: {lines:?}"
    );
    // DE: through to ssh, and to the app that only DE may reach.
    assert_eq!(lab.reach(de, SSH), Reply::Connected);
    assert_eq!(lab.reach(de, APP), Reply::Connected);
    // No country: ssh yes, the app no.
    assert_eq!(lab.reach(none, SSH), Reply::Connected);
    assert_eq!(lab.reach(none, APP), Reply::Silent);
    // IPv6: NL's /48 is dropped, a source in no country is not.
    assert_eq!(lab.reach(nl6, SSH), Reply::Silent);
    // ... by the geo rule: its DROP counted the SYN.
    let raw6 = lab.exec_ok(&lab.target, &["ip6tables-save", "-c", "-t", "raw"]);
    let drop6 = raw6
        .lines()
        .find(|l| l.ends_with("--match-set geo-NL_v6 src -j DROP"))
        .unwrap_or_else(|| panic!("{raw6}"));
    assert!(!drop6.starts_with("[0:"), "{drop6}");
    assert_eq!(lab.reach(src("benign").1, SSH), Reply::Connected);
    assert!(lab.set_members("geo-NL_v6").contains_key("2001:db8:1::/48"));

    // list --geo and why name the country and AS.
    let listed = ok(&lab.fwctl(&["--config", c, "list", "--geo"], &[]));
    assert!(
        listed.contains("198.51.100.0/24") && listed.contains("NL, AS64501 Voorbeeld BV"),
        "{listed}"
    );
    let why = ok(&lab.fwctl(&["--config", c, "why", "198.51.100.7"], &[]));
    assert!(
        why.contains("  country: NL, AS64501 Voorbeeld BV\n")
            && why.contains("in geo-NL as 198.51.100.0/24"),
        "{why}"
    );

    // A corrupt database: feeds update refuses in one line and leaves the
    // sets; an apply after a reboot (the sets emptied) puts the last good
    // networks back, says so and exits 2. The rules stay the same.
    let rules_before = lab.rules();
    std::fs::write(&country, b"\xab\xcd\xefMaxMind.com not really").unwrap();
    let geo_nl = || lab.set_members("geo-NL").into_keys().collect::<Vec<_>>();
    let corrupt = |out: &std::process::Output, what: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.lines().any(|l| l.contains("[geo] country_db ")
                && l.contains("not a MaxMind DB")
                && l.contains("fix: ")),
            "{what}: {err}"
        );
        err
    };
    corrupt(
        &lab.fwctl(&["--config", c, "feeds", "update"], &[]),
        "feeds update",
    );
    assert_eq!(
        geo_nl(),
        ["198.51.100.0/24"],
        "feeds update touched the geo sets"
    );
    assert_eq!(lab.rules(), rules_before);
    lab.exec_ok(&lab.target, &["ipset", "flush", "geo-NL"]);
    assert_eq!(lab.reach(nl, SSH), Reply::Connected, "the reboot let NL in");
    let err = corrupt(&lab.fwctl(&["--config", c, "apply"], &[]), "apply");
    assert!(err.contains("applying the last good networks"), "{err}");
    assert_eq!(
        geo_nl(),
        ["198.51.100.0/24"],
        "apply did not bring the last good set back"
    );
    assert_eq!(lab.rules(), rules_before, "apply changed the rules");
    assert_eq!(lab.reach(nl, SSH), Reply::Silent);
    assert_eq!(lab.reach(de, APP), Reply::Connected);

    // A good database again, which puts 192.0.2.0/24 in NL: while
    // 192.0.2.7 is connected to ssh (the admin), feeds update refuses it
    // and the sets stay; once it is gone, the sets are refilled in place.
    geodb::country_db(&country, &[("192.0.2.0/24", "NL")]);
    let admin = lab.session(none, SSH);
    let out = lab.fwctl(&["--config", c, "feeds", "update"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("fwctl: lock-out: 192.0.2.7 is connected to port 22 now")
            && err.contains("would lock out 1 connected peer (above)"),
        "{err}"
    );
    assert!(!lab.set_members("geo-NL").contains_key("192.0.2.0/24"));
    drop(admin);
    let out = ok(&lab.fwctl(&["--config", c, "feeds", "update"], &[]));
    assert!(out.contains("geo: 4 sets updated"), "{out}");
    assert!(lab.set_members("geo-NL").contains_key("192.0.2.0/24"));
    assert_eq!(
        lab.reach(none, SSH),
        Reply::Silent,
        "192.0.2.0/24 is NL now"
    );
    drop(lab);
    assert_eq!(
        host_firewall(),
        host_before,
        "the host's firewall was touched"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_ban_tells_its_country_and_as_in_events_and_the_metrics() {
    let lab = Lab::new();
    let rx = common::receiver::Receiver::start_in(&lab.target, 0);
    let dir = tempfile::tempdir().unwrap();
    let (country, asn) = (dir.path().join("country.mmdb"), dir.path().join("asn.mmdb"));
    geodb::country_db(&country, &[]);
    geodb::asn_db(&asn);
    let prom = dir.path().join("prom");
    std::fs::create_dir(&prom).unwrap();
    let cfg = dir.path().join("fwctl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\nblock_countries = [\"NL\"]\n\n\
             [[service]]\nname = \"ssh\"\nport = {SSH}\n\n\
             [metrics]\ntextfile_dir = \"{}\"\n\n\
             [[notify]]\nname = \"ops\"\nurl = \"{url}\"\n\n\
             [[notify]]\nname = \"chat\"\nurl = \"{url}\"\nformat = \"slack\"\nevents = [\"ip_blocked\"]\n",
            country.display(),
            asn.display(),
            prom.display(),
            url = rx.url()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    let before = rx.requests().len();
    ok(&lab.fwctl(&["--config", c, "ban", "203.0.113.9", "--for", "1h"], &[]));
    ok(&lab.fwctl(&["--config", c, "ban", "192.0.2.9", "--for", "1h"], &[]));
    let reqs = rx.requests()[before..].to_vec();
    let blocked: Vec<serde_json::Value> = reqs
        .iter()
        .map(|r| r.json())
        .filter(|v| v["event"] == "ip_blocked")
        .collect();
    let of = |a: &str| {
        blocked
            .iter()
            .find(|v| v["address"] == a)
            .unwrap_or_else(|| panic!("no ip_blocked for {a}: {blocked:?}"))
            .clone()
    };
    assert_eq!(
        of("203.0.113.9")["geo"],
        serde_json::json!({"country": "DE", "asn": 64500, "as_org": "Example Net"})
    );
    assert!(of("192.0.2.9").get("geo").is_none(), "in neither database");
    let chat: Vec<String> = reqs
        .iter()
        .filter_map(|r| r.json()["text"].as_str().map(str::to_string))
        .collect();
    assert!(
        chat.iter()
            .any(|t| t.contains("203.0.113.9") && t.ends_with("[DE, AS64500 Example Net]")),
        "{chat:?}"
    );
    // The metric: the configured country, other, unknown; nothing else.
    let text = std::fs::read_to_string(prom.join("fwctl.prom")).unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("fwctl_bans_by_country{"))
        .collect();
    assert_eq!(
        series,
        [
            "fwctl_bans_by_country{country=\"NL\"} 0",
            "fwctl_bans_by_country{country=\"other\"} 1",
            "fwctl_bans_by_country{country=\"unknown\"} 1",
        ],
        "{text}"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn the_nftables_backend_blocks_and_allows_countries_alike() {
    let lab = Lab::new();
    let (nl, de, none): (IpAddr, IpAddr, IpAddr) = (
        "198.51.100.7".parse().unwrap(),
        "203.0.113.7".parse().unwrap(),
        "192.0.2.7".parse().unwrap(),
    );
    for (ns, dev, a) in [
        (&lab.client, &lab.client_if, "198.51.100.7/24"),
        (&lab.client, &lab.client_if, "203.0.113.7/24"),
        (&lab.client, &lab.client_if, "192.0.2.7/24"),
        (&lab.target, &lab.target_if, "203.0.113.1/24"),
        (&lab.target, &lab.target_if, "192.0.2.1/24"),
    ] {
        lab.ip(ns, &["addr", "add", a, "dev", dev]);
    }
    let dir = tempfile::tempdir().unwrap();
    let country = dir.path().join("country.mmdb");
    geodb::country_db(&country, &[]);
    let tag = format!("GEN{}", std::process::id() % 100_000);
    let cfg = dir.path().join("fwctl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[firewall]\nbackend = \"nftables\"\n\n\
             [geo]\ncountry_db = \"{}\"\nblock_countries = [\"NL\"]\n\n\
             [[service]]\nname = \"ssh\"\nport = {SSH}\n\n\
             [[service]]\nname = \"app\"\nport = {APP}\nallow_countries = [\"DE\"]\n\n\
             [logging.prefixes]\nblacklisted = {{ v4 = \"{tag}-BL: \", v6 = \"{tag}6-BL: \" }}\n",
            country.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let _listeners = lab.listen(&[SSH, APP]);
    let mut kmsg = Kmsg::open();
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    let set = || {
        lab.exec_ok(
            &lab.target,
            // Networks are in the role's interval set (`geo-NL/net`).
            &["nft", "list", "set", "inet", "fwctl", "geo-NL/net"],
        )
    };
    assert!(set().contains("198.51.100.0/24"), "{}", set());
    let lines = blocked_and_logged(&lab, &mut kmsg, nl, &format!("{tag}-BL: "));
    assert!(
        lines.iter().any(|m| m.contains("SRC=198.51.100.7 ")),
        "no LOG line for the blocked country: {lines:?}"
    );
    assert_eq!(lab.reach(de, APP), Reply::Connected);
    assert_eq!(lab.reach(none, SSH), Reply::Connected);
    assert_eq!(lab.reach(none, APP), Reply::Silent);
    // A corrupt database: feeds update leaves the set; apply after the set
    // was emptied brings the last good networks back; both exit 2.
    std::fs::write(&country, b"garbage").unwrap();
    let out = lab.fwctl(&["--config", c, "feeds", "update"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(set().contains("198.51.100.0/24"));
    lab.exec_ok(
        &lab.target,
        &["nft", "flush", "set", "inet", "fwctl", "geo-NL"],
    );
    let out = lab.fwctl(&["--config", c, "apply"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(set().contains("198.51.100.0/24"), "{}", set());
    assert_eq!(lab.reach(nl, SSH), Reply::Silent);
}

/// GET a path on 127.0.0.1:PORT inside namespace `ns`; the body.
fn get_in(ns: &str, port: u16, path: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    in_ns(ns, move || {
        ureq::get(&url)
            .timeout(Duration::from_secs(5))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
    })
}

#[test]
#[ignore = "needs root: kernel test"]
fn live_capture_bans_carry_their_country_in_events_and_metrics() {
    use std::io::BufRead;
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let (country, asn) = (dir.path().join("country.mmdb"), dir.path().join("asn.mmdb"));
    geodb::country_db(&country, &[]);
    geodb::asn_db(&asn);
    let cfg = dir.path().join("fwctl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\nblock_countries = [\"NL\"]\n\n\
             [[service]]\nname = \"ssh\"\nport = {SSH}\n\n\
             [capture]\nprofile = \"aggressive\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:9469\"\n",
            country.display(),
            asn.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    let state = dir.path().join("state.json");
    let mut child = lab
        .fwctl_cmd(
            &[
                "--config",
                c,
                "capture",
                "--state",
                state.to_str().unwrap(),
                "--iface",
                &lab.target_if,
            ],
            &[],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first stderr line: the socket is open, no probe is missed.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("fwctl: capture on"), "{first}");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // The attacker (198.51.100.14) is in NL; capture sees its probes on
    // the interface even though the raw table drops them.
    let (attacker, _) = src("attacker");
    lab.exec_ok(
        &lab.client,
        &[
            "nmap",
            "-n",
            "-Pn",
            "--max-retries",
            "0",
            "--host-timeout",
            "30s",
            "-e",
            &lab.client_if,
            "-S",
            &attacker.to_string(),
            "-sS",
            "-p",
            "3000-3009",
            TARGET4,
        ],
    );
    let want = format!(" ip_blocked {attacker} ");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(&want) => break Some(l),
            Ok(l) => seen.push(l),
            Err(_) => break None,
        }
    };
    let metrics = get_in(&lab.target, 9469, "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    let line = line.unwrap_or_else(|| panic!("no ban of {attacker}: {seen:?}"));
    assert!(line.ends_with(" [NL, AS64501 Voorbeeld BV]"), "{line}");
    let text = metrics.expect("/metrics answers");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("fwctl_capture_bans_by_country_total{"))
        .collect();
    assert_eq!(
        series,
        [
            "fwctl_capture_bans_by_country_total{country=\"NL\"} 1",
            "fwctl_capture_bans_by_country_total{country=\"other\"} 0",
            "fwctl_capture_bans_by_country_total{country=\"unknown\"} 0",
        ],
        "{text}"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn watch_events_carry_their_country_and_as() {
    use std::io::{BufRead, Write};
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let (country, asn) = (dir.path().join("country.mmdb"), dir.path().join("asn.mmdb"));
    geodb::country_db(&country, &[]);
    geodb::asn_db(&asn);
    let log = dir.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let cfg = dir.path().join("fwctl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\n\n\
             [[service]]\nname = \"ssh\"\nport = {SSH}\nallow_countries = [\"DE\"]\n\n\
             [metrics]\nlisten = \"\"\nwatch_listen = \"\"\n\n\
             [[watch]]\nsource = \"sshd\"\nlog = \"{}\"\nhowmany = 3\nwithin = \"10m\"\n\
             ipset = \"blacklist\"\nremoveafter = \"1h\"\n",
            country.display(),
            asn.display(),
            log.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    let mut child = lab
        .fwctl_cmd(&["--config", c, "watch", "--json"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // "watch follows": lines written from then on are read.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "watch ended: {line}");
        if line.contains("fwctl: watch follows") {
            break;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let stamp = String::from_utf8(
        std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6N+00:00"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..4 {
        writeln!(
            f,
            "{} web1 sshd[12]: Failed password for root from 203.0.113.9 port {} ssh2",
            stamp.trim(),
            40000 + i
        )
        .unwrap();
    }
    drop(f);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let ev = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("\"203.0.113.9\"") => break Some(l),
            Ok(l) => seen.push(l),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let ev = ev.unwrap_or_else(|| panic!("no event for 203.0.113.9: {seen:?}"));
    let v: serde_json::Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(v["address"], "203.0.113.9");
    assert_eq!(
        v["geo"],
        serde_json::json!({"country": "DE", "asn": 64500, "as_org": "Example Net"}),
        "{ev}"
    );
}
