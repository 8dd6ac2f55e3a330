//! The kernel side: `ipset` and `iptables-restore`/`-save`, run as argument
//! vectors (never through a shell). Behind a small trait so `apply` can be
//! driven by a recording fake in tests and by the real tools in kernel tests.

use crate::ruleset::Family;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A step that failed, with the tool's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub step: String,
    pub detail: String,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail.trim().replace('\n', " | ");
        write!(f, "{} failed: {detail}", self.step)
    }
}

impl std::error::Error for StepError {}

pub type StepResult<T> = Result<T, StepError>;

pub trait Backend {
    /// `iptables-save -t filter` (or ip6tables-save).
    fn save_table(&mut self, family: Family) -> StepResult<String>;
    /// `iptables-restore` with `input`; `noflush` keeps rules fwctl does not own.
    fn restore_table(&mut self, family: Family, input: &str, noflush: bool) -> StepResult<()>;
    /// `ipset save` (every set).
    fn save_sets(&mut self) -> StepResult<String>;
    /// One `ipset restore` run.
    fn restore_sets(&mut self, input: &str) -> StepResult<()>;
}

/// The tools fwctl runs, each with the Debian package that ships it.
const TOOLS: [(&str, &str); 5] = [
    ("ipset", "ipset"),
    ("iptables-save", "iptables"),
    ("iptables-restore", "iptables"),
    ("ip6tables-save", "iptables"),
    ("ip6tables-restore", "iptables"),
];

/// The real tools, found on PATH once up front so a missing one is reported
/// before anything changes. `FWCTL_<TOOL>` (e.g. `FWCTL_IPTABLES_RESTORE`)
/// points at another binary, e.g. `iptables-legacy-restore`.
pub struct System {
    /// Found tools, in `TOOLS` order (None: not wanted by this command).
    paths: Vec<Option<PathBuf>>,
}

impl System {
    /// Every tool `apply` needs.
    pub fn locate() -> Result<System, String> {
        System::locate_only(&TOOLS.map(|t| t.0))
    }

    /// Only `wanted` (e.g. `scan` needs nothing but ipset).
    pub fn locate_only(wanted: &[&str]) -> Result<System, String> {
        let mut paths = Vec::new();
        for (tool, package) in TOOLS {
            if !wanted.contains(&tool) {
                paths.push(None);
                continue;
            }
            let var = format!("FWCTL_{}", tool.to_uppercase().replace('-', "_"));
            let wanted = std::env::var_os(&var).unwrap_or_else(|| tool.into());
            match which::which(&wanted) {
                Ok(p) => paths.push(Some(p)),
                Err(_) => {
                    return Err(format!(
                        "{} not found; fix: apt-get install {package}{}",
                        std::path::Path::new(&wanted).display(),
                        if std::env::var_os(&var).is_some() {
                            format!(" (or correct {var})")
                        } else {
                            String::new()
                        }
                    ))
                }
            }
        }
        Ok(System { paths })
    }

    fn path(&self, tool: &str) -> &PathBuf {
        let i = TOOLS
            .iter()
            .position(|(t, _)| *t == tool)
            .expect("known tool");
        self.paths[i].as_ref().expect("tool located up front")
    }

    fn run(&self, tool: &str, args: &[&str], input: Option<&str>) -> StepResult<String> {
        let step = format!("{tool} {}", args.join(" ")).trim().to_string();
        let fail = |detail: String| StepError {
            step: step.clone(),
            detail,
        };
        let mut child = Command::new(self.path(tool))
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", self.path(tool).display())))?;
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
}

fn prefix(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

impl Backend for System {
    fn save_table(&mut self, family: Family) -> StepResult<String> {
        self.run(&format!("{}-save", prefix(family)), &["-t", "filter"], None)
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

/// What `scan` asks of ipset: small reads and one batched add.
pub trait SetStore {
    /// `ipset list -t`: every set's header (type, family, timeout, size).
    fn headers(&mut self) -> StepResult<String>;
    /// `ipset save NAME`: one set with its members.
    fn save_set(&mut self, name: &str) -> StepResult<String>;
    /// `ipset -exist restore` of `add` lines: one process for every ban;
    /// `-exist` so a member added meanwhile by another tool is no error.
    fn add_members(&mut self, input: &str) -> StepResult<()>;
}

impl SetStore for System {
    fn headers(&mut self) -> StepResult<String> {
        self.run("ipset", &["list", "-t"], None)
    }

    fn save_set(&mut self, name: &str) -> StepResult<String> {
        self.run("ipset", &["save", name], None)
    }

    fn add_members(&mut self, input: &str) -> StepResult<()> {
        self.run("ipset", &["-exist", "restore"], Some(input))
            .map(drop)
    }
}

/// A recording fake: keeps the text of each table and the sets as a real
/// kernel would after a restore (as far as the tests need), and can be told to
/// fail a step.
#[derive(Default, Debug)]
pub struct Fake {
    pub v4: String,
    pub v6: String,
    pub sets: String,
    /// Every call, in order, e.g. `restore v6 --noflush`.
    pub calls: Vec<String>,
    /// A call (as recorded in `calls`) that fails.
    pub fail_on: Option<String>,
}

impl Fake {
    fn record(&mut self, call: String) -> StepResult<()> {
        let fail = self.fail_on.as_deref() == Some(call.as_str());
        self.calls.push(call.clone());
        if fail {
            Err(StepError {
                step: call,
                detail: "injected failure".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Backend for Fake {
    fn save_table(&mut self, family: Family) -> StepResult<String> {
        self.record(format!("save {family:?}"))?;
        Ok(match family {
            Family::V4 => self.v4.clone(),
            Family::V6 => self.v6.clone(),
        })
    }

    fn restore_table(&mut self, family: Family, input: &str, noflush: bool) -> StepResult<()> {
        let flag = if noflush { " --noflush" } else { "" };
        self.record(format!("restore {family:?}{flag}"))?;
        let t = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        *t = input.to_string();
        Ok(())
    }

    fn save_sets(&mut self) -> StepResult<String> {
        self.record("save sets".into())?;
        Ok(self.sets.clone())
    }

    fn restore_sets(&mut self, input: &str) -> StepResult<()> {
        self.record("restore sets".into())?;
        self.sets.push_str(input);
        Ok(())
    }
}

/// For the fake: `ipset save` text (`sets`) as `ipset list -t` would show it.
impl SetStore for Fake {
    fn headers(&mut self) -> StepResult<String> {
        self.record("list -t".into())?;
        let mut out = String::new();
        for (name, set) in crate::ipset::parse_save(&self.sets) {
            let kind = set.kind().to_string();
            let header = set.params.get(1..).unwrap_or(&[]).join(" ");
            out += &format!(
                "Name: {name}\nType: {kind}\nRevision: 1\nHeader: {header}\nSize in memory: 1\nReferences: 0\nNumber of entries: {}\n\n",
                set.members.len()
            );
        }
        Ok(out)
    }

    fn save_set(&mut self, name: &str) -> StepResult<String> {
        self.record(format!("save {name}"))?;
        let prefix = |l: &str| {
            let mut w = l.split_whitespace().skip(1);
            w.next() == Some(name)
        };
        Ok(self
            .sets
            .lines()
            .filter(|l| prefix(l))
            .map(|l| format!("{l}\n"))
            .collect())
    }

    fn add_members(&mut self, input: &str) -> StepResult<()> {
        self.record("add members".into())?;
        self.sets.push_str(input);
        Ok(())
    }
}
