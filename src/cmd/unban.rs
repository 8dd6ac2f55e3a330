//! `fwctl unban`: take an address out of every ban set and end its ban in
//! the state file (its offence count stays, for progressive capture bans).

use super::run::{Needs, NotRoot, Run};
use super::Invocation;
use crate::core::ban as target;
use crate::core::notify::{Notice, Origin};
use crate::ports::SetOp;
use crate::sys::{host, statefile};
use crate::units::addr::{member, parse_addr};
use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;

#[derive(clap::Args, Debug, Clone)]
pub struct UnbanOptions {
    /// The address or network to take out of every ban set (as it was banned).
    #[arg(value_name = "ADDR")]
    pub addr: String,
}

pub fn unban(o: &UnbanOptions, inv: &Invocation) -> Result<()> {
    let cfg = inv.load()?;
    let addr = parse_addr(&o.addr)?;
    let does = "reads and changes the kernel's ipsets and must run as root";
    let root = NotRoot("unban", does, "sudo fwctl unban ...".into());
    let needs = Needs::SETS | Needs::LOCK | Needs::NOTIFY | Needs::FLEET;
    let mut run = Run::start(&cfg, inv, Some(root), needs)?;
    let state_file = run.state_file.clone();
    let sys = run.sets();
    let v6 = matches!(addr, IpNet::V6(_));
    let headers = sys.heads()?;
    let shown = member(&addr);
    // An aggregate ban's members left in a set (a gathering cut short) go
    // with it: their bans were ended when it was made.
    let members: Vec<IpNet> = statefile::read(&state_file)
        .ok()
        .and_then(|l| l.state.history.get(&addr).map(|r| r.members.clone()))
        .unwrap_or_default();
    let mut ops = Vec::new();
    let mut found = Vec::new();
    let mut inside = Vec::new();
    for role in target::BAN_ROLES {
        let set = target::sets_named(&cfg, role)?[usize::from(v6)].clone();
        if !headers.contains_key(&set) {
            continue;
        }
        for m in sys.members(&set)? {
            let net = m.net;
            if net == addr {
                ops.push(SetOp::Del {
                    set: set.clone(),
                    net,
                });
                found.push(set.clone());
            } else if members.contains(&net) {
                ops.push(SetOp::Del {
                    set: set.clone(),
                    net,
                });
            } else if net.contains(&addr) {
                inside.push(format!("{} in {set}", member(&net)));
            }
        }
    }
    if !ops.is_empty() {
        sys.change(&ops)
            .map_err(|e| anyhow!("removing {shown}: {e}"))?;
    }
    let now = host::now();
    let ended = match statefile::update(&run.state_file, now, |st| {
        for m in &members {
            st.history.end(m, now);
        }
        st.history.end(&addr, now)
    }) {
        Ok((ended, _)) => ended,
        Err(e) => {
            eprintln!("fwctl: warning: could not record the unban in the state file ({e}); a reboot may restore the ban");
            false
        }
    };
    if found.is_empty() && !ended {
        let hint = if inside.is_empty() {
            String::new()
        } else {
            format!(
                " (it is inside the banned {}; unban that instead)",
                inside.join(", ")
            )
        };
        bail!("{shown} is not banned in any of fwctl's ban sets{hint}; nothing changed");
    }
    if let Some(p) = &run.publisher {
        // The fleet lifts it in each role it was in here (every role, when
        // only the state file knew of it).
        let mut roles: Vec<&str> = found
            .iter()
            .filter_map(|s| target::role_of(&cfg, s).map(|r| r.0))
            .collect();
        if roles.is_empty() {
            roles = target::BAN_ROLES.to_vec();
        }
        roles.dedup();
        let entries = roles
            .into_iter()
            .map(|r| {
                p.member().entry(
                    crate::core::fleet::Op::Unban,
                    addr,
                    r,
                    0,
                    "unbanned by hand (fwctl unban)",
                    0,
                    "manual",
                )
            })
            .collect();
        p.share(entries);
    }
    run.tell(Notice::Unban {
        address: shown.clone(),
        sets: found.clone(),
        origin: Origin::Manual,
    });
    run.finish();
    if found.is_empty() {
        super::out(format!("fwctl: {shown} was not in the kernel's sets; its ban is ended in the state file so it is not restored\n"))?;
    } else {
        super::out(format!(
            "fwctl: unbanned {shown} from {}\n",
            found.join(", ")
        ))?;
    }
    if !inside.is_empty() {
        super::out(format!(
            "fwctl: note: it is still covered by {}\n",
            inside.join(", ")
        ))?;
    }
    Ok(())
}
