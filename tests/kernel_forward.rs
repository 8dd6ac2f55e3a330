//! Kernel test (issue 31 part 2; root, namespaces): `[forward]` covers
//! Docker's published ports. The target namespace holds what Docker 24+
//! writes (filter: DOCKER, DOCKER-USER with its RETURN,
//! DOCKER-ISOLATION-STAGE-1/2, FORWARD's jumps and DROP policy; nat: the
//! DOCKER chain DNATing published ports) and a bridge `docker0` with a
//! "container" namespace behind it (192.0.2.2) listening on ports 80-84,
//! published as the target's 8080-8084. Clients come from the lab's client
//! namespace (198.51.100.0/24). Nothing of Docker's may change, whatever
//! fwctl does.

mod common;
use common::*;
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const CONTAINER: &str = "192.0.2.2";
/// Published host port N maps to the container's port N - 8000.
const PUBLISHED: [u16; 5] = [8080, 8081, 8082, 8083, 8084];

/// Docker 24's filter rules for one bridge and one container publishing
/// 80-84 (FORWARD's policy DROP, as dockerd sets it).
fn docker_filter() -> String {
    let mut s = String::from(
        "*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n\
         :DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n\
         -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
         -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -o docker0 -j DOCKER\n-A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n\
         -A FORWARD -i docker0 -o docker0 -j ACCEPT\n",
    );
    for p in PUBLISHED {
        s += &format!(
            "-A DOCKER -d {CONTAINER}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport {} -j ACCEPT\n",
            p - 8000
        );
    }
    s += "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n\
          -A DOCKER-ISOLATION-STAGE-1 -j RETURN\n-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n\
          -A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
    s
}

/// Docker's nat rules: the DNAT of each published port.
fn docker_nat() -> String {
    let mut s = String::from(
        "*nat\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -s 192.0.2.0/24 ! -o docker0 -j MASQUERADE\n-A DOCKER -i docker0 -j RETURN\n",
    );
    for p in PUBLISHED {
        s += &format!(
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport {p} -j DNAT --to-destination {CONTAINER}:{}\n",
            p - 8000
        );
    }
    s + "COMMIT\n"
}

/// The container's namespace, deleted on drop (the bridge lives in the
/// target and goes with it).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

fn docker_host(lab: &Lab) -> Container {
    let c = Container(format!("{}k", lab.target));
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", &c.0]);
    let (host_end, ctr_end) = (format!("{}d", lab.target_if), format!("{}e", lab.target_if));
    lab.ip(&lab.target, &["link", "add", "docker0", "type", "bridge"]);
    lab.ip(
        &lab.target,
        &["addr", "add", "192.0.2.1/24", "dev", "docker0"],
    );
    lab.ip(&lab.target, &["link", "set", "docker0", "up"]);
    lab.ip(
        &lab.target,
        &[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ctr_end, "netns", &c.0,
        ],
    );
    lab.ip(
        &lab.target,
        &["link", "set", &host_end, "master", "docker0", "up"],
    );
    lab.ip(&c.0, &["link", "set", "lo", "up"]);
    lab.ip(&c.0, &["link", "set", &ctr_end, "up"]);
    lab.ip(
        &c.0,
        &["addr", "add", &format!("{CONTAINER}/24"), "dev", &ctr_end],
    );
    lab.ip(&c.0, &["route", "add", "default", "via", "192.0.2.1"]);
    lab.exec_ok(&lab.target, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    exec_input_ok(
        &lab.target,
        &["iptables-restore", "--noflush"],
        &docker_filter(),
    );
    exec_input_ok(
        &lab.target,
        &["iptables-restore", "--noflush"],
        &docker_nat(),
    );
    c
}

/// Listeners on the container's ports 80-84 (kept open by the caller).
fn serve(c: &Container) -> Vec<TcpListener> {
    in_ns(&c.0, || {
        PUBLISHED
            .iter()
            .map(|p| TcpListener::bind((CONTAINER.parse::<IpAddr>().unwrap(), p - 8000)).unwrap())
            .collect()
    })
}

/// What is Docker's (and every other rule not fwctl's) in the target, as
/// text that compares byte for byte: the filter and nat tables without
/// fwctl's lines and the INPUT policy (fwctl's; its raw table is its own).
fn dockers(lab: &Lab) -> String {
    let both = ["filter", "nat"]
        .map(|t| lab.exec_ok(&lab.target, &["iptables-save", "-t", t]))
        .concat();
    normalize_save(&both)
        .lines()
        .filter(|l| !l.contains("FWCTL") && !l.starts_with(":INPUT "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn save(lab: &Lab) -> String {
    lab.exec_ok(&lab.target, &["iptables-save", "-t", "filter"])
}

/// Where `-A CHAIN -j FWCTL-FORWARD` sits in CHAIN (1-based).
fn jumps(save: &str, chain: &str) -> Vec<usize> {
    let prefix = format!("-A {chain} ");
    save.lines()
        .filter(|l| l.starts_with(&prefix))
        .enumerate()
        .filter(|(_, l)| *l == format!("-A {chain} -j FWCTL-FORWARD"))
        .map(|(i, _)| i + 1)
        .collect()
}

/// Where fwctl's forward chain is hooked in: `hook` is "DOCKER-USER",
/// "FORWARD" or "" (nowhere). The iptables backend: exactly one jump, first
/// in that chain, none in the other. The nftables backend: its own base
/// chain `forward` with one IPv4 jump (either hook), nothing in iptables.
fn expect_hook(lab: &Lab, backend: &str, hook: &str, step: &str) {
    let s = save(lab);
    if backend == "iptables" {
        for chain in ["DOCKER-USER", "FORWARD"] {
            let want: &[usize] = if chain == hook { &[1] } else { &[] };
            assert_eq!(jumps(&s, chain), want, "{step}: {chain}\n{s}");
        }
        return;
    }
    assert!(
        !s.contains("FWCTL"),
        "{step}: nftables wrote iptables rules\n{s}"
    );
    let base = lab.exec(
        &lab.target,
        &["nft", "list", "chain", "inet", "fwctl", "forward"],
    );
    let text = String::from_utf8_lossy(&base.stdout);
    let n = text.matches("meta nfproto ipv4 jump FWCTL-FORWARD").count();
    assert_eq!(n, usize::from(!hook.is_empty()), "{step}: {text}");
}

fn is_banned(lab: &Lab, backend: &str, addr: IpAddr) -> bool {
    if backend == "iptables" {
        return lab.set_members("blacklist").contains_key(&addr.to_string());
    }
    lab.exec_ok(
        &lab.target,
        &["nft", "list", "set", "inet", "fwctl", "blacklist"],
    )
    .contains(&addr.to_string())
}

fn ok(step: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{step}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// LOG prefixes unique to this run and backend (both backends' tests run
/// at once, with the same client addresses, and share the kernel log).
fn tag(backend: &str) -> String {
    format!("FWD{}{}", std::process::id() % 100_000, &backend[..1])
}

fn cfg_text(backend: &str, forward: &str) -> String {
    let tag = tag(backend);
    format!(
        r#"
[firewall]
backend = "{backend}"
[trusted]
networks = ["198.51.100.12"]
[blacklist]
entries = ["198.51.100.11"]
[[service]]
name = "web"
port = 8080
[logging]
rate = "1000/second"
burst = 1000
[logging.prefixes]
blocked = {{ v4 = "{tag}IPTABLES-BLOCKED: ", v6 = "{tag}IP6TABLES-BLOCKED: " }}
{forward}
"#
    )
}

fn reaches(lab: &Lab, src: IpAddr, port: u16) -> bool {
    lab.reach(src, port) == Reply::Connected
}

#[test]
#[ignore = "needs root: kernel test"]
fn iptables_published_ports_get_bans_and_default_drop_and_scans_log_the_original_port() {
    scenario("iptables");
}

#[test]
#[ignore = "needs root: kernel test"]
fn nftables_published_ports_get_bans_and_default_drop_and_scans_log_the_original_port() {
    scenario("nftables");
}

fn scenario(backend: &str) {
    let host_before = host_firewall();
    let mut kmsg = Kmsg::open(); // sets nf_log_all_netns=1
    let lab = Lab::new();
    let ctr = docker_host(&lab);
    let _listeners = serve(&ctr);
    let before = dockers(&lab);
    assert!(before.contains("-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 192.0.2.2:81"), "{before}");
    let (benign, banned, attacker) = (src("benign").0, src("blacklisted").0, src("attacker").0);
    // Docker alone: every published port is open to everyone.
    for p in PUBLISHED {
        assert!(reaches(&lab, banned, p), "before fwctl, port {p}");
    }
    let state = lab.state_path();
    let st = state.to_str().unwrap();
    let fw = |cfg: &Path, args: &[&str]| {
        let mut v = vec!["--config", cfg.to_str().unwrap(), "--state", st];
        v.extend_from_slice(args);
        lab.fwctl(&v, &[])
    };
    let check = |step: &str| {
        let now = dockers(&lab);
        assert!(
            now == before,
            "after {step}, Docker's rules changed:\n{before}\n---- now ----\n{now}"
        );
    };

    // protect unset: DOCKER-USER exists, so "docker"; default accept.
    let (_d1, accept) = config(&cfg_text(backend, ""));
    ok("apply", &fw(&accept, &["apply"]));
    check("apply");
    expect_hook(&lab, backend, "DOCKER-USER", "apply");
    // What apply recorded is what "auto" installed (nftables once recorded
    // as if Docker were absent: drift right after every apply).
    ok("status after the auto apply", &fw(&accept, &["status"]));
    assert!(!reaches(&lab, banned, 8080) && !reaches(&lab, banned, 8081));
    assert!(reaches(&lab, benign, 8080) && reaches(&lab, benign, 8081));

    // default = "drop": only the service's published port is open.
    let (_d2, dropcfg) = config(&cfg_text(
        backend,
        "[forward]\nprotect = \"docker\"\ndefault = \"drop\"\n",
    ));
    ok("apply drop", &fw(&dropcfg, &["apply"]));
    check("apply drop");
    expect_hook(&lab, backend, "DOCKER-USER", "apply drop");
    assert!(reaches(&lab, benign, 8080));
    assert!(!reaches(&lab, benign, 8081), "not a service: dropped");
    assert!(
        reaches(&lab, src("whitelisted").0, 8082),
        "the whitelist gets in"
    );
    // The container's own connections out (not DNATed) are not judged.
    let outside = in_ns(&lab.client, || TcpListener::bind((benign, 7000)).unwrap());
    let out = in_ns(&ctr.0, || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let to = std::net::SocketAddr::new(benign, 7000);
        s.connect_timeout(&to.into(), Duration::from_secs(2))
    });
    assert!(out.is_ok(), "container to the outside: {out:?}");
    drop(outside);

    // A port scan of the published ports: one LOG line per SYN with the port
    // the scanner aimed at (8081..), not the container's (81..).
    let scan_ports = [8081u16, 8082, 8083, 8084];
    for p in scan_ports {
        let r = lab.probe(attacker, p, 3, Duration::from_millis(300));
        assert_eq!(r.connected + r.refused, 0, "port {p} dropped");
    }
    // And one closed port of the host itself: logged once, not twice.
    let r = lab.probe(attacker, 9, 1, Duration::from_millis(300));
    assert_eq!(r.connected + r.refused, 0);
    let needle = format!("{}IPTABLES-BLOCKED: ", tag(backend));
    let from = format!("SRC={attacker} ");
    let lines = kmsg.wait_for(&needle, Duration::from_secs(10), |got| {
        got.iter().filter(|l| l.contains(&from)).count() >= 13
    });
    let mine: Vec<&String> = lines.iter().filter(|l| l.contains(&from)).collect();
    for p in scan_ports {
        let n = mine
            .iter()
            .filter(|l| l.contains(&format!(" DPT={p} ")))
            .count();
        assert!(n >= 3, "{n} lines for port {p}: {mine:#?}");
        assert!(
            !mine
                .iter()
                .any(|l| l.contains(&format!(" DPT={} ", p - 8000))),
            "{mine:#?}"
        );
    }
    assert!(
        mine.iter().all(|l| l.contains("DST=198.51.100.1 ")),
        "{mine:#?}"
    );
    // Give a late duplicate the chance to arrive, bounded.
    let more = kmsg.wait_for(&needle, Duration::from_millis(500), |_| false);
    let port9 = mine
        .iter()
        .copied()
        .chain(more.iter())
        .filter(|l| l.contains(&from) && l.contains(" DPT=9 "))
        .count();
    assert_eq!(port9, 1, "the host's own closed port is logged once");

    // `fwctl scan` bans the scanner from those lines.
    let log = lab.state_dir.path().join("kern.log");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = fwctl::units::time::utc(now as i64).replace('Z', ".000000+00:00");
    let text: String = mine
        .iter()
        .map(|m| format!("{t} host kernel: [ 100.000000] {m}\n"))
        .collect();
    std::fs::write(&log, text).unwrap();
    let out = fw(&dropcfg, &blocked_scan(&log, "10", "blacklist", "1h"));
    ok("scan", &out);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("8081"),
        "the report names the aimed-at ports: {report}"
    );
    assert!(is_banned(&lab, backend, attacker));
    assert!(
        !reaches(&lab, attacker, 8080),
        "banned: not even the service"
    );
    assert!(reaches(&lab, benign, 8080));

    // Docker restarts: it flushes and rebuilds its chains, keeps
    // DOCKER-USER (and its contents), and puts its FORWARD jump back on top.
    for chain in [
        "DOCKER",
        "DOCKER-ISOLATION-STAGE-1",
        "DOCKER-ISOLATION-STAGE-2",
    ] {
        lab.exec_ok(&lab.target, &["iptables", "-F", chain]);
    }
    lab.exec_ok(&lab.target, &["iptables", "-F", "FORWARD"]);
    lab.exec_ok(&lab.target, &["iptables", "-t", "nat", "-F", "DOCKER"]);
    let rebuilt: String = docker_filter()
        .lines()
        .filter(|l| !l.starts_with([':', '*']) && !l.contains("DOCKER-USER -j RETURN"))
        .map(|l| format!("{l}\n"))
        .collect();
    exec_input_ok(
        &lab.target,
        &["iptables-restore", "--noflush"],
        &format!("*filter\n{rebuilt}"),
    );
    let nat: String = docker_nat()
        .lines()
        .filter(|l| l.starts_with("-A DOCKER ") || l == &"*nat" || l == &"COMMIT")
        .map(|l| format!("{l}\n"))
        .collect();
    exec_input_ok(&lab.target, &["iptables-restore", "--noflush"], &nat);
    check("Docker's rebuild");
    expect_hook(&lab, backend, "DOCKER-USER", "kept by Docker's rebuild");
    ok("re-apply", &fw(&dropcfg, &["apply"]));
    check("re-apply after Docker's rebuild");
    expect_hook(&lab, backend, "DOCKER-USER", "re-apply");
    assert!(!reaches(&lab, benign, 8081) && reaches(&lab, benign, 8080));
    // DOCKER-USER itself deleted and recreated empty (an admin's flush):
    // the next apply puts exactly one jump back.
    lab.exec_ok(&lab.target, &["iptables", "-F", "DOCKER-USER"]);
    lab.exec_ok(
        &lab.target,
        &["iptables", "-A", "DOCKER-USER", "-j", "RETURN"],
    );
    ok("re-apply after a flush", &fw(&dropcfg, &["apply"]));
    expect_hook(&lab, backend, "DOCKER-USER", "re-apply after a flush");
    check("re-apply after a flush");

    // The forward jump deleted behind fwctl's back is drift, in either
    // backend; status --repair puts it back.
    ok("status as applied", &fw(&dropcfg, &["status"]));
    if backend == "iptables" {
        lab.exec_ok(
            &lab.target,
            &["iptables", "-D", "DOCKER-USER", "-j", "FWCTL-FORWARD"],
        );
    } else {
        lab.nft_delete_rule("forward", "jump FWCTL-FORWARD");
    }
    expect_hook(&lab, backend, "", "the jump deleted");
    let out = fw(&dropcfg, &["status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    let gone = if backend == "iptables" {
        "jump at DOCKER-USER 1"
    } else {
        "jump at FORWARD 1"
    };
    assert!(
        !out.status.success() && said.contains(gone) && said.contains("changed behind its back"),
        "status after the forward jump was deleted, not saying {gone}: {said}"
    );
    ok("status --repair", &fw(&dropcfg, &["status", "--repair"]));
    expect_hook(&lab, backend, "DOCKER-USER", "status --repair");
    ok("status after the repair", &fw(&dropcfg, &["status"]));

    // "all": the jump moves to FORWARD, exactly one, none left in DOCKER-USER.
    let (_d3, all) = config(&cfg_text(backend, "[forward]\nprotect = \"all\"\n"));
    ok("apply all", &fw(&all, &["apply"]));
    expect_hook(&lab, backend, "FORWARD", "apply all");
    check("apply all");
    // Back to "docker" with --confirm, not confirmed: "all" comes back.
    let out = fw(&dropcfg, &["apply", "--confirm", "1s"]);
    assert!(!out.status.success());
    expect_hook(&lab, backend, "FORWARD", "rolled back to \"all\"");
    check("apply --confirm rolled back");
    ok("remove", &fw(&all, &["remove"]));
    expect_hook(&lab, backend, "", "remove");
    check("remove");
    assert!(reaches(&lab, benign, 8081), "Docker alone again");
    drop(ctr);
    drop(lab);
    assert_eq!(
        host_firewall(),
        host_before,
        "the host namespace's firewall changed"
    );
}
