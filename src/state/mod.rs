//! The state file (`/var/lib/fwctl/state.json`): what must outlive a reboot
//! or a restart, since the tmpfs log and the kernel's sets do not. It holds
//! the ban history (every ban with its set and end time, and repeat-offender
//! counts), the last run of each scan rule, and what the last apply
//! installed (to tell drift from a changed config).
//!
//! Written atomically (a temporary file in the same directory, fsync, rename,
//! fsync of the directory), so a crash leaves the old file or the new one,
//! never half. Every writer (apply, scan, ban, unban, capture) changes it
//! under a lock file beside it, reading the file fresh, so no writer loses
//! another's change.

pub mod history;

use anyhow::{anyhow, Context, Result};
use history::{History, Record};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/var/lib/fwctl/state.json";
pub const STATE_VERSION: u32 = 1;
/// How many distinct scan rules keep their last run.
const MAX_SCAN_RULES: usize = 32;
/// How long a writer waits for another one (they hold the lock for milliseconds).
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The last run of one scan rule (rule, type and target set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRun {
    pub at: i64,
    pub rule: String,
    pub kind: String,
    pub ipset: String,
    pub lines_matched: u64,
    pub offenders: u64,
    pub added: u64,
}

/// What the last `fwctl apply` installed: the config it read, a digest of
/// the rules it rendered, and fwctl's rules as the kernel printed them back
/// right after (`iptables-save` form, so a later save compares line by line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub at: i64,
    pub config: PathBuf,
    pub digest: String,
    pub v4: Vec<String>,
    pub v6: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub history: History,
    pub scans: Vec<ScanRun>,
    pub applied: Option<Applied>,
}

/// The file body.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    bans: Vec<Record>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scans: Vec<ScanRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied: Option<Applied>,
}

impl State {
    /// Keep `run` as its rule's last run.
    pub fn note_scan(&mut self, run: ScanRun) {
        self.scans
            .retain(|s| (&s.rule, &s.kind, &s.ipset) != (&run.rule, &run.kind, &run.ipset));
        self.scans.push(run);
        if self.scans.len() > MAX_SCAN_RULES {
            self.scans.sort_by_key(|s| std::cmp::Reverse(s.at));
            self.scans.truncate(MAX_SCAN_RULES);
        }
    }
}

/// What loading found.
pub struct Loaded {
    pub state: State,
    /// Set when the file was unreadable as state (and, for a writer, moved aside).
    pub warning: Option<String>,
}

fn parse(text: &[u8]) -> Result<State, String> {
    let f: StateFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    if f.version != STATE_VERSION {
        return Err(format!("unknown version {}", f.version));
    }
    Ok(State {
        history: History::from_records(f.bans),
        scans: f.scans,
        applied: f.applied,
    })
}

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot read state file {}; fix: run as root or pass another --state",
                path.display()
            )
        }),
    }
}

/// Read without changing anything (status, list): a corrupt file reads as
/// empty with a warning.
pub fn read(path: &Path) -> Result<Loaded> {
    let Some(text) = read_bytes(path)? else {
        return Ok(Loaded {
            state: State::default(),
            warning: None,
        });
    };
    Ok(match parse(&text) {
        Ok(state) => Loaded {
            state,
            warning: None,
        },
        Err(why) => Loaded {
            state: State::default(),
            warning: Some(format!(
                "state file {} is corrupt ({why}); the next fwctl run that writes it moves it aside",
                path.display()
            )),
        },
    })
}

/// Read for writing. A missing file is an empty state. A corrupt one is
/// renamed to `PATH.corrupt-<unix time>` with a warning, so a bad file never
/// turns into a crash loop and is still there to look at.
pub fn load(path: &Path, now: i64) -> Result<Loaded> {
    let Some(text) = read_bytes(path)? else {
        return Ok(Loaded {
            state: State::default(),
            warning: None,
        });
    };
    match parse(&text) {
        Ok(state) => Ok(Loaded {
            state,
            warning: None,
        }),
        Err(why) => {
            let aside = aside_name(path, now);
            std::fs::rename(path, &aside).with_context(|| {
                format!(
                    "state file {} is corrupt ({why}) and cannot be moved aside; fix: remove it",
                    path.display()
                )
            })?;
            Ok(Loaded {
                state: State::default(),
                warning: Some(format!(
                    "state file {} is corrupt ({why}); moved it to {} and started with no ban history",
                    path.display(),
                    aside.display()
                )),
            })
        }
    }
}

fn aside_name(path: &Path, now: i64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{now}"));
    PathBuf::from(name)
}

fn lock_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Change the state file under its lock: load it fresh, let `f` change it,
/// write it back atomically. Returns `f`'s result and a load warning.
pub fn update<T>(
    path: &Path,
    now: i64,
    f: impl FnOnce(&mut State) -> T,
) -> Result<(T, Option<String>)> {
    let mut out = None;
    let (_, warning) = update_state(path, now, |st| out = Some(f(st)))?;
    Ok((out.expect("update ran the change"), warning))
}

/// `update`, returning the state as written: a writer that keeps the state
/// in memory (capture) takes it back without copying it.
pub fn update_state(
    path: &Path,
    now: i64,
    f: impl FnOnce(&mut State),
) -> Result<(State, Option<String>)> {
    let dir = dir_of(path);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let _lock = crate::lock::acquire_file(&lock_name(path), LOCK_WAIT).map_err(|e| anyhow!(e))?;
    let mut loaded = load(path, now)?;
    f(&mut loaded.state);
    save(path, &loaded.state)?;
    Ok((loaded.state, loaded.warning))
}

/// Write the state atomically, creating the directory if needed. Callers
/// other than `update` must hold the lock or own the file alone.
pub fn save(path: &Path, state: &State) -> Result<()> {
    let dir = dir_of(path);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in state directory {}", dir.display()))?;
    let body = StateFile {
        version: STATE_VERSION,
        bans: state.history.records(),
        scans: state.scans.clone(),
        applied: state.applied.clone(),
    };
    let text = serde_json::to_vec_pretty(&body).expect("state serializes");
    tmp.write_all(&text)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    // Readable by status/list run by an admin's monitoring user; nothing secret.
    use std::os::unix::fs::PermissionsExt;
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(path)
        .with_context(|| format!("cannot replace state file {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut h = History::default();
        h.record("203.0.113.9/32".parse().unwrap(), "blacklist", 2, 50, 7200);
        State {
            history: h,
            ..State::default()
        }
    }

    #[test]
    fn save_load_and_corrupt_file_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let s = state();
        save(&path, &s).unwrap();
        let got = load(&path, 100).unwrap();
        assert_eq!(got.state, s);
        assert!(got.warning.is_none());

        std::fs::write(&path, b"{ not json").unwrap();
        // A reader only warns and leaves the file alone.
        let got = read(&path).unwrap();
        assert!(got.state.history.is_empty() && got.warning.is_some());
        assert!(path.exists());
        let got = load(&path, 100).unwrap();
        assert!(got.state.history.is_empty());
        let w = got.warning.unwrap();
        assert!(
            w.contains("corrupt") && w.contains("state.json.corrupt-100"),
            "{w}"
        );
        assert!(!path.exists());
        assert!(dir.path().join("sub/state.json.corrupt-100").exists());

        assert!(load(&dir.path().join("missing.json"), 1)
            .unwrap()
            .state
            .history
            .is_empty());
    }

    #[test]
    fn update_keeps_what_other_writers_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &state()).unwrap();
        let run = ScanRun {
            at: 60,
            rule: "blocked".into(),
            kind: "tcp".into(),
            ipset: "throttle-hard".into(),
            lines_matched: 10,
            offenders: 1,
            added: 1,
        };
        update(&path, 60, |s| s.note_scan(run.clone())).unwrap();
        update(&path, 61, |s| {
            s.note_scan(ScanRun {
                at: 61,
                ..run.clone()
            });
            s.history.record(
                "2001:db8::5/128".parse().unwrap(),
                "blacklist_v6",
                1,
                61,
                60,
            );
        })
        .unwrap();
        let got = read(&path).unwrap().state;
        assert_eq!(got.history.len(), 2);
        assert_eq!(got.scans.len(), 1, "one entry per rule");
        assert_eq!(got.scans[0].at, 61);
        assert!(dir.path().join("state.json.lock").exists());
    }
}
