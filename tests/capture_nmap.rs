//! Every kind of scan nmap sends, as recorded in the lab (tests/data/nmap,
//! see its README): replayed through `fwctl capture --pcap` (no root), and
//! each recorded probe run through the kernel filter as data.

use fwctl::core::capture::bpf;
use fwctl::core::capture::packet::{fragment, parse, Link};
use fwctl::ports::{PacketSource, Received};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nmap");

fn config() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("fwctl.toml");
    // The recordings' IPv6 scanners (and decoys) share one /64: count each
    // address, as nmap's own report does ([aggregate] v6_count_prefix).
    std::fs::write(
        &p,
        "[[service]]\nname = \"ssh\"\nport = 22\n[[service]]\nname = \"http\"\nport = 80\n[capture]\nprofile = \"standard\"\n[aggregate]\nv6_count_prefix = 128\n",
    )
    .unwrap();
    let p = p.to_str().unwrap().to_string();
    for path in [d.path().to_str().unwrap(), &p] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    (d, p)
}

/// `fwctl capture --pcap`, as an ordinary user even when run as root.
fn replay(cfg: &str, name: &str) -> Vec<Value> {
    let pcap = format!("{DATA}/{name}.pcap");
    let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
    c.args(["--config", cfg, "capture", "--pcap", &pcap, "--json"]);
    if unsafe { libc::geteuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    let out: Output = c.output().unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A scan as reported: source, scan type, nmap option.
type Reported = (String, String, String);

fn scans(evs: &[Value]) -> Vec<Reported> {
    let mut v: Vec<_> = evs
        .iter()
        .filter(|e| e["event"] == "scan_detected")
        .map(|e| {
            (
                e["src"].as_str().unwrap().to_string(),
                e["scan_type"].as_str().unwrap().to_string(),
                e["nmap"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn both(n: u8, scan_type: &str, nmap: &str) -> Vec<Reported> {
    vec![
        (format!("198.51.100.{n}"), scan_type.into(), nmap.into()),
        (format!("2001:db8:100::{n}"), scan_type.into(), nmap.into()),
    ]
}

#[test]
fn each_recorded_nmap_scan_is_reported_by_its_name_and_would_be_banned() {
    let (_d, cfg) = config();
    let cases: Vec<(&str, Vec<Reported>)> = vec![
        ("sA", both(61, "ACK", "-sA/-sW")),
        ("sW", both(63, "ACK", "-sA/-sW")),
        ("sM", both(62, "MAIMON", "-sM")),
        ("sY", both(45, "SCTP-INIT", "-sY")),
        ("sZ", both(46, "SCTP-COOKIE-ECHO", "-sZ")),
        ("sO", both(47, "IP-PROTOCOL", "-sO")),
        ("scanflags-SYNFIN", both(48, "ODD-FLAGS", "--scanflags")),
        // URG+PSH+FIN is the XMAS scan's flag set: nmap -sX.
        ("scanflags-URGPSHFIN", both(49, "XMAS", "-sX")),
        // nmap fragments over IPv4 only.
        (
            "sS-f",
            vec![("198.51.100.44".into(), "TINY-FRAGMENT".into(), "-f".into())],
        ),
    ];
    for (name, want) in cases {
        let evs = replay(&cfg, name);
        assert_eq!(scans(&evs), want, "{name}");
        let bans: Vec<_> = evs
            .iter()
            .filter(|e| e["event"] == "ip_blocked")
            .map(|e| (e["src"].as_str().unwrap(), e["ban_seconds"].as_u64()))
            .collect();
        assert_eq!(bans.len(), want.len(), "{name}: {bans:?}");
        // The standard profile's first ban.
        assert!(bans.iter().all(|b| b.1 == Some(600)), "{name}: {bans:?}");
    }
}

#[test]
fn decoys_show_as_one_scanner_with_the_same_port_sequence() {
    let (_d, cfg) = config();
    for (name, family) in [
        (
            "decoys",
            ["198.51.100.41", "198.51.100.51", "198.51.100.52"],
        ),
        (
            "decoys6",
            ["2001:db8:100::41", "2001:db8:100::51", "2001:db8:100::52"],
        ),
    ] {
        let evs = replay(&cfg, name);
        let det: Vec<&Value> = evs
            .iter()
            .filter(|e| {
                e["event"] == "scan_detected" && family.contains(&e["src"].as_str().unwrap())
            })
            .collect();
        assert_eq!(det.len(), 3, "{det:#?}");
        // The last of the three names the other two; every one after the
        // first says -D.
        let last = det.last().unwrap();
        let mut same: Vec<&str> = last["same_ports_as"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        same.push(last["src"].as_str().unwrap());
        same.sort();
        let mut all = family.to_vec();
        all.sort();
        assert_eq!(same, all);
        assert!(det[1..].iter().all(|e| e["nmap"] == "-sS -D"), "{det:#?}");
        assert!(det[0].get("same_ports_as").is_none());
    }
}

/// Every recorded frame of a scan the packet socket sees passes the
/// kernel filter (the tiny first fragments and the fragments holding their
/// flags, SCTP chunks, unusual IP protocols included).
#[test]
fn the_kernel_filter_passes_every_recorded_probe() {
    let prog = bpf::program(&[], &[]);
    for name in [
        "sS-f",
        "sY",
        "sZ",
        "sO",
        "scanflags-SYNFIN",
        "scanflags-URGPSHFIN",
        "decoys",
        "decoys6",
    ] {
        let mut src =
            fwctl::sys::pcap::Pcap::open(std::path::Path::new(&format!("{DATA}/{name}.pcap")))
                .unwrap();
        let mut n = 0;
        loop {
            let got = src
                .recv(&mut |f| {
                    assert_eq!(f.link, Link::Ethernet);
                    // (ARP and neighbour discovery came along in the
                    // recording; of a probe's fragments, capture reads the
                    // first and the one at byte 8, which holds its flags.)
                    let frag = fragment(f.link, f.data);
                    let used = frag.is_some_and(|f| f.offset <= 8);
                    if frag.is_some() && !used {
                        assert_eq!(
                            bpf::run(&prog, f.data, 0, 1),
                            0,
                            "{name}: later fragment passed"
                        );
                    }
                    if parse(f.link, f.data).is_some() || used {
                        assert!(
                            bpf::run(&prog, f.data, 0, 1) > 0,
                            "{name}: frame {n} dropped"
                        );
                        n += 1;
                    }
                })
                .unwrap();
            if got == Received::End {
                break;
            }
        }
        assert!(n >= 10, "{name}: {n} frames");
    }
}
