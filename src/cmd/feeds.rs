//! `fwctl feeds update`: download each `[[feed]]` that is due (ETag and
//! If-Modified-Since, so an unchanged list costs a 304), check it whole
//! (`core::feeds`), and replace its sets' members whole in one batch. A
//! feed that fails, or is refused, keeps its last good copy in the kernel
//! and in `feeds/` beside the state file; `fwctl status` says so, and a
//! refused one is a `feed_refused` event.

use super::notify::{Life, Notifier};
use super::run::{Needs, NotRoot, Run};
use super::{out, Invocation};
use crate::core::config::intel::Feed;
use crate::core::feeds::{self, Meta};
use crate::core::notify::Notice;
use crate::core::policy::Refusal;
use crate::sys::http::{fetch, Fetched};
use crate::sys::{feedstore, host};
use crate::units::duration::{count, human};
use crate::units::time::utc;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long one feed's download may take.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Run by systemd/fwctl-feeds.timer (or the cron line of cron/fwctl); each feed is fetched
when its `every` has passed since the last try.

Examples:
  fwctl feeds update
  fwctl feeds update --feed drop --force")]
pub struct UpdateOptions {
    /// Fetch even the feeds that are not due yet.
    #[arg(long)]
    pub force: bool,
    /// Only this feed (a [[feed]] name).
    #[arg(long, value_name = "NAME")]
    pub feed: Option<String>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum FeedsCommand {
    /// Download the [[feed]]s that are due and replace their sets' members.
    Update(UpdateOptions),
}

/// What fetching and checking one feed came to (before the lock).
enum Outcome {
    /// 304: the copy we have is current.
    Unchanged,
    New {
        nets: Vec<ipnet::IpNet>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// The download failed.
    Failed(String),
    /// The list came, and is refused (`feed_refused`).
    Refused(String),
}

/// Download one feed and check it whole; nothing is changed here.
fn fetch_and_check(
    f: &Feed,
    meta: &Meta,
    refuse: &dyn Fn(&ipnet::IpNet) -> Option<Refusal>,
) -> Outcome {
    match fetch(
        &f.url,
        meta.etag.as_deref(),
        meta.last_modified.as_deref(),
        feeds::max_bytes(f),
        TIMEOUT,
    ) {
        Fetched::NotModified => Outcome::Unchanged,
        Fetched::Failed(e) => Outcome::Failed(e),
        Fetched::Body {
            bytes,
            etag,
            last_modified,
        } => match feeds::parse(f, &bytes, refuse) {
            Ok(nets) => Outcome::New {
                nets,
                etag,
                last_modified,
            },
            Err(e) => Outcome::Refused(e.to_string()),
        },
    }
}

/// Returns whether every feed is well (Ok(false): exit status 2).
///
/// Every feed is downloaded and checked first, without the run lock (a
/// feed server that answers slowly, or never, must not hold up a ban, a
/// scan or an apply); the lock is taken only to swap the sets and write
/// the copies, which takes milliseconds.
pub fn update(o: &UpdateOptions, inv: &Invocation) -> Result<bool> {
    let cfg = inv.load()?;
    // `[geo]`: the countries' sets are read again from the country database
    // (not with --feed, which names one feed).
    let geo = o.feed.is_none() && !cfg.countries.is_empty();
    if cfg.feeds.is_empty() && !geo {
        bail!(
            "{} has no [[feed]] and no [geo] countries; fix: add a [[feed]] (name, url, and optionally every, max_entries, min_prefix_v4, min_prefix_v6, max_coverage) or [geo] block_countries, then run apply to create its sets",
            cfg.path.display()
        );
    }
    let chosen: Vec<_> = match &o.feed {
        Some(n) => vec![cfg.feeds.iter().find(|f| &f.name == n).ok_or_else(|| {
            let names: Vec<&str> = cfg.feeds.iter().map(|f| f.name.as_str()).collect();
            anyhow!(
                "no [[feed]] named \"{n}\"; fix: one of {}",
                names.join(", ")
            )
        })?],
        None => cfg.feeds.iter().collect(),
    };
    let does = "changes the kernel's ipsets and must run as root";
    let root = NotRoot("feeds update", does, inv.fix("feeds update"));
    let mut run = Run::start(&cfg, inv, Some(root), Needs::SETS)?;
    let headers = run.sets().heads()?;
    for f in &chosen {
        for s in feeds::set_names(&f.name) {
            if !headers.contains_key(&s) {
                bail!(
                    "set {s} of [[feed]] {} does not exist; fix: {} (it creates the feed's sets)",
                    f.name,
                    inv.fix("apply")
                );
            }
        }
    }
    for c in cfg.countries.iter().filter(|_| geo) {
        for s in crate::core::geo::set_names(*c) {
            if !headers.contains_key(&s) {
                bail!(
                    "set {s} of [geo] country {c} does not exist; fix: {} (it creates the country's sets)",
                    inv.fix("apply")
                );
            }
        }
    }
    let dir = feedstore::dir_for(&run.state_file);
    feedstore::check(&dir)?;
    run.notifier = Notifier::start(&cfg, &run.state_file, Life::Run)?;
    let own = host::own_addresses();
    let never = feeds::policy(&cfg.trusted, &own);
    let refuse = |n: &ipnet::IpNet| never.check(n);
    let now = host::now();
    let mut fetched = Vec::new();
    for f in chosen {
        let meta = feedstore::meta(&dir, &f.name);
        if !o.force && !meta.due(f, now) {
            out(format!(
                "feed {}: not due (fetched {}, every {}); --force fetches it now\n",
                f.name,
                utc(meta.fetched),
                human(f.every)
            ))?;
            continue;
        }
        let outcome = fetch_and_check(f, &meta, &refuse);
        fetched.push((f, meta, outcome));
    }
    // Read before the lock too; a database that cannot be read changes nothing.
    let geo = geo.then(|| super::geo::read(&cfg));
    if fetched.is_empty() && geo.is_none() {
        run.finish();
        return Ok(true);
    }
    // Only the kernel's change waits for other runs, not the downloads.
    run.lock()?;
    let mut failed = 0;
    let mut refused = Vec::new();
    for (f, mut meta, outcome) in fetched {
        meta.fetched = now;
        let had = meta.entries;
        match outcome {
            Outcome::Unchanged => {
                meta.error = None;
                meta.ok_at = now;
                out(format!(
                    "feed {}: unchanged (304), {}\n",
                    f.name,
                    count(meta.entries as u64, "entry", "entries")
                ))?;
            }
            Outcome::New {
                nets,
                etag,
                last_modified,
            } => match run.sets().refill(&feeds::refills(f, &nets)) {
                Ok(()) => {
                    let before = feedstore::list(&dir, &f.name)?;
                    feedstore::save_list(&dir, &f.name, &nets)?;
                    let old: BTreeSet<_> = before.iter().collect();
                    let new: BTreeSet<_> = nets.iter().collect();
                    meta = Meta {
                        etag,
                        last_modified,
                        fetched: now,
                        ok_at: now,
                        entries: nets.len(),
                        error: None,
                    };
                    out(format!(
                        "feed {}: {} (was {}): {} added, {} removed\n",
                        f.name,
                        count(nets.len() as u64, "entry", "entries"),
                        had,
                        new.difference(&old).count(),
                        old.difference(&new).count()
                    ))?;
                }
                Err(e) => {
                    failed += 1;
                    meta.error = Some(format!("the kernel refused the update: {e}"));
                    say_kept(f, &meta)?;
                }
            },
            Outcome::Failed(e) => {
                failed += 1;
                meta.error = Some(e);
                say_kept(f, &meta)?;
            }
            Outcome::Refused(e) => {
                failed += 1;
                meta.error = Some(format!("refused: {e}"));
                say_kept(f, &meta)?;
                refused.push(Notice::FeedRefused {
                    feed: f.name.clone(),
                    reason: e,
                    kept: meta.entries,
                });
            }
        }
        feedstore::save_meta(&dir, &f.name, &meta)?;
    }
    // A database that now puts a connected peer (the admin's SSH) in a
    // blocked country would cut it off: refused, as apply refuses it.
    let geo = geo.map(|r| {
        r.and_then(|nets| {
            let nets = nets.unwrap_or_default();
            let n = super::geo::locks_out(&cfg, &nets);
            if n > 0 {
                bail!(
                    "[geo] the countries' new networks would lock out {} (above); fix: put them in [trusted] networks, or take their country out of block_countries",
                    count(n as u64, "connected peer", "connected peers")
                );
            }
            super::geo::refill(run.sets(), &cfg, nets)
        })
    });
    match geo {
        None => {}
        Some(Ok(nets)) => {
            super::geo::save(&run.state_file, &nets);
            out(format!(
                "geo: {} updated\n",
                count(cfg.countries.len() as u64 * 2, "set", "sets")
            ))?
        }
        Some(Err(e)) => {
            failed += 1;
            super::say!("fwctl: {e:#}; the geo sets stay as they are");
        }
    }
    if let Some(n) = &run.notifier {
        n.send_all(refused);
    }
    run.finish();
    Ok(failed == 0)
}

fn say_kept(f: &Feed, m: &Meta) -> Result<()> {
    let kept = if m.ok_at == 0 {
        "it has no good copy yet, its sets stay empty".to_string()
    } else {
        format!(
            "its last good copy ({}, from {}) stays",
            count(m.entries as u64, "entry", "entries"),
            utc(m.ok_at)
        )
    };
    super::say!(
        "fwctl: feed {}: {}; {kept}",
        f.name,
        m.error.as_deref().unwrap_or("failed")
    );
    Ok(())
}
