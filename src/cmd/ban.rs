//! `fwctl ban`: an admin's hand on the ban sets. Every check that can refuse
//! (address, set, the never-ban policy, duration) runs on the config alone,
//! before root and the kernel; then one batch of the set store changes the set
//! and the state file records it, so the boot-time apply puts a ban back with
//! the time it has left.

use super::run::{Needs, NotRoot, Run};
use super::Invocation;
use crate::core::ban::{self as target, check_ban_sets};
use crate::core::notify::{Notice, Origin};
use crate::core::policy::{Members, Policy, Refusal};
use crate::ports::SetOp;
use crate::sys::{host, statefile};
use crate::units::addr::{member, parse_addr};
use crate::units::duration::{human, parse_timeout};
use crate::units::time::utc;
use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;
use std::path::Path;

/// A ban without --for lasts a day; a permanent one belongs in the config.
pub const DEFAULT_FOR: &str = "1d";

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  fwctl ban 203.0.113.5
  fwctl ban 2001:db8:bad::/64 --for 7d
  fwctl ban 203.0.113.5 --set throttle-hard --for 2h")]
pub struct BanOptions {
    /// The address or network to ban (IPv4 or IPv6; a network only into blacklist).
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The set: blacklist, throttle-hard or throttle-soft (or a kernel set
    /// name of the config's [sets]); the IPv6 twin is picked for IPv6.
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// How long the ban lasts (1s to 49 days). For a permanent ban, add the
    /// address to the config's [blacklist] instead.
    #[arg(long = "for", value_name = "DURATION", default_value = DEFAULT_FOR, value_parser = parse_timeout)]
    pub duration: u64,
    /// A note kept with the ban for `fwctl why` (at most 200 bytes; e.g. a
    /// ticket number).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// Why a manual ban of `addr` is refused, said for the admin who typed it.
pub fn refusal_text(r: &Refusal, addr: &IpNet, config: &Path) -> String {
    let shown = member(addr);
    match r {
        Refusal::Special(why) => format!("{shown} is never banned ({why})"),
        Refusal::Trusted(t) => format!(
            "{shown} is whitelisted (trusted network {t} in {}); fix: remove it from [trusted] first if it really must be banned",
            config.display()
        ),
        Refusal::Own { addr: a, .. } => format!(
            "{shown} covers {a}, this host's own address; banning it would cut the host off from itself"
        ),
        Refusal::Whitelisted { set } => format!(
            "{shown} is in the {set} set (whitelisted); fix: take it out of the whitelist first"
        ),
    }
}

pub fn ban(o: &BanOptions, inv: &Invocation) -> Result<()> {
    if o.reason.as_ref().is_some_and(|r| r.len() > 200) {
        bail!(
            "--reason is longer than 200 bytes; fix: keep the note short (a ticket number, a word)"
        );
    }
    let (cfg, plan) = inv.load_plan()?;
    let addr = parse_addr(&o.addr)?;
    let set = target::ban_set(&cfg, &plan, o.set.as_deref(), &addr)?;
    let mut policy = Policy {
        trusted: cfg.trusted.clone(),
        own: host::own_addresses(),
        whitelist_name: cfg.sets.whitelist.for_family(addr.addr().is_ipv6()),
        ..Policy::default()
    };
    if let Some(why) = policy.check(&addr) {
        bail!("refusing to ban: {}", refusal_text(&why, &addr, &cfg.path));
    }
    let does = "reads and changes the kernel's ipsets and must run as root";
    let root = NotRoot("ban", does, "sudo fwctl ban ...".into());
    let needs = Needs::SETS | Needs::LOCK | Needs::NOTIFY | Needs::FLEET;
    let mut run = Run::start(&cfg, inv, Some(root), needs)?;
    let sys = run.sets();
    let role = target::role_of(&cfg, &set)
        .map(|r| r.0)
        .unwrap_or("blacklist");
    let twins = target::sets_named(&cfg, role)?;
    let headers = sys.heads()?;
    check_ban_sets(
        &[twins[0].clone(), twins[1].clone()],
        &headers,
        &inv.fix("apply"),
        "",
    )?;
    // The kernel's whitelist, which an admin may have filled by hand.
    if headers.contains_key(&policy.whitelist_name) {
        policy.whitelist = Members::of(&sys.members(&policy.whitelist_name)?);
        if let Some(why) = policy.check(&addr) {
            bail!("refusing to ban: {}", refusal_text(&why, &addr, &cfg.path));
        }
    }
    let shown = member(&addr);
    // The option's parser keeps --for within ipset's longest timeout.
    let timeout = u32::try_from(o.duration).unwrap_or(u32::MAX);
    sys.change(&[SetOp::Add {
        set: set.clone(),
        net: addr,
        timeout: Some(timeout),
    }])
    .map_err(|e| anyhow!("adding {shown} to {set}: {e}"))?;
    let now = host::now();
    let (offence, n) = match statefile::update(&run.state_file, now, |st| {
        let (n, _) = st.history.next_ban(&addr, now, &[o.duration]);
        st.history.record(addr, &set, n, now, o.duration);
        // Who typed it: sudo's user when there is one.
        let by = std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty() && u.len() <= 64)
            .map_or_else(|| "by hand".to_string(), |u| format!("by hand, by {u}"));
        let mut evidence = vec![format!(
            "fwctl ban {} --for {}",
            member(&addr),
            human(o.duration)
        )];
        evidence.extend(o.reason.as_ref().map(|r| format!("reason: {r}")));
        let why = crate::core::history::Why {
            origin: "manual".into(),
            rule: by,
            hits: 0,
            window_s: 0,
            first: now,
            last: now,
            evidence,
        };
        st.history.explain(&addr, why, cfg.evidence);
        n
    }) {
        Ok((n, warning)) => {
            if let Some(w) = warning {
                eprintln!("fwctl: warning: {w}");
            }
            (format!("offence {n}"), n)
        }
        Err(e) => {
            eprintln!("fwctl: warning: the ban is in the kernel but not in the state file ({e}); it will not be restored after a reboot");
            ("not recorded".into(), 1)
        }
    };
    if let Some(p) = &run.publisher {
        p.share(vec![p.member().entry(
            crate::core::fleet::Op::Ban,
            addr,
            role,
            o.duration,
            "banned by hand (fwctl ban)",
            n,
            "manual",
        )]);
    }
    run.tell(Notice::IpBlocked {
        address: shown.clone(),
        set: set.clone(),
        reason: "banned by hand (fwctl ban)".into(),
        offence: n,
        duration_s: o.duration,
        until: utc(now + o.duration as i64),
        origin: Origin::Manual,
    });
    run.finish();
    super::out(format!(
        "fwctl: banned {shown} in {set} for {} (until {}; {offence})\n",
        human(o.duration),
        utc(now + o.duration as i64)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;

    #[test]
    fn trusted_own_and_special_addresses_are_never_banned() {
        let c = Config::parse(
            "[trusted]\nnetworks = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]\n",
            Path::new("/etc/fwctl/fwctl.toml"),
            &|_| Ok(String::new()),
        )
        .unwrap();
        let policy = Policy {
            trusted: c.trusted.clone(),
            own: vec!["198.51.100.1".parse().unwrap()],
            ..Policy::default()
        };
        let why = |s: &str| {
            let net = parse_addr(s).unwrap();
            policy.check(&net).map(|r| refusal_text(&r, &net, &c.path))
        };
        assert!(why("192.0.2.7").unwrap().contains("whitelisted"));
        assert!(why("2001:db8:1:2::9").unwrap().contains("whitelisted"));
        assert!(
            why("192.0.0.0/16").unwrap().contains("whitelisted"),
            "covers a trusted network"
        );
        assert!(why("198.51.100.1").unwrap().contains("own address"));
        assert!(why("198.51.100.0/24").unwrap().contains("own address"));
        assert!(why("127.0.0.1").unwrap().contains("loopback"));
        assert!(why("224.0.0.1").unwrap().contains("unicast"));
        assert_eq!(why("203.0.113.5"), None);
    }
}
