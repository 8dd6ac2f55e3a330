//! `[reputation] report = true` for the long-running `watch`: its bans go
//! to AbuseIPDB from a thread of their own, so a slow or unreachable API
//! never holds up a ban. The choice (never a private, documentation or
//! trusted address; once per address per 15 minutes, through the same
//! ledger file as cron scans) and the counting are scan's, in
//! [`super::afterscan::report_list`].

use super::say;
use crate::core::config::Config;
use crate::core::scan::abuse::{Ban, Ledger};
use crate::sys::{host, sidefile};
use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

/// Batches waiting for the thread (watch hands over one a second at
/// most): more than a minute behind, a batch is counted as failed.
const QUEUE: usize = 64;

pub struct Reporter {
    tx: Option<SyncSender<Vec<Ban>>>,
    done: Receiver<()>,
    state_file: PathBuf,
}

impl Reporter {
    /// The reporter when the config asks for reports; the key is read
    /// (and its file's mode checked) now, so a bad key file stops watch at
    /// its start with the fix, not at the first ban.
    pub fn start(cfg: &Config, state_file: &Path) -> Result<Option<Reporter>> {
        let Some(r) = cfg.reputation.as_ref().filter(|r| r.report) else {
            return Ok(None);
        };
        let key = String::from_utf8(crate::sys::secret::read(&r.key_file)?)
            .map_err(|_| anyhow!("{}: the key is not text", r.key_file.display()))?;
        let mut port = crate::sys::http::AbuseIpdb::new(&r.url, key, r.timeout);
        let url = r.report_url.clone();
        let (tx, rx) = mpsc::sync_channel::<Vec<Ban>>(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let (cfg, state) = (cfg.clone(), state_file.to_path_buf());
        std::thread::Builder::new()
            .name("abuseipdb".into())
            .spawn(move || {
                for bans in rx {
                    let s =
                        super::afterscan::report_list(&cfg, &state, bans, host::now(), &mut |r| {
                            port.report(&url, r)
                        });
                    if let Some(e) = s.error {
                        say!(
                            "fwctl: warning: AbuseIPDB reports: {} failed ({e})",
                            s.failed
                        );
                    }
                }
                let _ = done_tx.send(());
            })?;
        Ok(Some(Reporter {
            tx: Some(tx),
            done,
            state_file: state_file.to_path_buf(),
        }))
    }

    /// Hand a batch of bans over; never blocks. A full queue (the API far
    /// behind) counts the batch as failed.
    pub fn send(&mut self, bans: Vec<Ban>) {
        if bans.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = tx.try_send(bans) {
            say!(
                "fwctl: warning: AbuseIPDB reports: {} ban(s) not reported (the reports are more than a minute behind)",
                b.len()
            );
            let n = b.len() as u64;
            let r = sidefile::update(
                &super::afterscan::ledger_path(&self.state_file),
                host::now(),
                crate::core::scan::abuse::parse,
                crate::core::scan::abuse::to_text,
                |l: &mut Ledger| l.failed += n,
            );
            if let Err(e) = r {
                say!("fwctl: warning: AbuseIPDB reports: the counts were not kept ({e})");
            }
        }
    }

    /// Let the thread post what it holds, waiting at most `wait`.
    pub fn finish(mut self, wait: Duration) {
        self.tx.take();
        let _ = self.done.recv_timeout(wait);
    }
}
