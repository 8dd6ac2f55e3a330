//! The notification outbox on disk: `notify-outbox.json` beside the state
//! file, changed under a lock file of its own, written atomically (mode
//! 0600). Batches are written before they are posted and taken out once
//! delivered, so nothing is lost to a dead endpoint or a run that ends.

use super::lock::{self, LockError};
use crate::core::notify::{Envelope, Outbox};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("notification outbox {}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
}

/// The outbox of a state file.
pub fn path_for(state: &Path) -> PathBuf {
    super::statefile::beside(state, "notify-outbox.json")
}

fn read(path: &Path) -> Outbox {
    // A damaged outbox is worth less than the run: start afresh.
    std::fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

fn write(path: &Path, o: &Outbox) -> Result<(), OutboxError> {
    let io = |err| OutboxError::Io {
        path: path.to_path_buf(),
        err,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    super::dirs::create_private(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(&serde_json::to_vec(o).expect("plain data"))
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Change the outbox under its lock.
pub fn change<T>(path: &Path, f: impl FnOnce(&mut Outbox) -> T) -> Result<T, OutboxError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    super::dirs::create_private(dir).map_err(|err| OutboxError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let _l = lock::acquire_file(&lock::lock_path(path), Duration::from_secs(10))?;
    let mut o = read(path);
    let before = o.clone();
    let out = f(&mut o);
    if o != before {
        write(path, &o)?;
    }
    Ok(out)
}

pub fn put(path: &Path, sink: &str, batch: u64, events: &[Envelope]) -> Result<(), OutboxError> {
    change(path, |o| o.put(sink, batch, events))
}

pub fn remove(path: &Path, batch: u64) -> Result<(), OutboxError> {
    change(path, |o| o.remove(batch))
}

pub fn take(path: &Path, sink: &str) -> Result<Vec<Envelope>, OutboxError> {
    change(path, |o| o.take(sink))
}

/// How many events wait (for the metrics); 0 when there is no outbox.
pub fn waiting(path: &Path) -> usize {
    read(path).entries.len()
}
