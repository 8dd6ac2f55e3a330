//! Small country and ASN databases in the MaxMind DB format, written by the
//! geo tests themselves (the mmdb-writer crate, a dev-dependency): only
//! documentation addresses, never a download.

use mmdb_writer::Writer;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct Iso<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct CountryRecord<'a> {
    country: Iso<'a>,
}

#[derive(Serialize)]
struct AsnRecord<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

/// The country database's networks.
pub const COUNTRIES: [(&str, &str); 5] = [
    ("198.51.100.0/25", "NL"),
    ("198.51.100.128/25", "NL"),
    ("2001:db8:1::/48", "NL"),
    ("203.0.113.0/24", "DE"),
    ("2001:db8:2::/48", "DE"),
];

/// The ASN database's networks: (network, number, organisation).
pub const ASNS: [(&str, u32, &str); 2] = [
    ("203.0.113.0/24", 64500, "Example Net"),
    ("198.51.100.0/24", 64501, "Voorbeeld \"BV\"\n"),
];

fn write(path: &Path, w: &Writer) {
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

/// Write the country database (`extra`: more networks, for other tests).
pub fn country_db(path: &Path, extra: &[(&str, &str)]) {
    let mut w = Writer::new("GeoLite2-Country");
    for (net, iso) in COUNTRIES.iter().chain(extra) {
        w.insert(
            net.parse::<ipnet::IpNet>().unwrap(),
            &CountryRecord {
                country: Iso { iso_code: iso },
            },
        )
        .unwrap();
    }
    write(path, &w);
}

pub fn asn_db(path: &Path) {
    let mut w = Writer::new("GeoLite2-ASN");
    for (net, n, org) in ASNS {
        w.insert(
            net.parse::<ipnet::IpNet>().unwrap(),
            &AsnRecord {
                autonomous_system_number: n,
                autonomous_system_organization: org,
            },
        )
        .unwrap();
    }
    write(path, &w);
}
