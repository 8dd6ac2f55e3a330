//! `fwctl fleet keygen` (this host's signing key for [fleet] key_file) and
//! `fwctl fleet purge --host NAME` (every ban a fleet host published, out of
//! this host's sets and state file, and out of the fleet's active index).

use super::fleet::Member;
use super::run::{Needs, NotRoot, Run};
use super::{say, Invocation};
use crate::core::ban as target;
use crate::core::fleet::purge_targets;
use crate::ports::{FleetLink, SetOp};
use crate::sys::{fleetkey, host, statefile};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum FleetCommand {
    /// Make this host's Ed25519 signing key (for [fleet] key_file) and print its public half.
    Keygen(KeygenOptions),
    /// Remove every ban a fleet host published: from this host's sets and state file, and from
    /// the fleet's active index in Redis.
    Purge(PurgeOptions),
}

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
The file holds the private key (base64 of a 32-byte seed), mode 600; an existing file is
never overwritten. Put `key_file = \"PATH\"` in this host's [fleet], and the printed line
under [fleet.peers] on every host.

Example:
  fwctl fleet keygen --out /etc/fwctl/fleet.key")]
pub struct KeygenOptions {
    /// Where to write the private key.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
The bans are found in the state file, where sync records each remote ban with its host
within a second or two. For a clean cut, take HOST out of [fleet.peers] (its new entries are
applied again otherwise) and restart sync first: it writes the state file as it stops.

Example:
  fwctl fleet purge --host web-3")]
pub struct PurgeOptions {
    /// The fleet host whose bans are removed (its name in the fleet).
    #[arg(long, value_name = "NAME")]
    pub host: String,
}

pub fn keygen(o: &KeygenOptions, inv: &Invocation) -> Result<()> {
    // The name the other hosts know this one by, if the config says.
    let name = inv
        .config
        .as_ref()
        .and_then(|_| inv.load().ok())
        .and_then(|c| c.fleet.and_then(|f| f.host))
        .unwrap_or_else(host::hostname);
    let public = fleetkey::generate(&o.out)?;
    let key = public.to_text();
    super::out(format!(
        "fwctl: wrote this host's private key to {path} (mode 600; it never leaves this host)\n\
public key: {key}\n\
In this host's config, under [fleet]:\n  key_file = \"{path}\"\n\
On every host, under [fleet.peers]:\n  \"{name}\" = \"{key}\"\n",
        path = o.out.display()
    ))
}

pub fn purge(o: &PurgeOptions, inv: &Invocation) -> Result<()> {
    let cfg = inv.load()?;
    let m = Member::of(&cfg)?.ok_or_else(|| {
        anyhow!(
            "{} has no [fleet] section; fix: fleet purge works on a fleet's bans: add [fleet] (redis = \"redis://HOST:6379/0\")",
            cfg.path.display()
        )
    })?;
    let name = o.host.as_str();
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_graphic()) {
        bail!("--host {name:?} is not a fleet host name; fix: 1 to 128 printable characters without spaces, as the host publishes it (fwctl list --fleet shows them)");
    }
    let does = "changes the kernel's ipsets and must run as root";
    let fix = inv.fix(&format!("fleet purge --host {name}"));
    let root = NotRoot("fleet purge", does, fix);
    let mut run = Run::start(&cfg, inv, Some(root), Needs::SETS | Needs::LOCK)?;
    let path = run.state_file.clone();
    let now = host::now();
    let loaded = statefile::load(&path, now)
        .with_context(|| format!("the state file {} must be readable", path.display()))?;
    // Only fwctl's own ban sets are touched.
    let mut sets = Vec::new();
    for role in target::BAN_ROLES {
        sets.extend(target::sets_named(&cfg, role)?);
    }
    let targets = purge_targets(&loaded.state.history, name, now, &sets);
    let ops: Vec<SetOp> = targets
        .iter()
        .map(|(set, net)| SetOp::Del {
            set: set.clone(),
            net: *net,
        })
        .collect();
    if !ops.is_empty() {
        run.sets().change(&ops).map_err(|e| {
            anyhow!("removing {name}'s bans: {e}; nothing was changed in the state file")
        })?;
        statefile::update(&path, now, |st| {
            for (_, net) in &targets {
                if st.history.get(net).and_then(|r| r.from.as_deref()) == Some(name) {
                    st.history.end(net, now);
                }
            }
        })?;
    }
    // The kernel and the state file are done with; Redis may take seconds.
    run.finish();
    let mut sets_hit: Vec<&str> = targets.iter().map(|(s, _)| s.as_str()).collect();
    sets_hit.sort_unstable();
    sets_hit.dedup();
    let here = format!(
        "fwctl: purged {} of {name} here{}",
        crate::units::duration::count(targets.len() as u64, "ban", "bans"),
        if sets_hit.is_empty() {
            String::new()
        } else {
            format!(" (from {})", sets_hit.join(", "))
        }
    );
    let index = m
        .connect(std::time::Duration::from_secs(5))
        .map_err(|e| e.0)
        .and_then(|mut link| link.purge_host(name).map_err(|e| e.0));
    let trusted = if m.fleet.peers.contains_key(name) {
        format!("; {name} is still in [fleet.peers]: its new entries are applied again until it is taken out")
    } else if m.fleet.peers.is_empty() {
        format!("; without [fleet.peers] anyone who can write to Redis can still publish as {name}")
    } else {
        String::new()
    };
    match index {
        Ok(n) => super::out(format!(
            "{here}; {} out of the fleet's active index{trusted}\n",
            crate::units::duration::count(n, "ban", "bans")
        )),
        Err(e) => {
            say!("{here}");
            bail!("the fleet's active index still holds {name}'s bans: {e}; fix: run fwctl fleet purge --host {name} again once Redis answers")
        }
    }
}
