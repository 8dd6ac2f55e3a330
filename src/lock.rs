//! One fwctl run at a time changes the kernel: apply, scan and ban share a lock
//! file under the run directory, so a slow cron run and the next tick (or an
//! admin's apply) never interleave.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the lock and the confirmation FIFO live: `$FWCTL_RUN_DIR`, or `/run/fwctl`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("FWCTL_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/fwctl"))
}

pub fn ensure_run_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create run directory {}: {e}", dir.display()))
}

/// Held until dropped (the kernel releases a flock when the file closes, also
/// when the process dies, so a crashed run never leaves a stale lock).
pub struct Lock {
    _file: File,
}

pub fn acquire(dir: &Path, wait: Duration) -> Result<Lock, String> {
    ensure_run_dir(dir)?;
    acquire_file(&dir.join("lock"), wait)
}

/// Lock `path` (created if missing), waiting up to `wait` for its holder.
pub fn acquire_file(path: &Path, wait: Duration) -> Result<Lock, String> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("cannot lock {}: {err}", path.display()));
        }
        if Instant::now() >= deadline {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(format!(
                "another fwctl run{} holds {}; this run changed nothing (it runs again at the next tick, or retry when that run ends)",
                if holder.is_empty() { String::new() } else { format!(" (pid {holder})") },
                path.display()
            ));
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
    // SAFETY: flock on a file descriptor we own; a shared probe released at close.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
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
            .unwrap();
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
