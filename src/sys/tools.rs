//! The kernel's tools: `ipset` and `iptables-restore`/`-save`, run as
//! argument vectors (never through a shell), and the read-only runs doctor
//! makes. The one place fwctl starts a program. Every tool is found on PATH
//! up front, or where `FWCTL_<TOOL>` (e.g. `FWCTL_IPTABLES_RESTORE`) points,
//! e.g. at `iptables-legacy-restore`. ipset's set store (`SetStore`) is in
//! `sys::ipset`, with the parsing of what ipset prints.

use crate::ports::{StepError, StepResult};
use crate::units::addr::Family;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The tools fwctl runs, each with the Debian package that ships it.
pub const TOOLS: [(&str, &str); 5] = [
    ("ipset", "ipset"),
    ("iptables-save", "iptables"),
    ("iptables-restore", "iptables"),
    ("ip6tables-save", "iptables"),
    ("ip6tables-restore", "iptables"),
];

/// A tool that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} not found; fix: apt-get install {package}{}", shown.display(), var.as_ref().map(|v| format!(" (or correct {v})")).unwrap_or_default())]
pub struct Missing {
    /// The name or path looked for.
    pub shown: PathBuf,
    pub package: String,
    /// The FWCTL_<TOOL> variable that named it, if one did.
    pub var: Option<String>,
}

/// The environment variable that points `tool` elsewhere.
pub fn override_var(tool: &str) -> String {
    format!("FWCTL_{}", tool.to_uppercase().replace('-', "_"))
}

/// Where `tool` is: `FWCTL_<TOOL>` if set, else PATH.
pub fn locate_tool(tool: &str, package: &str) -> Result<PathBuf, Missing> {
    let var = override_var(tool);
    let set = std::env::var_os(&var);
    let wanted = set.clone().unwrap_or_else(|| tool.into());
    which::which(&wanted).map_err(|_| Missing {
        shown: PathBuf::from(&wanted),
        package: package.into(),
        var: set.map(|_| var),
    })
}

/// Why a read-only run gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RunFailed {
    #[error(transparent)]
    Missing(#[from] Missing),
    #[error("cannot run {}: {err}", path.display())]
    Start { path: PathBuf, err: std::io::Error },
    /// It ran and failed: its stderr.
    #[error("{0}")]
    Failed(String),
}

/// stdout of a read-only run of `tool` (found as [`locate_tool`] finds it)
/// that succeeded.
pub fn read_only(tool: &str, args: &[&str]) -> Result<String, RunFailed> {
    let path = locate_tool(tool, tool)?;
    let out = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| RunFailed::Start {
            path: path.clone(),
            err,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RunFailed::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The real tools, found once up front so a missing one is reported before
/// anything changes.
pub struct System {
    /// Found tools, in `TOOLS` order (None: not wanted by this command).
    paths: Vec<Option<PathBuf>>,
}

impl System {
    /// Every tool `apply` needs.
    pub fn locate() -> Result<System, Missing> {
        System::locate_only(&TOOLS.map(|t| t.0))
    }

    /// Only `wanted` (e.g. `scan` needs nothing but ipset).
    pub fn locate_only(wanted: &[&str]) -> Result<System, Missing> {
        let mut paths = Vec::new();
        for (tool, package) in TOOLS {
            paths.push(if wanted.contains(&tool) {
                Some(locate_tool(tool, package)?)
            } else {
                None
            });
        }
        Ok(System { paths })
    }

    fn path(&self, tool: &str) -> &Path {
        let i = TOOLS
            .iter()
            .position(|(t, _)| *t == tool)
            .expect("known tool");
        self.paths[i].as_deref().expect("tool located up front")
    }

    pub(super) fn run(&self, tool: &str, args: &[&str], input: Option<&str>) -> StepResult<String> {
        run_step(tool, self.path(tool), args, input)
    }
}

/// Run the program at `path` with `args` (and `input` on stdin); its stdout,
/// or a step error named `tool ARGS` with its stderr and exit status.
pub fn run_step(tool: &str, path: &Path, args: &[&str], input: Option<&str>) -> StepResult<String> {
    let step = format!("{tool} {}", args.join(" ")).trim().to_string();
    let fail = |detail: String| StepError {
        step: step.clone(),
        detail,
    };
    let mut child = Command::new(path)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start {}: {e}", path.display())))?;
    // Feed stdin from another thread: a large restore must not deadlock
    // against a child that is writing its stdout/stderr.
    let out = std::thread::scope(|s| {
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            s.spawn(move || {
                // A child that exits early closes the pipe; its stderr says why.
                let _ = stdin.write_all(text.as_bytes());
            });
        }
        child.wait_with_output()
    })
    .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Err(fail(format!("{} ({})", stderr.trim(), out.status)))
    }
}

fn prefix(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

impl super::iptables::Tools for System {
    fn save_table(&mut self, family: Family) -> StepResult<String> {
        self.run(&format!("{}-save", prefix(family)), &["-t", "filter"], None)
    }

    fn save_raw(&mut self, family: Family) -> StepResult<String> {
        self.run(&format!("{}-save", prefix(family)), &["-t", "raw"], None)
    }

    fn restore_table(&mut self, family: Family, input: &str, noflush: bool) -> StepResult<()> {
        let args: &[&str] = if noflush { &["--noflush"] } else { &[] };
        self.run(&format!("{}-restore", prefix(family)), args, Some(input))
            .map(drop)
    }

    fn save_sets(&mut self) -> StepResult<String> {
        self.run("ipset", &["save"], None)
    }

    fn restore_sets(&mut self, input: &str) -> StepResult<()> {
        self.run("ipset", &["restore"], Some(input)).map(drop)
    }
}
