//! Threat feeds and reputation on a real kernel (root, namespaces), with a
//! local HTTP server in the target namespace playing the feed server (ETag
//! and 304, a 500, a body over the cap, a feed that would block a trusted
//! network) and AbuseIPDB's v2 check endpoint.

mod common;
use common::receiver::{Answer, Receiver, Request};
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PORT: u16 = 8080;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the feed server serves now: (status, etag, body).
type Served = Arc<Mutex<(u16, String, String)>>;

fn feed_server(lab: &Lab, served: Served) -> Receiver {
    Receiver::start_fn(&lab.target, move |req: &Request| -> Answer {
        let (status, etag, body) = served.lock().unwrap().clone();
        if status == 200 && req.headers.get("if-none-match") == Some(&etag) {
            return (304, vec![("ETag".into(), etag)], vec![]);
        }
        (status, vec![("ETag".into(), etag)], body.into_bytes())
    })
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_feed_update_swaps_its_members_while_packets_flow_and_bans_survive() {
    let lab = Lab::new();
    let served: Served = Arc::new(Mutex::new((200, "\"v1\"".into(), String::new())));
    let rx = feed_server(&lab, Arc::clone(&served));
    let (benign, _) = src("benign");
    let (listed, _) = src("blacklisted");
    let (throttled, _) = src("throttled");
    let (attacker, _) = src("attacker");
    let (_d, cfg) = config(&format!(
        "[[service]]\nname = \"web\"\nport = {PORT}\n[trusted]\nnetworks = [\"192.0.2.0/24\"]\n[[feed]]\nname = \"drop\"\nurl = \"http://127.0.0.1:{}/drop.txt\"\nevery = \"1h\"\nmax_entries = 100\n",
        rx.port
    ));
    let c = cfg.to_str().unwrap();
    let _listeners = lab.listen(&[PORT]);
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    // A ban, which no feed update may touch.
    ok(&lab.fwctl(
        &["--config", c, "ban", &attacker.to_string(), "--for", "1h"],
        &[],
    ));
    assert_eq!(lab.reach(listed, PORT), Reply::Connected);

    served.lock().unwrap().2 = format!("; test DROP list\n{listed}/32 ; SBL1\n203.0.113.0/28\n");
    // The benign client keeps connecting while the update swaps the sets.
    let flow = {
        let client = lab.client.clone();
        std::thread::spawn(move || {
            let dst = std::net::SocketAddr::new(TARGET4.parse().unwrap(), PORT);
            (0..40)
                .map(|_| {
                    in_ns(&client, || {
                        probe(benign, dst, 1, Duration::from_millis(500))
                    })
                    .connected
                })
                .sum::<usize>()
        })
    };
    let said = ok(&lab.fwctl(&["--config", c, "feeds", "update"], &[]));
    assert!(
        said.contains("feed drop: 2 entries (was 0): 2 added, 0 removed"),
        "{said}"
    );
    assert_eq!(
        flow.join().unwrap(),
        40,
        "a benign connection failed during the swap"
    );
    assert_eq!(
        lab.reach(listed, PORT),
        Reply::Silent,
        "the feed's address is dropped"
    );
    assert_eq!(lab.reach(benign, PORT), Reply::Connected);
    assert!(
        lab.set_members("blacklist")
            .contains_key(&attacker.to_string()),
        "the ban survived"
    );

    // Not due yet: nothing fetched. Forced, unchanged: a 304.
    let n = rx.requests().len();
    let said = ok(&lab.fwctl(&["--config", c, "feeds", "update"], &[]));
    assert!(said.contains("not due"), "{said}");
    assert_eq!(rx.requests().len(), n);
    let said = ok(&lab.fwctl(&["--config", c, "feeds", "update", "--force"], &[]));
    assert!(said.contains("unchanged (304)"), "{said}");
    assert_eq!(
        rx.requests()
            .last()
            .unwrap()
            .headers
            .get("if-none-match")
            .map(String::as_str),
        Some("\"v1\"")
    );

    // A new list: one address out, another in.
    *served.lock().unwrap() = (
        200,
        "\"v2\"".into(),
        format!("{throttled}\n203.0.113.0/28\n"),
    );
    let said = ok(&lab.fwctl(&["--config", c, "feeds", "update", "--force"], &[]));
    assert!(said.contains("1 added, 1 removed"), "{said}");
    assert_eq!(lab.reach(listed, PORT), Reply::Connected);
    assert_eq!(lab.reach(throttled, PORT), Reply::Silent);

    // Failures keep the last good copy, and say so (exit 2; status too).
    for (status, body, why) in [
        (500, "oops".to_string(), "HTTP 500"),
        (
            200,
            "192.0.2.0/25\n".to_string(),
            "trusted network 192.0.2.0/24",
        ),
        (200, "#".repeat((1 << 20) + 10), "over 1048576 bytes"),
    ] {
        *served.lock().unwrap() = (status, "\"v3\"".into(), body);
        let out = lab.fwctl(&["--config", c, "feeds", "update", "--force"], &[]);
        assert_eq!(out.status.code(), Some(2), "{why}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(why) && err.contains("its last good copy (2 entries"),
            "{why}: {err}"
        );
        assert_eq!(
            lab.reach(throttled, PORT),
            Reply::Silent,
            "{why}: the copy stays in the kernel"
        );
    }
    let st = lab.fwctl(&["--config", c, "status"], &[]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("feed drop: the last update failed"), "{text}");

    // A reboot: the apply brings the feed's last good copy back.
    lab.exec_ok(&lab.target, &["ipset", "flush", "feed-drop"]);
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    assert!(lab
        .set_members("feed-drop")
        .contains_key(&throttled.to_string()));
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_scan_asks_the_reputation_service_about_offenders_near_the_threshold() {
    let lab = Lab::new();
    // 2001:db8:5::1 .. ::6 offend three times; ::7 only once (not near --howmany 4 / 2).
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&asked);
    let rx = Receiver::start_fn(&lab.target, move |req: &Request| -> Answer {
        if req.headers.get("key").map(String::as_str) != Some("the-key") {
            return (
                401,
                vec![],
                br#"{"errors":[{"detail":"Authentication failed."}]}"#.to_vec(),
            );
        }
        let ip = req
            .path
            .split("ipAddress=")
            .nth(1)
            .unwrap_or("")
            .split('&')
            .next()
            .unwrap_or("")
            .replace("%3A", ":");
        seen.lock().unwrap().push(ip.clone());
        let score = if ip == "2001:db8:5::2" { 99 } else { 5 };
        (
            200,
            vec![],
            format!("{{\"data\":{{\"ipAddress\":\"{ip}\",\"abuseConfidenceScore\":{score}}}}}")
                .into_bytes(),
        )
    });
    let (d, cfg) = config("");
    let key = d.path().join("abuseipdb.key");
    std::fs::write(&key, "the-key\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[reputation]\nabuseipdb_key_file = \"{}\"\nurl = \"http://127.0.0.1:{}/api/v2/check\"\nmin_score = 90\n",
            key.display(),
            rx.port
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    let log = d.path().join("iptables.log");
    offenders_log(&log, 1..7);
    let scan = || {
        lab.fwctl(
            &[
                "--config",
                c,
                "scan",
                "--json",
                "--log",
                log.to_str().unwrap(),
                "--rule",
                "blocked",
                "--type",
                "tcp",
                "--howmany",
                "3",
                "--within",
                "10m",
                "--ipset",
                "blacklist",
                "--removeafter",
                "1h",
            ],
            &[],
        )
    };
    // howmany 3: three hits each is not over it, but near (>= 1.5).
    let v: serde_json::Value = serde_json::from_str(&ok(&scan())).unwrap();
    let rep = &v["reputation"];
    assert_eq!(
        (
            rep["asked"].as_u64(),
            rep["by_score"].as_u64(),
            rep["failed"].as_u64()
        ),
        (Some(6), Some(1), Some(0)),
        "{v}"
    );
    let o = &v["offenders"][0];
    assert_eq!(
        (o["address"].as_str(), o["score"].as_u64()),
        (Some("2001:db8:5::2"), Some(99)),
        "{v}"
    );
    assert!(
        o["banned_for"].as_str().unwrap().contains("score 99"),
        "{o}"
    );
    assert!(lab
        .set_members("blacklist_v6")
        .contains_key("2001:db8:5::2"));
    // The scores are cached: the next run asks nobody.
    let n = asked.lock().unwrap().len();
    let v: serde_json::Value = serde_json::from_str(&ok(&scan())).unwrap();
    assert_eq!(asked.lock().unwrap().len(), n);
    assert_eq!(v["reputation"]["cached"].as_u64(), Some(6), "{v}");

    // A refused key: one try, the scan goes on.
    std::fs::write(&key, "wrong\n").unwrap();
    std::fs::remove_file(lab.state_path()).unwrap();
    let out = scan();
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["reputation"]["failed"].as_u64(), Some(1), "{v}");
    assert!(v["notes"].to_string().contains("HTTP 401"), "{v}");
}
