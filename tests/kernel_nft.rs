//! Kernel tests for the nftables pieces that exist so far (root, namespaces):
//! the rendered `table inet fwctl` loads in one transaction, drops and admits
//! real packets as the iptables ruleset does, and bans added over netlink
//! (capture's path) take effect at once, with their timeout.

mod common;
use common::*;
use fwctl::core::ruleset::{self, Current};
use fwctl::sys::configfile;
use fwctl::sys::nftlink::NftSets;

fn install(lab: &Lab, toml: &str) {
    let (_dir, path) = config(toml);
    let cfg = configfile::load(&path).unwrap();
    let script = ruleset::nft::render_install(&ruleset::build(&cfg), &Current::default());
    let out = exec_input(&lab.target, &["nft", "-f", "-"], &script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn elements(lab: &Lab, set: &str) -> String {
    lab.exec_ok(&lab.target, &["nft", "list", "set", "inet", "fwctl", set])
}

#[test]
#[ignore = "needs root: kernel test"]
fn the_nft_ruleset_admits_services_and_netlink_bans_drop_at_once() {
    let lab = Lab::new();
    install(&lab, "[[service]]\nname = \"ssh\"\nport = 22\n");
    let _l = lab.listen(&[22, 8080]);
    let (a4, a6) = src("attacker");
    assert_eq!(lab.reach(a4, 22), Reply::Connected);
    assert_eq!(lab.reach(a6, 22), Reply::Connected);
    assert_eq!(lab.reach(a4, 8080), Reply::Silent, "default drop");

    let added = in_ns(&lab.target, || {
        let mut sets = NftSets::open("fwctl").unwrap();
        let v4 = sets.add("blacklist", format!("{a4}/32").parse().unwrap(), 300);
        let v6 = sets.add("blacklist_v6", format!("{a6}/128").parse().unwrap(), 300);
        let again = sets.add("blacklist", format!("{a4}/32").parse().unwrap(), 300);
        let net = sets.add("blacklist", "192.0.2.0/24".parse().unwrap(), 60);
        let inside = sets.add("blacklist", "192.0.2.7/32".parse().unwrap(), 60);
        let missing = sets.add("no-such-set", "192.0.2.9/32".parse().unwrap(), 60);
        (v4, v6, again, net, inside, missing)
    });
    use fwctl::core::capture::engine::Added;
    assert_eq!(added.0, Ok(Added::Added));
    assert_eq!(added.1, Ok(Added::Added));
    assert_eq!(added.2, Ok(Added::AlreadyListed));
    assert_eq!(added.3, Ok(Added::Added));
    // An address inside a banned network: a ban of its own, in the set of
    // addresses (the network is in the interval set beside it).
    assert_eq!(added.4, Ok(Added::Added));
    let e = added.5.unwrap_err().0;
    assert!(e.contains("fwctl apply"), "{e}");

    // Read back as typed data, as the commands will read it.
    let sets = in_ns(&lab.target, || {
        fwctl::sys::nft::Nft::locate().unwrap().sets().unwrap()
    });
    let timed = |name: &str| -> Vec<String> {
        let set = sets.iter().find(|s| s.name == name).unwrap();
        let mut v: Vec<String> = set
            .members
            .iter()
            .filter(|(_, left)| left.is_some_and(|s| s > 0 && s <= 300))
            .map(|(n, _)| fwctl::units::addr::member(n))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        timed("blacklist"),
        ["192.0.2.7".to_string(), a4.to_string()]
    );
    assert_eq!(timed("blacklist/net"), ["192.0.2.0/24"]);
    let list = elements(&lab, "blacklist");
    assert!(list.contains(&format!("{a4} timeout 5m")), "{list}");
    assert!(elements(&lab, "blacklist/net").contains("192.0.2.0/24 timeout 1m"));
    assert!(elements(&lab, "blacklist_v6").contains(&format!("{a6} timeout 5m")));
    assert_eq!(lab.reach(a4, 22), Reply::Silent, "banned over netlink");
    assert_eq!(lab.reach(a6, 22), Reply::Silent);
    let (b4, _) = src("benign");
    assert_eq!(lab.reach(b4, 22), Reply::Connected, "others still get in");
}

fn fwctl_ok(lab: &Lab, cfg: &std::path::Path, args: &[&str]) -> String {
    let mut v = vec!["--config", cfg.to_str().unwrap()];
    v.extend_from_slice(args);
    let out = lab.fwctl(&v, &[]);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A role is two kernel sets on nftables: single addresses in a hash set
/// (`blacklist`), networks in an interval set beside it (`blacklist/net`).
/// An address and a network banned through the CLI each land in theirs,
/// are both dropped, listed as one role, kept by a re-apply (the sets are
/// not made again: same handles), and unbanned.
#[test]
#[ignore = "needs root: kernel test"]
fn an_address_and_a_network_go_through_the_split_sets() {
    let lab = Lab::new();
    let (_d, cfg) = config(
        "[[service]]\nname = \"ssh\"\nport = 22\n[blacklist]\nentries = [\"192.0.2.0/24\", \"192.0.2.9\"]\n\
         [firewall]\nbackend = \"nftables\"\n",
    );
    fwctl_ok(&lab, &cfg, &["apply"]);
    let _l = lab.listen(&[22]);
    let (a4, _) = src("attacker");
    let (b4, _) = src("benign");
    assert_eq!(lab.reach(a4, 22), Reply::Connected);
    assert_eq!(lab.reach(b4, 22), Reply::Connected);
    // The config's network and the address inside it: only the network.
    assert!(elements(&lab, "blacklist/net").contains("192.0.2.0/24"));
    assert!(!elements(&lab, "blacklist").contains("192.0.2.9"));

    fwctl_ok(&lab, &cfg, &["ban", &a4.to_string(), "--for", "10m"]);
    assert!(elements(&lab, "blacklist").contains(&format!("{a4} timeout 10m")));
    assert_eq!(lab.reach(a4, 22), Reply::Silent, "the address dropped");
    assert_eq!(lab.reach(b4, 22), Reply::Connected);
    // 198.51.100.10 (benign) is inside the /29.
    fwctl_ok(&lab, &cfg, &["ban", "198.51.100.8/29", "--for", "10m"]);
    let nets = elements(&lab, "blacklist/net");
    assert!(nets.contains("198.51.100.8/29 timeout 10m"), "{nets}");
    assert_eq!(lab.reach(b4, 22), Reply::Silent, "the network dropped");
    let listed = fwctl_ok(&lab, &cfg, &["list", "blacklist"]);
    for want in [
        a4.to_string(),
        "198.51.100.8/29".into(),
        "192.0.2.0/24".into(),
    ] {
        assert!(listed.contains(&want), "{want} not listed: {listed}");
    }
    assert!(!listed.contains("/net"), "one role: {listed}");

    // A re-apply keeps both sets (their handles) and both bans.
    let handles = || {
        lab.exec_ok(&lab.target, &["nft", "-a", "-t", "list", "sets", "inet"])
            .lines()
            .filter(|l| l.contains("set blacklist") && !l.contains("/loaded"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = handles();
    assert_eq!(before.len(), 4, "{before:?}");
    fwctl_ok(&lab, &cfg, &["apply"]);
    assert_eq!(handles(), before, "the sets were made again");
    assert_eq!(lab.reach(a4, 22), Reply::Silent);
    assert_eq!(lab.reach(b4, 22), Reply::Silent);

    fwctl_ok(&lab, &cfg, &["unban", &a4.to_string()]);
    fwctl_ok(&lab, &cfg, &["unban", "198.51.100.8/29"]);
    assert_eq!(lab.reach(a4, 22), Reply::Connected, "the address unbanned");
    assert_eq!(lab.reach(b4, 22), Reply::Connected, "the network unbanned");
    let listed = fwctl_ok(&lab, &cfg, &["list", "blacklist"]);
    assert!(!listed.contains(&a4.to_string()) && !listed.contains("198.51.100.8/29"));
    assert!(
        listed.contains("192.0.2.0/24"),
        "the config's stays: {listed}"
    );

    // Each set's marker names the config members apply loaded; an unban
    // deletes the marker of the set it took a member out of, so the next
    // apply reads that set and puts a config member back.
    let marker = |set: &str| {
        lab.exec(&lab.target, &["nft", "list", "set", "inet", "fwctl", set])
            .status
            .success()
    };
    assert!(!marker("blacklist/net/loaded"), "the unbans took it");
    fwctl_ok(&lab, &cfg, &["apply"]);
    assert!(marker("blacklist/net/loaded"));
    fwctl_ok(&lab, &cfg, &["unban", "192.0.2.0/24"]);
    assert!(!marker("blacklist/net/loaded"), "the unban took the marker");
    assert!(marker("blacklist_v6/loaded"), "another set's stays");
    fwctl_ok(&lab, &cfg, &["apply"]);
    assert!(marker("blacklist/net/loaded"));
    let listed = fwctl_ok(&lab, &cfg, &["list", "blacklist"]);
    assert!(listed.contains("192.0.2.0/24"), "back: {listed}");
}

/// `log prefix` writes what `-j LOG` writes: the lines rsyslog keeps and
/// `scan` reads are the same whichever backend runs.
#[test]
#[ignore = "needs root: kernel test"]
fn nft_log_lines_read_as_iptables_lines() {
    let lab = Lab::new();
    let tag = format!("NFT{}", std::process::id() % 100_000);
    let mut kmsg = Kmsg::open();
    install(
        &lab,
        &format!(
            "[[service]]\nname = \"ssh\"\nport = 22\n[logging.prefixes]\n\
             allowed = {{ v4 = \"{tag}-ALLOWED: \", v6 = \"{tag}6-ALLOWED: \" }}\n\
             blocked = {{ v4 = \"{tag}-BLOCKED: \", v6 = \"{tag}6-BLOCKED: \" }}\n"
        ),
    );
    let _l = lab.listen(&[22]);
    let (a4, a6) = src("attacker");
    assert_eq!(lab.reach(a4, 8080), Reply::Silent);
    assert_eq!(lab.reach(a6, 8081), Reply::Silent);
    assert_eq!(lab.reach(a4, 22), Reply::Connected);
    let lines = kmsg.wait_for(&tag, std::time::Duration::from_secs(5), |got| {
        got.len() >= 3
    });
    let find = |p: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} line in {lines:?}"))
    };
    let blocked = find(&format!("{tag}-BLOCKED: IN={} OUT= MAC=", lab.target_if));
    assert!(
        blocked.contains(&format!(" SRC={a4} DST={TARGET4} ")),
        "{blocked}"
    );
    assert!(
        blocked.contains(" PROTO=TCP ")
            && blocked.contains(" DPT=8080 ")
            && blocked.contains(" SYN ")
    );
    let b6 = find(&format!("{tag}6-BLOCKED: IN={} OUT= MAC=", lab.target_if));
    assert!(b6.contains(" DPT=8081 "), "{b6}");
    assert!(find(&format!("{tag}-ALLOWED: ")).contains(" DPT=22 "));
}

/// The bans' drops are in FWCTL-RAW, reached from the base chain
/// `prerouting` only: its jump deleted behind fwctl's back lets banned
/// sources in, and status says so (drift naming the jump); `status
/// --repair` puts it back and the ban drops again.
#[test]
#[ignore = "needs root: kernel test"]
fn the_prerouting_jump_deleted_is_drift_and_repaired() {
    let lab = Lab::new();
    let (_d, cfg) =
        config("[[service]]\nname = \"ssh\"\nport = 22\n[firewall]\nbackend = \"nftables\"\n");
    fwctl_ok(&lab, &cfg, &["apply"]);
    let _l = lab.listen(&[22]);
    let (a4, _) = src("attacker");
    fwctl_ok(&lab, &cfg, &["ban", &a4.to_string(), "--for", "10m"]);
    assert_eq!(lab.reach(a4, 22), Reply::Silent, "banned");
    fwctl_ok(&lab, &cfg, &["status"]);

    lab.nft_delete_rule("prerouting", "jump FWCTL-RAW");
    assert_eq!(
        lab.reach(a4, 22),
        Reply::Connected,
        "the ban no longer drops"
    );
    let out = lab.fwctl(&["--config", cfg.to_str().unwrap(), "status"], &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success()
            && said.contains("jump at PREROUTING 1")
            && said.contains("changed behind its back"),
        "status after the prerouting jump was deleted: {said}"
    );
    fwctl_ok(&lab, &cfg, &["status", "--repair"]);
    assert_eq!(
        lab.reach(a4, 22),
        Reply::Silent,
        "banned again after the repair"
    );
    fwctl_ok(&lab, &cfg, &["status"]);
}
