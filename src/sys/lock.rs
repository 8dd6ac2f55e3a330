//! One fwctl run at a time changes the kernel: apply, scan and ban share a lock
//! file under the run directory, so a slow cron run and the next tick (or an
//! admin's apply) never interleave. The lock is an flock (std's `File::lock`
//! family): the kernel drops it when its holder dies, so a crashed run never
//! leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error("another fwctl run{} holds {}; this run changed nothing (it runs again at the next tick, or retry when that run ends)", pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Held { path: PathBuf, pid: Option<String> },
    #[error("cannot create run directory {}: {err}", dir.display())]
    RunDir { dir: PathBuf, err: io::Error },
    #[error("cannot open lock file {}: {err}", path.display())]
    Open { path: PathBuf, err: io::Error },
    #[error("cannot lock {}: {err}", path.display())]
    Lock { path: PathBuf, err: io::Error },
}

/// Where the lock and the confirmation FIFO live: `$FWCTL_RUN_DIR`, or `/run/fwctl`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("FWCTL_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/fwctl"))
}

/// The lock a running capture holds (its pid inside), in the run directory.
pub fn capture_lock() -> PathBuf {
    run_dir().join("capture.pid")
}

pub fn ensure_run_dir(dir: &Path) -> Result<(), LockError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| LockError::RunDir {
            dir: dir.to_path_buf(),
            err,
        })
}

/// Held until dropped.
pub struct Lock {
    _file: File,
}

pub fn acquire(dir: &Path, wait: Duration) -> Result<Lock, LockError> {
    ensure_run_dir(dir)?;
    acquire_file(&dir.join("lock"), wait)
}

/// Lock `path` (created if missing), waiting up to `wait` for its holder.
pub fn acquire_file(path: &Path, wait: Duration) -> Result<Lock, LockError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|err| LockError::Open {
            path: path.to_path_buf(),
            err,
        })?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(err)) => {
                return Err(LockError::Lock {
                    path: path.to_path_buf(),
                    err,
                })
            }
        }
        if Instant::now() >= deadline {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held {
                path: path.to_path_buf(),
                pid: (!holder.is_empty()).then(|| holder.to_string()),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
    Ok(Lock { _file: file })
}

/// The pid in a lock file whose lock is held right now (by a live process:
/// the kernel drops a flock when its holder dies); None when it is free.
pub fn holder(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    // A shared probe, released when the file closes.
    if file.try_lock_shared().is_ok() {
        return None;
    }
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    Some(pid.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), Duration::ZERO).unwrap();
        let err = acquire(dir.path(), Duration::from_millis(120))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("changed nothing"), "{err}");
        assert_eq!(
            holder(&dir.path().join("lock")),
            Some(std::process::id().to_string())
        );
        drop(first);
        assert_eq!(holder(&dir.path().join("lock")), None);
        assert!(acquire(dir.path(), Duration::ZERO).is_ok());
    }
}
