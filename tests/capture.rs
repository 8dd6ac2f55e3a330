//! Capture without root: frames built with etherparse through the parser and
//! the BPF filter, and pcap/pcapng files replayed through `fwctl capture`.

#[path = "common/pkt.rs"]
mod pkt;

use fwctl::core::capture::bpf;
use fwctl::core::capture::packet::{parse, Kind, Link};
use pkt::{Flags, FIN, NULL, SYN, SYN_ACK, XMAS};
use serde_json::Value;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

const ATTACKER: &str = "203.0.113.66";
const ATTACKER6: &str = "2001:db8:bad::66";
const TARGET: &str = "198.51.100.1";
const TARGET6: &str = "2001:db8:100::1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const ETHER: u32 = 1;
const HOST: u32 = 0;
const OUTGOING: u32 = 4;

#[test]
fn every_probe_kind_parses_and_passes_the_kernel_filter() {
    let prog = bpf::program(&[], &[]);
    let odd = Flags {
        syn: true,
        fin: true,
        ..NULL
    };
    let cases: Vec<(Vec<u8>, Kind)> = vec![
        (
            pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 22, SYN, None),
            Kind::Syn,
        ),
        (
            pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 23, FIN, None),
            Kind::Fin,
        ),
        (
            pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 24, NULL, None),
            Kind::Null,
        ),
        (
            pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 25, XMAS, None),
            Kind::Xmas,
        ),
        (
            pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 26, odd, None),
            Kind::Odd,
        ),
        (pkt::udp(ip(ATTACKER), ip(TARGET), 4000, 161), Kind::Udp),
        (
            pkt::tcp(ip(ATTACKER6), ip(TARGET6), 4000, 22, SYN, None),
            Kind::Syn,
        ),
        (
            pkt::tcp(ip(ATTACKER6), ip(TARGET6), 4000, 22, XMAS, None),
            Kind::Xmas,
        ),
        (pkt::udp(ip(ATTACKER6), ip(TARGET6), 4000, 53), Kind::Udp),
        (
            pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 80, SYN, Some(7)),
            Kind::Syn,
        ),
        (
            pkt::tcp(ip(ATTACKER6), ip(TARGET6), 4000, 80, FIN, Some(7)),
            Kind::Fin,
        ),
    ];
    for (frame, kind) in &cases {
        let p = parse(Link::Ethernet, frame).unwrap_or_else(|| panic!("{kind:?} not parsed"));
        assert_eq!(p.kind, *kind);
        assert!(p.src.ip() == ip(ATTACKER) || p.src.ip() == ip(ATTACKER6));
        assert_eq!(p.sport, 4000);
        assert_eq!(
            bpf::run(&prog, frame, HOST, ETHER),
            bpf::SNAP,
            "{kind:?} dropped by BPF"
        );
        // Our own outgoing packets never reach user space.
        assert_eq!(bpf::run(&prog, frame, OUTGOING, ETHER), 0);
    }
}

/// IPv6 extension headers between the IP and TCP headers: a scanner
/// could pad them past the probe snap length (256 bytes) or chain several
/// to hide its SYNs. The filter passes such frames with the data snap
/// length, and the parser walks up to eight headers.
#[test]
fn a_syn_behind_long_or_many_ipv6_extension_headers_is_still_a_probe() {
    let prog = bpf::program(&[], &[]);
    let syn = pkt::tcp(ip(ATTACKER6), ip(TARGET6), 4000, 2222, SYN, None);
    // Ethernet (14) + IPv6 (40), then TCP: put `headers` in between.
    let with = |headers: &[(u8, usize)]| -> Vec<u8> {
        let mut f = syn[..54].to_vec();
        let mut ext = Vec::new();
        let mut next_of_ip = 6u8;
        for (i, &(kind, len)) in headers.iter().enumerate().rev() {
            let next = if i + 1 == headers.len() {
                6
            } else {
                headers[i + 1].0
            };
            let mut h = vec![0u8; len];
            h[0] = next;
            h[1] = (len / 8 - 1) as u8;
            // One PadN option over the rest.
            h[2] = 1;
            h[3] = (len - 4) as u8;
            ext.splice(0..0, h);
            next_of_ip = kind;
        }
        f[14 + 6] = next_of_ip;
        let plen = u16::from_be_bytes([f[18], f[19]]) as usize + ext.len();
        f[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
        f.extend_from_slice(&ext);
        f.extend_from_slice(&syn[54..]);
        f
    };
    for headers in [
        vec![(60u8, 256usize)],
        vec![(0, 8), (60, 8), (60, 16), (60, 8), (60, 8), (60, 8)],
    ] {
        let frame = with(&headers);
        let snap = bpf::run(&prog, &frame, HOST, ETHER);
        assert!(snap as usize >= frame.len(), "{headers:?}: cut to {snap}");
        let p = parse(Link::Ethernet, &frame[..frame.len().min(snap as usize)])
            .unwrap_or_else(|| panic!("{headers:?}: not parsed"));
        assert_eq!(
            (p.kind, p.dport, p.src.ip()),
            (Kind::Syn, 2222, ip(ATTACKER6))
        );
    }
}

/// The most signature ports a config allows (8 of each) keep every jump of
/// the filter in range: it assembles, and still passes probes and data.
#[test]
fn the_filter_assembles_with_the_most_signature_ports() {
    let ports: Vec<u16> = (8000..8008).collect();
    let prog = bpf::program(&ports, &ports);
    let syn = pkt::tcp(ip(ATTACKER6), ip(TARGET6), 4000, 22, SYN, None);
    assert_eq!(bpf::run(&prog, &syn, HOST, ETHER), bpf::SNAP);
    let psh_ack = Flags {
        ack: true,
        psh: true,
        ..NULL
    };
    for (dst, src) in [(TARGET, ATTACKER), (TARGET6, ATTACKER6)] {
        for vlan in [None, Some(7)] {
            let data = pkt::tcp_data(
                ip(src),
                ip(dst),
                (40000, 8007),
                psh_ack,
                vlan,
                (5001, 1001),
                b"x",
            );
            assert_eq!(
                bpf::run(&prog, &data, HOST, ETHER),
                bpf::DATA_SNAP,
                "{dst} {vlan:?}"
            );
        }
    }
}

#[test]
fn replies_and_established_traffic_are_filtered_out() {
    let prog = bpf::program(&[], &[]);
    let rst = Flags { rst: true, ..NULL };
    let ack = Flags { ack: true, ..NULL };
    for frame in [
        pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 22, SYN_ACK, None),
        pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 22, rst, None),
        pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 22, ack, None),
        pkt::tcp(ip(ATTACKER6), ip(TARGET6), 4000, 22, SYN_ACK, None),
        pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 22, ack, Some(9)),
    ] {
        assert_eq!(parse(Link::Ethernet, &frame), None);
        assert_eq!(bpf::run(&prog, &frame, HOST, ETHER), 0);
    }
    // An ARP frame (not IP) is dropped too.
    let mut arp = vec![0u8; 42];
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert_eq!(bpf::run(&prog, &arp, HOST, ETHER), 0);
    assert_eq!(parse(Link::Ethernet, &arp), None);
}

/// A frame cut short anywhere is either dropped or read as the whole frame
/// is: never a half-read probe (wrong ports or flags), in user space or in
/// the kernel filter.
#[test]
fn truncated_frames_never_panic_and_never_pass_half_parsed() {
    let prog = bpf::program(&[], &[]);
    for full in [
        pkt::tcp(ip(ATTACKER6), ip(TARGET6), 4000, 22, SYN, Some(3)),
        pkt::tcp(ip(ATTACKER), ip(TARGET), 4000, 23, FIN, None),
    ] {
        let whole = parse(Link::Ethernet, &full).expect("the whole frame is a probe");
        let passed = bpf::run(&prog, &full, HOST, ETHER);
        assert!(passed > 0);
        // Ethernet (+ VLAN tag), the IP header, and the TCP header up to its
        // flags byte: anything shorter lacks part of the probe.
        let vlan = if !whole.src.is_v4() { 4 } else { 0 };
        let ip_len = if !whole.src.is_v4() { 40 } else { 20 };
        let needed = 14 + vlan + ip_len + 14;
        for len in 0..full.len() {
            let cut = &full[..len];
            if len < needed {
                assert_eq!(parse(Link::Ethernet, cut), None, "{len} bytes");
                assert_eq!(bpf::run(&prog, cut, HOST, ETHER), 0, "{len} bytes");
            } else {
                assert_eq!(parse(Link::Ethernet, cut), Some(whole), "{len} bytes");
                assert_eq!(bpf::run(&prog, cut, HOST, ETHER), passed, "{len} bytes");
            }
        }
    }
}

#[test]
fn with_signatures_the_filter_passes_data_to_their_ports_and_our_syn_acks() {
    let prog = bpf::program(&[80, 3306], &[53]);
    let data = |dst: &str, src: &str, dport: u16, vlan, payload: &[u8]| {
        pkt::tcp_data(
            ip(src),
            ip(dst),
            (40000, dport),
            Flags {
                ack: true,
                psh: true,
                ..NULL
            },
            vlan,
            (5001, 1001),
            payload,
        )
    };
    for (dst, src) in [(TARGET, ATTACKER), (TARGET6, ATTACKER6)] {
        for vlan in [None, Some(7)] {
            let f = data(dst, src, 80, vlan, b"GET /?q=UNION SELECT 1");
            assert_eq!(
                bpf::run(&prog, &f, HOST, ETHER),
                bpf::DATA_SNAP,
                "{dst} {vlan:?}"
            );
            assert_eq!(
                bpf::run(&prog, &data(dst, src, 3306, vlan, b"x"), HOST, ETHER),
                bpf::DATA_SNAP
            );
            // Data to a port no signature watches, and a bare ACK to one.
            assert_eq!(
                bpf::run(&prog, &data(dst, src, 443, vlan, b"x"), HOST, ETHER),
                0
            );
            assert_eq!(
                bpf::run(&prog, &data(dst, src, 80, vlan, b""), HOST, ETHER),
                0,
                "{dst} {vlan:?}"
            );
            // Probes pass as before, cut to the probe length.
            let syn = pkt::tcp(ip(src), ip(dst), 4000, 81, SYN, vlan);
            assert_eq!(bpf::run(&prog, &syn, HOST, ETHER), bpf::SNAP);
        }
        // An incoming SYN-ACK with data (a forger posing as us) never passes.
        let forged = pkt::tcp_data(ip(dst), ip(src), (40000, 80), SYN_ACK, None, (1, 1), b"x");
        assert_eq!(bpf::run(&prog, &forged, HOST, ETHER), 0, "{dst}");
        // Our own SYN-ACK from a signature port passes; from another port,
        // and our other outgoing segments, do not.
        let sa = |sport| pkt::tcp(ip(dst), ip(src), sport, 40000, SYN_ACK, None);
        assert_eq!(
            bpf::run(&prog, &sa(80), OUTGOING, ETHER),
            bpf::SNAP,
            "{dst}"
        );
        assert_eq!(bpf::run(&prog, &sa(8080), OUTGOING, ETHER), 0);
        let out = pkt::tcp_data(
            ip(dst),
            ip(src),
            (80, 40000),
            Flags { ack: true, ..NULL },
            None,
            (1, 1),
            b"HTTP/1.1 200 OK",
        );
        assert_eq!(bpf::run(&prog, &out, OUTGOING, ETHER), 0);
        // UDP to a signature port is cut long, other UDP as before.
        assert_eq!(
            bpf::run(&prog, &pkt::udp(ip(src), ip(dst), 4000, 53), HOST, ETHER),
            bpf::DATA_SNAP
        );
        assert_eq!(
            bpf::run(&prog, &pkt::udp(ip(src), ip(dst), 4000, 161), HOST, ETHER),
            bpf::SNAP
        );
    }
    // Without signatures none of that passes.
    let plain = bpf::program(&[], &[]);
    let f = data(TARGET, ATTACKER, 80, None, b"UNION SELECT");
    assert_eq!(bpf::run(&plain, &f, HOST, ETHER), 0);
    let sa = pkt::tcp(ip(TARGET), ip(ATTACKER), 80, 40000, SYN_ACK, None);
    assert_eq!(bpf::run(&plain, &sa, OUTGOING, ETHER), 0);
    // The most ports the config allows still assemble (`program` panics on
    // a jump out of range: each goes to the first return after it), well
    // within the kernel's 4096 instructions.
    let most: Vec<u16> = (1..=8).collect();
    assert!(bpf::program(&most, &most).len() < 400);
}

fn fwctl(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Run as an ordinary user even when the suite runs as root: a replay needs no privilege.
fn as_user(mut c: Command) -> Output {
    if unsafe { libc::geteuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    c.output().unwrap()
}

fn events(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "fwctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn of<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

/// `fwctl --config CFG capture --pcap PCAP EXTRA...`, as an ordinary user.
fn replay(cfg: &str, pcap: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--config", cfg, "capture", "--pcap", pcap];
    args.extend_from_slice(extra);
    as_user(fwctl(&args))
}

/// A world-readable temporary directory (the replay runs as nobody).
fn tmp() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    d
}

fn write_config(dir: &Path, capture: &str) -> String {
    let p = dir.join("fwctl.toml");
    std::fs::write(
        &p,
        format!(
            "[trusted]\nnetworks = [\"192.0.2.0/24\"]\n[[service]]\nname = \"ssh\"\nport = 22\n[[service]]\nname = \"http\"\nport = 80\n[capture]\n{capture}\n"
        ),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

const T0: u64 = 1_763_726_400_000_000; // 2025-11-21T12:00:00Z

/// A mixed capture: a benign client on services, a SYN scan, an IPv6 XMAS
/// scan, a UDP scan, a trusted scanner, and replies that must not count.
fn mixed_capture() -> Vec<(u64, Vec<u8>)> {
    let mut f = Vec::new();
    let mut t = T0;
    let mut push = |frame: Vec<u8>, step: u64, f: &mut Vec<(u64, Vec<u8>)>| {
        t += step;
        f.push((t, frame));
    };
    for i in 0..50u16 {
        let port = if i % 2 == 0 { 22 } else { 80 };
        push(
            pkt::tcp(ip("198.51.100.10"), ip(TARGET), 40000 + i, port, SYN, None),
            1000,
            &mut f,
        );
        push(
            pkt::tcp(
                ip(TARGET),
                ip("198.51.100.10"),
                port,
                40000 + i,
                SYN_ACK,
                None,
            ),
            10,
            &mut f,
        );
    }
    for port in [21, 23, 25, 110, 135, 139, 445] {
        push(
            pkt::tcp(ip(ATTACKER), ip(TARGET), 51000, port, SYN, None),
            500,
            &mut f,
        );
    }
    for port in 1000..1007 {
        push(
            pkt::tcp(ip(ATTACKER6), ip(TARGET6), 51000, port, XMAS, Some(5)),
            500,
            &mut f,
        );
    }
    for port in [53, 67, 69, 123, 137, 161, 500] {
        push(
            pkt::udp(ip("203.0.113.77"), ip(TARGET), 51000, port),
            500,
            &mut f,
        );
    }
    for port in 2000..2010 {
        push(
            pkt::tcp(ip("192.0.2.9"), ip(TARGET), 51000, port, SYN, None),
            500,
            &mut f,
        );
    }
    f
}

fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let mut w = pkt::Pcap::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    for (t, fr) in frames {
        w.packet(*t, fr);
    }
    w.finish();
}

#[test]
fn a_replay_reports_a_payload_signature_of_an_answered_connection_only() {
    let dir = tmp();
    let cfg = write_config(
        dir.path(),
        "[[capture.signature]]\nname = \"sql-union\"\nports = [80]\ncontains = \"UNION SELECT\"\nnocase = true\nseverity = \"high\"\n",
    );
    let psh = Flags {
        ack: true,
        psh: true,
        ..NULL
    };
    let evil = b"GET /item?id=1%20union select password from users HTTP/1.1\r\nHost: a\r\n\r\n";
    // The first data segment of a connection whose SYN-ACK (seq 7000) we sent.
    let request = |src: &str| {
        pkt::tcp_data(
            ip(src),
            ip(TARGET),
            (40000, 80),
            psh,
            None,
            (5001, 7001),
            evil,
        )
    };
    let frames = vec![
        // A real client: our SYN-ACK, then its first data segment.
        (
            T0,
            pkt::tcp_data(
                ip(TARGET),
                ip(ATTACKER),
                (80, 40000),
                SYN_ACK,
                None,
                (7000, 5001),
                b"",
            ),
        ),
        (T0 + 100, request(ATTACKER)),
        // A forger who never saw a SYN-ACK.
        (T0 + 200, request("203.0.113.99")),
    ];
    let pcap = dir.path().join("sig.pcap");
    write_pcap(&pcap, &frames);
    let out = replay(&cfg, pcap.to_str().unwrap(), &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = events(&out);
    let m = of(&evs, "signature_matched");
    assert_eq!(m.len(), 1, "{evs:?}");
    assert_eq!(
        (m[0]["src"].as_str(), m[0]["matched"].as_str()),
        (Some(ATTACKER), Some("union select"))
    );
    let b = of(&evs, "ip_blocked");
    assert_eq!(b.len(), 1);
    assert_eq!(
        (
            b[0]["src"].as_str(),
            b[0]["scan_type"].as_str(),
            b[0]["applied"].as_bool()
        ),
        (Some(ATTACKER), Some("signature"), Some(false))
    );
}

#[test]
fn a_pcap_replay_reports_each_scan_with_its_type() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "");
    let pcap = dir.path().join("mixed.pcap");
    write_pcap(&pcap, &mixed_capture());
    let out = replay(&cfg, pcap.to_str().unwrap(), &["--json"]);
    let evs = events(&out);
    let scans = of(&evs, "scan_detected");
    let found: Vec<(String, String, String)> = scans
        .iter()
        .map(|s| {
            (
                s["src"].as_str().unwrap().to_string(),
                s["scan_type"].as_str().unwrap().to_string(),
                s["nmap"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (ATTACKER.to_string(), "SYN".into(), "-sS".into()),
            // IPv6 sources are counted per [aggregate] v6_count_prefix (/64).
            ("2001:db8:bad::/64".to_string(), "XMAS".into(), "-sX".into()),
            ("203.0.113.77".to_string(), "UDP".into(), "-sU".into()),
            ("192.0.2.9".to_string(), "SYN".into(), "-sS".into()),
        ]
    );
    assert_eq!(
        scans[0]["ports"],
        serde_json::json!([21, 23, 25, 110, 135, 139, 445])
    );
    assert_eq!(scans[0]["time"], "2025-11-21T12:00:00.054Z");
    assert_eq!(
        scans[3]["action"],
        "not banned: in trusted network 192.0.2.0/24 (config)"
    );
    let blocked = of(&evs, "ip_blocked");
    assert_eq!(blocked.len(), 3, "the trusted scanner is not banned");
    assert_eq!(blocked[1]["set"], "blacklist_v6");
    assert_eq!(blocked[0]["ban_seconds"], 600);
    assert_eq!(blocked[0]["applied"], false);
    let stats = of(&evs, "capture_stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0]["frames"], 131);
    assert_eq!(stats[0]["probes"], 81, "SYN-ACK replies are not probes");
    assert_eq!(stats[0]["scans"], 4);
}

/// A classic file of a link type capture cannot parse (USER0, 147), in
/// big-endian byte order: its frames are counted and warned about, not
/// parsed; a file cut short in its last record keeps the whole ones.
#[test]
fn frames_of_an_unknown_link_are_counted_and_a_cut_file_keeps_its_whole_records() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "");
    let mut v: Vec<u8> = Vec::new();
    for x in [0xa1b2_c3d4u32, 0x0002_0004, 0, 0, 65535, 147] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    for i in 0..5u32 {
        for x in [1_700_000_000 + i, 0, 60, 60] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&[0u8; 60]);
    }
    v.truncate(v.len() - 7);
    let path = dir.path().join("user0.pcap");
    std::fs::write(&path, &v).unwrap();
    let out = replay(&cfg, path.to_str().unwrap(), &["--json"]);
    let evs = events(&out);
    let stats = of(&evs, "capture_stats");
    assert_eq!(stats[0]["frames"], 0);
    assert_eq!(stats[0]["skipped_other_link"], 4);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipped 4 frames of link types [147]"),
        "{err}"
    );
    assert!(err.contains("ends inside a record at byte"), "{err}");
}

#[test]
fn pcapng_with_nanosecond_timestamps_replays_the_same() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "");
    let ng = dir.path().join("mixed.pcapng");
    std::fs::write(&ng, pkt::pcapng(&mixed_capture())).unwrap();
    let evs = events(&replay(&cfg, ng.to_str().unwrap(), &["--json"]));
    let scans = of(&evs, "scan_detected");
    assert_eq!(scans.len(), 4);
    assert_eq!(scans[0]["time"], "2025-11-21T12:00:00.054Z");
    assert_eq!(of(&evs, "capture_stats")[0]["frames"], 131);
}

/// A pcapng file cut short in its last block replays what comes before,
/// with a warning, as a classic one does.
#[test]
fn a_pcapng_file_cut_short_keeps_its_whole_blocks_and_warns() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "");
    let ng = dir.path().join("cut.pcapng");
    let mut bytes = pkt::pcapng(&mixed_capture());
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&ng, &bytes).unwrap();
    let out = replay(&cfg, ng.to_str().unwrap(), &["--json"]);
    let evs = events(&out);
    assert_eq!(of(&evs, "capture_stats")[0]["frames"], 130);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ends inside a record at byte"), "{err}");
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A replay once wrote its bans into the state file: the next apply
/// installed them in the kernel, and a second replay made them repeat
/// offences. It reads and writes nothing but its input and --output.
#[test]
fn replay_shows_progressive_bans_and_slow_scans_and_touches_no_state_file() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "profile = \"aggressive\"");
    let state = dir.path().join("state.json");
    // A slow scanner: one port every 10 minutes, three ports (caught in 20
    // minutes, inside the 1 h window); it comes back after each ban ends.
    let mut frames = Vec::new();
    let mut t = T0;
    for round in 0..4u64 {
        for i in 0..3u16 {
            frames.push((
                t,
                pkt::tcp(ip(ATTACKER), ip(TARGET), 50000, 3000 + i, FIN, None),
            ));
            t += 600_000_000;
        }
        // Wait out the ban: 5m, 1h, 12h, 3d.
        t += [300, 3600, 43200, 259200][round as usize] * 1_000_000;
    }
    let pcap = dir.path().join("slow.pcap");
    write_pcap(&pcap, &frames);
    // A state file with a ban of its own, named both ways.
    let before = "{\"version\": 1, \"bans\": [{\"addr\": \"203.0.113.66/32\", \"set\": \"blacklist\", \"offences\": 7, \"since\": 1, \"until\": 9999999999}]}\n";
    std::fs::write(&state, before).unwrap();
    let files = snapshot(dir.path());
    for _ in 0..2 {
        let mut c = fwctl(&[
            "--config",
            &cfg,
            "capture",
            "--pcap",
            pcap.to_str().unwrap(),
            "--json",
            "--state",
            state.to_str().unwrap(),
        ]);
        c.env("FWCTL_STATE", &state);
        let out = as_user(c);
        let evs = events(&out);
        // The same every time: the repeat offences come from the file itself.
        let bans: Vec<u64> = of(&evs, "ip_blocked")
            .iter()
            .map(|b| b["ban_seconds"].as_u64().unwrap())
            .collect();
        assert_eq!(bans, vec![300, 3600, 43200, 259200]);
        assert_eq!(of(&evs, "ip_blocked")[0]["offence"], 1);
        assert_eq!(of(&evs, "scan_detected")[0]["duration_s"], 1200);
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("neither reads nor writes the state file"));
        assert_eq!(
            snapshot(dir.path()),
            files,
            "nothing but the input was touched"
        );
    }
    // --output is the one file a replay writes.
    let out_file = dir.path().join("events.json");
    let out = replay(
        &cfg,
        pcap.to_str().unwrap(),
        &["--json", "--output", out_file.to_str().unwrap()],
    );
    assert!(out.status.success());
    let mut want = files.clone();
    want.push(("events.json".into(), std::fs::read(&out_file).unwrap()));
    want.sort();
    assert_eq!(snapshot(dir.path()), want);
}

#[test]
fn readable_output_is_one_line_per_event() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "");
    let pcap = dir.path().join("mixed.pcap");
    write_pcap(&pcap, &mixed_capture());
    let out = replay(&cfg, pcap.to_str().unwrap(), &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4 + 3 + 1, "{text}");
    assert!(
        lines[0].contains("scan_detected 203.0.113.66 SYN scan (-sS) 7 distinct ports within 2h"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("ip_blocked 203.0.113.66 in blacklist for 10m (offence 1"),
        "{}",
        lines[1]
    );
}

#[test]
fn bad_input_gets_one_line_with_the_fix() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "");
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all, just text\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--pcap", "/nonexistent/x.pcap"],
            "cannot open capture file",
        ),
        (
            vec!["--pcap", junk.to_str().unwrap()],
            "not a pcap or pcapng file",
        ),
        (vec!["--iface", "no/such"], "is not an interface name"),
        (vec!["--stats-every", "0s"], "not a duration of 1s or more"),
        (
            vec!["--pcap", junk.to_str().unwrap(), "--protect", "300.0.0.1"],
            "--protect 300.0.0.1",
        ),
        (vec![], "must run as root"),
    ];
    for (args, want) in cases {
        let mut full = vec!["--config", &cfg, "capture"];
        full.extend(&args);
        let out = as_user(fwctl(&full));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        // One line (clap adds a "try --help" line to its own errors).
        let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(lines <= 2, "{args:?}: {err}");
    }
    // A bad [capture] section is a config error with the fix.
    let bad = write_config(dir.path(), "profile = \"paranoid\"");
    let out = replay(&bad, junk.to_str().unwrap(), &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aggressive, standard, lenient or custom")
    );
}

/// A replay leaves even a corrupt state file alone.
#[test]
fn a_corrupt_state_file_is_left_alone_by_a_replay() {
    let dir = tmp();
    let cfg = write_config(dir.path(), "");
    let state = dir.path().join("state.json");
    std::fs::write(
        &state,
        "{\"version\": 1, \"bans\": [ {\"addr\": \"nonsense\"",
    )
    .unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let pcap = dir.path().join("mixed.pcap");
    write_pcap(&pcap, &mixed_capture());
    let out = replay(
        &cfg,
        pcap.to_str().unwrap(),
        &["--json", "--state", state.to_str().unwrap()],
    );
    let evs = events(&out);
    assert_eq!(of(&evs, "ip_blocked").len(), 3);
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "{\"version\": 1, \"bans\": [ {\"addr\": \"nonsense\""
    );
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("corrupt")));
}

/// The sample shipped for newcomers (README): rules/sample-scan.pcap, made by
/// `cargo run --release --example pcapgen -- --packets 1500 --scanners 3 --seed 7 --out rules/sample-scan.pcap`.
#[test]
fn the_shipped_sample_pcap_shows_its_three_scanners() {
    let evs = events(&replay(
        "rules/fwctl.toml",
        "rules/sample-scan.pcap",
        &["--json"],
    ));
    let banned: Vec<&str> = of(&evs, "ip_blocked")
        .iter()
        .map(|e| e["src"].as_str().unwrap())
        .collect();
    assert_eq!(banned, vec!["203.0.113.1", "203.0.113.2", "203.0.113.3"]);
    assert_eq!(of(&evs, "capture_stats")[0]["frames"], 1500);
}
