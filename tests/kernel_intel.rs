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
    // `fwctl why` names the feed and its entry, and the set holding it.
    let why = ok(&lab.fwctl(&["--config", c, "why", "203.0.113.5"], &[]));
    assert!(
        why.contains("feed drop lists 203.0.113.0/28")
            && why.contains("in feed-drop as 203.0.113.0/28"),
        "{why}"
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
    secret_file(&key, "the-key\n");
    std::fs::write(
        &cfg,
        format!(
            // The offenders share one /64 and are asked about one by one.
            "[reputation]\nabuseipdb_key_file = \"{}\"\nurl = \"http://127.0.0.1:{}/api/v2/check\"\nmin_score = 90\n[aggregate]\nv6_count_prefix = 128\nmin_offenders = 0\n",
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
        let mut args = vec!["--config", c];
        args.extend(blocked_scan(&log, "3", "blacklist", "1h"));
        args.push("--json");
        lab.fwctl(&args, &[])
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

/// A feed of 222 IPv4 /8s once went in whole (each entry "only" a /8). Now
/// an entry wider than min_prefix_v4 / min_prefix_v6, or a list covering
/// more than max_coverage, is refused: the last good copy stays in the
/// kernel, and a `feed_refused` event says so.
#[test]
#[ignore = "needs root: kernel test"]
fn a_feed_too_wide_is_refused_keeps_its_last_good_copy_and_is_told() {
    let lab = Lab::new();
    let served: Served = Arc::new(Mutex::new((
        200,
        "\"v1\"".into(),
        "203.0.113.0/28\n2001:db8:bad::/48\n".into(),
    )));
    let rx = feed_server(&lab, Arc::clone(&served));
    let hooks = Receiver::start_in(&lab.target, 0);
    let (_d, cfg) = config(&format!(
        "[[feed]]\nname = \"drop\"\nurl = \"http://127.0.0.1:{}/drop.txt\"\n\
         [[notify]]\nname = \"ops\"\nurl = \"{}\"\nevents = [\"feed_refused\"]\n",
        rx.port,
        hooks.url()
    ));
    let c = cfg.to_str().unwrap();
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    let said = ok(&lab.fwctl(&["--config", c, "feeds", "update"], &[]));
    assert!(said.contains("feed drop: 2 entries (was 0)"), "{said}");
    // 221 /8s, none holding this host's addresses (127.0.0.1, 198.51.100.1)
    // nor multicast (224/4, refused on its own).
    let slash8s: String = (1..=223)
        .filter(|a| ![127, 198].contains(a))
        .map(|a| format!("{a}.0.0.0/8\n"))
        .collect();
    for (body, why) in [
        (
            slash8s,
            "its IPv4 entries cover 3707764736 addresses, over max_coverage v4 = /8 (16777216)",
        ),
        (
            "203.0.113.0/24\n2001:db8::/31\n".to_string(),
            "line 2: 2001:db8::/31 is wider than min_prefix_v6 = 32",
        ),
    ] {
        *served.lock().unwrap() = (200, "\"v2\"".into(), body);
        let before = hooks.requests().len();
        let out = lab.fwctl(&["--config", c, "feeds", "update", "--force"], &[]);
        assert_eq!(out.status.code(), Some(2), "{why}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(why) && err.contains("its last good copy (2 entries"),
            "{why}: {err}"
        );
        let v4 = lab.set_members("feed-drop");
        assert_eq!(
            v4.keys().collect::<Vec<_>>(),
            ["203.0.113.0/28"],
            "{why}: the last good copy stays"
        );
        assert!(lab
            .set_members("feed-drop_v6")
            .contains_key("2001:db8:bad::/48"));
        let told: Vec<_> = hooks.requests()[before..]
            .iter()
            .map(|r| r.json())
            .collect();
        assert_eq!(told.len(), 1, "{told:?}");
        let e = &told[0];
        assert_eq!(
            (e["event"].as_str(), e["feed"].as_str(), e["kept"].as_u64()),
            (Some("feed_refused"), Some("drop"), Some(2)),
            "{e}"
        );
        assert!(e["reason"].as_str().unwrap().contains(why), "{e}");
    }
    // The feed's own, stricter limits.
    std::fs::write(
        &cfg,
        format!(
            "[[feed]]\nname = \"drop\"\nurl = \"http://127.0.0.1:{}/drop.txt\"\nmin_prefix_v4 = 24\nmax_coverage = {{ v4 = 256 }}\n",
            rx.port
        ),
    )
    .unwrap();
    *served.lock().unwrap() = (200, "\"v3\"".into(), "192.0.2.0/23\n".into());
    let out = lab.fwctl(&["--config", c, "feeds", "update", "--force"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("192.0.2.0/23 is wider than min_prefix_v4 = 24"),
        "{err}"
    );
    *served.lock().unwrap() = (200, "\"v4\"".into(), "192.0.2.0/24\n203.0.113.7\n".into());
    let out = lab.fwctl(&["--config", c, "feeds", "update", "--force"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cover 257 addresses, over max_coverage v4 = /24 (256)"),
        "{err}"
    );
}

/// A feed server that answers slowly (here: not until the test lets it)
/// once held the run lock for the whole download, so a `fwctl ban` meanwhile
/// failed. The feeds are fetched and checked first; the lock is taken only
/// to swap the sets.
#[test]
#[ignore = "needs root: kernel test"]
fn a_stalling_feed_server_does_not_hold_up_a_ban() {
    use std::sync::mpsc;
    let lab = Lab::new();
    let (arrived, request_in) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let (arrived, released) = (Mutex::new(arrived), Mutex::new(released));
    // The answer waits for the test's word (the receiver's lock is held
    // meanwhile: this test asks it nothing until then).
    let rx = Receiver::start_fn(&lab.target, move |_: &Request| -> Answer {
        let _ = arrived.lock().unwrap().send(());
        let _ = released.lock().unwrap().recv();
        (200, vec![], b"203.0.113.0/28\n".to_vec())
    });
    let (_d, cfg) = config(&format!(
        "[[feed]]\nname = \"drop\"\nurl = \"http://127.0.0.1:{}/drop.txt\"\n",
        rx.port
    ));
    let c = cfg.to_str().unwrap();
    ok(&lab.fwctl(&["--config", c, "apply"], &[]));
    let update = lab
        .fwctl_cmd(&["--config", c, "feeds", "update"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let got = request_in.recv_timeout(Duration::from_secs(30));
    // The download hangs now; a ban must not wait for it.
    let ban = lab.fwctl(&["--config", c, "ban", "198.51.100.77", "--for", "1h"], &[]);
    let _ = release.send(());
    let updated = update.wait_with_output().unwrap();
    got.expect("the feed server was asked");
    ok(&ban);
    assert!(lab.set_members("blacklist").contains_key("198.51.100.77"));
    let said = ok(&updated);
    assert!(said.contains("feed drop: 1 entry (was 0)"), "{said}");
    assert!(lab.set_members("feed-drop").contains_key("203.0.113.0/28"));
}

/// With umask 000 the feeds directory was made 0777, and apply loaded
/// `feeds/*.list` from it unchecked. It is made 0700 whatever the umask,
/// and a directory others can write is refused before anything is loaded.
#[test]
#[ignore = "needs root: kernel test"]
fn the_feeds_directory_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let lab = Lab::new();
    let served: Served = Arc::new(Mutex::new((
        200,
        "\"v1\"".into(),
        "203.0.113.0/28\n".into(),
    )));
    let rx = feed_server(&lab, served);
    let (_d, cfg) = config(&format!(
        "[[feed]]\nname = \"drop\"\nurl = \"http://127.0.0.1:{}/drop.txt\"\n",
        rx.port
    ));
    let c = cfg.to_str().unwrap();
    // The state file's directory is one fwctl makes, too.
    let state = lab.state_dir.path().join("var/lib/fwctl/state.json");
    let st = state.to_str().unwrap();
    let umask0 = |args: &[&str]| {
        let mut cmd = lab.fwctl_cmd(args, &[("FWCTL_STATE", st)]);
        // SAFETY: umask is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        cmd.output().unwrap()
    };
    ok(&umask0(&["--config", c, "apply"]));
    ok(&umask0(&["--config", c, "feeds", "update"]));
    let feeds = state.parent().unwrap().join("feeds");
    for d in [
        lab.state_dir.path().join("var"),
        lab.state_dir.path().join("var/lib"),
        state.parent().unwrap().to_path_buf(),
        feeds.clone(),
    ] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    let list = std::fs::metadata(feeds.join("drop.list")).unwrap();
    assert_eq!(list.permissions().mode() & 0o077, 0, "the list is private");
    // Someone made it writable by others: apply loads nothing from it.
    std::fs::set_permissions(&feeds, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(feeds.join("drop.list"), "0.0.0.0/1\n198.51.100.0/24\n").unwrap();
    lab.exec_ok(&lab.target, &["ipset", "flush", "feed-drop"]);
    for args in [
        &["--config", c, "apply"][..],
        &["--config", c, "feeds", "update", "--force"],
    ] {
        let out = lab.fwctl(args, &[("FWCTL_STATE", st)]);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "feeds directory {} is writable by group or others (mode 0777); fix: chmod 700 {}",
                feeds.display(),
                feeds.display()
            )),
            "{args:?}: {err}"
        );
        assert!(lab.set_members("feed-drop").is_empty(), "{args:?}");
    }
}
