//! `[reputation] report = true` for the long-running `watch`: its bans go
//! to AbuseIPDB from a thread of their own, so a slow or unreachable API
//! never holds up a ban. The choice (never a private, documentation or
//! trusted address; once per address per 15 minutes, through the same
//! ledger file as cron scans; at most 50 a batch) and the counting are
//! scan's, in [`super::afterscan::report_list`]. What the thread cannot
//! post in time is counted as failed, never dropped silently.

use super::say;
use crate::core::config::Config;
use crate::core::scan::abuse::{Ban, Ledger};
use crate::sys::{host, sidefile};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Batches waiting for the thread (watch hands over one a second at most).
const QUEUE: usize = 64;

/// A batch that waited longer than this is counted as failed, not posted:
/// the reports are that far behind.
const STALE: Duration = Duration::from_secs(60);

/// After a failure that stops a batch (the key refused, the quota used
/// up, the service unreachable), nothing is posted for this long: the
/// bans meanwhile are counted as failed.
const PAUSE: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
struct Queued {
    bans: u64,
    abandoned: bool,
}

pub struct Reporter {
    tx: Option<SyncSender<(Instant, Vec<Ban>)>>,
    done: Receiver<()>,
    /// Bans handed over and not yet taken up by the thread, and whether
    /// `finish` gave up on them (counted them failed): one lock, so a batch
    /// is either taken up by the thread or counted failed, never both.
    queued: Arc<Mutex<Queued>>,
    state_file: PathBuf,
}

/// Count `n` reports as failed in the ledger (what `fwctl_abuseipdb_reports_total`
/// shows).
fn count_failed(state_file: &Path, n: u64) {
    let r = sidefile::update(
        &super::afterscan::ledger_path(state_file),
        host::now(),
        crate::core::scan::abuse::parse,
        crate::core::scan::abuse::to_text,
        |l: &mut Ledger| l.failed += n,
    );
    if let Err(e) = r {
        say!("fwctl: warning: AbuseIPDB reports: the counts were not kept ({e})");
    }
}

impl Reporter {
    /// The reporter when the config asks for reports; the key is read
    /// (and its file's mode checked) now, so a bad key file stops watch at
    /// its start with the fix, not at the first ban.
    pub fn start(cfg: &Config, state_file: &Path) -> Result<Option<Reporter>> {
        let Some(r) = cfg.reputation.as_ref().filter(|r| r.report) else {
            return Ok(None);
        };
        let key = crate::sys::secret::read_secret(&r.key_file)?;
        let mut port = crate::sys::http::AbuseIpdb::new(&r.url, key, r.timeout);
        let url = r.report_url.clone();
        let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<Ban>)>(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let queued = Arc::new(Mutex::new(Queued::default()));
        let (cfg, state, left) = (cfg.clone(), state_file.to_path_buf(), Arc::clone(&queued));
        std::thread::Builder::new()
            .name("abuseipdb".into())
            .spawn(move || {
                let mut paused: Option<Instant> = None;
                for (at, bans) in rx {
                    let n = bans.len() as u64;
                    {
                        let mut q = left.lock().expect("queue");
                        if q.abandoned {
                            // finish counted it failed.
                            continue;
                        }
                        q.bans -= n;
                    }
                    if at.elapsed() > STALE || paused.is_some_and(|p| p.elapsed() < PAUSE) {
                        count_failed(&state, n);
                        continue;
                    }
                    let s =
                        super::afterscan::report_list(&cfg, &state, bans, host::now(), &mut |r| {
                            port.report(&url, r)
                        });
                    if let Some(e) = &s.error {
                        say!(
                            "fwctl: warning: AbuseIPDB reports: {} failed ({e}){}",
                            s.failed,
                            if s.stopped {
                                "; none are posted for 15 minutes"
                            } else {
                                ""
                            }
                        );
                    }
                    paused = s.stopped.then(Instant::now);
                }
                let _ = done_tx.send(());
            })?;
        Ok(Some(Reporter {
            tx: Some(tx),
            done,
            queued,
            state_file: state_file.to_path_buf(),
        }))
    }

    /// Hand a batch of bans over; never blocks. A full queue (the API far
    /// behind) or a thread that is gone counts the batch as failed.
    pub fn send(&mut self, bans: Vec<Ban>) {
        if bans.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        let n = bans.len() as u64;
        self.queued.lock().expect("queue").bans += n;
        let why = match tx.try_send((Instant::now(), bans)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the reports are too far behind",
            Err(TrySendError::Disconnected(_)) => "the reporting thread ended",
        };
        self.queued.lock().expect("queue").bans -= n;
        say!("fwctl: warning: AbuseIPDB reports: {n} ban(s) not reported ({why})");
        count_failed(&self.state_file, n);
    }

    /// Let the thread post what it holds, waiting at most `wait`; what is
    /// still queued then is counted as failed (the thread leaves it). A
    /// batch the thread is posting as the process exits is not counted.
    pub fn finish(mut self, wait: Duration) {
        self.tx.take();
        if self.done.recv_timeout(wait).is_err() {
            let left = {
                let mut q = self.queued.lock().expect("queue");
                q.abandoned = true;
                std::mem::take(&mut q.bans)
            };
            if left > 0 {
                count_failed(&self.state_file, left);
            }
        }
    }
}
