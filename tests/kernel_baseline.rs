//! The baseline and AbuseIPDB reporting through real scan runs (root,
//! namespaces): a month of counts seeded beside the state file makes the
//! next run tell an `anomaly` to a real webhook receiver and write the
//! gauges; overlapping runs count each line once; `report = true` posts
//! nothing for documentation addresses (the only ones tests ban) to a
//! real stand-in of the report endpoint, and counts them as refused.

mod common;
use common::receiver::{Answer, Receiver, Request};
use common::*;
use fwctl::core::baseline::{self, hour_of, Baseline, Key, What};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A log of three documentation offenders, three lines each, two whole
/// minutes ago (so the run that reads it counts those minutes).
fn log_two_minutes_ago(path: &Path) -> i64 {
    let t = now() - 120;
    let stamp = fwctl::units::time::utc(t).replace('Z', ".000000+00:00");
    let mut text = String::new();
    for n in 1..=3u32 {
        let a: std::net::Ipv6Addr = format!("2001:db8:5::{n:x}").parse().unwrap();
        let full = fwctl::testing::loggen::full_v6(a);
        for port in [22, 23, 24] {
            text.push_str(&log_line(&stamp, &full, port));
        }
    }
    std::fs::write(path, text).unwrap();
    t
}

fn scan(lab: &Lab, cfg: &Path, log: &Path) -> Output {
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend(blocked_scan(log, "2", "throttle-hard", "1h"));
    args.push("--json");
    lab.fwctl(&args, &[])
}

#[test]
#[ignore = "needs root: kernel test"]
fn a_month_of_counts_makes_the_next_scan_tell_an_anomaly_once_and_lines_count_once() {
    let lab = Lab::new();
    let rx = Receiver::start_in(&lab.target, 0);
    let prom = tempfile::tempdir().unwrap();
    let (d, cfg) = config(&format!(
        "[[notify]]\nname = \"ops\"\nurl = \"{}\"\nevents = [\"anomaly\"]\n[metrics]\ntextfile_dir = \"{}\"\n",
        rx.url(),
        prom.path().display()
    ));
    ok(&lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]));
    // The synthetic month: 100 lines every hour for 30 days, and 400 in
    // the last complete hour.
    let k = Key::new(What::Lines, "blocked", "tcp");
    let t = now();
    let mut b = Baseline::default();
    for back in (1..=30 * 24 + 1).rev() {
        b.add(&k, t - back * 3600, if back == 1 { 400 } else { 100 });
    }
    let seeded: u64 = b.series[0].counts.iter().sum();
    let path = lab.state_path().with_file_name("baseline.json");
    std::fs::write(&path, baseline::to_text(&b)).unwrap();

    let log = d.path().join("iptables.log");
    let written = log_two_minutes_ago(&log);
    ok(&scan(&lab, &cfg, &log));
    assert!(
        rx.wait_for(Duration::from_secs(10), |r| !r.is_empty()),
        "no anomaly event"
    );
    // A second run over the same window: no second event, no line twice.
    ok(&scan(&lab, &cfg, &log));
    let events: Vec<serde_json::Value> = rx.requests().iter().flat_map(Request::events).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (
            e["event"].as_str(),
            e["rule"].as_str(),
            e["type"].as_str(),
            e["what"].as_str()
        ),
        (Some("anomaly"), Some("blocked"), Some("tcp"), Some("lines"))
    );
    // Within the same hour as the seeding, the judged hour holds the 400
    // (and the 9 lines too when they fell into it).
    if hour_of(written) == hour_of(t) {
        assert_eq!(e["count"].as_u64(), Some(400), "{e}");
    }
    assert_eq!(
        (e["days"].as_u64(), e["mean"].as_f64()),
        (Some(30), Some(100.0)),
        "{e}"
    );
    let (b, warn) = fwctl::sys::sidefile::read(&path, baseline::parse).unwrap();
    assert!(warn.is_none());
    let lines: u64 = b.get(&k).unwrap().counts.iter().sum();
    // 722 hours: all kept (744 are); the nine lines once, over two runs.
    assert_eq!(lines, seeded + 9);
    let bans = b.get(&Key::new(What::Bans, "blocked", "tcp")).unwrap();
    assert_eq!(
        bans.counts.iter().sum::<u64>(),
        3,
        "three bans, the second run none"
    );
    let text = std::fs::read_to_string(prom.path().join("fwctl.prom")).unwrap();
    assert!(
        text.contains("fwctl_anomaly{what=\"lines\",rule=\"blocked\",type=\"tcp\"} 1\n"),
        "{text}"
    );

    // A corrupt file: set aside with a warning, the scan goes on.
    std::fs::write(&path, b"{ not json").unwrap();
    let out = scan(&lab, &cfg, &log);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("baseline") && err.contains("corrupt"), "{err}");
    assert!(baseline::parse(&std::fs::read(&path).unwrap()).is_ok());
}

#[test]
#[ignore = "needs root: kernel test"]
fn report_true_never_posts_a_documentation_address_and_counts_it() {
    let lab = Lab::new();
    let rx = Receiver::start_fn(&lab.target, |_: &Request| -> Answer {
        (
            200,
            vec![],
            br#"{"data":{"abuseConfidenceScore":0}}"#.to_vec(),
        )
    });
    let prom = tempfile::tempdir().unwrap();
    let (d, cfg) = config("");
    let key = d.path().join("abuseipdb.key");
    secret_file(&key, "the-key\n");
    std::fs::write(
        &cfg,
        format!(
            "[reputation]\nabuseipdb_key_file = \"{}\"\nurl = \"http://127.0.0.1:{p}/api/v2/check\"\nreport = true\nreport_url = \"http://127.0.0.1:{p}/api/v2/report\"\n[metrics]\ntextfile_dir = \"{}\"\n",
            key.display(),
            prom.path().display(),
            p = rx.port
        ),
    )
    .unwrap();
    ok(&lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]));
    let log = d.path().join("iptables.log");
    log_two_minutes_ago(&log);
    let v: serde_json::Value = serde_json::from_str(&ok(&scan(&lab, &cfg, &log))).unwrap();
    assert_eq!(v["added"].as_u64(), Some(3), "{v}");
    let a = &v["abuseipdb"];
    assert_eq!(
        (
            a["sent"].as_u64(),
            a["failed"].as_u64(),
            a["refused"].as_u64()
        ),
        (Some(0), Some(0), Some(3)),
        "{v}"
    );
    // The check endpoint may be asked; the report endpoint never is.
    assert!(
        !rx.requests().iter().any(|r| r.path.contains("/report")),
        "{:?}",
        rx.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let text = std::fs::read_to_string(prom.path().join("fwctl.prom")).unwrap();
    assert!(
        text.contains("fwctl_abuseipdb_reports_total{result=\"refused\"} 3\n"),
        "{text}"
    );
    // The key is never printed.
    assert!(!v.to_string().contains("the-key"));
}

/// The report client against a real stand-in of AbuseIPDB's v2 report
/// endpoint: the form fields, the `Key` header, and which failures stop a
/// run's reports. (The client is below the address filter, so it posts a
/// documentation address here; scan never would.)
#[test]
#[ignore = "needs root: kernel test"]
fn the_report_client_posts_the_form_abuseipdb_takes() {
    use fwctl::core::scan::abuse;
    let lab = Lab::new();
    let rx = Receiver::start_fn(&lab.target, |req: &Request| -> Answer {
        if req.headers.get("key").map(String::as_str) != Some("the-key") {
            return (
                401,
                vec![],
                br#"{"errors":[{"detail":"Authentication failed."}]}"#.to_vec(),
            );
        }
        (
            200,
            vec![],
            br#"{"data":{"ipAddress":"x","abuseConfidenceScore":100}}"#.to_vec(),
        )
    });
    let url = format!("http://127.0.0.1:{}/api/v2/report", rx.port);
    let r = abuse::Report {
        ip: "2001:db8:5::1".parse().unwrap(),
        categories: abuse::categories("sshd", "sshd", &[]),
        comment: abuse::comment("sshd", "ssh", 12, "10m"),
    };
    let post = |key: &str, url: &str| {
        let (key, url, r) = (key.to_string(), url.to_string(), r.clone());
        in_ns(&lab.target, move || {
            fwctl::sys::http::AbuseIpdb::new(&url, key, Duration::from_secs(2)).report(&url, &r)
        })
    };
    assert_eq!(post("the-key", &url), Ok(()));
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.path, "/api/v2/report");
    assert_eq!(
        req.headers.get("content-type").map(String::as_str),
        Some("application/x-www-form-urlencoded")
    );
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    assert_eq!(form.get("ip").map(String::as_str), Some("2001:db8:5::1"));
    assert_eq!(form.get("categories").map(String::as_str), Some("18,22"));
    assert_eq!(
        form.get("comment").map(String::as_str),
        Some("fwctl scan rule sshd (ssh): 12 matching log lines within 10m")
    );
    // A refused key stops the run's reports; so does a closed port (9,
    // discard, in the lab's namespace where nothing listens).
    let (e, stop) = post("wrong", &url).unwrap_err();
    assert!(
        e.contains("HTTP 401") && e.contains("abuseipdb_key_file") && stop,
        "{e}"
    );
    let (e, stop) = post("the-key", "http://127.0.0.1:9/api/v2/report").unwrap_err();
    assert!(stop, "{e}");
    assert!(!e.contains("the-key"), "{e}");
}

/// watch counts its rule's matching lines (each whole minute once, shared
/// with cron scans of the same rule) and its bans into the baseline, and
/// with `report = true` hands its bans to AbuseIPDB's reporter: the
/// documentation addresses it bans are refused and counted, never posted.
#[test]
#[ignore = "needs root: kernel test"]
fn watch_counts_into_the_baseline_beside_scan_and_reports_through_the_ledger() {
    use common::watch::Watch;
    let lab = Lab::new();
    let rx = Receiver::start_fn(&lab.target, |_: &Request| -> Answer {
        (200, vec![], br#"{"data":{}}"#.to_vec())
    });
    let (d, cfg) = config("");
    let key = d.path().join("abuseipdb.key");
    secret_file(&key, "the-key\n");
    let auth = d.path().join("auth.log");
    std::fs::write(&auth, "").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[reputation]\nabuseipdb_key_file = \"{}\"\nurl = \"http://127.0.0.1:{p}/api/v2/check\"\nreport = true\nreport_url = \"http://127.0.0.1:{p}/api/v2/report\"\n[metrics]\nlisten = \"\"\nwatch_listen = \"\"\n[[watch]]\nsource = \"sshd\"\nlog = \"{}\"\nhowmany = 2\nwithin = \"10m\"\nipset = \"blacklist\"\nremoveafter = \"1h\"\n",
            key.display(),
            auth.display(),
            p = rx.port
        ),
    )
    .unwrap();
    ok(&lab.fwctl(&["--config", cfg.to_str().unwrap(), "apply"], &[]));
    let mut w = Watch::start(&lab, &cfg, &[]);
    // Two minutes ago: whole minutes, counted when watch stops.
    let stamp = fwctl::units::time::utc(now() - 120).replace('Z', ".000000+00:00");
    let mut text = String::new();
    for n in 1..=3 {
        for port in [40001, 40002, 40003] {
            text.push_str(&format!(
                "{stamp} web1 sshd[{n}]: Failed password for root from 203.0.113.{n} port {port} ssh2\n"
            ));
        }
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&auth)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .unwrap();
    for n in 1..=3 {
        w.wait("watch_ban", &format!("203.0.113.{n}"));
    }
    w.stop();

    let path = lab.state_path().with_file_name("baseline.json");
    let lines_and_bans = || {
        let (b, warn) = fwctl::sys::sidefile::read(&path, baseline::parse).unwrap();
        assert!(warn.is_none());
        let sum = |what: What| -> Vec<(String, String, u64)> {
            b.series
                .iter()
                .filter(|s| s.key.what == what)
                .map(|s| {
                    (
                        s.key.rule.clone(),
                        s.key.kind.clone(),
                        s.counts.iter().sum(),
                    )
                })
                .collect()
        };
        (sum(What::Lines), sum(What::Bans))
    };
    let (lines, bans) = lines_and_bans();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].2, 9, "nine matching lines: {lines:?}");
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(
        (&bans[0].0, &bans[0].1, bans[0].2),
        (&lines[0].0, &lines[0].1, 3)
    );

    // A cron scan of the same rule over the same lines adds no line twice
    // (and no ban: watch's are in).
    let out = lab.fwctl(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "scan",
            "--source",
            "sshd",
            "--log",
            auth.to_str().unwrap(),
            "--howmany",
            "2",
            "--within",
            "10m",
            "--ipset",
            "blacklist",
            "--removeafter",
            "1h",
        ],
        &[],
    );
    ok(&out);
    let (again, bans_again) = lines_and_bans();
    assert_eq!((again, bans_again), (lines, bans));

    // Watch's three bans went to the reporter: refused (documentation
    // addresses), counted in the ledger, never posted.
    let ledger = std::fs::read(lab.state_path().with_file_name("abuseipdb-reports.json"))
        .expect("watch kept the report ledger");
    let l = fwctl::core::scan::abuse::parse(&ledger).unwrap();
    assert_eq!((l.refused, l.sent, l.failed), (3, 0, 0));
    assert!(
        !rx.requests().iter().any(|r| r.path.contains("/report")),
        "{:?}",
        rx.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}
