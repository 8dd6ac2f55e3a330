//! `[geo]` without root: a country database the test writes (documentation
//! addresses) renders into the geo sets and rules of both backends, a
//! corrupt or missing one is a one-line error, and `why` names the country
//! and AS of an address. When the suite runs as root (CI), the commands run
//! as `nobody`, so that nothing reads this host's kernel.

#[path = "common/geodb.rs"]
mod geodb;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        // nobody reads the config and the databases.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        geodb::country_db(&root.join("country.mmdb"), &[]);
        geodb::asn_db(&root.join("asn.mmdb"));
        Setup { _dir: dir, root }
    }

    fn config(&self, extra: &str) -> PathBuf {
        let p = self.root.join("fwctl.toml");
        std::fs::write(
            &p,
            format!(
                "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\nblock_countries = [\"NL\"]\n\n\
                 [[service]]\nname = \"ssh\"\nport = 22\n\n\
                 [[service]]\nname = \"web\"\nport = 443\nallow_countries = [\"DE\"]\n{extra}",
                self.root.join("country.mmdb").display(),
                self.root.join("asn.mmdb").display()
            ),
        )
        .unwrap();
        p
    }

    fn run(&self, config: &Path, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
        c.arg("--config")
            .arg(config)
            .arg("--state")
            .arg(self.root.join("state.json"))
            .args(args)
            .env_remove("FWCTL_CONFIG")
            .env_remove("FWCTL_STATE")
            .env("FWCTL_RUN_DIR", self.root.join("run"));
        if unsafe { libc::geteuid() } == 0 {
            c.uid(65534).gid(65534);
        }
        c.output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The name ipset restore gives the temporary copy of `set`.
fn temp_of(dry: &str, set: &str) -> String {
    let line = dry
        .lines()
        .find(|l| l.starts_with("swap ") && l.ends_with(&format!(" {set}")))
        .unwrap_or_else(|| panic!("no swap into {set}:\n{dry}"));
    line.split(' ').nth(1).unwrap().to_string()
}

#[test]
fn a_generated_database_renders_the_countries_sets_and_rules() {
    let s = Setup::new();
    let cfg = s.config("");
    let out = s.run(&cfg, &["apply", "--dry-run"]);
    let (dry, err) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{err}");
    // The two adjacent /25s are one member; each family its own set.
    let nl = temp_of(&dry, "geo-NL");
    assert!(
        dry.contains(&format!("add {nl} 198.51.100.0/24\n")),
        "{dry}"
    );
    assert!(!dry.contains("198.51.100.128"), "{dry}");
    let nl6 = temp_of(&dry, "geo-NL_v6");
    assert!(
        dry.contains(&format!("add {nl6} 2001:db8:1::/48\n")),
        "{dry}"
    );
    let de = temp_of(&dry, "geo-DE");
    assert!(dry.contains(&format!("add {de} 203.0.113.0/24\n")), "{dry}");
    assert!(
        dry.contains("create geo-NL hash:net family inet ")
            && dry.contains("create geo-DE_v6 hash:net family inet6 "),
        "{dry}"
    );
    // Blocked: logged and dropped in the raw table, before any service.
    assert!(
        dry.contains("-A FWCTL-RAW -m set --match-set geo-NL src -m hashlimit")
            && dry.contains("-j LOG --log-prefix \"IPTABLES-BLOCKED: \"")
            && dry.contains("-A FWCTL-RAW -m set --match-set geo-NL src -j DROP\n")
            && dry.contains("-A FWCTL-RAW -m set --match-set geo-NL_v6 src -j DROP\n"),
        "{dry}"
    );
    // The web service only for DE; ssh for anyone.
    assert!(
        dry.contains("-A FWCTL-INPUT -p tcp -m tcp --dport 443 -m set --match-set geo-DE src -j FWCTL-ALLOW\n")
            && dry.contains("-A FWCTL-INPUT -p tcp -m tcp --dport 443 -m set --match-set geo-DE_v6 src -j FWCTL-ALLOW\n")
            && !dry.contains("--dport 443 -j FWCTL-ALLOW"),
        "{dry}"
    );
    assert!(dry.contains("--dport 22 -j FWCTL-ALLOW\n"), "{dry}");
    // Size and time said.
    assert!(
        err.contains("fwctl: geo: read ") && err.contains(" ms"),
        "{err}"
    );
    assert!(
        err.contains("fwctl: geo-NL: 2 networks (IPv4 1, IPv6 1)")
            && err.contains("fwctl: geo-DE: 2 networks (IPv4 1, IPv6 1)"),
        "{err}"
    );
}

#[test]
fn the_nftables_backend_gets_interval_sets_of_the_same_networks() {
    let s = Setup::new();
    let cfg = s.config("\n[firewall]\nbackend = \"nftables\"\n");
    let out = s.run(&cfg, &["apply", "--dry-run"]);
    let dry = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        dry.contains("\tset geo-NL/net {\n\t\ttype ipv4_addr\n\t\tflags interval, timeout\n\t\tsize 262144\n\t\telements = { 198.51.100.0/24 }\n"),
        "{dry}"
    );
    assert!(dry.contains("elements = { 2001:db8:1::/48 }"), "{dry}");
    assert!(dry.contains("ip saddr @geo-NL/net "), "{dry}");
    assert!(dry.contains("tcp dport 443 ip saddr @geo-DE "), "{dry}");
}

#[test]
fn a_corrupt_or_missing_database_is_one_line_and_no_ruleset() {
    let s = Setup::new();
    let cfg = s.config("");
    let db = s.root.join("country.mmdb");
    // Cut short: the metadata marker is gone.
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&db, &bytes[..bytes.len() / 2]).unwrap();
    for (what, want) in [("corrupt", "not a MaxMind DB"), ("missing", "No such file")] {
        if what == "missing" {
            std::fs::remove_file(&db).unwrap();
        }
        let out = s.run(&cfg, &["apply", "--dry-run"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what}: {}", text(&out.stdout));
        assert!(out.stdout.is_empty(), "{what}: nothing rendered");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(
            err.starts_with("fwctl: error: [geo] country_db ")
                && err.contains(db.to_str().unwrap())
                && err.contains(want)
                && err.contains("; fix: "),
            "{what}: {err}"
        );
    }
}

#[test]
fn an_unreadable_database_falls_back_on_the_last_good_networks_kept() {
    let s = Setup::new();
    let cfg = s.config("");
    // What an earlier apply kept (geo/ beside the state file; 0755 so
    // that nobody, whom the commands run as under root, reads it).
    let store = s.root.join("geo");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (c, list) in [
        ("NL", "198.51.100.0/24\n2001:db8:1::/48\n"),
        ("DE", "203.0.113.0/24\n"),
    ] {
        std::fs::write(store.join(format!("{c}.list")), list).unwrap();
        std::fs::write(
            store.join(format!("{c}.json")),
            "{\"fetched\": 1796637600, \"ok_at\": 1796637600, \"entries\": 2}",
        )
        .unwrap();
    }
    std::fs::write(s.root.join("country.mmdb"), b"not a database").unwrap();
    let out = s.run(&cfg, &["apply", "--dry-run"]);
    let (dry, err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{err}");
    let nl = temp_of(&dry, "geo-NL");
    assert!(
        dry.contains(&format!("add {nl} 198.51.100.0/24\n")),
        "{dry}"
    );
    assert!(
        err.contains("[geo] country_db ")
            && err.contains("not a MaxMind DB")
            && err.contains(
                "applying the last good networks of its countries (read 2026-12-07T10:00:00Z)"
            ),
        "{err}"
    );
    // A country with nothing kept: refused, nothing rendered.
    std::fs::remove_file(store.join("DE.json")).unwrap();
    let out = s.run(&cfg, &["apply", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_country_codes_are_refused_with_the_fix() {
    let s = Setup::new();
    for (extra, want) in [
        (
            "[[service]]\nname = \"x\"\nport = 8080\nallow_countries = [\"nl\"]\n",
            "\"nl\" is not a country code",
        ),
        (
            "[[service]]\nname = \"x\"\nport = 8080\nallow_countries = [\"NL\"]\n",
            "NL is in [geo] block_countries",
        ),
        (
            "[[service]]\nname = \"x\"\nport = 8080\nallow_countries = [\"D;E\"]\n",
            "is not a country code",
        ),
    ] {
        let cfg = s.config(extra);
        let out = s.run(&cfg, &["apply", "--dry-run"]);
        let err = text(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(want) && err.contains("fix: "), "{err}");
    }
}

#[test]
fn why_names_the_country_and_as_of_an_address() {
    let s = Setup::new();
    let cfg = s.config("");
    let out = s.run(&cfg, &["why", "203.0.113.7"]);
    let t = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(t.contains("  country: DE, AS64500 Example Net\n"), "{t}");
    let out = s.run(&cfg, &["why", "198.51.100.7", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["geo"]["country"], "NL");
    assert_eq!(v["geo"]["asn"], 64501);
    // The database's quotes and newline do not reach the reader.
    assert_eq!(v["geo"]["as_org"], "Voorbeeld BV");
    let out = s.run(&cfg, &["why", "192.0.2.1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["geo"], serde_json::json!({}), "in neither database");
}

#[test]
fn doctor_says_whether_the_databases_open() {
    let s = Setup::new();
    let cfg = s.config("");
    let row = |out: &Output| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
        v["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .find(|c| c["name"] == "geo")
            .unwrap_or_else(|| panic!("no geo row: {v}"))
            .clone()
    };
    let r = row(&s.run(&cfg, &["doctor", "--json"]));
    assert_eq!(r["level"], "ok", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("asn.mmdb"), "{r}");
    std::fs::write(s.root.join("asn.mmdb"), b"junk").unwrap();
    let r = row(&s.run(&cfg, &["doctor", "--json"]));
    assert_eq!(r["level"], "fail", "{r}");
    assert!(
        r["detail"].as_str().unwrap().contains("[geo] asn_db ")
            && r["fix"]
                .as_str()
                .unwrap()
                .contains("download the database again"),
        "{r}"
    );
}

#[test]
fn capture_events_name_the_country_and_as_of_their_address() {
    let s = Setup::new();
    let cfg = s.config("");
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/sample-scan.pcap");
    let pcap = pcap.to_str().unwrap();
    let out = s.run(&cfg, &["capture", "--pcap", pcap, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let blocked = events
        .iter()
        .find(|v| v["event"] == "ip_blocked" && v["src"] == "203.0.113.1")
        .expect("the sample's scanner is banned");
    assert_eq!(
        blocked["geo"],
        serde_json::json!({"country": "DE", "asn": 64500, "as_org": "Example Net"})
    );
    // The event's own fields come first, as without [geo].
    let line = text(&out.stdout)
        .lines()
        .find(|l| l.contains("\"ip_blocked\"") && l.contains("203.0.113.1"))
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("{\"event\":\"ip_blocked\",\"time\":"),
        "{line}"
    );
    assert!(events
        .iter()
        .filter(|v| v["event"] == "distributed_scan")
        .all(|v| v.get("geo").is_none()));
    let human = text(&s.run(&cfg, &["capture", "--pcap", pcap]).stdout);
    assert!(
        human
            .lines()
            .any(|l| l.contains(" ip_blocked 203.0.113.1 ")
                && l.ends_with(" [DE, AS64500 Example Net]")),
        "{human}"
    );
}

#[test]
fn a_country_over_maxelem_is_one_line_naming_the_set_and_the_fix() {
    let s = Setup::new();
    // 1100 NL /64s between 1100 DE ones: nothing merges (DE, with its
    // /48, is the first set over).
    let nets: Vec<(String, &str)> = (0..2200u32)
        .map(|i| {
            (
                format!("2001:db8:1:{:x}::/64", i),
                if i % 2 == 0 { "NL" } else { "DE" },
            )
        })
        .collect();
    let extra: Vec<(&str, &str)> = nets.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    geodb::country_db(&s.root.join("country.mmdb"), &extra);
    let cfg = s.config("\n[sets]\nmaxelem = 1024\n");
    let out = s.run(&cfg, &["apply", "--dry-run"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "geo-DE_v6 would get 1101 members, over [sets] maxelem 1024; fix: raise [sets] maxelem"
        ),
        "{err}"
    );
}
