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
    pub seen: Vec<Value>,
}

impl Service {
    /// Start `cmd` and read its standard error up to the line holding
    /// `ready` (which the command prints once it misses nothing from then
    /// on); the rest of it is passed on, each line headed by `label`.
    pub fn spawn(mut cmd: Command, ready: &str, label: &'static str) -> Service {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "{label} ended before \"{ready}\""
            );
            eprint!("{label}: {line}");
            if line.contains(ready) {
                break;
            }
        }
        std::thread::spawn(move || {
            let mut rest = String::new();
            while err.read_line(&mut rest).unwrap_or(0) > 0 {
                eprint!("{label}: {rest}");
                rest.clear();
            }
        });
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

    /// SIGTERM, a clean exit, and every event.
    pub fn stop(mut self) -> Vec<Value> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exited with {status}");
        self.seen.extend(self.events.iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
