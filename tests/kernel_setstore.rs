//! The set-store port's contract, against the real kernel (root, in a
//! namespace the test makes and deletes): the ipset store and the nftables
//! store go through the same sequence and must answer the same way. Adding a
//! member that is there refreshes it, deleting one that is not there is no
//! error, members come back with their time left, IPv6 goes into the _v6 set.

mod common;
use common::*;
use fwctl::core::ruleset::{self, Current};
use fwctl::ports::{Member, SetOp, SetStore};
use fwctl::units::addr::Family;
use ipnet::IpNet;

fn net(s: &str) -> IpNet {
    fwctl::units::addr::parse_addr(s).unwrap()
}

fn add(set: &str, n: &str, secs: u32) -> SetOp {
    SetOp::Add {
        set: set.into(),
        net: net(n),
        timeout: Some(secs),
    }
}

fn del(set: &str, n: &str) -> SetOp {
    SetOp::Del {
        set: set.into(),
        net: net(n),
    }
}

fn find(members: &[Member], n: &str) -> Option<Member> {
    members.iter().find(|m| m.net == net(n)).copied()
}

/// The contract, run on a thread inside the namespace. `store` names the
/// store in failure messages.
fn contract(store: &str, s: &mut dyn SetStore) {
    let heads = s.heads().unwrap();
    let bl = &heads["blacklist"];
    assert!(bl.timeout, "{store}: {bl:?}");
    assert_eq!(bl.family, Family::V4, "{store}");
    assert_eq!(heads["blacklist_v6"].family, Family::V6, "{store}");
    assert!(bl.holds.takes_addresses(), "{store}: {bl:?}");

    s.change(&[add("blacklist", "203.0.113.5", 300)]).unwrap();
    // Again, shorter: no error, and the member's time is the new one.
    s.change(&[add("blacklist", "203.0.113.5", 200)])
        .unwrap_or_else(|e| panic!("{store}: adding a member that is there: {e}"));
    let m = s.members("blacklist").unwrap();
    let left = find(&m, "203.0.113.5")
        .unwrap_or_else(|| panic!("{store}: {m:?}"))
        .left
        .unwrap_or_else(|| panic!("{store}: a ban without its time left: {m:?}"));
    assert!(
        (1..=200).contains(&left),
        "{store}: refreshed to 200 s, {left} left"
    );
    assert!(s.heads().unwrap()["blacklist"].entries >= 1, "{store}");

    s.change(&[del("blacklist", "203.0.113.5")]).unwrap();
    s.change(&[del("blacklist", "203.0.113.5")])
        .unwrap_or_else(|e| panic!("{store}: deleting a member not there: {e}"));
    let m = s.members("blacklist").unwrap();
    assert_eq!(find(&m, "203.0.113.5"), None, "{store}: {m:?}");

    // One batch across both families, a network among them; a delete of a
    // member not there does not spoil the rest.
    s.change(&[
        add("blacklist_v6", "2001:db8::5", 100),
        add("blacklist_v6", "2001:db8:bad::/48", 100),
        del("blacklist_v6", "2001:db8::99"),
        add("blacklist", "198.51.100.0/24", 100),
    ])
    .unwrap();
    let m6 = s.members("blacklist_v6").unwrap();
    for n in ["2001:db8::5", "2001:db8:bad::/48"] {
        let got = find(&m6, n).unwrap_or_else(|| panic!("{store}: {n} in {m6:?}"));
        assert!(got.left.is_some_and(|l| l <= 100), "{store}: {got:?}");
    }
    assert!(
        find(&s.members("blacklist").unwrap(), "198.51.100.0/24").is_some(),
        "{store}"
    );
    assert!(s.members("no-such-set").is_err(), "{store}");
    // A batch the kernel refuses in part is an error (nft: naming the set,
    // and all or nothing; ipset's restore is neither).
    let e = s
        .change(&[
            add("blacklist", "192.0.2.77", 100),
            add("no-such-set", "192.0.2.78", 100),
        ])
        .unwrap_err()
        .to_string();
    if store == "nft" {
        assert!(e.contains("no-such-set"), "{store}: {e}");
        assert_eq!(
            find(&s.members("blacklist").unwrap(), "192.0.2.77"),
            None,
            "{store}: a refused batch is all or nothing"
        );
    }
    // 3 000 members in one batch (many netlink messages in one transaction).
    let many: Vec<SetOp> = (0..3000u32)
        .map(|i| SetOp::Add {
            set: "blacklist_v6".into(),
            net: format!("2001:db8:77::{:x}/128", i + 1).parse().unwrap(),
            timeout: Some(100),
        })
        .collect();
    s.change(&many).unwrap();
    let held = s.members("blacklist_v6").unwrap();
    assert_eq!(
        held.iter()
            .filter(|m| m.net.to_string().starts_with("2001:db8:77::"))
            .count(),
        3000,
        "{store}"
    );
}

#[test]
#[ignore = "needs root: kernel test"]
fn the_ipset_store_keeps_the_contract() {
    let lab = Lab::new();
    for (name, family) in [("blacklist", "inet"), ("blacklist_v6", "inet6")] {
        lab.exec_ok(
            &lab.target,
            &[
                "ipset", "create", name, "hash:net", "family", family, "timeout", "0",
            ],
        );
    }
    in_ns(&lab.target, || {
        let mut sys = fwctl::sys::tools::System::locate_only(&["ipset"]).unwrap();
        contract("ipset", &mut sys);
    });
}

#[test]
#[ignore = "needs root: kernel test"]
fn the_nft_store_keeps_the_contract() {
    let lab = Lab::new();
    let (_dir, path) = config("");
    let cfg = fwctl::sys::configfile::load(&path).unwrap();
    let script = ruleset::nft::render_install(&ruleset::build(&cfg), &Current::default());
    exec_input_ok(&lab.target, &["nft", "-f", "-"], &script);
    in_ns(&lab.target, || {
        let mut nft = fwctl::sys::nft::Nft::locate().unwrap();
        contract("nft", &mut nft);
    });
}

/// Members come back over netlink (`sys::nftdump`) as nft put them in:
/// addresses (the role's hash set), networks (its interval set `/net`: one
/// touching the next, one reaching the top of the address space), with and
/// without a timeout, both families, read as one role; another table's
/// set is not read.
#[test]
#[ignore = "needs root: kernel test"]
fn nft_members_read_over_netlink_are_what_went_in() {
    let lab = Lab::new();
    let (_dir, path) = config("");
    let cfg = fwctl::sys::configfile::load(&path).unwrap();
    let script = ruleset::nft::render_install(&ruleset::build(&cfg), &Current::default());
    exec_input_ok(&lab.target, &["nft", "-f", "-"], &script);
    exec_input_ok(
        &lab.target,
        &["nft", "-f", "-"],
        "add element inet fwctl blacklist { 203.0.113.5 timeout 300s }\n\
         add element inet fwctl blacklist/net { 192.0.2.0/25, 192.0.2.128/25 timeout 60s, 255.255.255.0/24 }\n\
         add element inet fwctl blacklist_v6 { 2001:db8::5 }\n\
         add element inet fwctl blacklist_v6/net { 2001:db8:bad::/48 timeout 100s }\n\
         add table inet other\nadd set inet other s { type ipv4_addr; }\nadd element inet other s { 198.51.100.1 }\n",
    );
    in_ns(&lab.target, || {
        let mut nft = fwctl::sys::nft::Nft::locate().unwrap();
        let m = nft.members("blacklist").unwrap();
        let got: Vec<(String, bool)> = m
            .iter()
            .map(|m| (m.net.to_string(), m.left.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("192.0.2.0/25".to_string(), false),
                ("192.0.2.128/25".to_string(), true),
                ("203.0.113.5/32".to_string(), true),
                ("255.255.255.0/24".to_string(), false),
            ]
        );
        let left = find(&m, "203.0.113.5").unwrap().left.unwrap();
        assert!((295..=300).contains(&left), "{left} s left of 300");
        let m6 = nft.members("blacklist_v6").unwrap();
        let got: Vec<String> = m6.iter().map(|m| m.net.to_string()).collect();
        assert_eq!(got, ["2001:db8::5/128", "2001:db8:bad::/48"]);
        let heads = nft.heads().unwrap();
        assert_eq!(heads["blacklist"].entries, 4);
        assert_eq!(heads["blacklist"].holds, fwctl::ports::Holds::Networks);
        assert_eq!(heads["throttle-hard"].holds, fwctl::ports::Holds::Addresses);
        assert!(!heads.contains_key("blacklist/net"), "one role: {heads:?}");
        assert!(!heads.contains_key("s"), "another table's set: {heads:?}");
    });
}
