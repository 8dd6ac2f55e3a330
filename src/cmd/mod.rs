//! The subcommands, one file each: they parse nothing themselves (the CLI
//! does), check everything that can refuse before the first change, drive
//! the core through the ports and wire in the system layer. `anyhow` lives
//! here and above; below, errors are typed.

pub mod afterscan;
pub mod aggregate;
pub mod apply;
pub mod ban;
pub mod capture;
pub mod doctor;
pub mod feeds;
pub mod fleet;
pub mod fleet_admin;
pub mod geo;
pub mod list;
pub mod man;
pub mod metrics;
pub mod notify;
pub mod reporter;
pub mod run;
pub mod scan;
pub mod selftest;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod test_source;
pub mod unban;
pub mod watch;
pub mod why;

use crate::core::config::{Config, DEFAULT_PATH};
use crate::core::ruleset::{self, Plan};
use anyhow::Result;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Stderr writes that cannot kill us if the terminal has gone away.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use say;

/// Standard output gone (`fwctl man | head`): not an error worth a word.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub struct Closed;

/// Write `text` to standard output; a closed pipe becomes [`Closed`], which
/// `main` turns into a quiet exit.
pub fn out(text: impl AsRef<[u8]>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_ref()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        r => Ok(r?),
    }
}

/// Whether `e` comes from standard output having closed (a reader such as
/// `head` that had enough), however deep in its chain.
pub fn closed_pipe(e: &anyhow::Error) -> bool {
    e.is::<Closed>()
        || e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
}

/// How fwctl was invoked: the config and the state file as the user named
/// them (on the command line or through FWCTL_CONFIG / FWCTL_STATE).
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// None: the default, /etc/fwctl/fwctl.toml, or the built-in defaults
    /// when that file does not exist.
    pub config: Option<PathBuf>,
    pub state: Option<PathBuf>,
}

/// A path as a shell reads it (quoted when it needs to be).
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Invocation {
    /// The config file to read.
    pub fn config_path(&self) -> &Path {
        self.config.as_deref().unwrap_or(Path::new(DEFAULT_PATH))
    }

    pub fn state(&self) -> Option<&Path> {
        self.state.as_deref()
    }

    /// `sudo fwctl` with the same --config and --state, for the fixes a
    /// command prints (sudo drops the environment, so they are spelled out).
    pub fn sudo(&self) -> String {
        let mut s = String::from("sudo fwctl");
        if let Some(c) = &self.config {
            s += &format!(" --config {}", shell_word(c));
        }
        if let Some(st) = &self.state {
            s += &format!(" --state {}", shell_word(st));
        }
        s
    }

    /// A fix that runs another fwctl command on the same files.
    pub fn fix(&self, sub: &str) -> String {
        format!("{} {sub}", self.sudo())
    }

    /// Whether there is no config to read: none named and none at the default path.
    pub fn builtin(&self) -> bool {
        self.config.is_none() && !Path::new(DEFAULT_PATH).exists()
    }

    /// The config: the named file (missing: an error), else the default
    /// file, else the built-in defaults, said so in one line on stderr.
    pub fn load(&self) -> Result<Config> {
        if self.builtin() {
            say!("fwctl: note: no config at {DEFAULT_PATH}; using the built-in defaults (no services, no trusted networks; the set names, LOG prefixes and capture profile of rules/fwctl.toml); pass --config PATH to use another");
            return Ok(Config::builtin());
        }
        Ok(crate::sys::configfile::load(self.config_path())?)
    }

    /// The config and its plan.
    pub fn load_plan(&self) -> Result<(Config, Plan)> {
        let cfg = self.load()?;
        let plan = ruleset::build(&cfg);
        Ok((cfg, plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_repeat_the_files_the_user_named() {
        let none = Invocation::default();
        assert_eq!(none.fix("apply"), "sudo fwctl apply");
        let both = Invocation {
            config: Some("/srv/fw/my fw.toml".into()),
            state: Some("/tmp/s.json".into()),
        };
        assert_eq!(
            both.fix("status --repair"),
            "sudo fwctl --config '/srv/fw/my fw.toml' --state /tmp/s.json status --repair"
        );
    }
}
