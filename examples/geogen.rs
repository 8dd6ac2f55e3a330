//! Write a large country database (MaxMind DB format) for the geo
//! benchmark, with the writer the tests use (a dev-dependency):
//!   geogen --out big.mmdb --shape spread|one --networks 600000
//! Documentation addresses only: the networks are IPv6 /64s under
//! 2001:db8::/32 (there is not room for many IPv4 networks in the three
//! documentation /24s, which get /32s: 768 of them). `spread`: countries
//! AA, AB, ... ZZ in turn, so no two neighbours share one (about a
//! GeoLite2-Country's size, nothing merges); `one`: AA and AB alternating
//! (AA's set gets half of them).

use mmdb_writer::Writer;
use serde::Serialize;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Serialize)]
struct Iso {
    iso_code: String,
}
#[derive(Serialize)]
struct Rec {
    country: Iso,
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn code(i: usize) -> String {
    let i = i % (26 * 26);
    format!(
        "{}{}",
        (b'A' + (i / 26) as u8) as char,
        (b'A' + (i % 26) as u8) as char
    )
}

fn main() {
    let out = arg("--out", "big.mmdb");
    let shape = arg("--shape", "spread");
    let n: usize = arg("--networks", "600000").parse().expect("--networks N");
    let mut w = Writer::new("GeoLite2-Country");
    let mut put = |net: ipnet::IpNet, c: String| {
        w.insert(
            net,
            &Rec {
                country: Iso { iso_code: c },
            },
        )
        .expect("insert");
    };
    let v4: Vec<Ipv4Addr> = ["192.0.2.0", "198.51.100.0", "203.0.113.0"]
        .iter()
        .flat_map(|b| {
            let b = u32::from(b.parse::<Ipv4Addr>().expect("addr"));
            (0..256).map(move |k| Ipv4Addr::from(b + k))
        })
        .collect();
    for (i, a) in v4.iter().enumerate() {
        let net = ipnet::IpNet::V4(ipnet::Ipv4Net::new(*a, 32).expect("/32"));
        put(net, code(if shape == "one" { i % 2 } else { i }));
    }
    for i in 0..n {
        let a = Ipv6Addr::from((0x2001_0db8u128 << 96) | ((i as u128) << 64));
        let net = ipnet::IpNet::V6(ipnet::Ipv6Net::new(a, 64).expect("/64"));
        put(net, code(if shape == "one" { i % 2 } else { i }));
    }
    std::fs::write(&out, w.to_bytes().expect("bytes")).expect("write");
}
