//! The fleet outbox: bans and unbans made while Redis could not be reached,
//! one entry per line (its stream fields, tab-separated, read back through
//! the same validation as any entry) in `fleet-outbox.tsv` beside the state file
//! (mode 0600), under a lock file of its own. Appending costs only the new
//! lines (a scan of 100 000 bans with Redis down writes them once); whoever
//! reaches Redis next takes the lot and publishes it, oldest first.

use super::lock::{self, LockError};
use crate::core::fleet::Entry;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most entries kept; past it the oldest are dropped (and said).
pub const MAX: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum FleetboxError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("fleet outbox {}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
}

pub fn path_for(state: &Path) -> PathBuf {
    super::statefile::beside(state, "fleet-outbox.tsv")
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> FleetboxError + '_ {
    move |err| FleetboxError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Add entries at the end (fsynced: they are bans the fleet has not heard of).
pub fn append(path: &Path, entries: &[Entry]) -> Result<(), FleetboxError> {
    if entries.is_empty() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    super::dirs::create_private(dir).map_err(io_err(path))?;
    let _l = lock::acquire_file(&lock::lock_path(path), Duration::from_secs(10))?;
    let mut text = String::with_capacity(entries.len() * 160);
    for e in entries {
        e.write_line(&mut text);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(text.as_bytes()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    Ok(())
}

/// Take every entry out (the file is emptied); returns them oldest first,
/// beyond [`MAX`] only the newest, with how many were dropped. A line that
/// does not parse (a torn write) is dropped.
pub fn take(path: &Path) -> Result<(Vec<Entry>, usize), FleetboxError> {
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let _l = lock::acquire_file(&lock::lock_path(path), Duration::from_secs(10))?;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut all: Vec<Entry> = io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| Entry::from_line(&l).ok())
        .collect();
    let dropped = all.len().saturating_sub(MAX);
    all.drain(..dropped);
    std::fs::remove_file(path).map_err(io_err(path))?;
    Ok((all, dropped))
}

/// How many entries wait (lines), 0 without a file.
pub fn waiting(path: &Path) -> usize {
    std::fs::read(path)
        .map(|t| t.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fleet::Op;

    fn entry(i: u32) -> Entry {
        Entry {
            id: format!("{i:016x}"),
            op: Op::Ban,
            addr: format!("203.0.113.{i}/32").parse().unwrap(),
            role: "blacklist".into(),
            at: 1000,
            until: 1060,
            secs: 60,
            reason: "r".into(),
            offence: 1,
            host: "a".into(),
            origin: "manual".into(),
            fwctl: "0".into(),
            sig: String::new(),
        }
    }

    #[test]
    fn entries_wait_in_order_and_leave_once() {
        let d = tempfile::tempdir().unwrap();
        let p = path_for(&d.path().join("state.json"));
        assert_eq!(take(&p).unwrap().0, vec![]);
        append(&p, &[entry(1), entry(2)]).unwrap();
        append(&p, &[entry(3)]).unwrap();
        assert_eq!(waiting(&p), 3);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A torn last line (a crash mid-write) is dropped, the rest kept.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"1\t00ab\tban")
            .unwrap();
        let (got, dropped) = take(&p).unwrap();
        assert_eq!(got, vec![entry(1), entry(2), entry(3)]);
        assert_eq!(dropped, 0);
        assert_eq!(take(&p).unwrap().0, vec![]);
        assert_eq!(waiting(&p), 0);
    }
}
