//! A long-running `fwctl ... --json` (capture, watch) in a lab's
//! namespace: its events read on a thread and handed over a channel, so
//! every wait is bounded; killed on drop, so a failed assertion leaves
//! none running.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How long a test waits for one event.
pub const LIMIT: Duration = Duration::from_secs(20);

pub struct Service {
    pub child: Child,
    events: Receiver<Value>,
    /// Its standard error's lines after the ready one.
    said: Receiver<String>,
    pub seen: Vec<Value>,
}

impl Service {
    /// Start `cmd` and wait (up to [`LIMIT`]) for the line of its standard
    /// error holding `ready` (which the command prints once it misses
    /// nothing from then on). Every stderr line is passed on, headed by
    /// `label`, and the later ones kept for [`Service::wait_said`].
    pub fn spawn(mut cmd: Command, ready: &str, label: &'static str) -> Service {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = BufReader::new(child.stderr.take().unwrap());
        let (said_tx, said) = channel();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("{label}: {line}");
                if said_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let end = Instant::now() + LIMIT;
        loop {
            match said.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(ready) => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{label}: no \"{ready}\" within {LIMIT:?} ({e})");
                }
            }
        }
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Service {
            child,
            events: rx,
            said,
            seen: Vec::new(),
        }
    }

    /// Collect events until `done` holds for all seen so far, or `limit`
    /// passes (false).
    pub fn wait_for(&mut self, limit: Duration, done: impl Fn(&[Value]) -> bool) -> bool {
        let end = Instant::now() + limit;
        while !done(&self.seen) {
            match self
                .events
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(v) => self.seen.push(v),
                Err(_) => return false,
            }
        }
        true
    }

    /// Wait for the event `kind` about `addr` (its `address`); panics
    /// after [`LIMIT`] with every event seen.
    pub fn wait(&mut self, kind: &str, addr: &str) -> Value {
        let found = |seen: &[Value]| {
            seen.iter()
                .any(|e| e["event"] == kind && e["address"] == addr)
        };
        if !self.wait_for(LIMIT, found) {
            panic!(
                "no {kind} for {addr} within {LIMIT:?}; seen: {:#?}",
                self.seen
            );
        }
        self.seen
            .iter()
            .find(|e| e["event"] == kind && e["address"] == addr)
            .unwrap()
            .clone()
    }

    /// The events seen of `kind`.
    pub fn of(&self, kind: &str) -> Vec<&Value> {
        self.seen.iter().filter(|e| e["event"] == kind).collect()
    }

    /// The events seen about `addr`.
    pub fn about(&self, addr: &str) -> Vec<&Value> {
        self.seen.iter().filter(|e| e["address"] == addr).collect()
    }

    /// Wait (up to `limit`) for a line of its standard error holding
    /// `needle`; the line.
    pub fn wait_said(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        loop {
            match self
                .said
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// SIGTERM, a clean exit within [`LIMIT`], and every event.
    pub fn stop(mut self) -> Vec<Value> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        // The event reader ends when the process closes its output, so
        // its end is the process's end, bounded.
        let end = Instant::now() + LIMIT;
        loop {
            match self
                .events
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(v) => self.seen.push(v),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("did not stop within {LIMIT:?} of SIGTERM")
                }
            }
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exited with {status}");
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
