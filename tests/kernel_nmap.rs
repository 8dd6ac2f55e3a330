//! Kernel tests (root, namespaces): every kind of scan nmap sends, IPv4 and
//! IPv6 where nmap can, against a target running `fwctl apply` and
//! `fwctl capture` with the standard profile: each is reported by its name
//! and banned with the profile's first ban; a client's ordinary traffic
//! (a long-lived connection with keep-alives, downloads both ways) never is.

mod common;
use common::service::Service;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

const CONFIG: &str = r#"
[[service]]
name = "ssh"
port = 22
[[service]]
name = "http"
port = 80
# The lab's scanners share the target's /64: each address is one scanner.
[aggregate]
v6_count_prefix = 128
min_offenders = 0
[capture]
profile = "standard"
admin_ports = []
"#;

/// `fwctl capture --json` in the target namespace. Its first stderr line
/// comes once the socket, its filter and the NFLOG group are open: from
/// then on no probe is missed.
struct Capture;

impl Capture {
    fn start(lab: &Lab, cfg: &Path, state: &Path) -> Service {
        let args = [
            "--config",
            cfg.to_str().unwrap(),
            "capture",
            "--json",
            "--state",
            state.to_str().unwrap(),
            "--iface",
            &lab.target_if,
        ];
        Service::spawn(lab.fwctl_cmd(&args, &[]), "fwctl: capture on", "capture")
    }
}

fn apply(lab: &Lab, cfg: &Path) {
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn add_source(lab: &Lab, a: &str) {
    let (cidr, v6) = if a.contains(':') {
        (format!("{a}/64"), true)
    } else {
        (format!("{a}/24"), false)
    };
    let mut args = vec!["addr", "add", &cidr, "dev", &lab.client_if];
    if v6 {
        args.push("nodad");
    }
    lab.ip(&lab.client, &args);
}

fn nmap(lab: &Lab, src: &str, args: &[&str]) {
    let dst = if src.contains(':') { TARGET6 } else { TARGET4 };
    let mut v = vec![
        "nmap",
        "-n",
        "-Pn",
        "--max-retries",
        "0",
        "--host-timeout",
        "30s",
    ];
    if src.contains(':') {
        v.push("-6");
    }
    v.extend_from_slice(&["-e", &lab.client_if, "-S", src]);
    v.extend_from_slice(args);
    v.push(dst);
    lab.exec_ok(&lab.client, &v);
}

#[test]
#[ignore = "needs root: kernel test"]
fn every_scan_nmap_can_send_is_named_and_banned_ipv4_and_ipv6() {
    let host_before = host_firewall();
    let lab = Lab::new();
    let (dir, cfg) = config(CONFIG);
    apply(&lab, &cfg);
    let _listeners = lab.listen(&[22, 80]);
    const PORTS: [&str; 2] = ["-p", "1000-1099"];
    // (source, scan_type, nmap option reported, nmap's arguments)
    let mut scans: Vec<(String, &str, &str, Vec<&str>)> = Vec::new();
    let kinds: [(u8, &str, &str, &[&str], bool); 9] = [
        (31, "ACK", "-sA/-sW", &["-sA"], true),
        (32, "MAIMON", "-sM", &["-sM"], true),
        (33, "ACK", "-sA/-sW", &["-sW"], true),
        // nmap does not fragment over IPv6.
        (34, "TINY-FRAGMENT", "-f", &["-sS", "-f"], false),
        (35, "SCTP-INIT", "-sY", &["-sY"], true),
        (36, "SCTP-COOKIE-ECHO", "-sZ", &["-sZ"], true),
        (37, "IP-PROTOCOL", "-sO", &["-sO"], true),
        (38, "XMAS", "-sX", &["--scanflags", "URGPSHFIN"], true),
        (
            39,
            "ODD-FLAGS",
            "--scanflags",
            &["--scanflags", "SYNFIN"],
            true,
        ),
    ];
    for (n, kind, opt, args, v6) in kinds {
        let mut a: Vec<&str> = args.to_vec();
        if args != ["-sO"] {
            a.extend(PORTS);
        }
        scans.push((format!("198.51.100.{n}"), kind, opt, a.clone()));
        if v6 {
            scans.push((format!("2001:db8:100::{n}"), kind, opt, a));
        }
    }
    for s in &scans {
        add_source(&lab, &s.0);
    }
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state);
    for (src, _, _, args) in &scans {
        nmap(&lab, src, args);
    }
    let all: Vec<String> = scans.iter().map(|s| s.0.clone()).collect();
    let ok = cap.wait_for(Duration::from_secs(30), |seen| {
        all.iter().all(|a| {
            seen.iter()
                .any(|e| e["event"] == "ip_blocked" && e["src"] == *a)
        })
    });
    assert!(ok, "not every scanner was banned: {:#?}", cap.seen);
    let mut table = Vec::new();
    for (src, kind, opt, args) in &scans {
        let det = cap
            .seen
            .iter()
            .find(|e| e["event"] == "scan_detected" && e["src"] == *src)
            .unwrap();
        assert_eq!(det["scan_type"], *kind, "{src}: {det}");
        assert_eq!(det["nmap"], *opt, "{src}: {det}");
        let blocked = cap
            .seen
            .iter()
            .find(|e| e["event"] == "ip_blocked" && e["src"] == *src)
            .unwrap();
        // The standard profile's first ban, in the family's set.
        assert_eq!(blocked["ban_seconds"], 600, "{blocked}");
        let set = if src.contains(':') {
            "blacklist_v6"
        } else {
            "blacklist"
        };
        assert!(lab.set_members(set).contains_key(src), "{src} not in {set}");
        table.push(format!(
            "| nmap {} | {} | {} | {} | {} µs |",
            args.join(" "),
            if src.contains(':') { "IPv6" } else { "IPv4" },
            kind,
            det["reason"].as_str().unwrap(),
            blocked["latency_us"]
        ));
    }
    // The figures for docs/capture.md's lab table.
    eprintln!("{}", table.join("\n"));
    let events = cap.stop();
    assert_eq!(
        events.iter().filter(|e| e["event"] == "ip_blocked").count(),
        scans.len()
    );
    drop(lab);
    assert_eq!(host_firewall(), host_before);
}

/// Read everything from `s` until it closes; how many bytes came.
fn drain(mut s: TcpStream) -> usize {
    let mut buf = [0u8; 65536];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k,
        }
    }
}

#[test]
#[ignore = "needs root: kernel test"]
fn ordinary_traffic_is_never_taken_for_a_scan() {
    let lab = Lab::new();
    let (dir, cfg) = config(CONFIG);
    apply(&lab, &cfg);
    let (b4, b6) = src("benign");
    let state = dir.path().join("state.json");
    let mut cap = Capture::start(&lab, &cfg, &state);
    const MB: usize = 1 << 20;
    let payload = vec![7u8; 8 * MB];
    for (client, target) in [
        (b4, TARGET4.parse::<IpAddr>().unwrap()),
        (b6, TARGET6.parse::<IpAddr>().unwrap()),
    ] {
        // A download from the target's web port, and the target's own
        // download from the client (its ACKs go to a high port of ours).
        let server = in_ns(&lab.target, || {
            TcpListener::bind(SocketAddr::new(target, 80)).unwrap()
        });
        let upstream = in_ns(&lab.client, || {
            TcpListener::bind(SocketAddr::new(client, 443)).unwrap()
        });
        let p = payload.clone();
        let serving = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            s.write_all(&p).unwrap();
        });
        let p = payload.clone();
        let upstreaming = std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            s.write_all(&p).unwrap();
        });
        let down = lab.session(client, 80);
        let got = drain(down.into());
        serving.join().unwrap();
        assert_eq!(got, 8 * MB);
        let up = in_ns(&lab.target, || {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(SocketAddr::new(client, 443)),
                socket2::Type::STREAM,
                None,
            )
            .unwrap();
            s.connect(&SocketAddr::new(client, 443).into()).unwrap();
            s
        });
        assert_eq!(drain(up.into()), 8 * MB);
        upstreaming.join().unwrap();
        // A long-lived connection to ssh with keep-alives every second, for
        // five of them, and a little data now and then.
        let ssh = in_ns(&lab.target, || {
            TcpListener::bind(SocketAddr::new(target, 22)).unwrap()
        });
        let echo = std::thread::spawn(move || {
            let (s, _) = ssh.accept().unwrap();
            drain(s)
        });
        let s = lab.session(client, 22);
        s.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(1))
                .with_interval(Duration::from_secs(1)),
        )
        .unwrap();
        let mut s: TcpStream = s.into();
        for _ in 0..5 {
            s.write_all(b"ls\n").unwrap();
            // Traffic over time, not a synchronisation: keep-alives flow.
            std::thread::sleep(Duration::from_millis(1200));
        }
        drop(s);
        assert_eq!(echo.join().unwrap(), 15);
    }
    // Whatever capture was going to say about that traffic it says within
    // its block timeout; a probe from an attacker after it is reported in
    // order, so once it is, everything before it was read.
    let (a4, _) = src("attacker");
    nmap(&lab, &a4.to_string(), &["-sS", "-p", "2000-2009"]);
    assert!(cap.wait_for(Duration::from_secs(10), |seen| seen
        .iter()
        .any(|e| e["event"] == "scan_detected")));
    let events = cap.stop();
    let reported: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "scan_detected" || e["event"] == "ip_blocked")
        .filter(|e| e["src"] != a4.to_string())
        .collect();
    assert!(
        reported.is_empty(),
        "ordinary traffic reported: {reported:#?}"
    );
}
