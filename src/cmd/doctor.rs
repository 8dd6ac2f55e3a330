//! `fwctl doctor`: gather the machine's facts, judge them, print the verdicts.

use crate::core::doctor::{checks, Level};
use crate::sys;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The log rsyslog should write (as for `fwctl scan --log`).
    #[arg(long, value_name = "PATH", default_value = "/ram/iptables.log")]
    pub log: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

pub fn run(
    o: &Options,
    config: &std::path::Path,
    state: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    let facts = sys::doctor::gather(&o.log, config, state);
    let list = checks(&facts);
    let failed = list.iter().filter(|c| c.level == Level::Fail).count();
    if o.json {
        let doc = serde_json::json!({ "checks": list, "failed": failed });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        for c in &list {
            let tag = match c.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{tag}  {:<14} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("      {:<14} fix: {fix}", "");
            }
        }
        println!(
            "{}",
            if failed == 0 {
                "fwctl doctor: every check passed".to_string()
            } else {
                format!("fwctl doctor: {failed} checks failed")
            }
        );
    }
    Ok(failed == 0)
}
