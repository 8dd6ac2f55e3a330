//! Write a large pcap for the capture replay benchmark:
//!   pcapgen --packets 10000000 --out big.pcap [--scanners 20] [--seed 1]
//! The mix, at 200 000 packets per second of capture time: 60 % SYNs from
//! spoofed random sources to one port (a --rand-source flood), 25 % a benign
//! population (512 clients on ports 22/80/443, with the SYN-ACK replies),
//! 10 % established traffic (ACK), 5 % UDP, and `--scanners` SYN scanners of
//! 10 ports each spread over the file. Prints the scanners' addresses.

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
                pkt::tcp(src, target, (r >> 8) as u16, 81, pkt::SYN, None)
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
                if r & 1 == 0 {
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
