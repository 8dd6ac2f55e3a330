//! The subcommands, one file each: they parse nothing themselves (the CLI
//! does), check everything that can refuse before the first change, drive
//! the core through the ports and wire in the system layer. `anyhow` lives
//! here and above; below, errors are typed.

pub mod apply;
pub mod ban;
pub mod capture;
pub mod doctor;
pub mod list;
pub mod man;
pub mod scan;
pub mod status;
pub mod unban;

use crate::core::config::Config;
use crate::core::ruleset::{self, Plan};
use anyhow::Result;
use std::path::Path;

/// Stderr writes that cannot kill us if the terminal has gone away.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use say;

/// The config and its plan.
pub fn load(path: &Path) -> Result<(Config, Plan)> {
    let cfg = Config::load(path)?;
    let plan = ruleset::build(&cfg);
    Ok((cfg, plan))
}
