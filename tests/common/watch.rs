//! `fwctl watch --json` in a lab's target namespace.

use super::service::Service;
use super::Lab;
use std::path::Path;

pub struct Watch;

impl Watch {
    /// "watch follows" comes once every log's start is placed: lines
    /// written from then on are read.
    pub fn start(lab: &Lab, cfg: &Path, env: &[(&str, &str)]) -> Service {
        let cmd = lab.fwctl_cmd(&["--config", cfg.to_str().unwrap(), "watch", "--json"], env);
        Service::spawn(cmd, "fwctl: watch follows", "watch stderr")
    }
}
