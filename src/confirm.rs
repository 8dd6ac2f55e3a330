//! `apply --confirm`: after installing, wait for a keypress on the TTY or for
//! `fwctl confirm` from another shell, and roll back if neither comes in time.
//! A hangup or Ctrl-C while waiting also rolls back: an admin whose SSH session
//! died because of the new rules must not be left locked out.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    TimedOut,
    /// A signal (its number) arrived while waiting.
    Interrupted(i32),
}

pub fn fifo_path(run_dir: &Path) -> PathBuf {
    run_dir.join("confirm")
}

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; fd is our non-blocking pipe.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

fn cvt(rc: libc::c_int, what: &str) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(rc)
    }
}

/// Wait up to `timeout` for a confirmation. Creates the FIFO in `run_dir` and
/// removes it when done. `tty` also accepts Enter on standard input.
pub fn wait(run_dir: &Path, timeout: Duration, tty: bool) -> std::io::Result<Outcome> {
    let path = fifo_path(run_dir);
    let _ = std::fs::remove_file(&path);
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("run directory path contains NUL"))?;
    // SAFETY: plain libc calls on a valid C string and fds we own.
    unsafe {
        cvt(libc::mkfifo(cpath.as_ptr(), 0o600), "mkfifo")?;
    }
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Cleanup(path.clone());
    // O_RDWR keeps a writer open ourselves, so poll never sees a hangup when a
    // `fwctl confirm` closes its end; we just wait for bytes.
    let fifo = unsafe {
        OwnedFd::from_raw_fd(cvt(
            libc::open(
                cpath.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            ),
            "open confirmation FIFO",
        )?)
    };
    let mut fds = [0; 2];
    unsafe {
        cvt(
            libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC),
            "pipe",
        )?
    };
    let (sig_r, sig_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    SIGNAL_PIPE.store(sig_w.as_raw_fd(), Ordering::Relaxed);
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let mut old: Vec<libc::sighandler_t> = Vec::new();
    unsafe {
        // A vanished terminal must not kill us on the next write.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        for s in signals {
            old.push(libc::signal(
                s,
                on_signal as *const () as libc::sighandler_t,
            ));
        }
    }
    let result = poll_loop(&fifo, &sig_r, timeout, tty);
    unsafe {
        for (s, h) in signals.iter().zip(old) {
            libc::signal(*s, h);
        }
    }
    SIGNAL_PIPE.store(-1, Ordering::Relaxed);
    drop(sig_w);
    result
}

fn poll_loop(
    fifo: &OwnedFd,
    sig: &OwnedFd,
    timeout: Duration,
    tty: bool,
) -> std::io::Result<Outcome> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Outcome::TimedOut);
        }
        let mut pfds = vec![
            libc::pollfd {
                fd: fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sig.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if tty {
            pfds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms.max(1)) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut buf = [0u8; 64];
        if pfds[1].revents != 0 {
            let n = unsafe { libc::read(sig.as_raw_fd(), buf.as_mut_ptr().cast(), 1) };
            return Ok(Outcome::Interrupted(if n == 1 { buf[0] as i32 } else { 0 }));
        }
        if pfds[0].revents & libc::POLLIN != 0 {
            let n = unsafe { libc::read(fifo.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return Ok(Outcome::Confirmed);
            }
        }
        if tty && pfds[2].revents != 0 {
            // Any line typed (or the terminal closing) ends the wait: a line is
            // a yes, end of input is not.
            let mut line = String::new();
            return match std::io::stdin().read_line(&mut line) {
                Ok(n) if n > 0 => Ok(Outcome::Confirmed),
                _ => Ok(Outcome::Interrupted(libc::SIGHUP)),
            };
        }
    }
}

/// `fwctl confirm`: tell a waiting `apply --confirm` to keep its rules.
pub fn send(run_dir: &Path) -> Result<(), String> {
    let path = fifo_path(run_dir);
    let nobody = || {
        format!(
            "no fwctl apply --confirm is waiting ({} is absent); nothing to confirm",
            path.display()
        )
    };
    let cpath =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| nobody())?;
    // Non-blocking write-open fails with ENXIO when no reader is waiting.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(nobody());
    }
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    f.write_all(b"confirm\n")
        .map_err(|e| format!("cannot write to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_without_confirmation() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        assert_eq!(
            wait(dir.path(), Duration::from_millis(150), false).unwrap(),
            Outcome::TimedOut
        );
        assert!(t.elapsed() >= Duration::from_millis(150));
        assert!(
            !fifo_path(dir.path()).exists(),
            "the FIFO is removed afterwards"
        );
    }

    #[test]
    fn confirm_from_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || wait(&d, Duration::from_secs(20), false).unwrap());
        // Retry until the waiter has made its FIFO: an event, not a fixed sleep.
        let deadline = Instant::now() + Duration::from_secs(10);
        while send(dir.path()).is_err() {
            assert!(Instant::now() < deadline, "waiter never opened its FIFO");
            std::thread::yield_now();
        }
        assert_eq!(waiter.join().unwrap(), Outcome::Confirmed);
    }

    #[test]
    fn confirm_with_nobody_waiting_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(send(dir.path()).unwrap_err().contains("nothing to confirm"));
    }
}
