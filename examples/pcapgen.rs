//! Write a large pcap for the capture replay benchmark:
//!   pcapgen --packets 10000000 --out big.pcap [--scanners 20] [--seed 1] [--requests] [--flood-port 81]
//! The mix, at 200 000 packets per second of capture time: 60 % SYNs from
//! spoofed random sources to one port (a --rand-source flood), 25 % a benign
//! population (512 clients on ports 22/80/443, with the SYN-ACK replies),
//! 10 % established traffic (ACK), 5 % UDP, and `--scanners` SYN scanners of
//! 10 ports each spread over the file. Prints the scanners' addresses. With
//! --requests the benign population instead opens connections to port 80: our
//! SYN-ACK, then an HTTP request as the first data segment (1 % with UNION SELECT).

#[path = "../tests/common/pkt.rs"]
mod pkt;

use fwctl::testing::loggen::Rng;
use std::io::BufWriter;
use std::net::{IpAddr, Ipv4Addr};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let packets: u64 = arg("--packets", "10000000").parse().expect("--packets N");
    let scanners: u64 = arg("--scanners", "20").parse().expect("--scanners N");
    let out = arg("--out", "capture.pcap");
    // --requests: the benign clients open real connections to port 80 (our
    // SYN-ACK, then their first data segment: an HTTP request, one in a
    // hundred with UNION SELECT in it), for the payload-signature bench.
    let requests = std::env::args().any(|a| a == "--requests");
    // --flood-port: where the spoofed SYN flood goes (81, no service, by default).
    let flood_port: u16 = arg("--flood-port", "81").parse().expect("--flood-port N");
    let mut pending: Option<(IpAddr, u16)> = None;
    let mut rng = Rng(arg("--seed", "1").parse::<u64>().expect("--seed N") | 1);
    let target = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let file = std::fs::File::create(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
    let mut w = pkt::Pcap::new(BufWriter::with_capacity(1 << 20, file));
    let t0: u64 = 1_763_726_400_000_000;
    let every = (packets / (scanners * 10 + 1)).max(1);
    let mut scan_step = 0u64;
    let mut scanner_addrs = Vec::new();
    for i in 0..packets {
        let t = t0 + i * 5; // 200 000 packets per second
        let r = rng.next();
        if scanners > 0 && i % every == every / 2 && scan_step < scanners * 10 {
            let s = scan_step / 10;
            let src = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + s as u8));
            if scan_step.is_multiple_of(10) {
                scanner_addrs.push(src);
            }
            let port = 1000 + (scan_step % 10) as u16;
            w.packet(t, &pkt::tcp(src, target, 40000, port, pkt::SYN, None));
            scan_step += 1;
            continue;
        }
        let frame = match r % 100 {
            0..=59 => {
                let src = IpAddr::V4(Ipv4Addr::from((r >> 32) as u32));
                pkt::tcp(src, target, (r >> 8) as u16, flood_port, pkt::SYN, None)
            }
            60..=84 => {
                // 512 benign clients in two documentation networks.
                let n = ((r >> 20) % 512) as u8;
                let client = if (r >> 30) & 1 == 0 {
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
                } else {
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
                };
                let port = [22, 80, 443][((r >> 40) % 3) as usize];
                if requests {
                    match pending.take() {
                        None => {
                            let cport = (r >> 8) as u16 | 1024;
                            pending = Some((client, cport));
                            pkt::tcp_data(
                                target,
                                client,
                                (80, cport),
                                pkt::SYN_ACK,
                                None,
                                (7000, 5001),
                                b"",
                            )
                        }
                        Some((client, cport)) => {
                            let psh = pkt::Flags {
                                ack: true,
                                psh: true,
                                ..pkt::NULL
                            };
                            let path = if (r >> 24).is_multiple_of(100) {
                                "/item?id=1%20UNION SELECT password FROM users"
                            } else {
                                "/static/css/site.css?v=20261202"
                            };
                            let req = format!("GET {path} HTTP/1.1\r\nHost: www.example.net\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/css,*/*;q=0.1\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\r\n");
                            pkt::tcp_data(
                                client,
                                target,
                                (cport, 80),
                                psh,
                                None,
                                (5001, 7001),
                                req.as_bytes(),
                            )
                        }
                    }
                } else if r & 1 == 0 {
                    pkt::tcp(client, target, (r >> 8) as u16 | 1024, port, pkt::SYN, None)
                } else {
                    pkt::tcp(
                        target,
                        client,
                        port,
                        (r >> 8) as u16 | 1024,
                        pkt::SYN_ACK,
                        None,
                    )
                }
            }
            85..=94 => {
                let ack = pkt::Flags {
                    ack: true,
                    ..pkt::NULL
                };
                pkt::tcp(
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
                    target,
                    50000,
                    443,
                    ack,
                    None,
                )
            }
            _ => {
                let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20 + (r >> 50) as u8 % 50));
                pkt::udp(src, target, 50000 + (r >> 8) as u16 % 1000, 53)
            }
        };
        w.packet(t, &frame);
    }
    w.finish();
    for a in scanner_addrs {
        println!("scanner {a}");
    }
}
