//! One fwctl run at a time changes the kernel: apply, scan and ban share a lock
//! file under the run directory, so a slow cron run and the next tick (or an
//! admin's apply) never interleave. The lock is an flock (std's `File::lock`
//! family): the kernel drops it when its holder dies, so a crashed run never
//! leaves a stale lock.
//!
//! fwctl runs as root in directories others may reach, so a lock file is
//! never opened through a symbolic link (O_NOFOLLOW), never through a second
//! hard link, never truncated; it is created 0600. The run directory must
//! belong to us and be writable by nobody else.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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
    /// A run directory another user could plant files in.
    #[error("run directory {} {why}; fix: chown root:root {} && chmod 700 {} (or point FWCTL_RUN_DIR at a directory only root can write)", dir.display(), dir.display(), dir.display())]
    Unsafe { dir: PathBuf, why: String },
    #[error("lock file {} {why}; nothing was written through it; fix: remove it (rm {}) and run again", path.display(), path.display())]
    NotPlain { path: PathBuf, why: &'static str },
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

/// Held by a running `fwctl watch`.
pub fn watch_lock() -> PathBuf {
    run_dir().join("watch.pid")
}

/// Create the run directory (0700, whatever the umask) if it is missing, and refuse one that is
/// a symbolic link, not ours, or writable by group or others.
pub fn ensure_run_dir(dir: &Path) -> Result<(), LockError> {
    super::dirs::create_private(dir).map_err(|err| LockError::RunDir {
        dir: dir.to_path_buf(),
        err,
    })?;
    let m = std::fs::symlink_metadata(dir).map_err(|err| LockError::RunDir {
        dir: dir.to_path_buf(),
        err,
    })?;
    let unsafe_dir = |why: String| {
        Err(LockError::Unsafe {
            dir: dir.to_path_buf(),
            why,
        })
    };
    if m.file_type().is_symlink() {
        return unsafe_dir("is a symbolic link".into());
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return unsafe_dir(format!("belongs to uid {}, not to us (uid {me})", m.uid()));
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return unsafe_dir(format!("is writable by group or others (mode {mode:04o})"));
    }
    Ok(())
}

/// Held until dropped.
pub struct Lock {
    _file: File,
}

pub fn acquire(dir: &Path, wait: Duration) -> Result<Lock, LockError> {
    ensure_run_dir(dir)?;
    acquire_file(&dir.join("lock"), wait)
}

/// Open a lock file for locking: created 0600 if missing, never followed
/// through a symbolic link, refused if it is not a plain file of its own.
fn open_lock(path: &Path) -> Result<File, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => LockError::NotPlain {
                path: path.to_path_buf(),
                why: "is a symbolic link",
            },
            _ => LockError::Open {
                path: path.to_path_buf(),
                err,
            },
        })?;
    let m = file.metadata().map_err(|err| LockError::Open {
        path: path.to_path_buf(),
        err,
    })?;
    let not_plain = |why| {
        Err(LockError::NotPlain {
            path: path.to_path_buf(),
            why,
        })
    };
    if !m.file_type().is_file() {
        return not_plain("is not a plain file");
    }
    if m.nlink() > 1 {
        return not_plain("has another name (a hard link)");
    }
    Ok(file)
}

/// Lock `path` (created if missing), waiting up to `wait` for its holder.
/// The lock file of a data file: `PATH.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

pub fn acquire_file(path: &Path, wait: Duration) -> Result<Lock, LockError> {
    let mut file = open_lock(path)?;
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
            let _ = file.by_ref().take(64).read_to_string(&mut holder);
            let holder = holder.lines().next().unwrap_or("").trim();
            return Err(LockError::Held {
                path: path.to_path_buf(),
                pid: (!holder.is_empty()).then(|| holder.to_string()),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The pid for `holder`, written in place and padded, never truncating.
    let _ = std::os::unix::fs::FileExt::write_all_at(
        &file,
        format!("{:<20}\n", std::process::id()).as_bytes(),
        0,
    );
    Ok(Lock { _file: file })
}

/// The pid in a lock file whose lock is held right now (by a live process:
/// the kernel drops a flock when its holder dies); None when it is free.
pub fn holder(path: &Path) -> Option<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    // A shared probe, released when the file closes.
    if file.try_lock_shared().is_ok() {
        return None;
    }
    let mut text = String::new();
    let _ = file.by_ref().take(64).read_to_string(&mut text);
    Some(text.lines().next().unwrap_or("").trim().to_string())
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

    /// `ln -s victim state.json.lock; fwctl ban ...` once overwrote the
    /// victim. A lock is never taken through a link, and never truncates.
    #[test]
    fn lock_files_are_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let link = dir.path().join("state.json.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = acquire_file(&link, Duration::ZERO)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("is a symbolic link") && err.contains("fix:"),
            "{err}"
        );
        let hard = dir.path().join("lock");
        std::fs::hard_link(&victim, &hard).unwrap();
        let err = acquire(dir.path(), Duration::ZERO)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("hard link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        // A fresh lock file is 0600 and holds the pid; an existing one is
        // written in place, not truncated.
        std::fs::remove_file(&hard).unwrap();
        drop(acquire(dir.path(), Duration::ZERO).unwrap());
        let m = std::fs::metadata(&hard).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        std::fs::write(&hard, format!("{}\n", "9".repeat(40))).unwrap();
        let _l = acquire(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(std::fs::metadata(&hard).unwrap().len(), 41);
        assert_eq!(holder(&hard), Some(std::process::id().to_string()));
    }

    #[test]
    fn a_run_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        // Created when missing, 0700.
        ensure_run_dir(&run).unwrap();
        assert_eq!(
            std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = acquire(&run, Duration::ZERO).err().unwrap().to_string();
        assert!(
            err.contains("writable by group or others (mode 0777)"),
            "{err}"
        );
        assert!(!run.join("lock").exists());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = ensure_run_dir(&link).err().unwrap().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        if nix::unistd::geteuid().is_root() {
            // Another user's directory.
            std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
            let err = ensure_run_dir(&run).err().unwrap().to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");
        }
    }
}
