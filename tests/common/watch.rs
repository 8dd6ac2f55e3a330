//! `fwctl watch --json` run in a lab's target namespace: its events read
//! on a thread and handed over a channel, so every wait is bounded; killed
//! on drop, so a failed assertion leaves no watch running.

use super::Lab;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const LIMIT: Duration = Duration::from_secs(20);

pub struct Watch {
    child: Child,
    events: Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Watch {
    pub fn start(lab: &Lab, cfg: &Path, env: &[(&str, &str)]) -> Watch {
        let mut child = lab
            .fwctl_cmd(&["--config", cfg.to_str().unwrap(), "watch", "--json"], env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // "watch follows" comes once every log's start is placed: lines
        // written from then on are read.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "watch ended before it followed"
            );
            eprint!("watch stderr: {line}");
            if line.contains("fwctl: watch follows") {
                break;
            }
        }
        std::thread::spawn(move || {
            let mut rest = String::new();
            while err.read_line(&mut rest).unwrap_or(0) > 0 {
                eprint!("watch stderr: {rest}");
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
        Watch {
            child,
            events: rx,
            seen: Vec::new(),
        }
    }

    /// Wait for the event of `kind` about `addr`; every event seen is kept.
    pub fn wait(&mut self, kind: &str, addr: &str) -> Value {
        let end = Instant::now() + LIMIT;
        loop {
            if let Some(v) = self
                .seen
                .iter()
                .find(|e| e["event"] == kind && e["address"] == addr)
            {
                return v.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "no {kind} for {addr} within {LIMIT:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    pub fn about(&self, addr: &str) -> Vec<&Value> {
        self.seen.iter().filter(|e| e["address"] == addr).collect()
    }

    pub fn stop(mut self) -> Vec<Value> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "watch exited with {status}");
        self.seen.extend(self.events.iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
