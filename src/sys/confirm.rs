//! `apply --confirm`: after installing, wait for a keypress on the TTY or for
//! `fwctl confirm` from another shell, and roll back if neither comes in time.
//! A hangup or Ctrl-C while waiting also rolls back: an admin whose SSH session
//! died because of the new rules must not be left locked out.
//!
//! The wait is one poll(2) over the confirmation FIFO, a self-pipe that
//! signal-hook writes to when SIGINT, SIGTERM or SIGHUP arrives, and the TTY.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

fn ctx(what: &str) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Wait up to `timeout` for a confirmation. Creates the FIFO in `run_dir` and
/// removes it when done. `tty` also accepts Enter on standard input.
pub fn wait(run_dir: &Path, timeout: Duration, tty: bool) -> io::Result<Outcome> {
    let path = fifo_path(run_dir);
    let _ = std::fs::remove_file(&path);
    nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|e| io::Error::other(format!("mkfifo {}: {e}", path.display())))?;
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Cleanup(path.clone());
    // Read and write: we keep a writer open ourselves, so poll never sees a
    // hangup when a `fwctl confirm` closes its end; we just wait for bytes.
    let fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(ctx("open confirmation FIFO"))?;
    let (wake_r, wake_w) = UnixStream::pair().map_err(ctx("socketpair"))?;
    wake_r.set_nonblocking(true)?;
    wake_w.set_nonblocking(true)?;
    let which = Arc::new(AtomicUsize::new(0));
    let mut ids = Vec::new();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        ids.push(
            signal_hook::flag::register_usize(sig, Arc::clone(&which), sig as usize)
                .map_err(ctx("signal handler"))?,
        );
        ids.push(
            signal_hook::low_level::pipe::register(sig, wake_w.try_clone()?)
                .map_err(ctx("signal handler"))?,
        );
    }
    let result = poll_loop(&fifo, &wake_r, &which, timeout, tty);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    result
}

fn poll_loop(
    mut fifo: &File,
    mut wake: &UnixStream,
    which: &AtomicUsize,
    timeout: Duration,
    tty: bool,
) -> io::Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let stdin = io::stdin();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Outcome::TimedOut);
        }
        let mut fds = vec![
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        if tty {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        let (f, w, t) = (ready(0), ready(1), tty && ready(2));
        drop(fds);
        let mut buf = [0u8; 64];
        if w {
            let _ = wake.read(&mut buf);
            return Ok(Outcome::Interrupted(which.load(Ordering::SeqCst) as i32));
        }
        if f {
            match fifo.read(&mut buf) {
                Ok(n) if n > 0 => return Ok(Outcome::Confirmed),
                _ => {}
            }
        }
        if t {
            // Any line typed (or the terminal closing) ends the wait: a line is
            // a yes, end of input is not.
            let mut line = String::new();
            return match stdin.read_line(&mut line) {
                Ok(n) if n > 0 => Ok(Outcome::Confirmed),
                _ => Ok(Outcome::Interrupted(libc::SIGHUP)),
            };
        }
    }
}

/// `fwctl confirm`: tell a waiting `apply --confirm` to keep its rules.
pub fn send(run_dir: &Path) -> Result<(), ConfirmError> {
    let path = fifo_path(run_dir);
    // A non-blocking write-open fails (ENXIO) when no reader is waiting.
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|_| ConfirmError::NobodyWaiting { path: path.clone() })?;
    f.write_all(b"confirm\n")
        .map_err(|err| ConfirmError::Write { path, err })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("no fwctl apply --confirm is waiting ({} is absent); nothing to confirm", path.display())]
    NobodyWaiting { path: PathBuf },
    #[error("cannot write to {}: {err}", path.display())]
    Write { path: PathBuf, err: io::Error },
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
        assert!(send(dir.path())
            .unwrap_err()
            .to_string()
            .contains("nothing to confirm"));
    }
}
