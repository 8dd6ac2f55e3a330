//! Notifications against a real HTTP receiver (root, namespaces): the
//! receiver listens inside the lab's target namespace and fwctl posts to it
//! from there. Signatures (and a wrong secret rejected), the chat shape,
//! retries, a 4xx not retried, aggregation of a 1 000-ban scan, and the
//! outbox across an outage: every event arrives exactly once. A webhook's
//! path token never printed; /metrics never held up by a slow client.

mod common;
use common::receiver::{Receiver, Request};
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

const SECRET: &str = "s3cr3t-for-tests";

/// A config with the given [[notify]] blocks, and a 0600 secret file
/// beside it (its content ends in a newline, which is not part of the key).
fn setup(notify: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.path().join("fwctl.toml");
    let text = notify.replace("SECRET_FILE", secret.to_str().unwrap());
    std::fs::write(&cfg, text).unwrap();
    (dir, cfg, secret)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(lab: &Lab, cfg: &Path) {
    ok(&lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]));
}

/// Every event of every accepted request.
fn delivered(reqs: &[Request]) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r.status == 200)
        .flat_map(Request::events)
        .collect()
}

fn of<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[test]
#[ignore = "needs root: kernel test"]
fn posts_are_signed_chat_posts_are_text_and_a_wrong_secret_fails() {
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    let (_d, cfg, _) = setup(&format!(
        r#"
[[notify]]
name = "ops"
url = "{url}"
secret_file = "SECRET_FILE"
[[notify]]
name = "chat"
url = "{url}"
format = "slack"
events = ["ip_blocked"]
"#,
        url = rx.url()
    ));
    let c = cfg.to_str().unwrap();
    // notify test: every sink, its status and latency.
    let out = ok(&lab.fwctl(&["--config", c, "notify", "test"], &[]));
    assert!(out.contains("ops: HTTP 200 in "), "{out}");
    assert!(out.contains("chat: HTTP 200 in "), "{out}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let ops = reqs.iter().find(|r| r.json()["event"] == "test").unwrap();
    assert!(ops.signed_with(SECRET.as_bytes()), "{:?}", ops.headers);
    assert!(!ops.signed_with(b"another secret"));
    assert!(!ops.signed_with(format!("{SECRET}\n").as_bytes()));
    // A replayed body under another timestamp does not verify.
    let mut replay = ops.clone();
    replay
        .headers
        .insert("x-fwctl-timestamp".into(), "1000000000".into());
    assert!(!replay.signed_with(SECRET.as_bytes()));
    let chat = reqs
        .iter()
        .find(|r| r.json().get("text").is_some())
        .unwrap();
    let v = chat.json();
    assert_eq!(v.as_object().unwrap().len(), 1, "only text: {v}");
    assert!(!chat.headers.contains_key("x-fwctl-signature"));
    assert!(chat.headers.contains_key("x-fwctl-timestamp"));

    // --sink picks one; an unknown sink names the ones there are.
    let out = ok(&lab.fwctl(&["--config", c, "notify", "test", "--sink", "ops"], &[]));
    assert!(
        out.contains("ops: HTTP 200") && !out.contains("chat"),
        "{out}"
    );
    let bad = lab.fwctl(&["--config", c, "notify", "test", "--sink", "nope"], &[]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no [[notify]] sink named \"nope\"") && err.contains("ops, chat"),
        "{err}"
    );

    // A manual ban: ip_blocked, signed, with its facts; the chat sink gets a readable line.
    apply(&lab, &cfg);
    let before = rx.requests().len();
    ok(&lab.fwctl(&["--config", c, "ban", "203.0.113.7", "--for", "1h"], &[]));
    let reqs = rx.requests()[before..].to_vec();
    let blocked: Vec<&Request> = reqs
        .iter()
        .filter(|r| r.json()["event"] == "ip_blocked")
        .collect();
    assert_eq!(blocked.len(), 1, "{reqs:?}");
    let b = blocked[0].json();
    assert!(blocked[0].signed_with(SECRET.as_bytes()));
    assert_eq!(b["address"], "203.0.113.7");
    assert_eq!(b["set"], "blacklist");
    assert_eq!(b["origin"], "manual");
    assert_eq!(b["duration_s"], 3600);
    assert!(
        b["until"].as_str().unwrap().ends_with('Z') && b["id"].as_str().unwrap().len() == 16,
        "{b}"
    );
    let text: Vec<String> = reqs
        .iter()
        .filter_map(|r| r.json()["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].contains("203.0.113.7") && text[0].contains("blacklist"),
        "{}",
        text[0]
    );
    // The chat sink takes only ip_blocked: the apply event went to ops alone.
    assert_eq!(
        rx.requests()
            .iter()
            .filter(|r| r.json()["event"] == "apply")
            .count(),
        1
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_503_is_retried_until_delivered_once_and_a_400_is_not_retried() {
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    let (_d, cfg, _) = setup(&format!(
        "[[notify]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = \"SECRET_FILE\"\nevents = [\"ip_blocked\", \"unban\"]\n",
        rx.url()
    ));
    let c = cfg.to_str().unwrap();
    apply(&lab, &cfg);
    rx.script(&[503, 503]);
    ok(&lab.fwctl(&["--config", c, "ban", "203.0.113.8", "--for", "1h"], &[]));
    let reqs = rx.requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 200],
        "two refusals, then delivered, and not again"
    );
    // The same event each time (its id), each try signed afresh.
    let ids: Vec<Value> = reqs.iter().map(|r| r.json()["id"].clone()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(reqs.iter().all(|r| r.signed_with(SECRET.as_bytes())));
    let outbox = lab.state_dir.path().join("notify-outbox.json");
    let waiting = std::fs::read_to_string(&outbox).unwrap_or_default();
    assert!(
        !waiting.contains("203.0.113.8"),
        "delivered, yet kept: {waiting}"
    );

    // 400: the receiver refuses the request itself; retrying cannot help.
    rx.script(&[400]);
    let out = lab.fwctl(&["--config", c, "unban", "203.0.113.8"], &[]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400") && err.contains("dropped"), "{err}");
    let reqs = rx.requests();
    assert_eq!(
        reqs.len(),
        4,
        "{:?}",
        reqs.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(reqs[3].json()["event"], "unban");
    let waiting = std::fs::read_to_string(&outbox).unwrap_or_default();
    assert!(!waiting.contains("unban"), "{waiting}");
}

fn scan(lab: &Lab, cfg: &Path, log: &Path) -> Output {
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend(blocked_scan(log, "2", "throttle-hard", "1h"));
    lab.fwctl(&args, &[])
}

/// Addresses of the ip_blocked events, each with how often it came.
fn blocked_counts(events: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in of(events, "ip_blocked") {
        *m.entry(e["address"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_scan_that_bans_1000_sends_a_handful_of_posts_with_every_address() {
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    let (d, cfg, _) = setup(&format!(
        "[[notify]]\nname = \"ops\"\nurl = \"{}\"\nevents = [\"ip_blocked\", \"scan_run\"]\n[[notify]]\nname = \"chat\"\nurl = \"{}\"\nformat = \"slack\"\n",
        rx.url(),
        rx.url()
    ));
    apply(&lab, &cfg);
    let log = d.path().join("iptables.log");
    let addrs = offenders_log(&log, 1..1001);
    let out = ok(&scan(&lab, &cfg, &log));
    assert!(out.contains("1000"), "{out}");
    let reqs = rx.requests();
    let (json, chat): (Vec<Request>, Vec<Request>) = reqs
        .into_iter()
        .partition(|r| r.json().get("text").is_none());
    assert!(
        (1..=4).contains(&json.len()) && (1..=4).contains(&chat.len()),
        "{} JSON and {} chat posts for 1000 bans",
        json.len(),
        chat.len()
    );
    let events = delivered(&json);
    let counts = blocked_counts(&events);
    assert_eq!(counts.len(), 1000);
    assert!(counts.values().all(|&n| n == 1), "each address once");
    assert!(addrs.iter().all(|a| counts.contains_key(a)));
    let run = of(&events, "scan_run");
    assert_eq!(run.len(), 1);
    assert_eq!(run[0]["added"], 1000);
    assert_eq!(run[0]["addresses"].as_array().unwrap().len(), 1000);
    // The chat summary is readable: counts, and some of the addresses.
    let all: String = chat
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert!(all.contains("ip_blocked") && all.contains("more"), "{all}");
}

#[test]
#[ignore = "needs root: kernel test"]
fn an_outage_loses_nothing_and_sends_nothing_twice() {
    let lab = Lab::new();
    // A port nobody listens on yet in the fresh namespace: refused.
    let port = 18089;
    let (d, cfg, _) = setup(&format!(
        "[[notify]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"SECRET_FILE\"\nevents = [\"ip_blocked\", \"scan_run\"]\n"
    ));
    apply(&lab, &cfg);
    let log = d.path().join("iptables.log");
    let first = offenders_log(&log, 1..4);
    let out = scan(&lab, &cfg, &log);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept in the outbox"), "{err}");
    let outbox = lab.state_dir.path().join("notify-outbox.json");
    let waiting = std::fs::read_to_string(&outbox).unwrap();
    assert!(
        first.iter().all(|a| waiting.contains(a.as_str())),
        "{waiting}"
    );

    // The endpoint is back for the next run, which brings the old events.
    let rx = Receiver::start_in(&lab.target, port);
    let second = offenders_log(&log, 10..12);
    ok(&scan(&lab, &cfg, &log));
    let events = delivered(&rx.requests());
    let counts = blocked_counts(&events);
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert!(first.iter().chain(&second).all(|a| counts.contains_key(a)));
    assert_eq!(of(&events, "scan_run").len(), 2);
    assert!(rx
        .requests()
        .iter()
        .all(|r| r.signed_with(SECRET.as_bytes())));
    // Nothing waits any more, and a third run sends nothing old again.
    let waiting = std::fs::read_to_string(&outbox).unwrap_or_default();
    assert!(
        first.iter().all(|a| !waiting.contains(a.as_str())),
        "{waiting}"
    );
    let n = rx.requests().len();
    ok(&lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "ban",
            "203.0.113.9",
            "--for",
            "1h",
        ],
        &[],
    ));
    let later = delivered(&rx.requests()[n..]);
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0]["address"], "203.0.113.9");
}

#[test]
#[ignore = "needs root: kernel test"]
fn status_tells_of_drift_once_and_the_textfile_shows_it() {
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    let (d, cfg, _) = setup(&format!(
        "[[notify]]\nname = \"ops\"\nurl = \"{}\"\nevents = [\"drift\"]\n[metrics]\ntextfile_dir = \"TEXTFILE\"\n",
        rx.url()
    ));
    let prom = d.path().join("textfile");
    std::fs::create_dir(&prom).unwrap();
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("TEXTFILE", prom.to_str().unwrap()),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    apply(&lab, &cfg);
    let textfile = || std::fs::read_to_string(prom.join("fwctl.prom")).unwrap();
    assert!(textfile().contains("fwctl_apply_last_success_timestamp_seconds "));
    ok(&lab.fwctl(&["--config", c, "status"], &[]));
    assert!(rx.requests().is_empty(), "no drift, no post");
    assert!(textfile().contains("fwctl_rules_drift{family=\"ipv4\"} 0\n"));
    assert!(textfile().contains("fwctl_set_capacity{set=\"blacklist\"} "));

    // A rule added behind fwctl's back.
    lab.exec_ok(
        &lab.target,
        &[
            "iptables",
            "-I",
            "FWCTL-INPUT",
            "1",
            "-s",
            "203.0.113.99",
            "-j",
            "ACCEPT",
        ],
    );
    let out = lab.fwctl(&["--config", c, "status"], &[]);
    assert!(!out.status.success());
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let v = reqs[0].json();
    assert_eq!(v["event"], "drift");
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("IPv4: fwctl's rules changed"),
        "{v}"
    );
    assert!(
        textfile().contains("fwctl_rules_drift{family=\"ipv4\"} 1\n"),
        "{}",
        textfile()
    );
    assert!(textfile().contains("fwctl_rules_drift{family=\"ipv6\"} 0\n"));
    // The same drift at the next cron'd status: not told again.
    let _ = lab.fwctl(&["--config", c, "status"], &[]);
    assert_eq!(rx.requests().len(), 1);
    // Repaired, then drifted anew: told again.
    ok(&lab.fwctl(&["--config", c, "status", "--repair"], &[]));
    assert!(textfile().contains("fwctl_rules_drift{family=\"ipv4\"} 0\n"));
    lab.exec_ok(
        &lab.target,
        &[
            "iptables",
            "-I",
            "FWCTL-INPUT",
            "1",
            "-s",
            "203.0.113.99",
            "-j",
            "ACCEPT",
        ],
    );
    let _ = lab.fwctl(&["--config", c, "status"], &[]);
    assert_eq!(rx.requests().len(), 2);
}

/// An endpoint that takes the connection and never answers (timeout 60 s):
/// a ban still ends within the few seconds it waits for its posts, its
/// event waits in the outbox, and the next run delivers it.
#[test]
#[ignore = "needs root: kernel test"]
fn a_hung_endpoint_never_holds_a_run_and_loses_nothing() {
    let lab = Lab::new();
    // Listening, never accepting: the kernel completes the handshake and
    // the request is never read.
    let hung = in_ns(&lab.target, || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    });
    let hung_port = hung.local_addr().unwrap().port();
    let text = |url: &str| {
        format!("[[notify]]\nname = \"ops\"\nurl = \"{url}\"\nevents = [\"ip_blocked\"]\ntimeout = \"60s\"\n")
    };
    let (_d, cfg, _) = setup(&text(&format!("http://127.0.0.1:{hung_port}/hook")));
    let c = cfg.to_str().unwrap();
    apply(&lab, &cfg);
    let t = std::time::Instant::now();
    let out = lab.fwctl(&["--config", c, "ban", "203.0.113.10", "--for", "1h"], &[]);
    let took = t.elapsed();
    ok(&out);
    assert!(
        took < std::time::Duration::from_secs(10),
        "the ban took {took:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept in the outbox"), "{err}");
    assert!(lab.set_members("blacklist").contains_key("203.0.113.10"));
    // The endpoint moves to a receiver that answers: the next run brings it.
    let rx = Receiver::start_in(&lab.target, 0);
    std::fs::write(&cfg, text(&rx.url())).unwrap();
    ok(&lab.fwctl(&["--config", c, "ban", "203.0.113.11", "--for", "1h"], &[]));
    let counts = blocked_counts(&delivered(&rx.requests()));
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1));
    drop(hung);
}

/// HTTPS through rustls: a receiver with a self-signed certificate is
/// refused until the certificate is trusted (SSL_CERT_FILE), then gets the
/// signed post.
#[test]
#[ignore = "needs root: kernel test"]
fn https_posts_verify_the_certificate() {
    let lab = Lab::new();
    let (rx, pem) = Receiver::start_tls_in(&lab.target);
    let (d, cfg, _) = setup(&format!(
        "[[notify]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = \"SECRET_FILE\"\n",
        rx.https_url()
    ));
    let c = cfg.to_str().unwrap();
    let bad = lab.fwctl(&["--config", c, "notify", "test"], &[]);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(said.contains("ops: cannot connect"), "{said}");
    assert!(rx.requests().is_empty());
    let ca = d.path().join("receiver.pem");
    std::fs::write(&ca, pem).unwrap();
    let out = ok(&lab.fwctl(
        &["--config", c, "notify", "test"],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    ));
    assert!(out.contains("ops: HTTP 200"), "{out}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].signed_with(SECRET.as_bytes()));
    assert_eq!(reqs[0].json()["event"], "test");
}

/// Slack, Discord and Mattermost put a webhook's secret in its path (some
/// receivers in its query): it never reaches output, whether the receiver
/// refuses `notify test`, is down, or a delivery fails.
#[test]
#[ignore = "needs root: kernel test"]
fn a_webhook_path_token_is_never_printed() {
    const TOKEN: &str = "B0AA1-xoxb-T0KEN-s3cret";
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    rx.script(&[500]);
    // A port nothing listens on: a listener's, closed again.
    let dead = in_ns(&lab.target, || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let (_d, cfg, _) = setup(&format!(
        "[[notify]]\nname = \"refusing\"\nurl = \"http://127.0.0.1:{}/services/{TOKEN}?token={TOKEN}\"\n\
         [[notify]]\nname = \"down\"\nurl = \"http://127.0.0.1:{dead}/api/webhooks/{TOKEN}\"\nevents = [\"ip_blocked\"]\n",
        rx.port
    ));
    let c = cfg.to_str().unwrap();
    let said = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let test = lab.fwctl(&["--config", c, "notify", "test"], &[]);
    assert!(!test.status.success());
    let text = said(&test);
    assert!(
        text.contains("refusing: HTTP 500 in ")
            && text.contains(&format!(
                " ms (http://127.0.0.1:{}/…): the receiver refused it",
                rx.port
            ))
            && text.contains(&format!(
                "down: cannot connect (http://127.0.0.1:{dead}/…): "
            )),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "the token was printed: {text}");
    // A delivery that fails (connection refused, retried until the run's
    // deadline, kept in the outbox): said without the token.
    let applied = lab.fwctl(&["--config", c, "apply"], &[]);
    ok(&applied);
    let banned = lab.fwctl(&["--config", c, "ban", "203.0.113.7", "--for", "1h"], &[]);
    ok(&banned);
    let text = said(&applied) + &said(&banned);
    assert!(
        text.contains("notify down: ")
            && text.contains(&format!("http://127.0.0.1:{dead}/…: Connection Failed")),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "the token was printed: {text}");
}

/// A /metrics server in the lab's target namespace, serving a fixed text.
fn metrics_server(lab: &Lab) -> std::net::SocketAddr {
    let render: std::sync::Arc<dyn Fn() -> String + Send + Sync> =
        std::sync::Arc::new(|| "fwctl_up 1\n".to_string());
    in_ns(&lab.target, || {
        fwctl::sys::http::serve_metrics("127.0.0.1:0".parse().unwrap(), render)
    })
    .unwrap()
}

/// GET /metrics (within 10 s), from a thread in the target namespace.
fn scrape(lab: &Lab, addr: std::net::SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    in_ns(&lab.target, || {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    })
}

/// Whether the server closed `s` within `wait` (EOF or reset), rather than
/// leaving it open.
fn closed_within(s: &mut std::net::TcpStream, wait: std::time::Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(wait)).unwrap();
    match s.read(&mut [0u8; 256]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A client sending its request a byte every 1.5 s once held /metrics (one
/// connection at a time, a read timeout of 2 s per read): no scrape got
/// through while it dripped. Now each connection has its own thread, and
/// the whole request its 2 s deadline.
#[test]
#[ignore = "needs root: kernel test"]
fn a_client_dripping_its_request_never_holds_up_a_scrape() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let lab = Lab::new();
    let addr = metrics_server(&lab);
    // Connected first: the server accepts connections in the order they came.
    let mut slow = in_ns(&lab.target, || std::net::TcpStream::connect(addr)).unwrap();
    slow.write_all(b"G").unwrap();
    let drip = std::thread::spawn(move || {
        let start = Instant::now();
        // Each wait for the next byte is a read: it ends early if the server
        // hangs up.
        for b in b"ET /metrics HTTP/1.1\r\n\r\n" {
            if closed_within(&mut slow, Duration::from_millis(1500))
                || slow.write_all(&[*b]).is_err()
            {
                return Some(start.elapsed());
            }
        }
        None
    });
    let t = Instant::now();
    let text = scrape(&lab, addr).expect("the scrape is answered");
    let took = t.elapsed();
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("fwctl_up 1\n"),
        "{text}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "the scrape waited {took:?} behind a client dripping a byte every 1.5 s"
    );
    let cut = drip.join().unwrap();
    assert!(
        cut.is_some_and(|d| d < Duration::from_millis(3500)),
        "the dripping client was not cut off at its 2 s deadline: {cut:?}"
    );
}

/// At most 8 connections are served at once: the 9th is closed at once,
/// and once the 8 idle ones reach their deadline a scrape gets through.
#[test]
#[ignore = "needs root: kernel test"]
fn at_most_eight_connections_are_served_at_once() {
    use std::time::Duration;
    let lab = Lab::new();
    let addr = metrics_server(&lab);
    assert_eq!(fwctl::sys::http::METRICS_CONNECTIONS, 8);
    let mut idle: Vec<std::net::TcpStream> = (0..8)
        .map(|_| in_ns(&lab.target, || std::net::TcpStream::connect(addr)).unwrap())
        .collect();
    let mut ninth = in_ns(&lab.target, || std::net::TcpStream::connect(addr)).unwrap();
    assert!(
        closed_within(&mut ninth, Duration::from_millis(1000)),
        "a 9th connection is closed at once"
    );
    for s in &mut idle {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "an idle connection is closed at its deadline"
        );
    }
    let text = scrape(&lab, addr).expect("the scrape is answered");
    assert!(text.ends_with("fwctl_up 1\n"), "{text}");
}
